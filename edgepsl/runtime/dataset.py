"""The share of Fashion-MNIST of a client started without a data spec, from the run configuration.

Reading, normalising and checking data of any source is edgepsl.data.spec (the coordinator's test set is
load_test_data of the config's test_spec); this module keeps the configuration-driven share on top of it.
"""
from __future__ import annotations

import numpy as np

from edgepsl.data.idx import load_fashion_mnist
from edgepsl.data.partition import partition
from edgepsl.data.spec import FASHION_MNIST, ClientData
from edgepsl.runtime.config import RunConfig

__all__ = ["ClientData", "client_data", "normalise"]


def normalise(images: np.ndarray) -> np.ndarray:
    """uint8 N x 28 x 28 -> float32 N x 1 x 28 x 28 with the Fashion-MNIST mean and standard deviation."""
    return FASHION_MNIST.apply(images[:, None], "Fashion-MNIST")


def client_data(config: RunConfig, index: int) -> ClientData:
    """Client `index`'s share of the Fashion-MNIST train split under the configured partition."""
    x, y = load_fashion_mnist("train", config.data_dir)
    if config.train_samples:
        x, y = x[:config.train_samples], y[:config.train_samples]
    shares = partition(y, config.clients, config.partition, config.seed, config.alpha, min_size=config.batch_size)
    mine = shares[index]
    return ClientData(normalise(x[mine]), y[mine], index, config.seed, config.batch_size)
