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


def _train_step_ms(last: Segment, batch: int, iters: int) -> float:
    """A last segment's fused train step (forward, loss, backward) + an SGD step on a throwaway copy of its
    parameters."""
    x = _input(last, batch)
    labels = np.zeros(batch, np.int64)
    scratch = SGD({k: v.copy() for k, v in last.params.items()}, lr=0.0)
    saved_buffers = {k: v.copy() for k, v in last.buffers.items()}
    train = _median_ms(lambda k: scratch.step(last.train_step(x, labels).grads), iters)
    last.buffers.update(saved_buffers)
    return train


def measure_last(part3: Segment, batch: int, iters: int) -> dict[str, float]:
    """part3_fwd and part3_bwd: part-3's fused train step split evenly."""
    train = _train_step_ms(part3, batch, iters)
    return {"part3_fwd": train / 2.0, "part3_bwd": train / 2.0}


def measure_client(part1: Segment, part3: Segment, batch: int, iters: int) -> dict[str, float]:
    """part1_fwd, part1_bwd (backward + update), part3_fwd and part3_bwd (the fused train step split evenly)."""
    f1, b1 = _fwd_bwd_ms(part1, batch, iters)
    return {"part1_fwd": f1, "part1_bwd": b1, **measure_last(part3, batch, iters)}


def measure_aux(measured: dict[str, float], aux: Segment, batch: int, iters: int) -> float:
    """A local-loss client's aux step (ms): the aux head's train step + update, then part-1's backward + update
    (`measured`: measure_client's times)."""
    return _train_step_ms(aux, batch, iters) + measured["part1_bwd"]


def declared_aux_ms(measured_aux: float, measured: dict[str, float], declared: dict[str, float]) -> float:
    """The aux step a client declares: part-1's declared backward plus the aux head's measured share scaled as its
    part-1 is (declared / measured part-1 time: 1 without emulation, the slowdown, or the emulated device's ratio;
    no profile of an emulated device times an aux head)."""
    head = max(0.0, measured_aux - measured["part1_bwd"])
    ran = measured["part1_fwd"] + measured["part1_bwd"]
    scale = (declared["part1_fwd"] + declared["part1_bwd"]) / ran if ran > 0 else 1.0
    return declared["part1_bwd"] + head * scale


def measure_helper(part2: Segment, batch: int, iters: int) -> dict[str, float]:
    """part2_fwd and part2_bwd (backward + update) of a middle segment."""
    f2, b2 = _fwd_bwd_ms(part2, batch, iters)
    return {"part2_fwd": f2, "part2_bwd": b2}
