"""Evaluation phase: the averaged model's accuracy on the test set."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from edgepsl.segment import Segment

EVAL_CHUNK = 1000


def accuracy(model: Mapping[str, Segment], test: tuple[np.ndarray, np.ndarray]) -> float:
    """Share of test samples the part1 -> part2 -> part3 model classifies correctly."""
    x, y = test
    correct = 0
    for k in range(0, len(y), EVAL_CHUNK):
        logits = x[k:k + EVAL_CHUNK]
        for name in ("part1", "part2", "part3"):
            logits = model[name].evaluate(logits)
        correct += int((logits.argmax(axis=1) == y[k:k + EVAL_CHUNK]).sum())
    return correct / len(y)
