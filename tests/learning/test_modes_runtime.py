"""Learning-mode building blocks on the committed LeNet-5 artifact without torch: aux head loading (and artifacts
without one), LocalLoss and two-part step input handling, mixed_train_step's combination, and part-1's second
gradient contribution."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgepsl.learning import LearningError, LocalLoss, mixed_train_step, two_part_step
from edgepsl.segment import (ArtifactError, Segment, SegmentInputError, UnknownJobError, load_manifest, names)
from tests.segment.conftest import ARTIFACT


@pytest.fixture(scope="module")
def manifest():
    """The committed artifact's manifest (with its aux head)."""
    return load_manifest(ARTIFACT)


def _rewrite(directory, change) -> None:
    """Apply `change` to a copied artifact's manifest object and write it back."""
    path = directory / names.MANIFEST_FILE
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


def test_committed_artifact_has_an_aux_head_after_part1(manifest):
    aux = manifest.aux_head
    assert aux is not None and aux.after == "part1" and aux.loss == manifest.loss.name
    assert aux.segment.input.shape == manifest.segments[0].output.shape == (None, 6, 14, 14)
    assert aux.segment.output.shape == (None, 10)
    assert [s.name for s in manifest.segments] == ["part1", "part2", "part3"]
    assert Segment(manifest, names.AUX, threads=1).role == names.LAST


def test_artifact_without_aux_head_loads_as_before(artifact_copy):
    def strip(obj):
        del obj["aux_head"]
        for suffix in (".train.onnx", ".eval.onnx", ".npz"):
            del obj["files"][names.AUX + suffix]
    _rewrite(artifact_copy, strip)
    for suffix in (".train.onnx", ".eval.onnx", ".npz"):
        (artifact_copy / (names.AUX + suffix)).unlink()
    manifest = load_manifest(artifact_copy)
    assert manifest.aux_head is None and len(manifest.all_segments) == 3
    with pytest.raises(ArtifactError, match="--aux-head auto"):
        Segment(manifest, names.AUX)


@pytest.mark.parametrize("field, value, message", [("after", "part2", "must follow the first segment"),
                                                   ("loss", "mse", "aux head's loss 'mse' differs"),
                                                   ("role", "middle", "aux head must be a 'last' segment")])
def test_inconsistent_aux_head_entries_are_refused(artifact_copy, field, value, message):
    _rewrite(artifact_copy, lambda obj: obj["aux_head"].__setitem__(field, value))
    with pytest.raises(ArtifactError, match=message):
        load_manifest(artifact_copy)


def test_aux_head_file_is_hash_checked(artifact_copy):
    with open(artifact_copy / "aux.npz", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(ArtifactError, match="'aux.npz' is corrupt"):
        load_manifest(artifact_copy)


def _batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Eight random 28x28 images and labels."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((8, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 8).astype(np.int64)


def test_local_loss_refuses_bad_setups_and_bad_labels_change_nothing(manifest):
    p1, p2, aux = (Segment(manifest, n, threads=1) for n in ("part1", "part2", names.AUX))
    with pytest.raises(LearningError, match="first segment and an aux head"):
        LocalLoss(p2, aux)
    with pytest.raises(LearningError, match="helper_weight"):
        LocalLoss(p1, aux, helper_weight=-1.0)
    local = LocalLoss(p1, aux)
    x, y = _batch()
    with pytest.raises(UnknownJobError):
        local.local_step("nope", y)
    local.forward("j", x)
    params = {k: v.copy() for k, v in aux.params.items()}
    with pytest.raises(SegmentInputError, match="labels must lie in 0..9"):
        local.local_step("j", y + 10)
    assert p1.pending_jobs == ["j"] and all(np.array_equal(aux.params[k], v) for k, v in params.items())
    result = local.local_step("j", y)
    assert p1.pending_jobs == [] and np.isfinite(result.loss) and set(result.grads) == set(p1.params)
    with pytest.raises(LearningError, match="helper_weight is 0"):
        local.helper_gradient("j", np.zeros((8, 6, 14, 14), np.float32))


def test_second_backward_contribution_adds_linearly(manifest):
    p1 = Segment(manifest, "part1", threads=1)
    x, _ = _batch(1)
    rng = np.random.default_rng(2)
    g1, g2 = (rng.standard_normal((8, 6, 14, 14)).astype(np.float32) for _ in range(2))
    p1.forward("a", x)
    first = p1.backward("a", g1, release=False)
    second = p1.backward("a", g2)
    p1.forward("b", x)
    both = p1.backward("b", g1 + g2)
    assert p1.pending_jobs == []
    for k, v in both.grads.items():
        np.testing.assert_allclose(first.grads[k] + second.grads[k], v, rtol=1e-5, atol=1e-5 * np.abs(v).max())


def test_two_part_step_checks_labels_before_running_part2(manifest):
    p1, p2, p3 = (Segment(manifest, n, threads=1) for n in ("part1", "part2", "part3"))
    x, y = _batch(3)
    smashed = p1.evaluate(x)
    with pytest.raises(SegmentInputError, match="7 labels for a batch of 8"):
        two_part_step(p2, p3, 0, smashed, y[:7])
    assert p2.pending_jobs == []
    with pytest.raises(LearningError, match="middle and a last segment"):
        two_part_step(p1, p3, 0, x, y)
    result = two_part_step(p2, p3, 0, smashed, y)
    assert result.grad_in.shape == smashed.shape and p2.pending_jobs == []


def test_mixed_train_step_with_lambda_one_is_the_plain_step(manifest):
    p3 = Segment(manifest, "part3", threads=1)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 120)).astype(np.float32)
    ya, yb = rng.integers(0, 10, 8), rng.integers(0, 10, 8)
    plain = p3.train_step(x, ya)
    mixed = mixed_train_step(p3, x, ya, yb, 1.0)
    assert mixed.loss == pytest.approx(plain.loss, rel=1e-6)
    np.testing.assert_array_equal(mixed.grad_in, plain.grad_in)
    with pytest.raises(LearningError, match="mixing ratio"):
        mixed_train_step(p3, x, ya, yb, 1.5)
