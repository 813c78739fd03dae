"""Liveness bookkeeping (who was heard from when, who is lost) and reconnect backoff; pure, times passed in."""
from __future__ import annotations

import enum


class EventKind(str, enum.Enum):
    """What a channel reports about a peer besides its messages."""

    JOINED = "peer_joined"
    LOST = "peer_lost"
    BACK = "peer_back"
    DUPLICATE = "duplicate"
    AUTH_FAILED = "auth_failed"


class Liveness:
    """Tracks the last time each peer was heard from and turns silence longer than `timeout_s` into LOST."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._last: dict[str, float] = {}
        self._known: set[str] = set()
        self._lost: set[str] = set()

    def expect(self, peer: str, now: float) -> None:
        """Start the silence clock of a peer not heard from yet (a server a peer connects to)."""
        self._last.setdefault(peer, now)

    def heard(self, peer: str, now: float) -> EventKind | None:
        """Record traffic from a peer; returns JOINED on first contact, BACK after a loss, else None."""
        self._last[peer] = now
        if peer not in self._known:
            self._known.add(peer)
            self._lost.discard(peer)
            return EventKind.JOINED
        if peer in self._lost:
            self._lost.discard(peer)
            return EventKind.BACK
        return None

    def hold(self, now: float) -> None:
        """Stop the silence clocks (used while this side is not reading, so peers are not blamed)."""
        for peer in self._last:
            if peer not in self._lost:
                self._last[peer] = now

    def expire(self, now: float) -> list[str]:
        """Peers newly lost: silent for longer than the timeout and not already reported."""
        lost = [p for p, t in self._last.items() if p not in self._lost and now - t > self.timeout_s]
        self._lost.update(lost)
        return lost

    def live(self) -> list[str]:
        """Tracked peers currently not lost."""
        return [p for p in self._last if p not in self._lost]

    def forget(self, peer: str) -> None:
        """Stop tracking a peer that said BYE; a later message makes it JOINED again."""
        self._last.pop(peer, None)
        self._known.discard(peer)
        self._lost.discard(peer)


class Backoff:
    """Exponential reconnect delays: initial, doubled after each failure, capped at maximum."""

    def __init__(self, initial_s: float, maximum_s: float) -> None:
        self.initial_s = initial_s
        self.maximum_s = max(maximum_s, initial_s)
        self._next = initial_s

    def delay(self) -> float:
        """The delay before the next attempt (and double the one after)."""
        current = self._next
        self._next = min(self._next * 2, self.maximum_s)
        return current

    def reset(self) -> None:
        """Back to the initial delay after a successful contact."""
        self._next = self.initial_s
