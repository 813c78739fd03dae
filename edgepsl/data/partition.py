"""Split a labelled data set across clients: IID (equal random shares) or Dirichlet non-IID, seeded."""
from __future__ import annotations

import numpy as np

from edgepsl.errors import EdgePSLError


class PartitionError(EdgePSLError):
    """A partition cannot be made as asked (too few samples, bad alpha)."""


def iid_split(n: int, clients: int, seed: int) -> list[np.ndarray]:
    """Sample indices 0..n-1 shuffled with `seed` and cut into `clients` shares differing by at most one."""
    if clients < 1 or n < clients:
        raise PartitionError(f"cannot split {n} samples across {clients} clients: each client needs one sample")
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(perm, clients)]


def dirichlet_split(labels: np.ndarray, clients: int, alpha: float, seed: int, min_size: int = 1) -> list[np.ndarray]:
    """Per class, shares drawn from Dirichlet(alpha) over clients; redrawn until every client has min_size samples."""
    if alpha <= 0:
        raise PartitionError(f"the Dirichlet concentration alpha must be > 0, got {alpha}")
    if clients < 1 or len(labels) < clients * min_size:
        raise PartitionError(f"cannot give {clients} clients {min_size} of {len(labels)} samples each")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    for _ in range(1000):
        parts: list[list[np.ndarray]] = [[] for _ in range(clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            cuts = (np.cumsum(rng.dirichlet(np.full(clients, alpha))) * len(idx)).astype(np.int64)[:-1]
            for j, piece in enumerate(np.split(idx, cuts)):
                parts[j].append(piece)
        out = [np.sort(np.concatenate(p)) for p in parts]
        if min(len(p) for p in out) >= min_size:
            return out
    raise PartitionError(f"no Dirichlet(alpha={alpha}) draw in 1000 gave every client {min_size} samples; "
                         "raise alpha or lower the batch size")


def partition(labels: np.ndarray, clients: int, kind: str, seed: int, alpha: float = 0.5,
              min_size: int = 1) -> list[np.ndarray]:
    """The index shares of every client for a partition kind: 'iid' or 'dirichlet'."""
    if kind == "iid":
        return iid_split(len(labels), clients, seed)
    if kind == "dirichlet":
        return dirichlet_split(labels, clients, alpha, seed, min_size)
    raise PartitionError(f"unknown partition {kind!r}; choose iid or dirichlet")
