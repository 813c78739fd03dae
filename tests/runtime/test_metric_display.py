"""The run's summary, progress line and curves name the artifact's metric: accuracy and label_accuracy in percent,
mse as a number."""
from __future__ import annotations

from pathlib import Path

import pytest

from edgepsl.cli._progress import progress
from edgepsl.runtime.coordinator import RunSummary
from edgepsl.runtime.plots import curves_png
from edgepsl.runtime.report import print_summary

RECORDS = [{"round": r, "loss": 1.0 / (r + 1), "planned_makespan_ms": 10.0, "realised_makespan_ms": 12.0}
           for r in range(4)]


@pytest.mark.parametrize("metric,value,shown,progress_text", [
    ("accuracy", 0.8123, "test accuracy: 81.23 %", "acc 81.2%"),
    ("mse", 0.04567, "test mse: 0.04567", "mse 0.04567"),
    ("label_accuracy", 0.5, "test label_accuracy: 50.00 %", "label acc 50.0%")])
def test_summary_progress_and_curves_name_the_metric(metric, value, shown, progress_text, capsys, tmp_path):
    records = [dict(m) for m in RECORDS]
    records[-1][metric] = value
    summary = RunSummary(Path(tmp_path), 4, metric, value, 10.0, 8.0, [12.0] * 4, records)
    assert summary.accuracy == (value if metric == "accuracy" else None)
    print_summary(summary)
    on_round, close = progress(4, 0)
    for m in records:
        on_round(m)
    close()
    out = capsys.readouterr().out
    assert shown in out and "planned makespan per round: 10.0 ms (nominal 8.0 ms)" in out
    lines = out.splitlines()
    assert lines[-1].startswith("round 4/4") and lines[-1].endswith(progress_text)
    assert not any(progress_text in line for line in lines[:-1])
    curves_png(records, tmp_path / "curves.png", metric)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
