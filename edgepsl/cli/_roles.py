"""Options shared by the `helper` and `client` commands: coordinator, name, emulation, trace, artifact, CURVE keys."""
from __future__ import annotations

import argparse
from pathlib import Path

from edgepsl.cli._logging import add_log_level
from edgepsl.runtime.emulation import Emulation
from edgepsl.wire import KeyPair, KeyStore
from edgepsl.wire.keys import parse_public_key
from edgepsl.wire.options import add_security_arguments, peer_security


def add_role_arguments(parser: argparse.ArgumentParser) -> None:
    """--coordinator, --name, emulation, trace and artifact options, and the security options of a connecting role."""
    parser.add_argument("--coordinator", required=True, metavar="ENDPOINT", help="the coordinator, e.g. tcp://10.0.0.1:5555")
    parser.add_argument("--name", required=True, help="this role's name (its key pair's name when secure)")
    emu = parser.add_argument_group("device emulation (default: none, real times)")
    emu.add_argument("--device", help="emulate this device of the run's emulation_profile (e.g. d1, jetson-cpu, VM)")
    emu.add_argument("--slowdown", type=float, help="emulate a device this many times slower than this one (>= 1)")
    emu.add_argument("--bandwidth", type=float, metavar="MBPS", help="emulated link bandwidth; sends are paced to it")
    parser.add_argument("--trace", type=Path, help="write this process's event trace (JSON lines) here")
    parser.add_argument("--artifact", type=Path, metavar="DIR",
                        help="a local copy of the run's artifact, used when its sha256 is the run's; without it (or "
                             "when it differs) the role uses its cache ($EDGEPSL_ARTIFACT_CACHE, else "
                             "~/.cache/edgepsl/artifacts) or receives the artifact from the coordinator")
    parser.add_argument("--join-timeout", type=float, default=600.0, metavar="SECONDS",
                        help="how long to keep trying to register, and to wait for a coordinator that went silent "
                             "(default 600)")
    add_log_level(parser)
    add_security_arguments(parser, connects=True, binds=False)


def emulation(args: argparse.Namespace) -> Emulation:
    """The Emulation the options describe."""
    return Emulation(device=args.device, slowdown=args.slowdown, bandwidth_mbps=args.bandwidth)


def keys(args: argparse.Namespace) -> tuple[KeyPair | None, bytes | None]:
    """(own key pair, coordinator public key), or (None, None) with --insecure."""
    security = peer_security(args)
    if security is None:
        return None, None
    return KeyStore(args.keys).identity(args.key), parse_public_key(args.server_key)
