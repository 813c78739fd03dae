"""A self-pipe that wakes a thread blocked in select(): the only cross-thread signal the channels need."""
from __future__ import annotations

import os
import select
from typing import Sequence


class Wake:
    """poke() from any thread makes wait() on this object's fd return; clear() rearms it."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def fileno(self) -> int:
        """The readable end, for select()."""
        return self._read

    def poke(self) -> None:
        """Wake the waiter (a full pipe already means 'woken')."""
        try:
            os.write(self._write, b"\0")
        except (BlockingIOError, OSError):
            pass

    def clear(self) -> None:
        """Consume every pending poke."""
        try:
            while os.read(self._read, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        """Release both ends of the pipe."""
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass


def wait_readable(sources: Sequence[object], timeout: float) -> None:
    """Block until one of the fds (or objects with fileno()) is readable, or `timeout` seconds pass."""
    try:
        select.select(list(sources), [], [], max(0.0, timeout))
    except (OSError, ValueError):
        pass  # an fd closed under us during a reconnect or close: the caller's loop looks again
