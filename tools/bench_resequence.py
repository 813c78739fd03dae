"""Benchmark a helper's re-sequencing decision: RoundSchedule.resequence on the compiled kernels and on the pure twin.

For n clients on one helper (seeded random durations, priorities and a plan order of every forward job then every
backward job), half of the forward jobs have arrived and the planned next job is late; one decision is
resequence() (the online dispatch kernel run over the remaining queue) plus the pick of the job to run. Prints
the median and 90th percentile in microseconds per n and backend, side by side, and writes JSON (default
bench-results/resequence.json).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgepsl import __version__  # noqa: E402
from edgepsl.plan import pure  # noqa: E402
from edgepsl.plan.backend import Kernels, backend_name, kernels  # noqa: E402
from edgepsl.plan.pure.constants import RULE_TAIL  # noqa: E402
from edgepsl.runtime import helper as helper_module  # noqa: E402
from edgepsl.runtime.helper import RoundSchedule  # noqa: E402
from edgepsl.runtime.protocol import BWD, FWD, HelperRoundStart  # noqa: E402
from tools.bench_output import write_result  # noqa: E402


def round_start(n: int, seed: int) -> HelperRoundStart:
    """A helper's round of n clients: forward jobs in client order, then backward jobs, back to back."""
    rng = np.random.default_rng(seed)
    duration = rng.uniform(1.0, 10.0, (n, 2))
    order = [[j, FWD] for j in range(n)] + [[j, BWD] for j in range(n)]
    starts = np.concatenate([[0.0], np.cumsum([duration[j, k] for j, k in order])[:-1]])
    return HelperRoundStart(clients=[f"client{j}" for j in range(n)], duration_ms=duration.tolist(),
                            priority=rng.uniform(0.0, 50.0, (n, 2)).tolist(), bandwidth_mbps=[None] * n,
                            memory_mb=[1.0] * n, order=order, planned_start_ms=starts.tolist(), t0_ms=0.0, token=0)


def late_round(start: HelperRoundStart, now: float) -> RoundSchedule:
    """The round with every odd client's forward job arrived and the first (client 0's) late."""
    plan = RoundSchedule(0, "bench", start)
    for j in range(1, len(start.clients), 2):
        plan.ready[j, FWD] = True
        plan.arrival[j, FWD] = now / 2.0
    return plan


def decision_us(n: int, reps: int, seed: int) -> np.ndarray:
    """reps timings (us) of one decision on a fresh late round each."""
    start, now = round_start(n, seed), 5.0
    out = np.empty(reps)
    for k in range(reps):
        plan = late_round(start, now)
        assert plan.late(now)
        t = time.perf_counter()
        plan.resequence(now, RULE_TAIL)
        plan.pick(now, RULE_TAIL)
        out[k] = (time.perf_counter() - t) * 1e6
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, nargs="+", default=[3, 6, 12, 24, 48], help="clients on the helper")
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("bench-results/resequence.json"))
    args = ap.parse_args(argv)
    backends = {"compiled": kernels, "pure": Kernels(pure)}
    if backend_name() != "compiled":
        raise SystemExit(f"the compiled core is not active ({backend_name()}): build it first")
    rows = []
    print(f"{'clients':>7} {'compiled median us':>19} {'p90':>8} {'pure median us':>15} {'p90':>8} {'ratio':>6}")
    for n in args.clients:
        row = {"clients": n, "jobs": 2 * n}
        for name, backend in backends.items():
            helper_module.kernels = backend
            try:
                times = decision_us(n, args.reps, args.seed)
            finally:
                helper_module.kernels = kernels
            row[name] = {"median_us": float(np.median(times)), "p90_us": float(np.percentile(times, 90))}
        row["pure_over_compiled"] = row["pure"]["median_us"] / row["compiled"]["median_us"]
        rows.append(row)
        print(f"{n:>7} {row['compiled']['median_us']:>19.1f} {row['compiled']['p90_us']:>8.1f} "
              f"{row['pure']['median_us']:>15.1f} {row['pure']['p90_us']:>8.1f} {row['pure_over_compiled']:>6.1f}")
    write_result(args.out, {"benchmark": "resequence", "version": __version__, "machine": platform.machine(),
                            "python": platform.python_version(), "reps": args.reps, "seed": args.seed,
                            "rule": "tail", "load_average": os.getloadavg()[0], "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
