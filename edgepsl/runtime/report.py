"""The end-of-run summary printed by the coordinator and the demo."""
from __future__ import annotations

from edgepsl.runtime.coordinator import RunSummary
from edgepsl.segment.losses import PERCENT_METRICS


def metric_text(metric: str, value: float) -> str:
    """A metric value as printed: shares (accuracy, label_accuracy) in percent, errors (mse) as numbers."""
    return f"{100.0 * value:.2f} %" if metric in PERCENT_METRICS else f"{value:.4g}"


def print_summary(summary: RunSummary) -> None:
    """Final test metric, planned versus realised makespan per round, and where the run directory is."""
    realised = summary.realised_makespan_ms
    print(f"rounds run: {len(realised)} (up to round {summary.rounds_done - 1})")
    if realised:
        print(f"planned makespan per round: {summary.planned_makespan_ms:,.1f} ms (nominal "
              f"{summary.nominal_makespan_ms:,.1f} ms); realised: mean {sum(realised) / len(realised):,.1f} ms, "
              f"min {min(realised):,.1f} ms, max {max(realised):,.1f} ms")
        shown = summary.records[-5:]
        print("last rounds (round: planned / realised ms):  " + ",  ".join(
            f"{m['round']}: {m['planned_makespan_ms']:,.1f} / {m['realised_makespan_ms']:,.1f}" for m in shown))
    if summary.value is not None:
        print(f"test {summary.metric}: {metric_text(summary.metric, summary.value)}")
    print(f"run directory: {summary.run_dir}")
