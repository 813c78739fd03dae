"""Benchmark the learning modes side by side: SplitFed (U-shape), two-part SplitFed, LocSplitFed (local loss),
LocFedMix-SL (local loss + two-part + SmashMix + FedAvg) and mode "auto" (the planner chooses SplitFed or local loss
per client) on Fashion-MNIST, IID and Dirichlet(alpha) splits.

Every mode trains the same LeNet-5 artifact (with its aux head) on the same data, seed, batches, optimizer and FedAvg
period; K clients and H helpers run as processes on this machine with real sockets (docs/modes.md).

Two measurements per mode, because an emulated run of hundreds of rounds on slow emulated links takes hours:
  * accuracy: --rounds rounds per (split, mode) without emulation, test accuracy every --eval-every rounds;
  * time: --timing-rounds rounds per mode with --emulate paper (the demo's scenario-1 devices of resnet101_cifar10
    and 1-20 Mbps links, times scaled by --time-scale): the realised makespan per round (a round ends with its last
    client and its helpers' last work, SmashMix included) and the bytes per round.
The emulated wall-clock after round r is r times the mode's median realised makespan (warm-up round left out).
The run plans each mode's own chain (docs/modes.md, "Planning the modes"): the timing rows give planned and
realised makespans side by side (realised / planned per round, median) and the drift re-plans (--timing-only: only
these runs).

Targets (issue 20): LocSplitFed's accuracy after the last round within 1.5 points of SplitFed's; LocFedMix-SL on the
Dirichlet split at least SplitFed's accuracy after the same emulated wall-clock budget (the smaller of the two runs'
totals); local loss saves exactly the cut-1 gradients' bytes per round.

    python tools/bench_modes.py [--rounds 300] [--eval-every 25] [--splits iid,dirichlet] [--out bench-results/modes.json]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgepsl.runtime.config import RunConfig  # noqa: E402
from edgepsl.runtime.emulation import paper_fleet  # noqa: E402
from edgepsl.runtime.launch import LocalRun, run_local  # noqa: E402
from edgepsl.runtime.protocol import CutShapes  # noqa: E402
from edgepsl.segment import load_manifest  # noqa: E402
from tools.bench_output import write_result  # noqa: E402

PAPER_PROFILE = "resnet101_cifar10"
ACCURACY_GAP = 1.5  # points


def modes(pairs: int) -> dict[str, dict]:
    """The compared modes as config keys."""
    return {"SplitFed": {},
            "two-part SplitFed": {"labels": "helper"},
            "LocSplitFed": {"mode": "local-loss"},
            "LocFedMix-SL": {"mode": "local-loss", "labels": "helper", "helper_model": "shared",
                             "smashmix_pairs": pairs},
            "auto (planner's choice)": {"mode": "auto"}}


def accuracy_run(base: RunConfig, keys: dict, run_dir: Path) -> dict:
    """One unemulated run: test accuracy against rounds and the training loss per round."""
    t = time.perf_counter()
    summary = run_local(LocalRun(base.replace(**keys), run_dir, secure=False))
    curve = [(m["round"] + 1, m["accuracy"]) for m in summary.records if m.get("accuracy") is not None]
    return {"accuracy": [a for _, a in curve], "eval_rounds": [r for r, _ in curve],
            "loss": [m.get("loss") for m in summary.records], "wall_s": time.perf_counter() - t}


def timing_run(base: RunConfig, keys: dict, rounds: int, run_dir: Path) -> dict:
    """One run with the paper's emulated fleet: realised makespan and bytes per round (warm-up round left out)."""
    config = base.replace(**keys, rounds=rounds, aggregate_every=rounds, eval_every=rounds,
                          emulation_profile=PAPER_PROFILE, probe_repeats=1)
    clients, helpers = paper_fleet(config.clients, config.helpers, config.seed)
    summary = run_local(LocalRun(config, run_dir, secure=False, client_emulation=clients, helper_emulation=helpers))
    rounds_ = summary.records[1:]
    realised = [float(m["realised_makespan_ms"]) for m in rounds_]
    planned = [float(m["planned_makespan_ms"]) for m in rounds_]
    return {"realised_makespan_ms": realised, "realised_median_ms": float(np.median(realised)),
            "planned_makespan_ms": float(summary.planned_makespan_ms), "planned_per_round_ms": planned,
            "realised_over_planned": float(np.median(np.array(realised) / np.array(planned))),
            "replans": sum(1 for m in summary.records if "replanned_to" in m),
            "bytes_per_round": [int(m["bytes"]) for m in rounds_]}


def at_budget(times: list[float], accuracy: list[float], budget: float) -> float | None:
    """The last accuracy evaluated by emulated time `budget` (None if none was)."""
    reached = [a for t, a in zip(times, accuracy) if t <= budget + 1e-9]
    return reached[-1] if reached else None


def figure(result: dict, path: Path) -> Path | None:
    """Accuracy against emulated wall-clock time, one panel per split (None without matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (the plot extra): no figure")
        return None
    splits = list(result["accuracy"])
    fig, axes = plt.subplots(1, len(splits), figsize=(6 * len(splits), 4), squeeze=False)
    for ax, split in zip(axes[0], splits):
        for mode, row in result["accuracy"][split].items():
            ax.plot(np.array(row["emulated_s"]), 100 * np.array(row["accuracy"]), marker=".", label=mode)
        ax.set_title(f"Fashion-MNIST, {split} split, K={result['clients']}")
        ax.set_xlabel("emulated wall-clock (s, --emulate paper)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")
    return path


def main() -> int:
    """Run every (split, mode) for accuracy and every mode for time; print the tables and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--helpers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=25, help="a multiple of --aggregate-every")
    parser.add_argument("--aggregate-every", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--splits", default="iid,dirichlet")
    parser.add_argument("--alpha", type=float, default=0.3, help="Dirichlet concentration (default 0.3)")
    parser.add_argument("--smashmix-pairs", type=int, default=3, help="LocFedMix-SL's mixed batches per helper round")
    parser.add_argument("--timing-rounds", type=int, default=6, help="emulated rounds per mode; the first is a warm-up")
    parser.add_argument("--time-scale", type=float, default=0.05, help="scale of the profiled times (default 0.05)")
    parser.add_argument("--test-samples", type=int, default=0, help="0: the whole test split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timing-only", action="store_true", help="only the emulated timing runs (no accuracy)")
    parser.add_argument("--modes", default="", help="comma-separated subset of the modes (default all)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "modes.json")
    args = parser.parse_args()
    chosen = {k: v for k, v in modes(args.smashmix_pairs).items()
              if not args.modes or k in args.modes.split(",")}
    base = RunConfig(run_id="bench-modes", clients=args.clients, helpers=args.helpers, rounds=args.rounds,
                     batch_size=args.batch_size, lr=args.lr, aggregate_every=args.aggregate_every,
                     eval_every=args.eval_every, seed=args.seed, alpha=args.alpha, test_samples=args.test_samples,
                     time_scale=args.time_scale, profile_iters=1, round_timeout_s=600.0)
    cuts = CutShapes.of(load_manifest(base.artifact), base.batch_size)
    load_before = os.getloadavg()
    started = time.perf_counter()
    timing, accuracy = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-modes-") as tmp:
        for i, (mode, keys) in enumerate(chosen.items()):
            timing[mode] = timing_run(base, keys, args.timing_rounds, Path(tmp) / f"time-{i}")
            row = timing[mode]
            print(f"{mode:<18} realised makespan {row['realised_median_ms']:8.1f} ms/round, planned "
                  f"{row['planned_makespan_ms']:8.1f} (realised / planned {row['realised_over_planned']:.3f}, "
                  f"{row['replans']} re-plans)  {int(np.median(row['bytes_per_round'])):>9} bytes/round",
                  flush=True)
        for split in [] if args.timing_only else args.splits.split(","):
            accuracy[split] = {}
            for i, (mode, keys) in enumerate(chosen.items()):
                row = accuracy_run(base.replace(partition=split), keys, Path(tmp) / f"acc-{split}-{i}")
                row["emulated_s"] = [r * timing[mode]["realised_median_ms"] / 1e3 for r in row["eval_rounds"]]
                accuracy[split][mode] = row
                print(f"{split:<10} {mode:<18} accuracy after {row['eval_rounds'][-1]} rounds "
                      f"{100 * row['accuracy'][-1]:.2f} %  (emulated {row['emulated_s'][-1]:.1f} s; ran "
                      f"{row['wall_s']:.0f} s)", flush=True)
    result = {"benchmark": "modes", "clients": args.clients, "helpers": args.helpers, "rounds": args.rounds,
              "batch_size": args.batch_size, "lr": args.lr, "aggregate_every": args.aggregate_every,
              "eval_every": args.eval_every, "alpha": args.alpha, "smashmix_pairs": args.smashmix_pairs,
              "timing_rounds": args.timing_rounds, "time_scale": args.time_scale, "profile": PAPER_PROFILE,
              "modes": chosen, "cut1_gradient_bytes": int(np.prod(cuts.act.shape)) * cuts.act.dtype.itemsize,
              "timing": timing, "accuracy": accuracy, "targets": targets(accuracy, timing, args.clients, cuts),
              "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "load_before": load_before,
                       "load_after": os.getloadavg()},
              "wall_s": time.perf_counter() - started}
    print("\ntargets:")
    for name, value in result["targets"].items():
        print(f"  {name}: {value}")
    out = write_result(args.out, result)
    if accuracy:
        figure(result, out.with_suffix(".png"))
    return 0


def targets(accuracy: dict, timing: dict, clients: int, cuts: CutShapes) -> dict:
    """The issue's targets where the compared modes ran."""
    out: dict = {}
    gradient = int(np.prod(cuts.act.shape)) * cuts.act.dtype.itemsize
    if {"SplitFed", "LocSplitFed"} <= set(timing):
        saved = np.median(timing["SplitFed"]["bytes_per_round"]) - np.median(timing["LocSplitFed"]["bytes_per_round"])
        out["local_loss_bytes_saved_per_round"] = int(saved)
        out["local_loss_saves_exactly_the_cut1_gradients"] = int(saved) == clients * gradient
    for split, rows in accuracy.items():
        if {"SplitFed", "LocSplitFed"} <= set(rows):
            gap = 100 * (rows["SplitFed"]["accuracy"][-1] - rows["LocSplitFed"]["accuracy"][-1])
            out[f"{split}: SplitFed minus LocSplitFed accuracy (points)"] = round(gap, 2)
            out[f"{split}: local loss within {ACCURACY_GAP} points"] = gap <= ACCURACY_GAP
        if {"SplitFed", "LocFedMix-SL"} <= set(rows):
            ours, theirs = rows["LocFedMix-SL"], rows["SplitFed"]
            budget = min(ours["emulated_s"][-1], theirs["emulated_s"][-1])
            a, b = at_budget(ours["emulated_s"], ours["accuracy"], budget), at_budget(
                theirs["emulated_s"], theirs["accuracy"], budget)
            out[f"{split}: budget (emulated s)"] = round(budget, 2)
            out[f"{split}: accuracy at the budget (LocFedMix-SL, SplitFed)"] = [a, b]
            out[f"{split}: LocFedMix-SL >= SplitFed at the same budget"] = (
                "not comparable: a mode has no evaluation by the budget (lower --eval-every)" if a is None or b is None
                else a >= b)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
