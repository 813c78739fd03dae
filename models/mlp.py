"""A multilayer perceptron for 28x28 grey images, as four cuttable blocks."""
from torch import nn


def mlp(num_classes: int = 10) -> nn.Sequential:
    """784-256-128-64-classes with ReLU; the flatten belongs to the first block."""
    return nn.Sequential(
        nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 256), nn.ReLU()),
        nn.Sequential(nn.Linear(256, 128), nn.ReLU()),
        nn.Sequential(nn.Linear(128, 64), nn.ReLU()),
        nn.Linear(64, num_classes),
    )
