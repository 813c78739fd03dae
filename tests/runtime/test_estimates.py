"""Closed-loop estimates from synthetic round records: convergence, one outlier round, a client that leaves, and a
plan's expected makespan over the rounds' realised chain terms (a pipelined plan's, from its rounds' realised
/ planned makespans), and estimates carried over to a changed fleet."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgepsl.plan.evaluate import evaluate
from edgepsl.plan.instance import Instance
from edgepsl.plan.solvers import plan as solve

from edgepsl.plan.profiles import instance_from_parts
from edgepsl.plan.schedule import Timeline
from edgepsl.runtime import planning
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.estimates import ESTIMATED, SCENARIOS, WINDOW, Estimates, Smoothed
from edgepsl.runtime.links import DECLARED_CONFIG, cut_bytes, declared_links
from edgepsl.runtime.metrics import RoundRecord
from edgepsl.segment import load_manifest

CLIENTS, HELPERS = ("client0", "client1", "client2"), ("helper0", "helper1")
ASSIGN = {"client0": "helper0", "client1": "helper1", "client2": "helper0"}
DECLARED_CLIENT = {"part1_fwd": 5.0, "part1_bwd": 36.0, "part3_fwd": 1.0, "part3_bwd": 1.0}
DECLARED_HELPER = {"part2_fwd": 1.3, "part2_bwd": 32.0}
TRUE = {"part1_fwd": 2.0, "part1_bwd": 4.5, "part3": 0.4, "part2_fwd": 0.8, "part2_bwd": 3.6, "latency": 0.5,
        "mbps": 100.0}


@pytest.fixture(scope="module")
def setting():
    config = RunConfig(bandwidth_mbps=1000.0)
    manifest = load_manifest(config.artifact)
    clients = {c: {"times": dict(DECLARED_CLIENT), "local_times": None} for c in CLIENTS}
    helpers = {h: {"times": dict(DECLARED_HELPER), "capacity_mb": None} for h in HELPERS}
    links = declared_links(config, CLIENTS, HELPERS, {})
    up, down = (cut_bytes(manifest, s, config.batch_size, config.float16) for s in ("part1", "part2"))
    return config, manifest, clients, helpers, links, up, down


def _estimates(setting) -> Estimates:
    config, manifest, clients, helpers, links, _, _ = setting
    return Estimates(config, manifest, CLIENTS, HELPERS, clients, helpers, links)


def _record(setting, present=CLIENTS, scale: float = 1.0, part2_bwd: float | None = None,
            upload_extra: float = 0.0) -> RoundRecord:
    """A round whose every client ran with the TRUE times (part-2 backward times `scale`, or `part2_bwd`; each
    upload `upload_extra` ms longer than its link's)."""
    *_, up, down = setting
    K = len(CLIENTS)
    link = lambda nbytes: TRUE["latency"] + nbytes * 8e-3 / TRUE["mbps"]
    ms = lambda nbytes, upload=False: link(nbytes) + (upload_extra if upload else 0.0)
    jobs = []
    for c in present:
        arrival = TRUE["part1_fwd"] + ms(up, True)
        fwd_end = arrival + TRUE["part2_fwd"]
        bwd_arrival = fwd_end + ms(down) + TRUE["part3"] + ms(down, True)
        bwd = part2_bwd if part2_bwd is not None else TRUE["part2_bwd"] * scale
        common = {"client": c, "helper": ASSIGN[c], "queue_wait_ms": 0.0, "compute_ms": 0.0, "pad_ms": 0.0,
                  "planned": True, "planned_release_ms": 0.0, "planned_start_ms": 0.0}
        jobs.append({**common, "kind": "fwd", "arrival_ms": arrival, "start_ms": arrival, "end_ms": fwd_end,
                     "upload_ms": ms(up, True), "download_ms": ms(down), "bytes_up": up, "bytes_down": down})
        jobs.append({**common, "kind": "bwd", "arrival_ms": bwd_arrival, "start_ms": bwd_arrival,
                     "end_ms": bwd_arrival + bwd, "upload_ms": ms(down, True), "download_ms": ms(up), "bytes_up": down,
                     "bytes_down": up})
    ones = np.ones(K)
    measured = instance_from_parts(
        part1_fwd=ones, part1_bwd=ones * TRUE["part1_bwd"], part3_fwd=ones * TRUE["part3"] / 2,
        part3_bwd=ones, part2_fwd=np.ones((K, 2)), part2_bwd=np.ones((K, 2)), cut1_kb=ones, cut2_kb=ones,
        bandwidth_mbps=np.ones((K, 2)), mem=ones, cap=np.full(2, 10.0), client_names=CLIENTS, helper_names=HELPERS)
    z = np.zeros(K)
    timeline = Timeline(z, z, z, z, z, np.zeros(2), np.zeros(2), np.zeros(2), 0.0)
    return RoundRecord(timeline, measured, {"jobs": jobs, "realised_makespan_ms": 0.0})


def test_smoothed_is_the_median_while_filling_then_an_ewma_of_the_median():
    s = Smoothed(100.0)
    s.update(4.0)
    assert s.value == 4.0  # the first observation replaces the declared value
    s.update(6.0)
    s.update(5.0)
    assert s.value == 5.0 and s.count == WINDOW
    s.update(500.0)  # one outlier: the median of (6, 5, 500) is 6
    assert s.value == pytest.approx(5.0 + 0.3 * (6.0 - 5.0))
    s.update(float("nan"))
    assert s.count == WINDOW + 1


def test_without_records_the_instance_is_the_declared_one(setting):
    config, manifest, clients, helpers, links, _, _ = setting
    declared = planning.build_instance(config, manifest, CLIENTS, HELPERS, clients, helpers, links)
    estimated = _estimates(setting).instance()
    for field in ("r", "p", "d", "l", "r_bwd", "p_bwd", "d_bwd", "l_bwd", "mem", "cap"):
        np.testing.assert_allclose(getattr(estimated, field), getattr(declared, field))
    assert estimated.meta["estimated_rounds"] == 0


def test_estimates_converge_to_the_realised_times_and_links(setting):
    est = _estimates(setting)
    for _ in range(WINDOW):
        est.observe(_record(setting))
    inst = est.instance()
    j = CLIENTS.index("client1")
    np.testing.assert_allclose(inst.p_bwd[:, 0], TRUE["part2_bwd"])  # was 32 ms declared
    np.testing.assert_allclose(inst.p[j], TRUE["part2_fwd"])
    np.testing.assert_allclose(inst.l_bwd, TRUE["part1_bwd"])
    np.testing.assert_allclose(inst.l, TRUE["part3"] / 2)
    links = est.links()
    assert links.latency_ms[j, 1] == pytest.approx(TRUE["latency"]) and links.mbps[j, 1] == pytest.approx(TRUE["mbps"])
    assert links.source[j][1] == ESTIMATED and links.source[j][0] == DECLARED_CONFIG  # never used: as declared
    *_, up, _ = setting
    assert inst.r[j, 1] == pytest.approx(TRUE["part1_fwd"] + TRUE["latency"] + up * 8e-3 / TRUE["mbps"])
    # helper1 served only client1: its estimate stands for every client on it
    np.testing.assert_allclose(inst.p_bwd[:, 1], TRUE["part2_bwd"])
    # a slower helper: the EWMA follows a step change, 97 % of it within 10 rounds
    for _ in range(10):
        est.observe(_record(setting, scale=2.0))
    assert est.instance().p_bwd[0, 0] == pytest.approx(2 * TRUE["part2_bwd"], rel=0.03)


def test_one_outlier_round_does_not_move_the_estimates(setting):
    est = _estimates(setting)
    for _ in range(5):
        est.observe(_record(setting))
    before = est.instance()
    est.observe(_record(setting, part2_bwd=300.0))
    after = est.instance()
    np.testing.assert_allclose(after.p_bwd, before.p_bwd)
    est.observe(_record(setting, part2_bwd=300.0))  # twice in a row is a change, and the estimates follow it
    assert est.instance().p_bwd[0, 0] > 2 * TRUE["part2_bwd"]


def test_a_client_missing_from_the_records_keeps_its_estimates(setting):
    est = _estimates(setting)
    for _ in range(WINDOW):
        est.observe(_record(setting))
    kept = est.instance()
    for _ in range(4):
        est.observe(_record(setting, present=("client0", "client1"), scale=2.0))
    inst = est.instance()
    assert inst.K == 3 and inst.client_names == CLIENTS
    j = CLIENTS.index("client2")
    assert inst.p_bwd[j, 0] == kept.p_bwd[j, 0] and inst.r[j, 0] == kept.r[j, 0]
    assert inst.p_bwd[0, 0] > kept.p_bwd[0, 0]  # client0's own records moved its estimate
    assert inst.meta["estimated_rounds"] == WINDOW + 4


def test_upload_time_beyond_the_link_is_the_clients_and_the_chain_terms_are_the_realised_ones(setting):
    *_, up, down = setting
    est = _estimates(setting)
    for _ in range(WINDOW):
        est.observe(_record(setting, upload_extra=2.0))  # the sender's serialisation, its wait for a core
    inst, links = est.instance(), est.links()
    j = CLIENTS.index("client0")
    link = lambda nbytes: TRUE["latency"] + nbytes * 8e-3 / TRUE["mbps"]
    assert links.latency_ms[j, 0] == pytest.approx(TRUE["latency"]) and links.mbps[j, 0] == pytest.approx(TRUE["mbps"])
    assert inst.r[j, 0] == pytest.approx(TRUE["part1_fwd"] + link(up) + 2.0)  # the realised arrival
    assert inst.d[j, 0] == pytest.approx(link(down)) and inst.d_bwd[j, 0] == pytest.approx(link(up))
    assert inst.l[j] + inst.r_bwd[j, 0] == pytest.approx(TRUE["part3"] + link(down) + 2.0)
    times = est.client_times(links)
    assert times["client0"]["part1_fwd"] == pytest.approx(TRUE["part1_fwd"] + 2.0)


def _chains() -> Instance:
    """Three clients' chains of different lengths on two equal helpers (ms)."""
    K = len(CLIENTS)
    spread = np.array([1.0, 1.6, 2.3])
    return instance_from_parts(
        part1_fwd=2.0 * spread, part1_bwd=4.0 * spread, part3_fwd=0.5 * spread, part3_bwd=0.5 * spread,
        part2_fwd=np.full((K, 2), 0.8), part2_bwd=np.full((K, 2), 3.6), cut1_kb=np.full(K, 100.0),
        cut2_kb=np.full(K, 10.0), bandwidth_mbps=np.full((K, 2), 100.0), mem=np.ones(K), cap=np.full(2, 10.0),
        client_names=CLIENTS, helper_names=HELPERS)


def _as_ran(setting, base: Instance, factor: np.ndarray) -> RoundRecord:
    """A complete round whose realised chain terms are base's times each client's factor."""
    record = _record(setting)
    scaled = {k: getattr(base, k) * factor[:, None] for k in ("r", "p", "d", "r_bwd", "p_bwd", "d_bwd")}
    measured = dataclasses.replace(base, **scaled, l=base.l * factor, l_bwd=base.l_bwd * factor)
    return RoundRecord(record.timeline, measured, record.metrics)


def test_the_expected_makespan_is_the_median_over_the_rounds_of_the_plan_under_their_terms(setting):
    base = _chains()
    plan = solve(base, "greedy-ls", seed=0).plan
    planned = evaluate(base, plan).makespan
    est = _estimates(setting)
    assert est.expected_makespan(base, plan) is None  # no round observed yet
    for factor in (1.0, 1.5, 1.2):  # every term of every chain scaled: the makespan scales with it
        est.observe(_as_ran(setting, base, np.full(3, factor)))
    assert est.expected_makespan(base, plan) == pytest.approx(1.2 * planned)
    for _ in range(SCENARIOS):  # only the last SCENARIOS rounds count
        est.observe(_as_ran(setting, base, np.full(3, 0.9)))
    assert est.expected_makespan(base, plan) == pytest.approx(0.9 * planned)


def test_the_expected_makespan_counts_the_helpers_smashmix_steps(setting):
    """SmashMix steps (two-part split) run after a helper's last job: with enough of them on the helper of two
    clients, the round ends after them, in every scenario."""
    base = _chains()
    plan = solve(base, "greedy-ls", seed=0).plan
    config, manifest, clients, helpers, links, _, _ = setting
    two_part = dataclasses.replace(config, labels="helper", helper_model="shared")
    plain, mixing = (Estimates(dataclasses.replace(two_part, smashmix_pairs=pairs), manifest, CLIENTS, HELPERS,
                               clients, helpers, links) for pairs in (0, 20))
    for est in (plain, mixing):
        for factor in (1.0, 1.5, 1.2):
            est.observe(_as_ran(setting, base, np.full(3, factor)))
    shared = int(np.flatnonzero(np.bincount(plan.assignment, minlength=2) >= 2)[0])
    steps = [evaluate(w, plan).helper_span[shared] + 20 * w.p[plan.assignment == shared, shared].max()
             for w in mixing.scenario_instances(base)]
    assert mixing.expected_makespan(base, plan) == pytest.approx(float(np.median(steps)))
    assert mixing.expected_makespan(base, plan) > plain.expected_makespan(base, plan)


def test_chains_slow_in_turn_make_rounds_longer_than_the_plan_of_the_medians(setting):
    """Each round one chain runs twice as long: every term's median is the plan's, yet every round, and so the
    expected makespan, is longer than the plan (a maximum over noisy chains)."""
    base = _chains()
    plan = solve(base, "greedy-ls", seed=0).plan
    planned = evaluate(base, plan).makespan
    est = _estimates(setting)
    rounds = [np.where(np.arange(3) == j, 2.0, 1.0) for j in range(3)]
    for factor in rounds:
        est.observe(_as_ran(setting, base, factor))
    alone = [evaluate(_as_ran(setting, base, f).measured, plan).makespan for f in rounds]
    assert est.expected_makespan(base, plan) == pytest.approx(float(np.median(alone)))
    assert planned < est.expected_makespan(base, plan) <= 2.0 * planned


def test_a_pipelined_plan_is_expected_to_realise_what_its_last_rounds_did_per_planned_ms(setting):
    config, manifest, clients, helpers, links, _, _ = setting
    config = dataclasses.replace(config, micro_batches="4")
    instance = planning.build_instance(config, manifest, CLIENTS, HELPERS, clients, helpers, links)
    plan = planning.make_plan(config, instance).plan
    assert plan.pipelined
    planned = evaluate(instance, plan).makespan
    est = _estimates(setting)
    assert est.expected_makespan(instance, plan) is None  # no pipelined round observed yet
    for ratio in (3.0, 2.0, 5.0, 2.5, 3.5, 2.8):  # realised / planned of each round; only the last SCENARIOS count
        record = _record(setting)
        for job in record.metrics["jobs"]:
            job["micro_batches"] = 4
        record.metrics.update(planned_makespan_ms=40.0, realised_makespan_ms=40.0 * ratio)
        est.observe(record)
    assert not est.scenarios  # a pipelined round's terms are not chains
    assert est.expected_makespan(instance, plan) == pytest.approx(planned * np.median([2.0, 5.0, 2.5, 3.5, 2.8]))


def test_estimates_carry_over_to_a_changed_fleet(setting):
    """A helper lost and a client joined: the staying members keep what was learnt, the lost helper's client plans
    with its declared part times again, the new client starts declared, and the observed rounds still predict."""
    config, manifest, clients, helpers, links, _, _ = setting
    est = _estimates(setting)
    for _ in range(WINDOW):
        est.observe(_record(setting))
    before = est.instance()
    grown = (*CLIENTS, "client3")
    profiles = {**clients, "client3": {"times": dict(DECLARED_CLIENT), "local_times": None}}
    survivors = est.for_fleet(grown, ("helper0",), profiles, {"helper0": helpers["helper0"]},
                              declared_links(config, grown, ("helper0",), {}))
    after = survivors.instance()
    assert after.client_names == grown and after.helper_names == ("helper0",)
    for j in (0, 2):  # on helper0 before and after: every term as estimated
        for name in ("r", "p", "d", "r_bwd", "p_bwd", "d_bwd"):
            assert getattr(after, name)[j, 0] == pytest.approx(getattr(before, name)[j, 0])
        assert after.l_bwd[j] == pytest.approx(TRUE["part1_bwd"])
    declared = planning.build_instance(config, manifest, grown, ("helper0",), profiles,
                                       {"helper0": helpers["helper0"]}, declared_links(config, grown, ("helper0",), {}))
    assert after.l_bwd[1] == pytest.approx(declared.l_bwd[1])  # client1's helper left: declared part times again
    assert after.l_bwd[3] == pytest.approx(declared.l_bwd[3])  # the new client
    assert after.p_bwd[3, 0] == pytest.approx(TRUE["part2_bwd"])  # helper0's own estimate stands for a new client
    assert len(survivors.scenarios) == WINDOW and after.meta["estimated_rounds"] == WINDOW
    plan = solve(after, "greedy-ls", seed=0).plan
    worlds = survivors.scenario_instances(after)
    assert len(worlds) == WINDOW and all(w.client_names == grown for w in worlds)
    assert survivors.expected_makespan(after, plan) == pytest.approx(
        float(np.median([evaluate(w, plan).makespan for w in worlds])))
