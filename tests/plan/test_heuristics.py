"""Planning methods: valid plans, determinism, greedy-ls never worse than its baselines, clear failures."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgepsl.plan.bounds import lower_bound
from edgepsl.plan.errors import InfeasibleError, SearchLimitError, UnknownMethodError
from edgepsl.plan.evaluate import evaluate
from edgepsl.plan.heuristics import CHAIN_INSERT_WIDTH, DEFAULT_KICKS, METHODS, QUICK_LIMIT_MS, chain_priority, solve
from edgepsl.plan.instance import Instance
from edgepsl.plan.preemptive import schedule_assignment
from edgepsl.plan.scenarios import scenario_instance

from .instances import random_instance


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("tight", [False, True])
def test_every_method_returns_a_valid_plan_above_the_bound(method, tight) -> None:
    inst = random_instance(11, K=30, H=4, integer_times=False, tight_memory=tight)
    try:
        sol = solve(inst, method, seed=5)
    except InfeasibleError:
        assert method in ("random", "balanced-greedy", "greedy-eft")
        return
    assert evaluate(inst, sol.plan).makespan == sol.makespan
    assert sol.makespan >= sol.bound.value - 1e-9
    assert sol.gap >= 0 and sol.plan.method == method


@pytest.mark.parametrize("scenario", [1, 2])
@pytest.mark.parametrize("seed", range(4))
def test_greedy_ls_never_worse_than_balanced_greedy_or_random(scenario, seed) -> None:
    inst = scenario_instance("vgg19_cifar10", 40, 5, scenario, seed)
    ours = solve(inst, "greedy-ls", seed=seed).makespan
    assert ours <= solve(inst, "balanced-greedy", seed=seed).makespan
    assert ours <= solve(inst, "random", seed=seed).makespan


def test_greedy_ls_is_deterministic_for_a_seed() -> None:
    inst = scenario_instance("resnet101_cifar10", 60, 6, 2, 3)
    a = solve(inst, "greedy-ls", seed=9)
    b = solve(inst, "greedy-ls", seed=9)
    np.testing.assert_array_equal(a.plan.assignment, b.plan.assignment)
    assert all(np.array_equal(x, y) for x, y in zip(a.plan.orders, b.plan.orders))
    assert a.plan.meta["work"] == b.plan.meta["work"]


def test_greedy_ls_respects_its_work_budget() -> None:
    inst = scenario_instance("resnet101_cifar10", 200, 10, 2, 1)
    sol = solve(inst, "greedy-ls", budget=10_000)
    # The budget is checked before each candidate; one candidate dispatches at most 2 helpers x 3 rules.
    assert sol.plan.meta["work"] <= 10_000 + 6 * 2 * inst.K


@pytest.mark.parametrize("scenario", [1, 2])
def test_greedy_ls_restarts_never_lose_the_first_descent(scenario) -> None:
    for seed in range(3):
        inst = scenario_instance("resnet101_cifar10", 20, 3, scenario, seed)
        plain = solve(inst, "greedy-ls", seed=seed, kicks=0)
        kicked = solve(inst, "greedy-ls", seed=seed)
        assert plain.plan.meta["kicks"] == 0 and kicked.plan.meta["kicks"] == DEFAULT_KICKS
        assert kicked.makespan <= plain.makespan
        assert kicked.plan.meta["work"] <= kicked.plan.meta["budget"] + 6 * 2 * inst.K


def test_greedy_ls_restarts_stop_when_the_budget_is_spent() -> None:
    inst = scenario_instance("resnet101_cifar10", 40, 4, 1, 0)
    sol = solve(inst, "greedy-ls", budget=20_000)
    assert sol.plan.meta["kicks"] < DEFAULT_KICKS and not sol.plan.meta["polished"]
    # Each restart dispatches every helper (3 rules x 2K jobs) before its first budget check.
    assert sol.plan.meta["work"] <= 20_000 + 2 * 6 * 2 * inst.K


@pytest.mark.parametrize("profile", ["resnet101_cifar10", "vgg19_cifar10"])
def test_greedy_ls_orders_are_never_worse_than_the_preemptive_schedule_orders(profile) -> None:

    for seed in range(3):
        inst = scenario_instance(profile, 12, 3, 1, seed)
        sol = solve(inst, "greedy-ls", seed=seed)
        assert sol.plan.meta["polished"]
        assert sol.makespan <= schedule_assignment(inst, sol.plan.assignment)[1].makespan


def test_random_depends_on_seed_only() -> None:
    inst = random_instance(2, K=40, H=5, integer_times=False, tight_memory=False)
    a = solve(inst, "random", seed=1).plan.assignment
    assert np.array_equal(a, solve(inst, "random", seed=1).plan.assignment)
    assert not np.array_equal(a, solve(inst, "random", seed=2).plan.assignment)


def test_heuristic_that_cannot_pack_memory_says_which_client() -> None:
    # Capacities 2 and 3 MB, demands 2, 1, 2: balanced-greedy puts client 0 on helper 0 (2 MB, now full),
    # client 1 on helper 1, client 2 (2 MB) on helper 1 (3 MB) -- fits; make it fail with a third helper-0 fit.
    inst = Instance(r=np.ones((3, 2)), p=np.ones((3, 2)), d=np.ones((3, 2)), l=np.ones(3), r_bwd=np.ones((3, 2)),
                    p_bwd=np.ones((3, 2)), d_bwd=np.ones((3, 2)), l_bwd=np.ones(3),
                    mem=np.array([2.0, 2.0, 1.0]), cap=np.array([2.0, 2.0]))
    with pytest.raises(InfeasibleError, match="could not place client 2"):
        solve(inst, "balanced-greedy")
    with pytest.raises(InfeasibleError, match="add helper memory"):
        solve(inst, "greedy-ls")


def test_unknown_method_and_rule() -> None:
    inst = random_instance(0, K=3, H=1, integer_times=True, tight_memory=False)
    with pytest.raises(UnknownMethodError, match="choose one of"):
        solve(inst, "simulated-annealing")
    with pytest.raises(UnknownMethodError, match="unknown dispatch rule"):
        solve(inst, "random", dispatch="lifo")


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), K=st.integers(1, 20), H=st.integers(1, 5), tight=st.booleans())
def test_lower_bound_never_exceeds_any_plan(seed, K, H, tight) -> None:
    inst = random_instance(seed, K=K, H=H, integer_times=bool(seed % 2), tight_memory=tight)
    try:
        sol = solve(inst, "greedy-ls", seed=seed)
    except InfeasibleError:
        return
    assert sol.bound.value <= sol.makespan + 1e-9 * sol.makespan


def test_weighted_load_bound_is_exact_for_helpers_that_differ_by_speed() -> None:
    # 12 identical clients, helper 1 twice as slow as helper 0, no client-side delays: the best split is
    # 8 / 4 clients, a load of 8 jobs of work 2 = 16 on each helper; the bound must find exactly 16.
    K = 12
    work = np.tile([1.0, 2.0], (K, 1))
    zero = np.zeros((K, 2))
    inst = Instance(r=zero, p=work, d=zero, l=np.zeros(K), r_bwd=zero, p_bwd=work, d_bwd=zero, l_bwd=np.zeros(K),
                    mem=np.ones(K), cap=np.full(2, float(K)))
    sol = solve(inst, "greedy-ls")
    assert sol.bound.load == pytest.approx(16.0)
    assert sol.makespan == pytest.approx(16.0)


def test_greedy_ls_time_limit_returns_a_valid_plan_and_says_it_stopped_for_time() -> None:
    inst = scenario_instance("resnet101_cifar10", 400, 8, 1, 0)
    sol = solve(inst, "greedy-ls", time_limit_ms=1e-3)
    assert sol.plan.meta["stopped"] == "time" and not sol.plan.meta["polished"]
    assert evaluate(inst, sol.plan).makespan == sol.makespan
    assert sol.makespan <= sol.plan.meta["start_makespan"]


def test_greedy_ls_with_an_unreached_time_limit_is_the_budgeted_run() -> None:
    inst = scenario_instance("vgg19_cifar10", 30, 3, 2, 1)
    plain = solve(inst, "greedy-ls", seed=4)
    limited = solve(inst, "greedy-ls", seed=4, time_limit_ms=1e7)
    assert limited.plan.meta["stopped"] == plain.plan.meta["stopped"] != "time"
    np.testing.assert_array_equal(plain.plan.assignment, limited.plan.assignment)
    assert plain.makespan == limited.makespan


@pytest.mark.parametrize("limit", [0, -1.0, float("nan")])
def test_time_limit_must_be_positive(limit) -> None:
    inst = random_instance(0, K=3, H=2, integer_times=True, tight_memory=False)
    with pytest.raises(SearchLimitError, match="positive number of milliseconds"):
        solve(inst, "greedy-ls", time_limit_ms=limit)


def test_greedy_insertion_respects_memory_and_starts_greedy_ls_where_it_is_better() -> None:
    from edgepsl.plan.backend import kernels

    def start_makespan(inst, priority):
        arrays = (inst.r, inst.p, inst.gap, inst.p_bwd, inst.tail)
        a = kernels.assign_greedy_insert(*arrays, inst.mem, inst.cap, CHAIN_INSERT_WIDTH, None, priority)
        out = kernels.local_search(a, *arrays, inst.mem, inst.cap, 0, 0)
        return float(kernels.evaluate(*out[:4], *arrays).finish.max())

    for seed in range(30):
        inst = random_instance(seed, K=12, H=3, integer_times=bool(seed % 2), tight_memory=True)
        for priority in (None, chain_priority(inst)):
            a = kernels.assign_greedy_insert(inst.r, inst.p, inst.gap, inst.p_bwd, inst.tail, inst.mem, inst.cap, 2,
                                             None, priority)
            placed = a >= 0
            assert ((a == -1) | placed).all()
            assert (np.bincount(a[placed], weights=inst.mem[placed], minlength=inst.H) <= inst.cap).all()
    # Scenario 1: the chains, not the helpers' work, set the makespan; inserting the longest chains first starts
    # closer than inserting by work (all clients have the same work there) and than greedy-eft.
    inst = scenario_instance("resnet101_cifar10", 100, 10, 1, 0)
    sol = solve(inst, "greedy-ls", kicks=0)
    assert sol.plan.meta["start"] == "greedy-chain"
    assert sol.plan.meta["start_makespan"] == start_makespan(inst, chain_priority(inst)) < start_makespan(inst, None)
    assert sol.plan.meta["start_makespan"] < solve(inst, "greedy-eft").makespan


def test_greedy_ls_under_a_short_time_limit_takes_only_its_first_start() -> None:
    inst = scenario_instance("resnet101_cifar10", 40, 4, 2, 0)
    sol = solve(inst, "greedy-ls", time_limit_ms=QUICK_LIMIT_MS / 2)
    assert sol.plan.meta["start"] == "greedy-chain"
    assert sol.makespan <= sol.plan.meta["start_makespan"]
    assert evaluate(inst, sol.plan).makespan == sol.makespan


def test_the_lower_bound_is_computed_on_first_use_outside_the_planning_call() -> None:
    inst = scenario_instance("resnet101_cifar10", 20, 3, 1, 0)
    sol = solve(inst, "greedy-ls", time_limit_ms=1)
    assert "bound" not in vars(sol)
    assert sol.bound == lower_bound(inst) and sol.gap == sol.bound.gap(sol.makespan)
