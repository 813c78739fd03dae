"""The server end: a ROUTER that binds, authenticates peers by CURVE key and serves many of them."""
from __future__ import annotations

from collections import deque
from typing import Any, Mapping

import zmq

from edgepsl.wire.channel import ChannelBase, ChannelConfig, check_security, send_nowait
from edgepsl.wire.backend import decode
from edgepsl.wire.errors import ChannelConfigError, PeerUnreachableError, ProtocolError
from edgepsl.wire.inbox import Delivery, PeerEvent
from edgepsl.wire.liveness import EventKind
from edgepsl.wire.logs import logger
from edgepsl.wire.monitor import SocketMonitor, wrong_server_key
from edgepsl.wire.messages import SENDER_BOUND_TYPES, ErrorCode, Message, MsgType
from edgepsl.wire.security import AllowList, ServerSecurity, apply_server, start_authenticator


_CLOSED_ROUTES_KEPT = 8  # per peer: routes of closed connections a late message must not bind again


def _route_name(route: bytes) -> str:
    """The peer name of an insecure connection: its routing id if printable, else hex."""
    try:
        text = route.decode("ascii")
    except UnicodeDecodeError:
        return "0x" + route.hex()
    return text if text.isprintable() and text else "0x" + route.hex()


class ServerChannel(ChannelBase):
    """Bind a ROUTER at `endpoint` (tcp://HOST:PORT, port * for any); peers are named by their allowed key.

    recv() yields Envelope(peer, message) and PeerEvent; send(peer, message) addresses a peer by name.
    """

    def __init__(self, endpoint: str, *, security: ServerSecurity | None = None, insecure: bool = False,
                 config: ChannelConfig | None = None) -> None:
        check_security(security, insecure)
        self._allow = AllowList(security.allowed, self._key_refused) if security is not None else None
        super().__init__(config or ChannelConfig())
        self._auth = start_authenticator(self._context, self._allow) if self._allow is not None else None
        self._routes: dict[str, bytes] = {}
        self._owners: dict[bytes, str] = {}
        self._fds: dict[str, int] = {}  # the connection (file descriptor) each bound route was verified on
        self._open_fds: set[int] = set()  # connections the monitor reported accepted and not yet closed
        self._closed_routes: dict[str, deque[bytes]] = {}  # name -> routes of its last closed connections
        try:
            socket = self._context.socket(zmq.ROUTER)
            self._net = socket
            self._configure(socket)
            socket.router_mandatory = 1
            # Secure: no handover, so a connection presenting a routing id that a live connection holds does not
            # get that route and nothing addressed to its owner can reach it (docs/protocol.md section 7); secure
            # peers present a fresh routing id on every connection, so none of them needs a route still held.
            # Insecure peers are their routing id: handover lets one that reconnects take its route at once.
            socket.router_handover = 0 if security is not None else 1
            if security is not None:
                apply_server(socket, security)
                self._monitor = SocketMonitor(socket, int(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED
                                                          | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL))
            socket.bind(endpoint)
        except zmq.ZMQError as exc:
            if self._auth is not None:
                self._auth.stop()
            raise self._fail_construction(exc, f"bind {endpoint!r}") from None
        self.endpoint: str = socket.last_endpoint.decode()
        self._start()

    def send(self, peer: str, message: Message, *, copy: bool = False) -> None:
        """Send to peer `peer`; raises PeerUnreachableError if it is unknown, gone, or not reading.

        With copy=False the tensors are handed to the transport as they are: do not modify them afterwards
        (pass copy=True for arrays you will update in place, such as weights).
        """
        self._send(peer, message, copy)

    def set_allowed(self, allowed: Mapping[str, bytes]) -> None:
        """Replace the allow-list (peer name -> Z85 key); messages from revoked keys are refused from now on."""
        if self._allow is None:
            raise ChannelConfigError("an insecure server has no allow-list")
        self._allow.replace(allowed)

    def _stop_extras(self) -> None:
        if self._auth is not None:
            self._auth.stop()

    # ---- I/O thread ----

    def _send_now(self, route: bytes, frames: list[Any], what: str = "", peer: str = "") -> None:
        """Best effort, never waiting: heartbeats and ERROR replies (`what` names them in the log line, `peer` is
        the receiver) are dropped if the peer is gone or its queue is full."""
        assert self._net is not None
        try:
            send_nowait(self._net, [route, *frames])
        except zmq.ZMQError as exc:
            if exc.errno not in (zmq.EAGAIN, zmq.EHOSTUNREACH):
                raise
            if what:
                self._log.warning("full:" + peer, "dropped %s to %s: it is gone or not reading", what, peer)

    def _key_refused(self, key: str) -> None:
        """ZAP thread: a handshake with a key outside the allow-list was refused."""
        self._report_auth_failure(key, f"refused a connection from an unknown key {key}")

    def _check_connections(self) -> None:
        """Track open connections and unbind the routes whose connection closed (the peer's next message from an
        open connection binds it again; a connection that took over the freed routing id gets nothing addressed
        to the peer). Also report handshakes that failed because a peer encrypted for another server key."""
        assert self._monitor is not None
        for event, value in self._monitor.events():
            if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                cause = wrong_server_key(value)
                if cause is not None:
                    self._report_auth_failure("", cause)
            elif event == zmq.EVENT_ACCEPTED:
                self._open_fds.add(value)
            else:
                self._open_fds.discard(value)
                for name in [name for name, fd in self._fds.items() if fd == value]:
                    closed = self._closed_routes.setdefault(name, deque(maxlen=_CLOSED_ROUTES_KEPT))
                    closed.append(self._routes.get(name, b""))
                    self._unbind(name)

    def _unbind(self, name: str) -> None:
        self._owners.pop(self._routes.pop(name, b""), None)
        self._fds.pop(name, None)

    def _transmit(self, target: str, frames: list[Any], copy: bool) -> None:
        if self._monitor is not None and self._monitor.pending():
            self._check_connections()
        route = self._routes.get(target)
        if route is None:
            raise PeerUnreachableError(f"unknown peer {target!r}: it has not connected yet, said bye, or its connection closed")
        assert self._net is not None
        try:
            send_nowait(self._net, [route, *frames], copy)
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                raise PeerUnreachableError(f"peer {target!r} is disconnected") from None
            raise

    def _identify(self, route: bytes, frames: list[zmq.Frame]) -> tuple[str, bytes] | None:
        """The sender's name and the prefix its routing id must have: its allow-list entry by the key that
        authenticated the connection (the frame's User-Id), or, insecure, the name its routing id spells."""
        if self._allow is None:
            return _route_name(route), route
        return self._allow.lookup(frames[-1].get("User-Id"))

    def _on_frames(self, frames: list[zmq.Frame], now: float) -> Delivery | None:
        route = frames[0].bytes
        known = self._identify(route, frames) if len(frames) > 1 else None
        if known is None:
            label = "a peer whose key is not allowed" if len(frames) > 1 else _route_name(route)
            self._send_now(route, self._refusal(label, ProtocolError(ErrorCode.UNAUTHORIZED, "this key is not in the allow-list")),
                           "an ERROR reply", label)
            return None
        name, prefix = known
        try:
            message = decode(frames[1:], self.config.limits)
        except ProtocolError as exc:
            self._send_now(route, self._refusal(name, exc), "an ERROR reply", name)
            return None
        owner = self._owners.get(route)
        if not route.startswith(prefix) or (owner is not None and owner != name):
            if owner is not None and owner != name:
                # another connection holds the owner's routing id, so the owner's own connection is gone
                self._unbind(owner)
                reason = f"routing id of peer {owner!r} used by key of {name!r}"
            else:
                reason = f"this connection of {name!r} does not present the routing id of its key"
            self._send_now(route, self._refusal(name, self._impersonation(message, reason)), "an ERROR reply", name)
            return None
        if message.type in SENDER_BOUND_TYPES and message.job.client != name:
            self._send_now(route, self._refusal(name, self._impersonation(message, f"client {message.job.client!r} in a {message.type.value} from {name!r}")),
                           "an ERROR reply", name)
            return None
        if self._routes.get(name) != route and not self._bind_route(name, route, frames[-1]):
            logger.debug("a message of %s from a closed connection: delivered, its route not bound", name)
        item = self._accept(name, message, now)
        if message.type is MsgType.BYE:
            self._unbind(name)
        return item

    @staticmethod
    def _impersonation(message: Message, reason: str) -> ProtocolError:
        exc = ProtocolError(ErrorCode.IMPERSONATION, f"impersonation refused: {reason}")
        exc.job = message.job
        return exc

    def _bind_route(self, name: str, route: bytes, frame: zmq.Frame) -> bool:
        """Route messages for `name` to `route` from now on, over the connection `frame` came on (a reconnected
        peer comes back on a new connection); False if that connection closed since (a message read late), so
        the routing id may be free for another connection to take.

        A connection counts as open when the monitor reported its accept and no close since, and its route is not
        one of `name`'s closed connections (a file descriptor number is reused by later connections; a route, with
        its random part, is not).
        """
        if self._monitor is not None:
            self._check_connections()
            fd = frame.get(zmq.SRCFD)
            if fd not in self._open_fds or route in self._closed_routes.get(name, ()):
                return False
            self._fds[name] = fd
        old = self._routes.get(name)
        if old is not None:
            self._owners.pop(old, None)
        self._routes[name] = route
        self._owners[route] = name
        return True

    def _on_tick(self, now: float) -> None:
        if self._monitor is not None:
            self._check_connections()
        if not self._inbox.has_room():
            self._liveness.hold(now)
        beat = self._heartbeat_frames()
        for name in self._liveness.live():
            route = self._routes.get(name)
            if route is not None:
                self._send_now(route, beat)
        for name in self._liveness.expire(now):
            self._inbox.put(PeerEvent(EventKind.LOST, name))
