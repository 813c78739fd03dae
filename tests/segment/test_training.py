"""The committed LeNet-5 artifact trains on real Fashion-MNIST data with the runtime alone (no torch)."""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from edgepsl.segment import SGD, Adam, Segment, load_checkpoint, load_manifest, save_checkpoint
from tests.segment.conftest import ARTIFACT

BATCH = 32


def _segments(threads: int = 1) -> list[Segment]:
    manifest = load_manifest(ARTIFACT)
    return [Segment(manifest, s.name, threads=threads) for s in manifest.segments]


def _step(segments: list[Segment], optimizers: list, job: int, x: np.ndarray, y: np.ndarray) -> float:
    """One split training step: part-1 and part-2 forward, part-3 train step, backward through part-2 and part-1."""
    p1, p2, p3 = segments
    a1 = p1.forward(job, x)
    a2 = p2.forward(job, a1)
    result = p3.train_step(a2, y)
    back2 = p2.backward(job, result.grad_in)
    back1 = p1.backward(job, back2.grad_in)
    for optimizer, grads in zip(optimizers, (back1.grads, back2.grads, result.grads)):
        optimizer.step(grads)
    return result.loss


def _accuracy(segments: list[Segment], x: np.ndarray, y: np.ndarray) -> float:
    logits = x
    for seg in segments:
        logits = seg.evaluate(logits)
    return float((logits.argmax(1) == y).mean())


@pytest.mark.parametrize("make_optimizer", [
    lambda p: SGD(p, lr=0.05, momentum=0.9, weight_decay=5e-4),
    lambda p: Adam(p, lr=2e-3),
], ids=["sgd", "adam"])
def test_lenet_artifact_learns_fashion_mnist(fashion_mnist, make_optimizer):
    train_x, train_y, test_x, test_y = fashion_mnist
    segments = _segments()
    optimizers = [make_optimizer(s.params) for s in segments]
    before = _accuracy(segments, test_x, test_y)
    losses = []
    deadline = time.monotonic() + 60
    for job in range(len(train_x) // BATCH):
        assert time.monotonic() < deadline, "training took longer than 60 s"
        sl = slice(job * BATCH, (job + 1) * BATCH)
        losses.append(_step(segments, optimizers, job, train_x[sl], train_y[sl]))
    assert all(np.isfinite(losses))
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])
    after = _accuracy(segments, test_x, test_y)
    assert after > 0.6 and after > before + 0.3
    assert all(not s.pending_jobs for s in segments)


def test_checkpoint_round_trip_reproduces_training(fashion_mnist, tmp_path):
    train_x, train_y, _, _ = fashion_mnist
    segments = _segments()
    optimizers = [SGD(s.params, lr=0.05, momentum=0.9) for s in segments]
    batches = [(train_x[i * 8:(i + 1) * 8], train_y[i * 8:(i + 1) * 8]) for i in range(4)]
    for job, (x, y) in enumerate(batches[:2]):
        _step(segments, optimizers, job, x, y)
    for seg, opt in zip(segments, optimizers):
        save_checkpoint(tmp_path / f"{seg.name}.npz", seg, opt)
    continued = [_step(segments, optimizers, 10 + j, x, y) for j, (x, y) in enumerate(batches[2:])]
    fresh = _segments()
    fresh_optimizers = [SGD(s.params, lr=0.05, momentum=0.9) for s in fresh]
    for seg, opt in zip(fresh, fresh_optimizers):
        load_checkpoint(tmp_path / f"{seg.name}.npz", seg, opt)
    resumed = [_step(fresh, fresh_optimizers, 10 + j, x, y) for j, (x, y) in enumerate(batches[2:])]
    assert resumed == continued
    for a, b in zip(segments, fresh):
        for name, value in a.params.items():
            np.testing.assert_array_equal(value, b.params[name])


def test_interleaved_jobs_keep_their_own_saved_tensors(fashion_mnist):
    train_x, _, _, _ = fashion_mnist
    p1 = _segments()[0]
    xa, xb = train_x[:4], train_x[4:12]
    rng = np.random.default_rng(0)
    ga = rng.standard_normal((4, *p1.spec.output.shape[1:])).astype(np.float32)
    gb = rng.standard_normal((8, *p1.spec.output.shape[1:])).astype(np.float32)
    p1.forward("a", xa)
    expected_a = p1.backward("a", ga).grads
    p1.forward("b", xb)
    expected_b = p1.backward("b", gb).grads
    p1.forward("a", xa)
    p1.forward("b", xb)
    assert p1.saved_bytes("b") > p1.saved_bytes("a") > 0
    assert sorted(p1.pending_jobs) == ["a", "b"]
    got_b = p1.backward("b", gb).grads
    got_a = p1.backward("a", ga).grads
    for name in expected_a:
        np.testing.assert_array_equal(got_a[name], expected_a[name])
        np.testing.assert_array_equal(got_b[name], expected_b[name])
    assert p1.pending_jobs == []


def test_runtime_does_not_import_torch():
    code = ("import sys; import edgepsl.segment as s; "
            f"seg = s.Segment({str(ARTIFACT)!r}, 'part3'); "
            "assert 'torch' not in sys.modules and 'onnx' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
