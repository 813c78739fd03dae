"""Choose the wire codec: the compiled fast path edgepsl.wire._codec, or the pure-Python reference edgepsl.wire.codec.

Both give the same frames, messages and errors; the compiled one takes well-formed messages with compiled checks
and hands everything else to the reference. EDGEPSL_PURE=1 selects the reference; a missing extension falls back
with a RuntimeWarning.
"""
from __future__ import annotations

from edgepsl import compiled
from edgepsl.wire import codec

_loaded = compiled.load("edgepsl.wire._codec", "wire codec", "several microseconds slower per message")

encode = _loaded.module.encode if _loaded.module is not None else codec.encode
decode = _loaded.module.decode if _loaded.module is not None else codec.decode


def backend_name() -> str:
    """'compiled' or 'pure' (and why)."""
    return _loaded.name()


def compiled_import_error() -> str | None:
    """The reason the compiled codec could not be imported, or None."""
    return _loaded.import_error
