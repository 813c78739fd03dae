"""The losses a last segment's train graph can compute, their labels, and the evaluation metric that fits each."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgepsl.errors import EdgePSLError

CROSS_ENTROPY = "cross_entropy"
MSE = "mse"
BCE_LOGITS = "bce_logits"


class UnknownLossError(EdgePSLError):
    """A loss name that edgepsl does not know (at export or in a manifest)."""


@dataclass(frozen=True)
class Loss:
    """A loss: what its labels are (class indices or targets shaped like the output) and its evaluation metric."""

    name: str
    label_dtype: np.dtype
    class_labels: bool
    metric: str
    higher_is_better: bool
    description: str

    def label_shape(self, output_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        """Shape of a batch of labels for a segment output of `output_shape` (None = batch axis)."""
        return (output_shape[0],) if self.class_labels else tuple(output_shape)

    def metric_total(self, outputs: np.ndarray, labels: np.ndarray) -> float:
        """Sum over the batch of the per-sample metric; divide the sum over all batches by the sample count."""
        if self.name == CROSS_ENTROPY:
            return float((outputs.argmax(axis=1) == labels).sum())
        per_sample = outputs.reshape(len(outputs), -1).astype(np.float64)
        targets = labels.reshape(len(labels), -1).astype(np.float64)
        if self.name == MSE:
            return float(((per_sample - targets) ** 2).mean(axis=1).sum())
        return float(((per_sample > 0) == (targets > 0.5)).mean(axis=1).sum())

    def evaluate(self, predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray,
                 chunk: int = 1024) -> float:
        """The metric over a whole data set (e.g. the coordinator's test set), predicting `chunk` samples at a time."""
        total = sum(self.metric_total(predict(x[k:k + chunk]), y[k:k + chunk]) for k in range(0, len(y), chunk))
        return total / len(y)


LOSSES: dict[str, Loss] = {loss.name: loss for loss in (
    Loss(CROSS_ENTROPY, np.dtype(np.int64), True, "accuracy", True,
         "mean cross-entropy of logits against int64 class indices (classification)"),
    Loss(MSE, np.dtype(np.float32), False, "mse", False,
         "mean squared error against float32 targets shaped like the output (regression)"),
    Loss(BCE_LOGITS, np.dtype(np.float32), False, "label_accuracy", True,
         "mean binary cross-entropy of logits against float32 0/1 targets shaped like the output (multi-label)"),
)}


# Metrics that are shares of samples (shown in percent); the others are errors.
PERCENT_METRICS = frozenset({"accuracy", "label_accuracy"})


def get_loss(name: str) -> Loss:
    """The named loss; UnknownLossError naming the known losses otherwise."""
    try:
        return LOSSES[name]
    except KeyError:
        raise UnknownLossError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}") from None
