"""Measuring devices and links: per-segment training costs on onnxruntime, written as planning profiles."""
