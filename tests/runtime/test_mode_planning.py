"""A run plans its learning modes (docs/modes.md, "Planning the modes"): the local-loss chain from each client's
measured aux step, the two-part split with part-3 on the helper; realised makespans follow the plan, so the drift
monitor does not re-plan, and the closed-loop estimates keep the modes' terms."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgepsl.plan.evaluate import evaluate
from edgepsl.plan.instance import Instance
from edgepsl.plan.schedule import Plan
from edgepsl.plan.solvers import plan as plan_instance
from edgepsl.runtime import planning
from edgepsl.runtime.checkpoint import load as ckpt_load
from edgepsl.runtime.client import Client, ClientOptions
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.coordinator import Coordinator
from edgepsl.runtime.emulation import Emulation, paper_fleet
from edgepsl.runtime.errors import RunConfigError
from edgepsl.runtime.estimates import Estimates
from edgepsl.runtime.helper import Helper, HelperOptions
from edgepsl.runtime.links import Links
from edgepsl.runtime.modes import AUX, PART1, PART3, LearningMode
from edgepsl.segment import load_manifest
from tests.runtime.conftest import run_threaded, small_run

CLIENTS, HELPERS = ["client0", "client1", "client2"], ["helper0", "helper1"]
TIMES = {"part1_fwd": 30.0, "part1_bwd": 40.0, "part3_fwd": 5.0, "part3_bwd": 6.0}
PART2_MS = {"part2_fwd": 20.0, "part2_bwd": 25.0}
PART3_MS = {"part3_fwd": 3.0, "part3_bwd": 4.0}
AUX_MS = 45.0
TOLERANCE = 0.10  # realised / planned makespan of every round


def _instance(config: RunConfig, aux: float | None = AUX_MS, part3: dict | None = PART3_MS) -> Instance:
    """The planning instance of 3 clients on 2 helpers with stated times and 8 Mbps links of 2 ms latency."""
    links = Links(tuple(CLIENTS), tuple(HELPERS), np.full((3, 2), 2.0), np.full((3, 2), 8.0),
                  (("declared",) * 2,) * 3, {})
    return planning.build_instance(config, load_manifest(config.artifact), CLIENTS, HELPERS,
                                   {c: {"times": TIMES, "aux_ms": aux} for c in CLIENTS},
                                   {h: {"times": PART2_MS, "part3_times": part3} for h in HELPERS}, links)


def test_a_local_loss_run_plans_the_local_loss_chain_of_its_configured_clients():
    splitfed = _instance(RunConfig())
    assert not splitfed.has_loss_times
    local = _instance(RunConfig(mode="local-loss"))
    assert local.local_loss.tolist() == [1.0] * 3 and local.aux.tolist() == [AUX_MS] * 3
    np.testing.assert_allclose(local.r_cpu, TIMES["part1_fwd"])
    np.testing.assert_allclose(local.r, splitfed.r)  # the chain's terms are SplitFed's; the modes change its rules
    planned = planning.make_plan(RunConfig(mode="local-loss"), local)
    assert planned.plan.local_loss.tolist() == [True] * 3
    assert planned.makespan < planning.make_plan(RunConfig(), splitfed).makespan
    one = _instance(RunConfig(local_loss_clients=("client1",)))
    assert one.local_loss.tolist() == [0.0, 1.0, 0.0]
    # with the helper's gradient (weight > 0) the client waits for it: SplitFed's chain
    assert not _instance(RunConfig(mode="local-loss", local_loss_helper_weight=0.5)).has_loss_times
    with pytest.raises(RunConfigError, match="client0 trains with local loss.*declared no aux step.*--aux-head"):
        _instance(RunConfig(mode="local-loss"), aux=None)
    with pytest.raises(RunConfigError, match="'method' \\('admm'\\) does not plan the local-loss chain"):
        RunConfig(mode="local-loss", method="admm")


def test_the_two_part_split_plans_the_helpers_whole_step_and_no_activation_download():
    u, two = _instance(RunConfig()), _instance(RunConfig(labels="helper"))
    np.testing.assert_allclose(two.p, sum(PART2_MS.values()) + sum(PART3_MS.values()))
    for name in ("d", "r_bwd", "p_bwd"):
        assert not getattr(two, name).any(), name
    assert not two.l.any()
    np.testing.assert_allclose(two.d_bwd, u.d_bwd)  # the cut-1 gradient's download, then part-1's backward
    np.testing.assert_allclose(two.l_bwd, u.l_bwd)
    labels_ms = 64 * 8 * 8 / 8.0 / 1000.0  # 64 int64 labels with the activations on an 8 Mbps link
    np.testing.assert_allclose(two.r, u.r + labels_ms)
    assert (two.mem > u.mem).all()  # part-3's parameters, gradients and optimizer slot on the helper
    both = _instance(RunConfig(mode="local-loss", labels="helper"))  # LocFedMix-SL's chain: nothing after the helper
    assert both.local_loss.all() and not both.tail.any()
    assert (planning.make_plan(RunConfig(mode="local-loss", labels="helper"), both).makespan
            < planning.make_plan(RunConfig(labels="helper"), two).makespan)
    mix = RunConfig(mode="local-loss", labels="helper", helper_model="shared", smashmix_pairs=3)
    solution = planning.make_plan(mix, both)
    timeline, helpers = solution.timeline, solution.plan.assignment
    steps = [timeline.helper_span[i] + 3 * both.p[helpers == i, i].max() for i in range(2) if (helpers == i).sum() >= 2]
    assert steps  # 3 clients on 2 helpers: one helper mixes
    assert planning.with_smashmix(mix, both, solution.plan, timeline).makespan == max(timeline.makespan, *steps)
    assert planning.with_smashmix(mix, both, solution.plan, timeline).makespan > timeline.makespan
    with pytest.raises(RunConfigError, match="helper 'helper0' declared no part-3 times"):
        _instance(RunConfig(labels="helper"), part3=None)


def test_mode_auto_lets_the_planner_choose_and_each_role_follow_the_plan_in_force():
    auto = _instance(RunConfig(mode="auto"))
    assert auto.has_loss_times and not auto.local_loss.any()  # every client may; the plan chooses
    chosen = planning.make_plan(RunConfig(mode="auto"), auto)
    assert chosen.plan.meta["local_loss_option"] == "auto" and chosen.plan.local_loss is not None
    base = LearningMode.of(RunConfig(mode="auto"), "client0")
    assert not base.local_loss and base.in_plan(True).local_loss and not base.in_plan(False).local_loss
    assert base.held_prefixes == (PART1, AUX, PART3) and base.client_prefixes == (PART1, PART3)
    assert LearningMode.of(RunConfig(mode="local-loss")).in_plan(False).local_loss  # fixed modes stay
    with pytest.raises(RunConfigError, match="client0 trains with local loss \\(or may"):
        _instance(RunConfig(mode="auto"), aux=None)
    with pytest.raises(RunConfigError, match="'local_loss_helper_weight' \\(0.5\\) with mode \"auto\""):
        RunConfig(mode="auto", local_loss_helper_weight=0.5)


def _emulated_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mbps: tuple[float, ...] = (50.0, 50.0, 5.0),
                  **modes) -> tuple[list[dict], Estimates, Path]:
    """3 clients on 2 helpers with the paper's emulated devices (links of `mbps`, times x 0.02), 6 rounds, roles in
    threads; the records, the run's closed-loop estimates after its last round, and its run directory."""
    config = small_run(tmp_path, clients=3, helpers=2, rounds=6, aggregate_every=3, eval_every=6, train_samples=300,
                       test_samples=100, profile_iters=1, time_scale=0.02, probe_repeats=1,
                       emulation_profile="resnet101_cifar10", **modes).config
    devices, helper_devices = paper_fleet(3, 2, 0)
    seen: list[Estimates] = []
    observe = Estimates.observe

    def keep(estimates: Estimates, record) -> None:
        seen.append(estimates)
        observe(estimates, record)

    monkeypatch.setattr(Estimates, "observe", keep)
    coordinator = Coordinator(config, tmp_path)
    roles = [*(Helper(HelperOptions(f"helper{i}", coordinator.endpoint, emulation=e))
               for i, e in enumerate(helper_devices)),
             *(Client(ClientOptions(f"client{j}", coordinator.endpoint,
                                    emulation=Emulation(device=e.device, bandwidth_mbps=mbps[j])))
               for j, e in enumerate(devices))]
    summary = run_threaded(coordinator, roles)
    return summary.records, seen[-1], tmp_path


@pytest.mark.parametrize("modes", [{"mode": "local-loss"}, {"labels": "helper"},
                                   {"mode": "local-loss", "labels": "helper", "helper_model": "shared",
                                    "smashmix_pairs": 2}], ids=["local-loss", "two-part", "LocFedMix-SL"])
def test_an_emulated_run_realises_the_plan_of_its_mode_and_keeps_it(tmp_path, monkeypatch, modes):
    records, estimates, run_dir = _emulated_run(tmp_path, monkeypatch, **modes)
    ratios = [m["realised_makespan_ms"] / m["planned_makespan_ms"] for m in records[1:]]  # round 0 warms up
    assert all(abs(ratio - 1.0) <= TOLERANCE for ratio in ratios), (ratios, records[0]["planned_makespan_ms"])
    assert not any("replanned_to" in m for m in records)  # no drift: the plan models the mode
    instance = Instance.load(run_dir / "instance.json")
    start = Plan.load(run_dir / "plan.json")
    timeline = evaluate(instance, start)
    if "mode" in modes:
        assert instance.local_loss.all() and start.local_loss.all() and (instance.aux > 0).all()
        # the local-loss chain beats SplitFed's on this fleet, where client2's slow link makes its cut-1 gradient's
        # download long (the same times planned with U-shaped rules)
        splitfed = plan_instance(instance.with_loss_modes(np.zeros(3, dtype=bool)), "greedy-ls")
        assert timeline.makespan < splitfed.makespan
    else:
        assert not instance.d.any() and not instance.p_bwd.any() and not instance.has_loss_times
    if "smashmix_pairs" in modes:  # the SmashMix steps after a helper's last job are in the planned makespan
        assert records[0]["planned_makespan_ms"] == pytest.approx(
            planning.with_smashmix(RunConfig(**modes), instance, start, timeline).makespan)
    # the closed loop keeps the modes' terms: the estimated instance, under the plan that ran, gives its makespan
    estimated = estimates.instance()
    assert estimated.has_loss_times == instance.has_loss_times
    if instance.has_loss_times:
        np.testing.assert_allclose(estimated.aux, instance.aux, rtol=TOLERANCE)
    predicted = planning.with_smashmix(RunConfig(**modes), estimated, start, evaluate(estimated, start)).makespan
    realised = float(np.median([m["realised_makespan_ms"] for m in records]))
    assert abs(predicted / realised - 1.0) <= TOLERANCE


def test_mode_auto_tells_every_role_the_plans_choice_and_averages_the_aux_head_over_its_trainers(tmp_path,
                                                                                                  monkeypatch):
    # client2's slow link makes its chain the critical one: local loss shortens it, the others keep SplitFed
    records, _, run_dir = _emulated_run(tmp_path, monkeypatch, mode="auto")
    instance, start = Instance.load(run_dir / "instance.json"), Plan.load(run_dir / "plan.json")
    assert instance.has_loss_times and not instance.local_loss.any()  # the plan chooses
    assert start.meta["local_loss_option"] == "auto"
    chosen = {CLIENTS[j] for j in np.flatnonzero(start.local_loss)}
    assert chosen == {"client2"} and start.meta["makespan_all_local"] < start.meta["makespan_splitfed"]
    # the helpers returned no cut-1 gradient exactly to the clients the plan put in local loss, every round
    for m in records:
        no_gradient = {job["client"] for job in m["jobs"] if job["kind"] == "bwd" and job["bytes_down"] == 0}
        assert no_gradient == chosen
    ratios = [m["realised_makespan_ms"] / m["planned_makespan_ms"] for m in records[1:]]
    assert all(abs(ratio - 1.0) <= TOLERANCE for ratio in ratios), ratios
    saved = ckpt_load(run_dir / "checkpoint")
    assert any(k.startswith("aux/") for k in saved.model) == bool(chosen)
    for name in CLIENTS:  # an aux head's optimizer state is kept for the clients that trained it only
        assert any(k.startswith("aux/") for k in saved.optim[name]) == (name in chosen)
