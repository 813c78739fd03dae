"""Benchmark the runtime on emulated heterogeneous fleets: realised vs planned makespan per planning method.

K clients and H helpers run as separate processes on this machine with real LeNet-5 segments and real
sockets; each emulates a device of the paper's profile (clients d1 / d2, helpers VM / laptop, drawn as in
scenario 1) and each client a link from the paper's bandwidth classes. Compute is padded to the emulated
times (scaled by --time-scale) and sends are paced to the links, so the planner's instance is what the
processes really do. For every H and method it reports the realised makespan per round (after a warm-up
round), the planned one, their ratio, helper utilisation, and the framework overhead per job (a job's round
trip seen by the client minus helper queueing, compute and the emulated download) and as a share of the round.
Links are measured at registration by the clients' probes (paced to the emulated links), as in any run; the JSON
gives the measured-to-emulated bandwidth ratios. To explain realised against planned it compares every job with
the plan's timeline: arrival at the helper against the planned release, start against the planned start, run
time against the planned duration, and counts the jobs run out of plan order.

    python tools/bench_runtime.py [--clients 20] [--helpers 2,4] [--rounds 4] [--out bench-results/runtime.json]
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

from edgepsl.plan.instance import Instance  # noqa: E402
from edgepsl.plan.schedule import KIND_CODES, Plan  # noqa: E402
from edgepsl.runtime.config import RunConfig  # noqa: E402
from edgepsl.runtime.emulation import Emulation, paper_fleet  # noqa: E402
from edgepsl.runtime.launch import LocalRun, run_local  # noqa: E402
from tools.bench_output import machine, settings, write_result  # noqa: E402

METHODS = ("random", "balanced-greedy", "greedy-ls")
TARGET_RATIO = 0.10
TARGET_OVERHEAD = 0.05


def plan_deviation(run_dir: Path, rounds: list[dict]) -> dict:
    """How the jobs ran against the plan's timeline, averaged over jobs and rounds (ms)."""
    instance, plan = Instance.load(run_dir / "instance.json"), Plan.load(run_dir / "plan.json")
    index = {name: j for j, name in enumerate(instance.client_names)}
    jobs = [job for m in rounds for job in m["jobs"]]
    planned_ms = [float((instance.p if KIND_CODES[job["kind"]] == 0 else instance.p_bwd)
                        [index[job["client"]], plan.assignment[index[job["client"]]]]) for job in jobs]
    return {
        "arrival_minus_planned_release_ms": float(np.mean([j["arrival_ms"] - j["planned_release_ms"] for j in jobs])),
        "start_minus_planned_start_ms": float(np.mean([j["start_ms"] - j["planned_start_ms"] for j in jobs])),
        "abs_start_minus_planned_start_ms": float(np.mean([abs(j["start_ms"] - j["planned_start_ms"]) for j in jobs])),
        "run_minus_planned_duration_ms": float(np.mean([j["end_ms"] - j["start_ms"] - p for j, p in zip(jobs, planned_ms)])),
        "queue_wait_ms_mean": float(np.mean([j["queue_wait_ms"] for j in jobs])),
    }


def link_accuracy(run_dir: Path, clients: list[Emulation]) -> dict:
    """Measured over emulated bandwidth across the run's links: min, median, max."""
    rows = json.loads((run_dir / "links.json").read_text())["links"]
    ratios = [row["mbps"] / clients[int(row["client"].removeprefix("client"))].bandwidth_mbps for row in rows]
    return {"min": float(np.min(ratios)), "median": float(np.median(ratios)), "max": float(np.max(ratios))}


def measure(config: RunConfig, clients: list[Emulation], helpers: list[Emulation], run_dir: Path) -> dict:
    """One run; per-round metrics after the warm-up round, summarised."""
    summary = run_local(LocalRun(config, run_dir, client_emulation=clients, helper_emulation=helpers))
    rounds = summary.records[1:]
    realised = np.array([m["realised_makespan_ms"] for m in rounds])
    planned = float(summary.planned_makespan_ms)
    return {
        "links_measured_over_emulated": link_accuracy(run_dir, clients),
        "plan_deviation": plan_deviation(run_dir, rounds),
        "planned_makespan_ms": planned,
        "realised_makespan_ms": realised.tolist(),
        "realised_mean_ms": float(realised.mean()),
        "realised_over_planned": float(realised.mean() / planned),
        "helper_utilisation": np.mean([m["helper_utilisation"] for m in rounds], axis=0).round(4).tolist(),
        "overhead_ms_per_job": float(np.mean([m["overhead_ms_per_job"] for m in rounds])),
        "overhead_share": float(np.mean([m["overhead_share"] for m in rounds])),
        "fallback_jobs_per_round": float(np.mean([m["fallback_jobs"] for m in rounds])),
    }


def main() -> int:
    """Run every (H, method), print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--helpers", default="2,4", help="comma-separated helper counts (default 2,4)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per run; the first is a warm-up (default 4)")
    parser.add_argument("--time-scale", type=float, default=0.05, help="scale of the profiled times (default 0.05)")
    parser.add_argument("--profile", default="resnet101_cifar10", help="device profile to emulate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe-repeats", type=int, default=1,
                        help="link probe round trips per payload size (default 1: emulated links pace exactly)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "runtime.json")
    args = parser.parse_args()
    results = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
        for H in (int(h) for h in args.helpers.split(",")):
            clients, helpers = paper_fleet(args.clients, H, args.seed)
            for method in METHODS:
                config = RunConfig(run_id=f"bench-{H}-{method}", clients=args.clients, helpers=H, rounds=args.rounds,
                                   batch_size=32, aggregate_every=args.rounds, eval_every=args.rounds,
                                   method=method, seed=args.seed, train_samples=args.clients * 64, test_samples=500,
                                   emulation_profile=args.profile, time_scale=args.time_scale, profile_iters=1,
                                   probe_repeats=args.probe_repeats)
                t = time.perf_counter()
                row = measure(config, clients, helpers, Path(tmp) / f"{H}-{method}")
                row.update({"clients": args.clients, "helpers": H, "method": method,
                            "wall_s": time.perf_counter() - t})
                results.append(row)
                dev = row["plan_deviation"]
                print(f"H={H:<2} {method:<16} planned {row['planned_makespan_ms']:8.1f} ms  realised "
                      f"{row['realised_mean_ms']:8.1f} ms  ratio {row['realised_over_planned']:.3f}  "
                      f"util {row['helper_utilisation']}  overhead {row['overhead_ms_per_job']:.1f} ms/job "
                      f"({100 * row['overhead_share']:.1f} % of the round)  out of order "
                      f"{row['fallback_jobs_per_round']:.1f}/round  arrival-release {dev['arrival_minus_planned_release_ms']:+.1f}"
                      f"  start-planned {dev['start_minus_planned_start_ms']:+.1f}  run-planned "
                      f"{dev['run_minus_planned_duration_ms']:+.1f} ms  links x{row['links_measured_over_emulated']['median']:.3f}",
                      flush=True)
    by = {(r["helpers"], r["method"]): r for r in results}
    checks = {}
    for H in sorted({r["helpers"] for r in results}):
        rnd, ours = by[(H, "random")], by[(H, "greedy-ls")]
        checks[f"H={H}"] = {
            "realised_within_10pct_of_planned": all(abs(by[(H, m)]["realised_over_planned"] - 1) <= TARGET_RATIO
                                                    for m in METHODS),
            "realised_over_planned": {m: by[(H, m)]["realised_over_planned"] for m in METHODS},
            "planned_gain_vs_random": 1 - ours["planned_makespan_ms"] / rnd["planned_makespan_ms"],
            "realised_gain_vs_random": 1 - ours["realised_mean_ms"] / rnd["realised_mean_ms"],
            "realised_gain_at_least_planned": (1 - ours["realised_mean_ms"] / rnd["realised_mean_ms"]
                                               >= 1 - ours["planned_makespan_ms"] / rnd["planned_makespan_ms"]),
            "overhead_at_most_5pct": all(by[(H, m)]["overhead_share"] <= TARGET_OVERHEAD for m in METHODS),
        }
    print("\ntargets:")
    for key, value in checks.items():
        print(f"  {key}: " + ", ".join(f"{k} = {v:.3f}" if isinstance(v, float) else f"{k} = {v}" for k, v in value.items()))
    out = {"benchmark": "runtime", "machine": machine(load_before),
           "settings": settings(args),
           "results": results, "targets": checks}
    write_result(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
