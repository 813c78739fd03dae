"""Verify exported graphs against PyTorch float64 autograd before anything is written."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from edgepsl.segment import names
from edgepsl.segment.session import open_session
from tools.onnx_export.errors import VerificationError

TOLERANCE = 1e-5
# A tensor whose float64 norm is below this fraction of the largest gradient norm of its graph is analytically
# (near) zero, e.g. the bias gradient of a convolution followed by BatchNorm; its error is measured against that
# largest norm, since a relative error of float32 rounding noise around zero means nothing.
_ZERO_FRACTION = 1e-2


@dataclass
class Reference:
    """PyTorch float64 results of one training step (and one eval forward) of a segment."""

    train: dict[str, np.ndarray]
    eval_out: np.ndarray


def rel_l2(actual: np.ndarray, expected: np.ndarray, scale: float) -> float:
    """||actual - expected|| / max(||expected||, scale), in float64."""
    a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(a - e) / max(np.linalg.norm(e), scale, 1e-300))


def reference(segment: nn.Module, x: torch.Tensor, seed: torch.Tensor, with_loss: bool, grad_input: bool) -> Reference:
    """Float64 outputs, new buffers and gradients (train mode), and the float64 eval-mode output."""
    train = copy.deepcopy(segment).double().train()
    xx = x.double().requires_grad_(grad_input)
    out = train(xx)
    params = list(train.parameters())
    wrt = ([xx] if grad_input else []) + params
    if with_loss:
        head = F.cross_entropy(out, seed)
        grads = torch.autograd.grad(head, wrt)
    else:
        head = out
        grads = torch.autograd.grad(out, wrt, seed.double())
    result = {names.LOSS if with_loss else names.OUT: head.detach().numpy()}
    result.update({names.NEW_BUFFER + n: b.numpy() for n, b in train.named_buffers()})
    if grad_input:
        result[names.GRAD_IN] = grads[0].numpy()
    result.update({names.GRAD + n: g.numpy() for (n, _), g in zip(train.named_parameters(), grads[len(wrt) - len(params):])})
    evaluated = copy.deepcopy(segment).double().eval()
    with torch.no_grad():
        eval_out = evaluated(x.double()).numpy()
    return Reference(result, eval_out)


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a model on onnxruntime (CPU) with the feeds it declares."""
    session = open_session(model.SerializeToString())
    outputs = session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})
    return dict(zip([o.name for o in session.get_outputs()], outputs))


def _compare(segment_name: str, graph: str, actual: dict[str, np.ndarray], expected: dict[str, np.ndarray],
             errors: dict[str, float]) -> None:
    """Record each tensor's error; raise VerificationError naming the first tensor over the tolerance."""
    grad_norms = [float(np.linalg.norm(v)) for k, v in expected.items() if k.startswith(names.GRAD)]
    zero_scale = _ZERO_FRACTION * max(grad_norms, default=0.0)
    for name, ref in expected.items():
        if name not in actual:
            raise VerificationError(f"segment {segment_name}, {graph} graph: output {name!r} is missing")
        got = actual[name]
        if got.size != ref.size:
            raise VerificationError(f"segment {segment_name}, {graph} graph: tensor {name!r} has shape "
                                    f"{got.shape}, PyTorch gives {ref.shape}")
        scale = zero_scale if name.startswith(names.GRAD) else 0.0
        err = rel_l2(got.reshape(ref.shape), ref, scale)
        errors[f"{graph}:{name}"] = err
        if not err <= TOLERANCE:
            raise VerificationError(f"segment {segment_name}, {graph} graph: tensor {name!r} has relative L2 error "
                                    f"{err:.2e} against PyTorch float64 (tolerance {TOLERANCE:.0e})")


def verify_segment(segment_name: str, graphs: dict[str, onnx.ModelProto], state: dict[str, np.ndarray],
                   ref: Reference, x: np.ndarray, seed: np.ndarray, with_loss: bool) -> dict[str, float]:
    """Run every graph of a segment on onnxruntime and compare with the float64 reference; errors by tensor."""
    errors: dict[str, float] = {}
    feeds = {**state, names.X: x}
    train_expected = dict(ref.train)
    if with_loss:
        got = _run(graphs[names.TRAIN], {**feeds, names.LABELS: seed})
        _compare(segment_name, names.TRAIN, got, train_expected, errors)
    else:
        fwd = _run(graphs[names.FORWARD], feeds)
        fwd_expected = {k: v for k, v in train_expected.items() if k == names.OUT or k.startswith(names.NEW_BUFFER)}
        _compare(segment_name, names.FORWARD, fwd, fwd_expected, errors)
        bwd = _run(graphs[names.BACKWARD], {**feeds, **fwd, names.GRAD_OUT: seed})
        bwd_expected = {k: v for k, v in train_expected.items() if k not in fwd_expected}
        _compare(segment_name, names.BACKWARD, bwd, bwd_expected, errors)
    got = _run(graphs[names.EVAL], feeds)
    _compare(segment_name, names.EVAL, got, {names.OUT: ref.eval_out}, errors)
    return errors
