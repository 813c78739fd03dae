"""The documented Python API: a small local run from a RunConfig calls the per-round callback once per round."""
from __future__ import annotations

from edgepsl.api import RunConfig, train_local


def test_train_local_calls_back_every_round(tmp_path):
    config = RunConfig(run_id="api", clients=2, helpers=1, rounds=5, batch_size=32, aggregate_every=5, eval_every=5,
                       train_samples=320, test_samples=200, profile_iters=1, register_timeout_s=60.0,
                       round_timeout_s=60.0)
    seen = []
    summary = train_local(config, tmp_path / "run", on_round=seen.append, secure=False)
    assert [m["round"] for m in seen] == [0, 1, 2, 3, 4]
    assert all(m["loss"] > 0 and m["planned_makespan_ms"] > 0 for m in seen)
    assert "accuracy" in seen[-1] and summary.accuracy == seen[-1]["accuracy"]
    assert summary.run_dir == (tmp_path / "run").resolve() and summary.records == seen
