"""`edgepsl demo`: a whole parallel split learning run on this machine (coordinator, helpers, clients as processes)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from edgepsl.cli._logging import add_log_level, setup_logging
from edgepsl.cli._progress import progress
from edgepsl.plan.solvers import method_names
from edgepsl.runtime.checkpoint import resumed_round
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.emulation import Emulation, paper_fleet
from edgepsl.runtime.faults import Fault, FaultSpecError, parse_faults
from edgepsl.runtime.launch import LocalRun, run_local
from edgepsl.runtime.report import print_summary
from edgepsl.runtime.signals import stop_on_signals

HELP = ("train LeNet-5 on Fashion-MNIST with parallel split learning on this machine: a coordinator, helpers and "
        "clients as separate processes on 127.0.0.1")
PAPER_PROFILE = "resnet101_cifar10"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Fleet, training, planning, data split, emulation and output options."""
    d = RunConfig()
    parser.add_argument("--clients", "-K", type=int, default=6, help="number of clients (default 6)")
    parser.add_argument("--helpers", "-H", type=int, default=2, help="number of helpers (default 2)")
    parser.add_argument("--rounds", type=int, default=d.rounds, help=f"training rounds, one mini-batch each (default {d.rounds})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"learning rate (default {d.lr})")
    parser.add_argument("--aggregate-every", type=int, default=d.aggregate_every, help=f"FedAvg period in rounds (default {d.aggregate_every})")
    parser.add_argument("--eval-every", type=int, default=d.eval_every, help=f"evaluation period in rounds (default {d.eval_every})")
    parser.add_argument("--method", default=d.method, choices=method_names(), help=f"planning method (default {d.method})")
    parser.add_argument("--micro-batches", metavar="N|auto",
                        help="split each client's round into N micro-batches (PiPar pipelining), or auto: the planner's "
                             "N per client (default: the config's micro_batches, 1)")
    parser.add_argument("--partition", default=d.partition, choices=["iid", "dirichlet"], help="data split (default iid)")
    parser.add_argument("--alpha", type=float, default=d.alpha, help=f"Dirichlet concentration (default {d.alpha})")
    parser.add_argument("--emulate", default="none", choices=["none", "paper", "slowdown"],
                        help=f"none: real times; paper: the paper's scenario-1 devices ({PAPER_PROFILE}) and 1-20 Mbps "
                             "links, times scaled by --time-scale (use few --rounds); "
                             "slowdown: client k runs (1 + k mod 3) times slower")
    parser.add_argument("--time-scale", type=float, default=0.05, help="with --emulate paper: scale of the profiled times (default 0.05)")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of the split, batches and planner (default 0)")
    parser.add_argument("--config", type=Path, help="start from this TOML config; the options above override it")
    parser.add_argument("--out", type=Path, help="run directory (default runs/demo-<time>)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a stopped demo run from its checkpoint")
    parser.add_argument("--faults", type=_faults, default=[], metavar="SPEC",
                        help="faults applied to the role processes by PID when round N starts, comma-separated: "
                             "kill:client1@40 (SIGKILL), stop:client1@60:10s (SIGSTOP, then SIGCONT), join:client6@100 "
                             "or join:helper2@100 (a new role that joins at the next aggregation boundary)")
    parser.add_argument("--insecure", action="store_true",
                        help="plaintext sockets; by default throwaway CURVE keys are generated in the run directory")
    add_log_level(parser, default="warning")


def _faults(spec: str) -> list[Fault]:
    try:
        return parse_faults(spec)
    except FaultSpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _emulations(kind: str, clients: int, helpers: int, seed: int,
                faults: list[Fault]) -> tuple[list[Emulation], list[Emulation]]:
    if kind == "paper":  # the roles that join during the run emulate further devices of the same draw
        joins = [f.role for f in faults if f.action == "join"]
        return paper_fleet(clients, helpers, seed, sum(r.startswith("client") for r in joins),
                           sum(r.startswith("helper") for r in joins))
    if kind == "slowdown":
        return [Emulation(slowdown=float(1 + k % 3)) for k in range(clients)], []
    return [], []


def run(args: argparse.Namespace) -> int:
    """Run the demo and print the summary."""
    setup_logging(args, "demo")
    stop_on_signals()
    if args.resume:
        run_dir = args.resume
        config = RunConfig.load(run_dir / "run.toml")
    else:
        base = RunConfig.load(args.config) if args.config else RunConfig()
        config = base.replace(clients=args.clients, helpers=args.helpers, rounds=args.rounds, batch_size=args.batch_size,
                              lr=args.lr, aggregate_every=args.aggregate_every, eval_every=args.eval_every,
                              method=args.method, partition=args.partition, alpha=args.alpha, seed=args.seed,
                              time_scale=args.time_scale, micro_batches=args.micro_batches or base.micro_batches,
                              emulation_profile=PAPER_PROFILE if args.emulate == "paper" else base.emulation_profile)
        run_dir = args.out or Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    clients, helpers = _emulations(args.emulate, config.clients, config.helpers, config.seed, args.faults)
    print(f"edgepsl demo: {config.clients} clients, {config.helpers} helpers, {config.rounds} rounds of batch "
          f"{config.batch_size}, {config.partition} split, planner {config.method}, "
          f"{'insecure (plaintext)' if args.insecure else 'CURVE with throwaway keys'}; run directory {run_dir}", flush=True)
    on_round, close = progress(config.rounds, resumed_round(run_dir) + 1 if args.resume else 0)
    try:
        summary = run_local(LocalRun(config, run_dir, secure=not args.insecure, client_emulation=clients,
                                     helper_emulation=helpers, resume=args.resume is not None,
                                     faults=args.faults), on_round)
    finally:
        close()
    print_summary(summary)
    return 0
