"""Progress of a run's rounds: a bar on a terminal, one line per round otherwise (shared by demo and coordinator)."""
from __future__ import annotations

import sys
from typing import Any, Callable

from edgepsl.segment.losses import LOSSES, PERCENT_METRICS


METRICS = tuple(loss.metric for loss in LOSSES.values())  # accuracy, mse, label_accuracy
SHORT = {"accuracy": "acc", "label_accuracy": "label acc"}


def _post(metrics: dict[str, Any], evaluated: tuple[str, float] | None) -> dict[str, str]:
    loss = "-" if metrics["loss"] is None else f"{metrics['loss']:.3f}"  # "-": every client was closed out
    post = {"loss": loss, "makespan": f"{metrics['realised_makespan_ms']:.0f}ms"}
    if evaluated is not None:
        name, value = evaluated
        post[SHORT.get(name, name)] = f"{100 * value:.1f}%" if name in PERCENT_METRICS else f"{value:.4g}"
    return post


def progress(total: int, initial: int) -> tuple[Callable[[dict[str, Any]], None], Callable[[], None]]:
    """(on_round, close): a tqdm bar over rounds when stderr is a terminal and tqdm is installed (the `demo`
    extra), else one printed line per round."""
    last: dict[str, tuple[str, float] | None] = {"metric": None}

    def accuracy(metrics: dict[str, Any]) -> tuple[str, float] | None:
        """The latest evaluation (metric name, value) up to this round."""
        for name in METRICS:
            if metrics.get(name) is not None:
                last["metric"] = (name, metrics[name])
        return last["metric"]

    def line(metrics: dict[str, Any]) -> None:
        post = _post(metrics, accuracy(metrics))
        print(f"round {metrics['round'] + 1}/{total}: " + ", ".join(f"{k} {v}" for k, v in post.items()), flush=True)

    if not sys.stderr.isatty():
        return line, lambda: None
    try:
        from tqdm import tqdm
    except ImportError:  # a plain `pip install edgepsl`: tqdm comes with the demo extra
        return line, lambda: None

    bar = tqdm(total=total, initial=initial, unit="round", desc="training", dynamic_ncols=True)

    def on_round(metrics: dict[str, Any]) -> None:
        bar.set_postfix(_post(metrics, accuracy(metrics)), refresh=False)
        bar.update(1)

    return on_round, bar.close
