"""Figures of a run directory: loss and test metric curves, and the planned versus realised Gantt charts."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from edgepsl.plan.gantt import gantt_png, write_chrome_trace
from edgepsl.plan.instance import Instance
from edgepsl.plan.schedule import Plan, Timeline
from edgepsl.segment.losses import PERCENT_METRICS


def curves_png(records: Sequence[dict[str, Any]], path: str | Path, metric: str = "accuracy") -> None:
    """Mean training loss per round and the test metric (accuracy, mse, label_accuracy) at each evaluation."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.0, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    loss_ax, acc_ax = fig.subplots(1, 2)
    trained = [r for r in records if r["loss"] is not None]  # a round whose every client was closed out has none
    loss_ax.plot([r["round"] for r in trained], [r["loss"] for r in trained], linewidth=0.8)
    loss_ax.set(xlabel="round", ylabel="mean training loss", title="training loss")
    evals = [r for r in records if r.get(metric) is not None]
    scale, unit = (100.0, " (%)") if metric in PERCENT_METRICS else (1.0, "")
    acc_ax.plot([r["round"] for r in evals], [scale * r[metric] for r in evals], marker="o")
    acc_ax.set(xlabel="round", ylabel=f"test {metric}{unit}", title=f"test {metric} of the averaged model")
    for ax in (loss_ax, acc_ax):
        ax.grid(linewidth=0.3, alpha=0.5)
    fig.tight_layout()
    fig.savefig(str(path), format="png")


def gantt_pair(instance: Instance, plan: Plan, planned: Timeline, measured: Instance, actual: Timeline,
               directory: str | Path, round_: int, version: int) -> list[Path]:
    """gantt-planned.png and gantt-actual.png of one round run with plan version `version` (plans/v{version}.json),
    plus trace-actual.json (Chrome trace of the round)."""
    root = Path(directory)
    out = [root / "gantt-planned.png", root / "gantt-actual.png", root / "trace-actual.json"]
    gantt_png(instance, plan, planned, out[0],
              title=f"planned, plan v{version} ({plan.method}): makespan {planned.makespan:,.1f} ms")
    gantt_png(measured, plan, actual, out[1],
              title=f"realised, round {round_}, plan v{version}: makespan {actual.makespan:,.1f} ms "
                    f"(planned {planned.makespan:,.1f} ms)")
    write_chrome_trace(measured, plan, actual, out[2])
    return out
