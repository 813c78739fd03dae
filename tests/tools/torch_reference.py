"""Helpers for the tools tests: float64 PyTorch references for runtime segments and whole models."""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgepsl.segment import Segment, names
from tools.onnx_export.verify import rel_l2

ZERO_FRACTION = 1e-2


def load_runtime_state(model: nn.Sequential, segments: list[Segment]) -> None:
    """Copy the segments' parameters and buffers into the matching tensors of `model`, in place."""
    state = {}
    for seg in segments:
        state.update({k: torch.from_numpy(v.copy()) for k, v in seg.params.items()})
        state.update({k: torch.from_numpy(v.copy()) for k, v in seg.buffers.items()})
    model.load_state_dict(state, strict=True)


def grad_errors(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> dict[str, float]:
    """Relative L2 error per gradient; near-zero references measured against 1% of the largest gradient norm."""
    scale = ZERO_FRACTION * max(float(np.linalg.norm(v)) for v in expected.values())
    return {k: rel_l2(actual[k], v, scale) for k, v in expected.items()}


def segment_reference(segment: nn.Module, x: np.ndarray, seed: np.ndarray, with_loss: bool,
                      grad_input: bool) -> dict[str, np.ndarray]:
    """Float64 train-mode out/loss, new buffers, grad_in and parameter gradients of a torch segment."""
    s = copy.deepcopy(segment).double().train()
    xx = torch.from_numpy(x).double().requires_grad_(grad_input)
    out = s(xx)
    params = list(s.parameters())
    wrt = ([xx] if grad_input else []) + params
    head = F.cross_entropy(out, torch.from_numpy(seed)) if with_loss else out
    grads = torch.autograd.grad(head, wrt, None if with_loss else torch.from_numpy(seed).double())
    result = {names.LOSS if with_loss else names.OUT: head.detach().numpy()}
    result.update({names.NEW_BUFFER + n: b.numpy() for n, b in s.named_buffers()})
    if grad_input:
        result[names.GRAD_IN] = grads[0].numpy()
    result.update({n: g.numpy() for (n, _), g in zip(s.named_parameters(), grads[len(wrt) - len(params):])})
    return result


def check_runtime_segment(segment: Segment, torch_segment: nn.Module, x: np.ndarray, rng: np.random.Generator,
                          num_classes: int) -> dict[str, float]:
    """Run one training step of a runtime segment and return each tensor's relative L2 error vs float64."""
    grad_input = segment.role != names.FIRST
    if segment.role == names.LAST:
        labels = rng.integers(0, num_classes, x.shape[0]).astype(np.int64)
        ref = segment_reference(torch_segment, x, labels, True, True)
        result = segment.train_step(x, labels)
        got = {names.LOSS: np.float64(result.loss), names.GRAD_IN: result.grad_in, **result.grads}
    else:
        out = segment.forward("check", x)
        grad_out = rng.standard_normal(out.shape).astype(np.float32)
        ref = segment_reference(torch_segment, x, grad_out, False, grad_input)
        back = segment.backward("check", grad_out)
        got = {names.OUT: out, **back.grads}
        if grad_input:
            got[names.GRAD_IN] = back.grad_in
    grads = {k: v for k, v in ref.items() if not k.startswith(names.NEW_BUFFER)}
    errors = grad_errors(got, grads)
    for name, value in segment.buffers.items():
        errors[names.NEW_BUFFER + name] = rel_l2(value, ref[names.NEW_BUFFER + name], 0.0)
    return errors
