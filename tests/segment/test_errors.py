"""Corrupt artifacts and bad inputs give specific errors and leave a segment's state unchanged."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgepsl.errors import EdgePSLError
from edgepsl.segment import (SGD, Adam, ArtifactError, Segment, SegmentInputError, SegmentRoleError, StateError,
                             UnknownJobError, load_checkpoint, load_manifest, save_checkpoint)
from edgepsl.segment.names import MANIFEST_FILE
from tests.segment.conftest import ARTIFACT


def _snapshot(seg: Segment) -> dict[str, np.ndarray]:
    return seg.get_state()


def _assert_unchanged(seg: Segment, before: dict[str, np.ndarray], pending: list) -> None:
    after = seg.get_state()
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])
    assert seg.pending_jobs == pending


def test_all_errors_derive_from_edgepsl_error():
    for cls in (ArtifactError, SegmentInputError, SegmentRoleError, StateError, UnknownJobError):
        assert issubclass(cls, EdgePSLError)


def test_corrupt_graph_file_is_reported_by_name(artifact_copy):
    path = artifact_copy / "part2.backward.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"'part2.backward.onnx' is corrupt or was replaced"):
        load_manifest(artifact_copy)


def test_replaced_state_file_is_reported(artifact_copy):
    np.savez(artifact_copy / "part1.npz", **{"p:0.0.weight": np.zeros((6, 1, 5, 5), np.float32)})
    with pytest.raises(ArtifactError, match=r"'part1.npz' is corrupt"):
        Segment(artifact_copy, "part1")


def test_missing_file_and_missing_manifest(artifact_copy, tmp_path):
    (artifact_copy / "part3.train.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"'part3.train.onnx' is missing"):
        load_manifest(artifact_copy)
    with pytest.raises(ArtifactError, match="manifest.json is missing"):
        load_manifest(tmp_path)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(format_version=99), "format_version 99"),
    (lambda m: m.update(format="other"), "not an edgepsl segment manifest"),
    (lambda m: m["segments"][0].pop("graphs"), "lacks the field 'graphs'"),
    (lambda m: m["segments"][1].update(role="helper"), "role 'helper'"),
    (lambda m: m["files"].pop("part1.npz"), r"\['part1.npz'\] are used but have no sha256"),
])
def test_bad_manifest_fields(artifact_copy, edit, message):
    path = artifact_copy / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=message):
        load_manifest(artifact_copy)


def test_manifest_that_is_not_json(artifact_copy):
    (artifact_copy / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_manifest(artifact_copy)


def test_unknown_segment_and_unknown_provider():
    with pytest.raises(ArtifactError, match="no segment 'part9'; it has part1, part2, part3"):
        Segment(ARTIFACT, "part9")
    with pytest.raises(ArtifactError, match="NoSuchExecutionProvider.*not available"):
        Segment(ARTIFACT, "part1", providers=["NoSuchExecutionProvider"])


@pytest.mark.parametrize("x, message", [
    (np.zeros((4, 1, 28, 28), np.float64), "dtype float32, got float64"),
    (np.zeros((4, 1, 28, 27), np.float32), r"shape Bx1x28x28 \(B = batch\), got 4x1x28x27"),
    (np.zeros((1, 28, 28), np.float32), "shape Bx1x28x28"),
    (np.zeros((0, 1, 28, 28), np.float32), "empty batch"),
    ([[0.0]], "must be a numpy array"),
])
def test_bad_forward_input_leaves_state_unchanged(x, message):
    seg = Segment(ARTIFACT, "part1", threads=1)
    seg.forward("kept", np.zeros((2, 1, 28, 28), np.float32))
    before = _snapshot(seg)
    with pytest.raises(SegmentInputError, match=message):
        seg.forward("new", x)
    _assert_unchanged(seg, before, ["kept"])
    with pytest.raises(SegmentInputError, match=message):
        seg.evaluate(x)


def test_backward_errors_keep_the_job_pending():
    seg = Segment(ARTIFACT, "part2", threads=1)
    out = seg.forward(7, np.ones((3, 6, 14, 14), np.float32))
    before = _snapshot(seg)
    with pytest.raises(UnknownJobError, match="no pending forward for job 8"):
        seg.backward(8, np.ones_like(out))
    with pytest.raises(SegmentInputError, match="grad_out of job 7 must have shape 3x120"):
        seg.backward(7, np.ones((4, 120), np.float32))
    with pytest.raises(SegmentInputError, match="dtype float32"):
        seg.backward(7, np.ones((3, 120), np.float64))
    with pytest.raises(SegmentInputError, match="already has a pending forward"):
        seg.forward(7, np.ones((3, 6, 14, 14), np.float32))
    _assert_unchanged(seg, before, [7])
    result = seg.backward(7, np.ones_like(out))
    assert result.grad_in.shape == (3, 6, 14, 14) and seg.pending_jobs == []
    with pytest.raises(UnknownJobError):
        seg.backward(7, np.ones_like(out))
    with pytest.raises(UnknownJobError):
        seg.drop(["unhashable"])


def test_first_segment_backward_has_no_input_gradient():
    seg = Segment(ARTIFACT, "part1", threads=1)
    out = seg.forward(0, np.ones((2, 1, 28, 28), np.float32))
    result = seg.backward(0, np.ones_like(out))
    assert result.grad_in is None and set(result.grads) == set(seg.params)


@pytest.mark.parametrize("labels, message", [
    (np.array([0, 1, 10], np.int64), r"labels must lie in 0..9"),
    (np.array([0, -1, 2], np.int64), r"labels must lie in 0..9"),
    (np.array([0, 1, 2], np.int32), "dtype int64"),
    (np.array([0, 1], np.int64), "2 labels for a batch of 3"),
])
def test_bad_labels_leave_state_unchanged(labels, message):
    seg = Segment(ARTIFACT, "part3", threads=1)
    before = _snapshot(seg)
    with pytest.raises(SegmentInputError, match=message):
        seg.train_step(np.ones((3, 120), np.float32), labels)
    _assert_unchanged(seg, before, [])


def test_calls_that_do_not_fit_the_role():
    with pytest.raises(SegmentRoleError, match="part3 is a last segment"):
        Segment(ARTIFACT, "part3").forward(0, np.ones((2, 120), np.float32))
    with pytest.raises(SegmentRoleError, match="part1 is a first segment"):
        Segment(ARTIFACT, "part1").train_step(np.ones((2, 1, 28, 28), np.float32), np.zeros(2, np.int64))


def test_params_get_set_in_place_and_checked():
    seg = Segment(ARTIFACT, "part3", threads=1)
    optimizer = SGD(seg.params, lr=0.1)
    params = seg.get_params()
    halved = {k: v / 2 for k, v in params.items()}
    seg.set_params(halved)
    assert all(np.array_equal(seg.params[k], halved[k]) for k in params)
    assert all(optimizer.params[k] is seg.params[k] for k in params)
    before = _snapshot(seg)
    bad = dict(halved, **{"4.bias": np.zeros(3, np.float32)})
    with pytest.raises(StateError, match=r"parameter '4.bias' must be float32 \(10,\)"):
        seg.set_params(bad)
    with pytest.raises(StateError, match="missing"):
        seg.set_params({k: v for k, v in halved.items() if k != "4.bias"})
    _assert_unchanged(seg, before, [])


def test_optimizer_rejects_mismatched_gradients_and_state():
    seg = Segment(ARTIFACT, "part3", threads=1)
    for optimizer in (SGD(seg.params, lr=0.1, momentum=0.9), Adam(seg.params)):
        with pytest.raises(StateError, match="gradients do not match"):
            optimizer.step({"4.bias": np.zeros(10, np.float32)})
        with pytest.raises(StateError, match="unknown entry"):
            optimizer.load_state_dict({"steps": np.array(1), "nope:4.bias": np.zeros(10, np.float32)})
    with pytest.raises(StateError, match="Nesterov"):
        SGD(seg.params, lr=0.1, nesterov=True)


def test_checkpoint_of_another_segment_or_optimizer_is_refused(tmp_path):
    p2, p3 = Segment(ARTIFACT, "part2"), Segment(ARTIFACT, "part3")
    save_checkpoint(tmp_path / "p2.npz", p2, SGD(p2.params, lr=0.1))
    before = _snapshot(p3)
    with pytest.raises(StateError, match="segment 'part2', not 'lenet5' segment 'part3'"):
        load_checkpoint(tmp_path / "p2.npz", p3)
    with pytest.raises(StateError, match="holds sgd optimizer state, not adam"):
        load_checkpoint(tmp_path / "p2.npz", p2, Adam(p2.params))
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(StateError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.npz", p3)
    _assert_unchanged(p3, before, [])
