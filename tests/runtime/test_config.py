"""The run configuration: TOML round trip, unknown keys, types and cross-key rules are refused by name."""
from __future__ import annotations

import pytest

from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.errors import RunConfigError


def test_toml_round_trip(tmp_path):
    config = RunConfig(clients=4, lr=0.01, method="random", float16=True)
    config.save(tmp_path / "run.toml")
    assert RunConfig.load(tmp_path / "run.toml") == config


@pytest.mark.parametrize("changes, word", [
    ({"learning_rate": 0.1}, "learning_rate"),
    ({"clients": "6"}, "clients"),
    ({"rounds": 0}, "rounds"),
    ({"method": "magic"}, "method"),
    ({"aggregate_every": 4, "eval_every": 10}, "eval_every"),
    ({"links": "guessed"}, "links"),
    ({"probe_repeats": 0}, "probe_repeats"),
    ({"probe_timeout_s": -1.0}, "probe_timeout_s"),
    ({"peer_timeout_s": 1.0}, "peer_timeout_s"),
    ({"straggler_policy": "ignore"}, "straggler_policy"),
    ({"straggler_slack": -0.1}, "straggler_slack"),
    ({"straggler_grace_ms": -5.0}, "straggler_grace_ms"),
])
def test_bad_configs_name_the_key(changes, word):
    with pytest.raises(RunConfigError, match=word):
        RunConfig.from_dict(changes)


def test_unreadable_toml(tmp_path):
    (tmp_path / "bad.toml").write_text("clients = = 3\n")
    with pytest.raises(RunConfigError, match="not valid TOML"):
        RunConfig.load(tmp_path / "bad.toml")


def test_the_straggler_deadline_is_slack_times_the_planned_makespan_plus_grace():
    config = RunConfig(straggler_slack=0.5, straggler_grace_ms=200.0)
    assert config.round_deadline_ms(1000.0) == 1000.0 * 1.5 + 200.0
