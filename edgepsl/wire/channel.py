"""The machinery shared by both channel ends: configuration, the I/O thread, its command pipe, and the inbox."""
from __future__ import annotations

import abc
import itertools
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import zmq

from edgepsl.wire.codec import encode
from edgepsl.wire.dedupe import DuplicateFilter
from edgepsl.wire.errors import ChannelClosedError, ChannelConfigError, PeerUnreachableError, ProtocolError
from edgepsl.wire.inbox import Delivery, Envelope, Inbox, PeerEvent
from edgepsl.wire.liveness import EventKind, Liveness
from edgepsl.wire.logs import RateLimitedLog, logger
from edgepsl.wire.messages import UNTRACKED_TYPES, ErrorCode, JobId, Message, MsgType, error_message, heartbeat_message
from edgepsl.wire.validate import Limits

_DRAIN_BATCH = 64
_PENDING_POLL_S = 0.002
_pipe_ids = itertools.count()


@dataclass(frozen=True)
class ChannelConfig:
    """Tuning of a channel end; tests shorten the heartbeat, boards keep `hwm` and `inbox` small."""

    heartbeat_s: float = 1.0
    liveness: int = 3
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 32.0
    hwm: int = 4
    inbox: int = 4
    send_timeout_s: float = 30.0
    linger_s: float = 1.0
    dedupe_window: int = 4096
    float16: bool = False
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        for name in ("heartbeat_s", "liveness", "reconnect_min_s", "reconnect_max_s", "hwm", "inbox", "send_timeout_s", "dedupe_window"):
            if not getattr(self, name) > 0:
                raise ChannelConfigError(f"ChannelConfig.{name} must be positive, got {getattr(self, name)!r}")
        if self.linger_s < 0:
            raise ChannelConfigError(f"ChannelConfig.linger_s must be >= 0, got {self.linger_s!r}")

    @property
    def timeout_s(self) -> float:
        """Silence after which a peer is declared lost: heartbeat_s * liveness."""
        return self.heartbeat_s * self.liveness


def send_nowait(socket: zmq.Socket, frames: Sequence[Any]) -> None:
    """Queue a multipart message without blocking; raise zmq.Again only if the queue is really full.

    libzmq learns that the peer drained its queue through commands it processes at most once a millisecond
    on send; reading ZMQ_EVENTS processes them at once, so a queue emptied a moment ago is seen as empty.
    """
    try:
        socket.send_multipart(frames, zmq.NOBLOCK, copy=False)
    except zmq.Again:
        socket.getsockopt(zmq.EVENTS)
        socket.send_multipart(frames, zmq.NOBLOCK, copy=False)


def check_security(security: object, insecure: bool) -> None:
    """Refuse a channel with neither security nor the explicit insecure opt-out, or with both."""
    if security is None and not insecure:
        raise ChannelConfigError("channels are encrypted and authenticated by default: pass a security setting "
                                 "(keys from `edgepsl keys`), or insecure=True (--insecure) for a local run")
    if security is not None and insecure:
        raise ChannelConfigError("pass either a security setting or insecure=True, not both")


class ChannelBase(abc.ABC):
    """One network socket owned by a private I/O thread; user threads talk to it through a command pipe."""

    def __init__(self, config: ChannelConfig) -> None:
        self.config = config
        self._context = zmq.Context()
        self._inbox = Inbox(config.inbox)
        self._log = RateLimitedLog()
        self._dedupe = DuplicateFilter(config.dedupe_window)
        self._liveness = Liveness(config.timeout_s)
        self._net: zmq.Socket | None = None
        self._pending: tuple[bytes, list[Any], float] | None = None
        self._closing = False
        self._closed = False
        self._lock = threading.Lock()
        address = f"inproc://edgepsl-wire-{next(_pipe_ids)}"
        self._user_pipe = self._context.socket(zmq.PAIR)
        self._user_pipe.bind(address)
        self._io_pipe = self._context.socket(zmq.PAIR)
        self._io_pipe.connect(address)
        self._thread = threading.Thread(target=self._run, name=f"edgepsl-wire-io-{address[-4:]}", daemon=True)

    # ---- socket helpers (I/O thread, or the constructor before the thread starts) ----

    def _configure(self, socket: zmq.Socket) -> None:
        socket.sndhwm = self.config.hwm
        socket.rcvhwm = self.config.hwm
        socket.linger = int(self.config.linger_s * 1000)
        socket.maxmsgsize = self.config.limits.max_message_bytes + self.config.limits.max_header_bytes

    def _close_net(self, linger_s: float | None = None) -> None:
        if self._net is not None:
            self._net.close(linger=None if linger_s is None else int(linger_s * 1000))
            self._net = None

    def _fail_construction(self, exc: Exception, what: str) -> ChannelConfigError:
        self._close_net(0)
        self._user_pipe.close(linger=0)
        self._io_pipe.close(linger=0)
        self._context.term()
        return ChannelConfigError(f"cannot {what}: {exc}")

    # ---- user-thread API ----

    def recv(self, timeout: float | None = None) -> Delivery | None:
        """The next Envelope or PeerEvent, waiting up to `timeout` seconds (None: forever); None on timeout."""
        return self._inbox.get(timeout)

    def _request_send(self, target: bytes, message: Message, copy: bool) -> None:
        frames = encode(message, float16=self.config.float16)
        with self._lock:
            if self._closed:
                raise ChannelClosedError("the channel is closed")
            self._user_pipe.send_multipart([b"S", target, *frames], copy=copy)
            reply = self._await_reply()
        if reply[0] != b"ok":
            raise PeerUnreachableError(reply[1].decode())

    def _await_reply(self) -> list[bytes]:
        while not self._user_pipe.poll(200):
            if not self._thread.is_alive():
                raise ChannelClosedError("the channel's I/O thread has stopped")
        return self._user_pipe.recv_multipart()

    def close(self) -> None:
        """Stop the I/O thread and release the sockets; queued outgoing messages get linger_s to leave."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._thread.is_alive():
                self._user_pipe.send(b"X")
                try:
                    self._await_reply()
                except ChannelClosedError:
                    pass
            self._thread.join(timeout=self.config.linger_s + 5.0)
            self._user_pipe.close(linger=0)
            self._stop_extras()
            self._context.term()
        self._inbox.close()

    def _stop_extras(self) -> None:
        """Hook: stop helpers bound to the context (the server's authenticator)."""

    def __enter__(self) -> "ChannelBase":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- I/O thread ----

    def _start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        next_tick = time.monotonic()
        try:
            while not self._closing:
                net = self._net
                poller = zmq.Poller()
                poller.register(self._io_pipe, zmq.POLLIN)
                if net is not None and self._inbox.has_room():
                    poller.register(net, zmq.POLLIN)
                wait = max(0.0, next_tick - time.monotonic())
                if self._pending is not None:
                    wait = min(wait, _PENDING_POLL_S)
                ready = dict(poller.poll(math.ceil(wait * 1000)))
                if self._io_pipe in ready:
                    self._on_command()
                if net is not None and net in ready:
                    self._drain(net)
                if self._pending is not None:
                    self._try_pending()
                now = time.monotonic()
                if now >= next_tick and not self._closing:
                    self._on_tick(now)
                    next_tick = now + self.config.heartbeat_s
        except Exception:
            logger.exception("the I/O thread stopped on an unexpected error")
        finally:
            if self._pending is not None:
                self._reply([b"E", b"the channel closed before the message could be sent"])
            self._close_net()
            self._io_pipe.close(linger=0)
            self._inbox.close()

    def _reply(self, parts: Sequence[bytes]) -> None:
        self._io_pipe.send_multipart(list(parts))

    def _on_command(self) -> None:
        parts = self._io_pipe.recv_multipart(copy=False)
        if parts[0].bytes == b"X":
            self._closing = True
            self._reply([b"ok"])
            return
        self._pending = (parts[1].bytes, parts[2:], time.monotonic() + self.config.send_timeout_s)
        self._try_pending()

    def _try_pending(self) -> None:
        assert self._pending is not None
        target, frames, deadline = self._pending
        try:
            self._transmit(target, frames)
        except zmq.Again:
            if time.monotonic() < deadline:
                return
            self._pending = None
            self._reply([b"E", f"{target.decode(errors='replace')!r} is not reading: its queue stayed full for "
                               f"{self.config.send_timeout_s:g} s".encode()])
            return
        except PeerUnreachableError as exc:
            self._pending = None
            self._reply([b"E", str(exc).encode()])
            return
        self._pending = None
        self._reply([b"ok"])

    def _drain(self, net: zmq.Socket) -> None:
        for _ in range(_DRAIN_BATCH):
            try:
                frames = net.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._on_frames(frames, time.monotonic())
            if not self._inbox.has_room() or self._net is not net:
                return

    def _accept(self, peer: str, message: Message, now: float) -> None:
        """Deliver a validated message: liveness, heartbeats absorbed, duplicates suppressed."""
        kind = self._liveness.heard(peer, now)
        if kind is not None:
            self._inbox.put(PeerEvent(kind, peer))
        if message.type is MsgType.HEARTBEAT:
            return
        if message.type not in UNTRACKED_TYPES and self._dedupe.seen(peer, (message.type, message.job)):
            self._log.warning(f"dup:{peer}", f"dropped a duplicate {message.type.value} {message.job} from {peer}")
            self._inbox.put(PeerEvent(EventKind.DUPLICATE, peer, message.type, message.job))
            return
        if message.type is MsgType.BYE:
            self._liveness.forget(peer)
        self._inbox.put(Envelope(peer, message))

    def _refusal(self, peer: str, exc: ProtocolError) -> list[Any]:
        """Log a refused message and build the ERROR reply frames."""
        self._log.warning(f"bad:{peer}", f"refused a message from {peer}: {ErrorCode(exc.code).name}: {exc.reason}")
        return encode(error_message(exc.code, exc.reason, exc.job if isinstance(exc.job, JobId) else None))

    def _heartbeat_frames(self) -> list[Any]:
        return encode(heartbeat_message())

    # ---- hooks of the two ends ----

    @abc.abstractmethod
    def _transmit(self, target: bytes, frames: list[Any]) -> None:
        """Queue frames on the network socket without blocking; raise zmq.Again or PeerUnreachableError."""

    @abc.abstractmethod
    def _on_frames(self, frames: list[zmq.Frame], now: float) -> None:
        """Handle one received multipart message."""

    @abc.abstractmethod
    def _on_tick(self, now: float) -> None:
        """Heartbeats and liveness, once per heartbeat interval."""
