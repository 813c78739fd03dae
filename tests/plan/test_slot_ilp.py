"""The paper's preemptive time-indexed ILP: feasible slot schedules, bounded by the non-preemptive optimum."""
from __future__ import annotations

import numpy as np
import pytest

from edgepsl.plan.bounds import lower_bound
from edgepsl.plan.milp import solve_milp
from edgepsl.plan.scenarios import scenario_instance
from edgepsl.plan.slot_ilp import SlotLengthError, discretise, solve_slot_ilp

from .instances import random_instance


def check_slot_schedule(inst, sol) -> int:
    """Check every rule of paper.md 2.1 on the slot allocation; return the recomputed makespan in slots."""
    finish = 0
    for j in range(inst.K):
        i = int(sol.assignment[j])
        fwd = np.flatnonzero(sol.slots[i] == 2 * j)
        bwd = np.flatnonzero(sol.slots[i] == 2 * j + 1)
        assert len(fwd) == inst.p[j, i] and len(bwd) == inst.p_bwd[j, i]
        assert fwd.min() >= inst.r[j, i]
        assert bwd.min() >= fwd.max() + 1 + inst.gap[j, i]
        finish = max(finish, int(bwd.max()) + 1 + int(inst.tail[j, i]))
        for other in range(inst.H):
            if other != i:
                assert not np.isin(sol.slots[other], (2 * j, 2 * j + 1)).any()
    load = np.bincount(sol.assignment, weights=inst.mem, minlength=inst.H)
    assert (load <= inst.cap).all()
    return finish


@pytest.mark.parametrize("seed", range(6))
def test_slot_ilp_is_feasible_and_no_worse_than_the_non_preemptive_optimum(seed) -> None:
    inst = random_instance(seed, K=4, H=2, integer_times=False, tight_memory=seed % 2 == 1)
    slot = 3.0
    sol = solve_slot_ilp(inst, slot, time_limit=30)
    disc = discretise(inst, slot)
    assert sol.optimal
    assert check_slot_schedule(disc, sol) == sol.makespan_slots
    assert sol.makespan_slots <= solve_milp(disc, time_limit=30).makespan + 1e-9
    assert sol.makespan_slots >= lower_bound(disc).value - 1e-9
    assert sol.makespan_ms == sol.makespan_slots * slot


def test_preemption_can_beat_any_non_preemptive_plan() -> None:
    inst = scenario_instance("resnet101_cifar10", 10, 2, 1, 0)
    sol = solve_slot_ilp(inst, 300.0, time_limit=60)
    disc = discretise(inst, 300.0)
    assert sol.optimal and check_slot_schedule(disc, sol) == sol.makespan_slots
    assert sol.makespan_slots < solve_milp(disc, time_limit=60).makespan


def test_discretisation_rounds_up_and_keeps_helper_jobs_non_empty() -> None:
    inst = random_instance(1, K=3, H=2, integer_times=False, tight_memory=False)
    disc = discretise(inst, 4.0)
    assert (disc.r >= inst.r / 4.0 - 1e-9).all() and (disc.r == np.ceil(disc.r)).all()
    assert (disc.p >= 1).all() and (disc.p_bwd >= 1).all()
    with pytest.raises(SlotLengthError, match="positive number of ms"):
        discretise(inst, 0.0)
