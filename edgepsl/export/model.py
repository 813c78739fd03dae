"""Export a user's model (an nn.Sequential, a list of blocks, or a `file.py:factory` reference) to a verified
segment artifact: the public face of the exporter."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import torch
from torch import nn

from edgepsl.export.artifact import export_segments, write_artifact
from edgepsl.export.aux_head import NONE, AuxHeadChoice, export_aux_head
from edgepsl.export.decompositions import WINOGRAD_TILE
from edgepsl.export.errors import ExportError
from edgepsl.export.segment import ExportedSegment
from edgepsl.reference import load_reference
from edgepsl.segment import names
from edgepsl.segment.losses import CROSS_ENTROPY, UnknownLossError, get_loss

ModelLike = Union[nn.Sequential, Sequence[nn.Module], str]


@dataclass(frozen=True)
class ExportedArtifact:
    """The artifact directory written, its verified segments (names, blocks, errors, export seconds) and its verified
    aux head (None without one)."""

    directory: Path
    segments: list[ExportedSegment]
    aux_head: ExportedSegment | None = None


def as_blocks(built: object, what: str) -> nn.Sequential:
    """An nn.Sequential of the model's ordered blocks; ExportError for anything but a Sequential or a list of
    modules."""
    if isinstance(built, nn.Sequential):
        return built
    if isinstance(built, (list, tuple)) and built and all(isinstance(m, nn.Module) for m in built):
        return nn.Sequential(*built)
    raise ExportError(f"{what} must be an nn.Sequential or a non-empty list of nn.Module blocks, "
                      f"got {type(built).__name__}")


def load_model(ref: str, seed: int = 0) -> nn.Sequential:
    """Call the factory named by `path/to/file.py:factory` or `module.path:factory` (no arguments, torch seeded
    with `seed`) and return its blocks."""
    factory = load_reference(ref, "--model")
    if not callable(factory):
        raise ExportError(f"--model {ref!r} names a {type(factory).__name__}, not a factory function")
    torch.manual_seed(seed)
    try:
        built = factory()
    except Exception as exc:
        raise ExportError(f"--model {ref!r}: the factory raised {type(exc).__name__}: {exc}") from exc
    return as_blocks(built, f"the model returned by {ref!r}")


def export_model(model: ModelLike, cuts: Sequence[int], input_shape: Sequence[int], out: str | os.PathLike[str], *,
                 loss: str = CROSS_ENTROPY, name: str | None = None, seed: int = 0, force: bool = False,
                 winograd_tile: int = WINOGRAD_TILE, aux_head: AuxHeadChoice = NONE) -> ExportedArtifact:
    """Cut a model before blocks `cuts`, export every segment (the last with `loss`) and the aux head after part-1
    ("auto": the rule of edgepsl.export.aux_head, an nn.Module: that head, "none": none), verify each graph against
    PyTorch float64, and only then write the artifact to `out`; input_shape excludes the batch axis."""
    try:
        loss_spec = get_loss(loss)
    except UnknownLossError as exc:
        raise ExportError(str(exc)) from None
    shape = [int(d) for d in input_shape]
    if not shape or min(shape) < 1:
        raise ExportError(f"the input shape must be positive sizes without the batch axis, e.g. 1,28,28; got {shape}")
    if isinstance(model, str):
        blocks, default_name = load_model(model, seed), model.rpartition(":")[2]
    else:
        blocks, default_name = as_blocks(model, "the model"), "model"
    segments = export_segments(blocks, shape, list(cuts), loss_spec, seed, winograd_tile=winograd_tile)
    aux = export_aux_head(blocks, shape, list(cuts), aux_head, loss_spec, seed, winograd_tile)
    width = output_width(segments[-1])
    directory = write_artifact(out, name or default_name, list(cuts), len(blocks), width, segments, loss_spec, force,
                               aux)
    return ExportedArtifact(directory, segments, aux)


def output_width(segment: ExportedSegment) -> int:
    """Values per sample of a segment's eval output (the class count for logits)."""
    dims = segment.graphs[names.EVAL].graph.output[0].type.tensor_type.shape.dim[1:]
    return math.prod(dim.dim_value for dim in dims)
