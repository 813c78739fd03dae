"""Errors of the exporter (importable without torch)."""
from edgepsl.errors import EdgePSLError


class ExportError(EdgePSLError):
    """A model cannot be exported: bad cuts, a bad factory, an unsupported op, a non-standard ONNX op or an existing
    output."""


class VerificationError(ExportError):
    """An exported graph disagrees with PyTorch float64 beyond the tolerance; names the segment, graph and tensor."""


class ExportToolsMissingError(ExportError):
    """torch, onnx or onnxscript is not installed; the message names the pip command that installs them."""
