"""Tensor and file names shared by the exporter (tools/) and the runtime: the segment artifact's vocabulary."""
from __future__ import annotations

FORMAT_NAME = "edgepsl-segments"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"

X = "x"
GRAD_OUT = "grad_out"
LABELS = "labels"
OUT = "out"
LOSS = "loss"
GRAD_IN = "grad_in"

PARAM = "p:"
BUFFER = "b:"
NEW_BUFFER = "newb:"
GRAD = "grad:"
SAVED = "saved:"

FIRST, MIDDLE, LAST = "first", "middle", "last"
ROLES = (FIRST, MIDDLE, LAST)

AUX = "aux"  # the auxiliary head after the first segment (local-loss mode; manifest field aux_head)

FORWARD, BACKWARD, TRAIN, EVAL = "forward", "backward", "train", "eval"
GRAPHS_BY_ROLE = {FIRST: (FORWARD, BACKWARD, EVAL), MIDDLE: (FORWARD, BACKWARD, EVAL), LAST: (TRAIN, EVAL)}


def graph_file(segment: str, graph: str) -> str:
    """File name of one graph of one segment, e.g. part2.backward.onnx."""
    return f"{segment}.{graph}.onnx"


def state_file(segment: str) -> str:
    """File name of a segment's initial parameters and buffers."""
    return f"{segment}.npz"
