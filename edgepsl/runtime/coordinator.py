"""The coordinator: registers roles, plans, runs rounds, averages (FedAvg), evaluates, checkpoints, reports."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgepsl.plan.evaluate import evaluate as evaluate_plan
from edgepsl.plan.instance import Instance
from edgepsl.plan.schedule import Plan
from edgepsl.runtime import checkpoint as ckpt
from edgepsl.runtime import planning, state
from edgepsl.runtime.channels import SERVER_INBOX, channel_config, refusal_text
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.dataset import test_set
from edgepsl.runtime.errors import RunAbortedError, RunConfigError
from edgepsl.runtime.links import Links, declared_links, measured_links, probe_sizes_kb
from edgepsl.runtime.metrics import MetricsLog, RoundRecord, realised
from edgepsl.runtime.trace import Trace, now_ms
from edgepsl.segment import Segment, load_manifest
from edgepsl.wire import (Envelope, ErrorCode, EventKind, JobId, Message, MsgType, PeerEvent, PeerUnreachableError,
                          ServerChannel, ServerSecurity, error_message)

log = logging.getLogger("edgepsl.runtime.coordinator")
PARTS = ("part1/", "part2/", "part3/")
EVAL_CHUNK = 1000
WATCH_S = 1.0


@dataclass
class RunSummary:
    """What a finished (or stopped) run achieved."""

    run_dir: Path
    rounds_done: int
    accuracy: float | None
    planned_makespan_ms: float
    realised_makespan_ms: list[float] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)


def _natural(name: str) -> tuple[int, str]:
    return len(name), name


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
        self.watch = watch
        self.security = security
        self.server = ServerChannel(bind, security=security, insecure=security is None,
                                    config=channel_config(config.float16, SERVER_INBOX))
        self.endpoint = self.server.endpoint
        self.trace = Trace(self.run_dir / "traces" / "coordinator.jsonl", "coordinator")
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")
        self._seq = time.time_ns() // 1000
        self.manifest = load_manifest(config.artifact)
        self.model = {name: Segment(self.manifest, name, threads=config.threads) for name in ("part1", "part2", "part3")}

    # ---- messaging ----

    def _job(self, round_: int, client: str = "") -> JobId:
        self._seq += 1
        return JobId(self.config.run_id, round_, client, self._seq)

    def _send(self, peer: str, message: Message) -> None:
        try:
            self.server.send(peer, message, copy=True)
        except PeerUnreachableError as exc:
            raise RunAbortedError(f"cannot reach {peer}: {exc}") from None
        self.trace.event("send", type=message.type.value, peer=peer, round=message.job.round)

    def _collect(self, want: Callable[[Envelope], str | None], count: int, what: str,
                 timeout_s: float) -> list[Envelope]:
        """`count` messages accepted by `want` (which names the slot they fill, once each); others are refused."""
        got: dict[str, Envelope] = {}
        deadline = time.monotonic() + timeout_s
        while len(got) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RunAbortedError(f"timed out after {timeout_s:g} s waiting for {what} ({len(got)} of {count})")
            item = self.server.recv(timeout=min(remaining, WATCH_S))
            if isinstance(item, Envelope) and item.message.type is MsgType.ERROR and item.peer in self.roles:
                raise RunAbortedError(refusal_text(item))
            if self.watch is not None:
                self.watch()
            if item is None:
                continue
            if isinstance(item, PeerEvent):
                if item.kind is EventKind.LOST and item.peer in self.roles:
                    log.warning("%s went silent during %s", item.peer, what)
                continue
            if item.message.type is MsgType.ERROR:
                continue
            slot = want(item)
            if slot is None or slot in got:
                self._refuse(item, f"unexpected {item.message.type.value} while waiting for {what}")
                continue
            got[slot] = item
        return list(got.values())

    def _refuse(self, env: Envelope, reason: str) -> None:
        log.warning("refused %s from %s: %s", env.message.type.value, env.peer, reason)
        try:
            self.server.send(env.peer, error_message(ErrorCode.REJECTED, reason, env.message.job))
        except PeerUnreachableError:
            pass

    # ---- phases ----

    def _register(self) -> None:
        cfg = self.config
        self.roles: dict[str, dict] = {}

        def want(env: Envelope) -> str | None:
            role = env.message.meta.get("role") if env.message.type is MsgType.REGISTER else None
            if role not in ("client", "helper"):
                return None
            have = sum(1 for r in self.roles.values() if r["role"] == role)
            if env.peer in self.roles or have >= (cfg.clients if role == "client" else cfg.helpers):
                return None
            self.roles[env.peer] = dict(env.message.meta)
            return env.peer

        self._collect(want, cfg.clients + cfg.helpers, "registrations", cfg.register_timeout_s)
        self.clients = sorted((n for n, r in self.roles.items() if r["role"] == "client"), key=_natural)
        self.helpers = sorted((n for n, r in self.roles.items() if r["role"] == "helper"), key=_natural)

    def _welcome(self) -> None:
        cfg = self.config.to_dict()
        allowed = self.security.allowed if self.security is not None else {}
        client_keys = {n: (allowed[n].decode() if isinstance(allowed[n], bytes) else str(allowed[n]))
                       for n in self.clients if n in allowed}
        client_links = {n: self.roles[n].get("emulation", {}).get("bandwidth_mbps") for n in self.clients}
        for name in self.helpers:
            self._send(name, Message(MsgType.WELCOME, self._job(0), meta={"config": cfg, "client_keys": client_keys,
                                                                          "client_links": client_links}))
        for index, name in enumerate(self.clients):
            self._send(name, Message(MsgType.WELCOME, self._job(0, name), meta={"config": cfg, "index": index}))

        def want(env: Envelope) -> str | None:
            ok = env.message.type is MsgType.REPORT and env.message.meta.get("phase") == "profile"
            if ok and env.peer in self.roles:
                self.roles[env.peer]["profile"] = dict(env.message.meta)
                return env.peer
            return None

        self._collect(want, len(self.roles), "profiles", self.config.register_timeout_s)

    def _links(self) -> Links:
        """The K x H links: each client probes every helper over the real channel, or the declared bandwidths."""
        cfg = self.config
        if cfg.links == "declared":
            return declared_links(cfg, self.clients, self.helpers,
                                  {n: self.roles[n]["profile"].get("bandwidth_mbps") for n in self.clients})
        sizes = probe_sizes_kb(self.manifest, cfg.batch_size, cfg.float16)
        targets = [{"helper": h, "endpoint": self.endpoints[h], "key": self.roles[h].get("public_key")}
                   for h in self.helpers]
        for name in self.clients:
            self._send(name, Message(MsgType.PROBE, self._job(0, name), meta={"helpers": targets, "sizes_kb": sizes}))
        reports: dict[str, dict] = {}

        def want(env: Envelope) -> str | None:
            meta = env.message.meta
            if env.message.type is MsgType.REPORT and env.peer in self.clients and meta.get("phase") == "links":
                reports[env.peer] = dict(meta["links"])
                return env.peer
            return None

        # Each client probes its links one after the other; every probe is bounded by probe_timeout_s.
        bound = cfg.register_timeout_s + len(self.helpers) * (1 + len(sizes) * cfg.probe_repeats) * cfg.probe_timeout_s
        self._collect(want, len(self.clients), "the clients' link probes", bound)
        return measured_links(self.clients, self.helpers, reports)

    def _plan(self) -> None:
        cfg = self.config
        profiles = {n: self.roles[n]["profile"] for n in self.roles}
        for n in self.helpers:
            profiles[n]["capacity_mb"] = self.roles[n].get("capacity_mb")
        self.endpoints = {n: profiles[n]["endpoint"] for n in self.helpers}
        plan_path, instance_path = self.run_dir / "plan.json", self.run_dir / "instance.json"
        if self.resume:
            self.instance, self.plan = Instance.load(instance_path), Plan.load(plan_path)
            if list(self.instance.client_names) != self.clients or list(self.instance.helper_names) != self.helpers:
                raise RunConfigError("the resumed run's clients and helpers differ from the checkpointed ones")
        else:
            links = self._links()
            links.save(self.run_dir / "links.json")
            self.instance = planning.build_instance(cfg, self.manifest, self.clients, self.helpers,
                                                    {n: profiles[n] for n in self.clients},
                                                    {n: profiles[n] for n in self.helpers}, links)
            solution = planning.make_plan(cfg, self.instance)
            self.plan = solution.plan
            self.instance.save(instance_path)
            self.plan.save(plan_path)
        self.timeline = evaluate_plan(self.instance, self.plan)
        roles = {"clients": self.clients, "helpers": self.helpers, "helper_endpoints": self.endpoints,
                 "coordinator": self.endpoint}
        (self.run_dir / "roles.json").write_text(json.dumps(roles, indent=1) + "\n")

    def _start_round(self, r: int) -> float:
        inst, plan = self.instance, self.plan
        orders = planning.helper_orders(plan, self.clients)
        bandwidth = {n: self.roles[n]["profile"].get("bandwidth_mbps") for n in self.clients}
        rule = self.config.fallback_rule
        timeline = self.timeline
        t0 = now_ms()
        for i, name in enumerate(self.helpers):
            mine = [j for j in range(inst.K) if plan.assignment[j] == i]
            priority = {self.clients[j]: planning.fallback_priority(inst, rule, j, i) for j in mine}
            starts = [float((timeline.fwd_start if kind == "fwd" else timeline.bwd_start)[self.clients.index(c)])
                      for c, kind in orders[i]]
            self._send(name, Message(MsgType.ROUND_START, self._job(r), meta={
                "order": orders[i], "planned_start": starts, "priority": priority,
                "duration": {self.clients[j]: [float(inst.p[j, i]), float(inst.p_bwd[j, i])] for j in mine},
                "bandwidth": {self.clients[j]: bandwidth[self.clients[j]] for j in mine},
                "memory_mb": {self.clients[j]: float(inst.mem[j]) for j in mine}}))
        for j, name in enumerate(self.clients):
            helper = self.helpers[int(plan.assignment[j])]
            self._send(name, Message(MsgType.ROUND_START, self._job(r, name), meta={
                "helper": helper, "helper_endpoint": self.endpoints[helper], "t0_ms": t0,
                "helper_key": self.roles[helper].get("public_key")}))
        return t0

    def _round(self, r: int) -> RoundRecord:
        t0 = self._start_round(r)
        reports: dict[str, dict] = {}

        def want(env: Envelope) -> str | None:
            meta = env.message.meta
            if env.message.type is MsgType.REPORT and env.peer in self.roles and meta.get("phase") == "round" \
                    and meta.get("round") == r:
                reports[env.peer] = dict(meta)
                return env.peer
            return None

        self._collect(want, len(self.roles), f"the reports of round {r}", self.config.round_timeout_s)
        record = realised(self.instance, self.plan, self.timeline, self.clients, t0,
                          {n: reports[n] for n in self.clients}, {n: reports[n] for n in self.helpers})
        samples = np.array([reports[n]["samples"] for n in self.clients], dtype=np.float64)
        losses = np.array([reports[n]["loss"] for n in self.clients])
        record.metrics.update({"round": r, "loss": float((losses * samples).sum() / samples.sum()),
                               "client_loss": dict(zip(self.clients, losses.tolist())),
                               "planned_makespan_ms": float(self.timeline.makespan)})
        return record

    def _gather(self, r: int, optimizer: bool) -> tuple[dict[str, dict], dict[str, dict]]:
        """STATE of every client (part1, part3) and of every middle part (by client) after round r."""
        for name in self.clients:
            self._send(name, Message(MsgType.STATE_REQUEST, self._job(r, name), meta={"optimizer": optimizer}))
        for i, name in enumerate(self.helpers):
            mine = [c for j, c in enumerate(self.clients) if self.plan.assignment[j] == i]
            self._send(name, Message(MsgType.STATE_REQUEST, self._job(r), meta={"clients": mine, "optimizer": optimizer}))
        client_states: dict[str, dict] = {}
        middle_states: dict[str, dict] = {}

        def want(env: Envelope) -> str | None:
            if env.message.type is not MsgType.STATE or env.message.job.round != r:
                return None
            if env.peer in self.clients:
                client_states[env.peer] = {"tensors": dict(env.message.tensors), "samples": env.message.meta["samples"]}
                return env.peer
            owner = env.message.job.client
            if env.peer in self.helpers and owner in self.clients and \
                    self.helpers[int(self.plan.assignment[self.clients.index(owner)])] == env.peer:
                middle_states[owner] = dict(env.message.tensors)
                return owner + "@part2"
            return None

        self._collect(want, 2 * len(self.clients), f"the states of round {r}", self.config.round_timeout_s)
        return client_states, middle_states

    def _aggregate(self, r: int) -> None:
        """FedAvg of client parts and middle parts (weights: samples), broadcast, checkpoint."""
        client_states, middle_states = self._gather(r, optimizer=True)
        weights = [float(client_states[n]["samples"]) for n in self.clients]
        model: dict[str, np.ndarray] = {}
        for prefix, source in (("part1/", "client"), ("part3/", "client"), ("part2/", "middle")):
            states = [state.unpack(client_states[n]["tensors"] if source == "client" else middle_states[n], prefix)[0]
                      for n in self.clients]
            averaged = state.fedavg(states, weights)
            self.model[prefix[:-1]].set_state(averaged)
            model.update({prefix + state.MODEL + k: v for k, v in averaged.items()})
        optim = {n: ckpt.select(client_states[n]["tensors"], ("part1/" + state.OPTIM, "part3/" + state.OPTIM))
                 for n in self.clients}
        optim.update({n + "@part2": ckpt.select(middle_states[n], ("part2/" + state.OPTIM,)) for n in self.clients})
        self._broadcast(r, model, None)
        ckpt.save(self.run_dir / "checkpoint", ckpt.Checkpoint(r, model, optim))

    def _broadcast(self, r: int, model: dict[str, np.ndarray], optim: dict[str, dict[str, np.ndarray]] | None) -> None:
        """Send the model (and, on resume, each owner's optimizer state) to every client and middle part."""
        ends = ckpt.select(model, ("part1/", "part3/"))
        middle = ckpt.select(model, ("part2/",))
        for name in self.clients:
            extra = optim[name] if optim else {}
            self._send(name, Message(MsgType.STATE, self._job(r, name), {**ends, **extra}))
        for j, name in enumerate(self.clients):
            helper = self.helpers[int(self.plan.assignment[j])]
            extra = optim[name + "@part2"] if optim else {}
            self._send(helper, Message(MsgType.STATE, self._job(r, name), {**middle, **extra}))

    def _evaluate(self) -> float:
        x, y = self._test
        correct = 0
        for k in range(0, len(y), EVAL_CHUNK):
            logits = x[k:k + EVAL_CHUNK]
            for name in ("part1", "part2", "part3"):
                logits = self.model[name].evaluate(logits)
            correct += int((logits.argmax(axis=1) == y[k:k + EVAL_CHUNK]).sum())
        return correct / len(y)

    def _restore(self) -> int:
        saved = ckpt.load(self.run_dir / "checkpoint")
        for prefix in PARTS:
            self.model[prefix[:-1]].set_state(state.unpack(saved.model, prefix)[0])
        self._broadcast(saved.round, saved.model, saved.optim)
        self.metrics.truncate_after(saved.round)
        return saved.round + 1

    def run(self) -> RunSummary:
        """Drive the run to its last round (or stop_after); BYE to every role at the end."""
        cfg = self.config
        cfg.save(self.run_dir / "run.toml")
        if not self.resume:
            self.metrics.truncate_after(-1)  # a fresh run in a used directory starts its metrics afresh
        self._test = test_set(cfg)
        try:
            self._register()
            self._welcome()
            self._plan()
            first = self._restore() if self.resume else 0
            last = self.stop_after or cfg.rounds
            records: list[dict[str, Any]] = []
            record = None
            for r in range(first, last):
                record = self._round(r)
                metrics = dict(record.metrics)
                if (r + 1) % cfg.aggregate_every == 0 or r + 1 == cfg.rounds:
                    self._aggregate(r)
                    if (r + 1) % cfg.eval_every == 0 or r + 1 == cfg.rounds:
                        metrics["accuracy"] = self._evaluate()
                self.metrics.append(metrics)
                records.append(metrics)
                if self.on_round is not None:
                    self.on_round(metrics)
            for name in self.roles:
                self._send(name, Message(MsgType.BYE, self._job(last), meta={"reason": "run finished"}))
        except RunAbortedError as exc:
            self._farewell(f"run aborted: {exc}")
            raise
        finally:
            self.server.close()
            self.trace.close()
        all_records = self.metrics.read()
        self._figures(all_records, record, last - 1)
        accuracies = [m["accuracy"] for m in all_records if m.get("accuracy") is not None]
        return RunSummary(self.run_dir, last, accuracies[-1] if accuracies else None, float(self.timeline.makespan),
                          [m["realised_makespan_ms"] for m in records], records)

    def _farewell(self, reason: str) -> None:
        """Best effort: tell every registered role that the run is over, so none waits for its timeout."""
        for name in getattr(self, "roles", {}):
            try:
                self.server.send(name, Message(MsgType.BYE, self._job(0), meta={"reason": reason}))
            except PeerUnreachableError:
                pass

    def _figures(self, records: list[dict[str, Any]], last: RoundRecord | None, r: int) -> None:
        try:
            from edgepsl.runtime.plots import curves_png, gantt_pair

            if records:
                curves_png(records, self.run_dir / "curves.png")
            if last is not None:
                gantt_pair(self.instance, self.plan, self.timeline, last.measured, last.timeline, self.run_dir, r)
        except ImportError as exc:
            log.warning("no figures (%s): install the plot extra, pip install 'edgepsl[plot]'", exc)
