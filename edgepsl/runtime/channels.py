"""Channel settings of the runtime's roles and a blocking wait for the next expected message."""
from __future__ import annotations

import logging
import time
from typing import Callable, Collection

from edgepsl.runtime.errors import RunAbortedError
from edgepsl.wire import ChannelConfig, Envelope, ErrorCode, EventKind, MsgType, PeerEvent

log = logging.getLogger("edgepsl.runtime")

# Servers (coordinator, helpers) hear from many peers at once: a deep inbox keeps every arrived job visible.
SERVER_INBOX = 1024


def channel_config(float16: bool = False, inbox: int = 4) -> ChannelConfig:
    """The channel tuning the runtime uses (defaults of the wire, a deeper inbox for servers)."""
    return ChannelConfig(inbox=inbox, hwm=max(4, inbox), float16=float16)


def refusal_text(env: Envelope) -> str:
    """Readable form of an ERROR message."""
    code, reason = env.message.error_info()
    name = ErrorCode(code).name if code in ErrorCode._value2member_map_ else str(code)
    return f"{env.peer} refused job {tuple(env.message.job)}: {name}: {reason}"


def _accepted(item, types: Collection[MsgType], what: str, accept: Callable[[Envelope], bool]) -> Envelope | None:
    """The item if it is an expected message; None for anything else (logged); RunAbortedError on an ERROR."""
    if item is None:
        return None
    if isinstance(item, PeerEvent):
        if item.kind is EventKind.LOST:
            log.warning("%s went silent while waiting for %s", item.peer, what)
        return None
    if item.message.type is MsgType.ERROR:
        raise RunAbortedError(refusal_text(item))
    if item.message.type in types and accept(item):
        return item
    log.warning("ignored an unexpected %s from %s while waiting for %s", item.message.type.value, item.peer, what)
    return None


def expect(channel, types: Collection[MsgType], timeout_s: float, what: str,
           accept: Callable[[Envelope], bool] = lambda env: True) -> Envelope:
    """The next message of one of `types` passing `accept`; RunAbortedError on an ERROR, a lost peer or timeout.

    Other messages and liveness events are logged and skipped.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RunAbortedError(f"timed out after {timeout_s:g} s waiting for {what}")
        env = _accepted(channel.recv(timeout=remaining), types, what, accept)
        if env is not None:
            return env


def poll(channel, types: Collection[MsgType], what: str) -> Envelope | None:
    """Like expect, without waiting: the expected messages already received, else None."""
    while True:
        item = channel.recv(timeout=0)
        if item is None:
            return None
        env = _accepted(item, types, what, lambda env: True)
        if env is not None:
            return env
