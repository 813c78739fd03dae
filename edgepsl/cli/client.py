"""`edgepsl client`: the client agent: trains part-1 and part-3 on its own data, sends only activations and gradients."""
from __future__ import annotations

import argparse

from edgepsl.cli._logging import setup_logging
from edgepsl.cli._roles import add_role_arguments, emulation, keys
from edgepsl.runtime.client import Client, ClientOptions
from edgepsl.runtime.signals import stop_on_signals

HELP = "run a client: part-1 and part-3 on local data; raw inputs and labels never leave it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Coordinator, name, emulation and key options."""
    add_role_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Train until the coordinator says bye."""
    setup_logging(args, args.name)
    stop_on_signals()
    keypair, coordinator_key = keys(args)
    Client(ClientOptions(args.name, args.coordinator, keypair, coordinator_key, emulation(args), args.trace,
                         args.join_timeout)).run()
    return 0
