"""Benchmark the lower bounds: greedy-ls's gap to the old (chain, load), compiled and LP bounds on scenario instances.

For every shipped profile, both scenarios, K in --ks, H in --hs, loose and binding memory and --seeds seeds:
plan with greedy-ls and compute the chain and load bounds (what every plan reported before), the compiled
bounds (`lower_bound`: chain, load, window and joint, what every plan reports now) and the HiGHS linear
relaxation (`lp_bound`, the `solvers` extra). Prints per-(profile, scenario) means and maxima of the gaps and the bounds'
median times, and writes JSON (default bench-results/bound.json) with every instance.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgepsl import __version__  # noqa: E402
from edgepsl.plan.backend import backend_name  # noqa: E402
from edgepsl.plan.bounds import lower_bound, lp_bound  # noqa: E402
from edgepsl.plan.heuristics import solve  # noqa: E402
from edgepsl.plan.profiles import list_profiles  # noqa: E402
from edgepsl.plan.scenarios import scenario_instance  # noqa: E402
from tools.bench_output import write_result  # noqa: E402


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def _summary(rows: list[dict]) -> dict:
    out = {"instances": len(rows)}
    for key in ("gap_old", "gap_compiled", "gap_lp", "gap_best"):
        values = [r[key] for r in rows]
        out[f"mean_{key}"] = statistics.fmean(values)
        out[f"max_{key}"] = max(values)
    for key in ("compiled_seconds", "lp_seconds"):
        out[f"median_{key}"] = statistics.median(r[key] for r in rows)
    return out


def main() -> None:
    """Run the grid, print the table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", type=_ints, default=[30, 50, 100])
    ap.add_argument("--hs", type=_ints, default=[3, 5, 10])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--profiles", default=",".join(list_profiles()))
    ap.add_argument("--out", type=Path, default=Path("bench-results/bound.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = []
    for profile in args.profiles.split(","):
        for scenario in (1, 2):
            for K in args.ks:
                for H in args.hs:
                    for binding in (False, True):
                        for seed in range(args.seeds):
                            inst = scenario_instance(profile, K, H, scenario, seed, binding_memory=binding)
                            makespan = solve(inst, "greedy-ls", seed=seed).makespan
                            t = time.perf_counter()
                            bound = lower_bound(inst)
                            compiled_seconds = time.perf_counter() - t
                            t = time.perf_counter()
                            lp = lp_bound(inst, bound.value)
                            lp_seconds = time.perf_counter() - t
                            old = max(bound.chain, bound.load)
                            best = max(bound.value, lp)
                            rows.append({
                                "profile": profile, "scenario": scenario, "K": K, "H": H, "binding_memory": binding,
                                "seed": seed, "makespan_ms": makespan, "chain_ms": bound.chain, "load_ms": bound.load,
                                "window_ms": bound.window, "joint_ms": bound.joint, "lp_ms": lp,
                                "gap_old": (makespan - old) / old, "gap_compiled": bound.gap(makespan), "gap_lp": (makespan - lp) / lp if lp > 0 else None,
                                "gap_best": (makespan - best) / best, "compiled_seconds": compiled_seconds,
                                "lp_seconds": lp_seconds,
                            })
    for r in rows:
        r["gap_lp"] = r["gap_best"] if r["gap_lp"] is None else r["gap_lp"]
    cells = {}
    print(f"{'profile':<18} {'sc':>2} {'n':>4} | {'old mean':>8} {'max':>6} | {'compiled':>8} {'max':>6} | "
          f"{'lp':>8} {'max':>6} | {'best':>8} {'max':>6}")
    for profile in args.profiles.split(","):
        for scenario in (1, 2):
            sel = [r for r in rows if r["profile"] == profile and r["scenario"] == scenario]
            s = cells[f"{profile}/{scenario}"] = _summary(sel)
            print(f"{profile:<18} {scenario:>2} {len(sel):>4} | " + " | ".join(
                f"{100 * s[f'mean_{k}']:7.2f}% {100 * s[f'max_{k}']:5.1f}%"
                for k in ("gap_old", "gap_compiled", "gap_lp", "gap_best")))
    total = _summary(rows)
    print("all: " + ", ".join(f"{k} {100 * v:.2f} %" for k, v in total.items() if k.startswith(("mean", "max")))
          + f"; median compiled bounds {1000 * total['median_compiled_seconds']:.2f} ms, "
          f"LP {1000 * total['median_lp_seconds']:.1f} ms")
    target = total["mean_gap_compiled"] <= 0.02
    print(f"target: mean gap to the compiled bound (every plan's) at K >= 30 <= 2 %: {'pass' if target else 'FAIL'}"
          f" ({100 * total['mean_gap_compiled']:.2f} %; with the LP bound {100 * total['mean_gap_best']:.2f} %)")
    write_result(args.out, {
        "benchmark": "bound", "version": __version__, "backend": backend_name(), "ks": args.ks, "hs": args.hs,
        "seeds": args.seeds, "summary": total, "cells": cells, "target_mean_gap_compiled_le_2pct": target,
        "wall_seconds": time.perf_counter() - t0, "instances": rows,
    })


if __name__ == "__main__":
    main()
