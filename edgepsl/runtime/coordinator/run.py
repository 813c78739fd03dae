"""The coordinator's run loop: fleet -> links -> schedule -> rounds (aggregation, evaluation, checkpoint) -> bye."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgepsl.runtime import checkpoint as ckpt
from edgepsl.runtime import state
from edgepsl.runtime.aggregation import strategy
from edgepsl.runtime.channels import SERVER_INBOX, channel_config
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.coordinator import averaging, fleet as fleet_phase, replanning, schedule as schedule_phase
from edgepsl.runtime.coordinator.drift import DriftMonitor
from edgepsl.runtime.coordinator.evaluation import evaluate
from edgepsl.runtime.coordinator.membership import Membership
from edgepsl.runtime.coordinator.messenger import Messenger
from edgepsl.runtime.coordinator.rounds import RoundOutcome, play_round
from edgepsl.runtime.coordinator.schedule import Schedule
from edgepsl.data.spec import load_test_data
from edgepsl.runtime.artifact_transfer import ArtifactSource
from edgepsl.runtime.errors import RunAbortedError, RunConfigError, StopRequested
from edgepsl.runtime.estimates import Estimates
from edgepsl.runtime.links import Links, assembled, declared_links
from edgepsl.runtime.metrics import MetricsLog, RoundRecord
from edgepsl.runtime.microbatch import check_micro_batches
from edgepsl.runtime.modes import LearningMode, warn_privacy
from edgepsl.runtime.protocol import State
from edgepsl.runtime.trace import Trace
from edgepsl.segment import Segment, load_manifest
from edgepsl.wire import ServerChannel, ServerSecurity

log = logging.getLogger("edgepsl.runtime.coordinator")


@dataclass
class RunSummary:
    """What a finished (or stopped) run achieved: `value` is the last evaluation of the artifact's metric (`metric`:
    accuracy, mse or label_accuracy; records hold it under that name)."""

    run_dir: Path
    rounds_done: int
    metric: str
    value: float | None
    planned_makespan_ms: float  # the last plan's (Schedule.planned_ms)
    nominal_makespan_ms: float  # the last plan's timeline's, of the estimated terms
    realised_makespan_ms: list[float] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accuracy(self) -> float | None:
        """The last test accuracy of a classification run (None for other metrics)."""
        return self.value if self.metric == "accuracy" else None


class Coordinator:
    """Binds the coordinator endpoint at construction (so roles can be started with it), then run() drives the run.

    on_round(metrics) is called after every round; watch() at least once a second while waiting (it may raise to
    abort, e.g. when a locally started role process died).
    """

    def __init__(self, config: RunConfig, run_dir: str | Path, *, bind: str = "tcp://127.0.0.1:*",
                 security: ServerSecurity | None = None, resume: bool = False, stop_after: int | None = None,
                 on_round: Callable[[dict[str, Any]], None] | None = None,
                 watch: Callable[[], None] | None = None) -> None:
        if stop_after is not None and (stop_after % config.aggregate_every or not 0 < stop_after <= config.rounds):
            raise RunConfigError(f"stop_after ({stop_after}) must be a multiple of aggregate_every "
                                 f"({config.aggregate_every}) within the {config.rounds} rounds: runs stop after averaging")
        self.config = config
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.resume = resume
        self.stop_after = stop_after
        self.on_round = on_round
        self.allowed = dict(security.allowed) if security is not None else {}
        self.server = ServerChannel(bind, security=security, insecure=security is None,
                                    config=channel_config(config.float16, SERVER_INBOX, config.peer_timeout_s))
        self.endpoint = self.server.endpoint
        self.trace = Trace(self.run_dir / "traces" / "coordinator.jsonl", "coordinator")
        self.manifest = load_manifest(config.artifact)
        check_micro_batches(config, self.manifest)
        self.messenger = Messenger(self.server, config.run_id, self.trace, watch, ArtifactSource(config.artifact,
                                                                                      config.artifact_chunk_kb << 10))
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")
        self.mode = LearningMode.of(config)
        local_loss = config.any_local_loss
        if local_loss and self.manifest.aux_head is None:
            raise RunConfigError(f"config key 'mode' or 'local_loss_clients' asks for local-loss training, but the "
                                 f"artifact {config.artifact} has no aux head; export one with `edgepsl export ... "
                                 f"--aux-head auto`")
        warn_privacy(self.mode, log, "coordinator")
        self.model = {name: Segment(self.manifest, name, threads=config.threads)
                      for name in ("part1", "part2", "part3", *(("aux",) if local_loss else ()))}
        self.strategy = strategy(config.aggregation)

    def run(self) -> RunSummary:
        """Drive the run to its last round (or stop_after); BYE to every role at the end, or when it stops early.

        A role's error, a diverging loss (TrainingDivergedError) or SIGINT/SIGTERM (StopRequested) end the run
        with a BYE naming the reason; the metrics written so far stay, and the figures are drawn.
        """
        cfg, messenger = self.config, self.messenger
        cfg.save(self.run_dir / "run.toml")
        if not self.resume:
            self.metrics.truncate_after(-1)  # a fresh run in a used directory starts its metrics afresh
        test = load_test_data(cfg.test_spec, self.manifest, cfg.normalisation, limit=cfg.test_samples)
        metric = self.manifest.metric
        last = self.stop_after or cfg.rounds
        schedule: Schedule | None = None
        record: RoundRecord | None = None
        records: list[dict[str, Any]] = []
        try:
            fleet = fleet_phase.register(messenger, cfg)
            log.info("registered %d clients and %d helpers", len(fleet.clients), len(fleet.helpers))
            profiles = fleet_phase.welcome(messenger, cfg, fleet, self.allowed)
            links: Links | None = None  # a resumed run probes nothing: clients cannot join it
            if self.resume:
                instance, plan = schedule_phase.resumed_plan(fleet, self.run_dir)
            else:
                links = schedule_phase.links(messenger, cfg, self.manifest, fleet, profiles)
                instance, plan = schedule_phase.plan_round(cfg, self.manifest, fleet, profiles, links, self.run_dir)
            schedule = schedule_phase.schedule(cfg, fleet, profiles, instance, plan, self.endpoint, self.run_dir)
            first = self._restore(fleet, schedule) if self.resume else 0
            replanning.save_version(self.run_dir, schedule, first, "resumed" if self.resume else "start")
            messenger.admit_joins = links is not None
            membership = Membership(fleet.clients)
            saved: ckpt.Checkpoint | None = None
            # Closed loop (a fresh run): smoothed part and link times from every complete round; when the realised
            # makespan drifts from the plan, re-plan from them at the next aggregation boundary.
            estimates = self._estimates(fleet, profiles, links)
            monitor = DriftMonitor(cfg.replan_threshold)
            drift_due = False
            for r in range(first, last):
                outcome = play_round(messenger, cfg, fleet, schedule, membership, r)
                if outcome.lost_helpers:
                    fleet, profiles, links, estimates, schedule, outcome = self._helper_lost(
                        fleet, profiles, links, estimates, schedule, membership, outcome, saved, r)
                    drift_due = False
                    monitor.planned_changed()
                record = outcome.record or record
                metrics = dict(outcome.metrics)
                if estimates is not None and outcome.record is not None:
                    estimates.observe(outcome.record)
                    drift_due |= monitor.observe(schedule.planned_ms, metrics["realised_makespan_ms"])
                if (r + 1) % cfg.aggregate_every == 0 or r + 1 == cfg.rounds:
                    gathered = averaging.gather(messenger, cfg, fleet, schedule, self.model, membership, r)
                    saved = self._average(fleet, schedule, gathered, membership, r)
                    metrics["averaged"] = list(gathered.clients)
                    if messenger.joining and links is not None and estimates is not None:
                        before = set(fleet.roles)
                        fleet, profiles, links, estimates, schedule = self._join(fleet, profiles, links, estimates,
                                                                                 schedule, membership, saved, r)
                        metrics["joined"] = [n for n in fleet.roles if n not in before]
                        drift_due = False
                        monitor.planned_changed()
                    if drift_due and estimates is not None and r + 1 < last:
                        schedule = self._drift(fleet, profiles, schedule, estimates, saved, r)
                        metrics["replanned_to"], drift_due = schedule.version, False
                        monitor.planned_changed()
                    if (r + 1) % cfg.eval_every == 0 or r + 1 == cfg.rounds:
                        metrics[metric] = evaluate(self.model, self.manifest, test)
                    averaging.save(self.run_dir, saved)
                self.metrics.append(metrics)
                records.append(metrics)
                log.debug("round %d: loss %s, makespan %.1f ms%s", r, metrics["loss"],
                         metrics["realised_makespan_ms"],
                         f", {metric} {metrics[metric]:.4g}" if metric in metrics else "")
                if self.on_round is not None:
                    self.on_round(metrics)
            messenger.farewell("run finished")
        except StopRequested:
            messenger.farewell("the coordinator was stopped by a signal")
            raise
        except RunAbortedError as exc:
            messenger.farewell(f"run aborted: {exc}")
            raise
        finally:
            self.server.close()
            self.trace.close()
            self._figures(schedule, record, last - 1)
        all_records = self.metrics.read()
        values = [m[metric] for m in all_records if m.get(metric) is not None]
        assert schedule is not None
        return RunSummary(self.run_dir, last, metric, values[-1] if values else None, schedule.planned_ms,
                          float(schedule.timeline.makespan), [m["realised_makespan_ms"] for m in records], records)

    def _helper_lost(self, fleet: fleet_phase.Fleet, profiles: fleet_phase.Profiles, links: Links | None,
                     estimates: Estimates | None, schedule: Schedule, membership: Membership, outcome: RoundOutcome,
                     saved: ckpt.Checkpoint | None, r: int) -> tuple[fleet_phase.Fleet, fleet_phase.Profiles,
                                                                      Links | None, Estimates | None, Schedule,
                                                                      RoundOutcome]:
        """Re-plan the clients onto the surviving helpers (warm-started; its makespan predicted by the estimates
        carried over to the survivors), restore each moved client's middle part from the last averaged model (and its
        optimizer state from the last checkpoint), and re-run round r for the clients the lost helper left
        unfinished; the new fleet, profiles, links, estimates, schedule and the round's merged outcome."""
        lost = outcome.lost_helpers
        for name in lost:
            self.messenger.members.pop(name, None)
        survivors = fleet_phase.Fleet({n: reg for n, reg in fleet.registrations.items() if n not in lost},
                                      fleet.clients, [h for h in fleet.helpers if h not in lost])
        profiles = fleet_phase.Profiles(profiles.clients, {n: p for n, p in profiles.helpers.items() if n not in lost})
        if not survivors.helpers:
            raise RunAbortedError(f"every helper was lost at round {r}; the last checkpoint is in "
                                  f"{self.run_dir / 'checkpoint'}")
        links = links.restricted(survivors.clients, survivors.helpers) if links is not None else None
        if estimates is not None and links is not None:
            estimates = estimates.for_fleet(survivors.clients, survivors.helpers,
                                            *schedule_phase.declared_profiles(survivors, profiles), links)
        instance = replanning.without_helpers(schedule.instance, lost)
        new = replanning.replan(self.config, survivors, profiles, instance, schedule, r,
                                f"helper {', '.join(lost)} lost", self.run_dir, self.endpoint, estimates=estimates)
        self._move_middles(survivors, schedule, fleet, new, saved, r)
        rerun = outcome.closed_for("helper_lost")
        metrics = dict(outcome.metrics)
        if rerun:
            second = play_round(self.messenger, self.config, survivors, new, membership, r, only=rerun)
            losses = {**metrics["client_loss"], **second.metrics["client_loss"]}
            metrics.update({"members": [c for c in fleet.clients if c in losses], "client_loss": losses,
                            "loss": float(np.mean(list(losses.values()))) if losses else None,
                            "rerun": second.metrics["members"],
                            "rerun_started_ms": second.metrics["started_ms"], "ended_ms": second.metrics["ended_ms"],
                            "realised_makespan_ms": second.metrics["ended_ms"] - metrics["started_ms"]})
        metrics["replanned_to"] = new.version
        return survivors, profiles, links, estimates, new, RoundOutcome(metrics, None, outcome.closed, lost)

    def _move_middles(self, fleet: fleet_phase.Fleet, before: Schedule, before_fleet: fleet_phase.Fleet,
                      after: Schedule, saved: ckpt.Checkpoint | None, r: int) -> None:
        """Send each client whose middle part changes helper the last averaged part-2 and its optimizer state from
        the last checkpoint (the coordinator's initial part-2 before any averaging); local clients keep their own."""
        prefixes = self.mode.helper_prefixes
        model = saved.model if saved is not None else {
            k: v for prefix in prefixes for k, v in state.pack(self.model[prefix[:-1]], prefix).items()}
        middle = ckpt.select(model, prefixes)
        for name in replanning.moved(fleet, before, before_fleet, after):
            if after.is_local(fleet, name):
                continue
            optim = saved.optim.get(name + "@part2", {}) if saved is not None else {}
            self.messenger.send(after.helper_of(fleet, name), State(None, {**middle, **optim}), r, name)

    def _estimates(self, fleet: fleet_phase.Fleet, profiles: fleet_phase.Profiles,
                   links: Links | None) -> Estimates | None:
        """Smoothed estimates for this fleet, starting from its declared times and measured links (None on a resumed
        run, which probes no links: it keeps its plan until membership changes)."""
        if links is None:
            return None
        return Estimates(self.config, self.manifest, fleet.clients, fleet.helpers,
                         *schedule_phase.declared_profiles(fleet, profiles), links)

    def _drift(self, fleet: fleet_phase.Fleet, profiles: fleet_phase.Profiles, schedule: Schedule,
               estimates: Estimates, saved: ckpt.Checkpoint, r: int) -> Schedule:
        """Re-plan from the smoothed estimates after averaging round r (warm-started); a client whose helper changes
        gets the averaged part-2 and its optimizer state on its new helper, which is exactly its state now."""
        new = replanning.replan(self.config, fleet, profiles, estimates.instance(), schedule, r + 1,
                                "drift of the realised makespan from the plan", self.run_dir, self.endpoint,
                                log_level=logging.INFO,  # routine: the loop closing, not an event to warn of
                                estimates=estimates)
        self._move_middles(fleet, schedule, fleet, new, saved, r)
        return new

    def _join(self, fleet: fleet_phase.Fleet, profiles: fleet_phase.Profiles, links: Links, estimates: Estimates,
              schedule: Schedule, membership: Membership, saved: ckpt.Checkpoint,
              r: int) -> tuple[fleet_phase.Fleet, fleet_phase.Profiles, Links, Estimates, Schedule]:
        """Admit the clients and helpers that registered during the run: welcome them (and, when clients join, the
        helpers again, with their keys), probe the new links (new clients to every helper, the other members to new
        helpers; a lost client's links to them are declared), carry the estimates over to the grown fleet (new roles:
        declared times, probed links), re-plan from them warm-started from the current plan, send new clients the
        averaged model and move the middle part of every client whose helper changed (the averaged part-2 and its
        optimizer state from the checkpoint just written: exactly its state); they all train from round r + 1."""
        messenger, cfg = self.messenger, self.config
        joining = dict(messenger.joining)
        messenger.joining.clear()
        names = sorted(joining, key=fleet_phase.natural)
        for name in names:
            messenger.members[name] = joining[name].role
        grown = fleet_phase.joined(fleet, joining)
        clients = [n for n in names if joining[n].role == "client"]
        helpers = [n for n in names if joining[n].role == "helper"]
        sized = cfg.replace(clients=len(grown.clients), helpers=len(grown.helpers))
        welcomed = [*(grown.helpers if clients else helpers), *clients]
        fresh = fleet_phase.welcome(messenger, sized, grown, self.allowed, welcomed)
        profiles = fleet_phase.Profiles({**profiles.clients, **fresh.clients}, {**profiles.helpers, **fresh.helpers})
        parts = [links]
        for probing, targets in ((clients, grown.helpers), (membership.members, helpers)):
            if probing and targets:
                parts.append(schedule_phase.links(messenger, sized, self.manifest,
                                                  fleet_phase.Fleet(grown.registrations, probing, targets), profiles))
        lost = [c for c in fleet.clients if c not in membership.members]
        if lost and helpers:  # a lost client cannot probe: its links to the new helpers are declared
            parts.append(declared_links(sized, lost, helpers, {c: profiles.clients[c].bandwidth_mbps for c in lost}))
        links = assembled(parts, grown.clients, grown.helpers)
        links.save(self.run_dir / "links.json")
        estimates = estimates.for_fleet(grown.clients, grown.helpers,
                                        *schedule_phase.declared_profiles(grown, profiles), links)
        new = replanning.replan(cfg, grown, profiles, estimates.instance(), schedule, r + 1,
                                f"{', '.join(names)} joined", self.run_dir, self.endpoint, estimates=estimates)
        averaging.broadcast(messenger, grown, new, saved, False, clients, self.config)
        self._move_middles(grown, schedule, fleet, new, saved, r)
        membership.add(clients)
        log.warning("%s joined the run at round %d", ", ".join(names), r + 1)
        return grown, profiles, links, estimates, new

    def _average(self, fleet: fleet_phase.Fleet, schedule: Schedule, gathered: averaging.Gathered,
                 membership: Membership, r: int) -> ckpt.Checkpoint:
        """Merge the gathered states, load the result for evaluation and send it to the members and to the clients
        that came back (they rejoin here)."""
        saved = averaging.aggregate(self.strategy, gathered, r)
        averaging.load_model(self.model, saved)
        back = membership.rejoin()
        clients = [c for c in membership.members if c in gathered.clients or c in back]
        averaging.broadcast(self.messenger, fleet, schedule, saved, False, clients, self.config)
        return saved

    def _restore(self, fleet: fleet_phase.Fleet, schedule: Schedule) -> int:
        """Send the checkpoint's model and optimizer states to the roles; the first round to run."""
        saved = ckpt.load(self.run_dir / "checkpoint")
        averaging.load_model(self.model, saved)
        averaging.broadcast(self.messenger, fleet, schedule, saved, True, fleet.clients, self.config)
        self.metrics.truncate_after(saved.round)
        return saved.round + 1

    def _figures(self, schedule: Schedule | None, last: RoundRecord | None, r: int) -> None:
        """curves.png from metrics.jsonl, and the planned and last realised rounds' Gantt charts (of the last plan
        version, when a complete round ran it), titled with the plan version."""
        try:
            from edgepsl.runtime.plots import curves_png, gantt_pair

            records = self.metrics.read()
            if records:
                curves_png(records, self.run_dir / "curves.png", self.manifest.metric)
            if schedule is not None and last is not None and last.metrics["plan_version"] == schedule.version:
                gantt_pair(schedule.instance, schedule.plan, schedule.timeline, last.measured, last.timeline,
                           self.run_dir, int(last.metrics.get("round", r)), schedule.version)
        except ImportError as exc:
            log.warning("no figures (%s): install the plot extra, pip install 'edgepsl[plot]'", exc)
