"""Errors of the offline exporter."""
from edgepsl.errors import EdgePSLError


class ExportError(EdgePSLError):
    """A segment cannot be exported: bad cuts, an unsupported op, a non-standard ONNX op or an existing output."""


class VerificationError(ExportError):
    """An exported graph disagrees with PyTorch float64 beyond the tolerance; names the segment, graph and tensor."""
