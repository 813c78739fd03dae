"""Duplicate suppression: remembers recent (type, job id) keys per peer so a resent job is processed once."""
from __future__ import annotations

from collections import OrderedDict
from typing import Hashable


class DuplicateFilter:
    """Per-peer window of the last `window` message keys seen."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._seen: dict[str, OrderedDict[Hashable, None]] = {}

    def seen(self, peer: str, key: Hashable) -> bool:
        """True if `key` was already seen from `peer` within the window; otherwise remember it and return False."""
        keys = self._seen.get(peer)
        if keys is None:
            keys = self._seen[peer] = OrderedDict()
        elif key in keys:
            keys.move_to_end(key)
            return True
        keys[key] = None
        if len(keys) > self.window:
            keys.popitem(last=False)
        return False
