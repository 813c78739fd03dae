"""Exact sequencing and exhaustive search against brute force; greedy-ls against the exact optimum at K <= 6."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgepsl.plan.errors import InfeasibleError, TooLargeError
from edgepsl.plan.evaluate import evaluate
from edgepsl.plan.exact import best_sequence, exact_descent, solve_exhaustive
from edgepsl.plan.heuristics import solve

from .brute_force import brute_force_optimum, helper_best_span
from .instances import random_instance


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 4), ints=st.booleans())
def test_best_sequence_equals_every_permutation(seed, n, ints) -> None:
    inst = random_instance(seed, K=max(n, 1), H=1, integer_times=ints, tight_memory=False)
    span, jobs = best_sequence(inst, list(range(n)), 0)
    assert span == pytest.approx(helper_best_span(inst, list(range(n)), 0), rel=1e-12, abs=1e-12)
    assert sorted(jobs) == sorted((j, k) for j in range(n) for k in (0, 1))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), K=st.integers(1, 4), H=st.integers(1, 3), tight=st.booleans())
def test_exhaustive_search_equals_brute_force(seed, K, H, tight) -> None:
    inst = random_instance(seed, K=K, H=H, integer_times=bool(seed % 2), tight_memory=tight)
    try:
        plan, value = solve_exhaustive(inst)
    except InfeasibleError:
        assert brute_force_optimum(inst) is None
        return
    assert value == pytest.approx(brute_force_optimum(inst), rel=1e-12, abs=1e-12)
    assert evaluate(inst, plan).makespan == pytest.approx(value, rel=1e-12, abs=1e-12)


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), K=st.integers(2, 6), H=st.integers(1, 4), tight=st.booleans())
def test_greedy_ls_stays_within_five_percent_of_the_optimum(seed, K, H, tight) -> None:
    inst = random_instance(seed, K=K, H=H, integer_times=bool(seed % 2), tight_memory=tight)
    try:
        optimum = solve_exhaustive(inst)[1]
    except InfeasibleError:
        return
    sol = solve(inst, "greedy-ls", seed=seed)
    assert optimum - 1e-9 <= sol.makespan <= 1.05 * optimum + 1e-9


def test_exact_descent_never_leaves_its_start_worse() -> None:
    for seed in range(10):
        inst = random_instance(seed, K=6, H=3, integer_times=False, tight_memory=seed % 2 == 1)
        try:
            start = solve(inst, "balanced-greedy")
        except InfeasibleError:
            continue
        plan = exact_descent(inst, [start.plan.assignment])
        assert evaluate(inst, plan).makespan <= start.makespan + 1e-9


def test_exhaustive_search_refuses_large_instances() -> None:
    inst = random_instance(0, K=9, H=2, integer_times=True, tight_memory=False)
    with pytest.raises(TooLargeError, match="at most 8 clients"):
        solve_exhaustive(inst)
    assert np.isfinite(solve(inst, "greedy-ls").makespan)
