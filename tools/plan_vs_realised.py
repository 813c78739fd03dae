"""Compare a run's plan with what its rounds realised: makespans per round, and every planned chain term of the first
plan (instance.json) against the medians of the per-job records (metrics.jsonl), per client.

Terms (ms): r, the forward job's arrival at its helper from the round start (part-1 forward + upload); p and p',
part-2 forward and backward on the helper; d and d', the downloads; l + r', from the forward reply to the backward
job's arrival (part-3 + upload); upload and upload', wait and wait' (realised only), the forward and backward
uploads and waits in the helper's queue. Every round's planned (the plan's expected makespan over the last rounds'
realised chain terms, Estimates.expected_makespan, where rounds were observed), nominal (the plan's timeline of the
estimated terms) and realised makespan and their ratios are in the JSON's `per_round`, with the load average when the
tool ran.

Where the rounds' time goes (`replay` in the JSON; the clients' traces give their finish): each complete round's plan
(plans/v{N}.json) evaluated with that round's realised chain terms (`replayed_over_realised`: 1 when the plan's
timeline model, the helpers' job orders and the chains, accounts for the whole round); the last plan evaluated with
every client's median and mean terms over the rounds from --from-round (what a plan of median or mean terms
predicts); and each helper's gaps between jobs (a job's start after both the previous job's end and its own
arrival: time the helper spent on anything else). Prints a table and writes JSON (default
bench-results/plan-vs-realised.json).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgepsl.plan.evaluate import evaluate  # noqa: E402
from edgepsl.plan.instance import Instance  # noqa: E402
from edgepsl.plan.schedule import Plan  # noqa: E402
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


TERMS = ("r", "p", "d", "r_bwd", "p_bwd", "d_bwd", "l_bwd")  # l + r' is carried as r_bwd (l = 0): only their sum counts


def finishes(run_dir: Path) -> dict[tuple[int, str], float]:
    """(round, client) -> wall-clock ms its round ended (its part-1 backward), from the clients' traces."""
    out = {}
    for path in (run_dir / "traces").glob("client*.jsonl"):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            if event.get("ev") == "round_end":
                out[(int(event["round"]), event["proc"])] = float(event["t"])
    return out


def chain_terms(record: dict, finish: dict[tuple[int, str], float]) -> dict[str, dict[str, float]]:
    """Each client's realised chain terms of one round (ms), for the clients with both jobs and a traced finish."""
    out = {}
    for client in {job["client"] for job in record.get("jobs", [])}:
        jobs = {job["kind"]: job for job in record["jobs"] if job["client"] == client}
        end = finish.get((record["round"], client))
        if set(jobs) != {"fwd", "bwd"} or end is None:
            continue
        fwd, bwd = jobs["fwd"], jobs["bwd"]
        out[client] = {"r": fwd["arrival_ms"], "p": fwd["end_ms"] - fwd["start_ms"], "d": fwd["download_ms"],
                       "r_bwd": bwd["arrival_ms"] - fwd["end_ms"] - fwd["download_ms"],
                       "p_bwd": bwd["end_ms"] - bwd["start_ms"], "d_bwd": bwd["download_ms"],
                       "l_bwd": end - record["started_ms"] - bwd["end_ms"] - bwd["download_ms"]}
    return out


def with_terms(instance: Instance, terms: dict[str, dict[str, float]]) -> Instance:
    """The instance with these clients' chain terms (on every helper; l = 0, l + r' carried as r')."""
    arrays = {k: getattr(instance, k).copy() for k in (*TERMS, "l")}
    for client, values in terms.items():
        j = list(instance.client_names).index(client)
        arrays["l"][j] = 0.0
        for k in TERMS:
            arrays[k][j] = values[k]
    return dataclasses.replace(instance, **arrays)


def replay(run_dir: Path, records: list[dict], first: int) -> dict:
    """Where the rounds' time goes: every complete round's plan replayed with its realised terms, the last plan with
    the median and mean terms, and the helpers' gaps between jobs."""
    finish = finishes(run_dir)
    versions = {}
    for path in (run_dir / "plans").glob("v*.json"):
        data = json.loads(path.read_text())
        versions[data["version"]] = (Instance.from_dict(data["instance"]), Plan.from_dict(data["plan"]))
    ratios, gaps, seen = [], [], {}
    for record in records[first:]:
        terms = chain_terms(record, finish)
        if record.get("partial") or record["plan_version"] not in versions or not terms:
            continue
        instance, plan = versions[record["plan_version"]]
        if set(terms) != set(instance.client_names) or plan.pipelined:  # a pipelined round's terms are not chains
            continue
        ratios.append(evaluate(with_terms(instance, terms), plan).makespan / record["realised_makespan_ms"])
        for client, values in terms.items():
            for k, v in values.items():
                seen.setdefault((client, k), []).append(v)
        for helper in {job["helper"] for job in record["jobs"]}:
            mine = sorted((job for job in record["jobs"] if job["helper"] == helper), key=lambda job: job["start_ms"])
            gaps += [b["start_ms"] - max(a["end_ms"], b["arrival_ms"]) for a, b in zip(mine, mine[1:])]
    if not ratios:
        return {}
    instance, plan = versions[max(versions)]
    realised = float(np.median([r["realised_makespan_ms"] for r in records[first:] if not r.get("partial")]))
    out = {"rounds": len(ratios), "replayed_over_realised_median": float(np.median(ratios)),
           "replayed_over_realised_p10_p90": [float(np.percentile(ratios, 10)), float(np.percentile(ratios, 90))],
           "realised_median_ms": realised,
           "helper_gap_ms": {"median": float(np.median(gaps)), "mean": float(np.mean(gaps)),
                             "p90": float(np.percentile(gaps, 90))}}
    for name, stat in (("median", np.median), ("mean", np.mean)):
        terms = {c: {k: float(stat(seen[(c, k)])) for k in TERMS} for c in instance.client_names}
        out[f"last_plan_with_{name}_terms_ms"] = float(evaluate(with_terms(instance, terms), plan).makespan)
    return out


def main(argv: list[str] | None = None) -> int:
    """Read the run directory, print the comparison, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--from-round", type=int, default=20, help="first round of the makespan summary")
    ap.add_argument("--out", type=Path, default=Path("bench-results/plan-vs-realised.json"))
    args = ap.parse_args(argv)
    metrics = args.run_dir / "metrics.jsonl"
    for path in (metrics, args.run_dir / "instance.json"):
        if not path.is_file():
            ap.error(f"{path} is missing: RUN_DIR must be the run directory of an edgepsl run (coordinator or demo)")
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line]
    if not 0 <= args.from_round < len(records):
        ap.error(f"--from-round {args.from_round}: {metrics} has rounds 0..{len(records) - 1}")
    if any("nominal_makespan_ms" not in r for r in records):
        ap.error(f"{metrics} has no nominal_makespan_ms: an edgepsl older than its planned and nominal makespans "
                 "wrote it; analyse a run of this version")
    instance = Instance.load(args.run_dir / "instance.json")
    planned = np.array([r["planned_makespan_ms"] for r in records])
    nominal = np.array([r["nominal_makespan_ms"] for r in records])
    realised = np.array([r["realised_makespan_ms"] for r in records])
    late = slice(args.from_round, None)
    ratio, to_nominal = realised[late] / planned[late], realised[late] / nominal[late]
    summary = {"rounds": len(records), "first_planned_ms": float(planned[0]),
               "planned_median_ms": float(np.median(planned[late])),
               "nominal_median_ms": float(np.median(nominal[late])),
               "realised_median_ms": float(np.median(realised[late])), "ratio_median": float(np.median(ratio)),
               "ratio_p10_p90": [float(np.percentile(ratio, 10)), float(np.percentile(ratio, 90))],
               "rounds_within_10pct": float(np.mean(np.abs(ratio - 1) <= 0.10)),
               "rounds_within_25pct": float(np.mean(np.abs(ratio - 1) <= 0.25)),
               "nominal_ratio_median": float(np.median(to_nominal)),
               "replans": int(sum(1 for r in records[late] if "replanned_to" in r)), "from_round": args.from_round,
               "load_average_when_analysed": list(os.getloadavg())}
    print(f"rounds {summary['rounds']}; from round {args.from_round}: planned median {summary['planned_median_ms']:.1f}"
          f" ms (nominal {summary['nominal_median_ms']:.1f} ms), realised median "
          f"{summary['realised_median_ms']:.1f} ms; realised/planned median {summary['ratio_median']:.3f}, "
          f"10th-90th percentile {summary['ratio_p10_p90'][0]:.2f}-{summary['ratio_p10_p90'][1]:.2f} "
          f"({summary['rounds_within_10pct']:.0%} of rounds within 10 %); realised/nominal median "
          f"{summary['nominal_ratio_median']:.2f}; {summary['replans']} re-plans")
    per_round = [{"round": r["round"], "plan_version": r["plan_version"], "planned_ms": r["planned_makespan_ms"],
                  "nominal_ms": r["nominal_makespan_ms"], "realised_ms": r["realised_makespan_ms"],
                  "realised_over_planned": r["realised_makespan_ms"] / r["planned_makespan_ms"],
                  "replanned_to": r.get("replanned_to")} for r in records]
    replayed = replay(args.run_dir, records, args.from_round)
    if replayed:
        print(f"each round's plan with its realised terms / realised: median "
              f"{replayed['replayed_over_realised_median']:.3f} over {replayed['rounds']} rounds; the last plan with "
              f"median terms {replayed['last_plan_with_median_terms_ms']:.1f} ms, mean terms "
              f"{replayed['last_plan_with_mean_terms_ms']:.1f} ms, realised median "
              f"{replayed['realised_median_ms']:.1f} ms; helper gaps between jobs: median "
              f"{replayed['helper_gap_ms']['median']:.2f} ms, p90 {replayed['helper_gap_ms']['p90']:.2f} ms")
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
    write_result(args.out, {"run_dir": str(args.run_dir), "summary": summary, "clients": clients,
                            "per_round": per_round, "replay": replayed})
    return 0


if __name__ == "__main__":
    sys.exit(main())
