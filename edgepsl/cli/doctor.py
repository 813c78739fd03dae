"""`edgepsl doctor`: report the version, the active compiled-or-pure backends and installed components."""
from __future__ import annotations

import argparse
import importlib
import platform

from edgepsl import __version__

HELP = ("show the version, whether the compiled scheduling core and wire codec are active, how the heap is tuned for "
        "message buffers, and which optional components are installed")

_COMPONENTS = ("numpy", "onnxruntime", "zmq", "msgpack", "matplotlib", "highspy", "torch")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options."""


def _component_version(name: str) -> str:
    try:
        module = importlib.import_module(name)
    except ImportError:
        return "not installed"
    return str(getattr(module, "__version__", "installed"))


def run(args: argparse.Namespace) -> int:
    """Print the environment report; 1 if the heap policy asked for (EDGEPSL_HEAP) cannot be applied."""
    from edgepsl.plan import backend as plan_backend
    from edgepsl.wire import backend as wire_backend
    from edgepsl.wire import heap
    from edgepsl.wire.errors import ChannelConfigError

    print(f"edgepsl {__version__} on Python {platform.python_version()} ({platform.machine()})")
    for label, backend in (("scheduling core", plan_backend), ("wire codec", wire_backend)):
        print(f"{label}: {backend.backend_name()}")
        reason = backend.compiled_import_error()
        if reason:
            print(f"  compiled extension unavailable: {reason}")
    try:
        heap_line, status = heap.tune().detail, 0
    except ChannelConfigError as exc:
        heap_line, status = f"error: {exc}", 1
    print(f"heap thresholds: {heap_line}")
    for name in _COMPONENTS:
        print(f"{name:>12}: {_component_version(name)}")
    return status
