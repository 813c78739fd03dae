"""Fixtures of the runtime tests: the committed LeNet-5 Fashion-MNIST artifact and real Fashion-MNIST data."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgepsl.data.idx import load_fashion_mnist

ARTIFACT = Path(__file__).resolve().parents[2] / "edgepsl" / "artifacts" / "lenet5-fmnist"


def normalise(images: np.ndarray) -> np.ndarray:
    """uint8 N x 28 x 28 -> float32 N x 1 x 28 x 28, scaled to zero mean and unit variance (Fashion-MNIST stats)."""
    return ((images.astype(np.float32) / 255.0 - 0.2860) / 0.3530)[:, None]


@pytest.fixture(scope="session")
def fashion_mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels): a 3200/1000 subset of Fashion-MNIST."""
    train_x, train_y = load_fashion_mnist("train")
    test_x, test_y = load_fashion_mnist("t10k")
    return normalise(train_x[:3200]), train_y[:3200], normalise(test_x[:1000]), test_y[:1000]


@pytest.fixture
def artifact_copy(tmp_path: Path) -> Path:
    """A private copy of the committed artifact that a test may corrupt."""
    target = tmp_path / "lenet5-fmnist"
    shutil.copytree(ARTIFACT, target)
    return target
