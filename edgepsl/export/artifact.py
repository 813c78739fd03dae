"""Export a model cut into segments and write the artifact directory (graphs, states, manifest with sha256)."""
from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import torch
from torch import nn

from edgepsl.export.convert import OPSET
from edgepsl.export.decompositions import WINOGRAD_TILE
from edgepsl.export.errors import ExportError
from edgepsl.export.segment import ExportedSegment, SegmentExample, export_segment
from edgepsl.export.verify import TOLERANCE
from edgepsl.segment import names
from edgepsl.segment.losses import Loss

TRACE_BATCH = 4
VERIFY_BATCH = 3


def segment_bounds(num_blocks: int, cuts: Sequence[int]) -> list[tuple[int, int]]:
    """Block ranges [(0, c1), (c1, c2), ..., (ck, n)]; raises ExportError unless 0 < c1 < ... < ck < n."""
    points = [0, *cuts, num_blocks]
    if any(b <= a for a, b in zip(points, points[1:])):
        raise ExportError(f"cuts {list(cuts)} must be strictly increasing and inside 1..{num_blocks - 1} "
                          f"(the model has {num_blocks} blocks)")
    return list(zip(points, points[1:]))


def segment_names(count: int) -> list[str]:
    """part1, part2, ... for `count` segments."""
    return [f"part{i + 1}" for i in range(count)]


def roles(count: int) -> list[str]:
    """first, middle..., last for `count` >= 2 segments."""
    if count < 2:
        raise ExportError("a split needs at least one cut (two segments)")
    return [names.FIRST] + [names.MIDDLE] * (count - 2) + [names.LAST]


def segment_examples(model: nn.Sequential, input_shape: Sequence[int], bounds: list[tuple[int, int]],
                     seed: int) -> list[SegmentExample]:
    """Each segment's input activations: random images run through the preceding blocks (train mode, a copy)."""
    generator = torch.Generator().manual_seed(seed)
    trace_x = torch.randn(TRACE_BATCH, *input_shape, generator=generator)
    verify_x = torch.randn(VERIFY_BATCH, *input_shape, generator=generator)
    probe = copy.deepcopy(model).train()
    examples = []
    with torch.no_grad():
        for a, b in bounds:
            examples.append(SegmentExample(trace_x.clone(), verify_x.clone()))
            try:
                trace_x, verify_x = probe[a:b](trace_x), probe[a:b](verify_x)
            except Exception as exc:
                raise ExportError(f"blocks {a}:{b} fail on a batch of input shape {list(input_shape)} (from the "
                                  f"model's input shape): {type(exc).__name__}: {exc}") from exc
    return examples


def export_segments(model: nn.Sequential, input_shape: Sequence[int], cuts: Sequence[int], loss: Loss,
                    seed: int = 0, segment_filter: Sequence[str] | None = None,
                    winograd_tile: int = WINOGRAD_TILE) -> list[ExportedSegment]:
    """Export and verify every segment of a cut model (or only the named ones), in memory, the last one with `loss`;
    winograd_tile as in export_segment."""
    bounds = segment_bounds(len(model), cuts)
    examples = segment_examples(model, input_shape, bounds, seed)
    exported = []
    for name, role, span, example in zip(segment_names(len(bounds)), roles(len(bounds)), bounds, examples):
        if segment_filter is None or name in segment_filter:
            exported.append(export_segment(name, role, model, span, example, loss, seed, winograd_tile))
    return exported


def _tensor_spec(value: onnx.ValueInfoProto) -> dict[str, object]:
    """Name, shape (None for the dynamic batch axis) and dtype of a graph input or output."""
    tensor = value.type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
    return {"name": value.name, "shape": shape, "dtype": dtype}


def _npz_bytes(state: dict[str, np.ndarray]) -> bytes:
    """An uncompressed .npz of the state arrays."""
    buffer = io.BytesIO()
    np.savez(buffer, **state)
    return buffer.getvalue()


def exporter_versions() -> dict[str, str]:
    """Versions of the packages that produced the graphs."""
    return {pkg: metadata.version(pkg) for pkg in ("torch", "onnx", "onnxscript", "onnxruntime", "numpy")}


def _segment_entry(seg: ExportedSegment, files: dict[str, bytes]) -> dict[str, object]:
    """The manifest entry of one segment, adding its files to `files`."""
    graphs = {}
    for graph, model in seg.graphs.items():
        fname = names.graph_file(seg.name, graph)
        files[fname] = model.SerializeToString()
        graphs[graph] = {"file": fname, "inputs": [_tensor_spec(v) for v in model.graph.input],
                         "outputs": [_tensor_spec(v) for v in model.graph.output]}
    files[names.state_file(seg.name)] = _npz_bytes(seg.state)
    eval_graph = seg.graphs[names.EVAL].graph
    return {
        "name": seg.name, "role": seg.role, "blocks": list(seg.blocks),
        "input": _tensor_spec(next(v for v in eval_graph.input if v.name == names.X)),
        "output": _tensor_spec(eval_graph.output[0]),
        "params": [{"name": n, "shape": list(seg.state[names.PARAM + n].shape),
                    "dtype": seg.state[names.PARAM + n].dtype.name} for n in seg.params],
        "buffers": [{"name": n, "shape": list(seg.state[names.BUFFER + n].shape),
                     "dtype": seg.state[names.BUFFER + n].dtype.name} for n in seg.buffers],
        "saved": seg.saved, "graphs": graphs, "state": names.state_file(seg.name),
        "verification": {"tolerance_rel_l2": TOLERANCE, "max_rel_l2": max(seg.errors.values()),
                         "worst": max(seg.errors, key=seg.errors.get),
                         "pytorch_float32_max_rel_l2": max(seg.float32_errors.values())},
    }


def write_artifact(out_dir: str | os.PathLike[str], model_name: str, cuts: Sequence[int], num_blocks: int,
                   num_classes: int, segments: list[ExportedSegment], loss: Loss, force: bool = False,
                   aux_head: ExportedSegment | None = None) -> Path:
    """Write graphs, states and manifest.json (recording the loss, and the aux head after the first segment when
    given) to a temporary directory, then move it to out_dir; num_classes is the width of the model's output."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not force:
        raise ExportError(f"{out} exists and is not empty; pass --force to replace it")
    files: dict[str, bytes] = {}
    entries = [_segment_entry(seg, files) for seg in segments]
    manifest = {
        "format": names.FORMAT_NAME, "format_version": names.FORMAT_VERSION, "model": model_name,
        "cuts": list(cuts), "num_blocks": num_blocks, "num_classes": num_classes, "loss": loss.name, "opset": OPSET,
        "exporter": exporter_versions(), "segments": entries,
    }
    if aux_head is not None:
        manifest["aux_head"] = {**_segment_entry(aux_head, files), "after": segments[0].name, "loss": loss.name}
    manifest["files"] = {f: hashlib.sha256(data).hexdigest() for f, data in sorted(files.items())}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for fname, data in files.items():
            (staging / fname).write_bytes(data)
        (staging / names.MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.chmod(0o755)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
