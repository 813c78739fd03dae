"""The `edgepsl` console script: one parser, one small module per subcommand."""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from typing import Sequence

from edgepsl import __version__
from edgepsl.errors import EdgePSLError
from edgepsl.runtime.errors import StopRequested
from edgepsl.runtime.signals import exit_status

# Each name is a module edgepsl.cli.<name> exposing HELP, add_arguments(parser) and run(args) -> int.
SUBCOMMANDS: tuple[str, ...] = ("doctor", "plan", "keys", "profile", "export", "demo", "coordinator", "helper", "client")


def _version_line() -> str:
    """The version string, naming the active scheduling-core backend."""
    from edgepsl.plan.backend import backend_name

    return f"edgepsl {__version__} (scheduling core: {backend_name()})"


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="edgepsl", description="Parallel split learning on edge devices.")
    parser.add_argument("--version", action="version", version=_version_line())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"edgepsl.cli.{name.replace('-', '_')}")
        child = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(child)
        child.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `edgepsl` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except EdgePSLError as exc:
        print(f"edgepsl {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except StopRequested as exc:  # SIGINT or SIGTERM after a role's or coordinator's farewell (docs/runtime.md)
        print(f"edgepsl {args.command}: stopped by {signal.Signals(exc.signum).name}", file=sys.stderr)
        return exit_status(exc)
    except BrokenPipeError:  # output piped into a reader that stopped early (`edgepsl doctor | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush does not fail again
        return 141


if __name__ == "__main__":
    sys.exit(main())
