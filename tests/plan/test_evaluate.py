"""The evaluator: a hand-worked FCFS example, and each kind of invalid plan rejected with its own error."""
from __future__ import annotations

import numpy as np
import pytest

from edgepsl.plan.errors import AssignmentError, JobCoverageError, JobOrderError, MemoryCapacityError, PlanError
from edgepsl.plan.evaluate import _plainly_valid, evaluate
from edgepsl.plan.heuristics import assign, solve
from edgepsl.plan.instance import Instance
from edgepsl.plan.schedule import Plan

from .instances import random_instance

F, B = 0, 1


def one_helper(r, p, g, pb, q) -> Instance:
    """Three clients on one helper; g and q' put in d and d' (l = r' = l' = 0)."""
    K = len(r)
    col = lambda v: np.array(v, dtype=float)[:, None]  # noqa: E731
    zero = np.zeros(K)
    return Instance(r=col(r), p=col(p), d=col(g), l=zero, r_bwd=col([0] * K), p_bwd=col(pb), d_bwd=col(q),
                    l_bwd=zero, mem=np.ones(K), cap=np.array([float(K)]))


def test_fcfs_reproduces_hand_worked_example() -> None:
    # r = 0, 1, 2; p = 2, 2, 1; g = 1, 10, 0; p' = 3, 1, 2; q' = 1, 2, 3. By hand (paper 2.7 fifo):
    # f0 [0,2) -> b0 key 3 | f1 [2,4) -> b1 key 14 | f2 [4,5) -> b2 key 5 | b0 [5,8) | b2 [8,10) | b1 [14,15)
    # finishes 9, 17, 13: makespan 17.
    inst = one_helper([0, 1, 2], [2, 2, 1], [1, 10, 0], [3, 1, 2], [1, 2, 3])
    sol = solve(inst, "random", dispatch="fcfs")
    assert sol.plan.orders[0].tolist() == [[0, F], [1, F], [2, F], [0, B], [2, B], [1, B]]
    tl = sol.timeline
    np.testing.assert_array_equal(tl.fwd_start, [0, 2, 4])
    np.testing.assert_array_equal(tl.bwd_start, [5, 14, 8])
    np.testing.assert_array_equal(tl.finish, [9, 17, 13])
    assert tl.makespan == 17
    assert tl.helper_busy.tolist() == [11] and tl.helper_span.tolist() == [15] and tl.helper_idle.tolist() == [4]


def test_fcfs_idles_for_the_earliest_release_and_breaks_ties_by_list_position() -> None:
    # Both forwards released at 5: client 0 (earlier in the list) first. Client 1's backward is
    # released at 12; client 0's at 20: FCFS waits for 12 although nothing else is ready.
    inst = one_helper([5, 5], [1, 1], [14, 5], [1, 1], [0, 0])
    sol = solve(inst, "balanced-greedy", dispatch="fcfs")
    assert sol.plan.orders[0].tolist() == [[0, F], [1, F], [1, B], [0, B]]
    np.testing.assert_array_equal(sol.timeline.bwd_start, [20, 12])


def test_priority_rules_run_released_forward_before_backward() -> None:
    inst = one_helper([0, 1, 2], [2, 2, 1], [1, 10, 0], [3, 1, 2], [1, 2, 3])
    sol = solve(inst, "random", dispatch="fwd-first")
    kinds = [k for _, k in sol.plan.orders[0].tolist()]
    assert kinds == [F, F, F, B, B, B]


def test_balanced_greedy_with_loose_memory_is_round_robin() -> None:
    inst = random_instance(3, K=23, H=4, integer_times=False, tight_memory=False)
    np.testing.assert_array_equal(assign(inst, "balanced-greedy"), np.arange(23) % 4)


@pytest.fixture
def inst() -> Instance:
    return random_instance(7, K=6, H=2, integer_times=False, tight_memory=False)


def plan_of(inst: Instance) -> Plan:
    return solve(inst, "balanced-greedy").plan


def test_valid_plan_evaluates(inst) -> None:
    tl = evaluate(inst, plan_of(inst))
    assert tl.makespan == tl.finish.max() > 0
    rows = np.arange(inst.K)
    a = plan_of(inst).assignment
    assert (tl.fwd_start >= inst.r[rows, a]).all()
    assert (tl.bwd_start >= tl.fwd_end + inst.gap[rows, a] - 1e-9).all()


def test_wrong_assignment_length(inst) -> None:
    plan = plan_of(inst)
    with pytest.raises(AssignmentError, match="assigns 5 clients"):
        evaluate(inst, Plan(plan.assignment[:5], plan.orders))


def test_unknown_helper(inst) -> None:
    plan = plan_of(inst)
    a = plan.assignment.copy()
    a[2] = 9
    with pytest.raises(AssignmentError, match="helper 9"):
        evaluate(inst, Plan(a, plan.orders))


def test_memory_exceeded() -> None:
    inst = random_instance(1, K=6, H=2, integer_times=False, tight_memory=False)
    tight = Instance(**{n: getattr(inst, n) for n in ("r", "p", "d", "l", "r_bwd", "p_bwd", "d_bwd", "l_bwd")},
                     mem=np.full(6, 10.0), cap=np.array([30.0, 40.0]))
    everyone_on_0 = Plan(np.zeros(6, dtype=np.int64), (np.array([[j, k] for k in (F, B) for j in range(6)]), np.empty((0, 2))))
    with pytest.raises(MemoryCapacityError, match="60 MB but has 30 MB"):
        evaluate(tight, everyone_on_0)


def test_missing_job(inst) -> None:
    plan = plan_of(inst)
    orders = (plan.orders[0][:-1], plan.orders[1])
    with pytest.raises(JobCoverageError, match="is in no helper's order"):
        evaluate(inst, Plan(plan.assignment, orders))


def test_duplicate_job(inst) -> None:
    plan = plan_of(inst)
    orders = (np.vstack([plan.orders[0], plan.orders[0][:1]]), plan.orders[1])
    with pytest.raises(JobCoverageError, match="appears twice"):
        evaluate(inst, Plan(plan.assignment, orders))


def test_job_on_the_wrong_helper(inst) -> None:
    plan = plan_of(inst)
    moved = plan.orders[0][-1:]
    orders = (plan.orders[0][:-1], np.vstack([plan.orders[1], moved]))
    with pytest.raises(JobCoverageError, match="which is assigned to helper 0"):
        evaluate(inst, Plan(plan.assignment, orders))


def test_backward_before_forward(inst) -> None:
    plan = plan_of(inst)
    order = plan.orders[0].tolist()
    j = order[0][0]
    order.remove([j, B])
    order.insert(0, [j, B])
    with pytest.raises(JobOrderError, match="before its forward job"):
        evaluate(inst, Plan(plan.assignment, (np.array(order), plan.orders[1])))


def test_unknown_job_kind_and_client(inst) -> None:
    plan = plan_of(inst)
    bad_kind = plan.orders[0].copy()
    bad_kind[0, 1] = 7
    with pytest.raises(JobCoverageError, match="unknown kind 7"):
        evaluate(inst, Plan(plan.assignment, (bad_kind, plan.orders[1])))
    bad_client = plan.orders[0].copy()
    bad_client[0, 0] = 99
    with pytest.raises(JobCoverageError, match="client 99"):
        evaluate(inst, Plan(plan.assignment, (bad_client, plan.orders[1])))


def test_orders_for_wrong_number_of_helpers(inst) -> None:
    plan = plan_of(inst)
    with pytest.raises(JobCoverageError, match="for 1 helpers, the instance has 2"):
        evaluate(inst, Plan(plan.assignment, plan.orders[:1]))


def test_fast_check_agrees_with_the_rule_by_rule_check() -> None:
    # validate's array check must accept exactly the plans its rule-by-rule loop accepts: corrupt valid plans at
    # random (swap two jobs, move a job to another helper, change a kind or client) and compare the two verdicts.
    rng = np.random.default_rng(7)
    verdicts = set()
    for trial in range(300):
        inst = random_instance(trial, int(rng.integers(2, 7)), int(rng.integers(1, 4)), False, False)
        plan = solve(inst, "greedy-eft").plan
        orders = [o.copy() for o in plan.orders]
        assignment = plan.assignment.copy()
        i = int(rng.integers(inst.H))
        what = trial % 4
        if what == 0 and len(orders[i]) > 1:
            x, y = rng.choice(len(orders[i]), 2, replace=False)
            orders[i][[x, y]] = orders[i][[y, x]]
        elif what == 1 and len(orders[i]):
            other = int(rng.integers(inst.H))
            row = orders[i][int(rng.integers(len(orders[i])))]
            orders[other] = np.vstack([orders[other], row[None]])
        elif what == 2 and len(orders[i]):
            orders[i][int(rng.integers(len(orders[i]))), 1] = int(rng.integers(0, 3))
        elif what == 3 and len(orders[i]):
            orders[i][int(rng.integers(len(orders[i]))), 0] = int(rng.integers(-1, inst.K + 1))
        changed = Plan(assignment, tuple(orders))
        fast = _plainly_valid(inst, changed)
        try:
            evaluate(inst, changed)
            slow = True
        except PlanError:
            slow = False
        assert fast == slow
        verdicts.add(fast)
    assert verdicts == {True, False}
