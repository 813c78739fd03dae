"""Model state on the wire and FedAvg: segment parameters/buffers and optimizer state as named tensors."""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.protocol import StateShapes, TensorShape
from edgepsl.segment import SGD, Adam, Optimizer, Segment

MODEL, OPTIM = "m/", "o/"


def make_optimizer(config: RunConfig, params: dict[str, np.ndarray]) -> Optimizer:
    """The optimizer the configuration names, over one segment's parameters."""
    if config.optimizer == "adam":
        return Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def lr_at(config: RunConfig, round_: int) -> float:
    """The learning rate of a round: constant, or cosine-annealed from lr to 0 over the configured rounds."""
    if config.lr_schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * round_ / config.rounds))
    return config.lr


def pack(segment: Segment, prefix: str, optimizer: Optimizer | None = None) -> dict[str, np.ndarray]:
    """A segment's state (p:NAME, b:NAME) under `prefix`+MODEL, and its optimizer state under `prefix`+OPTIM."""
    out = {prefix + MODEL + k: v for k, v in segment.get_state().items()}
    if optimizer is not None:
        out.update({prefix + OPTIM + k: v for k, v in optimizer.state_dict().items()})
    return out


def unpack(tensors: Mapping[str, np.ndarray], prefix: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(model state, optimizer state) stored under `prefix` by pack(); copies, so they may be kept."""
    model = {k[len(prefix + MODEL):]: np.array(v) for k, v in tensors.items() if k.startswith(prefix + MODEL)}
    optim = {k[len(prefix + OPTIM):]: np.array(v) for k, v in tensors.items() if k.startswith(prefix + OPTIM)}
    return model, optim


def restore(segment: Segment, optimizer: Optimizer, tensors: Mapping[str, np.ndarray], prefix: str) -> None:
    """Load model state (and optimizer state, when present) sent by pack(); StateError if it does not fit."""
    model, optim = unpack(tensors, prefix)
    segment.set_state(model)
    if optim:
        optimizer.load_state_dict(optim)


def shapes(segments: Mapping[str, Segment]) -> StateShapes:
    """What a STATE for these segments (prefix -> segment) carries: their model tensors exactly, optimizer tensors."""
    model = {prefix + MODEL + k: TensorShape(tuple(v.shape), v.dtype)
             for prefix, segment in segments.items() for k, v in segment.get_state().items()}
    return StateShapes(model, tuple(prefix + OPTIM for prefix in segments))
