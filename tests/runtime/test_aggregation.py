"""Aggregation strategies: chosen by name in the config, FedAvg weighting floats by samples and keeping max steps."""
from __future__ import annotations

import numpy as np
import pytest

from edgepsl.runtime.aggregation import STRATEGIES, FedAvg, strategy
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.errors import RunAbortedError, RunConfigError


def test_fedavg_is_the_default_strategy_and_others_are_refused_by_name():
    assert RunConfig().aggregation == "fedavg" and isinstance(strategy("fedavg"), FedAvg)
    with pytest.raises(RunConfigError, match="'aggregation' is 'median'; choose one of " + ", ".join(STRATEGIES)):
        RunConfig(aggregation="median")


def test_fedavg_weights_floating_tensors_by_samples_and_takes_the_largest_step_counter():
    states = [{"w": np.array([1.0, 2.0], np.float32), "steps": np.array(3, np.int64)},
              {"w": np.array([4.0, 8.0], np.float32), "steps": np.array(5, np.int64)}]
    merged = FedAvg().aggregate(states, [1.0, 2.0])
    np.testing.assert_allclose(merged["w"], [3.0, 6.0])
    assert merged["w"].dtype == np.float32 and int(merged["steps"]) == 5


def test_fedavg_refuses_states_it_cannot_average():
    with pytest.raises(RunAbortedError, match="different tensor names"):
        FedAvg().aggregate([{"a": np.zeros(1)}, {"b": np.zeros(1)}], [1.0, 1.0])
    with pytest.raises(RunAbortedError, match="positive total weight"):
        FedAvg().aggregate([{"a": np.zeros(1)}], [0.0])
