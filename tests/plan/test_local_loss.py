"""The local-loss mode's scheduling chain: instance and plan formats, kernels (compiled = pure) with the release
floor, evaluator against a direct simulation, bounds against brute force, and the planner's mode choice."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgepsl import _core as core
from edgepsl.plan import pure
from edgepsl.plan.backend import kernel_floor
from edgepsl.plan.bounds import lower_bound
from edgepsl.plan.errors import InstanceError, ModeError, PlanFormatError
from edgepsl.plan.evaluate import evaluate
from edgepsl.plan.instance import Instance
from edgepsl.plan.local_loss import requested_modes
from edgepsl.plan.profiles import load_profile
from edgepsl.plan.scenarios import scenario_instance
from edgepsl.plan.schedule import Plan
from edgepsl.plan.solvers import SolverOptionError, plan

from .instances import assert_same, kernel_arrays, random_instance, with_random_modes

mixed = st.builds(
    lambda seed, K, H, integer, tight: with_random_modes(random_instance(seed, K, H, integer, tight), seed, integer),
    seed=st.integers(0, 2**32 - 1), K=st.integers(1, 16), H=st.integers(1, 5), integer=st.booleans(),
    tight=st.booleans(),
)


def tiny(seed: int, K: int = 3, H: int = 2) -> Instance:
    """A tiny mixed-mode instance with integer times (exact comparisons)."""
    return with_random_modes(random_instance(seed, K, H, True, seed % 2 == 0), seed, True)


@settings(max_examples=300, deadline=None)
@given(inst=mixed, seed=st.integers(0, 2**32 - 1), rule=st.sampled_from(pure.RULES))
def test_kernels_with_a_release_floor_agree(inst, seed, rule) -> None:
    arrs, w = kernel_arrays(inst), kernel_floor(inst)
    assert_same(core.assign_greedy_eft(*arrs, inst.mem, inst.cap, floor=w),
                pure.assign_greedy_eft(*arrs, inst.mem, inst.cap, floor=w))
    assert_same(core.assign_greedy_insert(*arrs, inst.mem, inst.cap, 2, floor=w),
                pure.assign_greedy_insert(*arrs, inst.mem, inst.cap, 2, floor=w))
    priority = np.random.default_rng(seed).integers(0, 4, inst.K).astype(np.float64)
    assert_same(core.assign_greedy_insert(*arrs, inst.mem, inst.cap, 2, None, priority, floor=w),
                pure.assign_greedy_insert(*arrs, inst.mem, inst.cap, 2, None, priority, floor=w))
    assert_same(core.lower_bound(*arrs, inst.mem, inst.cap, floor=w), pure.lower_bound(*arrs, inst.mem, inst.cap,
                                                                                        floor=w))
    wa, wb = np.array([0.0, 5.0, 17.0]), np.array([0.0, 3.0, 11.0])
    assert_same(core.window_bound(*arrs, inst.mem, inst.cap, wa, wb, floor=w),
                pure.window_bound(*arrs, inst.mem, inst.cap, wa, wb, floor=w))
    assert_same(core.joint_bound(*arrs, inst.mem, inst.cap, inst.cap, wa, wb, 2, floor=w),
                pure.joint_bound(*arrs, inst.mem, inst.cap, inst.cap, wa, wb, 2, floor=w))
    assign = np.random.default_rng(seed).integers(0, inst.H, inst.K)
    flat = core.dispatch(assign, rule, *arrs, floor=w)
    assert_same(flat, pure.dispatch(assign, rule, *arrs, floor=w))
    assert_same(core.evaluate(assign, *flat, *arrs, floor=w), pure.evaluate(assign, *flat, *arrs, floor=w))
    start = pure.assign_balanced_greedy(inst.mem, inst.cap)
    if (start >= 0).all():
        assert_same(core.local_search(start, *arrs, inst.mem, inst.cap, seed, 5_000, floor=w),
                    pure.local_search(start, *arrs, inst.mem, inst.cap, seed, 5_000, floor=w))


def simulate(inst: Instance, assign: np.ndarray, orders: list[list[tuple[int, int]]]) -> np.ndarray:
    """Each client's finish, simulated from the physical chain: a local-loss client runs part-1 forward (r_cpu),
    then its local step (aux) while the activations travel; part-3 starts when both are done; nothing follows the
    helper's backward. A SplitFed client waits for the cut-1 gradient (d') and runs part-1 backward (l')."""
    finish = np.zeros(inst.K)
    for i, order in enumerate(orders):
        tau, fwd_end = 0.0, {}
        for j, kind in order:
            if kind == 0:
                tau = max(tau, inst.r[j, i]) + inst.p[j, i]
                fwd_end[j] = tau
                continue
            arrive = fwd_end[j] + inst.d[j, i]
            part3 = max(arrive, inst.r_cpu[j] + inst.aux[j]) if inst.local_loss[j] else arrive
            tau = max(tau, part3 + inst.l[j] + inst.r_bwd[j, i]) + inst.p_bwd[j, i]
            finish[j] = tau if inst.local_loss[j] else tau + inst.d_bwd[j, i] + inst.l_bwd[j]
    return finish


def every_plan(inst: Instance):
    """Every assignment within memory with every valid job order per helper."""
    for a in itertools.product(range(inst.H), repeat=inst.K):
        a = np.array(a)
        if (np.bincount(a, weights=inst.mem, minlength=inst.H) > inst.cap).any():
            continue
        per_helper = []
        for i in range(inst.H):
            jobs = [(j, k) for j in np.flatnonzero(a == i).tolist() for k in (0, 1)]
            per_helper.append([seq for seq in itertools.permutations(jobs)
                               if all(seq.index((j, 0)) < seq.index((j, 1)) for j, _ in seq)])
        for orders in itertools.product(*per_helper):
            yield a, [list(o) for o in orders]


@pytest.mark.parametrize("seed", range(12))
def test_evaluator_and_bounds_match_the_simulated_chain(seed) -> None:
    inst = tiny(seed)
    best = None
    for a, orders in every_plan(inst):
        timeline = evaluate(inst, Plan(a, tuple(np.array(o).reshape(-1, 2) for o in orders)))
        np.testing.assert_array_equal(timeline.finish, simulate(inst, a, orders))
        best = timeline.makespan if best is None else min(best, timeline.makespan)
    assert lower_bound(inst).value <= best
    assert plan(inst, "greedy-ls").makespan == best  # K = 3: greedy-ls ends with the exhaustive search


def test_floor_binds_when_the_local_step_outlasts_the_round_trip() -> None:
    one = dict(r=[[10.0]], p=[[2.0]], d=[[3.0]], l=[4.0], r_bwd=[[5.0]], p_bwd=[[1.0]], d_bwd=[[6.0]], l_bwd=[7.0],
               mem=[1.0], cap=[1.0])
    fast = Instance(**one, local_loss=[1.0], r_cpu=[4.0], aux=[8.0])
    slow = Instance(**one, local_loss=[1.0], r_cpu=[4.0], aux=[20.0])
    splitfed = Instance(**one)
    single = Plan([0], (np.array([[0, 0], [0, 1]]),))
    assert evaluate(splitfed, single).makespan == 10 + 2 + 3 + 4 + 5 + 1 + 6 + 7
    assert evaluate(fast, single).makespan == 10 + 2 + 3 + 4 + 5 + 1       # local step done by the activations
    assert evaluate(slow, single).makespan == 4 + 20 + 4 + 5 + 1            # part-3 waits for the local step
    assert lower_bound(slow).chain == 34.0


def test_instances_without_the_fields_are_unchanged_and_version_4_round_trips(tmp_path) -> None:
    inst = scenario_instance("vgg19_cifar10", 6, 2, 1, 0)
    with_times = scenario_instance("vgg19_cifar10", 6, 2, 1, 0, loss_times=True)
    assert inst.to_dict()["version"] == 1 and "aux" not in inst.to_dict()
    for name in ("r", "p", "d", "l", "r_bwd", "p_bwd", "d_bwd", "l_bwd", "mem", "cap"):
        np.testing.assert_array_equal(getattr(inst, name), getattr(with_times, name))
    prof = load_profile("vgg19_cifar10")
    part1 = prof.part_fwd_ms(0, 3)[list(prof.devices).index("d1")]
    assert set(with_times.r_cpu.tolist()) <= {part1, prof.part_fwd_ms(0, 3)[list(prof.devices).index("d2")]}
    assert (with_times.aux >= with_times.l_bwd).all() and (with_times.aux > with_times.l_bwd).any()  # + head
    with_times.save(tmp_path / "i.json")
    back = Instance.load(tmp_path / "i.json")
    assert json.loads((tmp_path / "i.json").read_text())["version"] == 4
    np.testing.assert_array_equal(back.aux, with_times.aux)
    assert plan(inst, "greedy-ls", budget=20_000).plan.to_dict() == plan(inst, "greedy-ls",
                                                                          budget=20_000).plan.to_dict()
    assert "local_loss" not in plan(inst, "greedy-ls", budget=20_000).plan.to_dict()


def test_bad_local_loss_fields_and_modes_are_rejected() -> None:
    inst = tiny(1)
    with pytest.raises(InstanceError, match="local_loss\\[0\\] = 2"):
        Instance.from_dict({**inst.to_dict(), "local_loss": [2.0] * inst.K})
    with pytest.raises(InstanceError, match="r_cpu\\[0\\] .* exceeds r\\[0\\]"):
        Instance.from_dict({**inst.to_dict(), "r_cpu": (inst.r.max(axis=1) + 1).tolist()})
    with pytest.raises(InstanceError, match="local-loss fields come all or none"):
        Instance(**{n: getattr(inst, n) for n in ("r", "p", "d", "l", "r_bwd", "p_bwd", "d_bwd", "l_bwd", "mem",
                                                   "cap")}, aux=inst.aux)
    bare = random_instance(1, 3, 2, True, False)
    with pytest.raises(ModeError, match="no local-loss times"):
        bare.with_loss_modes(np.ones(3, dtype=bool))
    with pytest.raises(SolverOptionError, match="neither one of"):
        plan(inst, "greedy-ls", local_loss="sometimes")
    with pytest.raises(ModeError, match="names client 7"):
        requested_modes(inst, "auto:0,7")
    with pytest.raises(ModeError, match="does not plan"):
        plan(inst.with_loss_modes(np.ones(inst.K, dtype=bool)), "admm")
    staged = scenario_instance("vgg19_cifar10", 4, 2, 1, 0, micro_batches=2, loss_times=True)
    with pytest.raises(ModeError, match="micro-batches"):
        plan(staged, "greedy-ls", local_loss="all", budget=1_000)


def test_plans_record_modes_and_version_4_plans_round_trip() -> None:
    inst = tiny(2, K=4)
    sol = plan(inst, "greedy-ls", local_loss="all", budget=20_000)
    assert sol.plan.local_loss.all()
    doc = sol.plan.to_dict()
    assert doc["version"] == 4 and doc["local_loss"] == [True] * 4
    back = Plan.from_dict(json.loads(json.dumps(doc)))
    assert evaluate(inst, back).makespan == sol.makespan
    # The plan's modes, not the instance's, decide the chain.
    assert evaluate(inst.with_loss_modes(np.zeros(4, dtype=bool)), back).makespan == sol.makespan
    with pytest.raises(PlanFormatError, match="one true .* or false"):
        Plan.from_dict({**doc, "local_loss": [1, 0, 1, 0]})
    with pytest.raises(ModeError, match="modes for 3 clients"):
        evaluate(inst, Plan(back.assignment, back.orders, local_loss=[True] * 3))


@pytest.mark.parametrize("seed", range(3))
def test_auto_is_never_longer_than_either_fixed_choice_and_keeps_splitfed_where_it_costs_nothing(seed) -> None:
    inst = scenario_instance("vgg19_cifar10", 8, 2, 1, seed, loss_times=True)
    none = plan(inst, "greedy-ls", local_loss="none", budget=50_000)
    every = plan(inst, "greedy-ls", local_loss="all", budget=50_000)
    auto = plan(inst, "greedy-ls", local_loss="auto", budget=50_000)
    assert auto.makespan <= min(none.makespan, every.makespan)
    assert every.makespan < none.makespan
    modes = auto.plan.local_loss
    assert evaluate(inst, auto.plan).makespan == auto.makespan
    for j in np.flatnonzero(modes)[:3]:  # each local-loss client of auto's plan is needed there
        back = modes.copy()
        back[j] = False
        trial = Plan(auto.plan.assignment, auto.plan.orders, local_loss=back)
        assert evaluate(inst, trial).makespan >= auto.makespan
    assert auto.bound.value <= auto.makespan
    listed = plan(inst, "greedy-ls", local_loss="auto:0,1", budget=50_000)
    assert not listed.plan.local_loss[2:].any()


def test_milp_is_exact_with_local_loss_clients() -> None:
    pytest.importorskip("highspy")
    for seed in range(3):
        inst = tiny(seed + 20)
        best = min(evaluate(inst, Plan(a, tuple(np.array(o).reshape(-1, 2) for o in orders))).makespan
                   for a, orders in every_plan(inst))
        sol = plan(inst, "milp", time_limit=30.0)
        assert sol.makespan == pytest.approx(best, rel=1e-9)


def test_the_trace_draws_the_local_step_and_no_cut1_gradient_for_local_loss_clients() -> None:
    from edgepsl.plan.gantt import chrome_trace

    inst = scenario_instance("vgg19_cifar10", 4, 2, 1, 0, loss_times=True)
    sol = plan(inst, "greedy-ls", local_loss="0,1", budget=10_000)
    names = {}
    for e in chrome_trace(sol.instance, sol.plan, sol.timeline)["traceEvents"]:
        if e["ph"] == "X" and e["cat"].startswith("client"):
            names.setdefault(e["args"]["client"], set()).add(e["name"])
    for j in (0, 1):
        assert "aux head + part-1 bwd" in names[j] and "part-1 bwd" not in names[j]
    for j in (2, 3):
        assert "part-1 bwd" in names[j] and "aux head + part-1 bwd" not in names[j]


def test_the_plan_command_plans_the_requested_modes(tmp_path, capsys) -> None:
    from edgepsl.cli import main

    out = tmp_path / "run"
    assert main(["plan", "--profile", "vgg19_cifar10", "-K", "6", "-H", "2", "--local-loss", "0,2", "--budget",
                 "20000", "--bound", "fast", "--no-plot", "--out", str(out)]) == 0
    assert "local loss   2 of 6 clients" in capsys.readouterr().out
    doc = json.loads((out / "plan.json").read_text())
    assert doc["version"] == 4 and doc["local_loss"] == [True, False, True, False, False, False]
    inst = Instance.load(out / "instance.json")
    assert evaluate(inst, Plan.from_dict(doc)).makespan == doc["evaluation"]["makespan_ms"]
    assert main(["plan", "--profile", "vgg19_cifar10", "-K", "6", "-H", "2", "--local-loss", "often", "--no-plot",
                 "--out", str(out)]) == 1
    assert "local_loss" in capsys.readouterr().err


def test_a_replan_keeps_the_modes_the_previous_plan_chose() -> None:
    from edgepsl.plan.replan import replan

    previous = scenario_instance("vgg19_cifar10", 6, 2, 1, 1, loss_times=True)
    first = plan(previous, "greedy-ls", local_loss="1,3,4", budget=20_000)
    changed = previous.subset(np.array([0, 1, 2, 4, 5]))  # client 3 left
    again = replan(changed, first.plan, previous, budget=20_000)
    assert again.plan.local_loss.tolist() == [False, True, False, True, False]
    assert evaluate(changed, again.plan).makespan == again.makespan
