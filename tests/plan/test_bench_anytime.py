"""The anytime / re-planning and small-instance benchmarks on tiny settings: JSON structure and consistent values."""
from __future__ import annotations

import json

from tools.bench_anytime import main as anytime_main
from tools.bench_small import main as small_main


def test_anytime_benchmark_writes_every_cell(tmp_path) -> None:
    out = tmp_path / "anytime.json"
    assert anytime_main(["--seeds", "1", "--limits-ms", "5", "--skip-large", "--work-budgets", "10000,8000000",
                         "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert [c["scenario"] for c in doc["anytime"]] == [1, 2] and [c["scenario"] for c in doc["replan"]] == [1, 2]
    for cell in doc["work"]:
        # The default budget reproduces the reference, so the last budget always reaches it.
        assert cell["reached"] == 1 and cell["first_within_1pct"][0] in (10000, 8000000)
        assert cell["work_for_95pct"] == cell["first_within_1pct"][0]
    for cell in doc["anytime"]:
        assert set(cell["limits"]) == {"5.0", "descent"}
        for row in cell["limits"].values():
            assert row["within_1pct"] in (0, 1) and row["max_ratio"] >= row["mean_ratio"] > 0.5
    for cell in doc["replan"]:
        assert set(cell["changes"]) == {"remove_client", "add_client", "remove_helper"}
        assert all(row["median_cpu_s"] > 0 for row in cell["changes"].values())
        assert all(sum(row["stopped"].values()) == 1 for row in cell["changes"].values())
        assert all(row["max_ratio_to_bound"] >= row["min_ratio_to_bound"] >= 1 - 1e-9
                   for row in cell["changes"].values())


def test_small_benchmark_counts_gaps_to_the_optimum(tmp_path) -> None:
    out = tmp_path / "small.json"
    assert small_main(["--instances", "30", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    rows, summary = doc["instances"], doc["summary"]
    assert summary["instances"] == len(rows) > 0
    assert all(r["greedy_ls"] >= r["optimum"] * (1 - 1e-12) for r in rows)
    assert summary["above_3pct"] == sum(r["gap"] > 0.03 for r in rows)
    assert sum(c["instances"] for c in doc["by_ending"].values()) == len(rows)
