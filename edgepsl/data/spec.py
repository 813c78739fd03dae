"""Where a role's data is (`npz:FILE`, `idx:DIR`, `python:MODULE:FUNCTION`), read and checked against an artifact.

A spec names the data on the machine that reads it, never the coordinator's path. The arrays are normalised per
channel (Normalisation, from the role's configuration) and checked against the artifact's manifest: inputs must
have the model's input shape, labels the loss's dtype and shape (int64 class indices inside the class count, or
targets shaped like the output). A mismatch is a DataShapeError naming the source and the mismatch.
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgepsl.data.idx import DatasetError, DatasetMissingError, load_fashion_mnist
from edgepsl.reference import load_reference
from edgepsl.segment.manifest import Manifest

KINDS = ("npz", "idx", "python")


class DataSpecError(DatasetError):
    """A data spec is malformed, or what it names cannot be read (missing file, missing arrays, bad function)."""


class DataShapeError(DatasetError):
    """Data do not fit the artifact: wrong input shape or dtype, wrong label dtype, shape or range; names the source."""


@dataclass(frozen=True)
class Normalisation:
    """x -> (x / divide - mean[c]) / std[c] over the channel axis (axis 1), in float32; one value serves all
    channels (divide = 255 maps 8-bit pixels to [0, 1])."""

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    divide: float = 1.0

    def __post_init__(self) -> None:
        if not self.mean or len(self.mean) != len(self.std):
            raise DataSpecError(f"normalisation needs as many means as standard deviations (one per channel), "
                                f"got mean {list(self.mean)} and std {list(self.std)}")
        if min(self.std) <= 0 or not self.divide > 0:
            raise DataSpecError(f"normalisation std and divide must be > 0, got std {list(self.std)}, "
                                f"divide {self.divide}")

    @classmethod
    def from_lists(cls, mean: Sequence[float], std: Sequence[float], divide: float = 1.0) -> "Normalisation":
        """A normalisation from configuration lists (e.g. TOML `mean = [0.49, 0.48, 0.45]`)."""
        return cls(tuple(float(m) for m in mean), tuple(float(s) for s in std), float(divide))

    def apply(self, x: np.ndarray, source: str) -> np.ndarray:
        """The normalised float32 array; DataShapeError if x's channel count is not the normalisation's."""
        out = np.asarray(x, dtype=np.float32) / np.float32(self.divide)
        channels = len(self.mean)
        if channels == 1:
            return (out - np.float32(self.mean[0])) / np.float32(self.std[0])
        if out.ndim < 2 or out.shape[1] != channels:
            raise DataShapeError(f"{source}: normalisation has {channels} channels but x has shape {list(out.shape)} "
                                 f"(channels on axis 1)")
        shape = (1, channels) + (1,) * (out.ndim - 2)
        mean, std = np.array(self.mean, np.float32).reshape(shape), np.array(self.std, np.float32).reshape(shape)
        return (out - mean) / std


# Fashion-MNIST's pixel mean and standard deviation on [0, 1] (the demo's data).
FASHION_MNIST = Normalisation((0.2860,), (0.3530,), 255.0)


@dataclass(frozen=True)
class DataSpec:
    """A parsed spec: kind (npz, idx, python) and location (a file, a directory, or MODULE:FUNCTION)."""

    kind: str
    location: str

    @classmethod
    def parse(cls, text: str) -> "DataSpec":
        """`npz:FILE`, `idx:DIR` or `python:MODULE:FUNCTION` (MODULE may be path/to/file.py)."""
        kind, sep, location = text.partition(":")
        if not sep or kind not in KINDS or not location:
            raise DataSpecError(f"data spec {text!r} must be npz:FILE, idx:DIR or python:MODULE:FUNCTION")
        return cls(kind, location)

    def __str__(self) -> str:
        return f"{self.kind}:{self.location}"


def read_arrays(spec: str | DataSpec, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The raw (x, y) a spec names; idx specs read the `split` files (train or t10k) of an MNIST-layout directory."""
    parsed = spec if isinstance(spec, DataSpec) else DataSpec.parse(spec)
    if parsed.kind == "npz":
        return _read_npz(Path(parsed.location))
    if parsed.kind == "idx":
        try:
            return load_fashion_mnist(split, parsed.location)
        except DatasetMissingError as exc:
            raise DataSpecError(f"data spec {parsed}: {exc}") from None
    function = load_reference(parsed.location, f"data spec {parsed}")
    if not callable(function):
        raise DataSpecError(f"data spec {parsed} names a {type(function).__name__}, not a function")
    try:
        result = function()
    except Exception as exc:
        raise DataSpecError(f"data spec {parsed}: the function raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(result, tuple) or len(result) != 2:
        raise DataSpecError(f"data spec {parsed}: the function must return a tuple (x, y) of arrays, "
                            f"got {type(result).__name__}")
    return np.asarray(result[0]), np.asarray(result[1])


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Arrays x and y of an .npz file (no pickles)."""
    if not path.is_file():
        raise DataSpecError(f"data file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("x", "y") if k not in npz.files]
            if missing:
                raise DataSpecError(f"data file {path} lacks array(s) {missing}; it has {sorted(npz.files)} "
                                    f"(save it with numpy.savez(path, x=inputs, y=labels))")
            return npz["x"], npz["y"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataSpecError(f"data file {path} is not a readable .npz: {exc}") from exc


def _shape_text(shape: Sequence[int | None]) -> str:
    """A shape as BxCxH (B = any batch size)."""
    return "x".join("B" if d is None else str(d) for d in shape)


def conform(x: np.ndarray, y: np.ndarray, manifest: Manifest, normalisation: Normalisation,
            source: str) -> tuple[np.ndarray, np.ndarray]:
    """Normalised float32 inputs of the model's input shape and labels of the loss's dtype and shape, or a
    DataShapeError naming `source` and the mismatch. A one-channel model also takes inputs without the channel
    axis (N x 28 x 28 for 1x28x28)."""
    want = manifest.input.shape[1:]
    if not (np.issubdtype(x.dtype, np.number) and not np.issubdtype(x.dtype, np.complexfloating)):
        raise DataShapeError(f"{source}: x has dtype {x.dtype}; inputs must be real numbers")
    if x.ndim == len(want) and want[0] == 1 and tuple(x.shape[1:]) == tuple(want[1:]):
        x = x[:, None]
    if tuple(x.shape[1:]) != tuple(want):
        raise DataShapeError(f"{source}: x has shape {_shape_text(x.shape)}, but the artifact {manifest.model!r} "
                             f"takes inputs of shape {_shape_text(manifest.input.shape)} (B = samples)")
    if len(y) != len(x):
        raise DataShapeError(f"{source}: {len(x)} inputs but {len(y)} labels")
    if len(x) == 0:
        raise DataShapeError(f"{source}: holds no samples")
    return normalisation.apply(x, source), _labels(y, manifest, source)


def _labels(y: np.ndarray, manifest: Manifest, source: str) -> np.ndarray:
    """Labels converted to the manifest's label dtype, or DataShapeError."""
    spec, loss = manifest.labels, manifest.loss
    if loss.class_labels:
        if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
            raise DataShapeError(f"{source}: y has dtype {y.dtype} and shape {list(y.shape)}; loss {loss.name} "
                                 f"needs one integer class index per sample")
        classes = manifest.num_classes
        if y.min() < 0 or y.max() >= classes:
            raise DataShapeError(f"{source}: labels lie in {int(y.min())}..{int(y.max())}; the model has "
                                 f"{classes} classes (0..{classes - 1})")
        return y.astype(np.int64)
    want = spec.shape[1:]
    if y.ndim == 1 and tuple(want) == (1,):
        y = y[:, None]
    if not (np.issubdtype(y.dtype, np.floating) or np.issubdtype(y.dtype, np.integer)) or tuple(y.shape[1:]) != want:
        raise DataShapeError(f"{source}: y has dtype {y.dtype} and shape {_shape_text(y.shape)}; loss {loss.name} "
                             f"needs real targets of shape {_shape_text(spec.shape)} (B = samples)")
    y = y.astype(spec.dtype)
    if not np.isfinite(y).all():
        raise DataShapeError(f"{source}: y holds NaN or infinite targets")
    return y


@dataclass
class ClientData:
    """One client's samples and labels; batch(round) is a pure function of (seed, client index, round)."""

    x: np.ndarray
    y: np.ndarray
    index: int
    seed: int
    batch_size: int

    def __post_init__(self) -> None:
        if self.samples < self.batch_size:
            raise DataShapeError(f"client {self.index} holds {self.samples} samples, fewer than one batch of "
                                 f"{self.batch_size}")

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


def load_client_data(spec: str, manifest: Manifest, normalisation: Normalisation, *, index: int, seed: int,
                     batch_size: int) -> ClientData:
    """A client's own training data: read the spec (idx: the train split), normalise, check against the manifest."""
    x, y = read_arrays(spec, "train")
    x, y = conform(x, y, manifest, normalisation, f"data {spec}")
    return ClientData(x, y, index, seed, batch_size)


def load_test_data(spec: str, manifest: Manifest, normalisation: Normalisation,
                   limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The coordinator's evaluation data (idx: the t10k split), the first `limit` samples if limit > 0."""
    x, y = read_arrays(spec, "t10k")
    if limit:
        x, y = x[:limit], y[:limit]
    return conform(x, y, manifest, normalisation, f"test data {spec}")


@dataclass(frozen=True)
class DataConfig:
    """A role's own data settings (a TOML table or file): the spec and the per-channel normalisation, e.g.

        data = "npz:/home/me/share.npz"
        divide = 255
        mean = [0.2860]
        std = [0.3530]
    """

    data: str
    normalisation: Normalisation = Normalisation()

    @classmethod
    def from_dict(cls, table: Mapping[str, Any]) -> "DataConfig":
        """From the keys data (a spec), mean, std (lists, one value per channel) and divide; DataSpecError naming
        unknown keys or bad values."""
        unknown = sorted(set(table) - {"data", "mean", "std", "divide"})
        if unknown or "data" not in table:
            raise DataSpecError(f"data config needs 'data' (a spec) and takes mean, std, divide; "
                                f"unknown keys: {unknown}")
        try:
            normalisation = Normalisation.from_lists(table.get("mean", (0.0,)), table.get("std", (1.0,)),
                                                     table.get("divide", 1.0))
        except (TypeError, ValueError) as exc:
            raise DataSpecError(f"data config: mean and std must be lists of numbers, divide a number: "
                                f"{exc}") from None
        return cls(str(DataSpec.parse(str(table["data"]))), normalisation)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "DataConfig":
        """Read a TOML file of the keys data, mean, std, divide."""
        import tomllib

        try:
            table = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise DataSpecError(f"cannot read the data config {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise DataSpecError(f"{path} is not valid TOML: {exc}") from None
        return cls.from_dict(table)
