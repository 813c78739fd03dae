"""`edgepsl coordinator`: register roles, plan, run rounds, average, evaluate and checkpoint."""
from __future__ import annotations

import argparse
from pathlib import Path

from edgepsl.cli._logging import add_log_level, setup_logging
from edgepsl.cli._progress import progress
from edgepsl.runtime.checkpoint import resumed_round
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.coordinator import Coordinator
from edgepsl.runtime.report import print_summary
from edgepsl.runtime.signals import stop_on_signals
from edgepsl.wire.options import add_security_arguments, server_security

HELP = "run the coordinator of a training run described by a TOML config (docs/runtime.md)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Config, run directory, bind address, resume, logging and key options."""
    parser.add_argument("--config", type=Path, help="run configuration (TOML); with --resume, default RUN_DIR/run.toml")
    parser.add_argument("--run-dir", type=Path, required=True, help="where config, plan, metrics, traces and figures go")
    parser.add_argument("--bind", default="tcp://0.0.0.0:5555", help="endpoint to bind (default tcp://0.0.0.0:5555)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the run directory's last checkpoint; roles still running rejoin")
    parser.add_argument("--stop-after", type=int, help="stop after this round (a multiple of aggregate_every)")
    add_log_level(parser)
    add_security_arguments(parser, connects=False, binds=True)


def run(args: argparse.Namespace) -> int:
    """Drive the run, showing its progress, and print its summary."""
    setup_logging(args, "coordinator")
    stop_on_signals()
    path = args.config or (args.run_dir / "run.toml" if args.resume else None)
    config = RunConfig.load(path) if path else RunConfig()
    on_round, close = progress(config.rounds, resumed_round(args.run_dir) + 1 if args.resume else 0)
    coordinator = Coordinator(config, args.run_dir, bind=args.bind, security=server_security(args), resume=args.resume,
                              stop_after=args.stop_after, on_round=on_round)
    print(f"coordinator listening on {coordinator.endpoint}", flush=True)
    try:
        summary = coordinator.run()
    finally:
        close()
    print_summary(summary)
    return 0
