"""Re-planning hybrid plans: local clients stay local while they fit, split clients are repaired by replan, and the
mode of a client that joined or whose helper left is chosen anew."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgepsl.plan.evaluate import validate
from edgepsl.plan.hybrid import replan_hybrid, restrict, solve_hybrid
from edgepsl.plan.instance import Instance
from edgepsl.plan.replan import replan
from edgepsl.plan.schedule import LOCAL, Plan
from tests.plan.test_hybrid import hybrid_random

K, H = 9, 3


def named(inst: Instance) -> Instance:
    """The instance with client and helper names (replan matches by name)."""
    return dataclasses.replace(inst, client_names=tuple(f"c{j}" for j in range(inst.K)),
                               helper_names=tuple(f"h{i}" for i in range(inst.H)))


def without_helper(inst: Instance, gone: int) -> Instance:
    """The instance with helper `gone` removed."""
    keep = [i for i in range(inst.H) if i != gone]
    columns = {name: getattr(inst, name)[:, keep] for name in ("r", "p", "d", "r_bwd", "p_bwd", "d_bwd")}
    return dataclasses.replace(inst, cap=inst.cap[keep], helper_names=tuple(inst.helper_names[i] for i in keep),
                               **columns)


def changed(seed: int, change: str) -> tuple[Instance, Instance]:
    """(previous, changed) instances, memory loose enough that every change leaves a plan."""
    full = named(hybrid_random(seed, K + 1, H, tight_memory=False))
    previous = full.subset(np.arange(K))
    if change == "add-client":
        return previous, full
    if change == "remove-client":
        return previous, previous.subset(np.arange(1, K))
    return previous, without_helper(previous, 0)


def old_modes(instance: Instance, plan: Plan, previous: Instance) -> float:
    """Makespan of keeping the old modes: the old local clients that still fit stay local, every other client
    (new ones too) splits, repaired by replan on the split sub-instance."""
    old_local = {previous.client_names[j] for j in np.flatnonzero(plan.assignment == LOCAL)}
    local = np.array([name in old_local for name in instance.client_names]) & instance.local_fits
    split = np.flatnonzero(~local)
    previous_split = np.flatnonzero(plan.assignment != LOCAL)
    sub = replan(instance.subset(split), restrict(plan, previous_split), previous.subset(previous_split))
    return max(sub.makespan, float(instance.local_time[local].max()) if local.any() else 0.0)


@pytest.mark.parametrize("change", ["remove-client", "add-client", "remove-helper"])
@pytest.mark.parametrize("seed", range(6))
def test_a_repaired_hybrid_plan_is_valid_no_worse_than_the_old_modes_and_close_to_planning_afresh(seed, change):
    previous, instance = changed(seed, change)
    before = solve_hybrid(previous, seed=seed)
    assert (before.plan.assignment == LOCAL).any() and (before.plan.assignment != LOCAL).any()
    got = replan_hybrid(instance, before.plan, previous, seed=seed)
    validate(instance, got.plan)
    assert got.plan.method == "replan-hybrid" and got.plan.meta["local_clients"] == (got.plan.assignment == LOCAL).sum()
    assert got.bound.local is not None and got.bound.value <= got.makespan + 1e-9
    assert got.makespan <= old_modes(instance, before.plan, previous) + 1e-9
    assert got.makespan <= 1.10 * solve_hybrid(instance, seed=seed).makespan


def test_a_joining_client_fast_on_its_own_device_goes_local_and_one_that_lost_its_memory_splits():
    previous = named(hybrid_random(3, K, H, tight_memory=False))
    before = solve_hybrid(previous)
    was_local = int(np.flatnonzero(before.plan.assignment == LOCAL)[0])
    cap_own = previous.cap_own.copy()
    cap_own[was_local] = 0.0
    shrunk = dataclasses.replace(previous, cap_own=cap_own)
    joined = shrunk.subset(np.r_[np.arange(K), was_local])    # a copy of a client that trains faster alone
    fast = {name: getattr(joined, name).copy() for name in ("r_own", "p_own", "r_bwd_own", "p_bwd_own", "cap_own")}
    for name in ("r_own", "p_own", "r_bwd_own", "p_bwd_own"):
        fast[name][-1] = 0.0
    fast["cap_own"][-1] = joined.mem[-1]
    instance = dataclasses.replace(joined, client_names=previous.client_names + ("newcomer",), **fast)
    got = replan_hybrid(instance, before.plan, previous)
    validate(instance, got.plan)
    assert got.plan.assignment[was_local] != LOCAL
    assert got.plan.assignment[-1] == LOCAL and got.plan.meta["reconsidered"] == 1


def test_unnamed_instances_of_the_same_clients_match_by_index():
    previous = hybrid_random(4, K, H, tight_memory=False)
    before = solve_hybrid(previous)
    slower = dataclasses.replace(previous, p=previous.p * 1.5)
    got = replan_hybrid(slower, before.plan, previous)
    validate(slower, got.plan)
    assert got.plan.meta["reconsidered"] == 0
    assert ((got.plan.assignment == LOCAL) <= (before.plan.assignment == LOCAL)).all()
