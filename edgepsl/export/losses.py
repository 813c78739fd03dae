"""The PyTorch side of the losses in edgepsl.segment.losses: the function traced into the train graph, and labels
to trace and verify it with."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from edgepsl.segment.losses import BCE_LOGITS, CROSS_ENTROPY, MSE, Loss

_FUNCTIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    CROSS_ENTROPY: F.cross_entropy,
    MSE: F.mse_loss,
    BCE_LOGITS: F.binary_cross_entropy_with_logits,
}


def loss_value(loss: Loss, out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The mean loss of a batch of outputs against labels (targets cast to the output's dtype)."""
    if not loss.class_labels:
        labels = labels.to(out.dtype)
    return _FUNCTIONS[loss.name](out, labels)


def random_labels(loss: Loss, out_shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """Labels for a batch of outputs of out_shape: class indices, normal targets (MSE) or 0/1 targets (BCE)."""
    if loss.class_labels:
        return torch.randint(0, out_shape[-1], (out_shape[0],), generator=generator)
    if loss.name == MSE:
        return torch.randn(out_shape, generator=generator)
    return torch.randint(0, 2, out_shape, generator=generator).to(torch.float32)
