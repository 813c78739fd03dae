"""Channels on real loopback sockets: round trips, CURVE identity, unknown keys, impersonation, liveness, reconnects."""
from __future__ import annotations

import contextlib
import threading
import time

import numpy as np
import pytest
import zmq

from edgepsl.wire import (
    ChannelClosedError,
    ChannelConfig,
    ChannelConfigError,
    Envelope,
    ErrorCode,
    EventKind,
    JobId,
    Message,
    MsgType,
    PeerChannel,
    PeerEvent,
    PeerUnreachableError,
    ServerChannel,
    ServerSecurity,
    decode,
    encode,
)
from tests.wire.helpers import FAST, is_event, is_message, pending, wait_for


def forward(client: str, seq: int, arr: np.ndarray) -> Message:
    """A FORWARD job of `client`."""
    return Message(MsgType.FORWARD, JobId("run1", 0, client, seq), {"act": arr})


def joined(server: ServerChannel, name: str) -> None:
    """Wait until `name` has joined `server`."""
    event, _ = wait_for(server, lambda d: isinstance(d, PeerEvent) and d.kind is EventKind.JOINED and d.peer == name)
    assert event is not None, f"{name} never joined"


def test_secure_round_trip_names_the_authenticated_peer(secure_server, connect):
    """FORWARD reaches the server tagged with the allow-list name; the reply comes back intact."""
    alice = connect(secure_server.endpoint, "alice")
    arr = np.random.default_rng(0).standard_normal((8, 16, 4), dtype=np.float32)
    alice.send(forward("alice", 1, arr))
    got, _ = wait_for(secure_server, is_message(MsgType.FORWARD))
    assert got.peer == "alice" and got.message.job == JobId("run1", 0, "alice", 1)
    np.testing.assert_array_equal(got.message.tensors["act"], arr)
    secure_server.send("alice", Message(MsgType.ACTIVATIONS, got.message.job, {"act": got.message.tensors["act"] + 1}))
    back, _ = wait_for(alice, is_message(MsgType.ACTIVATIONS))
    assert back.peer == secure_server.endpoint
    np.testing.assert_array_equal(back.message.tensors["act"], arr + 1)


def test_float16_channel_halves_activations(keys, channels, connect):
    """With float16 on both ends activations arrive as float32 at float16 precision; state stays exact."""
    config = ChannelConfig(**{**FAST.__dict__, "float16": True})
    server = ServerChannel("tcp://127.0.0.1:*", security=ServerSecurity.from_store(keys, "server"), config=config)
    channels.append(server)
    alice = connect(server.endpoint, "alice", float16=True)
    arr = np.linspace(-3, 3, 1000, dtype=np.float32)
    alice.send(forward("alice", 1, arr))
    alice.send(Message(MsgType.STATE, JobId("run1", 0, "alice", 2), {"w": arr}))
    fwd, _ = wait_for(server, is_message(MsgType.FORWARD))
    state, _ = wait_for(server, is_message(MsgType.STATE))
    assert fwd.message.tensors["act"].dtype == np.float32
    np.testing.assert_array_equal(fwd.message.tensors["act"], arr.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(state.message.tensors["w"], arr)


def test_resent_job_is_delivered_once(secure_server, connect):
    """The same (type, run, round, client, seq) sent twice is delivered once, then reported as a duplicate."""
    alice = connect(secure_server.endpoint, "alice")
    arr = np.ones(4, np.float32)
    for _ in range(2):
        alice.send(forward("alice", 7, arr))
    alice.send(forward("alice", 8, arr))
    first, _ = wait_for(secure_server, is_message(MsgType.FORWARD))
    dup, between = wait_for(secure_server, is_event(EventKind.DUPLICATE))
    second, more = wait_for(secure_server, is_message(MsgType.FORWARD))
    assert (first.message.job.seq, dup.job.seq, second.message.job.seq) == (7, 7, 8)
    assert not [d for d in between + more if isinstance(d, Envelope)]


def test_security_is_on_unless_explicitly_opted_out():
    """No security and no insecure=True is a configuration error naming the opt-out."""
    with pytest.raises(ChannelConfigError, match="insecure=True"):
        ServerChannel("tcp://127.0.0.1:*")
    with pytest.raises(ChannelConfigError, match="insecure=True"):
        PeerChannel("tcp://127.0.0.1:1", "a")


def test_insecure_opt_out_names_peers_by_routing_id(channels):
    """--insecure: plaintext, and the peer's chosen name is its identity."""
    server = ServerChannel("tcp://127.0.0.1:*", insecure=True, config=FAST)
    channels.append(server)
    peer = PeerChannel(server.endpoint, "client-3", insecure=True, config=FAST)
    channels.append(peer)
    peer.send(Message(MsgType.REGISTER, JobId(client="client-3"), meta={"role": "client"}))
    got, _ = wait_for(server, is_message(MsgType.REGISTER))
    assert got.peer == "client-3" and got.message.meta == {"role": "client"}


def test_first_message_of_a_peer_comes_after_its_joined_event(channels):
    """A message that is a peer's first contact, read by the waiting recv() itself, follows its peer_joined."""
    server = ServerChannel("tcp://127.0.0.1:*", insecure=True, config=ChannelConfig(**{**FAST.__dict__, "heartbeat_s": 5.0}))
    channels.append(server)
    got: list = []
    reader = threading.Thread(target=lambda: got.extend(item for item in (server.recv(timeout=5), server.recv(timeout=5)) if item))
    reader.start()
    time.sleep(0.1)  # the reader waits on the socket before anything arrives
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.routing_id = b"bare"
    dealer.connect(server.endpoint)
    dealer.send_multipart(encode(Message(MsgType.REPORT, JobId("run1", 0, "bare", 1))))
    reader.join(timeout=6)
    dealer.close(linger=0)
    context.term()
    assert [type(item) for item in got] == [PeerEvent, Envelope]
    assert got[0].kind is EventKind.JOINED and got[1].message.type is MsgType.REPORT and got[1].peer == "bare"


def test_bad_endpoint_is_a_clear_error():
    """Binding an unparsable endpoint raises ChannelConfigError naming it."""
    with pytest.raises(ChannelConfigError, match="nowhere"):
        ServerChannel("nowhere://x", insecure=True)


def test_unknown_key_gets_nothing_processed(secure_server, connect):
    """A key outside the allow-list never completes the handshake: nothing reaches the server, alice is unaffected."""
    stranger = connect(secure_server.endpoint, "stranger", send_timeout_s=0.2)
    for seq in range(3):
        with contextlib.suppress(PeerUnreachableError):  # the handshake never completes, so its queue fills up
            stranger.send(Message(MsgType.REGISTER, JobId(client="stranger", seq=seq)))
    alice = connect(secure_server.endpoint, "alice")
    alice.send(forward("alice", 1, np.zeros(3, np.float32)))
    got, seen = wait_for(secure_server, is_message(MsgType.FORWARD))
    assert got.peer == "alice"
    extra, more = wait_for(secure_server, lambda d: True, timeout=1.0)
    delivered = seen + more + ([extra] if extra else [])
    assert {d.peer for d in delivered if not is_event(EventKind.AUTH_FAILED)(d)} <= {"alice"}
    assert not [d for d in pending(stranger) if isinstance(d, Envelope)]


def test_claiming_another_client_in_the_header_is_refused(secure_server, connect):
    """mallory's FORWARD for client alice is answered IMPERSONATION and never delivered."""
    mallory = connect(secure_server.endpoint, "mallory")
    mallory.send(forward("alice", 1, np.zeros(2, np.float32)))
    error, _ = wait_for(mallory, is_message(MsgType.ERROR))
    assert error.message.error_info()[0] == ErrorCode.IMPERSONATION
    assert error.message.job == JobId("run1", 0, "alice", 1)
    delivered, _ = wait_for(secure_server, is_message(MsgType.FORWARD), timeout=0.5)
    assert delivered is None


@contextlib.contextmanager
def intruder_socket(keys, endpoint: str, routing_id: bytes):
    """A raw DEALER with mallory's allowed key presenting `routing_id`."""
    context = zmq.Context()
    intruder = context.socket(zmq.DEALER)
    try:
        intruder.linger = 0
        mallory = keys.identity("mallory")
        intruder.curve_secretkey, intruder.curve_publickey = mallory.secret, mallory.public
        intruder.curve_serverkey = keys.identity("server").public
        intruder.routing_id = routing_id
        intruder.connect(endpoint)
        yield intruder
    finally:
        intruder.close()
        context.term()


def received(socket: zmq.Socket, limits, timeout_ms: int = 500) -> list[Message]:
    """Every message a raw socket receives within timeout_ms of the last one (at most 100)."""
    got = []
    while len(got) < 100 and socket.poll(timeout_ms):
        got.append(decode(socket.recv_multipart(), limits))
    return got


def route_of(peer: PeerChannel) -> bytes:
    """The routing id a peer channel's current connection presents (what an intruder would need to learn)."""
    return peer._net.getsockopt(zmq.ROUTING_ID)


def serve_alice(server: ServerChannel, alice: PeerChannel, rounds: int) -> list[int]:
    """Send `rounds` ACTIVATIONS to alice; the seqs she receives."""
    for seq in range(rounds):
        server.send("alice", Message(MsgType.ACTIVATIONS, JobId("run1", 0, "alice", seq)))
    got = [wait_for(alice, is_message(MsgType.ACTIVATIONS))[0] for _ in range(rounds)]
    return [item.message.job.seq for item in got if item is not None]


def test_a_routing_id_of_another_key_is_refused(keys, secure_server, connect):
    """mallory's socket presenting a routing id with alice's key prefix is refused IMPERSONATION; alice's traffic
    keeps reaching alice only."""
    alice = connect(secure_server.endpoint, "alice")
    joined(secure_server, "alice")
    with intruder_socket(keys, secure_server.endpoint, keys.identity("alice").routing_id()) as intruder:
        intruder.send_multipart(encode(forward("mallory", 2, np.zeros(2, np.float32))))
        assert intruder.poll(5000), "no ERROR reply to the intruder"
        reply = decode(intruder.recv_multipart(), secure_server.config.limits)
        assert reply.type is MsgType.ERROR and reply.error_info()[0] == ErrorCode.IMPERSONATION
        assert serve_alice(secure_server, alice, 10) == list(range(10))
        assert received(intruder, secure_server.config.limits) == []
    assert wait_for(secure_server, is_message(MsgType.FORWARD), timeout=0.5)[0] is None


def test_a_live_peers_exact_routing_id_gets_none_of_its_traffic(keys, secure_server, connect):
    """Even with alice's exact routing id (learned somehow), mallory's socket gets nothing while alice is connected:
    the server runs without ROUTER_HANDOVER, so the duplicate is ignored and nothing it sends is processed."""
    alice = connect(secure_server.endpoint, "alice")
    joined(secure_server, "alice")
    with intruder_socket(keys, secure_server.endpoint, route_of(alice)) as intruder:
        intruder.send_multipart(encode(forward("mallory", 2, np.zeros(2, np.float32))))
        time.sleep(0.3)  # the intruder's handshake completes long before: its connection is up while alice is served
        assert serve_alice(secure_server, alice, 10) == list(range(10))
        assert received(intruder, secure_server.config.limits) == []
    assert wait_for(secure_server, is_message(MsgType.FORWARD), timeout=0.5)[0] is None


def test_a_routing_id_freed_by_its_owner_is_refused_to_another_key(keys, secure_server, connect):
    """After alice's connection closes, mallory's socket presenting her old routing id is refused IMPERSONATION and
    sending to alice raises PeerUnreachableError instead of reaching it; alice's next connection is served at once."""
    alice = connect(secure_server.endpoint, "alice")
    joined(secure_server, "alice")
    old_route = route_of(alice)
    alice.close()
    deadline = time.monotonic() + 5
    with pytest.raises(PeerUnreachableError, match="connection closed"):
        while time.monotonic() < deadline:
            secure_server.send("alice", Message(MsgType.WELCOME))
            time.sleep(0.05)
    time.sleep(0.5)  # libzmq frees the route once the server socket has processed the end of alice's pipe
    with intruder_socket(keys, secure_server.endpoint, old_route) as intruder:
        intruder.send_multipart(encode(Message(MsgType.REPORT, JobId("run1", 0, "mallory", 3))))
        assert intruder.poll(5000), "no ERROR reply to the intruder"
        reply = decode(intruder.recv_multipart(), secure_server.config.limits)
        assert reply.type is MsgType.ERROR and reply.error_info()[0] == ErrorCode.IMPERSONATION
        with pytest.raises(PeerUnreachableError):
            secure_server.send("alice", Message(MsgType.WELCOME))
        assert received(intruder, secure_server.config.limits) == []
        assert wait_for(secure_server, is_message(MsgType.REPORT), timeout=0.5)[0] is None
        back = connect(secure_server.endpoint, "alice")
        back.send(forward("alice", 1, np.zeros(2, np.float32)))
        served, _ = wait_for(secure_server, is_message(MsgType.FORWARD))
        assert served is not None and served.peer == "alice"
        secure_server.send("alice", Message(MsgType.ACTIVATIONS, served.message.job))
        assert wait_for(back, is_message(MsgType.ACTIVATIONS))[0] is not None
        assert received(intruder, secure_server.config.limits) == []


def test_a_peer_reconnecting_at_once_is_served_at_once(keys, secure_server, connect):
    """A peer that closes and reconnects immediately, again and again, is served on every new connection: each one
    presents a fresh routing id, so none waits for the server to let go of the previous one."""
    for seq in range(20):
        alice = connect(secure_server.endpoint, "alice")
        alice.send(forward("alice", seq, np.zeros(2, np.float32)))
        request, _ = wait_for(secure_server, is_message(MsgType.FORWARD))
        assert request is not None and request.message.job.seq == seq
        secure_server.send("alice", Message(MsgType.ACTIVATIONS, request.message.job))
        assert wait_for(alice, is_message(MsgType.ACTIVATIONS))[0] is not None
        alice.close()


def test_sending_to_unknown_or_vanished_peer_raises(secure_server, connect):
    """ROUTER_MANDATORY: no silent drop for a peer never seen, or one that disconnected."""
    with pytest.raises(PeerUnreachableError, match="unknown peer 'bob'"):
        secure_server.send("bob", Message(MsgType.WELCOME))
    bob = connect(secure_server.endpoint, "bob")
    joined(secure_server, "bob")
    bob.close()
    deadline = time.monotonic() + 5
    with pytest.raises(PeerUnreachableError, match="disconnected|connection closed"):
        while time.monotonic() < deadline:
            secure_server.send("bob", Message(MsgType.WELCOME))
            time.sleep(0.05)


def test_bye_forgets_the_peer(secure_server, connect):
    """After BYE the peer is delivered its BYE, then is no longer addressable and never reported lost."""
    bob = connect(secure_server.endpoint, "bob")
    bob.send(Message(MsgType.BYE, JobId(client="bob")))
    assert wait_for(secure_server, is_message(MsgType.BYE))[0].peer == "bob"
    with pytest.raises(PeerUnreachableError):
        secure_server.send("bob", Message(MsgType.WELCOME))
    bob.close()
    assert wait_for(secure_server, is_event(EventKind.LOST), timeout=1.0)[0] is None


def test_heartbeats_keep_peers_alive_while_the_user_thread_computes(secure_server, connect):
    """A busy user thread (holding the GIL in Python) for many heartbeat intervals causes no LOST on either side."""
    alice = connect(secure_server.endpoint, "alice")
    joined(secure_server, "alice")
    end = time.monotonic() + 3 * FAST.timeout_s
    total = 0
    while time.monotonic() < end:
        total += sum(i * i for i in range(1000))
    lost = [d for ch in (secure_server, alice) for d in pending(ch) if isinstance(d, PeerEvent) and d.kind is EventKind.LOST]
    assert total > 0 and lost == []


def test_peer_lost_then_back_after_server_restart(keys, channels, connect):
    """The server goes away (LOST), comes back on the same port (BACK), and serves the peer again."""
    security = ServerSecurity.from_store(keys, "server")
    first = ServerChannel("tcp://127.0.0.1:*", security=security, config=FAST)
    endpoint = first.endpoint
    alice = connect(endpoint, "alice")
    assert wait_for(alice, is_event(EventKind.JOINED))[0] is not None
    first.close()
    assert wait_for(alice, is_event(EventKind.LOST))[0] is not None
    second = ServerChannel(endpoint, security=security, config=FAST)
    channels.append(second)
    assert wait_for(alice, is_event(EventKind.BACK), timeout=10)[0] is not None
    alice.send(forward("alice", 1, np.arange(3, dtype=np.float32)))
    got, _ = wait_for(second, is_message(MsgType.FORWARD))
    assert got.peer == "alice"
    second.send("alice", Message(MsgType.ACTIVATIONS, got.message.job, {"act": got.message.tensors["act"]}))
    assert wait_for(alice, is_message(MsgType.ACTIVATIONS))[0] is not None


def test_server_reports_a_silent_peer_lost_and_back(secure_server, connect, keys):
    """A peer whose process stops answering is LOST at the server; its return is BACK."""
    bob = connect(secure_server.endpoint, "bob")
    joined(secure_server, "bob")
    bob.close()
    assert wait_for(secure_server, is_event(EventKind.LOST))[0].peer == "bob"
    connect(secure_server.endpoint, "bob")
    assert wait_for(secure_server, is_event(EventKind.BACK))[0].peer == "bob"


def test_queues_are_bounded_when_the_receiver_stops_reading(secure_server, connect):
    """With a server that never calls recv(), sends stop being accepted after a bounded number of messages."""
    alice = connect(secure_server.endpoint, "alice", send_timeout_s=0.3)
    payload = np.zeros(2**18, np.float32)
    accepted = 0
    with pytest.raises(PeerUnreachableError, match="not reading"):
        for seq in range(200):
            alice.send(forward("alice", seq, payload))
            accepted += 1
    assert accepted < 200


def test_revoked_key_is_refused_on_its_open_connection(keys, secure_server, connect):
    """set_allowed() takes effect at once: the revoked peer's next message is answered UNAUTHORIZED."""
    bob = connect(secure_server.endpoint, "bob")
    joined(secure_server, "bob")
    keys.revoke("bob")
    secure_server.set_allowed(keys.allowed())
    bob.send(Message(MsgType.REPORT, JobId(client="bob", seq=1)))
    error, _ = wait_for(bob, is_message(MsgType.ERROR))
    assert error.message.error_info()[0] == ErrorCode.UNAUTHORIZED
    assert wait_for(secure_server, is_message(MsgType.REPORT), timeout=0.5)[0] is None


def test_a_sender_thread_is_not_held_up_by_a_waiting_reader(secure_server, connect):
    """While one thread waits in recv() (holding the socket), another thread's send goes out at once."""
    alice = connect(secure_server.endpoint, "alice", heartbeat_s=2.0)
    joined(secure_server, "alice")
    got: list = []
    reader = threading.Thread(target=lambda: got.append(wait_for(alice, is_message(MsgType.ACTIVATIONS), timeout=5.0)[0]))
    reader.start()
    time.sleep(0.1)
    start = time.monotonic()
    alice.send(forward("alice", 1, np.ones(3, np.float32)))
    sent_after = time.monotonic() - start
    request, _ = wait_for(secure_server, is_message(MsgType.FORWARD))
    secure_server.send("alice", Message(MsgType.ACTIVATIONS, request.message.job))
    reader.join(timeout=6)
    assert sent_after < 1.0, "the send waited for the reader's poll to time out"
    assert got and got[0] is not None and got[0].message.job.seq == 1


def test_close_wakes_a_waiting_reader_and_refuses_further_use(channels):
    """close() from another thread ends a blocked recv() with ChannelClosedError; later calls raise too."""
    server = ServerChannel("tcp://127.0.0.1:*", insecure=True, config=FAST)
    outcome: list = []

    def reader() -> None:
        try:
            server.recv(timeout=10)
        except ChannelClosedError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.1)
    server.close()
    thread.join(timeout=5)
    assert not thread.is_alive() and len(outcome) == 1
    with pytest.raises(ChannelClosedError):
        server.recv(0)
    with pytest.raises(ChannelClosedError):
        server.send("x", Message(MsgType.WELCOME))
    server.close()


def test_recv_zero_still_reads_what_has_arrived(channels):
    """recv(0) does not wait but still picks up a message already on the socket."""
    server = ServerChannel("tcp://127.0.0.1:*", insecure=True, config=ChannelConfig(**{**FAST.__dict__, "heartbeat_s": 5.0}))
    channels.append(server)
    peer = PeerChannel(server.endpoint, "p", insecure=True, config=FAST)
    channels.append(peer)
    peer.send(Message(MsgType.REPORT, JobId(client="p", seq=1)))
    deadline = time.monotonic() + 5
    seen = []
    while time.monotonic() < deadline and not any(isinstance(d, Envelope) for d in seen):
        item = server.recv(0)
        if item is None:
            time.sleep(0.01)
        else:
            seen.append(item)
    assert any(isinstance(d, Envelope) and d.message.type is MsgType.REPORT for d in seen)


def test_a_slow_consumer_loses_nothing_and_blames_no_one(secure_server, connect):
    """The server application stops reading with its inbox full: no peer is declared lost, and every message
    arrives, in order, once it reads again."""
    alice = connect(secure_server.endpoint, "alice")
    joined(secure_server, "alice")
    for seq in range(12):
        alice.send(Message(MsgType.REPORT, JobId("run1", 0, "alice", seq), meta={"n": seq}))
    time.sleep(3 * FAST.timeout_s)
    reports, events = [], []
    deadline = time.monotonic() + 5
    while len(reports) < 12 and time.monotonic() < deadline:
        item = secure_server.recv(timeout=0.5)
        if isinstance(item, Envelope):
            reports.append(item.message.meta["n"])
        elif item is not None:
            events.append(item.kind)
    assert reports == list(range(12))
    assert EventKind.LOST not in events
    assert not [d for d in pending(alice) if isinstance(d, PeerEvent) and d.kind is EventKind.LOST]
