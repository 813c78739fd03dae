"""The client agent: owns its data and labels, runs part-1 and part-3, sends only activations and gradients."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from edgepsl.profiling.link import ProbeTimeoutError, probe_link

from edgepsl.runtime import state
from edgepsl.runtime.channels import channel_config, expect
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.dataset import ClientData, client_data
from edgepsl.runtime.emulation import Emulation, pad_to
from edgepsl.runtime.measure import measure_client
from edgepsl.runtime.trace import Trace, now_ms, tensor_bytes
from edgepsl.segment import Segment, load_manifest
from edgepsl.wire import ErrorCode, JobId, KeyPair, Message, MsgType, PeerChannel, PeerSecurity, error_message

PART1, PART3 = "part1/", "part3/"
log = logging.getLogger("edgepsl.runtime.client")


@dataclass(frozen=True)
class ClientOptions:
    """How a client process reaches the coordinator and what it emulates."""

    name: str
    coordinator: str
    keypair: KeyPair | None = None
    coordinator_key: bytes | None = None
    emulation: Emulation = Emulation()
    trace_path: Path | None = None


class Client:
    """One client: register, declare part times, then train one mini-batch per ROUND_START until BYE."""

    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        self.name = options.name
        self.trace = Trace(options.trace_path, self.name)
        self._seq = time.time_ns() // 1000
        self._helpers: dict[str, PeerChannel] = {}
        self.config: RunConfig | None = None

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _peer(self, endpoint: str, server_key: bytes | None) -> PeerChannel:
        security = None
        if self.options.keypair is not None and server_key is not None:
            security = PeerSecurity(self.options.keypair, server_key)
        float16 = self.config.float16 if self.config is not None else False
        return PeerChannel(endpoint, self.name, security=security, insecure=security is None,
                           config=channel_config(float16))

    def run(self) -> None:
        """Serve the whole run; returns after the coordinator's BYE."""
        coord = self._peer(self.options.coordinator, self.options.coordinator_key)
        try:
            self._serve(coord)
        finally:
            for channel in self._helpers.values():
                channel.close()
            coord.close()
            self.trace.close()

    def _serve(self, coord: PeerChannel) -> None:
        coord.send(Message(MsgType.REGISTER, JobId("", 0, self.name, self._next_seq()),
                           meta={"role": "client", "emulation": self.options.emulation.to_meta()}))
        welcome = expect(coord, {MsgType.WELCOME}, 600.0, "the coordinator's welcome").message
        self.config = config = RunConfig.from_dict(welcome.meta["config"])
        run = welcome.job.run
        data = client_data(config, int(welcome.meta["index"]))
        manifest = load_manifest(config.artifact)
        self.part1 = Segment(manifest, "part1", threads=config.threads)
        self.part3 = Segment(manifest, "part3", threads=config.threads)
        self.opt1 = state.make_optimizer(config, self.part1.params)
        self.opt3 = state.make_optimizer(config, self.part3.params)
        measured = measure_client(self.part1, self.part3, config.batch_size, config.profile_iters)
        self.times = self.options.emulation.part_times(measured, config.emulation_profile, config.time_scale)
        coord.send(Message(MsgType.REPORT, JobId(run, 0, self.name, self._next_seq()),
                           meta={"phase": "profile", "times": self.times, "measured": measured,
                                 "samples": data.samples, "bandwidth_mbps": self.options.emulation.bandwidth_mbps}))
        while True:
            env = expect(coord, {MsgType.ROUND_START, MsgType.STATE_REQUEST, MsgType.STATE, MsgType.BYE, MsgType.PROBE},
                         config.round_timeout_s * 10, "the coordinator's next command")
            message = env.message
            received = time.perf_counter() - self._lag(message.meta)
            if message.type is MsgType.BYE:
                return
            if message.type is MsgType.PROBE:
                coord.send(self._probe(message))
            elif message.type is MsgType.ROUND_START:
                report = self._round(message, data, received)
                coord.send(Message(MsgType.REPORT, JobId(run, message.job.round, self.name, self._next_seq()), meta=report))
            elif message.type is MsgType.STATE_REQUEST:
                tensors = {**state.pack(self.part1, PART1, self.opt1 if message.meta.get("optimizer") else None),
                           **state.pack(self.part3, PART3, self.opt3 if message.meta.get("optimizer") else None)}
                coord.send(Message(MsgType.STATE, JobId(run, message.job.round, self.name, self._next_seq()), tensors,
                                   meta={"samples": data.samples}), copy=True)
            else:
                state.restore(self.part1, self.opt1, message.tensors, PART1)
                state.restore(self.part3, self.opt3, message.tensors, PART3)

    def _helper(self, endpoint: str, key: str | None) -> PeerChannel:
        """The channel to a helper (opened on first use, then kept)."""
        if endpoint not in self._helpers:
            self._helpers[endpoint] = self._peer(endpoint, key.encode() if key else None)
        return self._helpers[endpoint]

    def _probe(self, request: Message) -> Message:
        """Probe every helper the coordinator lists, one after the other; the REPORT of the fitted links.

        Uploads are paced like job uploads. A helper that does not echo in time gives an ERROR naming the link.
        """
        config = self.config
        assert config is not None
        links = {}
        for target in request.meta["helpers"]:
            channel = self._helper(target["endpoint"], target.get("key"))
            try:
                stats = probe_link(channel, request.job.run, self.name, self._next_seq, request.meta["sizes_kb"],
                                   config.probe_repeats, config.probe_timeout_s, self._pace)
            except ProbeTimeoutError as exc:
                reason = f"link probe {self.name} -> {target['helper']} ({target['endpoint']}): {exc}"
                log.warning("%s", reason)
                return error_message(ErrorCode.REJECTED, reason, request.job)
            links[target["helper"]] = stats.to_dict()
            self.trace.event("probe", helper=target["helper"], latency_ms=stats.latency_ms, mbps=stats.mbps)
        return Message(MsgType.REPORT, JobId(request.job.run, 0, self.name, self._next_seq()),
                       meta={"phase": "links", "links": links})

    def _pace(self, nbytes: int) -> float:
        """Sleep for the emulated upload of nbytes (not at all without an emulated link); the seconds slept."""
        up = self.options.emulation.transfer_s(nbytes)
        if up > 0:
            time.sleep(up)
        return up

    def _send_paced(self, channel: PeerChannel, message: Message, ready: float) -> tuple[float, float]:
        """Send once the emulated upload that began at perf_counter time `ready` is over; (upload s, wall ms sent)."""
        assert self.config is not None
        nbytes = tensor_bytes(message.tensors, self.config.float16)
        up = self.options.emulation.transfer_s(nbytes)
        pad_to(ready, up)
        sent = now_ms()
        channel.send(message)
        self.trace.event("send", sent, type=message.type.value, round=message.job.round, bytes=nbytes)
        return up, sent

    def _exchange(self, helper: PeerChannel, message: Message, ready: float, reply: MsgType,
                  what: str) -> tuple[Message, dict]:
        """Send a job to the helper (paced) and wait for its reply; the reply and {sent, recv, up_s} for the report."""
        assert self.config is not None
        up, sent = self._send_paced(helper, message, ready)
        got = expect(helper, {reply}, self.config.round_timeout_s, what,
                     lambda env: env.message.job == message.job).message
        recv = now_ms()
        self.trace.event("recv", recv, type=reply.value, round=message.job.round,
                         bytes=tensor_bytes(got.tensors, self.config.float16))
        return got, {"sent": sent, "recv": recv, "up_s": up, "bytes_up": tensor_bytes(message.tensors, self.config.float16),
                     "bytes_down": tensor_bytes(got.tensors, self.config.float16)}

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

    def _lag(self, meta: dict) -> float:
        """Seconds from the coordinator's round start (its wall clock, `t0_ms`) until now, within [0, part-1 time].

        An emulated chain starts at the round start: emulation runs every role on one machine, one clock, so
        the time this process took to wake up is padded away rather than added to its chain.
        """
        if not self.options.emulation.active or meta.get("t0_ms") is None:
            return 0.0
        return min(max((now_ms() - float(meta["t0_ms"])) / 1000.0, 0.0), self.times["part1_fwd"] / 1000.0)

    def _round(self, start: Message, data: ClientData, received: float) -> dict:
        """One training step of this client's chain; its round began at perf_counter `received`."""
        config = self.config
        assert config is not None
        r, run, meta = start.job.round, start.job.run, start.meta
        helper = self._helper(meta["helper_endpoint"], meta.get("helper_key"))
        t_start = now_ms()
        self.opt1.lr = self.opt3.lr = state.lr_at(config, r)
        x, y = data.batch(r)
        t = time.perf_counter()
        act = self.part1.forward(r, x)
        compute1 = time.perf_counter() - t
        pad1, ready = self._step(received, self.times["part1_fwd"])
        got, fwd = self._exchange(helper, Message(MsgType.FORWARD, JobId(run, r, self.name, self._next_seq()),
                                                  {"x": act}), ready, MsgType.ACTIVATIONS, f"activations of round {r}")
        t = time.perf_counter()
        result = self.part3.train_step(got.tensors["y"], y)
        self.opt3.step(result.grads)
        compute3 = time.perf_counter() - t
        pad3, ready = self._step(t, self.times["part3_fwd"] + self.times["part3_bwd"])
        back, bwd = self._exchange(helper, Message(MsgType.GRADIENTS, JobId(run, r, self.name, self._next_seq()),
                                                   {"grad": result.grad_in}, meta={"loss": result.loss}),
                                   ready, MsgType.GRAD_BACK, f"gradients of round {r}")
        t = time.perf_counter()
        self.opt1.step(self.part1.backward(r, back.tensors["grad"]).grads)
        compute1b = time.perf_counter() - t
        pad1b, _ = self._step(t, self.times["part1_bwd"])
        finish = now_ms()
        self.trace.event("round_end", finish, round=r, loss=result.loss)
        return {"phase": "round", "round": r, "loss": result.loss, "samples": int(len(y)), "start": t_start,
                "finish": finish, "fwd": fwd, "bwd": bwd,
                "compute_ms": {"part1_fwd": compute1 * 1e3, "part3": compute3 * 1e3, "part1_bwd": compute1b * 1e3},
                "pad_ms": {"part1_fwd": pad1 * 1e3, "part3": pad3 * 1e3, "part1_bwd": pad1b * 1e3}}
