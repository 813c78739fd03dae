"""Winograd 3x3 convolutions of the exporter: the aten-level formulation against float64 PyTorch, which
convolutions take it, and an exported conv segment verified with each tile."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgepsl.export.artifact import export_segments
from edgepsl.export.decompositions import (WINOGRAD_TRANSFORMS, decomposition_table, winograd_conv3x3,
                                           winograd_tile_for, winograd_weight, winograd_weight_grad)
from edgepsl.export.errors import ExportError
from edgepsl.segment import names
from edgepsl.segment.losses import CROSS_ENTROPY, LOSSES


def _rel(got: torch.Tensor, ref: torch.Tensor) -> float:
    """Relative L2 error."""
    return float((got.double() - ref).norm() / ref.norm())


@pytest.mark.parametrize("tile", sorted(WINOGRAD_TRANSFORMS))
def test_winograd_forward_input_and_weight_gradients_match_float64(tile):
    gen = torch.Generator().manual_seed(tile)
    x = torch.randn(3, 5, 8, 12, generator=gen)
    w = torch.randn(7, 5, 3, 3, generator=gen)
    ref = F.conv2d(x.double(), w.double(), padding=1)
    assert _rel(winograd_conv3x3(x, winograd_weight(w, tile, False).transpose(1, 2), tile), ref) < 1e-5
    grad_out = torch.randn(3, 7, 8, 12, generator=gen)
    ref_grad = torch.nn.grad.conv2d_input(x.shape, w.double(), grad_out.double(), padding=1)
    assert _rel(winograd_conv3x3(grad_out, winograd_weight(w, tile, True), tile), ref_grad) < 1e-5
    ref_grad_w = torch.nn.grad.conv2d_weight(x.double(), w.shape, grad_out.double(), padding=1)
    assert _rel(winograd_weight_grad(grad_out, x, tile), ref_grad_w) < 1e-5


def test_only_3x3_stride_1_padding_1_convolutions_of_larger_maps_take_winograd():
    x, w3, w5 = torch.zeros(2, 4, 8, 8), torch.zeros(4, 4, 3, 3), torch.zeros(4, 4, 5, 5)
    assert winograd_tile_for(4, x, w3, [1, 1], [1, 1], [1, 1], 1) == 4
    assert winograd_tile_for(4, torch.zeros(2, 4, 6, 6), w3, [1, 1], [1, 1], [1, 1], 1) == 2
    assert winograd_tile_for(0, x, w3, [1, 1], [1, 1], [1, 1], 1) == 0
    assert winograd_tile_for(2, x, w3, [2, 2], [1, 1], [1, 1], 1) == 0
    assert winograd_tile_for(2, x, w3, [1, 1], [0, 0], [1, 1], 1) == 0
    assert winograd_tile_for(2, x, w3, [1, 1], [1, 1], [1, 1], 4) == 0
    assert winograd_tile_for(2, x, w5, [1, 1], [2, 2], [1, 1], 1) == 0
    assert winograd_tile_for(2, torch.zeros(2, 4, 2, 2), w3, [1, 1], [1, 1], [1, 1], 1) == 0
    assert winograd_tile_for(2, torch.zeros(2, 4, 7, 7), w3, [1, 1], [1, 1], [1, 1], 1) == 0


def test_unknown_tile_is_an_export_error():
    with pytest.raises(ExportError, match="winograd_tile"):
        decomposition_table(3)


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    """3x3 convolution, BatchNorm, ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


@pytest.mark.parametrize("tile", [0, *sorted(WINOGRAD_TRANSFORMS)])
def test_conv_segment_exports_and_verifies_with_each_tile(tile):
    torch.manual_seed(0)
    model = nn.Sequential(_conv_block(3, 8), _conv_block(8, 8), _conv_block(8, 16),
                          nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4)))
    segments = export_segments(model, (3, 8, 8), [1, 3], LOSSES[CROSS_ENTROPY], winograd_tile=tile)
    assert all(max(s.errors.values()) <= 1e-5 for s in segments)
    middle = segments[1].graphs[names.FORWARD]
    assert any(n.op_type == "Conv" for n in middle.graph.node) == (tile == 0)
