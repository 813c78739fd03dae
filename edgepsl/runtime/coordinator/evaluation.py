"""Evaluation phase: the averaged model's metric (the artifact's loss decides: accuracy, mse, label_accuracy)."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from edgepsl.segment import Manifest, Segment

EVAL_CHUNK = 1000


def evaluate(model: Mapping[str, Segment], manifest: Manifest, test: tuple[np.ndarray, np.ndarray]) -> float:
    """The manifest's metric of the part1 -> part2 -> part3 model over the test set."""

    def predict(x: np.ndarray) -> np.ndarray:
        for name in ("part1", "part2", "part3"):
            x = model[name].evaluate(x)
        return x

    x, y = test
    return manifest.loss.evaluate(predict, x, y, EVAL_CHUNK)
