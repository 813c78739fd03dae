"""Write each client's share of a labelled data set as its own .npz file (arrays x, y), partitioned IID or
Dirichlet exactly as the demo's in-process partition does."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from edgepsl.data.idx import FASHION_MNIST_DIR, load_fashion_mnist
from edgepsl.data.partition import partition


def share_file(out_dir: str | os.PathLike[str], index: int) -> Path:
    """The file of client `index`'s share: OUT/client{index}.npz."""
    return Path(out_dir) / f"client{index}.npz"


def save_npz(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """Write arrays x and y to an uncompressed .npz atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, x=x, y=y)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_client_shares(x: np.ndarray, y: np.ndarray, out_dir: str | os.PathLike[str], clients: int,
                        kind: str = "iid", seed: int = 0, alpha: float = 0.5, min_size: int = 1) -> list[Path]:
    """Partition (x, y) across `clients` (kind iid or dirichlet, as edgepsl.data.partition) and write one .npz per
    client; the spec of client j is then `npz:OUT/client{j}.npz`. Partitioning uses the labels y."""
    shares = partition(y, clients, kind, seed, alpha, min_size)
    paths = []
    for j, mine in enumerate(shares):
        path = share_file(out_dir, j)
        save_npz(path, x[mine], y[mine])
        paths.append(path)
    return paths


def write_fashion_mnist_shares(out_dir: str | os.PathLike[str], clients: int, kind: str = "iid", seed: int = 0,
                               alpha: float = 0.5, train_samples: int = 0, min_size: int = 1,
                               data_dir: str | os.PathLike[str] = FASHION_MNIST_DIR) -> list[Path]:
    """Each client's share of the Fashion-MNIST train split (its first train_samples if > 0), as the demo
    partitions it (min_size = the batch size there): raw uint8 images and int64 labels."""
    x, y = load_fashion_mnist("train", data_dir)
    if train_samples:
        x, y = x[:train_samples], y[:train_samples]
    return write_client_shares(x, y, out_dir, clients, kind, seed, alpha, min_size)
