"""Benchmark hybrid planning (local or split per client) on the paper's hybrid scenario (paper.md 4.7).

For each size (K, H), seed and own-memory share (the reference's 0.5: each client's own device holds part-2 with
probability 1/2; and 1.0: every device holds it), on edgepsl.plan.scenarios.hybrid_instance (resnet101, laptop
helpers, clients d1 / Jetson CPU / Jetson GPU): the all-split greedy-ls plan, the hybrid plan, the three paper
baselines and the hybrid lower bound; for K <= --milp-max-k also hybrid-milp (HiGHS, --milp-time-limit s), whose
proven optimum checks the hybrid plan. Prints a table of ratios (hybrid / all-split, hybrid / baseline, hybrid /
MILP optimum) and writes JSON (default bench-results/hybrid.json).

Then (unless --no-runtime) the runtime check: the paper's emulated fleet (`--emulate paper`: scenario-1 clients
d1 / d2 with links from the bandwidth classes, helpers VM / laptop, resnet101_cifar10 times scaled by
--runtime-time-scale) with the first two clients emulating Jetson GPUs, run with method hybrid and again with
greedy-ls (all split), the same seed: which clients went local, whether any helper ran a job of theirs, the
largest relative L2 difference of a model tensor between the two runs' checkpoints after --runtime-rounds rounds,
and the hybrid run's realised over planned makespan (mean over the rounds after the first).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgepsl import __version__  # noqa: E402
from edgepsl.plan.backend import backend_name  # noqa: E402
from edgepsl.plan.hybrid import BASELINES  # noqa: E402
from edgepsl.plan.scenarios import hybrid_instance  # noqa: E402
from edgepsl.plan.solvers import plan  # noqa: E402
from edgepsl.runtime import checkpoint  # noqa: E402
from edgepsl.runtime.config import RunConfig  # noqa: E402
from edgepsl.runtime.emulation import paper_fleet  # noqa: E402
from edgepsl.runtime.launch import LocalRun, run_local  # noqa: E402
from tools.bench_output import write_result  # noqa: E402

DEFAULT_SIZES = "50x2,50x4,20x2,100x5,12x2,8x2"


def run_case(K: int, H: int, seed: int, share: float, profile: str, milp_max_k: int, milp_time_limit: float) -> dict:
    """One instance: makespans of every method, the hybrid bound and (small K) the MILP's proven optimum."""
    inst = hybrid_instance(profile, K, H, seed, local_memory_share=share)
    split = plan(inst, "greedy-ls", seed=seed)
    t0 = time.perf_counter()
    hyb = plan(inst, "hybrid", seed=seed)
    seconds = time.perf_counter() - t0
    row = {"K": K, "H": H, "seed": seed, "local_memory_share": share, "fits_locally": int(inst.local_fits.sum()),
           "all_split_ms": split.makespan, "hybrid_ms": hyb.makespan, "hybrid_seconds": seconds,
           "hybrid_local_clients": int(hyb.plan.local.sum()), "hybrid_bound_ms": hyb.bound.value,
           "hybrid_gap_to_bound": hyb.gap, "ratio_to_all_split": hyb.makespan / split.makespan}
    for name in BASELINES:
        base = plan(inst, name, seed=seed)
        row[f"{name}_ms"] = base.makespan
        row[f"ratio_to_{name}"] = hyb.makespan / base.makespan
    if K <= milp_max_k and importlib.util.find_spec("highspy") is not None:
        exact = plan(inst, "hybrid-milp", seed=seed, time_limit=milp_time_limit)
        row.update(milp_ms=exact.makespan, milp_optimal=bool(exact.optimal), milp_seconds=exact.solve_seconds,
                   ratio_to_milp=hyb.makespan / exact.makespan,
                   bound_below_milp=bool(hyb.bound.value <= exact.makespan * (1 + 1e-9)))
    return row


def summarise(rows: list[dict]) -> list[dict]:
    """Per (K, H, share): mean and max ratio to all-split, mean ratio to each baseline, worst ratio to the MILP."""
    out = []
    for key in sorted({(r["K"], r["H"], r["local_memory_share"]) for r in rows}, key=lambda k: (-k[0], k[1], k[2])):
        group = [r for r in rows if (r["K"], r["H"], r["local_memory_share"]) == key]
        ratio = np.array([r["ratio_to_all_split"] for r in group])
        entry = {"K": key[0], "H": key[1], "local_memory_share": key[2], "seeds": len(group),
                 "mean_ratio_to_all_split": float(ratio.mean()), "max_ratio_to_all_split": float(ratio.max()),
                 "min_ratio_to_all_split": float(ratio.min()),
                 "mean_gap_to_bound": float(np.mean([r["hybrid_gap_to_bound"] for r in group])),
                 "mean_local_clients": float(np.mean([r["hybrid_local_clients"] for r in group])),
                 "median_hybrid_seconds": float(np.median([r["hybrid_seconds"] for r in group]))}
        for name in BASELINES:
            entry[f"mean_ratio_to_{name}"] = float(np.mean([r[f"ratio_to_{name}"] for r in group]))
        proven = [r for r in group if r.get("milp_optimal")]
        if any("milp_ms" in r for r in group):
            entry["milp_proven"] = len(proven)
            entry["max_ratio_to_milp_optimum"] = max((r["ratio_to_milp"] for r in proven), default=None)
            entry["bound_below_milp_everywhere"] = all(r["bound_below_milp"] for r in group if "milp_ms" in r)
        out.append(entry)
    return out


def runtime_check(clients: int, helpers: int, rounds: int, time_scale: float, seed: int) -> dict:
    """The hybrid and the all-split run of the emulated fleet with two Jetson-GPU clients, compared."""
    fleet, helper_fleet = paper_fleet(clients, helpers, seed)
    fleet = [dataclasses.replace(e, device="jetson-gpu") if k < 2 else e for k, e in enumerate(fleet)]
    out: dict = {"clients": clients, "helpers": helpers, "rounds": rounds, "time_scale": time_scale,
                 "client_devices": [e.device for e in fleet], "helper_devices": [e.device for e in helper_fleet]}
    saved = {}
    with tempfile.TemporaryDirectory(prefix="bench-hybrid-") as tmp:
        for method in ("hybrid", "greedy-ls"):
            config = RunConfig(run_id=f"hybrid-{method}", clients=clients, helpers=helpers, rounds=rounds,
                               batch_size=32, aggregate_every=rounds, eval_every=rounds, method=method, seed=seed,
                               train_samples=clients * 64, test_samples=500, emulation_profile="resnet101_cifar10",
                               time_scale=time_scale, profile_iters=1, probe_repeats=1)
            run_dir = Path(tmp) / method
            summary = run_local(LocalRun(config, run_dir, client_emulation=fleet, helper_emulation=helper_fleet))
            assignment = json.loads((run_dir / "plan.json").read_text())["assignment"]
            later = summary.records[1:]
            realised = float(sum(m["realised_makespan_ms"] for m in later) / len(later))
            local = [f"client{j}" for j, a in enumerate(assignment) if a == -1]
            out[method] = {"assignment": assignment, "local_clients": local,
                           "helper_jobs_of_local_clients": sum(job["client"] in local for m in summary.records
                                                               for job in m["jobs"]),
                           "planned_makespan_ms": summary.planned_makespan_ms, "realised_mean_ms": realised,
                           "realised_over_planned": realised / summary.planned_makespan_ms}
            saved[method] = checkpoint.load(run_dir / "checkpoint").model
    diffs = {name: float(np.linalg.norm(saved["hybrid"][name] - ref) / max(np.linalg.norm(ref), 1e-12))
             for name, ref in saved["greedy-ls"].items()}
    out["max_relative_l2"] = max(diffs.values())
    out["checks"] = {"two_jetsons_local": out["hybrid"]["local_clients"] == ["client0", "client1"],
                     "no_helper_jobs_of_local_clients": out["hybrid"]["helper_jobs_of_local_clients"] == 0,
                     "parameters_within_1e-5": out["max_relative_l2"] <= 1e-5,
                     "realised_within_10pct_of_planned": abs(out["hybrid"]["realised_over_planned"] - 1) <= 0.10}
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=DEFAULT_SIZES, help=f"KxH list (default {DEFAULT_SIZES})")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--shares", default="0.5,1.0", help="own-memory shares (default 0.5,1.0)")
    ap.add_argument("--profile", default="resnet101_cifar10")
    ap.add_argument("--milp-max-k", type=int, default=12)
    ap.add_argument("--milp-time-limit", type=float, default=60.0)
    ap.add_argument("--no-runtime", action="store_true", help="skip the emulated runtime check")
    ap.add_argument("--runtime-clients", type=int, default=6)
    ap.add_argument("--runtime-helpers", type=int, default=2)
    ap.add_argument("--runtime-rounds", type=int, default=10)
    ap.add_argument("--runtime-time-scale", type=float, default=0.05)
    ap.add_argument("--out", type=Path, default=Path("bench-results/hybrid.json"))
    args = ap.parse_args(argv)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    shares = [float(s) for s in args.shares.split(",")]
    t0 = time.perf_counter()
    rows = [run_case(K, H, seed, share, args.profile, args.milp_max_k, args.milp_time_limit)
            for K, H in sizes for share in shares for seed in range(args.seeds)]
    summary = summarise(rows)
    print(f"{'K':>4} {'H':>2} {'share':>5} {'hyb/split':>17} {'local':>5} {'gap':>6} "
          + " ".join(f"{'/' + n[7:]:>16}" for n in BASELINES) + f" {'/milp (proven)':>15}")
    for s in summary:
        milp = ""
        if "milp_proven" in s:
            worst = s["max_ratio_to_milp_optimum"]
            milp = f"{worst:.4f} ({s['milp_proven']})" if worst is not None else f"- ({s['milp_proven']})"
        print(f"{s['K']:>4} {s['H']:>2} {s['local_memory_share']:>5} "
              f"{s['mean_ratio_to_all_split']:.3f} (max {s['max_ratio_to_all_split']:.3f}) "
              f"{s['mean_local_clients']:>5.1f} {100 * s['mean_gap_to_bound']:>5.2f}% "
              + " ".join(f"{s[f'mean_ratio_to_{n}']:>16.3f}" for n in BASELINES) + f" {milp:>15}")
    runtime = None
    if not args.no_runtime:
        runtime = runtime_check(args.runtime_clients, args.runtime_helpers, args.runtime_rounds,
                                args.runtime_time_scale, 0)
        h = runtime["hybrid"]
        print(f"runtime: local {h['local_clients']}, helper jobs of local clients {h['helper_jobs_of_local_clients']}, "
              f"max relative L2 to all-split {runtime['max_relative_l2']:.2e}, realised/planned "
              f"{h['realised_over_planned']:.3f} (all-split {runtime['greedy-ls']['realised_over_planned']:.3f}); "
              f"checks {runtime['checks']}")
    write_result(args.out, {"benchmark": "hybrid", "edgepsl": __version__, "backend": backend_name(),
                            "machine": platform.machine(), "profile": args.profile, "seeds": args.seeds,
                            "milp_time_limit": args.milp_time_limit, "seconds": time.perf_counter() - t0,
                            "summary": summary, "rows": rows, "runtime": runtime})
    return 0


if __name__ == "__main__":
    sys.exit(main())
