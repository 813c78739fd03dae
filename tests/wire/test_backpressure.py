"""Bounded sends on real loopback sockets: a peer that never reads costs a server one send_timeout_s, not one per
message, and the well-behaved peers it serves meanwhile are not held up."""
from __future__ import annotations

import contextlib
import logging
import time
from typing import Iterator

import numpy as np
import pytest
import zmq

from edgepsl.wire import (ChannelConfig, Envelope, ErrorCode, JobId, Message, MsgType, PeerBackpressureError,
                          PeerUnreachableError, ServerChannel, ServerSecurity, encode, error_message)
from tests.wire.helpers import FAST, is_message, wait_for

SEND_TIMEOUT_S = 0.5
ROUNDS = 20
FILL_LIMIT = 400  # sends of 256 KiB; far more than a non-reader's queues and socket buffers hold


@contextlib.contextmanager
def non_reader(keys, endpoint: str) -> Iterator[zmq.Socket]:
    """A raw DEALER with mallory's allowed key and routing id that never reads (tiny receive buffers)."""
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    try:
        socket.linger = 0
        socket.rcvhwm = 1
        socket.rcvbuf = 4096
        mallory = keys.identity("mallory")
        socket.curve_secretkey, socket.curve_publickey = mallory.secret, mallory.public
        socket.curve_serverkey = keys.identity("server").public
        socket.routing_id = mallory.routing_id()
        socket.connect(endpoint)
        yield socket
    finally:
        socket.close()
        context.term()


def test_a_peer_that_never_reads_does_not_hold_up_the_server(keys, channels, connect, caplog):
    """mallory never reads. Once its queue is full, the server's sends to it fail at once with PeerBackpressureError
    (one log line), the channel's own refusals of mallory's bad messages are dropped, and alice's round trips, served
    in between, all complete: 20 refusals cost well under the 20 x send_timeout_s a blocking send would take."""
    config = ChannelConfig(**{**FAST.__dict__, "send_timeout_s": SEND_TIMEOUT_S})
    server = ServerChannel("tcp://127.0.0.1:*", security=ServerSecurity.from_store(keys, "server"), config=config)
    channels.append(server)
    alice = connect(server.endpoint, "alice")
    payload = np.zeros(2**16, np.float32)
    with non_reader(keys, server.endpoint) as mallory:
        mallory.send_multipart(encode(Message(MsgType.REPORT, JobId("run1", 0, "mallory", 0))))
        assert wait_for(server, lambda d: isinstance(d, Envelope) and d.peer == "mallory")[0] is not None
        filled = 0
        with pytest.raises(PeerBackpressureError, match="mallory is not reading"):
            for filled in range(FILL_LIMIT):
                server.send("mallory", Message(MsgType.STATE, JobId("run1", 0, "mallory", filled), {"w": payload}))
        assert filled < FILL_LIMIT - 1
        caplog.set_level(logging.WARNING, logger="edgepsl.wire")
        refused = served = 0
        start = time.monotonic()
        for seq in range(1, ROUNDS + 1):
            mallory.send_multipart(encode(Message(MsgType.FORWARD, JobId("run1", 0, "alice", seq))))  # IMPERSONATION
            mallory.send_multipart(encode(Message(MsgType.REPORT, JobId("run1", 0, "mallory", seq))))
            report, _ = wait_for(server, lambda d: is_message(MsgType.REPORT)(d) and d.peer == "mallory")
            assert report is not None
            with pytest.raises(PeerBackpressureError, match="still not reading"):
                server.send("mallory", error_message(ErrorCode.REJECTED, "not now", report.message.job))
            refused += 1
            alice.send(Message(MsgType.FORWARD, JobId("run1", 0, "alice", seq), {"act": payload[:16]}))
            request, _ = wait_for(server, is_message(MsgType.FORWARD))
            assert request is not None and request.peer == "alice"
            server.send("alice", Message(MsgType.ACTIVATIONS, request.message.job, {"out": payload[:16]}))
            if wait_for(alice, is_message(MsgType.ACTIVATIONS))[0] is not None:
                served += 1
        elapsed = time.monotonic() - start
    assert (refused, served) == (ROUNDS, ROUNDS)
    assert elapsed < ROUNDS * SEND_TIMEOUT_S / 2  # generous: blocking sends would take ROUNDS * SEND_TIMEOUT_S
    drops = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert drops and len(drops) < 2 * ROUNDS  # rate-limited per peer, not one line per dropped message


def test_the_send_timeout_error_is_a_peer_unreachable_error():
    """Callers that handle PeerUnreachableError keep working; those that need to know can catch the subclass."""
    assert issubclass(PeerBackpressureError, PeerUnreachableError)
    assert ChannelConfig().send_timeout_s == 1.0
