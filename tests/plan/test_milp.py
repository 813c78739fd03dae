"""The exact MILP planner: proven optima equal brute force on tiny instances; warm start; clear errors."""
from __future__ import annotations

import itertools
import sys

import numpy as np
import pytest

from edgepsl.plan.heuristics import solve
from edgepsl.plan.highs import SolverUnavailableError
from edgepsl.plan.milp import solve_milp
from edgepsl.plan.scenarios import scenario_instance

from .instances import random_instance


def helper_best_span(inst, clients, i) -> float:
    """Smallest span of `clients` on helper i over every valid job sequence (brute force)."""
    jobs = [(j, k) for j in clients for k in (0, 1)]
    best = None
    for seq in itertools.permutations(jobs):
        seen, tau, fwd_end, span, valid = set(), 0.0, {}, 0.0, True
        for j, k in seq:
            if k == 0:
                seen.add(j)
                tau = max(tau, inst.r[j, i]) + inst.p[j, i]
                fwd_end[j] = tau
            elif j not in seen:
                valid = False
                break
            else:
                tau = max(tau, fwd_end[j] + inst.gap[j, i]) + inst.p_bwd[j, i]
                span = max(span, tau + inst.tail[j, i])
        if valid and (best is None or span < best):
            best = span
    return 0.0 if best is None else best


def brute_force_optimum(inst) -> float:
    best = None
    for a in itertools.product(range(inst.H), repeat=inst.K):
        a = np.array(a)
        if (np.bincount(a, weights=inst.mem, minlength=inst.H) > inst.cap).any():
            continue
        value = max(helper_best_span(inst, [j for j in range(inst.K) if a[j] == i], i) for i in range(inst.H))
        best = value if best is None else min(best, value)
    return best


@pytest.mark.parametrize("seed", range(12))
def test_proven_optimum_equals_brute_force(seed) -> None:
    inst = random_instance(seed, K=3 + seed % 2, H=2, integer_times=seed % 3 == 0, tight_memory=seed % 2 == 1)
    sol = solve_milp(inst, time_limit=30)
    assert sol.optimal and sol.status == "Optimal"
    assert sol.makespan == pytest.approx(brute_force_optimum(inst), rel=1e-9)
    assert sol.bound.value <= sol.makespan + 1e-9
    assert sol.makespan <= solve(inst, "greedy-ls").makespan + 1e-9


def test_optimum_improves_on_the_heuristic_where_it_can() -> None:
    inst = scenario_instance("resnet101_cifar10", 10, 3, 1, 3)
    heuristic = solve(inst, "greedy-ls")
    exact = solve_milp(inst, time_limit=60, warm_start=heuristic.plan)
    assert exact.optimal
    assert exact.makespan < heuristic.makespan
    assert exact.dual_bound == pytest.approx(exact.objective, rel=1e-6)


def test_time_limit_returns_the_incumbent_with_its_gap() -> None:
    inst = scenario_instance("resnet101_cifar10", 14, 3, 1, 5)
    warm = solve(inst, "balanced-greedy").plan
    sol = solve_milp(inst, time_limit=0.05, warm_start=warm)
    assert sol.status in ("Time limit reached", "Optimal")
    assert sol.makespan <= solve(inst, "balanced-greedy").makespan + 1e-9
    if not sol.optimal:
        assert sol.mip_gap > 0 and sol.dual_bound <= sol.objective


def test_missing_highspy_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "highspy", None)
    inst = random_instance(0, K=3, H=2, integer_times=True, tight_memory=False)
    with pytest.raises(SolverUnavailableError, match=r"pip install 'edgepsl\[solvers\]'"):
        solve_milp(inst)
