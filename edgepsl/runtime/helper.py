"""The helper daemon: one middle-part state per assigned client, jobs served in plan order, kernel fallback."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepsl.plan.backend import kernels
from edgepsl.plan.heuristics import DISPATCH_RULES
from edgepsl.profiling.link import answer_probe
from edgepsl.runtime import state
from edgepsl.runtime.artifact_store import ArtifactStore
from edgepsl.runtime.artifact_transfer import resolve
from edgepsl.runtime.channels import SERVER_INBOX, channel_config
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.coordinator_link import SLICE_S, CoordinatorLink, bye_reason, error_text
from edgepsl.runtime.emulation import Emulation, Pacer, pad_to
from edgepsl.runtime.errors import CommandArrived, PayloadError, RoleFailedError, StopRequested
from edgepsl.runtime.helper_models import SHARED, HelperModels, MiddleModel
from edgepsl.runtime.measure import measure_helper, measure_last
from edgepsl.runtime.microbatch import GradientSum, helper_job_ms
from edgepsl.runtime.modes import two_part_ms
from edgepsl.runtime.protocol import (BWD, FWD, KIND_WORDS, Activations, CancelJobs, CutShapes, EmulationInfo, ErrorReply,
                                      ForwardJob, GradBack, Gradients, HelperProfile, HelperRoundReport,
                                      HelperRoundStart, HelperWelcome, JobRecord, Register, RuntimeCode, State,
                                      StateRequest, StateShapes)
from edgepsl.runtime.trace import Trace, now_ms, tensor_bytes
from edgepsl.segment import Manifest, Segment, SegmentError, StateError, load_manifest
from edgepsl.wire import (Envelope, ErrorCode, EventKind, KeyPair, Message, MsgType, PeerChannel, PeerEvent,
                          JobId, PeerSecurity, PeerUnreachableError, ServerChannel, ServerSecurity)
from edgepsl.wire.logs import RateLimitedLog

log = logging.getLogger("edgepsl.runtime.helper")
JOBS = {MsgType.FORWARD: (FWD, ForwardJob), MsgType.GRADIENTS: (BWD, Gradients)}
JOIN_TIMEOUT_S = 600.0
# While a command of the coordinator may be due (a round's start with early jobs held, a cancel during a round), the
# helper looks at the coordinator's link at least this often instead of blocking SLICE_S on the clients' socket.
COMMAND_POLL_S = 0.01


@dataclass(frozen=True)
class HelperOptions:
    """How a helper process reaches the coordinator, where it serves clients, and what it emulates; `artifact` is a
    local copy, used when its hash is the run's (else the cache, else the coordinator's chunks)."""

    name: str
    coordinator: str
    bind: str = "tcp://127.0.0.1:*"
    advertise: str | None = None
    keypair: KeyPair | None = None
    coordinator_key: bytes | None = None
    capacity_mb: float | None = None
    emulation: Emulation = Emulation()
    trace_path: Path | None = None
    join_timeout_s: float = JOIN_TIMEOUT_S
    artifact: Path | None = None


@dataclass
class Job:
    """A forward or backward job that arrived and waits to run."""

    position: int
    kind: int
    envelope: Envelope
    tensor: np.ndarray
    arrival: float
    labels: np.ndarray | None = None  # the two-part split's labels with a forward job


class RoundSchedule:
    """This helper's round as numpy arrays indexed by slot (built once per ROUND_START): one slot per client and
    micro-batch, client position j's micro-batch k at slot `first_slot[j] + k` (unpipelined: the slot is the
    client position). `order_position` holds slots.

    The helper follows `order`, running an arrived job out of order only when it ends before the planned job's
    planned start. When the planned job is late (not arrived by its planned start), resequence() replaces the rest
    of the order by the compiled online dispatch kernel's. `arrival[j, kind]` is NaN until the job arrives; `ready`
    and `done` mark its state.
    """

    def __init__(self, round_: int, run: str, start: HelperRoundStart) -> None:
        self.round = round_
        self.run = run
        self.clients = list(start.clients)
        self.position = {name: j for j, name in enumerate(self.clients)}
        self.micro = start.micro
        self.slot_client = np.repeat(np.arange(len(self.clients)), self.micro)
        self.first_slot = np.concatenate([[0], np.cumsum(self.micro)[:-1]]).astype(np.int64)
        self.slot_micro = np.arange(len(self.slot_client)) - self.first_slot[self.slot_client]
        order = np.array(start.order, dtype=np.int64).reshape(-1, 2)
        seen: dict[tuple[int, int], int] = {}
        slots = []
        for j, kind in order.tolist():  # the k-th row of a client and kind is its micro-batch k
            k = seen.get((j, kind), 0)
            seen[(j, kind)] = k + 1
            slots.append(int(self.first_slot[j]) + k)
        self.order_position, self.order_kind = np.array(slots, dtype=np.int64), order[:, 1].copy()
        self.planned_start = np.array(start.planned_start_ms, dtype=np.float64)
        self.duration = np.array(start.duration_ms, dtype=np.float64).reshape(-1, 2)[self.slot_client]
        self.priority = np.array(start.priority, dtype=np.float64).reshape(-1, 2)[self.slot_client]
        self.token = start.token
        self.bandwidth = list(start.bandwidth_mbps)
        # per client: its learning mode in the plan (mode = "auto"; None: the configured mode)
        self.local_loss: list[bool | None] = list(start.local_loss) or [None] * len(self.clients)
        self.memory_mb = float(np.sum(start.memory_mb))
        self.grads = [GradientSum(m) for m in self.micro]  # per client: its part-2 gradients of this round
        self.downlink_free = np.zeros(len(self.clients))  # per client: time.monotonic() its emulated download ends
        self.cancelled: set[int] = set()  # positions of the clients whose remaining jobs were cancelled
        n = len(self.slot_client)
        self.due = np.full((n, 2), np.inf)  # each job's planned start in the round's plan (re-sequencing keeps it)
        self.due[self.order_position, self.order_kind] = self.planned_start
        self.arrival = np.full((n, 2), np.nan)
        self.ready = np.zeros((n, 2), dtype=bool)
        self.done = np.zeros((n, 2), dtype=bool)
        self.next = 0  # index into the order of the first job not done
        self.resequenced = 0  # how many times the order was re-sequenced this round

    @property
    def finished(self) -> bool:
        """Every job of the order has run."""
        return self.next >= len(self.order_kind)

    def planned_next(self) -> tuple[int, int]:
        """(position, kind) of the next job of the order."""
        return int(self.order_position[self.next]), int(self.order_kind[self.next])

    def mark_done(self, position: int, kind: int) -> None:
        """Record a job as run and move the order's pointer past finished jobs."""
        self.done[position, kind] = True
        self.ready[position, kind] = False
        while not self.finished and self.done[self.order_position[self.next], self.order_kind[self.next]]:
            self.next += 1

    def pick(self, now: float, rule: int) -> tuple[int, int]:
        """The compiled online dispatch kernel's choice among the arrived jobs under `rule`: (position, kind)."""
        flat = np.flatnonzero(self.ready.ravel())
        kind = flat % 2
        release = self.arrival.ravel()[flat]
        tail = self.priority.ravel()[flat]
        pick = int(kernels.pick_next(float(now), kind, release, tail, flat // 2, rule))
        chosen = int(flat[pick if pick >= 0 else int(np.argmin(release))])
        return chosen // 2, chosen % 2

    def late(self, now: float) -> bool:
        """Whether the order's next job has not arrived by its planned start."""
        position, kind = self.planned_next()
        return not self.ready[position, kind] and now > self.planned_start[self.next]

    def wait_ms(self, now: float) -> float:
        """How long the helper may wait for arrivals before the next job becomes late (inf once it is)."""
        ahead = float(self.planned_start[self.next]) - now if not self.finished else 0.0
        return ahead if ahead > 0 else float("inf")

    def expected_release(self, now: float) -> np.ndarray:
        """n x 2 release of every job as the helper expects it now: its arrival once arrived; a job not yet due, its
        planned start in the round's plan; a late one, as late again (planned start s, now t: at 2t - s)."""
        expected = np.where(self.due > now, self.due, 2.0 * now - self.due)
        return np.where(self.ready, self.arrival, expected)

    def resequence(self, now: float, rule: int) -> None:
        """Re-sequence the jobs not yet run with the compiled online dispatch kernel (pick_next under `rule`, the
        plan's priorities), run forward from `now` over the arrived jobs and the expected ones (expected_release; a
        backward job not before its forward one ends). A job starts only if it ends by the next expected release,
        or if the kernel would still prefer it then; otherwise the kernel's best job that does end by then starts,
        or the helper idles until then. The order and planned starts become the dispatch's."""
        rest = np.arange(self.next, len(self.order_kind))
        rest = rest[~self.done[self.order_position[rest], self.order_kind[rest]]]
        position, kind = self.order_position[rest], self.order_kind[rest]
        expected = self.expected_release(now)[position, kind]
        tail, duration = self.priority[position, kind], self.duration[position, kind]
        forward_of = {int(position[b]): b for b in range(len(rest)) if kind[b] == FWD}
        backward = {forward_of[int(position[b])]: b for b in range(len(rest))
                    if kind[b] == BWD and int(position[b]) in forward_of}
        release = expected.copy()
        release[list(backward.values())] = np.inf  # released when its forward job is placed
        order, starts, t = [], [], now
        for _ in range(len(rest)):  # a placed job is released at +inf, so pick_next never sees it again
            pick = self._dispatch_step(t, kind, release, tail, position, duration, rule)
            while pick < 0:  # nothing to start at t: idle until the next release
                t = float(np.minimum.reduce(release, where=release > t, initial=np.inf))
                pick = self._dispatch_step(t, kind, release, tail, position, duration, rule)
            order.append(pick)
            starts.append(t)
            t += float(duration[pick])
            release[pick] = np.inf
            if pick in backward:
                release[backward[pick]] = max(expected[backward[pick]], t)
        self.order_position = np.concatenate([self.order_position[:self.next], position[order]])
        self.order_kind = np.concatenate([self.order_kind[:self.next], kind[order]])
        self.planned_start = np.concatenate([self.planned_start[:self.next], np.array(starts)])
        self.resequenced += 1

    @staticmethod
    def _dispatch_step(t: float, kind: np.ndarray, release: np.ndarray, tail: np.ndarray, position: np.ndarray,
                       duration: np.ndarray, rule: int) -> int:
        """The job to start at t (index), or -1 to idle: the kernel's pick, unless it would run past the next
        release e of a job the kernel prefers at e; then its best pick among the jobs that end by e."""
        pick = int(kernels.pick_next(t, kind, release, tail, position, rule))
        if pick < 0:
            return -1
        e = float(np.minimum.reduce(release, where=release > t, initial=np.inf))
        if t + duration[pick] <= e:
            return pick
        if int(kernels.pick_next(e, kind, release, tail, position, rule)) == pick:
            return pick
        fits = np.where((release <= t) & (t + duration <= e), release, np.inf)
        return int(kernels.pick_next(t, kind, fits, tail, position, rule))

    def slot(self, position: int, k: int) -> int:
        """The slot of client position's micro-batch k."""
        return int(self.first_slot[position]) + k

    def job_name(self, slot: int, kind: int) -> str:
        """A job as client:fwd|bwd, with :k for a client whose round is split into micro-batches."""
        j = int(self.slot_client[slot])
        return f"{self.clients[j]}:{KIND_WORDS[kind]}" + (f":{self.slot_micro[slot]}" if self.micro[j] > 1 else "")

    def missing(self) -> list[str]:
        """The jobs not yet run, as client:fwd|bwd (client:fwd|bwd:k with micro-batches)."""
        return [self.job_name(j, k) for j, k in zip(self.order_position, self.order_kind) if not self.done[j, k]]


class EarlyJobs:
    """Job messages that arrive before their round starts, bounded per sender in count and bytes (the rest is refused
    BUSY), so a peer that floods the helper cannot crowd out the others' early jobs."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.held: dict[str, tuple[int, int]] = {}  # sender -> (messages, bytes) kept

    def offer(self, env: Envelope, max_messages: int, max_bytes: int) -> str | None:
        """Keep the message, or the reason it cannot be kept."""
        size = tensor_bytes(env.message.tensors)
        count, held = self.held.get(env.peer, (0, 0))
        if count >= max_messages or held + size > max_bytes:
            return (f"this helper holds {count} messages ({held} bytes) of {env.peer} for rounds that have not "
                    f"started, its bound per sender (helper_early_messages {max_messages}, helper_early_mb "
                    f"{max_bytes / 2 ** 20:g}); send the job after its round starts")
        self.envelopes.append(env)
        self.held[env.peer] = (count + 1, held + size)
        return None

    def take(self) -> list[Envelope]:
        """Everything kept, emptied."""
        out, self.envelopes, self.held = self.envelopes, [], {}
        return out


@dataclass
class Serving:
    """What a welcome sets up: the run's configuration, the part times, the shapes of jobs and states, the fallback
    rule and the clients' emulated links."""

    config: RunConfig
    manifest: Manifest
    times: dict[str, float]
    cuts: CutShapes
    state_shapes: StateShapes
    rule: int
    client_links: dict[str, float | None]


class Helper:
    """One helper: register, declare part-2 times, serve each round's jobs, send states, until BYE."""

    def __init__(self, options: HelperOptions) -> None:
        self.options = options
        self.name = options.name
        self.trace = Trace(options.trace_path, self.name)
        self._refusals = RateLimitedLog(log=log)  # a client flooding bad messages cannot flood the log
        self._seq = time.time_ns() // 1000
        self.models: HelperModels | None = None
        self.serving: Serving | None = None
        self.server: ServerChannel | None = None
        self.early = EarlyJobs()
        self.undelivered: dict[str, dict[JobId, Message]] = {}  # client -> the replies it missed (it reconnects)
        self.pacer = Pacer()
        secure = options.keypair is not None
        coord = PeerChannel(options.coordinator, self.name, insecure=not secure, config=channel_config(),
                            security=PeerSecurity(options.keypair, options.coordinator_key) if secure else None)
        register = Register("helper", EmulationInfo(**options.emulation.to_meta()), options.capacity_mb,
                            options.keypair.public.decode() if secure else None)
        self.link = CoordinatorLink(coord, self.name, register, options.join_timeout_s, self._next_seq)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def run(self) -> None:
        """Serve the whole run; returns after the coordinator's BYE.

        SIGINT/SIGTERM (StopRequested) say bye to the coordinator; a fatal error is reported to it as an ERROR
        naming this helper and the cause before it is raised.
        """
        try:
            self._serve()
        except StopRequested:
            self.link.leave(f"{self.name} was stopped by a signal")
            raise
        except Exception as exc:  # noqa: BLE001 - reported to the coordinator, then raised
            self.link.fail(RuntimeCode.ROLE_FAILED, f"{self.name} failed: {exc}")
            raise
        finally:
            self.pacer.close()
            if self.server is not None:
                self.server.close()
            self.link.channel.close()
            self.trace.close()

    def _serve(self) -> None:
        env = self.link.join(HelperWelcome)
        while True:
            if env.message.type is MsgType.BYE:
                log.info("%s: the coordinator said bye: %s", self.name, bye_reason(env))
                return
            try:
                self._command(env)
            except CommandArrived as exc:
                env = exc.envelope
                continue
            env = self._idle()

    def _command(self, env: Envelope) -> None:
        """Carry out one command of the coordinator; a payload that fails validation is refused and changes nothing."""
        kind = env.message.type
        if kind is MsgType.WELCOME:
            welcome = self.link.welcome(env, HelperWelcome)
            if welcome is not None:
                self._welcome(welcome)
            return
        if self.serving is None:
            self.link.refuse(env, f"{kind.value} before the welcome")
            return
        if kind is MsgType.ROUND_START and CancelJobs.peek_phase(env.message) == CancelJobs.PHASE:
            cancel = self.link.decode(env, CancelJobs)
            if cancel is not None:
                log.info("%s: round %d already served; nothing to cancel for %s", self.name, cancel.round,
                         ", ".join(cancel.clients))
        elif kind is MsgType.ROUND_START:
            start = self.link.decode(env, HelperRoundStart)
            if start is not None and self._capacity_ok(env, start):
                schedule = RoundSchedule(env.message.job.round, self.link.run, start)
                log.info("%s: round %d, %d clients", self.name, schedule.round, len(schedule.clients))
                jobs = self._round(schedule)
                self.link.send(HelperRoundReport(schedule.round, jobs, self._smashmix(schedule.round)),
                               schedule.round)
        elif kind is MsgType.STATE_REQUEST:
            request = self.link.decode(env, StateRequest)
            if request is not None:
                for client in request.clients:
                    self.link.send(State(None, self._part(client).pack(request.optimizer)), env.message.job.round,
                                   client)
        elif kind is MsgType.STATE:
            payload = self.link.decode(env, State, shapes=self.serving.state_shapes)
            if payload is not None:
                try:
                    self._part(env.message.job.client).restore(payload.state)
                except StateError as exc:
                    self.link.refuse(env, f"state: {exc}")
        else:
            self.link.refuse(env, f"a helper takes no {kind.value} from the coordinator")

    def _welcome(self, welcome: HelperWelcome) -> None:
        """Set up (again, after a coordinator restart) from the welcome, bind for clients once, report part-2 times."""
        opts = self.options
        config = welcome.config
        manifest = load_manifest(resolve(welcome.artifact, opts.artifact, ArtifactStore(), self.link,
                                         config.register_timeout_s))
        self.early.take()  # jobs of a round a restarted coordinator abandoned
        secure = opts.keypair is not None
        if self.server is None:
            self.server = ServerChannel(opts.bind, insecure=not secure,
                                        config=channel_config(config.float16, SERVER_INBOX),
                                        security=ServerSecurity(opts.keypair, {}) if secure else None)
        if secure:
            self.server.set_allowed({n: k.encode() for n, k in welcome.client_keys.items()})
        scratch = Segment(manifest, "part2", threads=config.threads)
        measured = measure_helper(scratch, config.batch_size, config.profile_iters)
        times = opts.emulation.part_times(measured, config.emulation_profile, config.time_scale)
        if self.models is None:
            self.models = HelperModels(manifest, config)
        last = last_measured = None
        if self.models.mode.labels_on_helper:  # the two-part split: part-3 runs here too
            last_measured = measure_last(Segment(manifest, "part3", threads=config.threads), config.batch_size,
                                         config.profile_iters)
            last = opts.emulation.part_times(last_measured, config.emulation_profile, config.time_scale)
        self.serving = Serving(config, manifest, {**times, **(last or {})},
                               CutShapes.of(manifest, config.batch_size, self.models.mode.labels_on_helper),
                               self.models.state_shapes(), DISPATCH_RULES[config.fallback_rule],
                               dict(welcome.client_links))
        log.info("%s: serving run %r on %s", self.name, self.link.run, self.server.endpoint)
        self.link.send(HelperProfile(times, measured, opts.advertise or self.server.endpoint, last, last_measured), 0)

    def _idle(self) -> Envelope:
        """Wait for the coordinator's next command; meanwhile echo link probes and keep early jobs (bounded)."""
        assert self.serving is not None or self.server is None
        timeout = self.serving.config.round_timeout_s * 10 if self.serving else self.options.join_timeout_s
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Jobs held for a coming round: its ROUND_START is due, so wait on the coordinator's link and only look
            # at the clients' socket in between. Blocking on the clients' socket instead left a ROUND_START that came
            # after the last early job unseen for up to SLICE_S (250 ms rounds in `edgepsl demo`, docs/runtime.md).
            held = bool(self.early.envelopes)
            env = self.link.wait(COMMAND_POLL_S) if held else self.link.poll()
            if env is not None:
                return env
            item = self.server.recv(timeout=0.0 if held else SLICE_S) if self.server is not None else None
            if isinstance(item, Envelope):
                self._early(item)
            elif isinstance(item, PeerEvent):
                self._event(item)
            elif self.server is None:
                time.sleep(SLICE_S)
        raise RoleFailedError(f"{self.name}: no command from the coordinator within {timeout:g} s")

    def _event(self, event: PeerEvent) -> None:
        """Deliver a reply a client missed when it reconnects or resends its job (the wire drops the duplicate job by
        its id, so it is never trained twice); log a failed CURVE handshake of a client (once per cause)."""
        if event.kind in (EventKind.BACK, EventKind.JOINED) or (
                event.kind is EventKind.DUPLICATE and event.job is not None):
            self._redeliver(event.peer, event.job)
        elif event.kind is EventKind.AUTH_FAILED:
            log.warning("%s: a client could not connect: %s (this helper allows only the clients the coordinator "
                        "welcomed)", self.name, event.detail)

    def _early(self, env: Envelope) -> None:
        """Answer a link probe after the emulated download of its payload; keep a job for its round, within bounds."""
        assert self.server is not None and self.serving is not None
        if env.message.type is MsgType.PROBE:
            server = self.server
            delay = Emulation(bandwidth_mbps=self.serving.client_links.get(env.peer)).transfer_s(
                tensor_bytes(env.message.tensors))
            self.pacer.later(delay, lambda: answer_probe(server, env))
            return
        if env.message.type not in JOBS:
            self._refuse(env, ErrorCode.REJECTED, f"a helper accepts only forward and gradients jobs, not "
                                                  f"{env.message.type.value}")
            return
        config = self.serving.config  # a client may send each of its micro-batches before its helper's round starts
        reason = self.early.offer(env, config.helper_early_messages * config.max_micro_batches,
                                  int(config.helper_early_mb * 2 ** 20))
        if reason is not None:
            self._refuse(env, RuntimeCode.BUSY, reason)

    def _capacity_ok(self, env: Envelope, start: HelperRoundStart) -> bool:
        """False (and an ERROR to the coordinator) for a round whose middle parts need more memory than this helper has."""
        need = float(np.sum(start.memory_mb))
        capacity = self.options.capacity_mb
        if capacity is not None and need > capacity:
            reason = f"helper {self.name} has {capacity:g} MB but its clients' middle parts need {need:g} MB"
            self.link.send(ErrorReply(RuntimeCode.ROLE_FAILED, reason), env.message.job.round)
            log.error("%s", reason)
            return False
        return True

    def _part(self, client: str) -> MiddleModel:
        """The middle model of one client (created on first use; the shared one with helper_model "shared")."""
        assert self.models is not None
        return self.models.of(client)

    def _refuse(self, env: Envelope, code: int, reason: str) -> None:
        """Send an ERROR for one message to its sender only; never disturbs the other clients.

        An ERROR is never answered with one (two processes must not refuse each other's refusals forever).
        """
        if env.message.type is MsgType.ERROR:
            self._refusals.warning(f"error {env.peer}", "%s: ignored an error from %s: %s", self.name, env.peer,
                                   error_text(env))
            return
        self._refusals.warning(f"refused {env.peer}", "refused %s %s from %s: %s", env.message.type.value,
                               tuple(env.message.job), env.peer, reason)
        self.trace.event("refused", peer=env.peer, type=env.message.type.value, reason=reason)
        try:
            assert self.server is not None
            self.server.send(env.peer, ErrorReply(code, reason).encode(env.message.job))
        except PeerUnreachableError as exc:  # a peer that does not read its refusals loses them, nothing else
            self._refusals.warning(f"dropped {env.peer}", "%s: dropped the refusal to %s: %s", self.name, env.peer,
                                   exc)

    def _admit(self, env: Envelope, plan: RoundSchedule, ready: dict[tuple[int, int], Job], t0: float) -> None:
        """Queue a job message if it belongs to this round's plan and its payload is valid; refuse it otherwise."""
        assert self.serving is not None
        message = env.message
        if message.type not in JOBS:
            self._refuse(env, ErrorCode.REJECTED, f"a helper accepts only forward and gradients jobs, not {message.type.value}")
            return
        kind, payload_class = JOBS[message.type]
        position = plan.position.get(env.peer)
        if position is None:
            self._refuse(env, ErrorCode.REJECTED, f"client {env.peer!r} is not assigned to helper {self.name}")
        elif message.job.run == plan.run and message.job.round < plan.round:
            self._refuse(env, RuntimeCode.CANCELLED, f"a job of round {message.job.round}, which was closed without "
                                                     f"{env.peer}; this helper is serving round {plan.round}")
        elif message.job.run == plan.run and message.job.round == plan.round and position in plan.cancelled:
            self._refuse(env, RuntimeCode.CANCELLED, f"a job of round {plan.round}, which goes on without {env.peer}")
        elif message.job.round != plan.round or message.job.run != plan.run:
            self._refuse(env, ErrorCode.REJECTED, f"job of run {message.job.run!r} round {message.job.round}; "
                                                  f"this helper is serving run {plan.run!r} round {plan.round}")
        else:
            try:
                job = payload_class.decode(message, cuts=self.serving.cuts, micro_batches=plan.micro[position])
            except PayloadError as exc:
                self._refuse(env, RuntimeCode.BAD_PAYLOAD, str(exc))
                return
            slot = plan.slot(position, job.micro)
            if plan.done[slot, kind] or plan.ready[slot, kind]:
                self._refuse(env, ErrorCode.REJECTED, f"the {message.type.value} job of round {plan.round} "
                                                      f"(micro-batch {job.micro}) was already received")
                return
            if kind == BWD and not plan.done[slot, FWD]:
                self._refuse(env, ErrorCode.UNKNOWN_JOB, f"gradients of round {plan.round} (micro-batch {job.micro}) "
                                                         f"before its forward job ran")
                return
            if job.token != plan.token:
                self._refuse(env, ErrorCode.REJECTED, f"the {message.type.value} job belongs to an earlier start of "
                                                      f"round {plan.round} (a restarted coordinator replays it)")
                return
            arrival = now_ms()
            self.trace.event("recv", arrival, type=message.type.value, client=env.peer, round=plan.round,
                             micro=job.micro, bytes=tensor_bytes(message.tensors, self.serving.config.float16))
            plan.ready[slot, kind] = True
            plan.arrival[slot, kind] = arrival - t0
            ready[(slot, kind)] = Job(slot, kind, env, job.tensor, arrival - t0, job.labels if kind == FWD else None)

    def _choose(self, plan: RoundSchedule, ready: dict[tuple[int, int], Job], now: float) -> tuple[Job, bool] | None:
        """The job to run now and whether it is the plan's, or None to wait for more arrivals.

        The next planned job runs once it has arrived; before that, the fallback rule's best arrived job runs
        only if it is expected to end by the planned job's planned start, so the plan is never delayed by it.
        Baseline plans too: their order is their dispatch rule applied to the planned releases. A planned job late
        (not arrived by its planned start) does not hold the arrived ones back: the rest of the order is
        re-sequenced by the kernel (RoundSchedule.resequence), whose next job runs if it has arrived; the late job
        keeps its turn only against jobs that would run past its expected arrival. Jobs count as planned while the
        round follows the plan's own order.
        """
        assert self.serving is not None
        nxt = plan.planned_next()
        if nxt in ready:
            return ready.pop(nxt), not plan.resequenced
        if plan.late(now):
            plan.resequence(now, self.serving.rule)
            self.trace.event("resequence", round=plan.round, at_ms=now, order=[
                plan.job_name(j, k) for j, k in zip(plan.order_position[plan.next:], plan.order_kind[plan.next:])])
            nxt = plan.planned_next()
            if nxt in ready:
                return ready.pop(nxt), False
        position, kind = plan.pick(now, self.serving.rule)
        if now + plan.duration[position, kind] > plan.planned_start[plan.next]:
            return None
        return ready.pop((position, kind)), False

    def _round(self, plan: RoundSchedule) -> list[JobRecord]:
        """Serve every job of the round's order; returns one record per job for the coordinator's report."""
        assert self.server is not None and self.serving is not None
        t0 = now_ms()
        ready: dict[tuple[int, int], Job] = {}
        records = []
        for env in self.early.take():
            self._admit(env, plan, ready, t0)
        timeout = self.serving.config.round_timeout_s
        deadline = time.monotonic() + timeout
        while not plan.finished:
            choice = self._choose(plan, ready, now_ms() - t0) if ready else None
            if choice is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RoleFailedError(f"{self.name}: round {plan.round}: jobs {plan.missing()} did not arrive "
                                          f"within {timeout:g} s")
                self._receive(min(remaining, plan.wait_ms(now_ms() - t0) / 1e3), plan, ready, t0)
                continue
            job, planned = choice
            records.extend(self._execute(job, plan, ready, t0, planned))
        return records

    def _receive(self, timeout_s: float, plan: RoundSchedule, ready: dict[tuple[int, int], Job], t0: float) -> None:
        """Wait up to timeout_s for a message, then admit it and everything else already received.

        A command of the coordinator (its BYE, or a restarted coordinator's WELCOME) interrupts the round.
        """
        assert self.server is not None
        command = self.link.poll()
        if command is not None and CancelJobs.peek_phase(command.message) == CancelJobs.PHASE:
            self._cancel(command, plan, ready)
        elif command is not None:
            raise CommandArrived(command)
        item = self.server.recv(timeout=min(timeout_s, COMMAND_POLL_S))  # a cancel is seen within COMMAND_POLL_S
        while item is not None:
            if isinstance(item, Envelope):
                self._admit(item, plan, ready, t0)
            else:
                self._event(item)
            item = self.server.recv(timeout=0)

    def _cancel(self, env: Envelope, plan: RoundSchedule, ready: dict[tuple[int, int], Job]) -> None:
        """Skip the cancelled clients' jobs of this round not yet run; the rest of the order goes on at once."""
        cancel = self.link.decode(env, CancelJobs)
        if cancel is None or cancel.round != plan.round:
            return
        for client in cancel.clients:
            position = plan.position.get(client)
            if position is None:
                continue
            for slot in range(plan.slot(position, 0), plan.slot(position, plan.micro[position])):
                for kind in (FWD, BWD):
                    if not plan.done[slot, kind]:
                        ready.pop((slot, kind), None)
                        plan.mark_done(slot, kind)
            assert self.models is not None
            self.models.drop(client, plan.round)
            plan.grads[position] = GradientSum(plan.micro[position])
            plan.cancelled.add(position)
            self.trace.event("cancelled", client=client, round=plan.round)
        log.info("%s: round %d goes on without %s", self.name, plan.round, ", ".join(cancel.clients))

    def _pad(self, start: float, target_s: float, plan: RoundSchedule, ready: dict[tuple[int, int], Job],
             t0: float) -> float:
        """Pad a job to target_s seconds after perf_counter `start`, admitting arrivals meanwhile; ms padded."""
        pad = max(0.0, target_s - (time.perf_counter() - start))
        while (remaining := target_s - (time.perf_counter() - start)) > 0:
            self._receive(remaining, plan, ready, t0)
        return pad * 1e3

    def _execute(self, job: Job, plan: RoundSchedule, ready: dict[tuple[int, int], Job], t0: float,
                 planned: bool) -> list[JobRecord]:
        """Run one job, pad it to its emulated time, reply after the emulated download (one download at a time per
        client); its records (none if its input was refused).

        A job is micro-batch k of its client's round (the segment's job (round, k)): a backward adds its gradients
        to the client's round sum, and the last one of the round takes the one optimizer step. In the two-part split
        a forward job is the client's whole helper step (parts 2 and 3, part-2's backward): it replies with the
        cut-1 gradient and the loss, and its backward job is recorded as done with it. No reply goes out where the
        mode returns no cut-1 gradient (local loss with local_loss_helper_weight 0)."""
        assert self.serving is not None and self.models is not None
        position, k = int(plan.slot_client[job.position]), int(plan.slot_micro[job.position])
        client, n = plan.clients[position], plan.micro[position]
        model = self._part(client)
        model.set_lr(state.lr_at(self.serving.config, plan.round))
        message = job.envelope.message
        mode = self.models.mode_of(client, plan.local_loss[position])
        two_part = job.kind == FWD and job.labels is not None
        start = now_ms()
        self.trace.event("job_start", start, client=client, kind=job.kind, round=plan.round, micro=k)
        t = time.perf_counter()
        try:
            if two_part:
                result = self.models.two_part(client, (plan.round, k), job.tensor, job.labels)
                reply = GradBack(tensor=result.grad_in, loss=float(result.loss)).encode(message.job)
            elif job.kind == FWD:
                reply = Activations(tensor=model.part2.forward((plan.round, k), job.tensor)).encode(message.job)
            else:
                result = model.part2.backward((plan.round, k), job.tensor)
                total = plan.grads[position].add(result.grads)
                if total is not None:
                    model.opt2.step(total)
                reply = GradBack(tensor=result.grad_in).encode(message.job)
        except SegmentError as exc:
            plan.ready[job.position, job.kind] = False
            self._refuse(job.envelope, ErrorCode.REJECTED, str(exc))
            return []
        compute = (time.perf_counter() - t) * 1e3
        times = self.serving.times
        emulated = two_part_ms(times) if two_part else helper_job_ms(
            times["part2_fwd" if job.kind == FWD else "part2_bwd"], n)
        pad = self._pad(t, emulated / 1000.0, plan, ready, t0) if self.options.emulation.active else 0.0
        end = now_ms()
        plan.mark_done(job.position, job.kind)
        self.trace.event("job_end", end, client=client, kind=job.kind, round=plan.round, micro=k, compute_ms=compute,
                         pad_ms=pad)
        float16 = self.serving.config.float16
        nbytes, down = 0, 0.0
        if reply.type is MsgType.ACTIVATIONS or mode.cut1_gradient:
            nbytes = tensor_bytes(reply.tensors, float16)
            down = Emulation(bandwidth_mbps=plan.bandwidth[position]).transfer_s(nbytes)
            now = time.monotonic()
            plan.downlink_free[position] = max(now, plan.downlink_free[position]) + down
            self.pacer.later(plan.downlink_free[position] - now, lambda: self._reply(client, reply, nbytes, k))
        records = [JobRecord(client, job.kind, job.arrival + t0, start, end, compute, pad, down,
                             tensor_bytes(message.tensors, float16), 0 if two_part else nbytes, planned, k)]
        if two_part:  # its backward ran within it: recorded as done at its end, returning the cut-1 gradient
            plan.mark_done(job.position, BWD)
            records.append(JobRecord(client, BWD, end, end, end, 0.0, 0.0, down, 0, nbytes, planned, k))
        return records

    def _smashmix(self, round_: int) -> float | None:
        """The round's SmashMix steps on the shared model (padded to a two-part step each when emulating); when
        they ended (wall clock ms), or None without SmashMix."""
        assert self.serving is not None and self.models is not None
        if self.models.mix is None:
            return None
        self.models.of(SHARED).set_lr(state.lr_at(self.serving.config, round_))
        t = time.perf_counter()
        losses = self.models.smashmix(round_)
        if self.options.emulation.active:
            pad_to(t, len(losses) * two_part_ms(self.serving.times) / 1000.0)
        end = now_ms()
        self.trace.event("smashmix", end, round=round_, batches=len(losses), loss=losses)
        return end

    def _reply(self, client: str, reply: Message, nbytes: int, k: int) -> None:
        """Send a job's result (on the pacer thread when a download is emulated)."""
        assert self.server is not None
        try:
            self.server.send(client, reply)
            self.trace.event("send", type=reply.type.value, client=client, round=reply.job.round, micro=k,
                             bytes=nbytes)
        except PeerUnreachableError as exc:
            self.undelivered.setdefault(client, {})[reply.job] = reply
            log.warning("could not return %s to %s (%s); kept for when it reconnects", reply.type.value, client, exc)

    def _redeliver(self, client: str, job: JobId | None) -> None:
        """Send again the replies a client missed (to a resent job: only the reply to that job id)."""
        assert self.server is not None
        missed = self.undelivered.get(client, {})
        for reply in [r for r in missed.values() if job is None or r.job == job]:
            try:
                self.server.send(client, reply)
            except PeerUnreachableError:
                return
            del missed[reply.job]
            log.info("%s: delivered the %s of round %d to %s after it reconnected", self.name, reply.type.value,
                     reply.job.round, client)
        if not missed:
            self.undelivered.pop(client, None)
