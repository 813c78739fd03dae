"""Liveness bookkeeping, reconnect backoff, duplicate filter and the bounded inbox (pure, no sockets)."""
from __future__ import annotations

from edgepsl.wire import Envelope, EventKind, JobId, Message, MsgType, PeerEvent
from edgepsl.wire.dedupe import DuplicateFilter
from edgepsl.wire.inbox import Inbox
from edgepsl.wire.liveness import Backoff, Liveness


def test_liveness_reports_joined_lost_back_once_each():
    """First contact JOINED, silence past the timeout LOST (once), traffic again BACK."""
    table = Liveness(timeout_s=1.0)
    assert table.heard("a", 0.0) is EventKind.JOINED
    assert table.heard("a", 0.5) is None
    assert table.expire(1.4) == []
    assert table.expire(1.6) == ["a"]
    assert table.expire(5.0) == []
    assert table.live() == []
    assert table.heard("a", 6.0) is EventKind.BACK
    assert table.live() == ["a"]


def test_expected_peer_is_lost_without_contact_then_joins():
    """A server never heard from is reported lost after the timeout; its first answer is JOINED."""
    table = Liveness(timeout_s=1.0)
    table.expect("srv", 0.0)
    assert table.expire(2.0) == ["srv"]
    assert table.heard("srv", 3.0) is EventKind.JOINED


def test_hold_freezes_silence_clocks_and_forget_resets():
    """While this side is not reading, peers are not blamed; a forgotten peer joins afresh."""
    table = Liveness(timeout_s=1.0)
    table.heard("a", 0.0)
    table.hold(5.0)
    assert table.expire(5.5) == []
    table.forget("a")
    assert table.expire(100.0) == []
    assert table.heard("a", 101.0) is EventKind.JOINED


def test_backoff_doubles_to_the_cap_and_resets():
    """1, 2, 4, ... capped; reset after contact."""
    backoff = Backoff(1.0, 5.0)
    assert [backoff.delay() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.delay() == 1.0


def test_duplicate_filter_is_per_peer_and_bounded():
    """A key repeats only within its peer and within the window."""
    dedupe = DuplicateFilter(window=3)
    assert not dedupe.seen("a", 1) and dedupe.seen("a", 1) and not dedupe.seen("b", 1)
    for key in (2, 3, 4):
        assert not dedupe.seen("a", key)
    assert not dedupe.seen("a", 1)


def test_inbox_bounds_messages_not_liveness_events():
    """has_room() counts messages and duplicate notices; liveness events always go in; items come out in order."""
    inbox = Inbox(capacity=2)
    for _ in range(2):
        inbox.put(Envelope("p", Message(MsgType.REPORT)))
    assert not inbox.has_room()
    inbox.put(PeerEvent(EventKind.LOST, "p"))
    assert isinstance(inbox.pop(), Envelope) and inbox.has_room()
    inbox.put(PeerEvent(EventKind.DUPLICATE, "p", MsgType.FORWARD, JobId()))
    assert not inbox.has_room() and inbox.pending
    assert [type(inbox.pop()) for _ in range(3)] == [Envelope, PeerEvent, PeerEvent]
    assert inbox.pop() is None and not inbox.pending and inbox.has_room()
