"""Links and schedule phases: the K x H links (probed or declared), the planning instance, the plan, its timeline,
and each role's part of a round as the payload it receives."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepsl.plan.evaluate import evaluate as evaluate_plan
from edgepsl.plan.instance import Instance
from edgepsl.plan.pipeline import stage_times
from edgepsl.plan.pure.pipeline import ST_HB, ST_HF
from edgepsl.plan.rules import dispatch_priorities
from edgepsl.plan.schedule import LOCAL, Plan, Timeline
from edgepsl.runtime import planning
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.coordinator.fleet import Fleet, Profiles
from edgepsl.runtime.coordinator.messenger import Messenger
from edgepsl.runtime.errors import RunConfigError
from edgepsl.runtime.links import Links, declared_links, measured_links, probe_sizes_kb
from edgepsl.runtime.microbatch import micro_batch_cap
from edgepsl.runtime.modes import LearningMode
from edgepsl.runtime.protocol import (ClientRoundStart, HelperRoundStart, LinkFit, LinkReport, ProbeRequest,
                                      ProbeTarget)
from edgepsl.segment import Manifest
from edgepsl.wire import Envelope, MsgType


@dataclass(frozen=True)
class Schedule:
    """The planned round every round runs: instance, plan, its timeline, and each role's round payload (t0 and token
    set per round)."""

    instance: Instance
    plan: Plan
    timeline: Timeline
    helper_starts: dict[str, HelperRoundStart]
    client_starts: dict[str, ClientRoundStart]
    version: int = 0  # the plan version (plans/v{version}.json; 0: the start-up plan)
    expected_ms: float | None = None  # the makespan its rounds are expected to realise (Estimates.expected_makespan)

    @property
    def planned_ms(self) -> float:
        """The plan's makespan, what its rounds should realise: the expected one where observed rounds predict it,
        else its timeline's (the nominal makespan, of the estimated terms)."""
        return float(self.timeline.makespan if self.expected_ms is None else self.expected_ms)

    def helper_of(self, fleet: Fleet, client: str) -> str:
        """The helper a client is assigned to; the client itself in local mode (it holds its own part-2)."""
        i = int(self.plan.assignment[fleet.clients.index(client)])
        return client if i == LOCAL else fleet.helpers[i]

    def is_local(self, fleet: Fleet, client: str) -> bool:
        """Whether a client trains in local mode."""
        return bool(self.plan.local[fleet.clients.index(client)])

    def mode(self, config: RunConfig, fleet: Fleet, client: str) -> LearningMode:
        """A client's learning mode in this plan (mode = "auto": as the plan chose it)."""
        return LearningMode.of(config, client).in_plan(_plan_local_loss(self.plan, fleet.clients.index(client)))


def _plan_local_loss(plan: Plan, j: int) -> bool | None:
    """Client j's learning mode as the plan records it (None: the plan records none)."""
    return None if plan.local_loss is None else bool(plan.local_loss[j])


def links(messenger: Messenger, config: RunConfig, manifest: Manifest, fleet: Fleet, profiles: Profiles) -> Links:
    """The K x H links: each client probes every helper over the real channel, or the declared bandwidths."""
    if config.links == "declared":
        return declared_links(config, fleet.clients, fleet.helpers,
                              {n: profiles.clients[n].bandwidth_mbps for n in fleet.clients})
    sizes = probe_sizes_kb(manifest, config.batch_size, config.float16)
    endpoints = profiles.endpoints()
    targets = [ProbeTarget(h, endpoints[h], fleet.registrations[h].public_key) for h in fleet.helpers]
    for name in fleet.clients:
        messenger.send(name, ProbeRequest(targets, sizes), 0, name)
    reports: dict[str, dict[str, LinkFit]] = {}

    def accept(env: Envelope) -> str | None:
        if env.message.type is not MsgType.REPORT or env.peer not in fleet.clients:
            return None
        report = LinkReport.decode(env.message)
        if set(report.links) != set(fleet.helpers):
            return None
        reports[env.peer] = report.links
        return env.peer

    # Each client probes its links one after the other; every probe is bounded by probe_timeout_s.
    bound = (config.register_timeout_s
             + len(fleet.helpers) * (1 + len(sizes) * config.probe_repeats) * config.probe_timeout_s)
    messenger.collect(accept, len(fleet.clients), "the clients' link probes", bound)
    return measured_links(fleet.clients, fleet.helpers, reports)


def declared_profiles(fleet: Fleet, profiles: Profiles) -> tuple[dict[str, dict], dict[str, dict]]:
    """The clients' and helpers' declared times (and capacities) as planning.build_instance and Estimates take them."""
    return ({n: {"times": profiles.clients[n].times, "local_times": profiles.clients[n].local_times,
                 "memory_mb": profiles.clients[n].memory_mb, "aux_ms": profiles.clients[n].aux_ms}
             for n in fleet.clients},
            {n: {"times": profiles.helpers[n].times, "capacity_mb": fleet.registrations[n].capacity_mb,
                 "part3_times": profiles.helpers[n].part3_times}
             for n in fleet.helpers})


def plan_round(config: RunConfig, manifest: Manifest, fleet: Fleet, profiles: Profiles, measured: Links,
               run_dir: Path) -> tuple[Instance, Plan]:
    """Build the instance from the profiles and links, plan it with the configured method; write both files."""
    measured.save(run_dir / "links.json")
    instance = build(config, manifest, fleet, profiles, measured)
    plan = planning.make_plan(config, instance, micro_batch_cap(config.batch_size, manifest)).plan
    instance.save(run_dir / "instance.json")
    plan.save(run_dir / "plan.json")
    return instance, plan


def build(config: RunConfig, manifest: Manifest, fleet: Fleet, profiles: Profiles, measured: Links) -> Instance:
    """The planning instance of the fleet from its declared profiles and links."""
    return planning.build_instance(config, manifest, fleet.clients, fleet.helpers,
                                   *declared_profiles(fleet, profiles), measured)


def resumed_plan(fleet: Fleet, run_dir: Path) -> tuple[Instance, Plan]:
    """The stopped run's instance and plan; RunConfigError when the fleet differs from theirs."""
    instance, plan = Instance.load(run_dir / "instance.json"), Plan.load(run_dir / "plan.json")
    if list(instance.client_names) != fleet.clients or list(instance.helper_names) != fleet.helpers:
        raise RunConfigError("the resumed run's clients and helpers differ from the checkpointed ones")
    return instance, plan


def schedule(config: RunConfig, fleet: Fleet, profiles: Profiles, instance: Instance, plan: Plan,
             coordinator: str, run_dir: Path) -> Schedule:
    """The round payloads of every role from the plan; writes roles.json. A pipelined plan gives each helper its
    micro-batch jobs (per-micro-batch durations, each job's planned start) and each client its N."""
    timeline = planning.with_smashmix(config, instance, plan, evaluate_plan(instance, plan))
    auto = config.mode == "auto"  # each role is told each client's mode in this plan
    if auto and plan.local_loss is None:
        raise RunConfigError("mode = \"auto\" needs a plan that records each client's learning mode (local_loss); "
                             f"method {config.method!r} gave none")
    endpoints = profiles.endpoints()
    priority = dispatch_priorities(instance, config.fallback_rule, plan.assignment)
    micro = plan.micro_batches
    duration = np.stack([instance.p, instance.p_bwd], axis=2)
    if plan.pipelined:
        duration = stage_times(instance, micro)[..., [ST_HF, ST_HB]]
    _, _, offsets = plan.flat()
    helper_starts = {}
    for i, name in enumerate(fleet.helpers):
        mine = [j for j in range(instance.K) if plan.assignment[j] == i]
        position = {j: p for p, j in enumerate(mine)}
        order = [[position[int(j)], int(k)] for j, k in plan.orders[i]]
        if plan.pipelined:
            starts = timeline.job_start[offsets[i]:offsets[i + 1]].tolist()
        else:
            starts = [float((timeline.fwd_start if k == 0 else timeline.bwd_start)[int(j)]) for j, k in plan.orders[i]]
        helper_starts[name] = HelperRoundStart(
            clients=[fleet.clients[j] for j in mine],
            duration_ms=[duration[j, i].tolist() for j in mine],
            priority=[[float(v) for v in priority[j]] for j in mine],
            bandwidth_mbps=[profiles.clients[fleet.clients[j]].bandwidth_mbps for j in mine],
            memory_mb=[float(instance.mem[j]) for j in mine], order=order, planned_start_ms=starts, t0_ms=0.0,
            token=0, micro_batches=[int(micro[j]) for j in mine] if plan.pipelined else [],
            local_loss=[bool(plan.local_loss[j]) for j in mine] if auto else [])
    client_starts = {}
    for j, name in enumerate(fleet.clients):
        if plan.assignment[j] == LOCAL:
            client_starts[name] = ClientRoundStart("", "", 0.0, 0, None, local=True)
            continue
        helper = fleet.helpers[int(plan.assignment[j])]
        client_starts[name] = ClientRoundStart(helper, endpoints[helper], 0.0, 0,
                                               fleet.registrations[helper].public_key, micro_batches=int(micro[j]),
                                               local_loss=_plan_local_loss(plan, j) if auto else None)
    roles = {"clients": fleet.clients, "helpers": fleet.helpers, "helper_endpoints": endpoints,
             "coordinator": coordinator}
    (run_dir / "roles.json").write_text(json.dumps(roles, indent=1) + "\n")
    return Schedule(instance, plan, timeline, helper_starts, client_starts)


def at(start: HelperRoundStart | ClientRoundStart, t0_ms: float, token: int) -> HelperRoundStart | ClientRoundStart:
    """A round payload with the round's start time and token."""
    return dataclasses.replace(start, t0_ms=float(t0_ms), token=token)
