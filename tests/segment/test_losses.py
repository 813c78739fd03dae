"""Each loss's labels and evaluation metric, and the manifest's loss (older manifests read as cross-entropy)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgepsl.segment import ArtifactError, Segment, load_manifest
from edgepsl.segment.losses import BCE_LOGITS, CROSS_ENTROPY, MSE, UnknownLossError, get_loss
from tests.segment.conftest import ARTIFACT


def test_metric_totals_sum_the_per_sample_metric():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0]], np.float32)
    assert get_loss(CROSS_ENTROPY).metric_total(logits, np.array([0, 2, 2])) == 2.0
    out, targets = np.array([[1.0, 2.0], [0.0, 0.0]]), np.array([[1.0, 0.0], [2.0, 0.0]])
    assert get_loss(MSE).metric_total(out, targets) == pytest.approx(2.0 + 2.0)
    assert get_loss(BCE_LOGITS).metric_total(np.array([[1.0, -1.0], [1.0, 1.0]]),
                                              np.array([[1.0, 0.0], [0.0, 1.0]])) == pytest.approx(1.5)
    assert [get_loss(n).metric for n in (CROSS_ENTROPY, MSE, BCE_LOGITS)] == ["accuracy", "mse", "label_accuracy"]
    assert get_loss(CROSS_ENTROPY).label_shape((None, 10)) == (None,)
    assert get_loss(MSE).label_shape((None, 2)) == (None, 2)
    with pytest.raises(UnknownLossError, match="unknown loss 'hinge'"):
        get_loss("hinge")


def test_evaluate_runs_the_metric_over_a_data_set_in_chunks(fashion_mnist):
    _, _, x, y = fashion_mnist
    manifest = load_manifest(ARTIFACT)
    parts = [Segment(manifest, name, threads=1) for name in ("part1", "part2", "part3")]

    def predict(batch: np.ndarray) -> np.ndarray:
        for part in parts:
            batch = part.evaluate(batch)
        return batch

    whole = (predict(x).argmax(axis=1) == y).mean()
    assert manifest.loss.evaluate(predict, x, y, chunk=300) == pytest.approx(whole)


def test_manifest_loss_defaults_to_cross_entropy_and_unknown_losses_are_refused(tmp_path):
    manifest = load_manifest(ARTIFACT)
    assert manifest.loss.name == CROSS_ENTROPY and manifest.metric == "accuracy"
    assert manifest.labels.dtype == np.int64 and manifest.input.shape == (None, 1, 28, 28)
    copy = tmp_path / "art"
    shutil.copytree(ARTIFACT, copy)
    obj = json.loads((copy / "manifest.json").read_text())
    for loss, message in (("hinge", "unknown loss 'hinge'"), (MSE, "does not take float32 labels")):
        (copy / "manifest.json").write_text(json.dumps({**obj, "loss": loss}))
        with pytest.raises(ArtifactError, match=message):
            load_manifest(copy)
