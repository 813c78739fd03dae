"""SIGINT and SIGTERM as an exception: a role or coordinator flushes, says bye and exits with 128 + the signal."""
from __future__ import annotations

import signal
from types import FrameType

from edgepsl.runtime.errors import StopRequested

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _stop(signum: int, frame: FrameType | None) -> None:
    for sig in STOP_SIGNALS:  # a second signal must not interrupt the farewell of the first
        signal.signal(sig, signal.SIG_IGN)
    raise StopRequested(signum)


def stop_on_signals() -> None:
    """From now on SIGINT and SIGTERM raise StopRequested in the main thread (once; later ones are ignored)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _stop)


def exit_status(exc: StopRequested) -> int:
    """The documented exit status of a process stopped by a signal: 128 + its number (130 SIGINT, 143 SIGTERM)."""
    return 128 + exc.signum
