"""Lower bounds: the window bound's compiled kernel equals its twin; no bound ever exceeds a proven optimum."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgepsl import _core as core
from edgepsl.plan import pure
from edgepsl.plan.backend import kernel_arrays
from edgepsl.plan.bounds import LowerBound, lower_bound, lp_bound, window_grid, window_pairs
from edgepsl.plan.evaluate import MEMORY_RTOL
from edgepsl.plan.heuristics import solve
from edgepsl.plan.instance import Instance
from edgepsl.plan.milp import solve_milp

from .instances import random_instance
from .test_milp import brute_force_optimum

instances = st.builds(
    random_instance,
    seed=st.integers(0, 2**32 - 1),
    K=st.integers(1, 16),
    H=st.integers(1, 5),
    integer_times=st.booleans(),
    tight_memory=st.booleans(),
)


@settings(max_examples=400, deadline=None)
@given(inst=instances, releases=st.integers(1, 12), tails=st.integers(1, 5))
def test_window_kernel_agrees_with_its_twin(inst, releases, tails) -> None:
    arrs = kernel_arrays(inst)
    wa, wb = window_grid(inst, releases, tails)
    assert core.window_bound(*arrs, inst.mem, inst.cap, wa, wb) == pure.window_bound(*arrs, inst.mem, inst.cap, wa, wb)


@settings(max_examples=150, deadline=None)
@given(inst=instances, releases=st.integers(1, 8), tails=st.integers(1, 4), rounds=st.integers(0, 3),
       floor_share=st.floats(0.3, 1.0))
def test_joint_kernel_agrees_with_its_twin(inst, releases, tails, rounds, floor_share) -> None:
    arrs = kernel_arrays(inst)
    bound = lower_bound(inst)
    ga, gb = window_pairs(inst, releases, tails, floor_share * bound.value)
    args = (*arrs, inst.mem, inst.cap, inst.cap * (1 + MEMORY_RTOL), ga, gb, rounds)
    assert core.joint_bound(*args) == pure.joint_bound(*args)


def _two_late_backward_jobs() -> Instance:
    one = np.ones((2, 1))
    return Instance(r=0 * one, p=one, d=10 * one, l=np.zeros(2), r_bwd=0 * one, p_bwd=one, d_bwd=0 * one,
                    l_bwd=np.zeros(2), mem=np.ones(2), cap=np.array([2.0]))


def test_window_bound_is_exact_where_late_backward_jobs_queue() -> None:
    # Forward jobs at 0-1 and 1-2, backward jobs released at 11 and 12 run 11-12 and 12-13: the optimum is 13.
    # Chain (12) and load (4) miss the queue of backward jobs; the window [11, C] holds both: 11 + 2 = 13.
    inst = _two_late_backward_jobs()
    bound = lower_bound(inst)
    assert (bound.chain, bound.load) == (12.0, 4.0)
    assert bound.window == pytest.approx(13.0, rel=1e-11) and bound.value == bound.window
    assert solve(inst).makespan == 13.0


@pytest.mark.parametrize("seed", range(24))
def test_no_bound_exceeds_the_exhaustive_optimum(seed) -> None:
    inst = random_instance(seed, K=3 + (seed % 4 == 0), H=2 if seed % 3 else 1, integer_times=seed % 2 == 0,
                           tight_memory=seed % 5 < 2)
    optimum = brute_force_optimum(inst)
    bound = lower_bound(inst)
    assert bound.value <= optimum * (1 + 1e-12)
    assert lp_bound(inst, bound.value) <= optimum * (1 + 1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_no_bound_exceeds_the_milp_proven_optimum(seed) -> None:
    inst = random_instance(100 + seed, K=6 + seed % 3, H=2 + seed % 2, integer_times=seed % 2 == 1,
                           tight_memory=seed % 2 == 0)
    exact = solve_milp(inst, time_limit=60)
    assert exact.optimal
    assert exact.bound.value <= exact.makespan * (1 + 1e-12)
    assert lp_bound(inst, exact.bound.value) <= exact.makespan * (1 + 1e-12)


def test_joint_and_lp_bounds_see_memory_and_helper_speeds_together() -> None:
    from edgepsl.plan.scenarios import scenario_instance

    # Fast helpers that cannot hold enough clients to balance the load (binding memory): the joint bound and the
    # LP couple one helper's late window with another's whole-round window and price the memory.
    inst = scenario_instance("resnet101_cifar10", 100, 5, 1, 1, binding_memory=True)
    bound = lower_bound(inst)
    lp = lp_bound(inst, bound.value)
    assert max(bound.chain, bound.load, bound.window) < bound.joint < lp <= solve(inst).makespan


def test_the_best_bound_is_reported() -> None:
    assert LowerBound(chain=1.0, load=2.0, window=3.0, lp=4.0).value == 4.0
    assert LowerBound(chain=5.0, load=2.0, window=3.0).value == 5.0
    assert LowerBound(chain=5.0, load=2.0, window=3.0).gap(5.5) == pytest.approx(0.1)
