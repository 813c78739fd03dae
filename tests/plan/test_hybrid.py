"""Hybrid mode: local-mode instance fields and plan values, the evaluator, the planner, its bound and the MILP."""
from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest

from edgepsl.cli import main
from edgepsl.plan.errors import (AssignmentError, InfeasibleError, InstanceError, InstanceFormatError,
                                 JobCoverageError, PlanFormatError)
from edgepsl.plan.evaluate import evaluate
from edgepsl.plan.exact import solve_exhaustive
from edgepsl.plan.gantt import gantt_layout
from edgepsl.plan.hybrid import hybrid_lower_bound, offload_rule, solve_baseline, solve_hybrid
from edgepsl.plan.instance import Instance
from edgepsl.plan.profiles import load_profile
from edgepsl.plan.scenarios import hybrid_instance
from edgepsl.plan.schedule import LOCAL, Plan
from edgepsl.plan.solvers import plan
from tests.plan.instances import random_instance


def hybrid_random(seed: int, K: int, H: int, tight_memory: bool = True) -> Instance:
    """A random instance with local-mode fields: local rounds comparable to split rounds, some clients without
    the memory for part-2."""
    rng = np.random.default_rng(1000 + seed)
    inst = random_instance(seed, K, H, integer_times=False, tight_memory=tight_memory)
    return dataclasses.replace(inst, r_own=rng.uniform(0, 10, K), p_own=rng.uniform(0, 20, K),
                               r_bwd_own=rng.uniform(0, 10, K), p_bwd_own=rng.uniform(0, 20, K),
                               cap_own=np.where(rng.random(K) < 0.7, inst.mem, inst.mem - 0.5))


def brute_hybrid_optimum(inst: Instance) -> float:
    """min over every local set of the clients that fit locally of max(largest L_j, exact split optimum)."""
    fits_local = np.flatnonzero(inst.local_fits)
    best = np.inf
    for n in range(len(fits_local) + 1):
        for local in itertools.combinations(fits_local.tolist(), n):
            split = np.array([j for j in range(inst.K) if j not in local], dtype=np.int64)
            value = max([0.0] + [float(inst.local_time[j]) for j in local])
            if split.size:
                try:
                    value = max(value, solve_exhaustive(inst.subset(split))[1])
                except InfeasibleError:
                    continue
            best = min(best, value)
    return best


def test_instance_without_local_fields_round_trips_as_version_1_unchanged() -> None:
    inst = random_instance(0, 5, 2, integer_times=False, tight_memory=True)
    data = inst.to_dict()
    assert data["version"] == 1 and "r_own" not in data
    assert json.dumps(Instance.from_dict(data).to_dict()) == json.dumps(data)
    assert not inst.hybrid and not inst.local_fits.any() and np.isinf(inst.local_time).all()


def test_instance_with_local_fields_round_trips_as_version_2(tmp_path) -> None:
    inst = hybrid_random(1, 5, 2)
    inst.save(tmp_path / "i.json")
    back = Instance.load(tmp_path / "i.json")
    assert back.to_dict()["version"] == 2 and back.hybrid
    for name in ("r_own", "p_own", "r_bwd_own", "p_bwd_own", "cap_own"):
        assert np.array_equal(getattr(back, name), getattr(inst, name))
    assert np.allclose(back.local_time, inst.r_own + inst.p_own + inst.l + inst.r_bwd_own + inst.p_bwd_own + inst.l_bwd)
    data = inst.to_dict()
    del data["cap_own"]
    with pytest.raises(InstanceFormatError, match="missing field\\(s\\): cap_own"):
        Instance.from_dict(data)
    with pytest.raises(InstanceError, match="all or none"):
        dataclasses.replace(random_instance(0, 3, 2, integer_times=False, tight_memory=False), p_own=np.ones(3))


def test_a_client_that_fits_no_helper_is_valid_when_it_fits_its_own_device() -> None:
    inst = hybrid_random(2, 4, 2)
    big = dataclasses.replace(inst, mem=np.r_[inst.cap.max() + 1, inst.mem[1:]],
                              cap_own=np.r_[inst.cap.max() + 1, inst.cap_own[1:]])
    sol = solve_hybrid(big)
    assert sol.plan.assignment[0] == LOCAL
    evaluate(big, sol.plan)
    with pytest.raises(InstanceError, match="nor on its own device"):
        dataclasses.replace(big, cap_own=np.r_[0.0, inst.cap_own[1:]])


def test_plan_with_local_clients_round_trips_as_version_2_and_old_plans_reject_local(tmp_path) -> None:
    inst = hybrid_instance("resnet101_cifar10", 12, 2, 0, local_memory_share=1.0)
    p = solve_hybrid(inst).plan
    assert p.local.any()
    p.save(tmp_path / "p.json")
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["version"] == 2
    back = Plan.load(tmp_path / "p.json")
    assert np.array_equal(back.assignment, p.assignment)
    data["version"], data["assignment"][0] = 1, LOCAL
    with pytest.raises(PlanFormatError, match="needs version 2"):
        Plan.from_dict(data)


def test_validation_of_local_mode() -> None:
    inst = hybrid_random(4, 5, 2, tight_memory=False)
    j = int(np.flatnonzero(~inst.local_fits)[0])
    orders = tuple(np.array([[c, k] for c in range(inst.K) for k in (0, 1) if c % 2 == i and c != j]).reshape(-1, 2)
                   for i in range(2))
    a = np.array([c % 2 for c in range(inst.K)])
    a[j] = LOCAL
    with pytest.raises(AssignmentError, match="cannot train locally"):
        evaluate(inst, Plan(a, orders))
    k = int(np.flatnonzero(inst.local_fits)[0])
    a = np.array([c % 2 for c in range(inst.K)])
    a[k] = LOCAL
    full = tuple(np.array([[c, kind] for c in range(inst.K) for kind in (0, 1) if c % 2 == i]).reshape(-1, 2)
                 for i in range(2))
    with pytest.raises(JobCoverageError, match="which is in local mode"):
        evaluate(inst, Plan(a, full))
    plain = random_instance(4, 5, 2, integer_times=False, tight_memory=False)
    with pytest.raises(AssignmentError, match="no local-mode times"):
        evaluate(plain, Plan(a, full))


def test_timeline_of_a_hybrid_plan() -> None:
    inst = hybrid_random(5, 6, 2)
    sol = solve_hybrid(inst)
    tl = evaluate(inst, sol.plan)
    local = sol.plan.local
    assert np.allclose(tl.finish[local], inst.local_time[local])
    split = np.flatnonzero(~local)
    if split.size:
        sub = inst.subset(split)
        sub_plan = Plan(sol.plan.assignment[split],
                        tuple(np.stack([np.searchsorted(split, o[:, 0]), o[:, 1]], axis=1) for o in sol.plan.orders))
        assert np.array_equal(evaluate(sub, sub_plan).finish, tl.finish[split])
    assert tl.makespan == pytest.approx(max(tl.finish))


@pytest.mark.parametrize("seed", range(6))
def test_hybrid_bound_and_planner_against_brute_force(seed) -> None:
    inst = hybrid_random(seed, 5, 2)
    opt = brute_hybrid_optimum(inst)
    sol = solve_hybrid(inst, seed=seed)
    evaluate(inst, sol.plan)
    assert hybrid_lower_bound(inst).value <= opt * (1 + 1e-9)
    assert opt <= sol.makespan * (1 + 1e-9)
    # five clients: greedy-ls ends each threshold's split set with the exhaustive search, so the planner is exact
    assert sol.makespan == pytest.approx(opt, rel=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_hybrid_milp_proves_the_optimum_and_the_bound_stays_below(seed) -> None:
    inst = hybrid_random(10 + seed, 6, 2)
    sol = plan(inst, "hybrid-milp", time_limit=30.0, seed=seed)
    assert sol.plan.method == "hybrid-milp" and sol.optimal
    assert hybrid_lower_bound(inst).value <= sol.makespan * (1 + 1e-9)
    assert plan(inst, "hybrid", seed=seed).makespan <= sol.makespan * 1.03
    assert sol.makespan <= plan(inst, "milp", time_limit=30.0, seed=seed).makespan * (1 + 1e-9)


def test_hybrid_is_never_above_all_split_and_equals_it_without_local_fields() -> None:
    for seed in range(3):
        inst = hybrid_instance("resnet101_cifar10", 16, 2, seed)
        assert plan(inst, "hybrid", seed=seed).makespan <= plan(inst, "greedy-ls", seed=seed).makespan
    plain = random_instance(7, 8, 2, integer_times=False, tight_memory=True)
    sol = plan(plain, "hybrid")
    assert not sol.plan.local.any()
    assert sol.makespan == plan(plain, "greedy-ls").makespan
    assert sol.bound.value == plan(plain, "greedy-ls").bound.value


@pytest.mark.parametrize("method", ["hybrid-random", "hybrid-rule-random", "hybrid-balanced-greedy"])
def test_hybrid_baselines_give_valid_plans(method) -> None:
    inst = hybrid_instance("resnet101_cifar10", 20, 2, 1)
    sol = solve_baseline(inst, method, seed=1)
    assert sol.plan.method == method
    assert evaluate(inst, sol.plan).makespan == sol.makespan >= sol.bound.value
    if method != "hybrid-random":
        assert np.array_equal(sol.plan.local, offload_rule(inst))


def test_hybrid_scenario_takes_local_times_from_the_profile() -> None:
    inst = hybrid_instance("resnet101_cifar10", 12, 2, 3)
    again = hybrid_instance("resnet101_cifar10", 12, 2, 3)
    assert json.dumps(inst.to_dict()) == json.dumps(again.to_dict())
    prof = load_profile("resnet101_cifar10")
    names = [n.split("(")[1].rstrip(")") for n in inst.client_names]
    assert set(names) <= {"d1", "jetson-cpu", "jetson-gpu"}
    assert all(n.endswith("(laptop)") for n in inst.helper_names)
    for j, dev in enumerate(names):
        row = prof.devices.index(dev)
        assert inst.p_own[j] == pytest.approx(prof.part_fwd_ms(3, 33)[row])
        assert inst.p_bwd_own[j] == pytest.approx(prof.part_bwd_ms(3, 33)[row])
        assert inst.r_own[j] == pytest.approx(prof.part_fwd_ms(0, 3)[row])


def test_gantt_draws_a_local_client_on_its_own_row() -> None:
    inst = hybrid_instance("resnet101_cifar10", 12, 2, 0, local_memory_share=1.0)
    sol = solve_hybrid(inst)
    j = int(np.flatnonzero(sol.plan.local)[0])
    layout = gantt_layout(inst, sol.plan, sol.timeline)
    mine = [s for s in layout.segments if s.client == j]
    assert {s.kind for s in mine} == {"client_compute", "local_part2"}
    assert all(s.group == "clients" and s.lane == j for s in mine)
    assert max(s.end for s in mine) == pytest.approx(inst.local_time[j])


def test_cli_plans_the_hybrid_scenario(tmp_path, capsys) -> None:
    out = tmp_path / "plan"
    assert main(["plan", "--profile", "resnet101_cifar10", "--hybrid-scenario", "-K", "12", "-H", "2", "--seed", "0",
                 "--method", "hybrid", "--no-plot", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "local mode" in printed and "clients train part-2 on their own device" in printed
    doc = json.loads((out / "plan.json").read_text())
    inst = Instance.load(out / "instance.json")
    assert inst.hybrid and doc["evaluation"]["local_clients"] == int(np.sum(np.array(doc["assignment"]) == LOCAL))
    assert doc["evaluation"]["lp_bound_ms"] is None
    assert evaluate(inst, Plan.load(out / "plan.json")).makespan == pytest.approx(doc["evaluation"]["makespan_ms"])
