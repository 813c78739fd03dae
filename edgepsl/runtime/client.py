"""The client agent: owns its data and labels, runs part-1 and part-3, sends only activations and gradients."""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepsl.data.spec import DataShapeError, DataSpecError, Normalisation, load_client_data
from edgepsl.learning import LocalLoss
from edgepsl.plan.solvers import solver
from edgepsl.profiling.link import ProbeRefusedError, ProbeTimeoutError, probe_link
from edgepsl.runtime import state
from edgepsl.runtime.artifact_store import ArtifactStore
from edgepsl.runtime.artifact_transfer import resolve
from edgepsl.runtime.channels import channel_config
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.coordinator_link import SLICE_S, CoordinatorLink, bye_reason, error_text
from edgepsl.runtime.dataset import ClientData, client_data
from edgepsl.runtime.emulation import Emulation, pad_to
from edgepsl.runtime.errors import (AuthenticationFailedError, CommandArrived, NonFiniteError, PayloadError,
                                    RoleFailedError, StopRequested)
from edgepsl.runtime.measure import declared_aux_ms, measure_aux, measure_client, measure_helper
from edgepsl.runtime.microbatch import GradientSum, Uplink, client_step_ms, micro_slices, scaled
from edgepsl.runtime.modes import AUX, PART1, PART2, PART3, LearningMode, warn_privacy
from edgepsl.runtime.protocol import (CLIENT_STEPS, Activations, ClientProfile, ClientRoundReport, ClientRoundStart,
                                      ClientWelcome, CutShapes, EmulationInfo, ErrorReply, ForwardJob, GradBack,
                                      Gradients, LinkFit, LinkReport, ProbeRequest, Register, RuntimeCode, State,
                                      StateRequest, Transfer)
from edgepsl.runtime.trace import Trace, now_ms, tensor_bytes
from edgepsl.segment import Manifest, Optimizer, Segment, StateError, TrainResult, load_manifest
from edgepsl.wire import (Envelope, EventKind, JobId, KeyPair, Message, MsgType, PeerChannel, PeerEvent, PeerSecurity,
                          PeerUnreachableError)

REPLY_TYPES = (MsgType.ACTIVATIONS, MsgType.GRAD_BACK)
log = logging.getLogger("edgepsl.runtime.client")
JOIN_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class ClientOptions:
    """How a client process reaches the coordinator, what it emulates, and where its artifact and data are.

    artifact: a local copy, used when its hash is the run's (else the cache, else the coordinator's chunks).
    data: this client's own data spec (npz:FILE, idx:DIR, python:MODULE:FUNCTION), normalised by `normalisation`
    (default: the run's mean, std, divide); None: its share of Fashion-MNIST at the run's data_dir (the demo).
    memory_mb: the memory (MB) this device gives to part-2 training, declared for hybrid methods; None: it is never
    planned local.
    """

    name: str
    coordinator: str
    keypair: KeyPair | None = None
    coordinator_key: bytes | None = None
    emulation: Emulation = Emulation()
    trace_path: Path | None = None
    join_timeout_s: float = JOIN_TIMEOUT_S
    artifact: Path | None = None
    data: str | None = None
    normalisation: Normalisation | None = None
    memory_mb: float | None = None


class Diverged(Exception):
    """This client's own training produced a non-finite loss or tensor."""


class RoundCancelled(Exception):
    """The coordinator closed this client's round without it (it was lost or dropped as a straggler)."""


@dataclass
class Training:
    """What a welcome sets up: the run's configuration, this client's data, its two segments and optimizers."""

    config: RunConfig
    data: ClientData
    part1: Segment
    part3: Segment
    opt1: Optimizer
    opt3: Optimizer
    times: dict[str, float]
    cuts: CutShapes
    part2: Segment | None = None
    opt2: Optimizer | None = None
    mode: LearningMode = LearningMode()
    local: LocalLoss | None = None
    opt_aux: Optimizer | None = None
    in_plan: LearningMode = LearningMode()  # its mode in the plan in force ("auto": as its last round start said)

    def owned(self, held: bool = False) -> dict[str, tuple[Segment, Optimizer]]:
        """The segments this client trains in the plan in force and sends for averaging, by state prefix
        (docs/modes.md); held: also those it only holds (the aux head of a SplitFed client in mode "auto")."""
        parts = {PART1: (self.part1, self.opt1), PART3: (self.part3, self.opt3)}
        if self.local is not None and self.opt_aux is not None:
            parts[AUX] = (self.local.aux, self.opt_aux)
        return {prefix: parts[prefix] for prefix in (self.in_plan.held_prefixes if held else
                                                     self.in_plan.client_prefixes)}


class Client:
    """One client: register, declare part times, then train one mini-batch per ROUND_START until BYE."""

    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        self.name = options.name
        self.trace = Trace(options.trace_path, self.name)
        self._seq = time.time_ns() // 1000
        self._helpers: dict[str, PeerChannel] = {}
        self.training: Training | None = None
        register = Register("client", EmulationInfo(**options.emulation.to_meta()))
        self.link = CoordinatorLink(self._peer(options.coordinator, options.coordinator_key), self.name, register,
                                    options.join_timeout_s, self._next_seq)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _peer(self, endpoint: str, server_key: bytes | None) -> PeerChannel:
        security = None
        if self.options.keypair is not None and server_key is not None:
            security = PeerSecurity(self.options.keypair, server_key)
        float16 = self.training.config.float16 if self.training is not None else False
        return PeerChannel(endpoint, self.name, security=security, insecure=security is None,
                           config=channel_config(float16))

    def run(self) -> None:
        """Serve the whole run; returns after the coordinator's BYE.

        SIGINT/SIGTERM (StopRequested) say bye to the coordinator; a fatal error is reported to it as an ERROR
        naming this client and the cause before it is raised.
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
            for channel in self._helpers.values():
                channel.close()
            self.link.channel.close()
            self.trace.close()

    def _serve(self) -> None:
        env = self.link.join(ClientWelcome)
        while True:
            if env.message.type is MsgType.BYE:
                log.info("%s: the coordinator said bye: %s", self.name, bye_reason(env))
                return
            try:
                self._command(env)
            except CommandArrived as exc:
                env = exc.envelope
                continue
            timeout = self.training.config.round_timeout_s * 10 if self.training else self.options.join_timeout_s
            env = self.link.next_command(timeout)

    def _command(self, env: Envelope) -> None:
        """Carry out one command of the coordinator; a payload that fails validation is refused and changes nothing."""
        kind = env.message.type
        received = time.perf_counter()
        if kind is MsgType.WELCOME:
            welcome = self.link.welcome(env, ClientWelcome)
            if welcome is not None:
                self._welcome(welcome)
            return
        if self.training is None:
            self.link.refuse(env, f"{kind.value} before the welcome")
            return
        if kind is MsgType.PROBE:
            request = self.link.decode(env, ProbeRequest)
            if request is not None:
                self._probe(env.message.job, request)
        elif kind is MsgType.ROUND_START:
            start = self.link.decode(env, ClientRoundStart)
            if start is not None:
                self._round(env.message.job.round, start, received - self._lag(start.t0_ms))
        elif kind is MsgType.STATE_REQUEST:
            request = self.link.decode(env, StateRequest)
            if request is not None:
                self._send_state(env.message.job.round, request.optimizer, self.name in request.clients)
        elif kind is MsgType.STATE:
            parts = self._parts(env.message.tensors)
            payload = self.link.decode(env, State, shapes=state.shapes({p: s for p, (s, _) in parts.items()}))
            if payload is not None:
                self._restore(env, payload)

    def _welcome(self, welcome: ClientWelcome) -> None:
        """Set up (again, after a coordinator restart) from the welcome and report the part times."""
        config = welcome.config
        manifest = load_manifest(resolve(welcome.artifact, self.options.artifact, ArtifactStore(), self.link,
                                         config.register_timeout_s))
        data = self._data(config, manifest, welcome.index)
        part1 = Segment(manifest, "part1", threads=config.threads)
        part3 = Segment(manifest, "part3", threads=config.threads)
        measured = measure_client(part1, part3, config.batch_size, config.profile_iters)
        times = self.options.emulation.part_times(measured, config.emulation_profile, config.time_scale)
        part2 = opt2 = local_times = None
        if solver(config.method).local_mode:
            part2 = Segment(manifest, "part2", threads=config.threads)
            opt2 = state.make_optimizer(config, part2.params)
            local_times = self.options.emulation.part_times(measure_helper(part2, config.batch_size,
                                                                           config.profile_iters),
                                                            config.emulation_profile, config.time_scale)
            times = {**times, **local_times}
        mode = LearningMode.of(config, self.name)
        warn_privacy(mode, log, self.name)
        local = opt_aux = aux_ms = aux_measured = None
        if mode.local_loss or mode.auto:
            local = LocalLoss(part1, Segment(manifest, "aux", threads=config.threads), mode.helper_weight)
            opt_aux = state.make_optimizer(config, local.aux.params)
            aux_measured = measure_aux(measured, local.aux, config.batch_size, config.profile_iters)
            aux_ms = declared_aux_ms(aux_measured, measured, times)
            times = {**times, "aux": aux_ms}
        self.training = Training(config, data, part1, part3, state.make_optimizer(config, part1.params),
                                 state.make_optimizer(config, part3.params), times,
                                 CutShapes.of(manifest, config.batch_size), part2, opt2, mode, local, opt_aux,
                                 mode.in_plan(None))
        log.info("%s: client %d of run %r, %d samples", self.name, welcome.index, self.link.run, data.samples)
        declared = {k: times[k] for k in measured}
        self.link.send(ClientProfile(declared, measured, data.samples, self.options.emulation.bandwidth_mbps,
                                     local_times, self.options.memory_mb, aux_ms, aux_measured), 0)

    def _data(self, config: RunConfig, manifest: Manifest, index: int) -> ClientData:
        """This client's own data (its spec, checked against the manifest), or its demo share without a spec."""
        opts = self.options
        if opts.data is None:
            return client_data(config, index)
        try:
            return load_client_data(opts.data, manifest, opts.normalisation or config.normalisation, index=index,
                                    seed=config.seed, batch_size=config.batch_size)
        except (DataSpecError, DataShapeError) as exc:
            raise type(exc)(f"{type(exc).__name__}: {exc}") from None

    def _parts(self, tensors: dict[str, np.ndarray]) -> dict[str, tuple[Segment, Optimizer]]:
        """The segments (with their optimizers) a STATE for this client covers: those it owns in its learning mode
        (the aux head only when the STATE carries it: an averaging without local-loss clients has none), and part-2
        when it carries it (local mode)."""
        t = self.training
        assert t is not None
        parts = {prefix: part for prefix, part in t.owned(held=True).items()
                 if prefix != AUX or _carries(tensors, AUX)}
        if t.part2 is not None and t.opt2 is not None and _carries(tensors, PART2):
            parts[PART2] = (t.part2, t.opt2)
        return parts

    def _send_state(self, round_: int, optimizer: bool, with_part2: bool) -> None:
        t = self.training
        assert t is not None
        tensors = {}
        for prefix, (segment, opt) in t.owned().items():
            tensors.update(state.pack(segment, prefix, opt if optimizer else None))
        if with_part2 and t.part2 is not None:
            tensors.update(state.pack(t.part2, PART2, t.opt2 if optimizer else None))
        self.link.send(State(t.data.samples, tensors), round_)

    def _restore(self, env: Envelope, payload: State) -> None:
        try:
            for prefix, (segment, opt) in self._parts(payload.state).items():
                state.restore(segment, opt, payload.state, prefix)
        except StateError as exc:
            self.link.refuse(env, f"state: {exc}")

    def _helper(self, endpoint: str, key: str | None) -> PeerChannel:
        """The channel to a helper (opened on first use, then kept)."""
        if endpoint not in self._helpers:
            self._helpers[endpoint] = self._peer(endpoint, key.encode() if key else None)
        return self._helpers[endpoint]

    def _probe(self, job: JobId, request: ProbeRequest) -> None:
        """Probe every helper the coordinator lists, one after the other; report the fitted links.

        Uploads are paced like job uploads. A helper that does not echo in time is reported as an ERROR naming the link;
        a failed handshake with it ends this client (AuthenticationFailedError, reported to the coordinator).
        """
        t = self.training
        assert t is not None
        links = {}
        for target in request.helpers:
            channel = self._helper(target.endpoint, target.key)
            try:
                stats = probe_link(channel, job.run, self.name, self._next_seq, request.sizes_kb,
                                   t.config.probe_repeats, t.config.probe_timeout_s, self._pace)
            except ProbeRefusedError as exc:
                raise AuthenticationFailedError(f"link probe {self.name} -> {target.helper}: {exc}") from None
            except ProbeTimeoutError as exc:
                reason = f"link probe {self.name} -> {target.helper} ({target.endpoint}): {exc}"
                log.warning("%s", reason)
                self.link.send(ErrorReply(RuntimeCode.ROLE_FAILED, reason), 0)
                return
            links[target.helper] = LinkFit(list(stats.sizes_bytes), list(stats.rtt_ms), stats.latency_ms, stats.mbps,
                                           stats.fit)
            self.trace.event("probe", helper=target.helper, latency_ms=stats.latency_ms, mbps=stats.mbps)
        self.link.send(LinkReport(links), 0)

    def _pace(self, nbytes: int) -> float:
        """Sleep for the emulated upload of nbytes (not at all without an emulated link); the seconds slept."""
        up = self.options.emulation.transfer_s(nbytes)
        if up > 0:
            time.sleep(up)
        return up

    def _send_paced(self, channel: PeerChannel, message: Message, ready: float) -> tuple[float, float]:
        """Send once the emulated upload that began at perf_counter time `ready` is over; (upload s, wall ms sent)."""
        assert self.training is not None
        nbytes = tensor_bytes(message.tensors, self.training.config.float16)
        up = self.options.emulation.transfer_s(nbytes)
        pad_to(ready, up)
        sent = now_ms()
        self._send_job(channel, message)
        self.trace.event("send", sent, type=message.type.value, round=message.job.round, bytes=nbytes)
        return up, sent

    def _send_job(self, helper: PeerChannel, message: Message) -> None:
        """Send a job to the helper; while the link reconnects it is sent again when the helper is back (_await)."""
        try:
            helper.send(message)
        except PeerUnreachableError as exc:
            log.warning("%s: the %s job of round %d waits for its helper: %s", self.name, message.type.value,
                        message.job.round, exc)

    def _await(self, helper: PeerChannel, message: Message,
               reply: type[Activations] | type[GradBack]) -> Activations | GradBack:
        """The helper's reply to the job `message` (the only one outstanding), checked (_await_any)."""
        assert self.training is not None
        return self._await_any(helper, message.job, {message.job: message}, {}, reply, self.training.cuts)

    def _await_any(self, helper: PeerChannel, job: JobId, sent: dict[JobId, Message], early: dict[JobId, Envelope],
                   reply: type[Activations] | type[GradBack], cuts: CutShapes) -> Activations | GradBack:
        """The helper's reply to `job`, checked against `cuts`; meanwhile a coordinator command interrupts
        (CommandArrived), and replies to the other jobs in `sent` (this round's jobs whose replies are outstanding)
        are kept in `early` for their turn. When the helper comes back after a silence, every job of `sent` is
        sent again under its id: the helper runs each once (the wire drops duplicates) and sends a reply again if
        this client missed it.

        Raises Diverged for non-finite values, RoleFailedError for a refusal, a bad reply or a timeout,
        RoundCancelled when the helper says the round was closed without this client, and
        AuthenticationFailedError for a failed handshake with the helper (it is up: its endpoint came from the run).
        """
        t = self.training
        assert t is not None
        deadline = time.monotonic() + t.config.round_timeout_s
        what = f"{reply.kind()} of round {job.round}"
        while (remaining := deadline - time.monotonic()) > 0:
            item = early.pop(job, None)
            if item is not None:
                return _decode_reply(self.name, item, reply, cuts)
            command = self.link.poll()
            if command is not None:
                raise CommandArrived(command)
            item = helper.recv(timeout=min(remaining, SLICE_S))
            if isinstance(item, PeerEvent):
                if item.kind is EventKind.AUTH_FAILED:
                    raise AuthenticationFailedError(f"{self.name}: its helper at {helper.endpoint}: {item.detail}")
                if item.kind is EventKind.LOST:
                    log.warning("%s: its helper went silent while it waited for the %s", self.name, what)
                elif item.kind is EventKind.BACK:
                    log.info("%s: its helper is back; sending the jobs of round %d it awaits again", self.name,
                             job.round)
                    for message in list(sent.values()):
                        self._send_job(helper, message)
                continue
            if item is None:
                continue
            if item.message.type is MsgType.ERROR and item.message.job in sent and _cancelled(item):
                raise RoundCancelled(error_text(item))
            if item.message.type is MsgType.ERROR and item.message.job in sent:
                raise RoleFailedError(f"{self.name}: its helper refused the job of round {job.round}: "
                                      f"{error_text(item)}")
            if item.message.job != job and item.message.job in sent and item.message.type in REPLY_TYPES:
                early[item.message.job] = item
                continue
            if item.message.type is not reply.TYPE or item.message.job != job:
                log.warning("%s: ignored a %s from its helper while waiting for the %s", self.name,
                            item.message.type.value, what)
                continue
            return _decode_reply(self.name, item, reply, cuts)
        raise RoleFailedError(f"{self.name}: timed out after {t.config.round_timeout_s:g} s waiting for the {what}")

    def _exchange(self, helper: PeerChannel, message: Message, ready: float,
                  reply: type[Activations] | type[GradBack],
                  sent: tuple[float, float] | None = None) -> tuple[np.ndarray, Transfer]:
        """Send a job to the helper (paced; `sent`: it was, (upload s, wall ms sent)) and wait for its reply; the
        reply's tensor and the exchange's record."""
        assert self.training is not None
        float16 = self.training.config.float16
        up, sent_ms = sent or self._send_paced(helper, message, ready)
        got = self._await(helper, message, reply)
        recv = now_ms()
        self.trace.event("recv", recv, type=reply.TYPE.value, round=message.job.round,
                         bytes=tensor_bytes(got.tensors(), float16))
        return got.tensor, Transfer(sent_ms, recv, up, tensor_bytes(message.tensors, float16),
                                    tensor_bytes(got.tensors(), float16))

    def _step(self, start: float, target_ms: float) -> tuple[float, float]:
        """End an emulated compute step begun at perf_counter `start`: pad it to target_ms when emulating.

        Returns (seconds padded, the instant the step ended on the emulated device): the padded target, or now
        when the real compute took longer (or nothing is emulated). The next upload is paced from that instant,
        so a late wake-up of this process does not add to the emulated chain.
        """
        if not self.options.emulation.active:
            return 0.0, time.perf_counter()
        pad = pad_to(start, target_ms / 1000.0)
        return pad, (start + target_ms / 1000.0 if pad > 0 else time.perf_counter())

    def _lag(self, t0_ms: float) -> float:
        """Seconds from the coordinator's round start (its wall clock, `t0_ms`) until now, within [0, part-1 time].

        An emulated chain starts at the round start: emulation runs every role on one machine, one clock, so
        the time this process took to wake up is padded away rather than added to its chain.
        """
        if not self.options.emulation.active or self.training is None:
            return 0.0
        return min(max((now_ms() - t0_ms) / 1000.0, 0.0), self.training.times["part1_fwd"] / 1000.0)

    def _round(self, r: int, start: ClientRoundStart, received: float) -> None:
        """One training step of this client's chain (its round began at perf_counter `received`); report it.

        A non-finite loss or tensor of its own training is reported as an ERROR DIVERGED instead of the report;
        nothing non-finite is sent to the helper.
        """
        log.info("%s: round %d on %s", self.name, r, start.helper)
        try:
            report = self._train(r, start, received)
        except Diverged as exc:
            reason = f"{self.name}: {exc}"
            log.error("training diverged at round %d: %s", r, reason)
            self.link.send(ErrorReply(RuntimeCode.DIVERGED, reason), r)
            return
        except RoundCancelled as exc:
            log.warning("%s: round %d was closed without it (%s); waiting for the next command", self.name, r, exc)
            return
        self.link.send(report, r)

    def _train(self, r: int, start: ClientRoundStart, received: float) -> ClientRoundReport:
        if start.local:
            return self._train_local(r, received)
        if start.micro_batches > 1:
            return self._train_pipelined(r, start, received)
        t = self.training
        assert t is not None
        t.in_plan = t.mode.in_plan(start.local_loss)  # mode "auto": plans change only at averaging boundaries
        if t.mode != LearningMode():
            return self._train_mode(r, start, received)
        run = self.link.run
        helper = self._helper(start.helper_endpoint, start.helper_key)
        t_start = now_ms()
        t.opt1.lr = t.opt3.lr = state.lr_at(t.config, r)
        x, y = t.data.batch(r)
        act, compute1 = _part1_forward(t, r, x)
        pad1, ready = self._step(received, t.times["part1_fwd"])
        out, fwd = self._exchange(helper, ForwardJob(start.token, tensor=act).encode(
            JobId(run, r, self.name, self._next_seq())), ready, Activations)
        clock = time.perf_counter()
        result = _part3_step(t, out, y)
        compute3 = time.perf_counter() - clock
        pad3, ready = self._step(clock, t.times["part3_fwd"] + t.times["part3_bwd"])
        grad, bwd = self._exchange(helper, Gradients(start.token, tensor=result.grad_in).encode(
            JobId(run, r, self.name, self._next_seq())), ready, GradBack)
        clock = time.perf_counter()
        t.opt1.step(t.part1.backward(r, grad).grads)
        compute1b = time.perf_counter() - clock
        pad1b, _ = self._step(clock, t.times["part1_bwd"])
        finish = now_ms()
        self.trace.event("round_end", finish, round=r, loss=result.loss)
        return ClientRoundReport(r, float(result.loss), int(len(y)), t_start, finish, fwd, bwd,
                                 {"part1_fwd": compute1 * 1e3, "part3": compute3 * 1e3, "part1_bwd": compute1b * 1e3},
                                 {"part1_fwd": pad1 * 1e3, "part3": pad3 * 1e3, "part1_bwd": pad1b * 1e3})

    def _train_pipelined(self, r: int, start: ClientRoundStart, received: float) -> ClientRoundReport:
        """One training step split into N micro-batches (PiPar): each part-1 forward is sent as soon as it is
        computed (its emulated upload queued on the uplink while the next one computes); part-3 runs on each
        micro-batch's part-2 output in order, its loss scaled by the micro-batch's share of the batch, and sends
        its gradient; part-1's backward runs on each returned gradient in order. The gradients of every part are
        summed over the micro-batches and each part takes one optimizer step, so the update is the whole batch's.
        Emulated compute is padded per micro-batch to the plan's stage times (microbatch.client_step_ms)."""
        t = self.training
        assert t is not None
        helper = self._helper(start.helper_endpoint, start.helper_key)
        t_start = now_ms()
        t.opt1.lr = t.opt3.lr = state.lr_at(t.config, r)
        x, y = t.data.batch(r)
        parts = micro_slices(len(y), start.micro_batches)
        n, steps = len(parts), client_step_ms(t.times, len(parts))
        shares = [(p.stop - p.start) / len(y) for p in parts]
        compute, pad = dict.fromkeys(CLIENT_STEPS, 0.0), dict.fromkeys(CLIENT_STEPS, 0.0)
        sent: dict[JobId, Message] = {}
        early: dict[JobId, Envelope] = {}
        log_fwd, log_bwd = _Exchanges(), _Exchanges()
        uplink = Uplink()
        try:
            ready, fwd_jobs = received, []
            for abandoned in t.part1.pending_jobs:
                t.part1.drop(abandoned)
            for k, rows in enumerate(parts):
                clock = time.perf_counter()
                act = _finite("its part-1 activations", t.part1.forward((r, k), x[rows]))
                compute["part1_fwd"] += time.perf_counter() - clock
                waited, ready = self._step(ready, steps["part1_fwd"])
                pad["part1_fwd"] += waited
                message = ForwardJob(start.token, micro=k, tensor=act).encode(self._job_id(r))
                fwd_jobs.append(self._upload(uplink, helper, message, ready, sent, log_fwd, k))
            grads3, bwd_jobs, loss = GradientSum(n), [], 0.0
            for k, rows in enumerate(parts):
                got = self._await_any(helper, fwd_jobs[k], sent, early, Activations, t.cuts.micro(k, n))
                sent.pop(fwd_jobs[k])
                log_fwd.received(got, t.config.float16)
                self.trace.event("recv", type=MsgType.ACTIVATIONS.value, round=r, micro=k)
                clock = time.perf_counter()
                result = _part3_grads(t, got.tensor, y[rows])
                compute["part3"] += time.perf_counter() - clock
                loss += result.loss * shares[k]
                total3 = grads3.add(scaled(result.grads, shares[k]))
                grad = result.grad_in * np.float32(shares[k])
                waited, ready = self._step(clock, steps["part3"])
                pad["part3"] += waited
                message = Gradients(start.token, micro=k, tensor=grad).encode(self._job_id(r))
                bwd_jobs.append(self._upload(uplink, helper, message, ready, sent, log_bwd, k))
            grads1 = GradientSum(n)
            for k in range(n):
                got = self._await_any(helper, bwd_jobs[k], sent, early, GradBack, t.cuts.micro(k, n))
                sent.pop(bwd_jobs[k])
                log_bwd.received(got, t.config.float16)
                self.trace.event("recv", type=MsgType.GRAD_BACK.value, round=r, micro=k)
                clock = time.perf_counter()
                total1 = grads1.add(t.part1.backward((r, k), got.tensor).grads)
                compute["part1_bwd"] += time.perf_counter() - clock
                waited, _ = self._step(clock, steps["part1_bwd"])
                pad["part1_bwd"] += waited
        finally:
            uplink.close()
        assert total1 is not None and total3 is not None
        t.opt3.step(total3)
        t.opt1.step(total1)
        finish = now_ms()
        self.trace.event("round_end", finish, round=r, loss=loss, micro_batches=n)
        return ClientRoundReport(r, float(loss), int(len(y)), t_start, finish, log_fwd.transfer(), log_bwd.transfer(),
                                 {k: v * 1e3 for k, v in compute.items()}, {k: v * 1e3 for k, v in pad.items()})

    def _job_id(self, r: int) -> JobId:
        """A fresh job id of round r."""
        return JobId(self.link.run, r, self.name, self._next_seq())

    def _upload(self, uplink: Uplink, helper: PeerChannel, message: Message, ready: float, sent: dict[JobId, Message],
                exchanges: "_Exchanges", k: int) -> JobId:
        """Queue a micro-batch job on the uplink: sent once its emulated upload, begun at perf_counter `ready` or when
        the uplink is free, is over; it joins `sent` (awaiting its reply) now. Its id."""
        assert self.training is not None
        nbytes = tensor_bytes(message.tensors, self.training.config.float16)
        up = self.options.emulation.transfer_s(nbytes)

        def send() -> None:
            self._send_job(helper, message)
            self.trace.event("send", type=message.type.value, round=message.job.round, micro=k, bytes=nbytes)

        delay = uplink.send(ready, up, send)
        sent[message.job] = message
        exchanges.queued(now_ms() + delay * 1e3, up, nbytes)
        return message.job

    def _train_mode(self, r: int, start: ClientRoundStart, received: float) -> ClientRoundReport:
        """One training step in a learning mode other than U-shaped SplitFed (docs/modes.md).

        Local loss: while its activations upload (on the uplink, Uplink), part-1 and the aux head take their local
        step (padded to the declared aux step when emulating), as the planner's local-loss chain has it; part-1
        waits for no cut-1 gradient (with local_loss_helper_weight w > 0 the helper's gradient, times w, is
        applied when it arrives, at the end of the round). Two-part split: the labels travel with the activations,
        part-3 is the helper's, and the reply is the cut-1 gradient with the loss (none in local loss with w = 0).
        In mode "auto" the round start says which of local loss and SplitFed the plan in force chose. The report's
        loss is the model's loss where this client sees it, else the aux head's."""
        t = self.training
        assert t is not None
        mode, run, float16 = t.in_plan, self.link.run, t.config.float16
        local = t.local if mode.local_loss else None
        helper = self._helper(start.helper_endpoint, start.helper_key)
        t_start = now_ms()
        for _, opt in t.owned(held=True).values():
            opt.lr = state.lr_at(t.config, r)
        x, y = t.data.batch(r)
        act, compute1 = _part1_forward(t, r, x, local)
        pad1, ready = self._step(received, t.times["part1_fwd"])
        forward = ForwardJob(start.token, tensor=act, labels=y if mode.labels_on_helper else None).encode(
            JobId(run, r, self.name, self._next_seq()))
        loss = compute_local = pad_local = compute3 = pad3 = 0.0
        if local is None:
            up, sent = self._send_paced(helper, forward, ready)
        else:  # the upload runs on the uplink while part-1 and the aux head take their local step
            uplink = Uplink()
            up = self.options.emulation.transfer_s(tensor_bytes(forward.tensors, float16))
            sent = now_ms() + 1e3 * uplink.send(ready, up, lambda: self._send_job(helper, forward))
            try:
                clock = time.perf_counter()
                step = local.local_step(r, y)
                if not math.isfinite(step.loss):
                    raise Diverged(f"its aux head's loss is {step.loss}")
                t.opt1.step(step.grads)
                assert t.opt_aux is not None
                t.opt_aux.step(step.aux_grads)
                loss, compute_local = step.loss, time.perf_counter() - clock
                pad_local, _ = self._step(clock, t.times["aux"])
                time.sleep(max(0.0, (sent - now_ms()) / 1e3))
            except BaseException:
                uplink.close()  # the round is abandoned: its upload is dropped
                raise
            uplink.close(send_pending=True)  # the upload is due: sent now if the uplink's thread has not yet
        fwd = Transfer(sent, sent, up, tensor_bytes(forward.tensors, float16), 0)
        if mode.labels_on_helper:
            bwd_at = fwd.sent
            if mode.cut1_gradient:
                got = self._await(helper, forward, GradBack)
                bwd_at = now_ms()
                fwd = Transfer(sent, bwd_at, up, fwd.bytes_up, tensor_bytes(got.tensors(), float16))
                if got.loss is None:
                    raise RoleFailedError(f"{self.name}: its helper's cut-1 gradient of round {r} came without the "
                                          f"loss (labels = \"helper\")")
                loss = loss if local is not None else got.loss
                self._apply_cut1(t, r, got.tensor, local)
            bwd = Transfer(bwd_at, bwd_at, 0.0, 0, 0)
        else:
            out, fwd = self._exchange(helper, forward, ready, Activations, sent=(up, sent))
            clock = time.perf_counter()
            result = _part3_step(t, out, y)
            loss, compute3 = float(result.loss), time.perf_counter() - clock
            pad3, ready = self._step(clock, t.times["part3_fwd"] + t.times["part3_bwd"])
            gradients = Gradients(start.token, tensor=result.grad_in).encode(JobId(run, r, self.name,
                                                                                   self._next_seq()))
            if mode.cut1_gradient:
                grad, bwd = self._exchange(helper, gradients, ready, GradBack)
                self._apply_cut1(t, r, grad, local)
            else:
                up2, sent2 = self._send_paced(helper, gradients, ready)
                bwd = Transfer(sent2, sent2, up2, tensor_bytes(gradients.tensors, float16), 0)
        finish = now_ms()
        self.trace.event("round_end", finish, round=r, loss=loss, mode=mode.name)
        return ClientRoundReport(r, float(loss), int(len(y)), t_start, finish, fwd, bwd,
                                 {"part1_fwd": compute1 * 1e3, "part3": compute3 * 1e3,
                                  "part1_bwd": compute_local * 1e3},
                                 {"part1_fwd": pad1 * 1e3, "part3": pad3 * 1e3, "part1_bwd": pad_local * 1e3})

    def _apply_cut1(self, t: Training, r: int, grad: np.ndarray, local: LocalLoss | None) -> None:
        """Step part-1 with the helper's cut-1 gradient: its whole backward, or in local loss the weighted part."""
        clock = time.perf_counter()
        grads = local.helper_gradient(r, grad) if local is not None else t.part1.backward(r, grad).grads
        t.opt1.step(grads)
        self._step(clock, t.times["part1_bwd"])

    def _train_local(self, r: int, received: float) -> ClientRoundReport:
        """One training step in local mode: part-2 on this device between part-1 and part-3, nothing sent; the two
        part-2 steps are reported as the round's exchanges (no bytes) and padded to its part-2 times."""
        t = self.training
        assert t is not None
        if t.part2 is None or t.opt2 is None:
            raise RoleFailedError(f"{self.name}: told to train locally, but its run's method "
                                  f"{t.config.method!r} gave it no part-2")
        t_start = now_ms()
        t.opt1.lr = t.opt2.lr = t.opt3.lr = state.lr_at(t.config, r)
        x, y = t.data.batch(r)
        act, compute1 = _part1_forward(t, r, x)
        pad1, _ = self._step(received, t.times["part1_fwd"])
        fwd_begin, clock = now_ms(), time.perf_counter()
        out = _finite("its part-2 outputs", t.part2.forward(r, act))
        self._step(clock, t.times["part2_fwd"])
        fwd = Transfer(fwd_begin, now_ms(), 0.0, 0, 0)
        clock = time.perf_counter()
        result = _part3_step(t, out, y)
        compute3 = time.perf_counter() - clock
        pad3, _ = self._step(clock, t.times["part3_fwd"] + t.times["part3_bwd"])
        bwd_begin, clock = now_ms(), time.perf_counter()
        back = t.part2.backward(r, result.grad_in)
        _finite("its gradient of the part-1 output", back.grad_in)
        t.opt2.step(back.grads)
        self._step(clock, t.times["part2_bwd"])
        bwd = Transfer(bwd_begin, now_ms(), 0.0, 0, 0)
        clock = time.perf_counter()
        t.opt1.step(t.part1.backward(r, back.grad_in).grads)
        compute1b = time.perf_counter() - clock
        pad1b, _ = self._step(clock, t.times["part1_bwd"])
        finish = now_ms()
        self.trace.event("round_end", finish, round=r, loss=result.loss, local=True)
        return ClientRoundReport(r, float(result.loss), int(len(y)), t_start, finish, fwd, bwd,
                                 {"part1_fwd": compute1 * 1e3, "part3": compute3 * 1e3, "part1_bwd": compute1b * 1e3},
                                 {"part1_fwd": pad1 * 1e3, "part3": pad3 * 1e3, "part1_bwd": pad1b * 1e3})


class _Exchanges:
    """One kind of a pipelined round's exchanges (forward or backward), summed into the report's Transfer: the
    first send, the last reply, the emulated uploads and the bytes."""

    def __init__(self) -> None:
        self.first_sent = math.inf
        self.last_recv = 0.0
        self.up_s = 0.0
        self.bytes_up = self.bytes_down = 0

    def queued(self, sent_ms: float, up_s: float, nbytes: int) -> None:
        """A job queued on the uplink, leaving at wall ms sent_ms after an upload of up_s seconds."""
        self.first_sent = min(self.first_sent, sent_ms)
        self.up_s += up_s
        self.bytes_up += nbytes

    def received(self, reply: Activations | GradBack, float16: bool) -> None:
        """The reply to a job arrived now."""
        self.last_recv = now_ms()
        self.bytes_down += tensor_bytes(reply.tensors(), float16)

    def transfer(self) -> Transfer:
        """The summed exchange."""
        return Transfer(self.first_sent, self.last_recv, self.up_s, self.bytes_up, self.bytes_down)


def _decode_reply(name: str, env: Envelope, reply: type[Activations] | type[GradBack],
                  cuts: CutShapes) -> Activations | GradBack:
    """A helper's reply, checked; Diverged for non-finite values, RoleFailedError for a bad one."""
    if env.message.type is not reply.TYPE:
        raise RoleFailedError(f"{name}: its helper answered the {reply.kind()} job with a {env.message.type.value}")
    try:
        return reply.decode(env.message, cuts=cuts)
    except NonFiniteError as exc:
        raise Diverged(f"its helper's {exc}") from None
    except PayloadError as exc:
        raise RoleFailedError(f"{name}: refused its helper's reply: {exc}") from None


def _cancelled(env: Envelope) -> bool:
    """Whether an ERROR says the job's round was closed without this client."""
    try:
        return ErrorReply.decode(env.message).code == RuntimeCode.CANCELLED
    except PayloadError:
        return False


def _part1_forward(t: Training, r: int, x: np.ndarray, local: LocalLoss | None = None) -> tuple[np.ndarray, float]:
    """Part-1's forward pass of round r (after dropping the jobs of rounds closed without this client, or run
    again; through `local` in local-loss training) and the seconds it took; Diverged when the activations are not
    finite."""
    for abandoned in t.part1.pending_jobs:
        (t.local or t.part1).drop(abandoned)
    clock = time.perf_counter()
    act = _finite("its part-1 activations", (local or t.part1).forward(r, x))
    return act, time.perf_counter() - clock


def _part3_step(t: Training, out: np.ndarray, y: np.ndarray) -> TrainResult:
    """Part-3's training step on the part-2 output (loss, its gradient, an optimizer step); Diverged when the loss
    or the gradient for part-2 is not finite."""
    result = _part3_grads(t, out, y)
    t.opt3.step(result.grads)
    return result


def _part3_grads(t: Training, out: np.ndarray, y: np.ndarray) -> TrainResult:
    """Part-3's loss and gradients on the part-2 output, no optimizer step; Diverged when the loss or the gradient
    for part-2 is not finite."""
    result = t.part3.train_step(out, y)
    if not math.isfinite(result.loss):
        raise Diverged(f"its loss is {result.loss}")
    _finite("its gradient of the part-2 output", result.grad_in)
    return result


def _carries(tensors: dict[str, np.ndarray], prefix: str) -> bool:
    """Whether a STATE's tensors hold any of the part under `prefix`."""
    return any(name.startswith(prefix) for name in tensors)


def _finite(what: str, array: np.ndarray) -> np.ndarray:
    """The array, or Diverged when it holds NaN or infinity."""
    if not np.isfinite(array).all():
        raise Diverged(f"{what} hold non-finite values")
    return array
