"""The helper's step of the two-part split (labels on the helper; PiPar's and the original SplitFed's topology):
the helper runs part-2 and part-3 on a client's smashed data and labels and returns the cut-1 gradient.

It reuses the artifact's graphs exactly as the U-shaped step runs them (part-2 forward, part-3's fused train graph,
part-2 backward), so one two-part step gives the same numbers as one U-shaped step: no extra graph is exported.
Weaker privacy than the U-shape: the client's labels leave the device.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable

import numpy as np

from edgepsl.learning.errors import LearningError
from edgepsl.learning.smashmix import MixedBatch, mixed_train_step
from edgepsl.segment import Segment, TrainResult, names


@dataclass
class TwoPartResult:
    """The loss, the cut-1 gradient for the client, and part-2's and part-3's parameter gradients."""

    loss: float
    grad_in: np.ndarray
    middle_grads: dict[str, np.ndarray]
    last_grads: dict[str, np.ndarray]


def _check_pair(middle: Segment, last: Segment) -> None:
    """LearningError unless `middle` is a middle segment whose output feeds the last segment `last`."""
    if middle.role != names.MIDDLE or last.role != names.LAST:
        raise LearningError(f"the two-part step needs a middle and a last segment, got {middle.name} ({middle.role}) "
                            f"and {last.name} ({last.role})")
    if middle.spec.output.shape[1:] != last.spec.input.shape[1:]:
        raise LearningError(f"{middle.name} outputs {middle.spec.output.shape[1:]}, but {last.name} takes "
                            f"{last.spec.input.shape[1:]}")


def _run(middle: Segment, last: Segment, job_id: Hashable, x: np.ndarray,
         train: Callable[[np.ndarray], TrainResult]) -> TwoPartResult:
    """Part-2 forward, the given part-3 train step on its output, part-2 backward (the job dropped on failure)."""
    out = middle.forward(job_id, x)
    try:
        result = train(out)
    except Exception:
        middle.drop(job_id)
        raise
    back = middle.backward(job_id, result.grad_in)
    return TwoPartResult(result.loss, back.grad_in, back.grads, result.grads)


def two_part_step(middle: Segment, last: Segment, job_id: Hashable, x: np.ndarray,
                  labels: np.ndarray) -> TwoPartResult:
    """One training step of parts 2 and 3 on a client's smashed data `x` and labels; labels are checked first, so
    bad labels change nothing."""
    _check_pair(middle, last)
    x = middle.spec.input.check(x, f"segment {middle.name} input")
    labels = last.check_labels(labels, len(x))
    return _run(middle, last, job_id, x, lambda out: last.train_step(out, labels))


def two_part_mixed_step(middle: Segment, last: Segment, job_id: Hashable, batch: MixedBatch) -> TwoPartResult:
    """One training step of parts 2 and 3 on a SmashMix batch with the loss lam * L(labels_a) + (1 - lam) *
    L(labels_b); its cut-1 gradient belongs to no single client (LocFedMix-SL returns none)."""
    _check_pair(middle, last)
    last.check_labels(batch.labels_a, len(batch.x))
    last.check_labels(batch.labels_b, len(batch.x))
    return _run(middle, last, job_id, batch.x,
                lambda out: mixed_train_step(last, out, batch.labels_a, batch.labels_b, batch.lam))
