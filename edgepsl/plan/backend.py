"""Choose the scheduling-core backend: the compiled extension edgepsl._core, or its pure-Python twin.

The twin (edgepsl.plan.pure) is used when EDGEPSL_PURE=1 is set or when the extension cannot be
imported; in the second case a RuntimeWarning says why, and `edgepsl doctor` repeats it.
"""
from __future__ import annotations

from types import ModuleType

from edgepsl import compiled
from edgepsl.plan import pure

_loaded = compiled.load("edgepsl._core", "scheduling core", "about 100x slower")

kernels: ModuleType = _loaded.module or pure


def backend_name() -> str:
    """'compiled' or 'pure' (and why, when the twin was forced by EDGEPSL_PURE)."""
    return _loaded.name()


def compiled_import_error() -> str | None:
    """The reason the compiled core could not be imported, or None."""
    return _loaded.import_error
