"""The compiled core and its pure-Python twin agree exactly, kernel by kernel, on thousands of instances."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgepsl import _core as core
from edgepsl.plan import pure

from .instances import assert_same, kernel_arrays, random_instance

instances = st.builds(
    random_instance,
    seed=st.integers(0, 2**32 - 1),
    K=st.integers(1, 24),
    H=st.integers(1, 6),
    integer_times=st.booleans(),
    tight_memory=st.booleans(),
)


def test_constants_match() -> None:
    for name in ("FWD", "BWD", "RULE_FCFS", "RULE_FWD_FIRST", "RULE_TAIL", "RULES"):
        assert getattr(core, name) == getattr(pure, name)


@settings(max_examples=1500, deadline=None)
@given(inst=instances, seed=st.integers(0, 2**64 - 1))
def test_assignment_kernels_agree(inst, seed) -> None:
    arrs = kernel_arrays(inst)
    assert_same(core.assign_random(inst.mem, inst.cap, seed), pure.assign_random(inst.mem, inst.cap, seed))
    assert_same(core.assign_balanced_greedy(inst.mem, inst.cap), pure.assign_balanced_greedy(inst.mem, inst.cap))
    assert_same(core.assign_greedy_eft(*arrs, inst.mem, inst.cap), pure.assign_greedy_eft(*arrs, inst.mem, inst.cap))
    width = 1 + seed % 3
    assert_same(core.assign_greedy_insert(*arrs, inst.mem, inst.cap, width),
                pure.assign_greedy_insert(*arrs, inst.mem, inst.cap, width))
    start = np.random.default_rng(seed % 2**32).integers(-inst.H, inst.H, inst.K)
    start[start < 0] = -1
    assert_same(core.assign_greedy_insert(*arrs, inst.mem, inst.cap, width, start),
                pure.assign_greedy_insert(*arrs, inst.mem, inst.cap, width, start))
    # Few distinct priorities, so that ties (broken by index) occur.
    priority = np.random.default_rng(seed % 2**32 + 1).integers(0, 4, inst.K).astype(np.float64)
    assert_same(core.assign_greedy_insert(*arrs, inst.mem, inst.cap, width, start, priority),
                pure.assign_greedy_insert(*arrs, inst.mem, inst.cap, width, start, priority))
    assert_same(core.lower_bound(*arrs, inst.mem, inst.cap), pure.lower_bound(*arrs, inst.mem, inst.cap))


@settings(max_examples=1500, deadline=None)
@given(inst=instances, seed=st.integers(0, 2**32 - 1), rule=st.sampled_from(pure.RULES))
def test_dispatch_and_evaluate_agree(inst, seed, rule) -> None:
    arrs = kernel_arrays(inst)
    assign = np.random.default_rng(seed).integers(0, inst.H, inst.K)
    flat_c = core.dispatch(assign, rule, *arrs)
    flat_p = pure.dispatch(assign, rule, *arrs)
    assert_same(flat_c, flat_p)
    assert_same(core.evaluate(assign, *flat_c, *arrs), pure.evaluate(assign, *flat_p, *arrs))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rule=st.sampled_from(pure.RULES))
def test_dispatch_agrees_with_more_clients_than_the_insertion_sort_takes(seed, rule) -> None:
    # Over 32 clients on a helper, the compiled dispatch sorts the forward jobs through a heap.
    inst = random_instance(seed, K=90, H=2, integer_times=bool(seed % 2), tight_memory=False)
    arrs = kernel_arrays(inst)
    assign = np.random.default_rng(seed).integers(0, inst.H, inst.K)
    assert_same(core.dispatch(assign, rule, *arrs), pure.dispatch(assign, rule, *arrs))


@settings(max_examples=600, deadline=None)
@given(inst=instances, seed=st.integers(0, 2**64 - 1), budget=st.sampled_from([0, 500, 5_000, 50_000]),
       relief_swaps=st.booleans())
def test_local_search_agrees(inst, seed, budget, relief_swaps) -> None:
    arrs = kernel_arrays(inst)
    start = pure.assign_greedy_eft(*arrs, inst.mem, inst.cap)
    if (start < 0).any():
        start = pure.assign_balanced_greedy(inst.mem, inst.cap)
    if (start < 0).any():
        return
    assert_same(
        core.local_search(start, *arrs, inst.mem, inst.cap, seed, budget, relief_swaps=relief_swaps),
        pure.local_search(start, *arrs, inst.mem, inst.cap, seed, budget, relief_swaps=relief_swaps),
    )


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), scenario=st.sampled_from([1, 2]))
def test_local_search_with_relief_swaps_agrees_on_scenario_instances(seed, scenario) -> None:
    # The relief rule skips swaps where chains set the makespan, as on scenario 2's instances.
    from edgepsl.plan.scenarios import scenario_instance

    inst = scenario_instance("resnet101_cifar10", 30, 4, scenario, seed % 1000)
    arrs = kernel_arrays(inst)
    start = np.random.default_rng(seed).integers(0, inst.H, inst.K)
    assert_same(core.local_search(start, *arrs, inst.mem, inst.cap, seed, 20_000, relief_swaps=True),
                pure.local_search(start, *arrs, inst.mem, inst.cap, seed, 20_000, relief_swaps=True))


@settings(max_examples=1000, deadline=None)
@given(
    n=st.integers(0, 12), now=st.floats(0, 30), rule=st.sampled_from(pure.RULES), seed=st.integers(0, 2**32 - 1)
)
def test_pick_next_agrees(n, now, rule, seed) -> None:
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 2, n)
    release = rng.integers(0, 30, n).astype(float)
    tail = rng.integers(0, 5, n).astype(float)
    client = rng.permutation(n).astype(np.int64)
    assert core.pick_next(now, kind, release, tail, client, rule) == pure.pick_next(now, kind, release, tail, client, rule)


@settings(max_examples=100, deadline=None)
@given(inst=instances, seed=st.integers(0, 2**64 - 1))
def test_local_search_past_its_deadline_stops_alike(inst, seed) -> None:
    arrs = kernel_arrays(inst)
    start = pure.assign_balanced_greedy(inst.mem, inst.cap)
    if (start < 0).any():
        return
    c = core.local_search(start, *arrs, inst.mem, inst.cap, seed, 10**9, 1)
    p = pure.local_search(start, *arrs, inst.mem, inst.cap, seed, 10**9, 1)
    assert_same(c, p)
    assert c[4][5] == 1 and c[4][0] == 0


@settings(max_examples=150, deadline=None)
@given(inst=instances, seed=st.integers(0, 2**64 - 1), tiny=st.booleans())
def test_local_search_agrees_across_calls_sharing_a_span_memo(inst, seed, tiny) -> None:
    # The restarts of greedy-ls share one memo; a tiny memo makes slots collide and be overwritten.
    arrs = kernel_arrays(inst)
    start = pure.assign_balanced_greedy(inst.mem, inst.cap)
    if (start < 0).any():
        return
    memos = [(np.zeros(4, np.uint64), np.zeros(4)) if tiny else k.new_memo(inst.K) for k in (core, pure)]
    kicked = np.roll(start, 1)
    for a in (start, kicked if not (np.bincount(kicked, inst.mem, inst.H) > inst.cap).any() else start):
        assert_same(core.local_search(a, *arrs, inst.mem, inst.cap, seed, 20_000, 0, memos[0]),
                    pure.local_search(a, *arrs, inst.mem, inst.cap, seed, 20_000, 0, memos[1]))
    assert_same(memos[0], memos[1])
