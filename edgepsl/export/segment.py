"""Export one segment (a range of a model's blocks) to verified ONNX graphs and its initial state."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
from torch import nn

from edgepsl.export.convert import to_onnx
from edgepsl.export.decompositions import WINOGRAD_TILE
from edgepsl.export.errors import ExportError
from edgepsl.export.losses import random_labels
from edgepsl.export.split import split_joint
from edgepsl.export.trace import segment_state, trace_eval, trace_joint
from edgepsl.export.verify import reference, verify_segment
from edgepsl.segment import names
from edgepsl.segment.losses import Loss


@dataclass
class SegmentExample:
    """Example inputs of a segment: a batch to trace with and a batch of another size to verify with."""

    trace_x: torch.Tensor
    verify_x: torch.Tensor


@dataclass
class ExportedSegment:
    """A segment's verified graphs, saved-tensor names, initial state and verification errors (all in memory)."""

    name: str
    role: str
    blocks: tuple[int, int]
    graphs: dict[str, onnx.ModelProto]
    saved: list[str]
    state: dict[str, np.ndarray]
    params: list[str]
    buffers: list[str]
    errors: dict[str, float] = field(default_factory=dict)
    float32_errors: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def state_arrays(segment: nn.Module) -> dict[str, np.ndarray]:
    """Parameters and buffers as numpy arrays keyed by graph input name (p:NAME, b:NAME)."""
    arrays = {names.PARAM + n: p.detach().numpy().copy() for n, p in segment.named_parameters()}
    arrays.update({names.BUFFER + n: b.detach().numpy().copy() for n, b in segment.named_buffers()})
    return arrays


def _seed(out_shape: torch.Size, loss: Loss | None, generator: torch.Generator) -> torch.Tensor:
    """Random grad_out of the output's shape (loss None), or random labels of the loss."""
    if loss is not None:
        return random_labels(loss, out_shape, generator)
    return torch.randn(out_shape, generator=generator)


def _check_output(out_shape: torch.Size, loss: Loss) -> None:
    """ExportError unless a last segment's output suits the loss (class logits need shape [batch, classes])."""
    if loss.class_labels and (len(out_shape) != 2 or out_shape[1] < 2):
        raise ExportError(f"loss {loss.name} needs the model's output to be logits of shape [batch, classes >= 2], "
                          f"got {list(out_shape)}; choose --loss mse or bce_logits for other outputs")


def _graphs(segment: nn.Module, x: torch.Tensor, seed: torch.Tensor, role: str, loss: Loss | None,
            winograd_tile: int) -> tuple[dict[str, onnx.ModelProto], list[str]]:
    """Trace and convert the eval graph and the joint graph; split the joint unless the segment is last."""
    grad_input = role != names.FIRST
    try:
        joint_fx, eval_fx = trace_joint(segment, x, seed, loss, grad_input, winograd_tile), trace_eval(segment, x,
                                                                                                    winograd_tile)
    except Exception as exc:
        raise ExportError(f"tracing the training step with make_fx failed (every op must have a PyTorch autograd "
                          f"formula): {type(exc).__name__}: {exc}") from exc
    joint = to_onnx(joint_fx, "joint graph")
    graphs = {names.EVAL: to_onnx(eval_fx, "eval graph")}
    if loss is not None:
        graphs[names.TRAIN] = joint
        return graphs, []
    _, bnames = segment_state(segment)
    split = split_joint(joint, [names.OUT] + [names.NEW_BUFFER + b for b in bnames])
    graphs[names.FORWARD], graphs[names.BACKWARD] = split.forward, split.backward
    return graphs, split.saved


def export_segment(name: str, role: str, model: nn.Sequential, blocks: tuple[int, int], example: SegmentExample,
                   loss: Loss, seed: int = 0, winograd_tile: int = WINOGRAD_TILE) -> ExportedSegment:
    """Trace, convert, split and verify one segment (the last one with `loss`); raises ExportError or
    VerificationError, writes nothing. winograd_tile: output tile of the Winograd 3x3 stride-1 convolutions (2 or 4),
    0 keeps Conv."""
    start = time.perf_counter()
    segment = model[blocks[0]:blocks[1]]
    seg_loss, grad_input = (loss if role == names.LAST else None), role != names.FIRST
    generator = torch.Generator().manual_seed(seed)
    state = state_arrays(segment)
    probe = copy.deepcopy(segment).eval()
    with torch.no_grad():
        trace_out, verify_out = probe(example.trace_x), probe(example.verify_x)
    try:
        if seg_loss is not None:
            _check_output(trace_out.shape, seg_loss)
        trace_seed = _seed(trace_out.shape, seg_loss, generator)
        graphs, saved = _graphs(segment, example.trace_x, trace_seed, role, seg_loss, winograd_tile)
    except ExportError as exc:
        raise ExportError(f"segment {name} (blocks {blocks[0]}:{blocks[1]}): {exc}") from exc
    verify_seed = _seed(verify_out.shape, seg_loss, generator)
    ref = reference(segment, example.verify_x, verify_seed, seg_loss, grad_input)
    errors = verify_segment(name, graphs, state, ref, example.verify_x.numpy(), verify_seed.numpy(),
                            seg_loss is not None)
    pnames, bnames = segment_state(segment)
    return ExportedSegment(name, role, blocks, graphs, saved, state, pnames, bnames, errors, ref.float32_error,
                           time.perf_counter() - start)
