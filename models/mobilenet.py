"""MobileNetV2 for 32x32 colour images (CIFAR strides); one block per inverted residual unit."""
from __future__ import annotations

import torch
from torch import nn

# (expansion, output channels, repeats, first stride); CIFAR variant: stride 1 in the stem and the second stage.
_STAGES = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """Convolution + BatchNorm (+ ReLU6)."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1x1 expansion, 3x3 depthwise convolution, 1x1 linear projection; residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = [_conv_bn(cin, hidden, 1)] if expansion != 1 else []
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden), _conv_bn(hidden, cout, 1, act=False)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """body(x), plus x when the unit keeps the shape."""
        y = self.body(x)
        return x + y if self.residual else y


def mobilenetv2(num_classes: int = 10) -> nn.Sequential:
    """Stem, 17 inverted residual blocks, 1x1 conv to 1280 channels, pooling + linear head (20 blocks)."""
    blocks: list[nn.Module] = [_conv_bn(3, 32, 3)]
    cin = 32
    for expansion, cout, repeats, stride in _STAGES:
        for i in range(repeats):
            blocks.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expansion))
            cin = cout
    blocks.append(_conv_bn(cin, 1280, 1))
    blocks.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, num_classes)))
    return nn.Sequential(*blocks)
