"""Micro-batch pipelining: compiled vs pure kernels, N = 1 reproduces today's plans, formats, bound vs brute force."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgepsl import _core as core
from edgepsl.plan import pure
from edgepsl.plan.backend import kernel_arrays, kernels
from edgepsl.plan.errors import (InstanceError, JobCoverageError, JobOrderError, MicroBatchError, PlanFormatError,
                                 SearchLimitError)
from edgepsl.plan.evaluate import evaluate
from edgepsl.plan.heuristics import solve
from edgepsl.plan.instance import Instance
from edgepsl.plan.pipeline import aps_micro, pipeline_bound, stage_times, whole_stages
from edgepsl.plan.pipeline_search import dispatch_pipelined, solve_pipelined
from edgepsl.plan.pure.constants import BWD, FWD
from edgepsl.plan.pure.pipeline import run_helper
from edgepsl.plan.scenarios import scenario_instance
from edgepsl.plan.schedule import Plan
from edgepsl.plan.solvers import SolverOptionError, plan

from .instances import random_instance


def staged(inst: Instance, seed: int, max_n: int, batch: int = 8) -> Instance:
    """The instance with random stage fields: upload parts of r and r', fixed costs, batch and N in 1..max_n."""
    rng = np.random.default_rng(seed)
    K, H = inst.K, inst.H
    return dataclasses.replace(
        inst, r_up=inst.r * rng.uniform(0, 1, (K, H)), r_bwd_up=inst.r_bwd * rng.uniform(0, 1, (K, H)),
        o_client=rng.uniform(0, 1, K), o_link=rng.uniform(0, 1, (K, H)), o_helper=rng.uniform(0, 0.5, H),
        batch=np.full(K, float(batch)), micro=rng.integers(1, max_n + 1, K).astype(float))


def pipe_args(inst: Instance, micro: np.ndarray) -> tuple:
    return micro, inst.r, inst.gap, inst.tail, stage_times(inst, micro)


def random_order(inst: Instance, assign: np.ndarray, micro: np.ndarray, rng: np.random.Generator) -> Plan:
    """A uniformly drawn valid micro-batch job order per helper."""
    orders = []
    for i in range(inst.H):
        nf = {int(j): 0 for j in np.flatnonzero(assign == i)}
        nb = dict(nf)
        rows = []
        while True:
            options = [(j, FWD) for j in nf if nf[j] < micro[j]] + [(j, BWD) for j in nf if nb[j] < nf[j]]
            if not options:
                break
            j, kind = options[rng.integers(len(options))]
            (nf if kind == FWD else nb)[j] += 1
            rows.append((j, kind))
        orders.append(np.array(rows, dtype=np.int64).reshape(-1, 2))
    return Plan(assign, tuple(orders), micro=micro)


instances = st.builds(random_instance, seed=st.integers(0, 2**32 - 1), K=st.integers(1, 8), H=st.integers(1, 3),
                      integer_times=st.booleans(), tight_memory=st.just(False))


@settings(max_examples=300, deadline=None)
@given(inst=instances, seed=st.integers(0, 2**32 - 1), max_n=st.integers(1, 4))
def test_pipeline_kernels_agree(inst, seed, max_n) -> None:
    inst = staged(inst, seed, max_n)
    rng = np.random.default_rng(seed)
    assign = rng.integers(0, inst.H, inst.K)
    args = pipe_args(inst, inst.micro_batches)
    for rule in pure.PIPE_RULES:
        c, p = core.pipe_dispatch(assign, rule, *args), pure.pipe_dispatch(assign, rule, *args)
        for x, y in zip(c, p):
            np.testing.assert_array_equal(x, y)
        for i in range(inst.H):
            members = np.flatnonzero(assign == i).astype(np.int64)
            assert core.pipe_span(members, i, rule, *args) == pure.pipe_span(members, i, rule, *args) == c[3][i]
        ev = core.pipe_evaluate(assign, *c[:3], *args)
        for x, y in zip(ev, pure.pipe_evaluate(assign, *c[:3], *args)):
            np.testing.assert_array_equal(x, y)
        # The dispatched order, run as a fixed order, ends when dispatch said.
        span = np.zeros(inst.H)
        np.maximum.at(span, assign, ev[2])
        np.testing.assert_array_equal(span, c[3])
    other = random_order(inst, assign, inst.micro_batches, rng)
    flat = other.flat()
    for x, y in zip(core.pipe_evaluate(assign, *flat, *args), pure.pipe_evaluate(assign, *flat, *args)):
        np.testing.assert_array_equal(x, y)
    assert core.PIPE_RULES == pure.PIPE_RULES


@settings(max_examples=200, deadline=None)
@given(inst=instances, seed=st.integers(0, 2**32 - 1), rule=st.sampled_from(pure.RULES))
def test_n1_pipeline_evaluation_is_todays_evaluation(inst, seed, rule) -> None:
    one = staged(inst, seed, 1)
    assign = np.random.default_rng(seed).integers(0, inst.H, inst.K)
    flat = kernels.dispatch(assign, rule, *kernel_arrays(inst))
    old = kernels.evaluate(assign, *flat, *kernel_arrays(inst))
    new = core.pipe_evaluate(assign, *flat, *pipe_args(one, one.micro_batches))
    np.testing.assert_array_equal(new.finish if hasattr(new, "finish") else new[2], old.finish)


@pytest.mark.parametrize("seed", range(6))
def test_version1_instances_plan_exactly_as_before(seed) -> None:
    v1 = random_instance(seed, 7, 3, bool(seed % 2), bool(seed % 3 == 0))
    v3 = staged(v1, seed, 1)
    assert v3.to_dict()["version"] == 3 and v1.to_dict()["version"] == 1
    before = solve(v1, "greedy-ls", budget=20_000, seed=seed)
    for inst, option in ((v3, {}), (v3, {"micro_batches": 1}), (v1, {})):
        after = plan(inst, "greedy-ls", budget=20_000, seed=seed, **option)
        assert after.makespan == before.makespan
        assert after.plan.to_dict()["orders"] == before.plan.to_dict()["orders"]
        assert after.plan.to_dict()["version"] == 1 and after.plan.micro is None


def test_scenario_n1_instance_keeps_todays_fields_and_plan() -> None:
    v1 = scenario_instance("resnet101_cifar10", 8, 3, 1, 4)
    v3 = scenario_instance("resnet101_cifar10", 8, 3, 1, 4, micro_batches=1)
    for name in ("r", "p", "d", "l", "r_bwd", "p_bwd", "d_bwd", "l_bwd", "mem", "cap"):
        np.testing.assert_array_equal(getattr(v1, name), getattr(v3, name))
    assert plan(v3, "greedy-ls", budget=50_000).makespan == plan(v1, "greedy-ls", budget=50_000).makespan
    np.testing.assert_allclose(whole_stages(v3)[..., 0] + whole_stages(v3)[..., 1], v3.r)


def test_instance_version3_round_trip_and_validation() -> None:
    inst = staged(random_instance(1, 4, 2, False, False), 1, 3)
    back = Instance.from_dict(inst.to_dict())
    assert back.staged and back.to_dict() == inst.to_dict()
    hybrid = dataclasses.replace(inst, r_own=inst.l, p_own=inst.l, r_bwd_own=inst.l, p_bwd_own=inst.l,
                                 cap_own=inst.mem)
    both = Instance.from_dict(hybrid.to_dict())
    assert both.hybrid and both.staged and both.to_dict()["version"] == 3
    data = inst.to_dict()
    del data["o_link"]
    with pytest.raises(InstanceError, match="missing field\\(s\\): o_link"):
        Instance.from_dict(data)
    with pytest.raises(InstanceError, match="micro-batch stage fields come all or none"):
        dataclasses.replace(inst, o_link=None)
    with pytest.raises(InstanceError, match="N <= B"):
        dataclasses.replace(inst, micro=np.full(4, 9.0))
    with pytest.raises(InstanceError, match="whole numbers >= 1"):
        dataclasses.replace(inst, micro=np.full(4, 1.5))
    with pytest.raises(InstanceError, match="the upload is a part of r"):
        dataclasses.replace(inst, r_up=inst.r + 1.0)


def test_plan_version3_round_trip_and_checks() -> None:
    inst = staged(random_instance(2, 4, 2, False, False), 2, 1)
    micro = np.array([3, 1, 2, 2])
    piped = dispatch_pipelined(inst, np.array([0, 1, 0, 1]), micro)
    doc = piped.to_dict()
    assert doc["version"] == 3 and doc["micro_batches"] == micro.tolist()
    assert all(len(job) == 3 for order in doc["orders"] for job in order)
    back = Plan.from_dict(doc)
    assert back.to_dict() == doc and evaluate(inst, back).makespan == evaluate(inst, piped).makespan
    for i in range(inst.H):
        for (j, kind) in {(j, kind) for j, kind, _ in piped.jobs(i)}:
            assert [n for jj, kk, n in piped.jobs(i) if (jj, kk) == (j, kind)] == list(range(micro[j]))
    swapped = dict(doc, orders=[[doc["orders"][0][1], doc["orders"][0][0], *doc["orders"][0][2:]], doc["orders"][1]])
    if swapped["orders"][0][0][:2] == swapped["orders"][0][1][:2]:
        with pytest.raises(PlanFormatError, match="out of micro-batch order"):
            Plan.from_dict(swapped)
    short = Plan(piped.assignment, (piped.orders[0][:-1], piped.orders[1]), micro=micro)
    with pytest.raises(JobCoverageError, match="in no helper's order"):
        evaluate(inst, short)
    rows = piped.orders[0]
    first_bwd = int(np.flatnonzero(rows[:, 1] == BWD)[0])
    early = np.concatenate([rows[first_bwd:first_bwd + 1], rows[:first_bwd], rows[first_bwd + 1:]])
    with pytest.raises(JobOrderError, match="before its forward job"):
        evaluate(inst, Plan(piped.assignment, (early, piped.orders[1]), micro=micro))
    plain = random_instance(2, 4, 2, False, False)
    with pytest.raises(MicroBatchError, match="no stage fields"):
        evaluate(plain, piped)
    with pytest.raises(MicroBatchError, match="batch holds"):
        evaluate(dataclasses.replace(inst, batch=np.full(4, 2.0), micro=np.ones(4)), piped)


def _helper_optimum(inst: Instance, i: int, clients: list[int], micro: np.ndarray, args: tuple) -> float:
    """The least span of helper i over every valid order of its clients' micro-batch jobs."""
    best = np.inf

    def extend(order, nf, nb):
        nonlocal best
        if len(order) == 2 * sum(int(micro[j]) for j in clients):
            best = min(best, run_helper(i, clients, micro, 0, *args, order=list(order))[4])
            return
        for j in clients:
            if nf[j] < micro[j]:
                nf[j] += 1
                extend(order + [(j, FWD)], nf, nb)
                nf[j] -= 1
            if nb[j] < nf[j]:
                nb[j] += 1
                extend(order + [(j, BWD)], nf, nb)
                nb[j] -= 1

    extend([], {j: 0 for j in clients}, {j: 0 for j in clients})
    return 0.0 if not clients else best


@pytest.mark.parametrize("seed", range(8))
def test_bound_never_above_the_exhaustive_optimum(seed) -> None:
    inst = staged(random_instance(seed, 3, 2, bool(seed % 2), False), seed, 1, batch=2)
    best = np.inf
    for micro in itertools.product((1, 2), repeat=inst.K):
        micro = np.array(micro, dtype=np.int64)
        st_ = stage_times(inst, micro)
        args = (inst.r, inst.gap, inst.tail, st_)
        for assign in itertools.product(range(inst.H), repeat=inst.K):
            if max(sum(int(micro[j]) for j in range(inst.K) if assign[j] == i) for i in range(inst.H)) > 4:
                continue  # keep the enumeration small: at most 8 jobs on a helper
            spans = [_helper_optimum(inst, i, [j for j in range(inst.K) if assign[j] == i], micro, args)
                     for i in range(inst.H)]
            best = min(best, max(spans))
    bound = pipeline_bound(inst).value
    assert bound <= best
    found = solve_pipelined(inst, "auto", budget=20_000)
    assert bound <= found.makespan and found.bound.value == bound


def test_aps_rule_by_hand() -> None:
    inst = scenario_instance("vgg19_cifar10", 3, 2, 1, 0, micro_batches=1)
    w = whole_stages(inst)
    for j in range(inst.K):
        i = int(np.argmin(inst.r_up[j] + inst.r_bwd_up[j]))
        link = w[j, i, 1] + w[j, i, 5] + w[j, i, 3] + w[j, i, 7]
        device = min(w[j, i, 0] + inst.l[j], w[j, i, 4] - inst.l[j] + w[j, i, 8])
        n = min(int(np.ceil((link + w[j, i, 2] + w[j, i, 6]) / device)) + 1, 64, 100)
        assert aps_micro(inst)[j] == 128 // (128 // n)


@pytest.mark.parametrize("profile,K,H", [("vgg19_cifar10", 6, 2), ("resnet101_cifar10", 8, 3)])
def test_auto_never_worse_than_unpipelined_or_pipar(profile, K, H) -> None:
    inst = scenario_instance(profile, K, H, 1, 1, micro_batches=1)
    sol = plan(inst, "greedy-ls", budget=50_000, micro_batches="auto")
    meta = sol.plan.meta
    assert sol.makespan <= meta["aps_makespan"] and sol.makespan <= meta["unpipelined_makespan"]
    assert evaluate(inst, sol.plan).makespan == sol.makespan
    assert sol.bound.value <= sol.makespan
    fixed = plan(inst, "greedy-ls", budget=50_000, micro_batches=4)
    assert (fixed.plan.micro_batches == 4).all() and fixed.bound.value <= fixed.makespan


def test_micro_batches_option_is_checked() -> None:
    inst = scenario_instance("vgg19_cifar10", 3, 2, 1, 0)
    with pytest.raises(SolverOptionError, match="whole number >= 1 or 'auto'"):
        plan(inst, "greedy-ls", micro_batches=0)
    with pytest.raises(InstanceError, match="stage fields"):
        plan(inst, "greedy-ls", micro_batches="auto")
    with pytest.raises(SearchLimitError):
        solve_pipelined(inst, "many")


def test_gantt_and_trace_show_micro_batches() -> None:
    from edgepsl.plan.gantt import HELPERS, LINKS, chrome_trace, gantt_layout

    inst = scenario_instance("vgg19_cifar10", 3, 2, 1, 0, micro_batches=1)
    sol = plan(inst, "greedy-ls", budget=20_000, micro_batches=3)
    layout = gantt_layout(inst, sol.plan, sol.timeline)
    helper_bars = [s for s in layout.segments if s.group == HELPERS]
    assert len(helper_bars) == 2 * int(sol.plan.micro_batches.sum())
    assert {s.label for s in helper_bars} == {f"{j}.{k}" for j in range(3) for k in range(3)}
    assert len(layout.links) == 2 * 3
    trace = chrome_trace(inst, sol.plan, sol.timeline)
    names = {e["name"] for e in trace["traceEvents"] if e["ph"] == "X"}
    assert "fwd client 0 micro-batch 2" in names and "upload act 0" in names
    ends = [s.end for s in layout.segments if s.group != LINKS]
    assert max(ends) == pytest.approx(sol.makespan)


def test_run_config_key_and_cli_option(tmp_path, capsys) -> None:
    import json

    from edgepsl.cli import main
    from edgepsl.runtime.config import RunConfig
    from edgepsl.runtime.errors import RunConfigError

    assert RunConfig.from_dict({"micro_batches": 4}).micro_batches == "4"
    assert RunConfig.from_dict({"micro_batches": "auto"}).micro_batches == "auto"
    assert RunConfig().micro_batches == "1"
    with pytest.raises(RunConfigError, match="micro_batches"):
        RunConfig.from_dict({"micro_batches": "0"})
    out = tmp_path / "plan"
    assert main(["plan", "--profile", "vgg19_cifar10", "-K", "4", "-H", "2", "--micro-batches", "auto", "--no-plot",
                 "--budget", "20000", "--out", str(out)]) == 0
    assert "micro-batch  N per client" in capsys.readouterr().out
    doc = json.loads((out / "plan.json").read_text())
    assert doc["version"] == 3 and Instance.load(out / "instance.json").staged
    written = Instance.load(out / "instance.json")
    assert evaluate(written, Plan.from_dict(doc)).makespan == doc["evaluation"]["makespan_ms"]


@pytest.mark.parametrize("seed", range(3))
def test_milp_reaches_the_exhaustive_optimum_for_fixed_n(seed) -> None:
    pytest.importorskip("highspy")
    inst = staged(random_instance(seed, 3, 2, bool(seed % 2), False), seed, 1, batch=2)
    inst = dataclasses.replace(inst, micro=np.array([2.0, 1.0, 2.0]))
    micro = inst.micro_batches
    args = (inst.r, inst.gap, inst.tail, stage_times(inst, micro))
    best = min(max(_helper_optimum(inst, i, [j for j in range(3) if assign[j] == i], micro, args) for i in range(2))
               for assign in itertools.product(range(2), repeat=3))
    sol = plan(inst, "milp", budget=20_000, time_limit=30.0)
    assert sol.plan.micro_batches.tolist() == [2, 1, 2] and sol.optimal
    assert sol.makespan == pytest.approx(best, rel=1e-9)
    assert sol.bound.value <= sol.makespan <= plan(inst, "greedy-ls", budget=20_000).makespan
