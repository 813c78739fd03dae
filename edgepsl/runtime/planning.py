"""Turn the part times the roles declared into a planning instance, plan it, and derive the helpers' round orders."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

from edgepsl.plan.heuristics import Solution
from edgepsl.plan.instance import Instance
from edgepsl.plan.profiles import instance_from_parts, loose_capacity_mb, transfer_ms
from edgepsl.plan.schedule import Plan, Timeline
from edgepsl.plan.solvers import plan, solver
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.errors import RunConfigError
from edgepsl.runtime.links import Links, cut_bytes, label_bytes
from edgepsl.runtime.microbatch import COSTS
from edgepsl.runtime.modes import LearningMode, two_part_ms
from edgepsl.segment import Manifest

MB = 2.0 ** 20


def _cut_kb(manifest: Manifest, segment: str, batch: int, float16: bool) -> float:
    """KB (1000 bytes) of one batch of a segment's output as it travels on the wire."""
    return cut_bytes(manifest, segment, batch, float16) / 1000.0


def _params_bytes(manifest: Manifest, segment: str) -> int:
    """Bytes of a segment's parameters."""
    return sum(int(np.prod(t.shape)) * t.dtype.itemsize for t in manifest.segment(segment).params)


def part2_memory_mb(manifest: Manifest, batch: int) -> float:
    """Memory one client's middle part needs on a helper: parameters, gradients and optimizer slot, plus its cut tensors."""
    cuts = (_cut_kb(manifest, "part1", batch, False) + _cut_kb(manifest, "part2", batch, False)) * 1000.0
    return (3 * _params_bytes(manifest, "part2") + 2 * cuts) / MB


def build_instance(config: RunConfig, manifest: Manifest, clients: Sequence[str], helpers: Sequence[str],
                   client_profiles: Mapping[str, dict], helper_profiles: Mapping[str, dict], links: Links) -> Instance:
    """The instance of one round from the declared part times (ms), the cut sizes and the K x H links.

    A helper's part-2 times are one value per part, or one per client (K values, e.g. closed-loop estimates).
    Each of a chain's four transfers takes its link's bytes * 8 / Mbps plus the link's one-way latency. Where some
    client declared `local_times` (its part-2 times on its own device, for a hybrid method), the instance has the
    local-mode fields: cap_own is the `memory_mb` a client declared (0 where it declared none or no local times), so
    only a client that stated enough memory for part-2 may go local.
    """
    K = len(clients)
    c = {key: np.array([client_profiles[n]["times"][key] for n in clients]) for key in
         ("part1_fwd", "part1_bwd", "part3_fwd", "part3_bwd")}
    h = {key: np.stack([np.broadcast_to(np.asarray(helper_profiles[n]["times"][key], dtype=np.float64), (K,))
                        for n in helpers], axis=1) for key in ("part2_fwd", "part2_bwd")}
    two_part = config.labels == "helper"
    mem = np.full(K, part2_memory_mb(manifest, config.batch_size)
                  + (3 * _params_bytes(manifest, "part3") / MB if two_part else 0.0))
    caps = [helper_profiles[n].get("capacity_mb") for n in helpers]
    loose = loose_capacity_mb(mem)
    built = instance_from_parts(
        part1_fwd=c["part1_fwd"], part1_bwd=c["part1_bwd"], part3_fwd=c["part3_fwd"], part3_bwd=c["part3_bwd"],
        part2_fwd=h["part2_fwd"], part2_bwd=h["part2_bwd"],
        cut1_kb=np.full(K, _cut_kb(manifest, "part1", config.batch_size, config.float16)),
        cut2_kb=np.full(K, _cut_kb(manifest, "part2", config.batch_size, config.float16)),
        bandwidth_mbps=links.mbps, mem=mem,
        cap=np.array([loose if cap is None else float(cap) for cap in caps]),
        client_names=tuple(clients), helper_names=tuple(helpers),
        meta={"built_by": "edgepsl.runtime.planning.build_instance", "batch_size": config.batch_size,
              "artifact": manifest.model, "links": sorted({s for row in links.source for s in row})},
    )
    lat = links.latency_ms
    built = dataclasses.replace(built, r=built.r + lat, d=built.d + lat, r_bwd=built.r_bwd + lat, d_bwd=built.d_bwd + lat)
    if config.micro_batches != "1":
        built = _with_stages(config, manifest, built, links)
    if two_part:
        built = _two_part(config, manifest, built, helpers, helper_profiles, links)
    built = _with_local_loss(config, built, clients, client_profiles, c["part1_fwd"])
    local = [client_profiles[n].get("local_times") for n in clients]
    if all(times is None for times in local):
        return built
    stated = [client_profiles[n].get("memory_mb") for n in clients]
    own = {key: np.array([0.0 if times is None else times[key] for times in local]) for key in ("part2_fwd", "part2_bwd")}
    return dataclasses.replace(built, r_own=c["part1_fwd"], p_own=own["part2_fwd"], r_bwd_own=c["part3_bwd"],
                               p_bwd_own=own["part2_bwd"],
                               cap_own=np.array([0.0 if times is None or memory is None else float(memory)
                                                 for times, memory in zip(local, stated)]))


def _two_part(config: RunConfig, manifest: Manifest, instance: Instance, helpers: Sequence[str],
              helper_profiles: Mapping[str, dict], links: Links) -> Instance:
    """The instance of the two-part split (labels = "helper", docs/modes.md "Planning the modes"): the forward job
    is the helper's whole step (part-2 forward, part-3 forward and backward, part-2 backward: modes.two_part_ms, or
    a helper profile's `two_part_ms`, one value or K, e.g. closed-loop estimates); the labels travel with the
    cut-1 activations (r); no activations come back and the client computes nothing between the jobs (d = l = r' =
    0); the backward job takes no time (p' = 0: the helper ran it within the forward job); the cut-1 gradient's
    download and part-1's backward follow (d', l' as in the U-shape)."""
    K = instance.K
    steps = {n: declared_two_part_ms(helper_profiles[n]) for n in helpers}
    missing = [n for n, step in steps.items() if step is None]
    if missing:
        raise RunConfigError(f"labels = \"helper\": helper {missing[0]!r} declared no part-3 times, so its "
                             "two-part step cannot be planned (an edgepsl helper older than the two-part planning?)")
    step = np.stack([np.broadcast_to(np.asarray(steps[n], dtype=np.float64), (K,)) for n in helpers], axis=1)
    labels_kb = label_bytes(manifest, config.batch_size) / 1000.0
    zero = np.zeros_like(instance.p)
    return dataclasses.replace(instance, r=instance.r + transfer_ms(labels_kb, links.mbps), p=step, d=zero,
                               l=np.zeros(K), r_bwd=zero, p_bwd=zero)


def declared_two_part_ms(profile: Mapping[str, Any]) -> Any:
    """A helper's two-part step (ms; one value or K): its `two_part_ms` where given, else its declared parts'
    (modes.two_part_ms); None when it declared no part-3 times."""
    if "two_part_ms" in profile:
        return profile["two_part_ms"]
    last = profile.get("part3_times")
    return None if last is None else two_part_ms({**profile["times"], **last})


def _with_local_loss(config: RunConfig, instance: Instance, clients: Sequence[str],
                     client_profiles: Mapping[str, dict], part1_fwd: np.ndarray) -> Instance:
    """The instance with the local-loss fields (format version 4) when some client is planned in local loss
    (LearningMode.planned_local_loss) or may be (mode = "auto"): local_loss from the config (mode,
    local_loss_clients; 0 everywhere in "auto", where the plan chooses), r_cpu = the client's part-1 forward, aux =
    its declared aux step (0 for a client that declared none: it is not in local loss)."""
    modes = np.array([LearningMode.of(config, n).planned_local_loss for n in clients])
    auto = config.mode == "auto"
    if not modes.any() and not auto:
        return instance
    aux = [client_profiles[n].get("aux_ms") for n in clients]
    missing = [n for n, a, m in zip(clients, aux, modes) if (m or auto) and a is None]
    if missing:
        raise RunConfigError(f"{missing[0]} trains with local loss (or may: mode \"auto\") but declared no aux step "
                             "time (aux_ms of its profile): the run's artifact needs an aux head (export with "
                             "--aux-head auto)")
    return dataclasses.replace(instance, local_loss=modes.astype(np.float64), r_cpu=np.asarray(part1_fwd, float),
                               aux=np.array([0.0 if a is None else float(a) for a in aux]))


def _with_stages(config: RunConfig, manifest: Manifest, instance: Instance, links: Links) -> Instance:
    """The instance with its micro-batch stage fields (format version 3): the uploads r_up and r_bwd_up are the
    cut transfers plus the link's latency, which is also a transfer's fixed part; a client call's and a helper job's
    fixed parts are microbatch.COSTS; B is the run's batch and N the configured one (1 for "auto": the planner
    chooses)."""
    K = instance.K
    cut1 = _cut_kb(manifest, "part1", config.batch_size, config.float16)
    cut2 = _cut_kb(manifest, "part2", config.batch_size, config.float16)
    micro = 1 if config.micro_batches == "auto" else min(int(config.micro_batches), config.batch_size)
    return dataclasses.replace(
        instance, r_up=transfer_ms(cut1, links.mbps) + links.latency_ms,
        r_bwd_up=transfer_ms(cut2, links.mbps) + links.latency_ms, o_client=np.full(K, COSTS.call_ms),
        o_link=np.array(links.latency_ms, dtype=np.float64), o_helper=np.full(instance.H, COSTS.job_ms),
        batch=np.full(K, float(config.batch_size)), micro=np.full(K, float(micro)))


def with_smashmix(config: RunConfig, instance: Instance, plan: Plan, timeline: Timeline) -> Timeline:
    """The plan's timeline with each helper's SmashMix steps (docs/modes.md, "Planning the modes"): smashmix_pairs
    two-part steps (the instance's p) after its last job, on every helper with at least two clients; the round
    ends after them where they end last. The planner does not weigh them: it plans the jobs as without SmashMix."""
    if not config.smashmix_pairs:
        return timeline
    ends = [timeline.makespan]
    for i in range(instance.H):
        mine = np.flatnonzero(plan.assignment == i)
        if len(mine) >= 2:
            ends.append(float(timeline.helper_span[i]) + config.smashmix_pairs * float(instance.p[mine, i].max()))
    return dataclasses.replace(timeline, makespan=max(ends))


def make_plan(config: RunConfig, instance: Instance, max_micro: int | None = None) -> Solution:
    """Plan the round with the configured method (edgepsl.plan.solvers), passing the config's seed, dispatch rule
    and micro-batches (when not 1, with at most max_micro per client: microbatch.micro_batch_cap) to the methods
    that take them, and with mode = "auto" local_loss = "auto" (the planner chooses each client's mode; the plan
    records it); SolverUnavailableError names the extra a method needs."""
    options: dict[str, object] = {"seed": config.seed, "dispatch": config.dispatch}
    if config.mode == "auto":
        options["local_loss"] = "auto"
    if config.micro_batches != "1":
        options.update(micro_batches=config.micro_batches, max_micro=max_micro)
    return plan(instance, config.method, **solver(config.method).options_from(options))
