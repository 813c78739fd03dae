"""The helper daemon: one middle-part state per assigned client, jobs served in plan order, kernel fallback."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgepsl.plan.backend import kernels
from edgepsl.plan.heuristics import DISPATCH_RULES
from edgepsl.plan.pure.constants import BWD, FWD
from edgepsl.runtime import state
from edgepsl.profiling.link import answer_probe
from edgepsl.runtime.channels import SERVER_INBOX, channel_config, expect, poll
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.emulation import Emulation, Pacer
from edgepsl.runtime.errors import RunAbortedError
from edgepsl.runtime.measure import measure_helper
from edgepsl.runtime.trace import Trace, now_ms, tensor_bytes
from edgepsl.segment import Optimizer, Segment, SegmentError, load_manifest
from edgepsl.wire import (Envelope, ErrorCode, JobId, KeyPair, Message, MsgType, PeerChannel, PeerSecurity,
                          PeerUnreachableError, ServerChannel, ServerSecurity, error_message)

log = logging.getLogger("edgepsl.runtime.helper")
PART2 = "part2/"
KINDS = {MsgType.FORWARD: FWD, MsgType.GRADIENTS: BWD}
COMMANDS = {MsgType.ROUND_START, MsgType.STATE_REQUEST, MsgType.STATE, MsgType.BYE}
PROBE_POLL_S = 0.01
REPLIES = {FWD: MsgType.ACTIVATIONS, BWD: MsgType.GRAD_BACK}


@dataclass(frozen=True)
class HelperOptions:
    """How a helper process reaches the coordinator, where it serves clients, and what it emulates."""

    name: str
    coordinator: str
    bind: str = "tcp://127.0.0.1:*"
    advertise: str | None = None
    keypair: KeyPair | None = None
    coordinator_key: bytes | None = None
    capacity_mb: float | None = None
    emulation: Emulation = Emulation()
    trace_path: Path | None = None


@dataclass
class Job:
    """A forward or backward job that arrived and waits to run."""

    client: str
    kind: int
    envelope: Envelope
    arrival: float


@dataclass
class RoundPlan:
    """This helper's part of one round: job order, planned starts and durations, priorities, link bandwidths.

    The helper follows `order`, running an arrived job out of order only when it ends before the planned job's
    planned start.
    """

    round: int
    run: str
    order: list[tuple[str, int]]
    planned_start: dict[tuple[str, int], float]
    duration: dict[str, tuple[float, float]]
    priority: dict[str, tuple[float, float]]
    bandwidth: dict[str, float | None]
    done: set[tuple[str, int]] = field(default_factory=set)

    @classmethod
    def from_meta(cls, round_: int, run: str, meta: dict) -> "RoundPlan":
        """The plan a ROUND_START carries."""
        order = [(c, FWD if k == "fwd" else BWD) for c, k in meta["order"]]
        return cls(round_, run, order,
                   dict(zip(order, (float(t) for t in meta["planned_start"]))),
                   {c: (float(v[0]), float(v[1])) for c, v in meta["duration"].items()},
                   {c: (float(v[0]), float(v[1])) for c, v in meta["priority"].items()},
                   {c: v for c, v in meta["bandwidth"].items()})


class Helper:
    """One helper: register, declare part-2 times, serve each round's jobs, send states, until BYE."""

    def __init__(self, options: HelperOptions) -> None:
        self.options = options
        self.name = options.name
        self.trace = Trace(options.trace_path, self.name)
        self._seq = time.time_ns() // 1000
        self.parts: dict[str, tuple[Segment, Optimizer]] = {}
        self.config: RunConfig | None = None
        self.rule = DISPATCH_RULES["tail"]
        self.server: ServerChannel | None = None
        self.client_links: dict[str, float | None] = {}
        self.early: list[Envelope] = []

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def run(self) -> None:
        """Serve the whole run; returns after the coordinator's BYE."""
        opts = self.options
        secure = opts.keypair is not None
        coord = PeerChannel(opts.coordinator, self.name, insecure=not secure, config=channel_config(),
                            security=PeerSecurity(opts.keypair, opts.coordinator_key) if secure else None)
        pacer = Pacer()
        try:
            self._serve(coord, pacer)
        finally:
            pacer.close()
            if self.server is not None:
                self.server.close()
            coord.close()
            self.trace.close()

    def _serve(self, coord: PeerChannel, pacer: Pacer) -> None:
        opts = self.options
        secure = opts.keypair is not None
        coord.send(Message(MsgType.REGISTER, JobId("", 0, self.name, self._next_seq()), meta=self._register_meta()))
        welcome = expect(coord, {MsgType.WELCOME}, 600.0, "the coordinator's welcome").message
        self.config = config = RunConfig.from_dict(welcome.meta["config"])
        self.rule = DISPATCH_RULES[config.fallback_rule]
        self.client_links = dict(welcome.meta.get("client_links", {}))
        self.manifest = load_manifest(config.artifact)
        self.server = ServerChannel(opts.bind, insecure=not secure, config=channel_config(config.float16, SERVER_INBOX),
                                    security=ServerSecurity(opts.keypair, {}) if secure else None)
        if secure:
            self.server.set_allowed({n: k.encode() for n, k in welcome.meta["client_keys"].items()})
        run = welcome.job.run
        scratch = Segment(self.manifest, "part2", threads=config.threads)
        measured = measure_helper(scratch, config.batch_size, config.profile_iters)
        times = opts.emulation.part_times(measured, config.emulation_profile, config.time_scale)
        self.times = times
        coord.send(Message(MsgType.REPORT, JobId(run, 0, self.name, self._next_seq()), meta={
            "phase": "profile", "times": times, "measured": measured,
            "endpoint": opts.advertise or self.server.endpoint}))
        message = self._first_command(coord, pacer, config.register_timeout_s * 10)
        while True:
            if message.type is MsgType.BYE:
                return
            if message.type is MsgType.ROUND_START:
                self._check_capacity(coord, message)
                plan = RoundPlan.from_meta(message.job.round, run, message.meta)
                jobs = self._round(plan, pacer)
                coord.send(Message(MsgType.REPORT, JobId(run, plan.round, self.name, self._next_seq()),
                                   meta={"phase": "round", "round": plan.round, "jobs": jobs}))
            elif message.type is MsgType.STATE_REQUEST:
                for client in message.meta["clients"]:
                    segment, optimizer = self._part(client)
                    coord.send(Message(MsgType.STATE, JobId(run, message.job.round, client, self._next_seq()),
                                       state.pack(segment, PART2, optimizer if message.meta.get("optimizer") else None)),
                               copy=True)
            else:
                segment, optimizer = self._part(message.job.client)
                state.restore(segment, optimizer, message.tensors, PART2)
            message = expect(coord, COMMANDS, config.round_timeout_s * 10, "the coordinator's next command").message

    def _register_meta(self) -> dict:
        """What this helper declares when it registers: capacity, emulation and public key."""
        opts = self.options
        return {"role": "helper", "capacity_mb": opts.capacity_mb, "emulation": opts.emulation.to_meta(),
                "public_key": opts.keypair.public.decode() if opts.keypair is not None else None}

    def _first_command(self, coord: PeerChannel, pacer: Pacer, timeout_s: float) -> Message:
        """The coordinator's first command after the profile; meanwhile echo the clients' link probes.

        Jobs that overtake the first ROUND_START wait in `early` for the round.
        """
        assert self.server is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            env = poll(coord, COMMANDS, "the coordinator's first command")
            if env is not None:
                return env.message
            item = self.server.recv(timeout=PROBE_POLL_S)
            if isinstance(item, Envelope):
                self._echo(item, pacer)
        raise RunAbortedError(f"timed out after {timeout_s:g} s waiting for the coordinator's first command")

    def _echo(self, env: Envelope, pacer: Pacer) -> None:
        """Answer a link probe after the emulated download of its payload; keep anything else for the round."""
        if env.message.type is not MsgType.PROBE:
            self.early.append(env)
            return
        assert self.server is not None
        server = self.server
        delay = Emulation(bandwidth_mbps=self.client_links.get(env.peer)).transfer_s(tensor_bytes(env.message.tensors))
        pacer.later(delay, lambda: answer_probe(server, env))

    def _check_capacity(self, coord: PeerChannel, start: Message) -> None:
        """Refuse (to the coordinator) a round whose clients' middle parts need more memory than this helper has."""
        need = sum(float(v) for v in start.meta["memory_mb"].values())
        capacity = self.options.capacity_mb
        if capacity is not None and need > capacity:
            reason = f"helper {self.name} has {capacity:g} MB but its clients' middle parts need {need:g} MB"
            coord.send(error_message(ErrorCode.REJECTED, reason, start.job))
            raise RunAbortedError(reason)

    def _part(self, client: str) -> tuple[Segment, Optimizer]:
        """The middle-part state of one client (created on first use)."""
        if client not in self.parts:
            assert self.config is not None
            segment = Segment(self.manifest, "part2", threads=self.config.threads)
            self.parts[client] = (segment, state.make_optimizer(self.config, segment.params))
        return self.parts[client]

    def _refuse(self, env: Envelope, code: int, reason: str) -> None:
        """Send an ERROR for one message to its sender only; never disturbs the other clients."""
        log.warning("refused %s %s from %s: %s", env.message.type.value, tuple(env.message.job), env.peer, reason)
        self.trace.event("refused", peer=env.peer, type=env.message.type.value, reason=reason)
        try:
            assert self.server is not None
            self.server.send(env.peer, error_message(code, reason, env.message.job))
        except PeerUnreachableError:
            pass

    def _admit(self, env: Envelope, plan: RoundPlan, ready: dict[tuple[str, int], Job], t0: float) -> None:
        """Queue a job message if it belongs to this round's plan; refuse it otherwise."""
        message = env.message
        kind = KINDS.get(message.type)
        if kind is None:
            self._refuse(env, ErrorCode.REJECTED, f"a helper accepts only forward and gradients jobs, not {message.type.value}")
            return
        key = (env.peer, kind)
        if env.peer not in plan.priority:
            self._refuse(env, ErrorCode.REJECTED, f"client {env.peer!r} is not assigned to helper {self.name}")
        elif message.job.round != plan.round or message.job.run != plan.run:
            self._refuse(env, ErrorCode.REJECTED, f"job of run {message.job.run!r} round {message.job.round}; "
                                                  f"this helper is serving run {plan.run!r} round {plan.round}")
        elif key in plan.done or key in ready:
            self._refuse(env, ErrorCode.REJECTED, f"the {message.type.value} job of round {plan.round} was already received")
        elif kind == BWD and (env.peer, FWD) not in plan.done:
            self._refuse(env, ErrorCode.UNKNOWN_JOB, f"gradients of round {plan.round} before its forward job ran")
        elif set(message.tensors) != {"x" if kind == FWD else "grad"}:
            self._refuse(env, ErrorCode.REJECTED, f"a {message.type.value} job carries exactly one tensor named "
                                                  f"{'x' if kind == FWD else 'grad'}, got {sorted(message.tensors)}")
        else:
            arrival = now_ms()
            self.trace.event("recv", arrival, type=message.type.value, client=env.peer, round=plan.round,
                             bytes=tensor_bytes(message.tensors, self.config.float16))
            ready[key] = Job(env.peer, kind, env, arrival - t0)

    def _pick(self, plan: RoundPlan, ready: dict[tuple[str, int], Job], now: float, rule: int) -> Job:
        """The compiled online dispatch kernel's choice among the arrived jobs under `rule`."""
        jobs = list(ready.values())
        kind = np.array([j.kind for j in jobs], dtype=np.int64)
        release = np.array([j.arrival for j in jobs], dtype=np.float64)
        tail = np.array([plan.priority[j.client][j.kind] for j in jobs], dtype=np.float64)
        client = np.array([[c for c, _ in plan.order].index(j.client) for j in jobs], dtype=np.int64)
        pick = int(kernels.pick_next(float(now), kind, release, tail, client, rule))
        return jobs[pick if pick >= 0 else int(np.argmin(release))]

    def _choose(self, plan: RoundPlan, ready: dict[tuple[str, int], Job], now: float) -> tuple[Job, bool] | None:
        """The job to run now and whether it is the plan's, or None to wait for more arrivals.

        The next planned job runs once it has arrived; before that, the fallback rule's best arrived job runs
        only if it is expected to end by the planned job's planned start, so the plan is never delayed by it.
        Baseline plans too: their order is their dispatch rule applied to the planned releases.
        """
        nxt = next(job for job in plan.order if job not in plan.done)
        if nxt in ready:
            return ready.pop(nxt), True
        job = self._pick(plan, ready, now, self.rule)
        if now + plan.duration[job.client][job.kind] > plan.planned_start[nxt]:
            return None
        return ready.pop((job.client, job.kind)), False

    def _round(self, plan: RoundPlan, pacer: Pacer) -> list[dict]:
        """Serve every job of the round's order; returns one record per job for the coordinator's report."""
        assert self.server is not None and self.config is not None
        t0 = now_ms()
        ready: dict[tuple[str, int], Job] = {}
        records = []
        for env in self.early:
            self._admit(env, plan, ready, t0)
        self.early.clear()
        deadline = time.monotonic() + self.config.round_timeout_s
        while len(plan.done) < len(plan.order):
            choice = self._choose(plan, ready, now_ms() - t0) if ready else None
            if choice is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    missing = [f"{c}:{'fwd' if k == FWD else 'bwd'}" for c, k in plan.order if (c, k) not in plan.done]
                    raise RunAbortedError(f"round {plan.round}: jobs {missing} did not run within "
                                          f"{self.config.round_timeout_s:g} s")
                self._receive(remaining, plan, ready, t0)
                continue
            job, planned = choice
            record = self._execute(job, plan, ready, pacer, t0)
            if record is not None:
                records.append({**record, "planned": planned})
        return records

    def _receive(self, timeout_s: float, plan: RoundPlan, ready: dict[tuple[str, int], Job], t0: float) -> None:
        """Wait up to timeout_s for a message, then admit it and everything else already received."""
        assert self.server is not None
        item = self.server.recv(timeout=timeout_s)
        while item is not None:
            if isinstance(item, Envelope):
                self._admit(item, plan, ready, t0)
            item = self.server.recv(timeout=0)

    def _pad(self, start: float, target_s: float, plan: RoundPlan, ready: dict[tuple[str, int], Job],
             t0: float) -> float:
        """Pad a job to target_s seconds after perf_counter `start`, admitting arrivals meanwhile; ms padded."""
        pad = max(0.0, target_s - (time.perf_counter() - start))
        while (remaining := target_s - (time.perf_counter() - start)) > 0:
            self._receive(remaining, plan, ready, t0)
        return pad * 1e3

    def _execute(self, job: Job, plan: RoundPlan, ready: dict[tuple[str, int], Job], pacer: Pacer,
                 t0: float) -> dict | None:
        """Run one job, pad it, reply after the emulated download; its record, or None if its input was refused."""
        segment, optimizer = self._part(job.client)
        assert self.config is not None
        optimizer.lr = state.lr_at(self.config, plan.round)
        message = job.envelope.message
        start = now_ms()
        self.trace.event("job_start", start, client=job.client, kind=job.kind, round=plan.round)
        t = time.perf_counter()
        try:
            if job.kind == FWD:
                out = {"y": segment.forward(plan.round, message.tensors["x"])}
            else:
                result = segment.backward(plan.round, message.tensors["grad"])
                optimizer.step(result.grads)
                out = {"grad": result.grad_in}
        except SegmentError as exc:
            self._refuse(job.envelope, ErrorCode.REJECTED, str(exc))
            return None
        compute = (time.perf_counter() - t) * 1e3
        emulated = self.times["part2_fwd" if job.kind == FWD else "part2_bwd"]
        pad = self._pad(t, emulated / 1000.0, plan, ready, t0) if self.options.emulation.active else 0.0
        end = now_ms()
        plan.done.add((job.client, job.kind))
        self.trace.event("job_end", end, client=job.client, kind=job.kind, round=plan.round, compute_ms=compute, pad_ms=pad)
        reply = Message(REPLIES[job.kind], message.job, out)
        bandwidth = plan.bandwidth.get(job.client)
        nbytes = tensor_bytes(out, self.config.float16)
        down = Emulation(bandwidth_mbps=bandwidth).transfer_s(nbytes)
        pacer.later(down, lambda: self._reply(job.client, reply, nbytes))
        return {"client": job.client, "kind": job.kind, "arrival": job.arrival + t0, "start": start, "end": end,
                "compute_ms": compute, "pad_ms": pad, "down_s": down,
                "bytes_in": tensor_bytes(message.tensors, self.config.float16), "bytes_out": nbytes}

    def _reply(self, client: str, reply: Message, nbytes: int) -> None:
        """Send a job's result (on the pacer thread when a download is emulated)."""
        assert self.server is not None
        try:
            self.server.send(client, reply)
            self.trace.event("send", type=reply.type.value, client=client, round=reply.job.round, bytes=nbytes)
        except PeerUnreachableError as exc:
            log.warning("could not return %s to %s: %s", reply.type.value, client, exc)
