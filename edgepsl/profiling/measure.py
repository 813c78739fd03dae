"""Time the forward, backward and optimizer step of every segment of an artifact on onnxruntime.

Each segment of the artifact is one profiled layer (a per-layer export gives one per block). Inputs are
random tensors of the segment's input shape at the chosen batch size. For a first or middle segment:
forward = its training forward graph, backward = its backward graph (after an untimed forward of the
same job), update = one SGD step with momentum on the gradients it returned. For the last segment, whose
training graph fuses forward, loss and backward: forward = its eval graph, backward = the fused train
step minus that forward (at least 0), update = the SGD step. Every number is the median of `repeats`
runs after `warmup` untimed ones; the 10th and 90th percentiles are kept as the spread.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from edgepsl.profiling.errors import ProfilingError
from edgepsl.segment import SGD, Segment, load_manifest
from edgepsl.segment.session import available_providers

PHASES = ("fwd_ms", "bwd_ms", "update_ms")


@dataclass
class LayerCosts:
    """Per-layer medians and spreads (ms) and sizes (KB) of one artifact on one device."""

    names: list[str] = field(default_factory=list)
    median: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in PHASES})
    p10: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in PHASES})
    p90: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in PHASES})
    activation_kb: list[float] = field(default_factory=list)
    weights_kb: list[float] = field(default_factory=list)


def _timed(fn: Callable[[], object], warmup: int, repeats: int) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = np.empty(repeats)
    for k in range(repeats):
        t0 = time.perf_counter()
        fn()
        out[k] = (time.perf_counter() - t0) * 1e3
    return out


def _random_input(seg: Segment, batch: int, rng: np.random.Generator) -> np.ndarray:
    spec = seg.spec.input
    shape = (batch, *spec.shape[1:])
    if np.issubdtype(spec.dtype, np.integer):
        return rng.integers(0, 2, shape).astype(spec.dtype)
    return rng.standard_normal(shape).astype(spec.dtype)


def _segment_costs(seg: Segment, batch: int, warmup: int, repeats: int, rng: np.random.Generator) -> dict:
    x = _random_input(seg, batch, rng)
    opt = SGD(seg.params, lr=1e-3, momentum=0.9)
    if seg.role == "last":
        classes = seg.spec.output.shape[-1]
        labels = rng.integers(0, classes, batch).astype(np.int64)
        fwd = _timed(lambda: seg.evaluate(x), warmup, repeats)
        train = _timed(lambda: seg.train_step(x, labels), warmup, repeats)
        bwd = np.maximum(train - np.median(fwd), 0.0)
        grads = seg.train_step(x, labels).grads
        out_shape = (batch, classes)
    else:
        counter = iter(range(10**9))

        def forward() -> None:
            job = next(counter)
            seg.forward(job, x)
            seg.drop(job)

        fwd = _timed(forward, warmup, repeats)
        out = seg.forward("probe", x)
        grad_out = rng.standard_normal(out.shape).astype(out.dtype)
        seg.drop("probe")
        bwd = np.empty(repeats)
        for k in range(-warmup, repeats):
            seg.forward("job", x)
            t0 = time.perf_counter()
            result = seg.backward("job", grad_out)
            if k >= 0:
                bwd[k] = (time.perf_counter() - t0) * 1e3
        grads = result.grads
        out_shape = out.shape
    upd = _timed(lambda: opt.step(grads), warmup, repeats) if grads else np.zeros(repeats)
    itemsize = np.dtype(seg.spec.output.dtype).itemsize
    return {
        "fwd_ms": fwd, "bwd_ms": bwd, "update_ms": upd,
        "activation_kb": float(np.prod(out_shape)) * itemsize / 1024,
        "weights_kb": sum(p.nbytes for p in seg.params.values()) / 1024,
    }


def profile_artifact(artifact: str, batch: int = 32, warmup: int = 2, repeats: int = 10, threads: int | None = None,
                     providers: Sequence[str] = ("CPUExecutionProvider",), seed: int = 0,
                     progress: Callable[[str], None] | None = None) -> LayerCosts:
    """Measure every segment of `artifact` (in order) on this device; `progress(name)` after each."""
    if batch < 1 or repeats < 1 or warmup < 0:
        raise ProfilingError(f"need batch >= 1, repeats >= 1 and warmup >= 0; got {batch}, {repeats}, {warmup}")
    missing = [p for p in providers if p not in available_providers()]
    if missing:
        raise ProfilingError(f"onnxruntime provider(s) {missing} not available here; available: {available_providers()}")
    manifest = load_manifest(artifact)
    rng = np.random.default_rng(seed)
    costs = LayerCosts()
    for spec in manifest.segments:
        seg = Segment(manifest, spec.name, threads=threads, providers=list(providers))
        measured = _segment_costs(seg, batch, warmup, repeats, rng)
        costs.names.append(spec.name)
        for key in PHASES:
            costs.median[key].append(float(np.median(measured[key])))
            costs.p10[key].append(float(np.percentile(measured[key], 10)))
            costs.p90[key].append(float(np.percentile(measured[key], 90)))
        costs.activation_kb.append(measured["activation_kb"])
        costs.weights_kb.append(measured["weights_kb"])
        if progress:
            progress(spec.name)
    return costs
