"""Command-line options shared by every role that opens a channel: --keys, --key, --server-key, --insecure."""
from __future__ import annotations

import argparse

from edgepsl.wire.errors import ChannelConfigError
from edgepsl.wire.keys import KEYS_DIR_ENV, KeyStore, default_keys_dir
from edgepsl.wire.security import PeerSecurity, ServerSecurity


def add_security_arguments(parser: argparse.ArgumentParser, *, connects: bool, binds: bool) -> None:
    """Add the key options of a role that connects to a server, binds one, or both (a helper does both)."""
    group = parser.add_argument_group("security (CURVE, on by default)")
    group.add_argument("--keys", default=None, help=f"key store directory (default: ${KEYS_DIR_ENV} or {default_keys_dir()})")
    group.add_argument("--key", default=None, metavar="NAME", help="own key pair in the key store (see `edgepsl keys new`)")
    if connects:
        group.add_argument("--server-key", default=None, metavar="KEY",
                           help="the server's public key: 40-character Z85 text or its NAME.key file "
                                "(a Z85 key may begin with '-': write --server-key=KEY)")
    if binds:
        group.add_argument("--allowed-from", default=None, metavar="DIR",
                           help="key store whose allowed/ peers may connect (default: --keys)")
    group.add_argument("--insecure", action="store_true", help="no encryption or authentication (local runs only)")


def _insecure(args: argparse.Namespace) -> bool:
    if args.insecure and args.key:
        raise ChannelConfigError("--insecure and --key exclude each other: choose one")
    return bool(args.insecure)


def _own_store(args: argparse.Namespace) -> KeyStore:
    if not args.key:
        raise ChannelConfigError("pass --key NAME (create it with `edgepsl keys new NAME`), or --insecure for a local run")
    return KeyStore(args.keys)


def server_security(args: argparse.Namespace) -> ServerSecurity | None:
    """The ServerSecurity the options describe, or None with --insecure."""
    if _insecure(args):
        return None
    store = _own_store(args)
    allowed = KeyStore(args.allowed_from).allowed() if args.allowed_from else store.allowed()
    return ServerSecurity(store.identity(args.key), allowed)


def peer_security(args: argparse.Namespace) -> PeerSecurity | None:
    """The PeerSecurity the options describe, or None with --insecure."""
    if _insecure(args):
        return None
    store = _own_store(args)
    if not args.server_key:
        raise ChannelConfigError("pass --server-key (the server's NAME.key file or Z85 public key), or --insecure")
    return PeerSecurity.from_store(store, args.key, args.server_key)
