"""Benchmark micro-batch pipelining in the runtime: realised makespan at the planner's N against N = 1.

K clients and H helpers run as separate processes on this machine with real LeNet-5 segments and real sockets, each
emulating a device of the paper's scenario-1 fleet as `edgepsl demo --emulate paper` does (the resnet101_cifar10
profile scaled by --time-scale, clients d1 / d2 with links from the paper's bandwidth classes, helpers VM / laptop).
The same fleet runs twice, side by side: micro_batches 1 and micro_batches --micro (default auto: the planner's N per
client). For each it reports the realised makespan per round after a warm-up round, the planned one and their ratio;
then the realised ratio of the pipelined run to the unpipelined one (target <= 0.75) and whether realised is within
10 % of planned in both runs.

    python tools/bench_pipeline_runtime.py [--clients 8] [--helpers 2] [--rounds 5] [--micro auto]
                                           [--out bench-results/pipeline_runtime.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgepsl.runtime.config import RunConfig  # noqa: E402
from edgepsl.runtime.emulation import Emulation, paper_fleet  # noqa: E402
from edgepsl.runtime.launch import LocalRun, run_local  # noqa: E402
from tools.bench_output import machine, settings, write_result  # noqa: E402

PAPER_PROFILE = "resnet101_cifar10"  # what `edgepsl demo --emulate paper` emulates
TARGET_SPEEDUP = 0.75
TARGET_RATIO = 0.10


def measure(config: RunConfig, clients: list[Emulation], helpers: list[Emulation], run_dir: Path) -> dict:
    """One run; per-round realised and planned makespans after the warm-up round, summarised."""
    summary = run_local(LocalRun(config, run_dir, client_emulation=clients, helper_emulation=helpers, secure=False))
    rounds = summary.records[1:]
    realised = np.array([m["realised_makespan_ms"] for m in rounds])
    planned = np.array([m["planned_makespan_ms"] for m in rounds])
    start = json.loads((run_dir / "plans" / "v0.json").read_text())
    return {
        "micro_batches": start["plan"].get("micro_batches", [1] * config.clients),
        "plan_versions": sorted({m["plan_version"] for m in rounds}),
        "planned_makespan_ms": planned.tolist(),
        "realised_makespan_ms": realised.tolist(),
        "realised_median_ms": float(np.median(realised)),
        "planned_median_ms": float(np.median(planned)),
        "realised_over_planned": float(np.median(realised / planned)),
        "helper_utilisation": np.mean([m["helper_utilisation"] for m in rounds], axis=0).round(4).tolist(),
        "fallback_jobs_per_round": float(np.mean([m["fallback_jobs"] for m in rounds])),
    }


def main() -> int:
    """Run the fleet at N = 1 and at --micro, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--helpers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="rounds per run; the first is a warm-up (default 5)")
    parser.add_argument("--micro", default="auto", help="micro_batches of the pipelined run (default auto)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--time-scale", type=float, default=0.05, help="scale of the profiled times (default 0.05)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "pipeline_runtime.json")
    args = parser.parse_args()
    clients, helpers = paper_fleet(args.clients, args.helpers, args.seed)
    results = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-runtime-") as tmp:
        for micro in ("1", args.micro):
            config = RunConfig(run_id=f"bench-pipe-{micro}", clients=args.clients, helpers=args.helpers,
                               rounds=args.rounds, batch_size=args.batch_size, aggregate_every=args.rounds,
                               eval_every=args.rounds, method="greedy-ls", seed=args.seed,
                               train_samples=args.clients * 2 * args.batch_size, test_samples=200,
                               emulation_profile=PAPER_PROFILE, time_scale=args.time_scale, profile_iters=1,
                               probe_repeats=1, micro_batches=micro)
            t = time.perf_counter()
            row = measure(config, clients, helpers, Path(tmp) / f"n{micro}")
            row["wall_s"] = time.perf_counter() - t
            results[micro] = row
            print(f"micro_batches {micro:<5} N {row['micro_batches']}  planned {row['planned_median_ms']:8.1f} ms  "
                  f"realised {row['realised_median_ms']:8.1f} ms  realised/planned {row['realised_over_planned']:.3f}  "
                  f"util {row['helper_utilisation']}  out of order {row['fallback_jobs_per_round']:.1f}/round  "
                  f"plan versions {row['plan_versions']}", flush=True)
    base, piped = results["1"], results[args.micro]
    speedup = piped["realised_median_ms"] / base["realised_median_ms"]
    targets = {
        "realised_pipelined_over_unpipelined": speedup,
        "planned_pipelined_over_unpipelined": piped["planned_median_ms"] / base["planned_median_ms"],
        "speedup_target_met": speedup <= TARGET_SPEEDUP,
        "realised_within_10pct_of_planned": all(abs(r["realised_over_planned"] - 1) <= TARGET_RATIO
                                                for r in results.values()),
    }
    print("\ntargets: " + ", ".join(f"{k} = {v:.3f}" if isinstance(v, float) else f"{k} = {v}"
                                    for k, v in targets.items()))
    out = {"benchmark": "pipeline_runtime",
           "machine": machine(load_before),
           "settings": settings(args),
           "results": results, "targets": targets}
    write_result(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
