"""The hybrid benchmark's planner part on a tiny setting: JSON structure and consistent ratios."""
from __future__ import annotations

import json

from tools.bench_hybrid import main


def test_hybrid_benchmark_writes_ratios_and_checks_the_milp(tmp_path) -> None:
    out = tmp_path / "hybrid.json"
    assert main(["--sizes", "6x2,12x2", "--seeds", "1", "--shares", "1.0", "--milp-max-k", "6", "--no-runtime",
                 "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["runtime"] is None and [(s["K"], s["H"]) for s in doc["summary"]] == [(12, 2), (6, 2)]
    for row in doc["rows"]:
        assert row["ratio_to_all_split"] <= 1.0 and row["hybrid_ms"] >= row["hybrid_bound_ms"] * (1 - 1e-9)
    small = doc["summary"][1]
    assert small["milp_proven"] == 1 and small["bound_below_milp_everywhere"]
    assert small["max_ratio_to_milp_optimum"] <= 1.03
