"""Benchmark greedy-ls against the exact optimum on many seeded random instances with K <= 6 (exhaustive search).

Instance n (n = 0 .. --instances - 1) is tests/plan/instances.random_instance(seed = n) with K = 2 + n % 5,
H = 1 + (n // 5) % --max-h, integer times (ties) on every other instance and tight memory on half of them.
Infeasible draws are skipped. The optimum is edgepsl.plan.exact.solve_exhaustive. greedy-ls itself ends with
that exhaustive search where H^K <= 256 and with a descent judged by exact helper spans otherwise (meta
"exact"), so the summary is also given per ending. Prints the count of instances more than 3 % and 5 % above
the optimum, the largest gap and the worst seeds, and writes JSON (default bench-results/small.json).
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgepsl import __version__  # noqa: E402
from edgepsl.plan.backend import backend_name  # noqa: E402
from edgepsl.plan.errors import InfeasibleError  # noqa: E402
from edgepsl.plan.exact import solve_exhaustive  # noqa: E402
from edgepsl.plan.heuristics import solve  # noqa: E402
from tests.plan.instances import random_instance  # noqa: E402
from tools.bench_output import write_result  # noqa: E402


def draw(n: int, max_h: int):
    """Instance n of the benchmark."""
    return random_instance(n, K=2 + n % 5, H=1 + (n // 5) % max_h, integer_times=n % 2 == 0,
                           tight_memory=(n // 2) % 2 == 1)


def summarise(rows: list[dict]) -> dict:
    """Counts above 3 % and 5 %, at the optimum, mean and max gap, median greedy-ls seconds."""
    gaps = np.array([r["gap"] for r in rows])
    return {"instances": len(rows), "above_3pct": int((gaps > 0.03).sum()), "above_5pct": int((gaps > 0.05).sum()),
            "at_optimum": int((gaps <= 1e-9).sum()), "mean_gap": float(gaps.mean()), "max_gap": float(gaps.max()),
            "median_greedy_ls_seconds": float(np.median([r["seconds"] for r in rows]))}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the summary, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=2500)
    ap.add_argument("--max-h", type=int, default=3, help="helpers cycle through 1 .. MAX_H")
    ap.add_argument("--out", type=Path, default=Path("bench-results/small.json"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = []
    for n in range(args.instances):
        inst = draw(n, args.max_h)
        try:
            optimum = solve_exhaustive(inst)[1]
        except InfeasibleError:
            continue
        sol = solve(inst, "greedy-ls", seed=n)
        gap = sol.makespan / optimum - 1 if optimum > 0 else float(sol.makespan > 0)
        rows.append({"seed": n, "K": inst.K, "H": inst.H, "optimum": optimum, "greedy_ls": sol.makespan,
                     "gap": gap, "seconds": sol.solve_seconds, "exact": sol.plan.meta["exact"]})
    worst = sorted(rows, key=lambda r: -r["gap"])[:10]
    summary = summarise(rows)
    by_ending = {str(e): summarise([r for r in rows if str(r["exact"]) == e]) for e in sorted({str(r["exact"]) for r in rows})}
    print(f"{summary['instances']} instances with K <= 6: greedy-ls at the optimum on {summary['at_optimum']}, "
          f"more than 3 % above on {summary['above_3pct']} ({100 * summary['above_3pct'] / len(rows):.2f} %), "
          f"more than 5 % above on {summary['above_5pct']}; mean gap {100 * summary['mean_gap']:.3f} %, "
          f"max {100 * summary['max_gap']:.2f} %")
    for e, c in by_ending.items():
        print(f"  ending {e}: {c['instances']} instances, above 3 % on {c['above_3pct']}, above 5 % on "
              f"{c['above_5pct']}, max {100 * c['max_gap']:.2f} %, median greedy-ls {1e3 * c['median_greedy_ls_seconds']:.1f} ms")
    print("worst: " + ", ".join(f"seed {r['seed']} (K={r['K']}, H={r['H']}) {100 * r['gap']:.2f} %" for r in worst[:5]))
    write_result(args.out, {"benchmark": "small", "edgepsl": __version__, "python": platform.python_version(),
                            "machine": platform.machine(), "backend": backend_name(), "max_h": args.max_h, "summary": summary, "by_ending": by_ending,
                            "worst": worst, "wall_seconds": time.perf_counter() - t0, "instances": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
