"""Stopping the coordinator between rounds and resuming gives the same metrics as the uninterrupted run."""
from __future__ import annotations

from edgepsl.runtime.launch import run_local
from tests.runtime.conftest import small_run

LEARNING = ("round", "loss", "client_loss", "accuracy")


def _learning(records):
    return [{k: m[k] for k in LEARNING if k in m} for m in records]


def test_resume_continues_like_an_uninterrupted_run(reference_run, tmp_path):
    run_dir = tmp_path / "resumed"
    first = run_local(small_run(run_dir, clients=3, helpers=2, stop_after=10))
    assert first.rounds_done == 10 and len(first.records) == 10
    second = run_local(small_run(run_dir, clients=3, helpers=2, resume=True))
    assert [m["round"] for m in second.records] == list(range(10, 20))
    assert _learning(first.records + second.records) == _learning(reference_run.records)
    assert second.accuracy == reference_run.accuracy
