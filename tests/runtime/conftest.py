"""Fixtures of the runtime tests: small real runs on 127.0.0.1 (roles as processes, real sockets and segments)."""
from __future__ import annotations

from pathlib import Path

import pytest

from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.coordinator import RunSummary
from edgepsl.runtime.launch import LocalRun, run_local

# Small and fast: 1500 training samples, 1000 test samples, batch 32, one process per role, 1 s heartbeats.
SMALL = RunConfig(run_id="test", rounds=20, batch_size=32, lr=0.05, aggregate_every=5, eval_every=10,
                  train_samples=1500, test_samples=1000, profile_iters=1, register_timeout_s=60.0,
                  round_timeout_s=60.0)


@pytest.fixture(autouse=True)
def artifact_cache(tmp_path_factory, monkeypatch) -> Path:
    """Roles started by a test (and their processes) cache received artifacts in a fresh directory, not ~/.cache."""
    cache = tmp_path_factory.mktemp("artifact-cache")
    monkeypatch.setenv("EDGEPSL_ARTIFACT_CACHE", str(cache))
    return cache


def small_run(run_dir: Path, **changes) -> LocalRun:
    """A LocalRun of the SMALL configuration with some keys changed (clients, helpers, rounds, ...)."""
    options = {k: changes.pop(k) for k in ("secure", "resume", "stop_after") if k in changes}
    return LocalRun(SMALL.replace(**changes), run_dir, **options)


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory) -> RunSummary:
    """An uninterrupted secure run of 3 clients on 2 helpers, 20 rounds, averaging every 5, evaluated every 10."""
    return run_local(small_run(tmp_path_factory.mktemp("reference"), clients=3, helpers=2))
