"""The auxiliary head of local-loss training: a small classifier after part-1, exported like a last segment.

The rule of `--aux-head auto` (docs/modes.md): LocSplitFed's auxiliary network is one small layer on the cut-layer
activations and InfoPro/DGL-style local heads reduce the spatial size first, so the head stays a few percent of the
client's work whatever the cut:

* a feature map [C, H, W]: average pooling to 2x2 (DGL's spatial reduction) when H and W are even, else global
  average pooling, then Flatten and Linear(C * 4 or C, width);
* a flat vector [D]: Linear(D, width);
* any other shape [d1, ..., dk]: Flatten and Linear(d1 * ... * dk, width);

where width is the model's output width, and the head's loss is the model's loss. Its weights are seeded with the
export seed without touching the global random state.
"""
from __future__ import annotations

import math
from typing import Sequence, Union

import torch
from torch import nn

from edgepsl.export.artifact import TRACE_BATCH, segment_bounds, segment_examples
from edgepsl.export.decompositions import WINOGRAD_TILE
from edgepsl.export.errors import ExportError
from edgepsl.export.segment import ExportedSegment, export_segment
from edgepsl.segment import names
from edgepsl.segment.losses import Loss

AUTO, NONE = "auto", "none"
CHOICES = (AUTO, NONE)
AuxHeadChoice = Union[str, nn.Module]


def auto_aux_head(feature_shape: Sequence[int], width: int) -> nn.Sequential:
    """The auto rule's (unseeded) head for part-1 outputs of feature_shape (no batch axis) and `width` outputs."""
    shape = [int(d) for d in feature_shape]
    if len(shape) == 3:
        channels, height, width_in = shape
        pool = 2 if height % 2 == 0 and width_in % 2 == 0 else 1
        return nn.Sequential(nn.AdaptiveAvgPool2d(pool), nn.Flatten(), nn.Linear(channels * pool * pool, width))
    if len(shape) == 1:
        return nn.Sequential(nn.Linear(shape[0], width))
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), width))


def build_aux_head(choice: AuxHeadChoice, feature_shape: Sequence[int], output_shape: Sequence[int],
                   seed: int) -> nn.Sequential:
    """The head to export: the auto rule's head seeded with `seed` for "auto", or the given module; output_shape is
    the model's output shape without the batch axis."""
    if isinstance(choice, nn.Module):
        return choice if isinstance(choice, nn.Sequential) else nn.Sequential(choice)
    if choice != AUTO:
        raise ExportError(f"aux_head must be {' or '.join(repr(c) for c in CHOICES)} or an nn.Module, got {choice!r}")
    if len(output_shape) != 1:
        raise ExportError(f"the auto aux head predicts a flat output [batch, width], but the model's output has shape "
                          f"[batch, {', '.join(map(str, output_shape))}]; pass your own head as aux_head=nn.Module")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return auto_aux_head(feature_shape, int(output_shape[0]))


def export_aux_head(model: nn.Sequential, input_shape: Sequence[int], cuts: Sequence[int], choice: AuxHeadChoice,
                    loss: Loss, seed: int = 0, winograd_tile: int = WINOGRAD_TILE) -> ExportedSegment | None:
    """Build the aux head after part-1 (None for "none"), then trace, convert and verify it against PyTorch float64
    as a last segment named `aux` with the model's loss, on part-1's outputs of the export's check batches."""
    if isinstance(choice, str) and choice == NONE:
        return None
    # the extra empty range's "input" is the whole model's output
    examples = segment_examples(model, input_shape, segment_bounds(len(model), cuts) + [(len(model), len(model))],
                                seed)
    feature = examples[1].trace_x
    output = examples[-1].trace_x
    head = build_aux_head(choice, feature.shape[1:], output.shape[1:], seed)
    try:
        with torch.no_grad():
            got = head.eval()(feature)
    except Exception as exc:
        raise ExportError(f"the aux head fails on part-1's output of shape [batch, "
                          f"{', '.join(map(str, feature.shape[1:]))}]: {type(exc).__name__}: {exc}") from exc
    if got.shape[0] != TRACE_BATCH:
        raise ExportError(f"the aux head must keep the batch axis, got output shape {list(got.shape)}")
    return export_segment(names.AUX, names.LAST, head, (0, len(head)), examples[1], loss, seed, winograd_tile)
