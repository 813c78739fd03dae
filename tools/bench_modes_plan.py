"""Benchmark the planned makespan of the local-loss mode (LocSplitFed) against U-shaped SplitFed (issue 20).

Per profile, (K, H) and seed, on the paper's scenario instance with local-loss times
(edgepsl.plan.scenarios.scenario_instance(..., loss_times=True): r_cpu = part-1 forward, aux = part-1 backward
plus the aux head's estimated step on the client's device), greedy-ls plans every client on SplitFed
(local_loss = none), every client in local loss (all) and the planner's choice (auto); with --milp-time-limit > 0
also the MILP (HiGHS) of none and all. Prints a table of local-loss / SplitFed ratios and writes JSON (default
bench-results/modes_plan.json). The issue's target: ratio at most 0.86 on vgg19_cifar10 scenario 1, K = 10, H = 2.
"""
from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgepsl import __version__  # noqa: E402
from edgepsl.plan.backend import backend_name  # noqa: E402
from edgepsl.plan.scenarios import scenario_instance  # noqa: E402
from edgepsl.plan.solvers import plan  # noqa: E402
from tools.bench_output import write_result  # noqa: E402

TARGET = 0.86


def run_case(profile: str, K: int, H: int, scenario: int, seed: int, budget: int, milp_time_limit: float) -> dict:
    """One instance: greedy-ls (and optionally MILP) makespans under none, all and auto."""
    inst = scenario_instance(profile, K, H, scenario, seed, loss_times=True)
    row: dict = {"profile": profile, "K": K, "H": H, "scenario": scenario, "seed": seed}
    for mode in ("none", "all", "auto"):
        t0 = time.perf_counter()
        sol = plan(inst, "greedy-ls", seed=seed, budget=budget, local_loss=mode)
        row[mode] = {"makespan_ms": sol.makespan, "bound_ms": sol.bound.value, "seconds": time.perf_counter() - t0,
                     "local_loss_clients": int(sol.plan.local_loss.sum())}
    if milp_time_limit > 0:
        for mode in ("none", "all"):
            sol = plan(inst, "milp", seed=seed, budget=budget, local_loss=mode, time_limit=milp_time_limit)
            row[f"milp_{mode}"] = {"makespan_ms": sol.makespan, "optimal": bool(sol.optimal)}
    row["ratio_all"] = row["all"]["makespan_ms"] / row["none"]["makespan_ms"]
    row["ratio_auto"] = row["auto"]["makespan_ms"] / row["none"]["makespan_ms"]
    # What local loss removes from each client's chain: the cut-1 gradient download and part-1 backward (q'),
    # against what it may add (the local step beyond the activations' round trip).
    row["tail_share_of_chain"] = float(np.median((inst.d_bwd + inst.l_bwd[:, None])
                                                 / (inst.r + inst.p + inst.gap + inst.p_bwd + inst.d_bwd
                                                    + inst.l_bwd[:, None])))
    return row


def main(argv: list[str] | None = None) -> int:
    """Run the grid, print the table and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", default="vgg19_cifar10,resnet101_cifar10")
    ap.add_argument("--sizes", default="10x2,20x5,50x5", help="KxH list (default 10x2,20x5,50x5)")
    ap.add_argument("--scenario", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budget", type=int, default=2_000_000, help="greedy-ls work budget")
    ap.add_argument("--milp-time-limit", type=float, default=0.0, help="seconds per MILP (0: no MILP)")
    ap.add_argument("--out", default="bench-results/modes_plan.json")
    args = ap.parse_args(argv)
    if args.milp_time_limit > 0 and importlib.util.find_spec("highspy") is None:
        ap.error("--milp-time-limit needs highspy (pip install 'edgepsl[solvers]')")
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    t0 = time.perf_counter()
    rows = []
    print(f"{'profile':<20} {'K':>3} {'H':>2} {'seed':>4} {'splitfed ms':>12} {'all ms':>12} {'auto ms':>12} "
          f"{'all/sf':>7} {'auto/sf':>7} {'auto LL':>7}")
    for profile in args.profiles.split(","):
        for K, H in sizes:
            for seed in range(args.seeds):
                row = run_case(profile, K, H, args.scenario, seed, args.budget, args.milp_time_limit)
                rows.append(row)
                print(f"{profile:<20} {K:>3} {H:>2} {seed:>4} {row['none']['makespan_ms']:>12.1f} "
                      f"{row['all']['makespan_ms']:>12.1f} {row['auto']['makespan_ms']:>12.1f} "
                      f"{row['ratio_all']:>7.3f} {row['ratio_auto']:>7.3f} {row['auto']['local_loss_clients']:>7}")
    cells = []
    for profile in args.profiles.split(","):
        for K, H in sizes:
            mine = [r for r in rows if r["profile"] == profile and r["K"] == K and r["H"] == H]
            ratios = np.array([r["ratio_all"] for r in mine])
            cells.append({"profile": profile, "K": K, "H": H, "seeds": len(mine),
                          "ratio_all_median": float(np.median(ratios)), "ratio_all_max": float(ratios.max()),
                          "ratio_all_min": float(ratios.min()),
                          "ratio_auto_median": float(np.median([r["ratio_auto"] for r in mine])),
                          "seeds_within_target": int((ratios <= TARGET).sum())})
    print()
    print(f"{'profile':<20} {'K':>3} {'H':>2} {'median all/sf':>14} {'min':>6} {'max':>6} {'<= 0.86':>8}")
    for c in cells:
        print(f"{c['profile']:<20} {c['K']:>3} {c['H']:>2} {c['ratio_all_median']:>14.3f} {c['ratio_all_min']:>6.3f} "
              f"{c['ratio_all_max']:>6.3f} {c['seeds_within_target']:>4}/{c['seeds']}")
    target = next((c for c in cells if (c["profile"], c["K"], c["H"]) == ("vgg19_cifar10", 10, 2)), None)
    result = {
        "benchmark": "modes_plan", "edgepsl": __version__, "backend": backend_name(),
        "python": platform.python_version(),
        "args": vars(args), "target": {"ratio_at_most": TARGET, "cell": "vgg19_cifar10 scenario 1, K = 10, H = 2",
                                       "median": target and target["ratio_all_median"],
                                       "max": target and target["ratio_all_max"]},
        "cells": cells, "rows": rows, "wall_seconds": time.perf_counter() - t0,
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
