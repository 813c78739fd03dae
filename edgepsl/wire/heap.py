"""Pin glibc's heap thresholds at the ceiling its own dynamic rule climbs to, so large message buffers are reused.

libzmq allocates every received message of more than a few KiB with malloc (and, under CURVE, the ciphertext and the
plaintext separately), and frees it when the tensor built on it is dropped. glibc serves allocations above its
mmap threshold (128 KiB at start) with mmap; freeing one raises the threshold to that chunk's size and the trim
threshold to twice that. So the thresholds, and with them the cost of every later message, depend on which
buffers the process happened to free first. Where a round trip's buffers add up to more than the trim threshold
(CURVE's ciphertext and plaintext of a 1 MiB message do), each free hands the top of the heap back to the kernel and
the next message faults every page of it in again: hundreds of page faults per message (tests/wire/test_heap.py
counts them through real CURVE channels).

tune() sets both thresholds to where that rule ends for messages of 32 MiB and more (mmap threshold 32 MiB on
64-bit, 16 MiB on 32-bit; trim threshold twice that), once per process, before the first channel opens. The cost is
that up to the trim threshold of freed memory may stay with each malloc arena instead of going back to the system.
It leaves the heap alone on a C library other than glibc, when the user set glibc's malloc thresholds themselves
(MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, or glibc.malloc tunables in GLIBC_TUNABLES), or when
EDGEPSL_HEAP=glibc asks for glibc's defaults (EDGEPSL_HEAP=pinned, or unset, is the default; any other value is
refused with ChannelConfigError).
"""
from __future__ import annotations

import ctypes
import os
import platform
import threading
from dataclasses import dataclass

from edgepsl.wire.errors import ChannelConfigError

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 * 1024 * 1024 * ctypes.sizeof(ctypes.c_long)  # glibc's DEFAULT_MMAP_THRESHOLD_MAX
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
_USER_TUNABLES = ("glibc.malloc.mmap_threshold", "glibc.malloc.trim_threshold")


@dataclass(frozen=True)
class HeapState:
    """What tune() did: whether the thresholds are pinned, and a line saying which values or why not."""

    pinned: bool
    detail: str


_lock = threading.Lock()
_state: HeapState | None = None


def _user_choice() -> str | None:
    """Why the heap is the user's to set (an environment variable naming it), or None; an EDGEPSL_HEAP other than
    'glibc' or 'pinned' is refused."""
    choice = os.environ.get("EDGEPSL_HEAP", "")
    if choice == "glibc":
        return "EDGEPSL_HEAP=glibc"
    if choice not in ("", "pinned"):
        raise ChannelConfigError(f"EDGEPSL_HEAP={choice!r} is not a heap policy: use 'pinned' (the default: "
                                 "thresholds pinned for message buffers) or 'glibc' (glibc's own dynamic thresholds)")
    for name in _USER_SETTINGS:
        if name in os.environ:
            return name
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    for name in _USER_TUNABLES:
        if name in tunables:
            return f"GLIBC_TUNABLES ({name})"
    return None


def _pin() -> HeapState:
    choice = _user_choice()
    if choice is not None:
        return HeapState(False, f"glibc's own thresholds, as {choice} asks")
    libc, version = platform.libc_ver()
    if libc != "glibc":
        return HeapState(False, f"left alone: the C library is {libc or 'not glibc'}, not glibc")
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1 or mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        raise ChannelConfigError(f"glibc {version} refused mallopt(M_MMAP_THRESHOLD={MMAP_THRESHOLD}) or "
                                 f"mallopt(M_TRIM_THRESHOLD={TRIM_THRESHOLD}); set EDGEPSL_HEAP=glibc to leave the heap alone")
    return HeapState(True, f"pinned (glibc {version}): mmap threshold {MMAP_THRESHOLD >> 20} MiB, "
                           f"trim threshold {TRIM_THRESHOLD >> 20} MiB")


def tune() -> HeapState:
    """Pin glibc's mmap and trim thresholds for this process (once; later calls return the first outcome)."""
    global _state
    with _lock:
        if _state is None:
            _state = _pin()
        return _state
