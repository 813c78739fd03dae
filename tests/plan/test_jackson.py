"""Preemptive Jackson on one helper: the paper's toy example, optimality against an exact oracle, parity."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgepsl import _core as core
from edgepsl.plan import pure


def free_time_reached(t0: float, work: float, bs: np.ndarray, be: np.ndarray) -> float:
    """Earliest time by which `work` units of unblocked machine time have passed after t0 (t0 if no work)."""
    if work == 0:
        return t0
    t = t0
    for s, e in zip(bs, be):
        if e <= t:
            continue
        if s > t:
            if t + work <= s:
                return t + work
            work -= s - t
        t = max(t, e)
    return t + work


def oracle(r, p, q, bs, be) -> float:
    """max over job sets S of (earliest finish of S's work after min r_S) + min q_S: optimal for 1|r,pmtn|max(C+q)."""
    n = len(r)
    best = 0.0
    for size in range(1, n + 1):
        for S in itertools.combinations(range(n), size):
            idx = list(S)
            best = max(best, free_time_reached(r[idx].min(), p[idx].sum(), bs, be) + q[idx].min())
    return best


def test_paper_toy_example() -> None:
    # paper.md 2.4: r = 0,2,3,1,9; p = 1,2,3,2,1; q = 5,3,8,1,1; optimum 14 (FCFS gives 16).
    args = (np.array([0, 2, 3, 1, 9.0]), np.array([1, 2, 3, 2, 1.0]), np.array([5, 3, 8, 1, 1.0]),
            np.empty(0), np.empty(0))
    completion, objective, job, start, end = core.jackson_preemptive(*args)
    assert objective == 14
    np.testing.assert_array_equal(completion, [1, 7, 6, 8, 10])
    np.testing.assert_array_equal(job, [0, 3, 1, 2, 1, 3, 4])


def blocks_from(rng, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    cuts = np.sort(rng.choice(np.arange(1, horizon), size=2 * int(rng.integers(0, 4)), replace=False))
    return cuts[0::2].astype(float), cuts[1::2].astype(float)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 7))
def test_optimal_and_feasible_with_blocked_time(seed, n) -> None:
    rng = np.random.default_rng(seed)
    r = rng.integers(0, 15, n).astype(float)
    p = rng.integers(0, 6, n).astype(float)
    q = rng.integers(0, 10, n).astype(float)
    bs, be = blocks_from(rng, 40)
    completion, objective, job, start, end = pure.jackson_preemptive(r, p, q, bs, be)
    assert objective == pytest.approx(oracle(r, p, q, bs, be))
    assert objective == pytest.approx(max(completion + q))
    order = np.argsort(start)
    assert (end[order][:-1] <= start[order][1:] + 1e-12).all()          # one piece at a time
    assert (start >= r[job] - 1e-12).all() and (end > start).all()        # after release
    for s, e in zip(bs, be):                                              # never in blocked time
        assert ((end <= s + 1e-12) | (start >= e - 1e-12)).all()
    np.testing.assert_allclose(np.bincount(job, weights=end - start, minlength=n), p, atol=1e-9)


@settings(max_examples=1000, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 30), integer=st.booleans())
def test_compiled_and_pure_agree(seed, n, integer) -> None:
    rng = np.random.default_rng(seed)
    draw = (lambda hi: rng.integers(0, hi, n).astype(float)) if integer else (lambda hi: rng.uniform(0, hi, n))
    r, p, q = draw(50), draw(8), draw(20)
    bs, be = blocks_from(rng, 200)
    a = core.jackson_preemptive(r, p, q, bs, be)
    b = pure.jackson_preemptive(r, p, q, bs, be)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
