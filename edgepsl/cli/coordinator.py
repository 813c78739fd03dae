"""`edgepsl coordinator`: register roles, plan, run rounds, average, evaluate and checkpoint."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.coordinator import Coordinator
from edgepsl.runtime.report import print_summary
from edgepsl.wire.options import add_security_arguments, server_security

HELP = "run the coordinator of a training run described by a TOML config (docs/runtime.md)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Config, run directory, bind address, resume and key options."""
    parser.add_argument("--config", type=Path, help="run configuration (TOML); with --resume, default RUN_DIR/run.toml")
    parser.add_argument("--run-dir", type=Path, required=True, help="where config, plan, metrics, traces and figures go")
    parser.add_argument("--bind", default="tcp://0.0.0.0:5555", help="endpoint to bind (default tcp://0.0.0.0:5555)")
    parser.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    parser.add_argument("--stop-after", type=int, help="stop after this round (a multiple of aggregate_every)")
    add_security_arguments(parser, connects=False, binds=True)


def run(args: argparse.Namespace) -> int:
    """Drive the run and print its summary."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s coordinator %(levelname)s %(message)s")
    path = args.config or (args.run_dir / "run.toml" if args.resume else None)
    config = RunConfig.load(path) if path else RunConfig()
    coordinator = Coordinator(config, args.run_dir, bind=args.bind, security=server_security(args), resume=args.resume,
                              stop_after=args.stop_after)
    print(f"coordinator listening on {coordinator.endpoint}", flush=True)
    print_summary(coordinator.run())
    return 0
