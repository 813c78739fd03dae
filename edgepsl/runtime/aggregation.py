"""Aggregation strategies: how the coordinator merges the clients' and middle parts' model states (FedAvg default).

A strategy is chosen by name with the config key `aggregation`; add one by subclassing Aggregation and listing it
in STRATEGIES.
"""
from __future__ import annotations

import abc
from typing import Mapping, Sequence

import numpy as np

from edgepsl.runtime.errors import RunAbortedError


class Aggregation(abc.ABC):
    """Merges several model states (same tensor names) into one, given each state's weight (its samples)."""

    name: str = ""

    @abc.abstractmethod
    def aggregate(self, states: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float]) -> dict[str, np.ndarray]:
        """The merged state."""


def _check(states: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float]) -> None:
    if not states or len(states) != len(weights) or sum(weights) <= 0:
        raise RunAbortedError(f"aggregation needs states with positive total weight; got {len(states)} states")
    keys = set(states[0])
    for state in states[1:]:
        if set(state) != keys:
            raise RunAbortedError("aggregation got model states with different tensor names")


class FedAvg(Aggregation):
    """Weighted average of floating tensors (weights: samples); integer tensors (step counters) take the maximum."""

    name = "fedavg"

    def aggregate(self, states: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float]) -> dict[str, np.ndarray]:
        """FedAvg of the states."""
        _check(states, weights)
        w = np.asarray(weights, dtype=np.float64) / float(sum(weights))
        out = {}
        for key in states[0]:
            stack = [np.asarray(s[key]) for s in states]
            if np.issubdtype(stack[0].dtype, np.floating):
                acc = sum(wi * a.astype(np.float64) for wi, a in zip(w, stack))
                out[key] = np.asarray(acc, dtype=stack[0].dtype)
            else:
                out[key] = np.max(np.stack(stack), axis=0)
        return out


STRATEGIES: dict[str, type[Aggregation]] = {FedAvg.name: FedAvg}


def strategy(name: str) -> Aggregation:
    """The strategy of a name in STRATEGIES (the config validates the name)."""
    return STRATEGIES[name]()
