"""Export a PyTorch model cut into blocks to verified, standard-op ONNX training segments (`edgepsl export`).

Needs the `tools` extra (torch, onnx, onnxscript): `pip install 'edgepsl[tools]'`. Importing this package works
without them; using `export_model` or `load_model` raises ExportToolsMissingError naming that command.
"""
from __future__ import annotations

import importlib

from edgepsl.export.errors import ExportError, ExportToolsMissingError, VerificationError

TOOLS = ("torch", "onnx", "onnxscript")
_LAZY = {"export_model": "edgepsl.export.model", "load_model": "edgepsl.export.model",
         "ExportedArtifact": "edgepsl.export.model"}

__all__ = ["ExportError", "ExportToolsMissingError", "ExportedArtifact", "VerificationError", "export_model",
           "load_model", "require_tools"]


def require_tools() -> None:
    """Import torch, onnx and onnxscript, or raise ExportToolsMissingError naming what is missing."""
    missing = []
    for package in TOOLS:
        try:
            importlib.import_module(package)
        except ImportError:
            missing.append(package)
    if missing:
        raise ExportToolsMissingError(f"exporting a model needs {', '.join(missing)}, which is not installed; "
                                      f"install the exporter's extra: pip install 'edgepsl[tools]'")


def __getattr__(name: str) -> object:
    """The torch-side API, imported on first use once the tools are known to be installed."""
    if name not in _LAZY:
        raise AttributeError(f"module 'edgepsl.export' has no attribute {name!r}")
    require_tools()
    return getattr(importlib.import_module(_LAZY[name]), name)
