"""Micro-batches of a client's round (PiPar pipelining): how a batch splits, the gradients summed over a round's
micro-batches into one optimizer step, each micro-batch's emulated times in the plan's timing model, and a
client's emulated uplink on which uploads queue while compute goes on (docs/runtime.md, "Micro-batches")."""
from __future__ import annotations

import time
from typing import Callable, Mapping

import numpy as np

from edgepsl.plan.pipeline import stage_ms
from edgepsl.plan.profiles import StageCosts
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.emulation import Pacer
from edgepsl.runtime.errors import RunConfigError
from edgepsl.segment import Manifest

# The fixed part of every compute call the runtime plans with (planning.build_instance) and pads micro-batches to:
# call_ms per client call, job_ms per helper job (a transfer's fixed part is its link's latency).
COSTS = StageCosts()

# The fewest rows a training micro-batch of a model with BatchNorm may have (its batch variance needs two)
BATCH_NORM_ROWS = 2


def micro_batch_cap(batch: int, manifest: Manifest) -> int:
    """The most micro-batches a round of `batch` rows may be split into: one row each, or BATCH_NORM_ROWS each when
    the model normalises with batch statistics (micro_sizes' smallest micro-batch has batch // N rows)."""
    return max(1, batch // BATCH_NORM_ROWS) if manifest.batch_statistics else batch


def check_micro_batches(config: RunConfig, manifest: Manifest) -> None:
    """RunConfigError when the configured N splits the batch into micro-batches too small for the model."""
    most = micro_batch_cap(config.batch_size, manifest)
    if config.micro_batches != "auto" and int(config.micro_batches) > most:
        raise RunConfigError(
            f"config key 'micro_batches' is {config.micro_batches}, but the artifact {manifest.model} has BatchNorm "
            f"and batch_size {config.batch_size} then gives micro-batches of fewer than {BATCH_NORM_ROWS} rows, whose "
            f"batch statistics are undefined; use micro_batches <= {most} (or 'auto', which stays within it)")


def micro_sizes(batch: int, n: int) -> list[int]:
    """Rows of each of the n micro-batches of a batch: as equal as possible, the larger ones first."""
    n = max(1, min(n, batch))
    base, extra = divmod(batch, n)
    return [base + 1] * extra + [base] * (n - extra)


def micro_slices(batch: int, n: int) -> list[slice]:
    """The n micro-batches of a batch as row slices, in order."""
    ends = np.cumsum([0, *micro_sizes(batch, n)]).tolist()
    return [slice(a, b) for a, b in zip(ends[:-1], ends[1:])]


class GradientSum:
    """Parameter gradients summed over the `parts` micro-batches of one round: add() returns the sum once the last
    part is in (each part's loss is scaled by its share of the batch, so the sum is the whole batch's gradient)."""

    def __init__(self, parts: int) -> None:
        self.parts = parts
        self.added = 0
        self._total: dict[str, np.ndarray] = {}

    def add(self, grads: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """Add one micro-batch's gradients; the sum after the last of them, None before."""
        assert self.added < self.parts, "a round's micro-batch gradients are each added once"
        if self.added == 0:
            self._total = dict(grads)
        else:
            for name, grad in grads.items():
                self._total[name] = self._total[name] + grad
        self.added += 1
        return self._total if self.added == self.parts else None


def scaled(grads: Mapping[str, np.ndarray], share: float) -> dict[str, np.ndarray]:
    """Gradients multiplied by a micro-batch's share of the batch (unchanged arrays at share 1)."""
    if share == 1.0:
        return dict(grads)
    factor = np.float32(share)
    return {name: grad * factor for name, grad in grads.items()}


def client_step_ms(times: Mapping[str, float], n: int) -> dict[str, float]:
    """The emulated ms of one micro-batch's client steps (part1_fwd, part3, part1_bwd) at N = n, from the whole
    batch's part times: the plan's stage times (edgepsl.plan.pipeline.stage_times); at N = 1 the part times."""
    call = COSTS.call_ms
    return {"part1_fwd": float(stage_ms(times["part1_fwd"], call, n)),
            "part3": float(stage_ms(times["part3_fwd"] + times["part3_bwd"], 2 * call, n)),
            "part1_bwd": float(stage_ms(times["part1_bwd"], call, n))}


def helper_job_ms(whole_ms: float, n: int) -> float:
    """The emulated ms of one micro-batch job of a helper part of whole-batch time whole_ms at N = n."""
    return float(stage_ms(whole_ms, COSTS.job_ms, n))


class Uplink:
    """A client's emulated uplink: each send leaves once its upload is over, uploads one after the other, on a
    background thread, so the client computes its next micro-batch meanwhile (no emulated link: sent at once)."""

    def __init__(self) -> None:
        self._pacer = Pacer()
        self._free = 0.0  # time.monotonic() when the last queued upload ends

    def send(self, ready: float, upload_s: float, action: Callable[[], None]) -> float:
        """Queue `action` (the send) after an upload of upload_s seconds that begins at perf_counter `ready` or when
        the link is free; returns the seconds from now until it leaves."""
        begin = max(time.monotonic() - (time.perf_counter() - ready), self._free)
        self._free = begin + upload_s
        delay = max(self._free - time.monotonic(), 0.0)
        self._pacer.later(delay, action)
        return delay

    def close(self, send_pending: bool = False) -> None:
        """Stop the thread. By default the uploads still queued are dropped: the round they belong to is over (every
        upload of a completed round has left; those of an aborted or cancelled one would only be refused
        CANCELLED); with send_pending they are sent at once (an upload that is due, its round going on)."""
        self._pacer.close(run_pending=send_pending)
