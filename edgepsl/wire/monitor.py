"""libzmq's socket monitor on a channel's network socket: handshake outcomes and disconnects, and what they mean."""
from __future__ import annotations

import zmq
from zmq.backend import zmq_poll
from zmq.utils.monitor import parse_monitor_message

HANDSHAKE_EVENTS = int(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                       | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
_POLLIN = int(zmq.POLLIN)
_NOWAIT = int(zmq.NOBLOCK)


class SocketMonitor:
    """The monitor of one socket: an inproc PAIR that libzmq writes the chosen events to, read without waiting."""

    def __init__(self, socket: zmq.Socket, events: int) -> None:
        self._owner = socket
        self._pair = socket.get_monitor_socket(events)
        self._pair.linger = 0
        self._poll_items = [(self._pair, _POLLIN)]

    def pending(self) -> bool:
        """True when an event waits: a zero-timeout zmq_poll, which also processes the pair's pending commands
        (about half the cost of reading ZMQ_EVENTS through pyzmq; this runs before every send of a server)."""
        return bool(zmq_poll(self._poll_items, 0))

    def events(self) -> list[tuple[int, int]]:
        """Every event that waits, as (event, value), oldest first."""
        found = []
        while True:
            try:
                parts = self._pair.recv_multipart(_NOWAIT)
            except zmq.Again:
                return found
            event = parse_monitor_message(parts)
            found.append((int(event["event"]), int(event["value"])))

    def close(self) -> None:
        """Stop monitoring and close the pair (before the socket's context is terminated)."""
        try:
            self._owner.disable_monitor()
        except zmq.ZMQError:
            pass  # the socket is already closed, which stopped its monitor
        self._pair.close(0)


def wrong_server_key(value: int) -> str | None:
    """What a server's failed handshake means when the peer encrypted its HELLO for another server key (libzmq's
    EVENT_HANDSHAKE_FAILED_PROTOCOL with ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC), else None. The server never learns
    that peer's key: it is inside the HELLO it could not open."""
    if value != zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        return None
    return "a CURVE handshake failed: a peer did not encrypt for this server's key (its --server-key is wrong)"


KEY_REFUSED = "the server refused this client's key"  # how a peer's AUTH_FAILED detail starts when its key was refused


def handshake_failure(event: int, value: int, endpoint: str) -> str | None:
    """What a connecting peer's failed CURVE handshake with `endpoint` means, or None for any other event.

    libzmq tells the two causes apart: a server whose ZAP handler refuses this client's key answers with status 400
    (EVENT_HANDSHAKE_FAILED_AUTH); a server that cannot open this client's HELLO, because the client encrypted it for
    another server key, hangs up without a reason (EVENT_HANDSHAKE_FAILED_NO_DETAIL).
    """
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return f"{KEY_REFUSED} ({endpoint}; ZAP status {value})"
    if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        return (f"CURVE handshake with {endpoint} failed: the server's key is not the expected one "
                f"(the server hung up during the handshake without a reason; check --server-key)")
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        return f"CURVE handshake with {endpoint} failed: protocol error {value:#x} (is the server a CURVE server?)"
    return None
