"""The server end: a ROUTER that binds, authenticates peers by CURVE key and serves many of them."""
from __future__ import annotations

from typing import Any, Mapping

import zmq

from edgepsl.wire.channel import ChannelBase, ChannelConfig, check_security, send_nowait
from edgepsl.wire.backend import decode
from edgepsl.wire.errors import ChannelConfigError, PeerUnreachableError, ProtocolError
from edgepsl.wire.inbox import Delivery, PeerEvent
from edgepsl.wire.liveness import EventKind
from edgepsl.wire.messages import SENDER_BOUND_TYPES, ErrorCode, Message, MsgType
from edgepsl.wire.security import AllowList, ServerSecurity, apply_server, start_authenticator


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
        self._allow = AllowList(security.allowed) if security is not None else None
        super().__init__(config or ChannelConfig())
        self._auth = start_authenticator(self._context, self._allow) if self._allow is not None else None
        self._routes: dict[str, bytes] = {}
        self._owners: dict[bytes, str] = {}
        try:
            socket = self._context.socket(zmq.ROUTER)
            self._net = socket
            self._configure(socket)
            socket.router_mandatory = 1
            socket.router_handover = 1
            if security is not None:
                apply_server(socket, security)
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

    def _send_now(self, route: bytes, frames: list[Any]) -> None:
        """Best effort: heartbeats and ERROR replies are dropped if the peer is gone or full."""
        assert self._net is not None
        try:
            send_nowait(self._net, [route, *frames])
        except zmq.ZMQError as exc:
            if exc.errno not in (zmq.EAGAIN, zmq.EHOSTUNREACH):
                raise

    def _transmit(self, target: str, frames: list[Any], copy: bool) -> None:
        route = self._routes.get(target)
        if route is None:
            raise PeerUnreachableError(f"unknown peer {target!r}: it has not connected yet, or said bye")
        assert self._net is not None
        try:
            send_nowait(self._net, [route, *frames], copy)
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                raise PeerUnreachableError(f"peer {target!r} is disconnected") from None
            raise

    def _identify(self, route: bytes, frames: list[zmq.Frame]) -> str | None:
        if self._allow is None:
            return _route_name(route)
        return self._allow.name_of(frames[-1].get("User-Id"))

    def _on_frames(self, frames: list[zmq.Frame], now: float) -> Delivery | None:
        route = frames[0].bytes
        name = self._identify(route, frames) if len(frames) > 1 else None
        if name is None:
            label = "a peer whose key is not allowed" if len(frames) > 1 else _route_name(route)
            self._send_now(route, self._refusal(label, ProtocolError(ErrorCode.UNAUTHORIZED, "this key is not in the allow-list")))
            return None
        try:
            message = decode(frames[1:], self.config.limits)
        except ProtocolError as exc:
            self._send_now(route, self._refusal(name, exc))
            return None
        owner = self._owners.get(route)
        if owner is not None and owner != name:
            self._send_now(route, self._refusal(name, self._impersonation(message, f"routing id of peer {owner!r} used by key of {name!r}")))
            return None
        if message.type in SENDER_BOUND_TYPES and message.job.client != name:
            self._send_now(route, self._refusal(name, self._impersonation(message, f"client {message.job.client!r} in a {message.type.value} from {name!r}")))
            return None
        if self._routes.get(name) != route:
            self._bind_route(name, route)
        item = self._accept(name, message, now)
        if message.type is MsgType.BYE:
            self._owners.pop(self._routes.pop(name, b""), None)
        return item

    @staticmethod
    def _impersonation(message: Message, reason: str) -> ProtocolError:
        exc = ProtocolError(ErrorCode.IMPERSONATION, f"impersonation refused: {reason}")
        exc.job = message.job
        return exc

    def _bind_route(self, name: str, route: bytes) -> None:
        """Route messages for `name` to `route` from now on (a reconnected peer comes back on a new route)."""
        old = self._routes.get(name)
        if old is not None:
            self._owners.pop(old, None)
        self._routes[name] = route
        self._owners[route] = name

    def _on_tick(self, now: float) -> None:
        if not self._inbox.has_room():
            self._liveness.hold(now)
        beat = self._heartbeat_frames()
        for name in self._liveness.live():
            route = self._routes.get(name)
            if route is not None:
                self._send_now(route, beat)
        for name in self._liveness.expire(now):
            self._inbox.put(PeerEvent(EventKind.LOST, name))
