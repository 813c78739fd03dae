"""Read IDX files (MNIST, Fashion-MNIST; optionally gzip-compressed) into numpy arrays."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from edgepsl.errors import EdgePSLError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"),
           0x0E: np.dtype(">f8")}


class DatasetError(EdgePSLError):
    """A dataset cannot be read."""


class DatasetMissingError(DatasetError):
    """A dataset file is not installed."""


class IdxFormatError(DatasetError):
    """A file is not a valid IDX file (bad magic, unknown type code, wrong length)."""


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """The array stored in an IDX file (.gz files are decompressed)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetMissingError(f"{path} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise IdxFormatError(f"{path} cannot be read: {exc}") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise IdxFormatError(f"{path} is not an IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4)) if len(data) >= header else ()
    dtype = np.dtype(_DTYPES[data[2]])
    if len(data) < header or len(data) - header != int(np.prod(shape)) * dtype.itemsize:
        raise IdxFormatError(f"{path}: the data length does not match the header's shape {shape}")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def load_fashion_mnist(split: str = "train", directory: str | os.PathLike[str] = FASHION_MNIST_DIR,
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 N x 28 x 28, labels int64 N) of the train or t10k split of Fashion-MNIST."""
    if split not in ("train", "t10k"):
        raise DatasetError(f"split must be 'train' or 't10k', got {split!r}")
    root = Path(directory)
    files = root / f"{split}-images-idx3-ubyte.gz", root / f"{split}-labels-idx1-ubyte.gz"
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise DatasetMissingError(f"Fashion-MNIST files {missing} are missing; install the Debian package "
                                  f"dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")
    images, labels = read_idx(files[0]), read_idx(files[1])
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise IdxFormatError(f"{root}: {images.shape[0] if images.ndim else 0} images but labels of shape {labels.shape}")
    return images, labels.astype(np.int64)
