"""ResNet-18 and ResNet-101 for 32x32 colour images (3x3 stem, no stem pooling); one block per residual unit."""
from __future__ import annotations

import torch
from torch import nn


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    """Identity, or a strided 1x1 convolution with BatchNorm when the shape changes."""
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a residual connection."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.shortcut = _shortcut(cin, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), each with BatchNorm, and a residual connection."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The bottleneck residual unit."""
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        return torch.relu(self.bn3(self.conv3(y)) + self.shortcut(x))


def _resnet(block: type[BasicBlock] | type[Bottleneck], depths: list[int], num_classes: int) -> nn.Sequential:
    """Stem block, one block per residual unit, and a pooling + linear head block."""
    blocks: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())]
    cin = 64
    for stage, depth in enumerate(depths):
        width = 64 * 2 ** stage
        for i in range(depth):
            blocks.append(block(cin, width, 2 if stage > 0 and i == 0 else 1))
            cin = width * block.expansion
    blocks.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)))
    return nn.Sequential(*blocks)


def resnet18(num_classes: int = 10) -> nn.Sequential:
    """ResNet-18: stem, 8 basic blocks, head (10 blocks)."""
    return _resnet(BasicBlock, [2, 2, 2, 2], num_classes)


def resnet101(num_classes: int = 10) -> nn.Sequential:
    """ResNet-101: stem, 33 bottleneck blocks, head (35 blocks)."""
    return _resnet(Bottleneck, [3, 4, 23, 3], num_classes)
