"""VGG-11 and VGG-19 with BatchNorm for 32x32 colour images; one block per convolution, the pool joins its block."""
from __future__ import annotations

from torch import nn

_CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


def _vgg(config: list[int | str], num_classes: int) -> nn.Sequential:
    """Conv-BN-ReLU blocks (a following max-pool joins the block) and a linear classifier block."""
    blocks: list[nn.Sequential] = []
    channels = 3
    for item in config:
        if item == "M":
            blocks[-1].append(nn.MaxPool2d(2))
            continue
        blocks.append(nn.Sequential(nn.Conv2d(channels, int(item), 3, padding=1), nn.BatchNorm2d(int(item)), nn.ReLU()))
        channels = int(item)
    blocks.append(nn.Sequential(nn.Flatten(), nn.Linear(channels, num_classes)))
    return nn.Sequential(*blocks)


def vgg11(num_classes: int = 10) -> nn.Sequential:
    """VGG-11 (configuration A) with BatchNorm: 8 convolution blocks and a classifier block."""
    return _vgg(_CONFIGS["vgg11"], num_classes)


def vgg19(num_classes: int = 10) -> nn.Sequential:
    """VGG-19 (configuration E) with BatchNorm: 16 convolution blocks and a classifier block."""
    return _vgg(_CONFIGS["vgg19"], num_classes)
