"""Fixtures of the runtime tests: small real runs on 127.0.0.1 (roles as processes, real sockets and segments)."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

import pytest

from edgepsl.runtime.client import Client
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.coordinator import Coordinator, RunSummary
from edgepsl.runtime.helper import Helper
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


def run_threaded(coordinator: Coordinator, roles: Sequence[Client | Helper]) -> RunSummary:
    """Run a coordinator here and its roles in threads; every role leaves on the coordinator's bye (also when the
    run stops early), and each thread must end within 60 s."""
    threads = [threading.Thread(target=role.run, daemon=True) for role in roles]
    for thread in threads:
        thread.start()
    try:
        return coordinator.run()
    finally:
        for thread in threads:
            thread.join(60.0)
            assert not thread.is_alive()


def small_run(run_dir: Path, **changes) -> LocalRun:
    """A LocalRun of the SMALL configuration with some keys changed (clients, helpers, rounds, ...)."""
    options = {k: changes.pop(k) for k in ("secure", "resume", "stop_after") if k in changes}
    return LocalRun(SMALL.replace(**changes), run_dir, **options)


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory) -> RunSummary:
    """An uninterrupted secure run of 3 clients on 2 helpers, 20 rounds, averaging every 5, evaluated every 10."""
    return run_local(small_run(tmp_path_factory.mktemp("reference"), clients=3, helpers=2))
