"""`edgepsl client`: the client agent: trains part-1 and part-3 on its own data, sends only activations and gradients."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from edgepsl.cli._logging import setup_logging
from edgepsl.cli._roles import add_role_arguments, emulation, keys
from edgepsl.data.spec import DataConfig, DataSpec, Normalisation
from edgepsl.runtime.client import Client, ClientOptions
from edgepsl.runtime.signals import stop_on_signals

HELP = "run a client: part-1 and part-3 on local data; raw inputs and labels never leave it"


def _floats(text: str) -> tuple[float, ...]:
    """Comma-separated numbers, one per channel."""
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None


def _memory(text: str) -> float:
    """A finite number of MB above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of MB") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"the memory for part-2 must be a finite number of MB above 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Coordinator, name, emulation, key and data options."""
    add_role_arguments(parser)
    parser.add_argument("--memory-mb", type=_memory, metavar="MB",
                        help="the memory this device can give to part-2 training (MB), for hybrid methods; without "
                             "it the planner never puts this client in local mode")
    data = parser.add_argument_group("this client's own data (default: its share of Fashion-MNIST at the run's "
                                     "data_dir, as the demo)")
    source = data.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="SPEC", help="npz:FILE (arrays x, y), idx:DIR or python:MODULE:FUNCTION")
    source.add_argument("--data-config", type=Path, metavar="FILE",
                        help="a TOML file with data (a spec) and optionally mean, std, divide (docs/byo.md)")
    data.add_argument("--mean", type=_floats, metavar="M[,M..]", help="per-channel mean (default: the run's mean)")
    data.add_argument("--std", type=_floats, metavar="S[,S..]", help="per-channel std (default: the run's std)")
    data.add_argument("--divide", type=float, metavar="D", help="divide inputs by this first (default: the run's)")


def _data(args: argparse.Namespace) -> tuple[str | None, Normalisation | None]:
    """(spec, normalisation) from --data and --mean/--std/--divide or --data-config; normalisation None: the run's."""
    given = [args.mean, args.std, args.divide]
    if args.data_config is not None:
        if any(v is not None for v in given):
            raise SystemExit("edgepsl client: --mean, --std and --divide go with --data; put them in the data config")
        config = DataConfig.load(args.data_config)
        return config.data, config.normalisation
    if args.data is None:
        if any(v is not None for v in given):
            raise SystemExit("edgepsl client: --mean, --std and --divide need --data")
        return None, None
    spec = str(DataSpec.parse(args.data))
    if all(v is None for v in given):
        return spec, None
    if (args.mean is None) != (args.std is None):
        raise SystemExit("edgepsl client: give --mean and --std together (one value per channel each)")
    base = Normalisation()
    return spec, Normalisation(args.mean or base.mean, args.std or base.std,
                               args.divide if args.divide is not None else base.divide)


def run(args: argparse.Namespace) -> int:
    """Train until the coordinator says bye."""
    setup_logging(args, args.name)
    stop_on_signals()
    data, normalisation = _data(args)
    keypair, coordinator_key = keys(args)
    Client(ClientOptions(args.name, args.coordinator, keypair, coordinator_key, emulation(args), args.trace,
                         args.join_timeout, args.artifact, data, normalisation, args.memory_mb)).run()
    return 0
