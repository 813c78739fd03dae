"""Rate-limited warnings, so a peer flooding bad messages cannot flood the log."""
from __future__ import annotations

import logging
import time

logger = logging.getLogger("edgepsl.wire")


class RateLimitedLog:
    """At most one warning per key per `interval_s`; the next one reports how many were suppressed."""

    max_keys = 1024

    def __init__(self, interval_s: float = 1.0, log: logging.Logger = logger) -> None:
        self.interval_s = interval_s
        self.log = log
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, text: str, *args: object) -> None:
        """Log `text % args` for `key` unless one was logged for `key` less than interval_s ago.

        The text is only formatted when it is logged, so a flood of suppressed warnings costs little.
        """
        now = time.monotonic()
        if now - self._last.get(key, -self.interval_s) < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        if len(self._last) >= self.max_keys:
            self._last.clear()
        self._last[key] = now
        skipped = self._suppressed.pop(key, 0)
        self.log.warning(text + (f" ({skipped} similar messages suppressed)" if skipped else ""), *args)
