"""The drift trigger: two consecutive departing rounds, then a cooldown of the new plan's rounds."""
from __future__ import annotations

import pytest

from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.coordinator.drift import CONSECUTIVE, COOLDOWN, DriftMonitor
from edgepsl.runtime.errors import RunConfigError


def test_two_consecutive_departing_rounds_trigger_once_then_the_new_plan_runs():
    monitor = DriftMonitor(RunConfig().replan_threshold)
    assert CONSECUTIVE == 2 and COOLDOWN == 3
    assert [monitor.observe(100.0, x) for x in (105.0, 91.0, 111.0, 100.0, 60.0)] == [False] * 5  # never 2 in a row
    assert monitor.observe(100.0, 61.0) is True  # 60 then 61: realised/planned 0.6, twice
    assert [monitor.observe(100.0, 61.0) for _ in range(COOLDOWN)] == [False] * COOLDOWN  # the new plan runs
    assert monitor.observe(100.0, 61.0) is False  # the streak starts again after the cooldown
    assert monitor.observe(100.0, 200.0) is True  # slower than planned counts the same


def test_a_plan_taking_effect_for_another_reason_restarts_the_wait():
    monitor = DriftMonitor(0.10)
    assert monitor.observe(100.0, 50.0) is False
    monitor.planned_changed()
    assert [monitor.observe(100.0, 50.0) for _ in range(COOLDOWN + 1)] == [False] * (COOLDOWN + 1)
    assert monitor.observe(100.0, 50.0) is True


def test_the_threshold_is_a_validated_config_key():
    assert RunConfig().replan_threshold == 0.10
    assert RunConfig.from_dict({"replan_threshold": 0.25}).replan_threshold == 0.25
    with pytest.raises(RunConfigError, match="replan_threshold"):
        RunConfig(replan_threshold=0.0)
    with pytest.raises(RunConfigError, match="replan_threshold"):
        DriftMonitor(-1.0)
    assert DriftMonitor(0.5).departs(100.0, 140.0) is False and DriftMonitor(0.5).departs(0.0, 1.0) is True
