"""Per-process event trace: one JSON line per event (job start/end, send, receive with bytes), wall-clock ms."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np


def now_ms() -> float:
    """Wall-clock time in milliseconds since the epoch (comparable across processes of one machine)."""
    return time.time_ns() / 1e6


def tensor_bytes(tensors: Mapping[str, np.ndarray], float16: bool = False) -> int:
    """Bytes of a message's tensors on the wire (float32 counted at 2 bytes per value when sent as float16)."""
    total = 0
    for t in tensors.values():
        a = np.asarray(t)
        total += a.size * 2 if float16 and a.dtype == np.float32 else a.nbytes
    return int(total)


class Trace:
    """Append-only JSON-lines event log of one process; thread-safe, flushed per event."""

    def __init__(self, path: str | os.PathLike[str] | None, process: str) -> None:
        self.process = process
        self._lock = threading.Lock()
        self._fh = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(path, "a", encoding="utf-8")

    def event(self, ev: str, t_ms: float | None = None, **fields: Any) -> None:
        """Record one event: its name (job_start, job_end, send, recv, ...), time and free fields."""
        if self._fh is None:
            return
        line = json.dumps({"t": now_ms() if t_ms is None else t_ms, "proc": self.process, "ev": ev, **fields})
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
