"""A rogue peer sending garbage and foreign jobs to a helper and the coordinator is refused; the run finishes."""
from __future__ import annotations

import json
import math
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq

from edgepsl.runtime import state
from edgepsl.runtime.client import PART1, PART3, Client, ClientOptions
from edgepsl.runtime.coordinator import Coordinator
from edgepsl.runtime.errors import TrainingDivergedError
from edgepsl.runtime.helper import Helper, HelperOptions
from edgepsl.runtime.launch import run_local
from edgepsl.runtime.protocol import RuntimeCode, State
from edgepsl.wire import (ChannelConfig, Envelope, ErrorCode, JobId, KeyStore, Message, MsgType, PeerChannel,
                          PeerEvent, PeerSecurity, decode, encode)
from edgepsl.wire.validate import Limits
from tests.runtime.conftest import run_threaded, small_run

EXPECTED = 10  # five refusals from the helper and five from the coordinator
# The report without its fields is refused by the coordinator naming the missing field (BAD_PAYLOAD), by the helper
# as a message it never takes (REJECTED).


class Rogue:
    """A plaintext DEALER named mallory that sends bad messages and records the ERROR codes it gets back."""

    def __init__(self) -> None:
        self.codes: list[int] = []
        self.context = zmq.Context()

    def attack(self, endpoint: str, client: str) -> None:
        """Garbage bytes, a job claiming another client, a job of an unassigned client, a valid-looking bad tensor."""
        sock = self.context.socket(zmq.DEALER)
        sock.routing_id = b"mallory"
        sock.linger = 0
        sock.connect(endpoint)
        bad_tensor = {"x": np.zeros((2, 3), np.float32)}
        sock.send_multipart([b"\xc1 not msgpack"])
        sock.send_multipart([msgpack.packb({"v": 1, "type": "forward", "tensors": [{"name": "x"}]})])
        sock.send_multipart(encode(Message(MsgType.FORWARD, JobId("test", 1, client, 1), bad_tensor)))
        sock.send_multipart(encode(Message(MsgType.FORWARD, JobId("test", 1, "mallory", 2), bad_tensor)))
        sock.send_multipart(encode(Message(MsgType.REPORT, JobId("test", 1, "mallory", 3), meta={"phase": "round"})))
        threading.Thread(target=self._listen, args=(sock,), daemon=True).start()

    def _listen(self, sock: zmq.Socket) -> None:
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and len(self.codes) < EXPECTED:
            if sock.poll(200):
                message = decode(sock.recv_multipart(), Limits())
                if message.type is MsgType.ERROR:
                    self.codes.append(message.error_info()[0])
        sock.close()


def test_garbage_is_refused_while_the_others_finish(tmp_path):
    run_dir = tmp_path / "run"
    rogue = Rogue()

    def on_round(metrics: dict) -> None:
        if metrics["round"] == 0:
            roles = json.loads((run_dir / "roles.json").read_text())
            rogue.attack(roles["helper_endpoints"]["helper0"], "client0")
            rogue.attack(roles["coordinator"], "client0")

    summary = run_local(small_run(run_dir, clients=2, helpers=1, rounds=10, secure=False), on_round)
    assert summary.rounds_done == 10 and len(summary.records) == 10
    assert summary.accuracy is not None
    deadline = time.monotonic() + 30.0
    while len(rogue.codes) < EXPECTED and time.monotonic() < deadline:
        time.sleep(0.05)
    rogue.context.term()
    assert sorted(rogue.codes) == sorted(2 * [ErrorCode.BAD_HEADER, ErrorCode.BAD_TENSOR, ErrorCode.IMPERSONATION]
                                         + 3 * [ErrorCode.REJECTED] + [RuntimeCode.BAD_PAYLOAD])


ATTACKS = [  # (message from an allowed key that is no role of the run, the refusal's reason)
    (Message(MsgType.REGISTER, JobId("test", 0, "mallory", 1), meta={}), "register: role is missing"),
    (Message(MsgType.REGISTER, JobId("test", 0, "mallory", 2), meta={"role": 5}), "register: role is 5; expected"),
    (Message(MsgType.REGISTER, JobId("test", 0, "mallory", 3), meta={"role": "client", "capacity_mb": math.nan}),
     "register: capacity_mb is nan, not finite"),
    (Message(MsgType.REPORT, JobId("test", 1, "mallory", 4), meta={"phase": "round", "round": 1, "loss": "low"}),
     "report (round): loss must be a number, got str"),
    (Message(MsgType.REPORT, JobId("test", 0, "mallory", 5), meta={"phase": "links", "links": {"helper0": {
        "sizes_bytes": list(range(1, 10)), "rtt_ms": [1.0], "latency_ms": 0.0, "mbps": 1.0, "fit": "line"}}}),
     "report (links): links['helper0'].sizes_bytes has 9 items, more than 8"),
]
LEARNING = ("round", "loss", "client_loss", "accuracy")


def test_malformed_payloads_from_an_allowed_key_are_refused_by_name_while_the_run_trains_as_usual(reference_run,
                                                                                                   tmp_path):
    """An authenticated peer (its CURVE key is allowed) sends payloads that fail validation mid-run: each gets
    BAD_PAYLOAD naming the field, and the run ends with exactly the undisturbed run's metrics."""
    run_dir = tmp_path / "run"
    store = KeyStore(run_dir / "keys")
    store.new("mallory")  # the local run allows every key of its store
    channels: list[PeerChannel] = []

    def on_round(metrics: dict) -> None:
        if metrics["round"] == 0:
            roles = json.loads((run_dir / "roles.json").read_text())
            channel = PeerChannel(roles["coordinator"], "mallory", config=ChannelConfig(inbox=16, hwm=16),
                                  security=PeerSecurity(store.identity("mallory"), store.identity("coordinator").public))
            channels.append(channel)
            for message, _ in ATTACKS:
                channel.send(message)

    summary = run_local(small_run(run_dir, clients=3, helpers=2), on_round)
    reasons = []
    deadline = time.monotonic() + 10.0
    while len(reasons) < len(ATTACKS) and time.monotonic() < deadline:
        item = channels[0].recv(timeout=0.2)
        if item is not None and not isinstance(item, PeerEvent) and item.message.type is MsgType.ERROR:
            code, reason = item.message.error_info()
            assert code == RuntimeCode.BAD_PAYLOAD, reason
            reasons.append(reason)
    channels[0].close()
    assert len(reasons) == len(ATTACKS)
    for _, expected in ATTACKS:
        assert any(reason.startswith(expected) for reason in reasons), (expected, reasons)
    assert [{k: m[k] for k in LEARNING if k in m} for m in summary.records] == \
        [{k: m[k] for k in LEARNING if k in m} for m in reference_run.records]


FLOOD = 30


def test_a_flood_of_jobs_before_their_round_is_bounded_at_the_helper(reference_run, tmp_path):
    """Jobs that arrive before their round are kept only up to helper_early_messages / helper_early_mb per sender;
    the rest is refused BUSY at once, and the clients' own early jobs are still kept: the run trains exactly as the
    undisturbed one."""
    run_dir = tmp_path / "run"
    context = zmq.Context()
    busy: list[str] = []

    def on_round(metrics: dict) -> None:
        if metrics["round"] != 0:
            return
        roles = json.loads((run_dir / "roles.json").read_text())
        sock = context.socket(zmq.DEALER)
        sock.routing_id, sock.linger = b"mallory", 0
        sock.connect(roles["helper_endpoints"]["helper0"])
        payload = {"x": np.zeros(2 ** 16, np.float32)}  # 256 KiB
        for seq in range(FLOOD):
            sock.send_multipart(encode(Message(MsgType.FORWARD, JobId("test", 1, "mallory", seq), payload)))
        deadline = time.monotonic() + 30.0  # the helper answers while this round's callback holds the run
        while len(busy) < FLOOD - 4 and time.monotonic() < deadline:
            if sock.poll(200):
                code, reason = decode(sock.recv_multipart(), Limits()).error_info()
                if code == RuntimeCode.BUSY:
                    busy.append(reason)
        sock.close()

    config = dict(clients=3, helpers=2, secure=False, helper_early_messages=4, helper_early_mb=1.0)
    summary = run_local(small_run(run_dir, **config), on_round)
    context.term()
    assert len(busy) == FLOOD - 4 and "holds 4 messages (1048576 bytes) of mallory" in busy[0]
    assert [{k: m[k] for k in LEARNING if k in m} for m in summary.records] == \
        [{k: m[k] for k in LEARNING if k in m} for m in reference_run.records]


class MalformedFirst(Client):
    """A client (its own, assigned, authenticated name) that sends malformed forward jobs before each real one."""

    def __init__(self, options: ClientOptions) -> None:
        super().__init__(options)
        self.refusals: list[str] = []

    def _send_paced(self, channel: PeerChannel, message: Message, ready: float) -> tuple[float, float]:
        if message.type is MsgType.FORWARD:
            x = message.tensors["x"]
            bad_x = x.copy()
            bad_x.flat[0] = np.nan
            for tensors, meta in (({"x": bad_x}, message.meta), ({"x": x[:1]}, message.meta), ({"x": x}, {}),
                                  ({"x": x}, {"token": "low"})):
                job = JobId(message.job.run, message.job.round, self.name, self._next_seq())
                channel.send(Message(MsgType.FORWARD, job, tensors, meta))
                deadline = time.monotonic() + 10.0
                while time.monotonic() < deadline:
                    item = channel.recv(timeout=0.5)
                    if isinstance(item, Envelope) and item.message.type is MsgType.ERROR and item.message.job == job:
                        self.refusals.append("%d %s" % item.message.error_info())
                        break
        return super()._send_paced(channel, message, ready)


def _threaded(run_dir, config, client0: type[Client]) -> tuple[list[dict], Client]:
    """A coordinator here, one helper and two clients in threads (insecure); the run's records and client0."""
    coordinator = Coordinator(config, run_dir)
    roles = [Helper(HelperOptions("helper0", coordinator.endpoint)),
             client0(ClientOptions("client0", coordinator.endpoint)), Client(ClientOptions("client1", coordinator.endpoint))]
    summary = run_threaded(coordinator, roles)
    return summary.records, roles[1]


def test_a_helper_refuses_malformed_jobs_of_its_own_client_by_name_and_the_run_trains_as_usual(tmp_path):
    config = small_run(tmp_path, clients=2, helpers=1, rounds=2, aggregate_every=2, eval_every=2).config
    undisturbed, _ = _threaded(tmp_path / "undisturbed", config, Client)
    records, client = _threaded(tmp_path / "disturbed", config, MalformedFirst)
    code = int(RuntimeCode.BAD_PAYLOAD)
    assert client.refusals[:4] == [
        f"{code} forward: tensor 'x' holds non-finite values (NaN or infinity)",
        f"{code} forward: tensor 'x' has shape (1, 6, 14, 14), expected (32, 6, 14, 14)",
        f"{code} forward: token is missing",
        f"{code} forward: token must be an integer, got str"]
    assert len(client.refusals) == 4 * 2  # each round
    assert [{k: m[k] for k in LEARNING if k in m} for m in records] == \
        [{k: m[k] for k in LEARNING if k in m} for m in undisturbed]


class NaNState(Client):
    """A client whose state for averaging holds NaN (weights that blew up in the round's last optimizer step)."""

    def _send_state(self, round_: int, optimizer: bool, with_part2: bool) -> None:
        t = self.training
        assert t is not None
        tensors = {**state.pack(t.part1, PART1, t.opt1), **state.pack(t.part3, PART3, t.opt3)}
        name = sorted(tensors)[0]
        tensors[name] = np.full_like(tensors[name], np.nan)
        self.link.send(State(t.data.samples, tensors), round_)


def test_a_non_finite_state_for_averaging_ends_the_run_as_divergence(tmp_path):
    """The coordinator refuses client0's NaN state and stops at once with "training diverged at round 1" (not after
    round_timeout_s); every role leaves on its bye and the metrics of the rounds before stay."""
    config = small_run(tmp_path, clients=2, helpers=1, rounds=4, aggregate_every=2, eval_every=2).config
    with pytest.raises(TrainingDivergedError, match=r"^training diverged at round 1: client0: state: tensor "
                                                    r"'part1/\S+' holds non-finite values"):
        _threaded(tmp_path / "run", config, NaNState)
    assert [json.loads(line)["round"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()] == [0]
