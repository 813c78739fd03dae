"""Choose the scheduling-core backend: the compiled extension edgepsl._core, or its pure-Python twin.

The twin (edgepsl.plan.pure) is used when EDGEPSL_PURE=1 is set or when the extension cannot be
imported; in the second case a RuntimeWarning says why, and `edgepsl doctor` repeats it.
"""
from __future__ import annotations

import os
import warnings
from types import ModuleType

from edgepsl.plan import pure

_import_error: str | None = None


def _load() -> ModuleType:
    global _import_error
    if os.environ.get("EDGEPSL_PURE", "") not in ("", "0"):
        return pure
    try:
        from edgepsl import _core
    except ImportError as exc:
        _import_error = str(exc)
        warnings.warn(
            f"edgepsl: the compiled scheduling core is not available ({exc}); using the pure-Python twin, "
            "which is about 100x slower. Reinstall edgepsl with a C compiler present to build it.",
            RuntimeWarning,
            stacklevel=3,
        )
        return pure
    return _core


kernels: ModuleType = _load()


def backend_name() -> str:
    """'compiled' or 'pure' (and why, when the twin was forced by EDGEPSL_PURE)."""
    if kernels is pure:
        return "pure (EDGEPSL_PURE=1)" if _import_error is None else "pure (compiled core missing)"
    return "compiled"


def compiled_import_error() -> str | None:
    """The reason the compiled core could not be imported, or None."""
    return _import_error
