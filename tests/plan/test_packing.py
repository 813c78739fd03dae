"""Memory packing: a fitting assignment whenever one exists (checked by brute force), proved infeasibility otherwise."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgepsl.plan.errors import InfeasibleError
from edgepsl.plan.evaluate import evaluate
from edgepsl.plan.heuristics import solve
from edgepsl.plan.instance import Instance
from edgepsl.plan.milp import solve_milp
from edgepsl.plan.packing import NoFeasibleAssignmentError, branch_and_bound, memory_feasible_assignment


def tight(mem: list[float], cap: list[float], seed: int = 0) -> Instance:
    """An instance with the given memory and capacities and small random integer times."""
    rng = np.random.default_rng(seed)
    K, H = len(mem), len(cap)

    def t(shape, hi):
        return rng.integers(1, hi, shape).astype(float)

    return Instance(r=t((K, H), 5), p=t((K, H), 6), d=t((K, H), 3), l=t(K, 3), r_bwd=t((K, H), 3),
                    p_bwd=t((K, H), 5), d_bwd=t((K, H), 3), l_bwd=t(K, 3), mem=np.array(mem, dtype=float),
                    cap=np.array(cap, dtype=float))


def fits(mem: np.ndarray, cap: np.ndarray, a: np.ndarray) -> bool:
    return bool((np.bincount(a, weights=mem, minlength=len(cap)) <= cap).all())


def brute_force_fits(mem: np.ndarray, cap: np.ndarray) -> bool:
    return any(fits(mem, cap, np.array(a)) for a in itertools.product(range(len(cap)), repeat=len(mem)))


def test_tight_memory_instance_that_every_start_refused_gets_a_plan() -> None:
    inst = tight([2, 2, 2, 3], [6, 3])
    for method in ("greedy-eft", "balanced-greedy"):
        with pytest.raises(InfeasibleError, match="greedy-ls .* finds one"):
            solve(inst, method)
    sol = solve(inst, "greedy-ls")
    assert sol.plan.meta["start"] == "packing"
    assert evaluate(inst, sol.plan).makespan == sol.makespan
    np.testing.assert_array_equal(sol.plan.assignment, [0, 0, 0, 1])
    exact = solve_milp(inst, time_limit=30)
    assert exact.optimal and exact.makespan <= sol.makespan


def test_infeasible_memory_is_proved_and_no_method_is_recommended() -> None:
    # 6 MB of clients fit in 3 + 3 MB by total, but no two 2 MB clients share a 3 MB helper.
    inst = tight([2, 2, 2], [3, 3])
    for method in ("greedy-eft", "balanced-greedy", "greedy-ls"):
        with pytest.raises(NoFeasibleAssignmentError, match="proved by exhaustive branch and bound") as info:
            solve(inst, method)
        assert "greedy-ls" not in str(info.value)
    with pytest.raises(NoFeasibleAssignmentError, match=r"need 7 MB .* 6 MB in all.*\(proved\)"):
        memory_feasible_assignment(tight([2, 2, 3], [3, 3]))


def test_highs_decides_when_the_branch_and_bound_gives_up() -> None:
    feasible = tight([2, 2, 2, 3], [6, 3])
    a = memory_feasible_assignment(feasible, node_limit=1)
    assert fits(feasible.mem, feasible.cap, a)
    with pytest.raises(NoFeasibleAssignmentError, match="proved by HiGHS"):
        memory_feasible_assignment(tight([2, 2, 2], [3, 3]), node_limit=1)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), K=st.integers(1, 7), H=st.integers(1, 3))
def test_branch_and_bound_agrees_with_brute_force(seed, K, H) -> None:
    rng = np.random.default_rng(seed)
    mem = rng.integers(1, 6, K).astype(float)
    cap = np.maximum(rng.integers(1, 12, H), mem.max()).astype(float)
    found, proved = branch_and_bound(mem, cap)
    assert proved
    assert (found is not None) == brute_force_fits(mem, cap)
    if found is not None:
        assert fits(mem, cap, found)
