"""Dispatch rules by name, and the priority values the online form of each rule reads (`kernels.pick_next`)."""
from __future__ import annotations

import numpy as np

from edgepsl.plan.errors import UnknownMethodError
from edgepsl.plan.instance import Instance
from edgepsl.plan.pure.constants import RULE_FCFS, RULE_FWD_FIRST, RULE_TAIL

DISPATCH_RULES = {"fcfs": RULE_FCFS, "fwd-first": RULE_FWD_FIRST, "tail": RULE_TAIL}


def rule_code(rule: str) -> int:
    """The kernels' code of a dispatch rule name; UnknownMethodError listing the names."""
    if rule not in DISPATCH_RULES:
        raise UnknownMethodError(f"unknown dispatch rule {rule!r}; choose one of {', '.join(DISPATCH_RULES)}")
    return DISPATCH_RULES[rule]


def priority_values(instance: Instance, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """K x H forward and backward priority values of every client on every helper under a rule, as the dispatch
    kernels key them: fwd-first, forward g and backward q'; tail, forward g + p' + q' and backward q'; fcfs
    (which keys on release only), zeros."""
    code = rule_code(rule)
    if code == RULE_FCFS:
        zero = np.zeros((instance.K, instance.H))
        return zero, zero
    g, pb, q = instance.gap, instance.p_bwd, instance.tail
    return (g if code == RULE_FWD_FIRST else g + pb + q), q


def dispatch_priorities(instance: Instance, rule: str, assignment: np.ndarray) -> np.ndarray:
    """K x 2: each client's forward and backward priority value on its assigned helper (pick_next's `tail`)."""
    fwd, bwd = priority_values(instance, rule)
    rows = np.arange(instance.K)
    return np.stack([fwd[rows, assignment], bwd[rows, assignment]], axis=1)
