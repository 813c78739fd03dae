"""A client's private data: its share of Fashion-MNIST, normalised, and the mini-batch of every round."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgepsl.data.idx import load_fashion_mnist
from edgepsl.data.partition import partition
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.errors import RunConfigError

MEAN, STD = 0.2860, 0.3530


def normalise(images: np.ndarray) -> np.ndarray:
    """uint8 N x 28 x 28 -> float32 N x 1 x 28 x 28 with the Fashion-MNIST mean and standard deviation."""
    return ((images.astype(np.float32) / 255.0 - MEAN) / STD)[:, None]


def test_set(config: RunConfig) -> tuple[np.ndarray, np.ndarray]:
    """The (first test_samples of the) Fashion-MNIST test split, normalised: the coordinator's evaluation data."""
    x, y = load_fashion_mnist("t10k", config.data_dir)
    n = config.test_samples or len(y)
    return normalise(x[:n]), y[:n]


@dataclass
class ClientData:
    """One client's samples and labels; batch(round) is a pure function of (seed, client index, round)."""

    x: np.ndarray
    y: np.ndarray
    index: int
    seed: int
    batch_size: int

    @property
    def samples(self) -> int:
        """Number of samples this client holds (its FedAvg weight)."""
        return int(self.y.shape[0])

    def batch(self, round_: int) -> tuple[np.ndarray, np.ndarray]:
        """The round's mini-batch: epochs of seeded permutations, the last incomplete batch of an epoch dropped."""
        per_epoch = self.samples // self.batch_size
        epoch, step = divmod(round_, per_epoch)
        perm = np.random.default_rng([self.seed, self.index, epoch]).permutation(self.samples)
        idx = np.sort(perm[step * self.batch_size:(step + 1) * self.batch_size])
        return self.x[idx], self.y[idx]


def client_data(config: RunConfig, index: int) -> ClientData:
    """Client `index`'s share of the Fashion-MNIST train split under the configured partition."""
    x, y = load_fashion_mnist("train", config.data_dir)
    if config.train_samples:
        x, y = x[:config.train_samples], y[:config.train_samples]
    shares = partition(y, config.clients, config.partition, config.seed, config.alpha, min_size=config.batch_size)
    mine = shares[index]
    if len(mine) < config.batch_size:
        raise RunConfigError(f"client {index} holds {len(mine)} samples, fewer than one batch of {config.batch_size}")
    return ClientData(normalise(x[mine]), y[mine], index, config.seed, config.batch_size)
