"""SmashMix (the "Mix" of LocFedMix-SL): the helper builds extra training samples by mixup of the smashed data
(part-1 outputs) and labels of pairs of its clients.

Each round, `SmashMix.mix` draws `pairs` pairs of distinct clients (all unordered pairs once in a random order
before any repeats; a client with itself only when within_client is set), and for each pair one mixing ratio
lambda ~ Beta(alpha, alpha) and a random pairing of the two batches' samples: x = lambda * x_a + (1 - lambda) * x_b,
soft labels lambda * y_a + (1 - lambda) * y_b, `size` samples (default: the smaller batch). One lambda per mixed
batch, as mixup's reference implementation draws one per batch: then the soft-label loss of the batch is exactly
lambda * L(y_a) + (1 - lambda) * L(y_b) for cross-entropy (linear in the target), so the existing train graph runs
twice with the hard labels (`mixed_train_step`) and no soft-target graph is needed. Everything is seeded by
(seed, round): the same round mixes the same way whatever ran before.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Hashable, Mapping

import numpy as np

from edgepsl.learning.errors import SmashMixError
from edgepsl.segment import Segment, TrainResult


@dataclass(frozen=True)
class MixedBatch:
    """One mixed batch: inputs lam * a[index_a] + (1 - lam) * b[index_b] of clients (a, b) and both label sets."""

    x: np.ndarray
    labels_a: np.ndarray
    labels_b: np.ndarray
    lam: float
    clients: tuple[Hashable, Hashable]
    index_a: np.ndarray
    index_b: np.ndarray

    def soft_labels(self, classes: int) -> np.ndarray:
        """Class-index labels as float32 soft labels [size, classes]: lam * one_hot(a) + (1 - lam) * one_hot(b)."""
        eye = np.eye(classes, dtype=np.float64)
        return (self.lam * eye[self.labels_a] + (1.0 - self.lam) * eye[self.labels_b]).astype(np.float32)


class SmashMix:
    """Seeded mixup of smashed data across clients: `pairs` mixed batches per round, lambda ~ Beta(alpha, alpha)."""

    def __init__(self, alpha: float = 1.0, pairs: int = 1, size: int | None = None, within_client: bool = False,
                 seed: int = 0) -> None:
        if not (math.isfinite(alpha) and alpha > 0):
            raise SmashMixError(f"SmashMix alpha must be a finite number > 0, got {alpha}")
        if pairs < 1:
            raise SmashMixError(f"SmashMix pairs must be at least 1, got {pairs}")
        if size is not None and size < 1:
            raise SmashMixError(f"SmashMix size must be at least 1 (or None: the smaller batch), got {size}")
        self.alpha, self.pairs, self.size = float(alpha), int(pairs), size
        self.within_client, self.seed = within_client, int(seed)

    def client_pairs(self, clients: list[Hashable], rng: np.random.Generator) -> list[tuple[Hashable, Hashable]]:
        """`pairs` client pairs: every allowed unordered pair once in random order, then again, as often as needed."""
        allowed = list(itertools.combinations_with_replacement(clients, 2) if self.within_client
                       else itertools.combinations(clients, 2))
        if not allowed:
            raise SmashMixError(f"SmashMix needs batches of at least 2 clients (or within_client=True), got "
                                f"{len(clients)}")
        chosen: list[tuple[Hashable, Hashable]] = []
        while len(chosen) < self.pairs:
            chosen.extend(allowed[i] for i in rng.permutation(len(allowed)))
        return chosen[:self.pairs]

    def mix(self, batches: Mapping[Hashable, tuple[np.ndarray, np.ndarray]], round_index: int) -> list[MixedBatch]:
        """The round's mixed batches from each client's (smashed data, labels); the inputs are not modified."""
        checked = _check_batches(batches)
        rng = np.random.default_rng([self.seed, int(round_index)])
        mixed = []
        for a, b in self.client_pairs(list(checked), rng):
            (xa, ya), (xb, yb) = checked[a], checked[b]
            lam = float(rng.beta(self.alpha, self.alpha))
            size = min(len(xa), len(xb)) if self.size is None else self.size
            if size > min(len(xa), len(xb)):
                raise SmashMixError(f"SmashMix size {size} exceeds the batches of clients {a!r} ({len(xa)}) and "
                                    f"{b!r} ({len(xb)})")
            ia, ib = rng.permutation(len(xa))[:size], rng.permutation(len(xb))[:size]
            x = np.float32(lam) * xa[ia] + np.float32(1.0 - lam) * xb[ib]
            mixed.append(MixedBatch(x.astype(xa.dtype, copy=False), ya[ia], yb[ib], lam, (a, b), ia, ib))
        return mixed


def _check_batches(batches: Mapping[Hashable, tuple[np.ndarray, np.ndarray]]
                   ) -> dict[Hashable, tuple[np.ndarray, np.ndarray]]:
    """The batches if every client gives float arrays of one sample shape and as many labels of one kind as samples."""
    checked = {}
    first: tuple[np.ndarray, np.ndarray] | None = None
    for client, batch in batches.items():
        if not (isinstance(batch, tuple) and len(batch) == 2 and all(isinstance(a, np.ndarray) for a in batch)):
            raise SmashMixError(f"client {client!r}: a batch must be a tuple (smashed data, labels) of numpy arrays")
        x, y = batch
        if x.ndim < 2 or x.shape[0] < 1 or not np.issubdtype(x.dtype, np.floating):
            raise SmashMixError(f"client {client!r}: smashed data must be a float array [batch, ...], got "
                                f"{x.dtype.name} {x.shape}")
        if y.shape[:1] != x.shape[:1]:
            raise SmashMixError(f"client {client!r}: {y.shape[0] if y.ndim else 0} labels for {x.shape[0]} samples")
        if first is not None and (x.shape[1:] != first[0].shape[1:] or x.dtype != first[0].dtype
                                  or y.shape[1:] != first[1].shape[1:] or y.dtype != first[1].dtype):
            raise SmashMixError(f"client {client!r}: smashed data {x.dtype.name} {x.shape[1:]} / labels "
                                f"{y.dtype.name} {y.shape[1:]} differ from the other clients' "
                                f"{first[0].dtype.name} {first[0].shape[1:]} / {first[1].dtype.name} "
                                f"{first[1].shape[1:]}")
        first = first or (x, y)
        checked[client] = (x, y)
    return checked


def mixed_train_step(last: Segment, x: np.ndarray, labels_a: np.ndarray, labels_b: np.ndarray,
                     lam: float) -> TrainResult:
    """A last segment's train step on mixed inputs with the loss lam * L(labels_a) + (1 - lam) * L(labels_b):
    class labels run the train graph twice and combine loss and gradients (the soft-label cross-entropy exactly;
    BatchNorm statistics are updated once); float targets (mse, bce_logits) run once on the mixed targets
    (bce_logits: the same loss; mse: the same gradients)."""
    if not 0.0 <= lam <= 1.0:
        raise SmashMixError(f"the mixing ratio must lie in [0, 1], got {lam}")
    labels_a = last.check_labels(labels_a, len(x))
    labels_b = last.check_labels(labels_b, len(x))
    if not last.manifest.loss.class_labels:
        targets = (np.float32(lam) * labels_a + np.float32(1.0 - lam) * labels_b).astype(labels_a.dtype)
        return last.train_step(x, targets)
    first = last.train_step(x, labels_a)
    updated = dict(last.buffers)
    second = last.train_step(x, labels_b)
    last.buffers.update(updated)
    wa, wb = np.float32(lam), np.float32(1.0 - lam)
    return TrainResult(lam * first.loss + (1.0 - lam) * second.loss, wa * first.grad_in + wb * second.grad_in,
                       {k: wa * g + wb * second.grads[k] for k, g in first.grads.items()})
