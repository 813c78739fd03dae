"""Incremental re-planning: valid repaired plans after membership and time changes, matched by name."""
from __future__ import annotations

import numpy as np
import pytest

from edgepsl.plan.errors import ReplanMatchError, SearchLimitError
from edgepsl.plan.evaluate import evaluate
from edgepsl.plan.heuristics import solve
from edgepsl.plan.instance import Instance
from edgepsl.plan.packing import NoFeasibleAssignmentError
from edgepsl.plan.replan import match, replan
from edgepsl.plan.scenarios import scenario_instance

FIELDS = ("r", "p", "d", "l", "r_bwd", "p_bwd", "d_bwd", "l_bwd", "mem", "cap")


def named(inst: Instance) -> Instance:
    return Instance(**{f: getattr(inst, f) for f in FIELDS}, client_names=tuple(f"c{j}" for j in range(inst.K)),
                    helper_names=tuple(f"h{i}" for i in range(inst.H)))


def subset(inst: Instance, clients, helpers, **changes) -> Instance:
    clients, helpers = np.asarray(clients), np.asarray(helpers)
    kh = np.ix_(clients, helpers)
    fields = {f: (getattr(inst, f)[kh] if getattr(inst, f).ndim == 2 else
                  getattr(inst, f)[helpers] if f == "cap" else getattr(inst, f)[clients]) for f in FIELDS}
    fields.update(changes)
    names = {"client_names": tuple(inst.client_names[j] for j in clients),
             "helper_names": tuple(inst.helper_names[i] for i in helpers)} if inst.client_names else {}
    return Instance(**fields, **names)


@pytest.fixture(scope="module")
def world():
    full = named(scenario_instance("resnet101_cifar10", 31, 4, 1, 2))
    base = subset(full, range(30), range(4))
    return full, base, solve(base, seed=2).plan


def check(sol, inst: Instance) -> None:
    assert evaluate(inst, sol.plan).makespan == sol.makespan
    assert sol.plan.method == "replan" and sol.makespan >= sol.bound.value - 1e-9


def test_a_removed_client_leaves_the_others_on_their_helpers(world) -> None:
    _, base, plan = world
    changed = subset(base, [j for j in range(30) if j != 7], range(4))
    sol = replan(changed, plan, base)
    check(sol, changed)
    assert sol.plan.meta["clients_kept"] == 29 and sol.plan.meta["clients_placed"] == 0


def test_an_added_client_is_placed(world) -> None:
    full, base, plan = world
    sol = replan(full, plan, base)
    check(sol, full)
    assert sol.plan.meta["clients_placed"] == 1
    assert sol.makespan <= 1.05 * solve(full, seed=2).makespan


def test_clients_of_a_removed_helper_move_to_the_others(world) -> None:
    _, base, plan = world
    changed = subset(base, range(30), [0, 1, 3])
    sol = replan(changed, plan, base)
    check(sol, changed)
    assert sol.plan.meta["clients_placed"] == int((plan.assignment == 2).sum())
    assert set(sol.plan.assignment.tolist()) <= {0, 1, 2}


def test_updated_times_only_never_make_the_plan_worse(world) -> None:
    _, base, plan = world
    same = replan(base, plan, base)
    check(same, base)
    assert same.makespan <= evaluate(base, plan).makespan
    slower = subset(base, range(30), range(4), p=base.p * 1.5)
    check(replan(slower, plan, base), slower)


def test_a_shrunk_helper_evicts_clients_and_stays_within_memory(world) -> None:
    _, base, plan = world
    cap = base.cap.copy()
    cap[0] = base.mem[plan.assignment == 0].sum() - 1e-6
    changed = subset(base, range(30), range(4), cap=cap)
    sol = replan(changed, plan, base)
    check(sol, changed)
    assert sol.plan.meta["clients_placed"] >= 1


def test_replan_is_deterministic_for_a_seed(world) -> None:
    full, base, plan = world
    a, b = replan(full, plan, base, seed=3), replan(full, plan, base, seed=3)
    np.testing.assert_array_equal(a.plan.assignment, b.plan.assignment)
    assert all(np.array_equal(x, y) for x, y in zip(a.plan.orders, b.plan.orders))


def test_unnamed_instances_match_by_index_only_when_sizes_agree() -> None:
    inst = scenario_instance("resnet101_cifar10", 12, 3, 2, 0)
    plan = solve(inst).plan
    check(replan(inst, plan, inst), inst)
    smaller = subset(inst, range(11), range(3))
    with pytest.raises(ReplanMatchError, match="give both instances client_names"):
        replan(smaller, plan, inst)


def test_names_must_be_on_both_sides_and_unique(world) -> None:
    _, base, plan = world
    unnamed = Instance(**{f: getattr(base, f) for f in FIELDS})
    with pytest.raises(ReplanMatchError, match="only one of the two instances has client_names"):
        match(base, unnamed)
    twice = Instance(**{f: getattr(base, f) for f in FIELDS}, client_names=("c0",) * 30,
                     helper_names=base.helper_names)
    with pytest.raises(ReplanMatchError, match="duplicate client_names"):
        match(base, twice)
    clients, helpers = match(base, subset(base, [5, 3], [2, 0]))
    np.testing.assert_array_equal(clients, [5, 3])
    np.testing.assert_array_equal(helpers, [2, 0])


def test_a_changed_instance_without_any_plan_is_a_proved_error(world) -> None:
    _, base, plan = world
    changed = subset(base, range(30), range(4), cap=np.full(4, base.mem.sum() / 5))
    with pytest.raises(NoFeasibleAssignmentError, match="the changed instance has no plan"):
        replan(changed, plan, base)
    with pytest.raises(SearchLimitError, match="time_limit_ms"):
        replan(base, plan, base, time_limit_ms=0)


def test_restarts_with_more_budget_are_never_worse_than_the_plain_repair(world) -> None:
    _, base, plan = world
    changed = subset(base, range(30), [0, 1, 3])
    plain = replan(changed, plan, base, seed=1)
    more = replan(changed, plan, base, seed=1, budget=400_000, kicks=8)
    check(more, changed)
    assert more.plan.meta["kicks"] == 8 and more.makespan <= plain.makespan


def test_restarts_follow_only_a_converged_descent_and_stop_at_the_target(world) -> None:
    from edgepsl.plan.heuristics import iterated_local_search

    full, _, _ = world
    start = solve(full, method="balanced-greedy").plan.assignment
    plain = iterated_local_search(full, start, 1, 400_000, 0)
    assert plain.stopped == "converged" and plain.kicks == 0
    cut = iterated_local_search(full, start, 1, 400_000, 8, descent_budget=50)
    assert cut.stopped == "budget" and cut.kicks == 0 and cut.stats[4] < 400_000
    resumed = iterated_local_search(full, start, 1, 400_000, 8, descent_budget=50, resume_below=float("inf"))
    assert resumed.kicks == 8 and resumed.stats[4] > cut.stats[4]
    reached = iterated_local_search(full, start, 1, 400_000, 8, target=float("inf"))
    assert reached.stopped == "bound" and reached.kicks == 0
    np.testing.assert_array_equal(reached.plan.assignment, plain.plan.assignment)
    more = iterated_local_search(full, start, 1, 400_000, 8, target=0.0)
    assert more.kicks == 8 and evaluate(full, more.plan).makespan <= evaluate(full, plain.plan).makespan


def test_the_repair_reports_the_bound_its_restarts_aim_at(world) -> None:
    _, base, plan = world
    changed = subset(base, range(30), [0, 1, 3])
    sol = replan(changed, plan, base, seed=1)
    check(sol, changed)
    meta = sol.plan.meta
    assert meta["bound"] <= sol.makespan and meta["stopped"] in ("bound", "budget", "converged")
    assert meta["bound"] == pytest.approx(max(sol.bound.chain, sol.bound.load))


def test_a_pipelined_plan_is_repaired_with_each_client_keeping_its_micro_batches() -> None:
    import dataclasses

    from edgepsl.plan.pipeline import aps_micro
    from edgepsl.plan.replan import replan_pipelined
    from edgepsl.plan.solvers import plan as make_plan

    full = scenario_instance("vgg19_cifar10", 9, 3, 1, 0, micro_batches=1)
    full = dataclasses.replace(full, client_names=tuple(f"c{j}" for j in range(9)),
                               helper_names=tuple(f"h{i}" for i in range(3)))
    base = full.subset(np.arange(8))
    before = make_plan(base, "greedy-ls", micro_batches="auto", budget=5000).plan
    assert before.pipelined
    keep = np.array([0, 2])  # h1 is lost and client c8 joins
    changed = Instance(**{name: (getattr(full, name)[:, keep] if kind == "KH" else getattr(full, name)[keep]
                                 if kind == "H" else getattr(full, name)) for name, kind, _ in full._fields()},
                       client_names=full.client_names, helper_names=("h0", "h2"))
    sol = replan_pipelined(changed, before, base)
    assert evaluate(changed, sol.plan).makespan == sol.makespan and sol.plan.method == "replan"
    assert sol.plan.micro_batches[:8].tolist() == before.micro_batches.tolist()
    assert sol.plan.micro_batches[8] == aps_micro(changed)[8]  # the new client: PiPar's N (the instance's N is 1)
    assert set(sol.plan.assignment.tolist()) <= {0, 1} and sol.makespan >= sol.bound.value - 1e-9
