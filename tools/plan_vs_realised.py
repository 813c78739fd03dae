"""Compare a run's plan with what its rounds realised: makespans per round, and every planned chain term of the first
plan (instance.json) against the medians of the per-job records (metrics.jsonl), per client.

Terms (ms): r, the forward job's arrival at its helper from the round start (part-1 forward + upload); p and p',
part-2 forward and backward on the helper; d and d', the downloads; l + r', from the forward reply to the backward
job's arrival (part-3 + upload); upload and upload', wait and wait' (realised only), the forward and backward
uploads and waits in the helper's queue. Prints a table and writes JSON (default bench-results/plan-vs-realised.json).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgepsl.plan.instance import Instance  # noqa: E402
from tools.bench_output import write_result  # noqa: E402


def realised_terms(records: list[dict], client: str) -> dict[str, float]:
    """Medians over the rounds of one client's realised chain terms, from its two job records per round."""
    rows: dict[str, list[float]] = {}
    for record in records:
        jobs = {job["kind"]: job for job in record["jobs"] if job["client"] == client}
        if set(jobs) != {"fwd", "bwd"}:
            continue
        fwd, bwd = jobs["fwd"], jobs["bwd"]
        for key, value in (("r", fwd["arrival_ms"]), ("p", fwd["end_ms"] - fwd["start_ms"]), ("d", fwd["download_ms"]),
                           ("l+r'", bwd["arrival_ms"] - fwd["end_ms"] - fwd["download_ms"]),
                           ("p'", bwd["end_ms"] - bwd["start_ms"]), ("d'", bwd["download_ms"]),
                           ("upload", fwd["upload_ms"]), ("upload'", bwd["upload_ms"]),
                           ("wait", fwd["queue_wait_ms"]), ("wait'", bwd["queue_wait_ms"])):
            rows.setdefault(key, []).append(value)
    return {key: float(np.median(values)) for key, values in rows.items()}


def main(argv: list[str] | None = None) -> int:
    """Read the run directory, print the comparison, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--from-round", type=int, default=20, help="first round of the makespan summary")
    ap.add_argument("--out", type=Path, default=Path("bench-results/plan-vs-realised.json"))
    args = ap.parse_args(argv)
    records = [json.loads(line) for line in (args.run_dir / "metrics.jsonl").read_text().splitlines() if line]
    instance = Instance.load(args.run_dir / "instance.json")
    planned = np.array([r["planned_makespan_ms"] for r in records])
    realised = np.array([r["realised_makespan_ms"] for r in records])
    late = slice(args.from_round, None)
    ratio = realised[late] / planned[late]
    summary = {"rounds": len(records), "first_planned_ms": float(planned[0]),
               "planned_median_ms": float(np.median(planned[late])),
               "realised_median_ms": float(np.median(realised[late])), "ratio_median": float(np.median(ratio)),
               "rounds_within_10pct": float(np.mean(np.abs(ratio - 1) <= 0.10)),
               "rounds_within_25pct": float(np.mean(np.abs(ratio - 1) <= 0.25)), "from_round": args.from_round}
    print(f"rounds {summary['rounds']}; from round {args.from_round}: planned median {summary['planned_median_ms']:.1f}"
          f" ms, realised median {summary['realised_median_ms']:.1f} ms, realised/planned median "
          f"{summary['ratio_median']:.2f}, rounds within 10 %: {summary['rounds_within_10pct']:.0%}")
    clients = []
    helper_of = {job["client"]: job["helper"] for job in records[-1]["jobs"]}
    print(f"{'client':>8} {'term':>7} {'planned':>8} {'realised':>9}")
    for j, name in enumerate(instance.client_names):
        if name not in helper_of:
            continue
        i = list(instance.helper_names).index(helper_of[name])
        plan = {"r": instance.r[j, i], "p": instance.p[j, i], "d": instance.d[j, i], "l+r'": instance.l[j] +
                instance.r_bwd[j, i], "p'": instance.p_bwd[j, i], "d'": instance.d_bwd[j, i]}
        real = realised_terms(records[args.from_round:], name)
        terms = {key: {"planned": float(plan[key]) if key in plan else None, "realised": real[key]} for key in real}
        clients.append({"client": name, "helper": helper_of[name], "terms": terms})
        for key, pair in terms.items():
            planned = "-" if pair["planned"] is None else f"{pair['planned']:.2f}"
            print(f"{name:>8} {key:>7} {planned:>8} {pair['realised']:>9.2f}")
    write_result(args.out, {"run_dir": str(args.run_dir), "summary": summary, "clients": clients})
    return 0


if __name__ == "__main__":
    sys.exit(main())
