"""Verify exported graphs against PyTorch float64 autograd before anything is written.

Each tensor must be within TOLERANCE (relative L2) of PyTorch float64. Where float32 arithmetic itself cannot
reach that (ReLU/ReLU6/max-pool decision flips at |pre-activation| ~ 1e-6, badly conditioned BatchNorm over few
values, both seen in deep segments), the bound is NOISE_FACTOR times PyTorch float32's own error against
float64 on the same data: the largest over two float32 memory layouts and INPUT_ROUNDINGS copies of the input with
elements moved at random by one float32 ulp, each of which rounds differently. A decision flip moves a gradient
by a step whose size depends on which unit flips: in a ResNet-101 bottleneck block, PyTorch float32's grad_in
error was 1.7e-6, 1.7e-4 or 1.9e-3 depending on which of these runs it was, so a few runs are needed to see
the steps float32 can take. A mis-export (inference BatchNorm, a loss gradient scaled by the batch size, a wrong
convolution) is off by O(1) and fails.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from torch import nn

from edgepsl.export.errors import VerificationError
from edgepsl.export.losses import loss_value
from edgepsl.segment import names
from edgepsl.segment.losses import Loss
from edgepsl.segment.session import open_session

TOLERANCE = 1e-5
NOISE_FACTOR = 10.0
# A gradient (or new buffer) whose float64 norm is below this fraction of the largest gradient (buffer) norm of
# its graph is analytically (near) zero, e.g. the bias gradient of a convolution followed by BatchNorm, or the
# running mean of a BatchNorm fed by a zero-mean BatchNorm output; its error is measured against that fraction
# of the largest norm, since a relative error of float32 rounding noise around zero means nothing.
ZERO_FRACTION = 1e-2
INPUT_ROUNDINGS = 8
_ROUNDING_SEED = 24
_GROUPS = (names.GRAD, names.NEW_BUFFER)


@dataclass
class Reference:
    """PyTorch float64 results of one training step and one eval forward, and PyTorch float32's error on them."""

    train: dict[str, np.ndarray]
    eval_out: np.ndarray
    float32_error: dict[str, float]


def rel_l2(actual: np.ndarray, expected: np.ndarray, scale: float) -> float:
    """||actual - expected|| / max(||expected||, scale), in float64."""
    a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(a - e) / max(np.linalg.norm(e), scale, 1e-300))


def tensor_errors(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> dict[str, float]:
    """Relative L2 error of each expected tensor; gradients and new buffers get the near-zero floor of their group."""
    floors = {}
    for group in _GROUPS:
        norms = [float(np.linalg.norm(np.asarray(v, np.float64))) for k, v in expected.items() if k.startswith(group)]
        floors[group] = ZERO_FRACTION * max(norms, default=0.0)
    errors = {}
    for name, ref in expected.items():
        scale = next((floor for group, floor in floors.items() if name.startswith(group)), 0.0)
        errors[name] = rel_l2(np.reshape(actual[name], np.shape(ref)), ref, scale)
    return errors


def _step(segment: nn.Module, x: torch.Tensor, seed: torch.Tensor, loss: Loss | None, grad_input: bool,
          dtype: torch.dtype, channels_last: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Train-mode out/loss, new buffers, grad_in and parameter gradients, and the eval-mode output, in `dtype`."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    train = copy.deepcopy(segment).to(dtype).train()
    evaluated = copy.deepcopy(segment).to(dtype).eval()
    if channels_last:
        train, evaluated = train.to(memory_format=layout), evaluated.to(memory_format=layout)
    xx = x.detach().to(dtype).contiguous(memory_format=layout).clone().requires_grad_(grad_input)
    out = train(xx)
    params = list(train.parameters())
    wrt = ([xx] if grad_input else []) + params
    if loss is not None:
        head = loss_value(loss, out, seed)
        grads = torch.autograd.grad(head, wrt)
    else:
        head = out
        grads = torch.autograd.grad(out, wrt, seed.to(dtype))
    result = {names.OUT if loss is None else names.LOSS: head.detach().double().numpy()}
    result.update({names.NEW_BUFFER + n: b.numpy() for n, b in train.named_buffers()})
    if grad_input:
        result[names.GRAD_IN] = grads[0].double().numpy()
    result.update({names.GRAD + n: g.double().numpy()
                   for (n, _), g in zip(train.named_parameters(), grads[len(wrt) - len(params):])})
    with torch.no_grad():
        eval_out = evaluated(x.to(dtype).contiguous(memory_format=layout)).double().numpy()
    return result, eval_out


def reference(segment: nn.Module, x: torch.Tensor, seed: torch.Tensor, loss: Loss | None,
              grad_input: bool) -> Reference:
    """The float64 reference and PyTorch float32's error against it (worst over layouts and input roundings); seed is
    grad_out (loss None: a segment that is not last) or the loss's labels."""
    train, eval_out = _step(segment, x, seed, loss, grad_input, torch.float64, False)
    float32_error: dict[str, float] = {}
    for x32 in _roundings(x):
        for channels_last in ((False, True) if x.dim() == 4 else (False,)):
            train32, eval32 = _step(segment, x32, seed, loss, grad_input, torch.float32, channels_last)
            errors = tensor_errors({**train32, f"{names.EVAL}:{names.OUT}": eval32},
                                   {**train, f"{names.EVAL}:{names.OUT}": eval_out})
            float32_error = {k: max(v, float32_error.get(k, 0.0)) for k, v in errors.items()}
    return Reference(train, eval_out, float32_error)


def _roundings(x: torch.Tensor) -> list[torch.Tensor]:
    """The input as given, then (for a float input) INPUT_ROUNDINGS seeded float32 copies with each element left
    alone or moved one ulp down or up at random (zeros stay: a ReLU's exact zeros have no rounding, and one ulp from
    zero is a subnormal, which slows float arithmetic down by orders of magnitude)."""
    if not x.is_floating_point():
        return [x]
    values = x.detach().to(torch.float32).numpy()
    rng = np.random.default_rng(_ROUNDING_SEED)
    copies = [x]
    for _ in range(INPUT_ROUNDINGS):
        sign = np.where(values == 0, 0, rng.integers(-1, 2, values.shape))
        away = np.nextafter(values, np.where(sign > 0, np.inf, -np.inf).astype(np.float32))
        copies.append(torch.from_numpy(np.where(sign == 0, values, away)))
    return copies


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a model on onnxruntime (CPU, one thread: verification batches are small) with the feeds it declares."""
    session = open_session(model.SerializeToString(), threads=1)
    outputs = session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})
    return dict(zip([o.name for o in session.get_outputs()], outputs))


def _compare(segment_name: str, graph: str, actual: dict[str, np.ndarray], expected: dict[str, np.ndarray],
             float32_error: dict[str, float], errors: dict[str, float]) -> None:
    """Record each tensor's error; raise VerificationError naming the first tensor over its bound."""
    for name, ref in expected.items():
        if name not in actual:
            raise VerificationError(f"segment {segment_name}, {graph} graph: output {name!r} is missing")
        if np.size(actual[name]) != np.size(ref):
            raise VerificationError(f"segment {segment_name}, {graph} graph: tensor {name!r} has shape "
                                    f"{np.shape(actual[name])}, PyTorch gives {np.shape(ref)}")
    for name, err in tensor_errors(actual, expected).items():
        errors[f"{graph}:{name}"] = err
        noise = float32_error[f"{names.EVAL}:{name}" if graph == names.EVAL else name]
        bound = max(TOLERANCE, NOISE_FACTOR * noise)
        if not err <= bound:
            raise VerificationError(f"segment {segment_name}, {graph} graph: tensor {name!r} has relative L2 error "
                                    f"{err:.2e} against PyTorch float64 (bound {bound:.0e}; tolerance "
                                    f"{TOLERANCE:.0e}, PyTorch float32 itself {noise:.1e})")


def verify_segment(segment_name: str, graphs: dict[str, onnx.ModelProto], state: dict[str, np.ndarray],
                   ref: Reference, x: np.ndarray, seed: np.ndarray, last: bool) -> dict[str, float]:
    """Run every graph of a segment on onnxruntime and compare with the float64 reference; errors by tensor."""
    errors: dict[str, float] = {}
    feeds = {**state, names.X: x}
    noise = ref.float32_error
    if last:
        got = _run(graphs[names.TRAIN], {**feeds, names.LABELS: seed})
        _compare(segment_name, names.TRAIN, got, ref.train, noise, errors)
    else:
        fwd = _run(graphs[names.FORWARD], feeds)
        fwd_expected = {k: v for k, v in ref.train.items() if k == names.OUT or k.startswith(names.NEW_BUFFER)}
        _compare(segment_name, names.FORWARD, fwd, fwd_expected, noise, errors)
        bwd = _run(graphs[names.BACKWARD], {**feeds, **fwd, names.GRAD_OUT: seed})
        bwd_expected = {k: v for k, v in ref.train.items() if k not in fwd_expected}
        _compare(segment_name, names.BACKWARD, bwd, bwd_expected, noise, errors)
    got = _run(graphs[names.EVAL], feeds)
    _compare(segment_name, names.EVAL, got, {names.OUT: ref.eval_out}, noise, errors)
    return errors
