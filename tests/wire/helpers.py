"""Shared helpers of the wire tests: fast channel settings and bounded waits on deliveries."""
from __future__ import annotations

import time
from typing import Callable

from edgepsl.wire import ChannelConfig, Envelope, KeyPair, KeyStore, PeerEvent
from edgepsl.wire.inbox import Delivery

FAST = ChannelConfig(heartbeat_s=0.1, liveness=5, reconnect_min_s=0.05, reconnect_max_s=0.2, send_timeout_s=1.0, linger_s=0.0)
# One Z85 key in 85 begins with '-'; this many draws miss with probability (84/85)**5000 < 1e-25.
DASH_KEY_DRAWS = 5000


def new_dash_key_pair(store: KeyStore, name: str) -> KeyPair:
    """Create key pair NAME in the store, redrawn until its Z85 public key begins with '-' (which argparse reads as
    an option when it stands alone on a command line)."""
    for _ in range(DASH_KEY_DRAWS):
        pair = store.new(name, force=True)
        if pair.public.startswith(b"-"):
            return pair
    raise AssertionError(f"no public key beginning with '-' in {DASH_KEY_DRAWS} draws")


def wait_for(channel, match: Callable[[Delivery], bool], timeout: float = 5.0) -> tuple[Delivery | None, list[Delivery]]:
    """The first delivery matching `match` within `timeout` seconds, and every delivery seen before it."""
    seen: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        item = channel.recv(timeout=remaining)
        if item is None:
            break
        if match(item):
            return item, seen
        seen.append(item)
    return None, seen


def pending(channel, limit: int = 1000) -> list[Delivery]:
    """Everything the channel can deliver right now (at most `limit` items), without waiting."""
    items: list[Delivery] = []
    while len(items) < limit and (item := channel.recv(0)) is not None:
        items.append(item)
    return items


def is_event(kind) -> Callable[[Delivery], bool]:
    """Match a PeerEvent of one kind."""
    return lambda item: isinstance(item, PeerEvent) and item.kind is kind


def is_message(kind) -> Callable[[Delivery], bool]:
    """Match an Envelope of one message type."""
    return lambda item: isinstance(item, Envelope) and item.message.type is kind
