"""A role's side of its coordinator: register until welcomed, wait for commands, survive a coordinator restart.

Helpers and clients connect before or after the coordinator binds: REGISTER is re-sent every REGISTER_RETRY_S until a
WELCOME arrives (bounded by join_timeout_s; the coordinator dedupes by name). A coordinator that goes silent is
waited for up to join_timeout_s; when it is heard again (a restart with --resume), the role registers again and
continues from the state the coordinator broadcasts.

A failed CURVE handshake ends the role (AuthenticationFailedError, exit status 1): at once when the coordinator refused
this role's key; for any other cause (a wrong --server-key, which libzmq cannot tell from a server that hung up
mid-handshake) when the coordinator is not heard within AUTH_GRACE_S, so a transient failure, e.g. while the
coordinator restarts, does not end a role that is waiting for it.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

from edgepsl.runtime.errors import AuthenticationFailedError, PayloadError, RoleFailedError
from edgepsl.runtime.protocol import MAX_REASON, Bye, ErrorReply, Payload, Register, RuntimeCode
from edgepsl.wire import Envelope, EventKind, JobId, MsgType, PeerChannel, PeerEvent, PeerUnreachableError
from edgepsl.wire.monitor import KEY_REFUSED

log = logging.getLogger("edgepsl.runtime.role")
REGISTER_RETRY_S = 2.0
FAREWELL_S = 5.0
SLICE_S = 0.25
AUTH_GRACE_S = 5.0
COMMANDS = frozenset({MsgType.WELCOME, MsgType.ROUND_START, MsgType.STATE_REQUEST, MsgType.STATE, MsgType.BYE,
                      MsgType.PROBE, MsgType.ARTIFACT_CHUNK})
P = TypeVar("P", bound=Payload)


class CoordinatorLink:
    """The channel to the coordinator with registration, liveness bounds and payload refusal."""

    def __init__(self, channel: PeerChannel, name: str, register: Register, join_timeout_s: float,
                 seqs: Callable[[], int]) -> None:
        self.channel = channel
        self.name = name
        self.register = register
        self.join_timeout_s = join_timeout_s
        self.seqs = seqs
        self.run = ""
        self.lost_since: float | None = None
        self.rejoin_at: float | None = None  # after the coordinator came back: when to send REGISTER again
        self.auth_failed: tuple[str, float] | None = None  # a failed handshake not followed by contact: (cause, when)

    def send(self, payload: Payload, round_: int, client: str | None = None) -> None:
        """Send a payload to the coordinator; a coordinator that is away misses it (logged), it re-plays the round."""
        try:
            self.channel.send(payload.encode(JobId(self.run, round_, client or self.name, self.seqs())), copy=True)
        except PeerUnreachableError as exc:
            log.warning("%s: could not send %s to the coordinator: %s", self.name, payload.kind(), exc)

    def _register_once(self) -> None:
        try:
            self.channel.send(self.register.encode(JobId("", 0, self.name, self.seqs())))
        except PeerUnreachableError:
            pass  # not connected yet: the next try goes out once it is

    def join(self, welcome: type[Payload]) -> Envelope:
        """Register (again every REGISTER_RETRY_S) until the coordinator's valid WELCOME (or BYE), which it returns.

        RoleFailedError after join_timeout_s.
        """
        deadline = time.monotonic() + self.join_timeout_s
        log.info("%s: registering with %s", self.name, self.channel.endpoint)
        while time.monotonic() < deadline:
            self._register_once()
            retry = min(time.monotonic() + REGISTER_RETRY_S, deadline)
            while (remaining := retry - time.monotonic()) > 0:
                env = self._command(remaining)
                if env is None:
                    continue
                if env.message.type is MsgType.BYE:
                    return env
                if env.message.type is MsgType.WELCOME:
                    if self.decode(env, welcome) is not None:
                        return env
                    continue
                log.info("%s: ignored %s before the welcome", self.name, env.message.type.value)
        raise RoleFailedError(f"no welcome from the coordinator at {self.channel.endpoint} within "
                              f"{self.join_timeout_s:g} s (is it running, and does it allow this role's key?)")

    def welcome(self, env: Envelope, cls: type[P]) -> P | None:
        """A WELCOME's payload (the run id taken from it), or None after refusing it."""
        payload = self.decode(env, cls)
        if payload is not None:
            self.run = env.message.job.run
            self.rejoin_at = None
            log.info("%s: registered with run %r", self.name, self.run)
        return payload

    def decode(self, env: Envelope, cls: type[P], **expect) -> P | None:
        """The payload, or None after refusing it (ERROR BAD_PAYLOAD to the coordinator and a log line)."""
        try:
            return cls.decode(env.message, **expect)
        except PayloadError as exc:
            self.refuse(env, str(exc))
            return None

    def refuse(self, env: Envelope, reason: str) -> None:
        """Refuse a coordinator message: a log line and an ERROR naming the problem."""
        log.warning("%s: refused %s from the coordinator: %s", self.name, env.message.type.value, reason)
        try:
            self.channel.send(ErrorReply(RuntimeCode.BAD_PAYLOAD, reason).encode(env.message.job))
        except PeerUnreachableError:
            pass

    def _command(self, timeout_s: float) -> Envelope | None:
        """One command from the coordinator within timeout_s, handling liveness events and its ERROR replies."""
        if self.rejoin_at is not None and time.monotonic() >= self.rejoin_at:
            self._register_once()
            self.rejoin_at = time.monotonic() + REGISTER_RETRY_S
        item = self.channel.recv(timeout=timeout_s)
        if isinstance(item, PeerEvent):
            self._event(item)
            return None
        if item is None:
            self._check_lost()
            return None
        self.auth_failed = None  # a message came through: this role's handshake succeeded
        if item.message.type is MsgType.ERROR:
            log.warning("%s: the coordinator refused a message: %s", self.name, error_text(item))
            return None
        if item.message.type not in COMMANDS:
            log.warning("%s: ignored a %s from the coordinator", self.name, item.message.type.value)
            return None
        self.rejoin_at = None  # a coordinator that sends commands knows this role
        return item

    def _event(self, event: PeerEvent) -> None:
        if event.kind is EventKind.AUTH_FAILED:
            self.auth_failed = (event.detail, time.monotonic())
            if not event.detail.startswith(KEY_REFUSED):
                log.error("%s: %s; giving up unless the coordinator answers within %g s", self.name, event.detail,
                          AUTH_GRACE_S)
        elif event.kind is EventKind.JOINED:
            self.auth_failed = None
        elif event.kind is EventKind.LOST:
            self.lost_since = self.lost_since or time.monotonic()
            if self.run:
                log.warning("%s: the coordinator went silent; waiting up to %g s for it", self.name,
                            self.join_timeout_s)
            else:
                log.info("%s: no coordinator at %s yet; still trying", self.name, self.channel.endpoint)
        elif event.kind is EventKind.BACK:
            log.warning("%s: the coordinator is back; registering again", self.name)
            self.lost_since = None
            self.auth_failed = None
            if self.run:
                self.rejoin_at = time.monotonic()  # every REGISTER_RETRY_S until the next welcome
        self._check_lost()

    def _check_lost(self) -> None:
        if self.auth_failed is not None:
            cause, since = self.auth_failed
            if cause.startswith(KEY_REFUSED):
                raise AuthenticationFailedError(f"{self.name}: {cause}: the coordinator does not allow this role's "
                                                f"key; allow it there (edgepsl keys allow {self.name} KEY; the "
                                                f"coordinator's log names the refused key)")
            if time.monotonic() - since >= AUTH_GRACE_S:
                raise AuthenticationFailedError(f"{self.name}: {cause}")
        if self.lost_since is not None and time.monotonic() - self.lost_since > self.join_timeout_s:
            raise RoleFailedError(f"lost the coordinator at {self.channel.endpoint} for more than "
                                  f"{self.join_timeout_s:g} s")

    def poll(self) -> Envelope | None:
        """A command that has arrived, else None (no waiting)."""
        return self._command(0.0)

    def wait(self, timeout_s: float) -> Envelope | None:
        """A command that arrives within timeout_s, else None."""
        return self._command(timeout_s)

    def next_command(self, timeout_s: float) -> Envelope:
        """The coordinator's next command; RoleFailedError when none comes within timeout_s."""
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            env = self._command(min(remaining, SLICE_S * 4))
            if env is not None:
                return env
        raise RoleFailedError(f"no command from the coordinator within {timeout_s:g} s")

    def leave(self, reason: str) -> None:
        """Say BYE to the coordinator (best effort)."""
        try:
            self.channel.send(Bye(reason[:MAX_REASON]).encode(JobId(self.run, 0, self.name, self.seqs())))
        except PeerUnreachableError:
            pass

    def fail(self, code: RuntimeCode, reason: str, round_: int = 0) -> None:
        """Report a failure to the coordinator, then wait (FAREWELL_S at most) for its BYE.

        Not when this role's handshake with the coordinator failed: nothing it sends gets through.
        """
        log.error("%s", reason)
        if self.auth_failed is not None:
            return
        try:
            self.channel.send(ErrorReply(code, reason).encode(JobId(self.run, round_, self.name, self.seqs())))
        except PeerUnreachableError:
            return
        deadline = time.monotonic() + FAREWELL_S
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                env = self._command(min(remaining, SLICE_S))
            except RoleFailedError:
                return
            if env is not None and env.message.type is MsgType.BYE:
                return


def error_text(env: Envelope) -> str:
    """Readable form of an ERROR (or a note that it was unreadable)."""
    try:
        return ErrorReply.decode(env.message).text(env.peer)
    except PayloadError as exc:
        return f"{env.peer}: (unreadable error: {exc})"


def bye_reason(env: Envelope) -> str:
    """The reason of a coordinator's BYE (or a note that it was unreadable)."""
    try:
        return Bye.decode(env.message).reason
    except PayloadError as exc:
        return f"(unreadable bye: {exc})"
