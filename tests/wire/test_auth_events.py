"""Failed CURVE handshakes on real loopback sockets: both sides name the cause within 5 s, once per cause."""
from __future__ import annotations

import logging
import time

from edgepsl.wire import Envelope, EventKind, PeerChannel, PeerEvent, PeerSecurity
from tests.wire.helpers import FAST, is_event, pending, wait_for

NAMED_WITHIN_S = 5.0  # the bound on naming an authentication failure
RETRIES_S = 5 * FAST.reconnect_max_s  # long enough for libzmq to retry a failed handshake several times

TEXT_REFUSED = "the server refused this client's key"
TEXT_WRONG_SERVER = "the server's key is not the expected one"


def auth_errors(caplog) -> list[str]:
    """The ERROR log lines of the wire logger so far."""
    return [r.getMessage() for r in caplog.records if r.name == "edgepsl.wire" and r.levelno == logging.ERROR]


def test_an_unlisted_client_key_is_named_on_both_sides_once(keys, secure_server, connect, caplog):
    """stranger's key is not allowed: the server reports the refused key, the client reports that the server refused
    its key, each as one AUTH_FAILED event and one ERROR log line however often libzmq retries the handshake."""
    caplog.set_level(logging.ERROR, logger="edgepsl.wire")
    deadline = time.monotonic() + NAMED_WITHIN_S
    stranger = connect(secure_server.endpoint, "stranger")
    client_event, _ = wait_for(stranger, is_event(EventKind.AUTH_FAILED), timeout=deadline - time.monotonic())
    server_event, _ = wait_for(secure_server, is_event(EventKind.AUTH_FAILED), timeout=deadline - time.monotonic())
    key = keys.identity("stranger").public.decode()
    assert isinstance(server_event, PeerEvent) and server_event.peer == key
    assert server_event.detail == f"refused a connection from an unknown key {key}"
    assert isinstance(client_event, PeerEvent) and client_event.peer == secure_server.endpoint
    assert client_event.detail.startswith(TEXT_REFUSED) and secure_server.endpoint in client_event.detail
    time.sleep(RETRIES_S)  # libzmq retries the handshake every reconnect interval meanwhile
    assert wait_for(stranger, is_event(EventKind.AUTH_FAILED), timeout=0.2)[0] is None
    assert wait_for(secure_server, is_event(EventKind.AUTH_FAILED), timeout=0.2)[0] is None
    errors = auth_errors(caplog)
    assert errors.count(server_event.detail) == 1 and errors.count(client_event.detail) == 1


def test_a_wrong_server_key_is_named_on_both_sides_once(keys, secure_server, channels, caplog):
    """alice expects another server key: the handshake fails, alice names the server's key as the cause, and the
    server, which never learns who it was (the key is inside the HELLO it cannot open), says that a peer did."""
    caplog.set_level(logging.ERROR, logger="edgepsl.wire")
    deadline = time.monotonic() + NAMED_WITHIN_S
    security = PeerSecurity.from_store(keys, "alice", keys.identity("stranger").public)
    alice = PeerChannel(secure_server.endpoint, "alice", security=security, config=FAST)
    channels.append(alice)
    client_event, _ = wait_for(alice, is_event(EventKind.AUTH_FAILED), timeout=deadline - time.monotonic())
    server_event, _ = wait_for(secure_server, is_event(EventKind.AUTH_FAILED), timeout=deadline - time.monotonic())
    assert isinstance(client_event, PeerEvent)
    assert client_event.detail.startswith(f"CURVE handshake with {secure_server.endpoint} failed: {TEXT_WRONG_SERVER}")
    assert isinstance(server_event, PeerEvent) and server_event.peer == ""
    assert server_event.detail == "a CURVE handshake failed: a peer did not encrypt for this server's key (its --server-key is wrong)"
    time.sleep(RETRIES_S)
    assert wait_for(alice, is_event(EventKind.AUTH_FAILED), timeout=0.2)[0] is None
    assert wait_for(secure_server, is_event(EventKind.AUTH_FAILED), timeout=0.2)[0] is None
    errors = auth_errors(caplog)
    assert errors.count(client_event.detail) == 1 and errors.count(server_event.detail) == 1
    assert not [d for d in pending(secure_server) if isinstance(d, Envelope)]


def test_a_handshake_that_succeeds_reports_nothing(secure_server, connect):
    """An allowed key and the right server key: no AUTH_FAILED on either side."""
    alice = connect(secure_server.endpoint, "alice")
    assert wait_for(alice, is_event(EventKind.JOINED))[0] is not None
    seen = wait_for(secure_server, is_event(EventKind.AUTH_FAILED), timeout=0.5)
    assert seen[0] is None and not [d for d in seen[1] if is_event(EventKind.AUTH_FAILED)(d)]

