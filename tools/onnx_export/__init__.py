"""Offline export of model segments to standard-op ONNX training graphs (needs torch, onnx, onnxscript)."""
