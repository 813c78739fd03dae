"""LeNet-5 for 28x28 grey images (padded first convolution, ReLU, max-pooling), as five cuttable blocks."""
from torch import nn


def lenet5(num_classes: int = 10) -> nn.Sequential:
    """conv(6,5x5)-pool, conv(16,5x5)-pool, fc 400-120, fc 120-84, fc 84-classes."""
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU()),
        nn.Sequential(nn.Linear(120, 84), nn.ReLU()),
        nn.Linear(84, num_classes),
    )
