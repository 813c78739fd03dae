"""`edgepsl keys`: create key pairs and manage the allow-list of peers' public keys (CURVE)."""
from __future__ import annotations

import argparse

from edgepsl.wire.keys import KEYS_DIR_ENV, KeyStore, default_keys_dir

HELP = "manage CURVE keys: create own key pairs, list them, allow or revoke peers' public keys"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options: --dir, and the actions new, list, allow, revoke."""
    parser.add_argument("--dir", default=None, help=f"key store directory (default: ${KEYS_DIR_ENV} or {default_keys_dir()})")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    new = actions.add_parser("new", help="create a key pair NAME (NAME.key is public, NAME.key_secret stays here)")
    new.add_argument("name")
    new.add_argument("--force", action="store_true", help="replace an existing key pair of that name")
    actions.add_parser("list", help="list own key pairs and allowed peers with their public keys")
    allow = actions.add_parser("allow", help="allow peer NAME to connect, given its public key or public certificate file")
    allow.add_argument("name")
    allow.add_argument("key", help="40-character Z85 public key, or path to the peer's NAME.key file "
                                   "(a Z85 key may begin with '-': write `allow NAME -- KEY`)")
    revoke = actions.add_parser("revoke", help="remove peer NAME from the allow-list")
    revoke.add_argument("name")


def run(args: argparse.Namespace) -> int:
    """Carry out one key-store action."""
    store = KeyStore(args.dir)
    if args.action == "new":
        pair = store.new(args.name, force=args.force)
        print(f"created {args.name}: public key {pair.public.decode()}")
        print(f"  give {store.root / (args.name + '.key')} (or the key above) to the peers that must allow it")
    elif args.action == "list":
        print(f"key store {store.root}")
        print("own key pairs:")
        for name, key in store.identities().items():
            print(f"  {name:<24} {key.decode()}")
        print("allowed peers:")
        for name, key in store.allowed().items():
            print(f"  {name:<24} {key.decode()}")
    elif args.action == "allow":
        path = store.allow(args.name, args.key)
        print(f"allowed {args.name} ({path})")
    else:
        store.revoke(args.name)
        print(f"revoked {args.name}")
    return 0
