"""A full short run (3 clients, 2 helpers, secure): averaging, evaluation above chance, and a complete run directory."""
from __future__ import annotations

import json

import numpy as np

from edgepsl.plan.schedule import Plan


def test_short_run_learns_and_writes_its_run_directory(reference_run):
    summary = reference_run
    assert summary.rounds_done == 20
    records = summary.records
    assert [m["round"] for m in records] == list(range(20))
    evaluated = [m for m in records if "accuracy" in m]
    assert [m["round"] for m in evaluated] == [9, 19]
    assert summary.accuracy == evaluated[-1]["accuracy"] > 0.25  # chance is 0.1
    assert np.mean([m["loss"] for m in records[-5:]]) < np.mean([m["loss"] for m in records[:5]])
    for m in records:
        assert m["realised_makespan_ms"] > 0 and m["planned_makespan_ms"] > 0
        assert set(m["client_loss"]) == {"client0", "client1", "client2"}
        assert len(m["helper_utilisation"]) == 2
    root = summary.run_dir
    for name in ("run.toml", "plan.json", "instance.json", "metrics.jsonl", "roles.json", "curves.png",
                 "gantt-planned.png", "gantt-actual.png", "trace-actual.json", "checkpoint/state.npz"):
        assert (root / name).is_file(), name
    plan = Plan.load(root / "plan.json")
    assert len(plan.assignment) == 3
    busy_helpers = [f"helper{i}" for i in sorted(set(plan.assignment.tolist()))]  # the plan may leave one idle
    for role in ("coordinator", *busy_helpers, "client0", "client1", "client2"):
        events = [json.loads(line) for line in (root / "traces" / f"{role}.jsonl").read_text().splitlines()]
        assert any(e["ev"] == "send" for e in events), role
    helper_jobs = [json.loads(line) for name in ("helper0", "helper1")
                   for line in (root / "traces" / f"{name}.jsonl").read_text().splitlines()]
    assert sum(e["ev"] == "job_end" for e in helper_jobs) == 20 * 3 * 2


def test_round_metrics_carry_per_job_records_and_summaries(reference_run):
    for m in reference_run.records:
        jobs = m["jobs"]
        assert sorted((j["client"], j["kind"]) for j in jobs) == sorted(
            (c, k) for c in ("client0", "client1", "client2") for k in ("fwd", "bwd"))
        for job in jobs:
            assert job["helper"] in ("helper0", "helper1")
            assert job["queue_wait_ms"] >= 0 and job["compute_ms"] > 0 and job["upload_ms"] > 0
            assert job["download_ms"] > 0 and job["bytes_up"] > 0 and job["bytes_down"] > 0
            assert job["arrival_ms"] <= job["start_ms"] < job["end_ms"] and job["planned_start_ms"] >= 0
        summary = m["job_summary"]
        assert summary["jobs"] == 6 and summary["transfer_bytes"] == m["bytes"]
        assert summary["queue_wait_ms_max"] == max(j["queue_wait_ms"] for j in jobs)
