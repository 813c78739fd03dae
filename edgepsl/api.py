"""Run training from Python: a whole run on this machine from a RunConfig, with a callback after every round.

    from edgepsl.api import RunConfig, train_local

    def show(metrics):                      # called by the coordinator after every round
        print(metrics["round"], metrics["loss"], metrics.get("accuracy"))

    config = RunConfig(clients=3, helpers=1, rounds=20, batch_size=32, eval_every=10)
    summary = train_local(config, "runs/mine", on_round=show)
    print(summary.metric, summary.value, summary.run_dir)     # the metric's name and its last value

The roles run as separate processes on 127.0.0.1 (as `edgepsl demo` does), with throwaway CURVE keys in the run
directory unless secure=False. docs/byo.md lists the keys of the per-round metrics and of RunConfig.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.coordinator import RunSummary
from edgepsl.runtime.launch import LocalRun, run_local

RoundCallback = Callable[[dict[str, Any]], None]

__all__ = ["RoundCallback", "RunConfig", "RunSummary", "train_local"]


def train_local(config: RunConfig, run_dir: str | os.PathLike[str], on_round: RoundCallback | None = None, *,
                secure: bool = True, resume: bool = False, client_data: Sequence[str] = ()) -> RunSummary:
    """Run config.helpers helpers and config.clients clients on this machine and return the run's summary;
    on_round(metrics) is called after every round (it may raise to abort the run); resume=True continues a stopped
    run of run_dir from its checkpoint; client_data gives client j its data spec (default: its Fashion-MNIST
    share)."""
    return run_local(LocalRun(config, Path(run_dir), secure=secure, resume=resume, client_data=client_data), on_round)
