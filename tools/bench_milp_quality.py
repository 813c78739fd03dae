"""Benchmark greedy-ls against the MILP's proven optima on small random and scenario instances (K <= 12).

For each K in --ks, H in --hs and --seeds seeds: a random instance (times drawn uniformly, memory loose or
tight, integer times on odd seeds to provoke ties) and a scenario instance (--profile, scenario 1 and 2, loose
memory). greedy-ls plans it; the MILP (docs/milp.md, warm-started from greedy-ls, one thread,
--time-limit seconds) tries to prove the optimum. Per instance the JSON holds both makespans, the MILP status,
and the lower bounds; per K the table gives the proven count, greedy-ls's mean and largest gap to the proven
optimum, and how many instances are more than 3 % above it. Writes bench-results/milp_quality.json (--out).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgepsl import __version__  # noqa: E402
from edgepsl.plan.bounds import lp_bound  # noqa: E402
from edgepsl.plan.heuristics import solve  # noqa: E402
from edgepsl.plan.instance import Instance  # noqa: E402
from edgepsl.plan.milp import solve_milp  # noqa: E402
from edgepsl.plan.scenarios import scenario_instance  # noqa: E402
from tools.bench_output import write_result  # noqa: E402


def random_instance(seed: int, K: int, H: int) -> Instance:
    """Times uniform in [0, 20) ms (integers on odd seeds), memory 1-3 MB, capacities tight on seeds 2 mod 3."""
    rng = np.random.default_rng(seed)

    def times(shape, hi):
        return rng.integers(0, hi, shape).astype(float) if seed % 2 else rng.uniform(0, hi, shape)

    mem = rng.integers(1, 4, K).astype(float)
    cap = (np.maximum(np.floor(rng.dirichlet(np.ones(H)) * 1.5 * mem.sum()), mem.max()) if seed % 3 == 2
           else np.full(H, float(mem.sum())))
    return Instance(r=times((K, H), 20), p=times((K, H), 10), d=times((K, H), 5), l=times(K, 10),
                    r_bwd=times((K, H), 20), p_bwd=times((K, H), 10), d_bwd=times((K, H), 5), l_bwd=times(K, 10),
                    mem=mem, cap=cap, meta={"generator": "bench_milp_quality.random_instance", "seed": seed})


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def main() -> None:
    """Run the grid, print the table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", type=_ints, default=[6, 8, 10, 12])
    ap.add_argument("--hs", type=_ints, default=[2, 3])
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--profile", default="resnet101_cifar10")
    ap.add_argument("--time-limit", type=float, default=20.0, help="HiGHS seconds per instance (default 20)")
    ap.add_argument("--out", type=Path, default=Path("bench-results/milp_quality.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = []
    for K in args.ks:
        for H in args.hs:
            for seed in range(args.seeds):
                cases = [("random", random_instance(seed, K, H))]
                cases += [(f"{args.profile}/s{sc}", scenario_instance(args.profile, K, H, sc, seed)) for sc in (1, 2)]
                for family, inst in cases:
                    heur = solve(inst, "greedy-ls", seed=seed)
                    exact = solve_milp(inst, time_limit=args.time_limit, warm_start=heur.plan)
                    lp = lp_bound(inst, heur.bound.value)
                    rows.append({
                        "family": family, "K": K, "H": H, "seed": seed, "greedy_ls_ms": heur.makespan,
                        "greedy_ls_seconds": heur.solve_seconds, "milp_ms": exact.makespan, "milp_status": exact.status,
                        "proven": exact.optimal, "milp_dual_bound_ms": exact.dual_bound,
                        "milp_seconds": exact.solve_seconds, "bound_ms": heur.bound.value, "lp_bound_ms": lp,
                        "gap_to_optimum": (heur.makespan - exact.makespan) / exact.makespan if exact.optimal else None,
                    })
    per_k = {}
    print(f"{'K':>3} {'n':>4} {'proven':>6} | {'mean gap':>8} {'max gap':>8} {'> 3 %':>5} | {'bound gap':>9} "
          f"{'milp s':>7}")
    for K in args.ks:
        sel = [r for r in rows if r["K"] == K]
        proven = [r for r in sel if r["proven"]]
        gaps = [r["gap_to_optimum"] for r in proven]
        bound_gaps = [(r["milp_ms"] - max(r["bound_ms"], r["lp_bound_ms"])) / r["milp_ms"] for r in proven]
        cell = per_k[str(K)] = {
            "instances": len(sel), "proven": len(proven),
            "mean_gap_to_optimum": statistics.fmean(gaps) if gaps else None,
            "max_gap_to_optimum": max(gaps) if gaps else None,
            "above_3pct": sum(g > 0.03 for g in gaps),
            "mean_bound_gap_below_optimum": statistics.fmean(bound_gaps) if bound_gaps else None,
            "median_milp_seconds": statistics.median(r["milp_seconds"] for r in sel),
        }
        fmt = (lambda v: f"{100 * v:7.2f}%" if v is not None else "      -")
        print(f"{K:>3} {len(sel):>4} {len(proven):>6} | {fmt(cell['mean_gap_to_optimum'])} "
              f"{fmt(cell['max_gap_to_optimum'])} {cell['above_3pct']:>5} | {fmt(cell['mean_bound_gap_below_optimum'])}"
              f"  {cell['median_milp_seconds']:6.2f}")
    write_result(args.out, {
        "benchmark": "milp_quality", "version": __version__, "ks": args.ks, "hs": args.hs, "seeds": args.seeds,
        "profile": args.profile, "time_limit": args.time_limit, "per_k": per_k,
        "wall_seconds": time.perf_counter() - t0, "instances": rows,
    })


if __name__ == "__main__":
    main()
