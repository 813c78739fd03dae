"""What a channel delivers to its user (Envelope, PeerEvent) and the bounded inbox between the I/O thread and recv()."""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple, Union

from edgepsl.wire.liveness import EventKind
from edgepsl.wire.messages import JobId, Message, MsgType


class Envelope(NamedTuple):
    """A validated message and its sender: `peer` is the authenticated name, the only identity to trust.

    A named tuple rather than a frozen dataclass: one is built for every message received, and this is the
    cheapest immutable record to build.
    """

    peer: str
    message: Message


@dataclass(frozen=True)
class PeerEvent:
    """A liveness change of a peer, a suppressed duplicate (then `type` and `job` name the resent job), or a failed
    CURVE handshake (AUTH_FAILED; `detail` names the cause)."""

    kind: EventKind
    peer: str
    type: MsgType | None = None
    job: JobId | None = None
    detail: str = ""


Delivery = Union[Envelope, PeerEvent]


def _counts(item: Delivery) -> bool:
    """Messages and duplicate notices count against the capacity; liveness events do not."""
    return type(item) is Envelope or item.kind is EventKind.DUPLICATE


class Inbox:
    """Messages bounded by `capacity` (the socket is not read while full); liveness events are never dropped.

    Only pop() takes items out: recv() is the one reader and does its own waiting on the socket, so the inbox
    needs no condition, just a lock held for a deque operation.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[Delivery] = deque()
        self.pending = self._items  # read-only use: `if inbox.pending` tells whether anything waits, without a call
        self._messages = 0
        self._lock = threading.Lock()

    def has_room(self) -> bool:
        """True while fewer than `capacity` messages wait."""
        return self._messages < self.capacity

    def put(self, item: Delivery) -> None:
        """Append a message or an event (the I/O thread checks has_room() before reading messages)."""
        with self._lock:
            self._items.append(item)
            self._messages += _counts(item)

    def pop(self) -> Delivery | None:
        """The oldest item, or None at once if there is none."""
        with self._lock:
            if not self._items:
                return None
            item = self._items.popleft()
            self._messages -= _counts(item)
        return item
