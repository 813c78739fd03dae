"""Benchmark elastic rounds on an emulated fleet: client kill -9, client pause, helper kill -9, a client and a helper
that join, against an undisturbed run of the same rounds.

K clients and H helpers (the paper's scenario-1 devices and links, `--emulate paper` of the demo, times scaled by
--time-scale) run as processes on this machine. The faulted run kills a client at --kill-client-at, pauses another
for --pause-s seconds at --pause-at, kills a helper at --kill-helper-at, starts a new client at --join-at and a new
helper at --join-helper-at (each applied by PID as soon as the round before has ended; a new role joins at the next
aggregation boundary). Reported: per-round realised, planned (the closed loop's prediction) and nominal makespan;
the time from each fault to the end of the next completed round; the round in which the killed client was lost
against planned makespan + peer_timeout_s + 10 %; the time from the helper loss being declared to the start of the
next round (the re-run of its clients' unfinished jobs, or the next round where it held none); each re-plan's
makespan against greedy-ls solved from scratch on the same members; the joined helper's jobs (from its trace);
accuracy on the whole Fashion-MNIST test set (10,000 images) after every aggregation, and the final accuracy against
the undisturbed run. Both runs train the same K clients' shares of Fashion-MNIST (the joining client brings a
further share), so they are the same run until the first fault. Both runs anneal the learning rate (--lr-schedule
cosine, the default), so the final accuracies compare two settling models rather than two points of constant-rate
trajectories.

    python tools/bench_faults.py [--clients 12] [--helpers 3] [--rounds 120] [--out bench-results/faults.json]
                                 [--keep DIR]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgepsl.data.shares import write_fashion_mnist_shares  # noqa: E402
from edgepsl.plan.instance import Instance  # noqa: E402
from edgepsl.plan.solvers import plan as solve  # noqa: E402
from edgepsl.runtime.config import RunConfig  # noqa: E402
from edgepsl.runtime.emulation import paper_fleet  # noqa: E402
from edgepsl.runtime.faults import Fault, FaultSpecError, check_faults  # noqa: E402
from edgepsl.runtime.launch import LocalRun, role_names, run_local  # noqa: E402
from tools.bench_output import write_result  # noqa: E402

PAPER_PROFILE = "resnet101_cifar10"
TARGET_RESTART_S = 2.0
TARGET_REPLAN_GAP = 0.01
TARGET_ACCURACY_POINTS = 1.0


def _run(config: RunConfig, run_dir: Path, faults: list[Fault],
         shares: list[str]) -> tuple[list[dict], float | None, float]:
    joins = [f.role for f in faults if f.action == "join"]  # joining roles: further devices of the same draw
    joining_clients = sum(r.startswith("client") for r in joins)
    clients, helpers = paper_fleet(config.clients, config.helpers, config.seed, joining_clients,
                                   len(joins) - joining_clients)
    t = time.perf_counter()
    summary = run_local(LocalRun(config, run_dir, secure=False, client_emulation=clients, helper_emulation=helpers,
                                 log_level="warning", faults=faults,
                                 client_data=shares[:config.clients + joining_clients]))
    return summary.records, summary.accuracy, time.perf_counter() - t


def _replans(run_dir: Path, seed: int) -> list[dict]:
    """Each plan version after the first against greedy-ls from scratch on its instance (the same members)."""
    out = []
    for path in sorted((run_dir / "plans").glob("v*.json"), key=lambda p: int(p.stem[1:])):
        data = json.loads(path.read_text())
        if data["version"] == 0:
            continue
        instance = Instance.from_dict(data["instance"])
        scratch = solve(instance, "greedy-ls", seed=seed)
        replanned = float(data["nominal_makespan_ms"])  # both plans' timelines on the same instance
        out.append({"version": data["version"], "round": data["round"], "reason": data["reason"],
                    "replan_makespan_ms": replanned, "scratch_greedy_ls_ms": float(scratch.timeline.makespan),
                    "gap": replanned / float(scratch.timeline.makespan) - 1.0})
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the undisturbed and the faulted run, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--helpers", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=120)
    parser.add_argument("--aggregate-every", type=int, default=10)
    parser.add_argument("--time-scale", type=float, default=0.005)
    parser.add_argument("--kill-client-at", type=int, default=20)
    parser.add_argument("--pause-at", type=int, default=40)
    parser.add_argument("--pause-s", type=float, default=10.0)
    parser.add_argument("--kill-helper-at", type=int, default=60)
    parser.add_argument("--join-at", type=int, default=80)
    parser.add_argument("--join-helper-at", type=int, default=100)
    parser.add_argument("--peer-timeout-s", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"), default="cosine")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "faults.json")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep both runs' directories (logs, traces, plans) here instead of a temporary one")
    args = parser.parse_args(argv)
    if args.keep is not None and args.keep.exists() and not args.keep.is_dir():
        parser.error(f"--keep {args.keep}: not a directory")
    config = RunConfig(run_id="bench-faults", clients=args.clients, helpers=args.helpers, rounds=args.rounds,
                       batch_size=32, aggregate_every=args.aggregate_every, eval_every=args.aggregate_every,
                       lr_schedule=args.lr_schedule, train_samples=(args.clients + 1) * 640, test_samples=0,
                       profile_iters=1, time_scale=args.time_scale, emulation_profile=PAPER_PROFILE, seed=args.seed,
                       peer_timeout_s=args.peer_timeout_s, register_timeout_s=120.0, round_timeout_s=120.0)
    faults = [Fault("kill", "client3", args.kill_client_at), Fault("stop", "client5", args.pause_at, args.pause_s),
              Fault("kill", "helper1", args.kill_helper_at), Fault("join", f"client{args.clients}", args.join_at),
              Fault("join", f"helper{args.helpers}", args.join_helper_at)]
    try:  # before the undisturbed run, not minutes into the faulted one
        check_faults(faults, *role_names(config), config.rounds)
    except FaultSpecError as exc:
        parser.error(f"{exc} (see --clients, --helpers, --rounds and the fault rounds)")
    new_helper = f"helper{args.helpers}"
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    with (contextlib.nullcontext(str(args.keep)) if args.keep is not None
          else tempfile.TemporaryDirectory(prefix="bench-faults-")) as tmp:
        root = Path(tmp)
        # One Fashion-MNIST share per client, the joining client's last: both runs train the same K shares (and are
        # the same run until the first fault), the joining client brings its own.
        shares = [f"npz:{path}" for path in write_fashion_mnist_shares(
            root / "shares", args.clients + 1, config.partition, config.seed, config.alpha, config.train_samples,
            min_size=config.batch_size, data_dir=config.data_dir)]
        calm, calm_accuracy, calm_s = _run(config, root / "undisturbed", [], shares)
        hit, hit_accuracy, hit_s = _run(config, root / "faulted", faults, shares)
        applied = json.loads((root / "faulted" / "faults.json").read_text())
        replans = _replans(root / "faulted", args.seed)
        trace = root / "faulted" / "traces" / f"{new_helper}.jsonl"
        served = [json.loads(line)["round"] for line in (trace.read_text().splitlines() if trace.is_file() else [])
                  if json.loads(line)["ev"] == "job_end"]
    by_round = {m["round"]: m for m in hit}
    after_fault = []
    for fault in applied:
        nxt = next(m for m in hit if m["ended_ms"] > fault["at_ms"])
        after_fault.append({"fault": fault["fault"], "next_completed_round": nxt["round"],
                            "fault_to_round_end_ms": nxt["ended_ms"] - fault["at_ms"]})
    lost_round = next(m for m in hit if "client3" in m["lost"] + m["unreachable"])
    bound = (lost_round["planned_makespan_ms"] + args.peer_timeout_s * 1e3) * 1.10
    helper_round = next(m for m in hit if m["lost_helpers"])
    # The first round after the loss: the re-run of the clients the helper left unfinished, else (it held no job of
    # a live client) the next round.
    rerun = "rerun" in helper_round
    restarted = helper_round["rerun_started_ms"] if rerun else by_round[helper_round["round"] + 1]["started_ms"]
    restart_ms = restarted - helper_round["helper_lost_at_ms"]
    helper_joined = next((m for m in hit if new_helper in m.get("joined", [])), None)
    new_helper_jobs = 0 if helper_joined is None else sum(r > helper_joined["round"] for r in served)
    result = {
        "config": config.to_dict(), "faults": applied, "machine": platform.node(),
        "wall_s": {"undisturbed": calm_s, "faulted": hit_s},
        "rounds_completed": {"undisturbed": len(calm), "faulted": len(hit)},
        "per_round": [{"round": m["round"], "planned_ms": m["planned_makespan_ms"],
                       "nominal_ms": m["nominal_makespan_ms"], "realised_ms": m["realised_makespan_ms"],
                       "members": len(m["members"]),
                       "plan_version": m["plan_version"], "partial": m["partial"], "lost": m["lost"],
                       "unreachable": m["unreachable"], "joined": m.get("joined", [])} for m in hit],
        "undisturbed_realised_ms": [m["realised_makespan_ms"] for m in calm],
        "after_fault": after_fault,
        "client_lost_round": {"round": lost_round["round"], "realised_ms": lost_round["realised_makespan_ms"],
                              "planned_ms": lost_round["planned_makespan_ms"],
                              "nominal_ms": lost_round["nominal_makespan_ms"],
                              "bound_ms": bound, "within": lost_round["realised_makespan_ms"] <= bound},
        "helper_join": {"helper": new_helper, "joined_at_round": None if helper_joined is None
                        else helper_joined["round"], "jobs_after": new_helper_jobs,
                        "rounds_served": sorted(set(served))},
        "helper_loss": {"round": helper_round["round"], "first_round_after": "re-run" if rerun else "next round",
                        "declared_to_next_start_ms": restart_ms, "within": restart_ms <= TARGET_RESTART_S * 1e3},
        "replans": replans,
        "replans_within_1pct": all(r["gap"] <= TARGET_REPLAN_GAP for r in replans),
        "accuracy": {"undisturbed": calm_accuracy, "faulted": hit_accuracy,
                     "points_lost": None if calm_accuracy is None or hit_accuracy is None
                     else 100.0 * (calm_accuracy - hit_accuracy), "target_points": TARGET_ACCURACY_POINTS},
        "accuracy_curve": [{"round": m["round"], "undisturbed": m.get("accuracy"), "faulted": by_round[m["round"]].get(
            "accuracy")} for m in calm if "accuracy" in m and m["round"] in by_round],
        "every_round_completed": len(hit) == args.rounds and sorted(by_round) == list(range(args.rounds)),
    }
    print(f"rounds: {len(hit)}/{args.rounds} faulted, {len(calm)} undisturbed; wall {hit_s:.0f} s / {calm_s:.0f} s")
    print(f"median realised per round: faulted {np.median([m['realised_makespan_ms'] for m in hit]):.1f} ms, "
          f"undisturbed {np.median([m['realised_makespan_ms'] for m in calm]):.1f} ms; planned "
          f"{hit[0]['planned_makespan_ms']:.1f} ms")
    for item in after_fault:
        print(f"  {item['fault']:<24} next completed round {item['next_completed_round']:>4}: "
              f"{item['fault_to_round_end_ms']:,.0f} ms after the fault")
    c = result["client_lost_round"]
    print(f"client lost: round {c['round']} took {c['realised_ms']:,.0f} ms (bound {c['bound_ms']:,.0f} ms) "
          f"{'OK' if c['within'] else 'MISSED'}")
    print(f"helper lost: the {result['helper_loss']['first_round_after']} started {restart_ms:.1f} ms after the loss "
          f"was declared {'OK' if result['helper_loss']['within'] else 'MISSED'}")
    for r in replans:
        print(f"  plan v{r['version']} (round {r['round']}, {r['reason']}): {r['replan_makespan_ms']:.1f} ms vs "
              f"greedy-ls from scratch {r['scratch_greedy_ls_ms']:.1f} ms ({100 * r['gap']:+.2f} %)")
    j = result["helper_join"]
    print(f"helper joined: {j['helper']} at the boundary of round {j['joined_at_round']}, {j['jobs_after']} jobs after")
    a = result["accuracy"]
    for point in result["accuracy_curve"]:
        print(f"  accuracy after round {point['round']:>4}: faulted {point['faulted']}, undisturbed "
              f"{point['undisturbed']}")
    print(f"accuracy: faulted {a['faulted']}, undisturbed {a['undisturbed']}, points lost {a['points_lost']} "
          f"(target <= {TARGET_ACCURACY_POINTS})")
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
