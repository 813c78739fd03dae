"""Load a compiled extension of edgepsl, or say why the pure-Python reference stands in for it.

EDGEPSL_PURE=1 selects every pure-Python reference (the scheduling twin, the reference wire codec). Without it, a
missing extension falls back with a RuntimeWarning naming the cause; `edgepsl doctor` repeats it.
"""
from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass
from types import ModuleType


def pure_forced() -> bool:
    """Whether EDGEPSL_PURE asks for the pure-Python references."""
    return os.environ.get("EDGEPSL_PURE", "") not in ("", "0")


@dataclass(frozen=True)
class Loaded:
    """The outcome of loading one extension: the module (None when the reference is used) and why not."""

    module: ModuleType | None
    import_error: str | None

    def name(self) -> str:
        """'compiled' or 'pure' (and why)."""
        if self.module is not None:
            return "compiled"
        return "pure (EDGEPSL_PURE=1)" if self.import_error is None else "pure (compiled extension missing)"


def load(extension: str, what: str, cost: str) -> Loaded:
    """Import the extension module named `extension` unless EDGEPSL_PURE is set; warn (naming `what` and its
    `cost`) if it is missing."""
    if pure_forced():
        return Loaded(None, None)
    try:
        return Loaded(importlib.import_module(extension), None)
    except ImportError as exc:
        warnings.warn(
            f"edgepsl: the compiled {what} is not available ({exc}); using the pure-Python reference, which is {cost}. "
            "Reinstall edgepsl with a C compiler present to build it.",
            RuntimeWarning,
            stacklevel=3,
        )
        return Loaded(None, str(exc))
