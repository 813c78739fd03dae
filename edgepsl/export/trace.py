"""Trace a segment's joint (forward + backward) or eval function into a pure aten FX graph with a symbolic batch axis."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.fx.experimental.proxy_tensor import make_fx

from edgepsl.export.decompositions import WINOGRAD_TILE, decomposition_table
from edgepsl.export.losses import loss_value
from edgepsl.segment import names
from edgepsl.segment.losses import Loss


@dataclass
class TracedGraph:
    """An FX graph with the ONNX input/output names of its flat arguments and results."""

    module: torch.fx.GraphModule
    example_args: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    batch_inputs: list[int]


def segment_state(segment: nn.Module) -> tuple[list[str], list[str]]:
    """Parameter and buffer names of a segment, in module order."""
    return [n for n, _ in segment.named_parameters()], [n for n, _ in segment.named_buffers()]


def _joint(segment: nn.Module, loss: Loss | None, grad_input: bool) -> Callable[..., tuple[torch.Tensor, ...]]:
    """f(params, buffers, x, grad_out|labels) -> (out|loss, new buffers, grad_in?, param grads), BN in train mode;
    loss None for a segment that is not last."""
    pnames, bnames = segment_state(segment)

    def joint(*flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        params = list(flat[:len(pnames)])
        buffers = [b.clone() for b in flat[len(pnames):len(pnames) + len(bnames)]]
        x, seed = flat[-2], flat[-1]
        out = torch.func.functional_call(segment, {**dict(zip(pnames, params)), **dict(zip(bnames, buffers))}, (x,))
        wrt = ([x] if grad_input else []) + params
        if loss is not None:
            head = loss_value(loss, out, seed)
            grads = torch.autograd.grad(head, wrt)
        else:
            head = out
            grads = torch.autograd.grad(out, wrt, seed)
        return (head, *buffers, *grads)

    return joint


def _eval(segment: nn.Module) -> Callable[..., torch.Tensor]:
    """f(params, buffers, x) -> out with BatchNorm using running statistics."""
    pnames, bnames = segment_state(segment)

    def forward(*flat: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(segment, dict(zip(pnames + bnames, flat[:-1])), (flat[-1],))

    return forward


def _state_args(segment: nn.Module, requires_grad: bool) -> list[torch.Tensor]:
    """Detached copies of a segment's parameters and buffers, in module order."""
    params = [p.detach().clone().requires_grad_(requires_grad) for p in segment.parameters()]
    return params + [b.detach().clone() for b in segment.buffers()]


def trace_joint(segment: nn.Module, x: torch.Tensor, seed: torch.Tensor, loss: Loss | None,
                grad_input: bool, winograd_tile: int = WINOGRAD_TILE) -> TracedGraph:
    """Trace the training joint; seed is grad_out (vector-Jacobian product, loss None) or the loss's labels."""
    pnames, bnames = segment_state(segment)
    segment.train()
    args = _state_args(segment, True) + [x.detach().clone().requires_grad_(grad_input), seed.detach().clone()]
    with_loss = loss is not None
    module = make_fx(_joint(segment, loss, grad_input), decomposition_table=decomposition_table(winograd_tile),
                     tracing_mode="symbolic")(*args)
    inputs = [names.PARAM + n for n in pnames] + [names.BUFFER + n for n in bnames]
    inputs += [names.X, names.LABELS if with_loss else names.GRAD_OUT]
    outputs = [names.LOSS if with_loss else names.OUT] + [names.NEW_BUFFER + n for n in bnames]
    outputs += ([names.GRAD_IN] if grad_input else []) + [names.GRAD + n for n in pnames]
    return TracedGraph(module, tuple(a.detach() for a in args), inputs, outputs, [len(args) - 2, len(args) - 1])


def trace_eval(segment: nn.Module, x: torch.Tensor, winograd_tile: int = WINOGRAD_TILE) -> TracedGraph:
    """Trace the inference forward (BatchNorm with running statistics), parameters and buffers as inputs."""
    pnames, bnames = segment_state(segment)
    segment.eval()
    args = _state_args(segment, False) + [x.detach().clone()]
    with torch.no_grad():
        module = make_fx(_eval(segment), decomposition_table=decomposition_table(winograd_tile),
                         tracing_mode="symbolic")(*args)
    segment.train()
    inputs = [names.PARAM + n for n in pnames] + [names.BUFFER + n for n in bnames] + [names.X]
    return TracedGraph(module, tuple(args), inputs, [names.OUT], [len(args) - 1])
