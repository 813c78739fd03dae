"""--log-level for every command that runs a role, and the logging setup it selects."""
from __future__ import annotations

import argparse
import logging

LEVELS = ("debug", "info", "warning", "error")


def add_log_level(parser: argparse.ArgumentParser, default: str = "info") -> None:
    """--log-level LEVEL."""
    parser.add_argument("--log-level", default=default, choices=LEVELS,
                        help=f"what to log to stderr (default {default}): info shows registration, each round, errors")


def setup_logging(args: argparse.Namespace, process: str) -> None:
    """Log at the chosen level to stderr, each line naming the process."""
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format=f"%(asctime)s {process} %(levelname)s %(message)s")
