"""The peer end: a DEALER that connects to one server with a stable identity and reconnects with backoff."""
from __future__ import annotations

import time
from typing import Any

import zmq

from edgepsl.wire.channel import ChannelBase, ChannelConfig, check_security, send_nowait
from edgepsl.wire.backend import decode
from edgepsl.wire.errors import PeerUnreachableError, ProtocolError
from edgepsl.wire.inbox import Delivery, PeerEvent
from edgepsl.wire.keys import check_name
from edgepsl.wire.liveness import Backoff, EventKind
from edgepsl.wire.logs import logger
from edgepsl.wire.messages import Message
from edgepsl.wire.monitor import HANDSHAKE_EVENTS, SocketMonitor, handshake_failure
from edgepsl.wire.security import PeerSecurity, apply_peer


class PeerChannel(ChannelBase):
    """Connect a DEALER to the server at `endpoint`; deliveries name the server by its endpoint string.

    `name` is this peer's routing id when insecure; with CURVE the routing id is derived from the key pair and
    the server names this peer after its allow-list entry (use the same name there).
    """

    def __init__(self, endpoint: str, name: str, *, security: PeerSecurity | None = None, insecure: bool = False,
                 config: ChannelConfig | None = None) -> None:
        check_security(security, insecure)
        self.name = check_name(name)
        super().__init__(config or ChannelConfig())
        self.endpoint = endpoint
        self._security = security
        self._backoff = Backoff(self.config.reconnect_min_s, self.config.reconnect_max_s)
        self._reconnect_at = 0.0
        self._since = 0.0
        try:
            self._connect(time.monotonic())
        except zmq.ZMQError as exc:
            raise self._fail_construction(exc, f"connect to {endpoint!r}") from None
        self._start()

    def send(self, message: Message, *, copy: bool = False) -> None:
        """Send to the server; raises PeerUnreachableError while reconnecting or if the server is not reading.

        With copy=False the tensors are handed to the transport as they are: do not modify them afterwards
        (pass copy=True for arrays you will update in place, such as weights).
        """
        self._send(self.endpoint, message, copy)

    # ---- I/O thread (and the constructor, before it starts) ----

    def _connect(self, now: float) -> None:
        socket = self._context.socket(zmq.DEALER)
        self._net = socket
        self._configure(socket)
        socket.routing_id = self._security.keypair.routing_id() if self._security is not None else self.name.encode()
        socket.reconnect_ivl = int(self.config.reconnect_min_s * 1000)
        socket.reconnect_ivl_max = int(self.config.reconnect_max_s * 1000)
        if self._security is not None:
            apply_peer(socket, self._security)
            self._monitor = SocketMonitor(socket, HANDSHAKE_EVENTS)
        socket.connect(self.endpoint)
        self._since = now
        self._liveness.expect(self.endpoint, now)
        self._send_now(self._heartbeat_frames())

    def _send_now(self, frames: list[Any], what: str = "") -> None:
        """Best effort: heartbeats and ERROR replies (`what` names them in the log line) are dropped while the
        queue is full."""
        if self._net is not None:
            try:
                send_nowait(self._net, frames)
            except zmq.Again:
                if what:
                    self._log.warning("refused:" + self.endpoint, "dropped %s to %s: its queue is full", what, self.endpoint)

    def _transmit(self, target: str, frames: list[Any], copy: bool) -> None:
        if self._net is None:
            raise PeerUnreachableError(f"not connected to {self.endpoint}: reconnecting; resend after the peer_back event")
        send_nowait(self._net, frames, copy)

    def _on_frames(self, frames: list[zmq.Frame], now: float) -> Delivery | None:
        try:
            message = decode(frames, self.config.limits)
        except ProtocolError as exc:
            self._send_now(self._refusal(self.endpoint, exc), "an ERROR reply")
            return None
        self._since = now
        self._backoff.reset()
        return self._accept(self.endpoint, message, now)

    def _check_handshakes(self) -> None:
        """Report failed CURVE handshakes (once per cause until one succeeds)."""
        assert self._monitor is not None
        for event, value in self._monitor.events():
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._auth_causes.clear()
                continue
            cause = handshake_failure(event, value, self.endpoint)
            if cause is not None:
                self._report_auth_failure(self.endpoint, cause)

    def _on_tick(self, now: float) -> None:
        if self._net is None:
            if now >= self._reconnect_at:
                self._connect(now)
            return
        if self._monitor is not None:
            self._check_handshakes()
        self._send_now(self._heartbeat_frames())
        if not self._inbox.has_room():
            self._liveness.hold(now)
            self._since = now
        for peer in self._liveness.expire(now):
            self._inbox.put(PeerEvent(EventKind.LOST, peer))
        if now - self._since > self.config.timeout_s:
            delay = self._backoff.delay()
            logger.info("no answer from %s for %.1f s; reconnecting in %.1f s", self.endpoint, now - self._since, delay)
            self._close_net(0)
            self._reconnect_at = now + delay
