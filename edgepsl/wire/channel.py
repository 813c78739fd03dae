"""The machinery shared by both channel ends: configuration, the socket lock, the I/O thread and the inbox.

The network socket is used under one lock by whichever thread needs it, so the data path has no thread hop:
a user thread sends on it directly, and a user thread in recv() holds the lock while it waits in poll() on the
socket and the wake pipe and reads what arrives; the message it reads is handed back to it without passing through the inbox. Senders from
other threads poke the waiting reader, which lets them go first. An uncontended send or recv takes the lock at
once, without the hand-over bookkeeping. The I/O thread wakes once per heartbeat interval on its own clock, so
compute never starves it: unless a reader is waiting (that reader then does the same work on time), it reads
what waits (absorbing heartbeats into liveness, queueing messages in the bounded inbox), sends heartbeats and
reports lost peers.
"""
from __future__ import annotations

import abc
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import zmq
from zmq.backend import Socket as BackendSocket
from zmq.backend import zmq_poll

from edgepsl.wire import heap
from edgepsl.wire.backend import encode
from edgepsl.wire.dedupe import DuplicateFilter
from edgepsl.wire.errors import ChannelClosedError, ChannelConfigError, PeerBackpressureError, ProtocolError
from edgepsl.wire.inbox import Delivery, Envelope, Inbox, PeerEvent
from edgepsl.wire.liveness import EventKind, Liveness
from edgepsl.wire.logs import RateLimitedLog, logger
from edgepsl.wire.monitor import SocketMonitor
from edgepsl.wire.messages import (MAX_REASON_CHARS, UNTRACKED_TYPES, ErrorCode, JobId, Message, MsgType, error_message,
                                   heartbeat_message)
from edgepsl.wire.validate import Limits
from edgepsl.wire.wake import Wake, wait_readable

_DRAIN_BATCH = 64
_new_tuple = tuple.__new__
_SEND_RETRY_S = 0.001
_IO_RECHECK_S = 0.01
_MAX_AUTH_CAUSES = 1024  # distinct handshake failures remembered (so each is reported once), then forgotten


@dataclass(frozen=True)
class ChannelConfig:
    """Tuning of a channel end; tests shorten the heartbeat, boards keep `hwm` and `inbox` small."""

    heartbeat_s: float = 1.0
    liveness: int = 3
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 32.0
    hwm: int = 4
    inbox: int = 4
    send_timeout_s: float = 1.0
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


# pyzmq's compiled send, without the Python-level override of zmq.Socket.send (which only adds DRAFT routing_id
# and group arguments, unused here): the same call, a fraction of a microsecond less per part
_send_part = BackendSocket.send
_MORE_NOWAIT = int(zmq.SNDMORE | zmq.NOBLOCK)  # plain ints: or-ing pyzmq's flag enums costs a microsecond a call
_NOWAIT = int(zmq.NOBLOCK)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


def send_nowait(socket: zmq.Socket, frames: Sequence[Any], copy: bool = False) -> None:
    """Queue a multipart message without blocking; raise zmq.Again only if the queue is really full.

    The parts go one by one; bytes parts (header, routing id) are always copied, buffers as `copy` says. libzmq
    takes or refuses a multipart message at its first part, so zmq.Again can only come from that part. libzmq
    learns that the peer drained its queue through commands it processes at most once a millisecond on send;
    reading ZMQ_EVENTS processes them at once, so a queue emptied a moment ago is seen as empty.
    """
    for attempt in (0, 1):
        try:
            for part in frames[:-1]:
                _send_part(socket, part, _MORE_NOWAIT, copy or type(part) is bytes)
            _send_part(socket, frames[-1], _NOWAIT, copy or type(frames[-1]) is bytes)
            return
        except zmq.Again:
            if attempt:
                raise
            socket.getsockopt(_EVENTS)


def recv_nowait(socket: zmq.Socket) -> list[zmq.Frame]:
    """The next multipart message as zero-copy frames; raise zmq.Again if none waits."""
    recv = socket.recv
    part = recv(_NOWAIT, copy=False)
    parts = [part]
    while part.more:  # the other parts of a message arrive with its first
        part = recv(_NOWAIT, copy=False)
        parts.append(part)
    return parts


def check_security(security: object, insecure: bool) -> None:
    """Refuse a channel with neither security nor the explicit insecure opt-out, or with both."""
    if security is None and not insecure:
        raise ChannelConfigError("channels are encrypted and authenticated by default: pass a security setting "
                                 "(keys from `edgepsl keys`), or insecure=True (--insecure) for a local run")
    if security is not None and insecure:
        raise ChannelConfigError("pass either a security setting or insecure=True, not both")


class ChannelBase(abc.ABC):
    """One network socket shared under a lock by user threads and a background I/O thread."""

    def __init__(self, config: ChannelConfig) -> None:
        heap.tune()  # before the context exists, so libzmq's first message buffers already see the thresholds
        self.config = config
        self._context = zmq.Context()
        self._lock = threading.Lock()
        self._reader = threading.Lock()
        self._turn = threading.Condition()
        self._senders = 0
        self._polling = False
        self._poll_net: zmq.Socket | None = None
        self._poll_items: list[tuple[Any, int]] | None = None
        self._io_wake = Wake()
        self._user_wake = Wake()
        self._user_wake_fd = self._user_wake.fileno()
        self._inbox = Inbox(config.inbox)
        self._log = RateLimitedLog()
        self._dedupe = DuplicateFilter(config.dedupe_window)
        self._liveness = Liveness(config.timeout_s)
        self._net: zmq.Socket | None = None
        self._monitor: SocketMonitor | None = None
        self._congested: set[str] = set()  # targets whose queue stayed full for send_timeout_s: sends fail fast
        self._auth_causes: set[str] = set()  # handshake failures already reported
        self._next_tick = time.monotonic()
        self._closing = False
        self._closed = False
        self._failure: str | None = None
        self._close_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"edgepsl-wire-io-{type(self).__name__}", daemon=True)

    # ---- socket helpers (callers hold self._lock, or run before the I/O thread starts) ----

    def _configure(self, socket: zmq.Socket) -> None:
        socket.sndhwm = self.config.hwm
        socket.rcvhwm = self.config.hwm
        socket.linger = int(self.config.linger_s * 1000)
        socket.maxmsgsize = self.config.limits.max_message_bytes + self.config.limits.max_header_bytes

    def _close_net(self, linger_s: float | None = None) -> None:
        if self._monitor is not None:
            self._monitor.close()
            self._monitor = None
        if self._net is not None:
            self._net.close(linger=None if linger_s is None else int(linger_s * 1000))
            self._net = None

    def _fail_construction(self, exc: Exception, what: str) -> ChannelConfigError:
        self._close_net(0)
        self._context.term()
        self._io_wake.close()
        self._user_wake.close()
        return ChannelConfigError(f"cannot {what}: {exc}")

    def _check_open(self) -> None:
        if self._closed or self._closing:
            raise ChannelClosedError("the channel is closed")
        if self._failure is not None:
            raise ChannelClosedError(f"the channel's I/O thread stopped: {self._failure}")

    def _drain(self) -> None:
        """Read up to _DRAIN_BATCH waiting messages into the inbox (while it has room)."""
        for _ in range(_DRAIN_BATCH):
            if self._net is None or not self._inbox.has_room():
                return
            try:
                frames = recv_nowait(self._net)
            except zmq.Again:
                return
            item = self._on_frames(frames, time.monotonic())
            if item is not None:
                self._inbox.put(item)

    def _tick_if_due(self) -> None:
        now = time.monotonic()
        if now >= self._next_tick and not self._closing:
            self._on_tick(now)
            self._next_tick = now + self.config.heartbeat_s

    # ---- user-thread API ----

    def recv(self, timeout: float | None = None) -> Delivery | None:
        """The next Envelope or PeerEvent, waiting up to `timeout` seconds (None: forever); None on timeout.

        Raises ChannelClosedError once the channel is closed and everything received was taken.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        looked = False
        with self._reader:
            while True:
                item = self._inbox.pop() if self._inbox.pending else None
                if item is not None:
                    return item
                if looked and deadline is not None and time.monotonic() >= deadline:
                    return None
                looked = True
                if self._senders or not self._lock.acquire(False):
                    with self._turn:
                        self._turn.wait_for(lambda: self._senders == 0)
                        self._lock.acquire()
                try:
                    if self._closing or self._closed or self._failure is not None:
                        self._check_open()
                    item = self._read_or_wait(deadline)
                finally:
                    self._lock.release()
                if item is not None:
                    if not self._inbox.pending:
                        return item
                    self._inbox.put(item)  # behind the peer_joined / peer_back event that came with it

    def _read_or_wait(self, deadline: float | None) -> Delivery | None:
        """With the lock: wait until a message is in, then read it and return its delivery; None if a sender
        pokes, an event is queued or `deadline` passes first. Heartbeat ticks that fall due meanwhile are done here.

        The wait is one zmq_poll on the socket and the wake pipe (pyzmq's compiled call, which releases the GIL):
        it processes the socket's pending commands, sleeps only if no message is in, and keeps sleeping through
        wake-ups for commands that bring none (libzmq's flow control sends some every few messages).
        """
        pending = self._inbox.pending
        while True:
            now = time.monotonic()
            if now >= self._next_tick:
                self._tick_if_due()
            if pending:
                return None  # an event is queued (a tick's peer_lost, or one the I/O thread put before we got the lock)
            net = self._net
            wait = self._next_tick - now
            if deadline is not None and deadline - now < wait:
                wait = deadline - now
            if self._poll_items is None or self._poll_net is not net:
                self._poll_net, self._poll_items = net, self._new_poll_items(net)
            self._polling = True
            try:
                if self._senders:
                    return None  # a sender came in before it could see _polling: let it go first
                ready = zmq_poll(self._poll_items, max(0, math.ceil(wait * 1000)))
            finally:
                self._polling = False
            readable = False
            for source, _ in ready:
                if source is net:
                    readable = True
                else:
                    self._user_wake.clear()
                    return None  # a sender's poke (or close()): let it have the socket
            if readable:
                break
            if deadline is not None and time.monotonic() >= deadline:
                return None
        try:  # the inbox is empty (checked above, and only lock holders put), so it has room for this message
            frames = recv_nowait(net)
        except zmq.Again:
            return None
        return self._on_frames(frames, time.monotonic())

    def _new_poll_items(self, net: zmq.Socket | None) -> list[tuple[Any, int]]:
        """zmq_poll items: the socket (first, when there is one) and the wake pipe."""
        wake = (self._user_wake_fd, _POLLIN)
        return [(net, _POLLIN), wake] if net is not None else [wake]

    def _send(self, target: str, message: Message, copy: bool) -> None:
        frames = encode(message, float16=self.config.float16)
        if not self._senders and self._lock.acquire(False):  # nobody holds or waits for the socket
            try:
                if self._closing or self._closed or self._failure is not None:
                    self._check_open()
                self._transmit(target, frames, copy)
                if self._congested:
                    self._congested.discard(target)
                return
            except zmq.Again:
                pass
            finally:
                self._lock.release()
        congested = target in self._congested
        deadline = time.monotonic() + (0.0 if congested else self.config.send_timeout_s)
        while True:
            with self._turn:
                self._senders += 1
            if self._polling:
                self._user_wake.poke()
            try:
                with self._lock:
                    self._check_open()
                    self._transmit(target, frames, copy)
                    self._congested.discard(target)
                    return
            except zmq.Again:
                pass
            finally:
                with self._turn:
                    self._senders -= 1
                    self._turn.notify_all()
            if time.monotonic() >= deadline:
                self._congested.add(target)
                reason = ("is still not reading: dropped without waiting" if congested else
                          f"is not reading: its queue stayed full for {self.config.send_timeout_s:g} s")
                self._log.warning("full:" + target, "dropped a %s to %s, which %s", message.type.value, target, reason)
                raise PeerBackpressureError(f"{target} {reason}; the {message.type.value} was dropped")
            time.sleep(_SEND_RETRY_S)

    def close(self) -> None:
        """Stop the I/O thread and release the socket; queued outgoing messages get linger_s to leave."""
        with self._close_lock:
            if self._closed:
                return
            self._closing = True
            self._io_wake.poke()
            self._user_wake.poke()
            self._thread.join(timeout=self.config.heartbeat_s + 5.0)
            with self._lock:
                self._close_net()
                self._closed = True
            self._stop_extras()
            self._context.term()
            self._user_wake.poke()
            with self._reader:
                self._io_wake.close()
                self._user_wake.close()

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
        try:
            while not self._closing:
                wait = self._next_tick - time.monotonic()
                if wait > 0 or self._polling:  # a reader waiting in recv() holds the socket and ticks itself
                    wait_readable([self._io_wake], max(wait, _IO_RECHECK_S))
                    self._io_wake.clear()
                    continue
                with self._lock:
                    if not self._polling and not self._closing:
                        self._drain()
                        self._tick_if_due()
        except Exception as exc:
            self._failure = f"{type(exc).__name__}: {exc}"
            logger.exception("the I/O thread stopped on an unexpected error")
            self._user_wake.poke()  # a reader waiting in recv() wakes up and raises ChannelClosedError

    def _accept(self, peer: str, message: Message, now: float) -> Delivery | None:
        """What a validated message delivers (heartbeats: nothing; duplicates: a notice); liveness events are queued."""
        kind = self._liveness.heard(peer, now)
        if kind is not None:
            self._inbox.put(PeerEvent(kind, peer))
        mtype = message.type
        if mtype is MsgType.HEARTBEAT:
            return None
        if mtype not in UNTRACKED_TYPES and self._dedupe.seen(peer, (mtype, message.job)):
            self._log.warning("dup:" + peer, "dropped a duplicate %s %s from %s", mtype.value, message.job, peer)
            return PeerEvent(EventKind.DUPLICATE, peer, mtype, message.job)
        if mtype is MsgType.BYE:
            self._liveness.forget(peer)
        return _new_tuple(Envelope, (peer, message))  # Envelope(peer, message) without namedtuple's Python __new__

    def _refusal(self, peer: str, exc: ProtocolError) -> list[Any]:
        """Log a refused message and build the ERROR reply frames."""
        self._log.warning("bad:" + peer, "refused a message from %s: %s: %s", peer, ErrorCode(exc.code).name, exc.reason[:MAX_REASON_CHARS])
        return encode(error_message(exc.code, exc.reason, exc.job if isinstance(exc.job, JobId) else None))

    def _report_auth_failure(self, peer: str, detail: str) -> None:
        """Deliver PeerEvent(AUTH_FAILED) and log it at ERROR, once per distinct cause (not once per reconnect)."""
        if detail in self._auth_causes:
            return
        if len(self._auth_causes) >= _MAX_AUTH_CAUSES:
            self._auth_causes.clear()
        self._auth_causes.add(detail)
        logger.error("%s", detail)
        self._inbox.put(PeerEvent(EventKind.AUTH_FAILED, peer, detail=detail))
        self._user_wake.poke()  # a reader waiting in recv() takes the event at once

    def _heartbeat_frames(self) -> list[Any]:
        return encode(heartbeat_message())

    # ---- hooks of the two ends (called with self._lock held) ----

    @abc.abstractmethod
    def _transmit(self, target: str, frames: list[Any], copy: bool) -> None:
        """Queue frames on the network socket without blocking; raise zmq.Again or PeerUnreachableError."""

    @abc.abstractmethod
    def _on_frames(self, frames: list[zmq.Frame], now: float) -> Delivery | None:
        """Handle one received multipart message; return what it delivers to the user, if anything."""

    @abc.abstractmethod
    def _on_tick(self, now: float) -> None:
        """Heartbeats and liveness, once per heartbeat interval."""
