"""Measure a role's part times on its own hardware: warm-up, then the median of a few timed iterations (ms).

Each call counts the smaller of its wall-clock and its process CPU time. Roles measure while the others start (the
demo starts 9 processes on 2 cores at once), and a process waiting for a core adds wall-clock time but no CPU time:
by wall-clock time alone LeNet's part-2 backward measured 32 ms at start-up where the rounds realised 3.6-7.4 ms
(docs/runtime.md "Start-up estimates"). Parallel onnxruntime threads (config threads > 1) add CPU time but no
wall-clock time, hence the smaller of the two.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from edgepsl.segment import SGD, Segment


WARMUP = 2  # untimed calls first: the first allocates onnxruntime's buffers, the second settles the caches


def _median_ms(run: Callable[[int], None], iters: int) -> float:
    """Median over `iters` timed calls (after WARMUP untimed ones) of min(wall-clock, process CPU time), in ms."""
    for k in range(WARMUP):
        run(-1 - k)
    times = []
    for k in range(iters):
        wall, cpu = time.perf_counter(), time.process_time()
        run(k)
        times.append(min(time.perf_counter() - wall, time.process_time() - cpu) * 1000.0)
    return float(np.median(times))


def _input(segment: Segment, batch: int) -> np.ndarray:
    shape = (batch, *segment.spec.input.shape[1:])
    return np.random.default_rng(0).standard_normal(shape).astype(segment.spec.input.dtype)


def _fwd_bwd_ms(segment: Segment, batch: int, iters: int) -> tuple[float, float]:
    """Forward, and backward + an SGD step on a throwaway copy of the parameters, of a first or middle segment."""
    x = _input(segment, batch)
    grad = np.ones((batch, *segment.spec.output.shape[1:]), segment.spec.output.dtype)
    scratch = SGD(segment.get_params(), lr=0.0)
    key = ("measure", object())
    saved_buffers = {k: v.copy() for k, v in segment.buffers.items()}

    def fwd(k: int) -> None:
        segment.forward((key, k), x)

    def bwd(k: int) -> None:
        scratch.step(segment.backward((key, k), grad).grads)

    fwd_ms = _median_ms(fwd, iters)
    bwd_ms = _median_ms(bwd, iters)
    segment.buffers.update(saved_buffers)
    return fwd_ms, bwd_ms


def measure_client(part1: Segment, part3: Segment, batch: int, iters: int) -> dict[str, float]:
    """part1_fwd, part1_bwd (backward + update), part3_fwd and part3_bwd (the fused train step split evenly)."""
    f1, b1 = _fwd_bwd_ms(part1, batch, iters)
    x = _input(part3, batch)
    labels = np.zeros(batch, np.int64)
    scratch = SGD({k: v.copy() for k, v in part3.params.items()}, lr=0.0)
    saved_buffers = {k: v.copy() for k, v in part3.buffers.items()}
    train = _median_ms(lambda k: scratch.step(part3.train_step(x, labels).grads), iters)
    part3.buffers.update(saved_buffers)
    return {"part1_fwd": f1, "part1_bwd": b1, "part3_fwd": train / 2.0, "part3_bwd": train / 2.0}


def measure_helper(part2: Segment, batch: int, iters: int) -> dict[str, float]:
    """part2_fwd and part2_bwd (backward + update) of a middle segment."""
    f2, b2 = _fwd_bwd_ms(part2, batch, iters)
    return {"part2_fwd": f2, "part2_bwd": b2}
