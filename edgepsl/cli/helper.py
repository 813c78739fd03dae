"""`edgepsl helper`: the helper daemon: serves its clients' middle-part jobs in plan order."""
from __future__ import annotations

import argparse

from edgepsl.cli._logging import setup_logging
from edgepsl.cli._roles import add_role_arguments, emulation, keys
from edgepsl.runtime.helper import Helper, HelperOptions
from edgepsl.runtime.signals import stop_on_signals

HELP = "run a helper: train the middle part of its assigned clients, jobs in the coordinator's plan order"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Coordinator, name, bind address, capacity, emulation and key options."""
    add_role_arguments(parser)
    parser.add_argument("--bind", default="tcp://127.0.0.1:*", help="where clients connect (default tcp://127.0.0.1:*)")
    parser.add_argument("--advertise", help="endpoint clients should use, when it differs from --bind")
    parser.add_argument("--capacity-mb", type=float, help="memory for middle parts (default: room for every client)")


def run(args: argparse.Namespace) -> int:
    """Serve until the coordinator says bye."""
    setup_logging(args, args.name)
    stop_on_signals()
    keypair, coordinator_key = keys(args)
    Helper(HelperOptions(args.name, args.coordinator, args.bind, args.advertise, keypair, coordinator_key,
                         args.capacity_mb, emulation(args), args.trace, args.join_timeout, args.artifact)).run()
    return 0
