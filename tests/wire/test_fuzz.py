"""Thousands of malformed messages against a live server: it answers ERROR to each and keeps serving a good peer."""
from __future__ import annotations

import random
import threading
from typing import Callable

import msgpack
import numpy as np
import pytest
import zmq

from edgepsl.wire import (ChannelConfig, Envelope, ErrorCode, JobId, Limits, Message, MsgType, PeerChannel, ServerChannel,
                          decode, encode)
from tests.wire.helpers import FAST, is_message, wait_for

N_MALFORMED = 2000
GOOD_EVERY = 200


def _valid(rng: random.Random) -> tuple[dict, list[bytes]]:
    shape = [rng.randint(1, 6) for _ in range(rng.randint(1, 3))]
    arr = np.ones(shape, np.float32)
    frames = encode(Message(MsgType.FORWARD, JobId("fuzz", 0, "mallory", rng.randint(0, 10**9)), {"act": arr}))
    return msgpack.unpackb(frames[0]), [bytes(memoryview(f)) for f in frames[1:]]


def _with(header: dict, **changes) -> bytes:
    return msgpack.packb({**header, **changes})


def _tensor(header: dict, **changes) -> bytes:
    return _with(header, tensors=[{**header["tensors"][0], **changes}])


def bad_msgpack(rng, header, frames):
    return [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40))) + b"\xc1", *frames]


def truncated_header(rng, header, frames):
    packed = msgpack.packb(header)
    return [packed[: rng.randint(1, len(packed) - 1)], *frames]


def truncated_frame(rng, header, frames):
    return [msgpack.packb(header), frames[0][: rng.randint(0, len(frames[0]) - 1)]]


def oversized_frame(rng, header, frames):
    return [msgpack.packb(header), frames[0] + bytes(rng.randint(1, 2**18))]


def wrong_shape(rng, header, frames):
    shape = list(header["tensors"][0]["shape"])
    shape[rng.randrange(len(shape))] += rng.randint(1, 5)
    return [_tensor(header, shape=shape), *frames]


def huge_declared_size(rng, header, frames):
    return [_tensor(header, shape=[2 ** rng.randint(31, 62), 2 ** rng.randint(1, 40)]), *frames]


def bad_shape_values(rng, header, frames):
    return [_tensor(header, shape=rng.choice([[-1], ["4"], [1.5], None, "2x2", [[2]], [True] * 3, [1] * 20])), *frames]


def bad_dtype(rng, header, frames):
    return [_tensor(header, dtype=rng.choice(["|O", "<c8", ">f4", "float32", "", 7, None, "<U4", "|V16", ["<f4"], {"a": 1}])), *frames]


def bad_cast(rng, header, frames):
    return [_tensor(header, cast=rng.choice(["<f8", "|O", 1, "<f2"])), *frames]


def unknown_type(rng, header, frames):
    return [_with(header, type=rng.choice(["", "FORWARD", "exec", "pickle", 3, None, ["forward"], {"forward": 1}])), *frames]


def bad_version(rng, header, frames):
    return [_with(header, v=rng.choice([0, 2, 99, "1", None, 1.0 + 1e-9])), *frames]


def bad_field_types(rng, header, frames):
    field = rng.choice(["run", "round", "client", "seq", "sent_ns", "meta", "tensors"])
    value = rng.choice([None, -1, 2**64 - 1, "x", b"\x00", [1], {"a": 1}, 1.5, True, "y" * 300])
    mutated = {**header, field: value}
    if field in ("round", "seq", "sent_ns") and isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
        mutated[field] = -1
    if field in ("run", "client") and isinstance(value, str) and len(value) <= 256:
        mutated[field] = 7
    if field == "meta" and isinstance(value, dict):
        mutated[field] = [value]
    if field == "tensors" and isinstance(value, list):
        mutated[field] = value * 2
    return [msgpack.packb(mutated), *frames]


def missing_frames(rng, header, frames):
    return [msgpack.packb(header)]


def extra_frames(rng, header, frames):
    return [msgpack.packb(header), *frames, *([b"x" * rng.randint(0, 64)] * rng.randint(1, 4))]


def not_a_map(rng, header, frames):
    return [msgpack.packb(rng.choice([[1, 2, 3], "forward", 42, None, b"\x00" * 8])), *frames]


def extension_types(rng, header, frames):
    return [msgpack.packb({**header, "meta": {"x": msgpack.ExtType(rng.randint(0, 127), b"payload")}}), *frames]


def too_many_tensors(rng, header, frames):
    return [_with(header, tensors=[header["tensors"][0]] * rng.randint(513, 2000)), *frames]


def header_too_large(rng, header, frames):
    return [_with(header, meta={"pad": "z" * rng.randint(65_600, 100_000)}), *frames]


def tensors_on_header_only_type(rng, header, frames):
    return [_with(header, type=rng.choice(["heartbeat", "register", "bye", "report"])), *frames]


def empty_header(rng, header, frames):
    return [b"", *frames]


MUTATIONS: list[Callable] = [
    bad_msgpack, truncated_header, truncated_frame, oversized_frame, wrong_shape, huge_declared_size, bad_shape_values,
    bad_dtype, bad_cast, unknown_type, bad_version, bad_field_types, missing_frames, extra_frames, not_a_map,
    extension_types, too_many_tensors, header_too_large, tensors_on_header_only_type, empty_header,
]


@pytest.fixture()
def fuzzer(keys, secure_server):
    """A raw DEALER holding an allowed key (mallory), so its garbage passes CURVE and reaches validation."""
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.linger = 0
    mallory = keys.identity("mallory")
    socket.curve_secretkey, socket.curve_publickey = mallory.secret, mallory.public
    socket.curve_serverkey = keys.identity("server").public
    socket.connect(secure_server.endpoint)
    yield socket
    socket.close()
    context.term()


class EchoApp:
    """The server's application loop in its own thread: answers FORWARD with ACTIVATIONS (x2), records all else."""

    def __init__(self, server) -> None:
        self.server = server
        self.others: list = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        """Loop until stopped; every wait is bounded."""
        while not self.stop.is_set():
            item = self.server.recv(timeout=0.05)
            if isinstance(item, Envelope) and item.message.type is MsgType.FORWARD:
                self.server.send(item.peer, Message(MsgType.ACTIVATIONS, item.message.job, {"act": item.message.tensors["act"] * 2}))
            elif item is not None:
                self.others.append(item)

    def close(self) -> None:
        """Stop the loop and wait for it."""
        self.stop.set()
        self.thread.join(timeout=5)


def good_round_trip(alice, seq: int) -> None:
    """alice sends a FORWARD and gets the doubled tensor back."""
    arr = np.full((4, 32), seq, np.float32)
    alice.send(Message(MsgType.FORWARD, JobId("good", 0, "alice", seq), {"act": arr}))
    back, _ = wait_for(alice, is_message(MsgType.ACTIVATIONS))
    assert back is not None and back.message.job.seq == seq
    np.testing.assert_array_equal(back.message.tensors["act"], arr * 2)


def test_fuzzed_server_answers_error_and_keeps_serving(secure_server, connect, fuzzer):
    """Every malformed message gets one ERROR reply with a wire code; alice is served throughout; nothing is delivered."""
    rng = random.Random(20261121)
    alice = connect(secure_server.endpoint, "alice")
    app = EchoApp(secure_server)
    wire_codes = {c for c in ErrorCode if c < 200}
    seen_codes: dict[int, int] = {}
    try:
        for i in range(N_MALFORMED):
            header, frames = _valid(rng)
            mutation = MUTATIONS[i % len(MUTATIONS)]
            fuzzer.send_multipart(mutation(rng, header, frames))
            assert fuzzer.poll(5000), f"no reply to message {i} ({mutation.__name__}): the server stopped answering"
            reply = decode(fuzzer.recv_multipart(), secure_server.config.limits)
            assert reply.type is MsgType.ERROR, f"{mutation.__name__} was accepted"
            code = reply.error_info()[0]
            assert code in wire_codes
            seen_codes[code] = seen_codes.get(code, 0) + 1
            if i % GOOD_EVERY == 0:
                good_round_trip(alice, i)
        good_round_trip(alice, N_MALFORMED)
    finally:
        app.close()
    assert [d for d in app.others if isinstance(d, Envelope) or d.peer == "mallory"] == []
    assert set(seen_codes) >= {ErrorCode.BAD_FRAMING, ErrorCode.BAD_HEADER, ErrorCode.BAD_VERSION,
                               ErrorCode.UNKNOWN_TYPE, ErrorCode.BAD_TENSOR, ErrorCode.TOO_LARGE}


def test_frame_over_the_size_cap_drops_only_that_connection(channels):
    """A frame larger than the cap is cut off by libzmq (maxmsgsize) before it is buffered; the server keeps serving."""
    config = ChannelConfig(**{**FAST.__dict__, "limits": Limits(max_message_bytes=2**16, max_header_bytes=2**12)})
    server = ServerChannel("tcp://127.0.0.1:*", insecure=True, config=config)
    channels.append(server)
    context = zmq.Context()
    flooder = context.socket(zmq.DEALER)
    try:
        flooder.linger = 0
        flooder.routing_id = b"flooder"
        flooder.connect(server.endpoint)
        flooder.send_multipart([b"\x80", bytes(2**20)])
        assert not flooder.poll(300)
    finally:
        flooder.close()
        context.term()
    peer = PeerChannel(server.endpoint, "good", insecure=True, config=config)
    channels.append(peer)
    peer.send(Message(MsgType.REPORT, JobId(client="good", seq=1), meta={"loss": 0.5}))
    got, seen = wait_for(server, is_message(MsgType.REPORT))
    assert got.peer == "good" and got.message.meta == {"loss": 0.5}
    assert not [d for d in seen if d.peer == "flooder"]
