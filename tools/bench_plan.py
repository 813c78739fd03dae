"""Benchmark the planning methods: wall time (compiled and pure core), makespan and gap to the lower bound.

For each (K, H) and scenario: every method on --seeds seeded instances with the compiled core, and on
--pure-seeds of them with the pure-Python twin (same plans, slower). Also times the two kernel targets
directly: balanced-greedy + FCFS at K=100, H=10, and one online dispatch decision. Prints a table and
writes JSON (default bench-results/plan.json).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgepsl import __version__  # noqa: E402
from edgepsl import _core as compiled  # noqa: E402
from edgepsl.plan import heuristics, pure  # noqa: E402
from edgepsl.plan.backend import kernel_arrays  # noqa: E402
from edgepsl.plan.heuristics import METHODS, solve  # noqa: E402
from edgepsl.plan.scenarios import scenario_instance  # noqa: E402
from tools.bench_output import write_result  # noqa: E402

GRID = ((10, 2), (20, 5), (50, 5), (100, 10), (1000, 50), (10000, 100))


def _with_backend(module, fn, *args, **kwargs):
    saved = heuristics.kernels
    heuristics.kernels = module
    import edgepsl.plan.bounds as bounds
    import edgepsl.plan.evaluate as evaluate
    saved_b, saved_e = bounds.kernels, evaluate.kernels
    bounds.kernels = evaluate.kernels = module
    try:
        return fn(*args, **kwargs)
    finally:
        heuristics.kernels, bounds.kernels, evaluate.kernels = saved, saved_b, saved_e


def _median_us(fn, repeats: int, inner: int) -> float:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner * 1e6)
    return statistics.median(samples)


def kernel_targets(profile: str, scenario: int, seed: int) -> dict:
    """Balanced-greedy + FCFS at K=100, H=10 (compiled vs pure) and one online dispatch decision."""
    inst = scenario_instance(profile, 100, 10, scenario, seed)
    arrs = kernel_arrays(inst)

    def bg_fcfs(k):
        return lambda: k.dispatch(k.assign_balanced_greedy(inst.mem, inst.cap), k.RULE_FCFS, *arrs)

    bg_c = _median_us(bg_fcfs(compiled), repeats=51, inner=200)
    bg_p = _median_us(bg_fcfs(pure), repeats=11, inner=3)
    rng = np.random.default_rng(seed)
    n = 20
    kind = rng.integers(0, 2, n)
    release = rng.uniform(0, 100, n)
    tail = rng.uniform(0, 50, n)
    client = rng.permutation(n).astype(np.int64)
    pick = {
        name: _median_us(lambda r=rule: compiled.pick_next(50.0, kind, release, tail, client, r), repeats=51, inner=2000)
        for name, rule in (("fcfs", compiled.RULE_FCFS), ("fwd-first", compiled.RULE_FWD_FIRST), ("tail", compiled.RULE_TAIL))
    }
    return {
        "balanced_greedy_fcfs_K100_H10_us": {"compiled": bg_c, "pure": bg_p, "speedup": bg_p / bg_c},
        "pick_next_20_jobs_us": pick,
    }


def run_cell(profile: str, K: int, H: int, scenario: int, seeds: int, pure_seeds: int, budget: int) -> dict:
    """All methods on one (K, H, scenario) cell."""
    rows = {m: {"makespan": [], "gap": [], "seconds": [], "pure_seconds": []} for m in METHODS}
    worse = {"balanced-greedy": 0, "random": 0}
    for seed in range(seeds):
        inst = scenario_instance(profile, K, H, scenario, seed)
        sols = {}
        for m in METHODS:
            s = solve(inst, m, seed=seed, budget=budget)
            sols[m] = s
            rows[m]["makespan"].append(s.makespan)
            rows[m]["gap"].append(s.gap)
            rows[m]["seconds"].append(s.solve_seconds)
            if seed < pure_seeds:
                sp = _with_backend(pure, solve, inst, m, seed=seed, budget=budget)
                if not np.array_equal(sp.plan.assignment, s.plan.assignment) or sp.makespan != s.makespan:
                    raise SystemExit(f"pure and compiled plans differ: {m} K={K} H={H} scenario {scenario} seed {seed}")
                rows[m]["pure_seconds"].append(sp.solve_seconds)
        for base in worse:
            worse[base] += int(sols["greedy-ls"].makespan > sols[base].makespan)
    out = {"K": K, "H": H, "scenario": scenario, "seeds": seeds, "pure_seeds": min(pure_seeds, seeds), "methods": {}}
    rand = np.array(rows["random"]["makespan"])
    for m, r in rows.items():
        ms = np.array(r["makespan"])
        out["methods"][m] = {
            "median_seconds": statistics.median(r["seconds"]),
            "median_pure_seconds": statistics.median(r["pure_seconds"]) if r["pure_seconds"] else None,
            "mean_makespan_ms": float(ms.mean()),
            "mean_gap": float(np.mean(r["gap"])),
            "max_gap": float(np.max(r["gap"])),
            "mean_improvement_over_random": float(np.mean(1 - ms / rand)),
        }
    out["greedy_ls_worse_than"] = worse
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="resnet101_cifar10")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--pure-seeds", type=int, default=3, help="seeds also run on the pure twin (slow at large K)")
    ap.add_argument("--pure-max-k", type=int, default=10000, help="largest K also run on the pure twin")
    ap.add_argument("--grid", default=",".join(f"{k}x{h}" for k, h in GRID), help="cells as KxH,KxH,...")
    ap.add_argument("--budget", type=int, default=heuristics.DEFAULT_BUDGET)
    ap.add_argument("--out", type=Path, default=Path("bench-results/plan.json"))
    args = ap.parse_args(argv)
    grid = [tuple(int(v) for v in cell.split("x")) for cell in args.grid.split(",")]
    result = {
        "benchmark": "plan", "edgepsl": __version__, "python": platform.python_version(),
        "machine": platform.machine(), "profile": args.profile, "budget": args.budget,
        "kernels": kernel_targets(args.profile, 1, 0), "cells": [],
    }
    k = result["kernels"]
    bg = k["balanced_greedy_fcfs_K100_H10_us"]
    print(f"balanced-greedy + FCFS, K=100 H=10: compiled {bg['compiled']:.1f} us, pure {bg['pure']:.0f} us, "
          f"speedup {bg['speedup']:.0f}x")
    print("online pick_next over 20 jobs: " + ", ".join(f"{n} {v:.2f} us" for n, v in k["pick_next_20_jobs_us"].items()))
    header = f"{'K':>6} {'H':>4} {'sc':>2} {'method':<16} {'time':>10} {'pure':>10} {'makespan s':>11} {'gap':>7} {'vs rand':>8}"
    print(header)
    print("-" * len(header))
    for K, H in grid:
        for scenario in (1, 2):
            pure_seeds = args.pure_seeds if K <= args.pure_max_k else 0
            cell = run_cell(args.profile, K, H, scenario, args.seeds, pure_seeds, args.budget)
            result["cells"].append(cell)
            for m, r in cell["methods"].items():
                pt = f"{r['median_pure_seconds'] * 1e3:.2f}ms" if r["median_pure_seconds"] is not None else "-"
                print(f"{K:>6} {H:>4} {scenario:>2} {m:<16} {r['median_seconds'] * 1e3:>8.3f}ms {pt:>10} "
                      f"{r['mean_makespan_ms'] / 1e3:>11.2f} {100 * r['mean_gap']:>6.1f}% "
                      f"{100 * r['mean_improvement_over_random']:>7.1f}%")
            print(f"{'':>15} greedy-ls worse than balanced-greedy on {cell['greedy_ls_worse_than']['balanced-greedy']}, "
                  f"than random on {cell['greedy_ls_worse_than']['random']} of {args.seeds} seeds")
            sys.stdout.flush()
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
