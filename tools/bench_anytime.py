"""Benchmark greedy-ls as an anytime planner and the incremental re-planner (compiled core, CPU seconds).

Anytime: per scenario instance, greedy-ls with its default work budget and no time limit (the reference),
greedy-ls with each --limits-ms time limit, and (row "descent") greedy-ls without restarts (kicks=0, no
limit); the ratio of makespans to the reference and the CPU time of each call.
Work to quality: per instance at K = 100, H = 10, the smallest of the --work-budgets (job steps, doubling)
whose greedy-ls plan (deterministic for a seed and budget, no time limit) is within 1 % of the reference.
Re-planning: from the reference plan, one client removed, one client added and one helper removed; the
repaired plan (edgepsl.plan.replan) against a from-scratch greedy-ls on the changed instance, why each
repair's search stopped, and the repaired makespans over the chain and load bound. Prints a
table and writes JSON (default bench-results/anytime.json) with the load averages at the start and the end (the
CPU times are only comparable between runs at similar load).
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgepsl import __version__  # noqa: E402
from edgepsl.plan.backend import backend_name  # noqa: E402
from edgepsl.plan.heuristics import solve  # noqa: E402
from edgepsl.plan.instance import Instance  # noqa: E402
from edgepsl.plan.replan import replan  # noqa: E402
from edgepsl.plan.scenarios import scenario_instance  # noqa: E402
from tools.bench_output import write_result  # noqa: E402


def _cpu(fn, *args, **kwargs):
    t0 = time.process_time()
    out = fn(*args, **kwargs)
    return out, time.process_time() - t0


def _named(inst: Instance) -> Instance:
    """The instance with client and helper names, so the re-planner can match them across changes."""
    fields = {name: getattr(inst, name) for name in ("r", "p", "d", "l", "r_bwd", "p_bwd", "d_bwd", "l_bwd", "mem", "cap")}
    return Instance(**fields, client_names=tuple(f"c{j}" for j in range(inst.K)),
                    helper_names=tuple(f"h{i}" for i in range(inst.H)))


def _subset(inst: Instance, clients: np.ndarray, helpers: np.ndarray) -> Instance:
    """The instance restricted to some clients and helpers (names kept)."""
    kh = np.ix_(clients, helpers)
    return Instance(r=inst.r[kh], p=inst.p[kh], d=inst.d[kh], l=inst.l[clients], r_bwd=inst.r_bwd[kh],
                    p_bwd=inst.p_bwd[kh], d_bwd=inst.d_bwd[kh], l_bwd=inst.l_bwd[clients], mem=inst.mem[clients],
                    cap=inst.cap[helpers], client_names=tuple(inst.client_names[j] for j in clients),
                    helper_names=tuple(inst.helper_names[i] for i in helpers))


def anytime_cell(profile: str, K: int, H: int, scenario: int, seeds: int, limits: list[float],
                 first_seed: int = 0) -> dict:
    """Reference greedy-ls against each time limit on `seeds` instances of one cell."""
    rows: dict = {"reference_cpu_s": [],
                  "limits": {str(t): {"ratio": [], "cpu_s": [], "stopped": [], "start": [], "start_ratio": []}
                             for t in [*limits, "descent"]}}
    for seed in range(first_seed, first_seed + seeds):
        inst = scenario_instance(profile, K, H, scenario, seed)
        ref, cpu = _cpu(solve, inst, seed=seed)
        rows["reference_cpu_s"].append(cpu)
        for t in [*limits, "descent"]:
            if t == "descent":
                sol, cpu = _cpu(solve, inst, seed=seed, kicks=0)
            else:
                sol, cpu = _cpu(solve, inst, seed=seed, time_limit_ms=t)
            row = rows["limits"][str(t)]
            row["ratio"].append(sol.makespan / ref.makespan)
            row["cpu_s"].append(cpu)
            row["stopped"].append(sol.plan.meta["stopped"])
            row["start"].append(sol.plan.meta["start"])
            row["start_ratio"].append(sol.plan.meta["start_makespan"] / ref.makespan)
    out = {"K": K, "H": H, "scenario": scenario, "seeds": seeds,
           "reference_median_cpu_s": statistics.median(rows["reference_cpu_s"]), "limits": {}}
    for t, row in rows["limits"].items():
        ratio = np.array(row["ratio"])
        out["limits"][t] = {
            "within_1pct": int((ratio <= 1.01).sum()), "mean_ratio": float(ratio.mean()), "max_ratio": float(ratio.max()),
            "median_cpu_s": statistics.median(row["cpu_s"]), "max_cpu_s": max(row["cpu_s"]),
            "stopped_by_time": row["stopped"].count("time"),
            # The start the search began from (the best one, or under a short limit the first) against the reference.
            "starts": {name: row["start"].count(name) for name in sorted(set(row["start"]))},
            "mean_start_ratio": float(np.mean(row["start_ratio"])), "max_start_ratio": float(np.max(row["start_ratio"])),
        }
    return out


def work_cell(profile: str, K: int, H: int, scenario: int, seeds: int, budgets: list[int],
              first_seed: int = 0) -> dict:
    """Per seed, the smallest work budget whose greedy-ls plan is within 1 % of the default greedy-ls plan."""
    reached = []
    for seed in range(first_seed, first_seed + seeds):
        inst = scenario_instance(profile, K, H, scenario, seed)
        ref = solve(inst, seed=seed).makespan
        first = None
        for budget in budgets:
            if solve(inst, seed=seed, budget=budget).makespan <= 1.01 * ref:
                first = budget
                break
        reached.append(first)
    done = sorted(b for b in reached if b is not None)
    need = math.ceil(0.95 * seeds)
    return {"K": K, "H": H, "scenario": scenario, "seeds": seeds, "budgets": budgets, "first_within_1pct": reached,
            "reached": len(done), "work_for_95pct": done[need - 1] if len(done) >= need else None}


def replan_cell(profile: str, K: int, H: int, scenario: int, seeds: int, first_seed: int = 0) -> dict:
    """Remove a client, add a client, remove a helper: repaired plan vs from-scratch greedy-ls."""
    changes = {"remove_client": [], "add_client": [], "remove_helper": []}
    for seed in range(first_seed, first_seed + seeds):
        full = _named(scenario_instance(profile, K + 1, H, scenario, seed))
        rng = np.random.default_rng(seed)
        extra = int(rng.integers(K + 1))
        base = _subset(full, np.delete(np.arange(K + 1), extra), np.arange(H))
        plan = solve(base, seed=seed).plan
        gone = int(rng.integers(K))
        cases = {
            "remove_client": _subset(base, np.delete(np.arange(K), gone), np.arange(H)),
            "add_client": full,
            "remove_helper": _subset(base, np.arange(K), np.delete(np.arange(H), int(rng.integers(H)))),
        }
        for name, changed in cases.items():
            scratch = solve(changed, seed=seed)
            repaired, cpu = _cpu(replan, changed, plan, base, seed=seed)
            changes[name].append((repaired.makespan / scratch.makespan, cpu, scratch.solve_seconds,
                                  repaired.plan.meta["stopped"],
                                  repaired.makespan / repaired.plan.meta["bound"]))
    out = {"K": K, "H": H, "scenario": scenario, "seeds": seeds, "changes": {}}
    for name, rows in changes.items():
        ratio = np.array([r[0] for r in rows])
        out["changes"][name] = {
            "within_1pct": int((ratio <= 1.01).sum()), "mean_ratio": float(ratio.mean()), "max_ratio": float(ratio.max()),
            "median_cpu_s": statistics.median(r[1] for r in rows), "max_cpu_s": max(r[1] for r in rows),
            "scratch_median_wall_s": statistics.median(r[2] for r in rows),
            # Why each repair's search stopped: at the chain/load bound, its budget, or a local optimum.
            "stopped": {why: [r[3] for r in rows].count(why) for why in sorted({r[3] for r in rows})},
            # The repaired makespan over the chain and load bound its restarts aim at.
            "min_ratio_to_bound": min(r[4] for r in rows), "max_ratio_to_bound": max(r[4] for r in rows),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="resnet101_cifar10")
    ap.add_argument("--seeds", type=int, default=20, help="seeds per cell at K = 100")
    ap.add_argument("--first-seed", type=int, default=0, help="first instance seed of every cell")
    ap.add_argument("--large-seeds", type=int, default=3, help="seeds per cell at K = 10000")
    ap.add_argument("--limits-ms", default="1,10", help="time limits at K = 100 (ms, comma-separated)")
    ap.add_argument("--large-limit-ms", type=float, default=250.0, help="time limit at K = 10000, H = 100 (ms)")
    ap.add_argument("--work-budgets",
                    default="1250,2500,5000,10000,20000,40000,80000,160000,320000,640000,1280000,2560000",
                    help="work budgets at K = 100 for the work-to-quality rows (job steps, comma-separated)")
    ap.add_argument("--skip-large", action="store_true", help="skip the K = 10000 cells")
    ap.add_argument("--out", type=Path, default=Path("bench-results/anytime.json"))
    args = ap.parse_args(argv)
    limits = [float(v) for v in args.limits_ms.split(",")]
    result = {"benchmark": "anytime", "edgepsl": __version__, "python": platform.python_version(),
              "machine": platform.machine(), "backend": backend_name(), "profile": args.profile,
              "first_seed": args.first_seed,
              "anytime": [], "work": [], "replan": [], "load_average_start": list(os.getloadavg())}
    print(f"{'K':>6} {'H':>4} {'sc':>2} {'limit':>8} {'<=1%':>6} {'mean':>8} {'max':>8} {'cpu med':>9} {'cpu max':>9} {'ref cpu':>9}")
    cells = [(100, 10, limits, args.seeds)] + ([] if args.skip_large else [(10000, 100, [args.large_limit_ms], args.large_seeds)])
    for K, H, lims, seeds in cells:
        for scenario in (1, 2):
            cell = anytime_cell(args.profile, K, H, scenario, seeds, lims, args.first_seed)
            result["anytime"].append(cell)
            for t, r in cell["limits"].items():
                print(f"{K:>6} {H:>4} {scenario:>2} {t + ('' if t == 'descent' else 'ms'):>8} {r['within_1pct']:>3}/{seeds:<2} {r['mean_ratio']:>8.4f} "
                      f"{r['max_ratio']:>8.4f} {r['median_cpu_s'] * 1e3:>7.2f}ms {r['max_cpu_s'] * 1e3:>7.2f}ms "
                      f"{cell['reference_median_cpu_s'] * 1e3:>7.1f}ms")
            sys.stdout.flush()
    budgets = [int(v) for v in args.work_budgets.split(",")]
    print(f"{'K':>6} {'H':>4} {'sc':>2} {'reached':>8} {'work for 95 %':>14}  first budget within 1 % per seed")
    for scenario in (1, 2):
        cell = work_cell(args.profile, 100, 10, scenario, args.seeds, budgets, args.first_seed)
        result["work"].append(cell)
        print(f"{100:>6} {10:>4} {scenario:>2} {cell['reached']:>4}/{args.seeds:<3} {str(cell['work_for_95pct']):>14}  "
              f"{cell['first_within_1pct']}")
        sys.stdout.flush()
    print(f"{'K':>6} {'H':>4} {'sc':>2} {'change':<14} {'<=1%':>6} {'mean':>8} {'max':>8} {'cpu med':>9} {'cpu max':>9}"
          "  stopped")
    for scenario in (1, 2):
        cell = replan_cell(args.profile, 100, 10, scenario, args.seeds, args.first_seed)
        result["replan"].append(cell)
        for name, r in cell["changes"].items():
            print(f"{100:>6} {10:>4} {scenario:>2} {name:<14} {r['within_1pct']:>3}/{args.seeds:<2} {r['mean_ratio']:>8.4f} "
                  f"{r['max_ratio']:>8.4f} {r['median_cpu_s'] * 1e3:>7.3f}ms {r['max_cpu_s'] * 1e3:>7.3f}ms  {r['stopped']}")
        sys.stdout.flush()
    result["load_average_end"] = list(os.getloadavg())
    print(f"load average (1, 5, 15 min): start {result['load_average_start']}, end {result['load_average_end']}")
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
