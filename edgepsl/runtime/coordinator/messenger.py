"""The coordinator's channel: job ids, typed sends, and collecting the replies a phase waits for.

Whatever a phase is not waiting for is refused with an ERROR to its sender only (BAD_PAYLOAD naming the field when
its payload fails validation, REJECTED otherwise); a role's ERROR, DIVERGED report or BYE ends the run. A failed CURVE
handshake (a key outside the allow-list, a wrong --server-key) is logged and traced once per cause and ends nothing.
A member's ARTIFACT_REQUEST is answered in every phase with the one chunk it asks for.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from edgepsl.runtime.artifact_transfer import ArtifactSource
from edgepsl.runtime.errors import PayloadError, RunAbortedError, TrainingDivergedError
from edgepsl.runtime.protocol import (MAX_REASON, ArtifactRequest, Bye, ClientProfile, ClientRoundReport, ErrorReply,
                                      LinkReport, Payload, Register, RuntimeCode, State, decode_any)
from edgepsl.runtime.trace import Trace
from edgepsl.wire import Envelope, ErrorCode, EventKind, JobId, MsgType, PeerEvent, PeerUnreachableError, ServerChannel
from edgepsl.wire.logs import RateLimitedLog

log = logging.getLogger("edgepsl.runtime.coordinator")
WATCH_S = 1.0
# What a message from a peer that is not (or no longer) expected is checked as, so that a refusal names its field.
CHECKED_AS: tuple[type[Payload], ...] = (Register, ClientProfile, LinkReport, ClientRoundReport, State, Bye)

Accept = Callable[[Envelope], "str | None"]
DROP = "\0drop"  # what accept returns for a message it swallows silently (a late report of a closed round)


class Messenger:
    """Sends typed payloads to roles and collects the ones a phase waits for."""

    def __init__(self, server: ServerChannel, run_id: str, trace: Trace, watch: Callable[[], None] | None,
                 artifact: ArtifactSource) -> None:
        self.server = server
        self.artifact = artifact
        self.run_id = run_id
        self.trace = trace
        self.watch = watch
        self.members: dict[str, str] = {}  # registered role name -> "client" | "helper"
        self.admit_joins = False  # after the fleet phase: a role that registers is kept in `joining`
        self.joining: dict[str, Register] = {}  # clients and helpers that registered during the run, not yet admitted
        self._seq = time.time_ns() // 1000
        self._refusals = RateLimitedLog(log=log)  # a peer flooding bad messages cannot flood the log

    def token(self) -> int:
        """A fresh number, never repeated, also by a restarted coordinator (it starts from the clock in µs)."""
        self._seq += 1
        return self._seq

    def job(self, round_: int, client: str = "") -> JobId:
        """A fresh job id of this run."""
        return JobId(self.run_id, round_, client, self.token())

    def send(self, peer: str, payload: Payload, round_: int, client: str = "") -> None:
        """Send a payload to a role; RunAbortedError when it cannot be reached."""
        message = payload.encode(self.job(round_, client))
        try:
            self.server.send(peer, message, copy=True)
        except PeerUnreachableError as exc:
            raise RunAbortedError(f"cannot reach {peer}: {exc}") from None
        self.trace.event("send", type=message.type.value, peer=peer, round=round_)

    def reach(self, peer: str, payload: Payload, round_: int, client: str = "") -> bool:
        """Send a payload to a role that may be gone: False (and a log line) when it cannot be reached."""
        try:
            self.send(peer, payload, round_, client)
        except RunAbortedError as exc:
            log.warning("%s", exc)
            return False
        return True

    def farewell(self, reason: str) -> None:
        """Best effort: tell every registered role that the run is over, so none waits for its timeout."""
        for name in self.members:
            try:
                self.server.send(name, Bye(reason[:MAX_REASON]).encode(self.job(0)))
            except PeerUnreachableError:
                pass

    def refuse(self, env: Envelope, code: int, reason: str) -> None:
        """An ERROR to the sender only, and a log line."""
        self._refusals.warning(f"refused {env.peer}", "refused %s from %s: %s", env.message.type.value, env.peer,
                               reason)
        self.trace.event("refused", peer=env.peer, type=env.message.type.value, reason=reason)
        try:
            self.server.send(env.peer, ErrorReply(code, reason).encode(env.message.job))
        except PeerUnreachableError as exc:  # a peer that does not read its refusals loses them, nothing else
            self._refusals.warning(f"dropped {env.peer}", "dropped the refusal to %s: %s", env.peer, exc)

    def refuse_unexpected(self, env: Envelope, what: str) -> None:
        """Refuse a message no phase waits for: BAD_PAYLOAD naming its field if it is malformed, else REJECTED."""
        try:
            decode_any(env.message, CHECKED_AS)
        except PayloadError as exc:
            if env.message.type in {c.TYPE for c in CHECKED_AS}:
                self.refuse(env, RuntimeCode.BAD_PAYLOAD, str(exc))
                return
        self.refuse(env, ErrorCode.REJECTED, f"unexpected {env.message.type.value} while waiting for {what}")

    def _send_chunk(self, env: Envelope) -> None:
        """Answer an artifact request with its one chunk (a bad request is refused BAD_PAYLOAD, nothing else)."""
        try:
            chunk = self.artifact.answer(ArtifactRequest.decode(env.message))
        except PayloadError as exc:
            self.refuse(env, RuntimeCode.BAD_PAYLOAD, str(exc))
            return
        try:
            self.server.send(env.peer, chunk.encode(self.job(0, env.peer)))
        except PeerUnreachableError as exc:  # the role asks again (artifact_transfer.RETRY_S); others are served
            log.warning("dropped artifact chunk %d to %s: %s", chunk.index, env.peer, exc)
            return
        self.trace.event("send", type=MsgType.ARTIFACT_CHUNK.value, peer=env.peer, round=0, index=chunk.index)

    def _join(self, env: Envelope) -> None:
        """Keep the registration of a client or helper that registers during the run (it joins at the next aggregation
        boundary); a malformed registration is refused BAD_PAYLOAD."""
        try:
            payload = Register.decode(env.message)
        except PayloadError as exc:
            self.refuse(env, RuntimeCode.BAD_PAYLOAD, str(exc))
            return
        if env.peer not in self.joining:
            log.info("%s registered during the run; it joins at the next aggregation boundary", env.peer)
            self.trace.event("join_request", peer=env.peer)
        self.joining[env.peer] = payload

    def _auth_failed(self, event: PeerEvent) -> None:
        """Log and trace a failed handshake (the wire reports each cause once); the run goes on."""
        self.trace.event("auth_failed", peer=event.peer, detail=event.detail)
        if event.peer:
            log.warning("%s: a role with that key cannot join; if it is one of this run's, allow it "
                        "(edgepsl keys allow NAME %s) and restart the coordinator", event.detail, event.peer)
        else:
            log.warning("%s: a role cannot join until it is given this coordinator's public key", event.detail)

    def _ends_run(self, env: Envelope, round_: int) -> None:
        """Raise for a role's ERROR or BYE: the run cannot go on without it."""
        if env.message.type is MsgType.BYE:
            try:
                reason = Bye.decode(env.message).reason
            except PayloadError as exc:
                reason = f"(unreadable bye: {exc})"
            raise RunAbortedError(f"{env.peer} left the run: {reason}")
        try:
            error = ErrorReply.decode(env.message)
        except PayloadError as exc:
            raise RunAbortedError(f"{env.peer} sent an unreadable error: {exc}") from None
        if error.code == RuntimeCode.DIVERGED:
            raise TrainingDivergedError(f"training diverged at round {env.message.job.round}: {error.reason}")
        raise RunAbortedError(error.text(env.peer))

    def collect(self, accept: Accept, count: int | Callable[[], int], what: str, timeout_s: float, round_: int = 0,
                *, events: Callable[[PeerEvent], None] | None = None,
                due: tuple[float, Callable[[], None]] | None = None) -> set[str]:
        """Wait for `count` messages that `accept` takes (it returns the slot they fill, once each, DROP to swallow
        the message, or None to refuse it); the slots filled.

        count may be a function, read again after every event (a phase that closes a round without a lost peer
        lowers it). events, when given, sees every LOST and BACK of a member; due = (monotonic time, action) runs
        the action once at that time (a round's straggler deadline). accept may raise PayloadError: the message
        is refused with BAD_PAYLOAD and the phase keeps waiting. A duplicate REGISTER of a member is dropped
        silently (roles re-send it until welcomed).
        """
        wanted = count if callable(count) else (lambda: count)
        got: set[str] = set()
        deadline = time.monotonic() + timeout_s
        while len(got) < wanted():
            if due is not None and time.monotonic() >= due[0]:
                due[1]()
                due = None
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RunAbortedError(f"timed out after {timeout_s:g} s waiting for {what} ({len(got)} of {count})")
            wait = min(remaining, WATCH_S)
            if due is not None:
                wait = max(0.0, min(wait, due[0] - time.monotonic()))
            item = self.server.recv(timeout=wait)
            if isinstance(item, Envelope) and item.peer in self.members and \
                    item.message.type in (MsgType.ERROR, MsgType.BYE):
                self._ends_run(item, round_)
            if self.watch is not None:
                self.watch()
            if item is None:
                continue
            if isinstance(item, PeerEvent):
                if item.kind is EventKind.LOST and item.peer in self.members:
                    log.warning("%s went silent during %s", item.peer, what)
                if events is not None and item.kind in (EventKind.LOST, EventKind.BACK) and item.peer in self.members:
                    events(item)
                elif item.kind is EventKind.AUTH_FAILED:
                    self._auth_failed(item)
                continue
            if item.message.type is MsgType.ERROR:
                continue
            if item.message.type is MsgType.REGISTER and item.peer in self.members:
                continue
            if item.message.type is MsgType.REGISTER and self.admit_joins:
                self._join(item)
                continue
            if item.message.type is MsgType.ARTIFACT_REQUEST and item.peer in self.members:
                self._send_chunk(item)
                continue
            try:
                slot = accept(item)
            except PayloadError as exc:
                self.refuse(item, RuntimeCode.BAD_PAYLOAD, str(exc))
                continue
            if slot == DROP:
                continue
            if slot is None or slot in got:
                self.refuse_unexpected(item, what)
                continue
            got.add(slot)
        return got

