"""The end-of-run summary printed by the coordinator and the demo."""
from __future__ import annotations

from edgepsl.runtime.coordinator import RunSummary


def print_summary(summary: RunSummary) -> None:
    """Final accuracy, planned versus realised makespan per round, and where the run directory is."""
    realised = summary.realised_makespan_ms
    print(f"rounds run: {len(realised)} (up to round {summary.rounds_done - 1})")
    if realised:
        print(f"planned makespan per round: {summary.planned_makespan_ms:,.1f} ms; realised: mean "
              f"{sum(realised) / len(realised):,.1f} ms, min {min(realised):,.1f} ms, max {max(realised):,.1f} ms")
        shown = summary.records[-5:]
        print("last rounds (round: planned / realised ms):  " + ",  ".join(
            f"{m['round']}: {m['planned_makespan_ms']:,.1f} / {m['realised_makespan_ms']:,.1f}" for m in shown))
    if summary.accuracy is not None:
        print(f"test accuracy: {100.0 * summary.accuracy:.2f} %")
    print(f"run directory: {summary.run_dir}")
