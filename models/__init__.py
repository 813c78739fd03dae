"""Model definitions for export: each model is an nn.Sequential of ordered, cuttable blocks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from edgepsl.errors import EdgePSLError
from models import lenet, mlp, mobilenet, resnet, vgg


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder, input shape (C, H, W), class count and default cuts."""

    name: str
    build: Callable[[int], nn.Sequential]
    input_shape: tuple[int, int, int]
    num_classes: int
    default_cuts: tuple[int, int]
    description: str


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("mlp", mlp.mlp, (1, 28, 28), 10, (1, 3), "MLP 784-256-128-64-10 for 28x28 grey images"),
        ModelSpec("lenet5", lenet.lenet5, (1, 28, 28), 10, (1, 3), "LeNet-5 for 28x28 grey images"),
        ModelSpec("vgg11", vgg.vgg11, (3, 32, 32), 10, (2, 8), "VGG-11 with BatchNorm for 32x32 colour images"),
        ModelSpec("vgg19", vgg.vgg19, (3, 32, 32), 10, (2, 16), "VGG-19 with BatchNorm for 32x32 colour images"),
        ModelSpec("resnet18", resnet.resnet18, (3, 32, 32), 10, (3, 9), "ResNet-18 for 32x32 colour images"),
        ModelSpec("resnet101", resnet.resnet101, (3, 32, 32), 10, (4, 34), "ResNet-101 for 32x32 colour images"),
        ModelSpec("mobilenetv2", mobilenet.mobilenetv2, (3, 32, 32), 10, (3, 18), "MobileNetV2 for 32x32 colour images"),
    )
}


class UnknownModelError(EdgePSLError):
    """The model name is not registered in models.MODELS."""


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model; raises UnknownModelError naming the known models."""
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}") from None


def build(name: str, num_classes: int | None = None, seed: int = 0) -> nn.Sequential:
    """Build a registered model with a seeded initialisation."""
    spec = get_spec(name)
    torch.manual_seed(seed)
    return spec.build(num_classes or spec.num_classes)
