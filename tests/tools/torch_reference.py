"""Helpers for the tools tests: float64 PyTorch references for runtime segments and whole models."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgepsl.export.verify import NOISE_FACTOR, TOLERANCE, reference, tensor_errors
from edgepsl.segment import Segment, names
from edgepsl.segment.losses import CROSS_ENTROPY, LOSSES


def load_runtime_state(model: nn.Sequential, segments: list[Segment]) -> None:
    """Copy the segments' parameters and buffers into the matching tensors of `model`, in place."""
    state = {}
    for seg in segments:
        state.update({k: torch.from_numpy(v.copy()) for k, v in seg.params.items()})
        state.update({k: torch.from_numpy(v.copy()) for k, v in seg.buffers.items()})
    model.load_state_dict(state, strict=True)


def assert_within_bounds(errors: dict[str, float], float32_error: dict[str, float]) -> None:
    """Every error within the exporter's bound: 1e-5, or 10x PyTorch float32's own error where that is larger."""
    for name, err in errors.items():
        bound = max(TOLERANCE, NOISE_FACTOR * float32_error[name])
        assert err <= bound, f"{name}: relative L2 error {err:.2e} > {bound:.0e}"


def check_runtime_segment(segment: Segment, torch_segment: nn.Module, x: np.ndarray, rng: np.random.Generator,
                          num_classes: int) -> dict[str, float]:
    """Run one training step of a runtime segment and assert each tensor is within bounds of float64 PyTorch."""
    grad_input = segment.role != names.FIRST
    if segment.role == names.LAST:
        labels = rng.integers(0, num_classes, x.shape[0]).astype(np.int64)
        ref = reference(torch_segment, torch.from_numpy(x), torch.from_numpy(labels), LOSSES[CROSS_ENTROPY], True)
        result = segment.train_step(x, labels)
        got = {names.LOSS: np.float64(result.loss), names.GRAD_IN: result.grad_in}
        grads = result.grads
    else:
        out = segment.forward("check", x)
        grad_out = rng.standard_normal(out.shape).astype(np.float32)
        ref = reference(torch_segment, torch.from_numpy(x), torch.from_numpy(grad_out), None, grad_input)
        back = segment.backward("check", grad_out)
        got = {names.OUT: out}
        grads = back.grads
        if grad_input:
            got[names.GRAD_IN] = back.grad_in
    got.update({names.GRAD + k: v for k, v in grads.items()})
    got.update({names.NEW_BUFFER + k: v for k, v in segment.buffers.items()})
    errors = tensor_errors(got, ref.train)
    assert_within_bounds(errors, ref.float32_error)
    return errors
