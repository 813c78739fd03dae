"""CURVE key files: a key store of own key pairs plus an allow-list of peers' public keys (zmq cert format)."""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

from edgepsl.wire.errors import KeyStoreError

KEYS_DIR_ENV = "EDGEPSL_KEYS"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


def default_keys_dir() -> Path:
    """The key store used when none is given: $EDGEPSL_KEYS, else ~/.config/edgepsl/keys."""
    return Path(os.environ.get(KEYS_DIR_ENV) or Path.home() / ".config" / "edgepsl" / "keys")


def check_name(name: str) -> str:
    """Return `name` if it is a valid key name (letters, digits, '_', '.', '-'; at most 64), else raise."""
    if not _NAME.fullmatch(name):
        raise KeyStoreError(f"invalid key name {name!r}: use 1-64 letters, digits, '_', '.' or '-', not starting with '.' or '-'")
    return name


def _z85_public_key(raw: bytes) -> bytes | None:
    candidate = raw.strip()
    if len(candidate) != 40:
        return None
    try:
        return candidate if len(z85.decode(candidate)) == 32 else None
    except (KeyError, ValueError):
        return None


def parse_public_key(text: str | bytes) -> bytes:
    """A Z85 public key from the path of a public certificate file, or else from 40-character Z85 text.

    An existing file wins: a 40-character path (such as runs/x/keys/allowed/client0.key) is a path.
    """
    raw = text.encode() if isinstance(text, str) else text
    path = Path(os.fsdecode(raw))
    if not path.is_file():
        key = _z85_public_key(raw)
        if key is not None:
            return key
        raise KeyStoreError(f"{os.fsdecode(raw)!r} is neither a 40-character Z85 public key nor a certificate file")
    try:
        public, _ = zmq.auth.load_certificate(path)
    except ValueError as exc:
        raise KeyStoreError(f"{path}: {exc}") from None
    key = _z85_public_key(public)
    if key is None:
        raise KeyStoreError(f"{path}: the public-key line does not hold a 40-character Z85 key")
    return key


ROUTING_NONCE_BYTES = 8


def routing_prefix(public: bytes) -> bytes:
    """The first 16 bytes of every routing id a Z85 public key's connections present: a server checks them against
    the key that authenticated the connection and refuses a connection presenting another key's prefix."""
    return b"k" + hashlib.sha256(b"edgepsl-routing-id\0" + public).digest()[:15]


@dataclass(frozen=True)
class KeyPair:
    """An own CURVE identity: its name, Z85 public key and Z85 secret key."""

    name: str
    public: bytes
    secret: bytes

    def routing_id(self) -> bytes:
        """A fresh routing id for one connection: the key's routing prefix and 8 random bytes, so a reconnection
        never needs the route of a connection the server may not have closed yet, and no one can guess it."""
        return routing_prefix(self.public) + os.urandom(ROUTING_NONCE_BYTES)


class KeyStore:
    """A directory of own key pairs (NAME.key, NAME.key_secret) and allowed peers (allowed/NAME.key)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_keys_dir()
        self.allowed_dir = self.root / "allowed"

    def _ensure_dirs(self) -> None:
        self.allowed_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def new(self, name: str, *, force: bool = False) -> KeyPair:
        """Create a key pair NAME; refuses to overwrite an existing one unless force is set."""
        check_name(name)
        self._ensure_dirs()
        secret_path = self.root / f"{name}.key_secret"
        if secret_path.exists() and not force:
            raise KeyStoreError(f"a key pair named {name!r} already exists in {self.root}; pass --force to replace it")
        zmq.auth.create_certificates(self.root, name)
        os.chmod(secret_path, 0o600)
        return self.identity(name)

    def identity(self, name: str) -> KeyPair:
        """Load the own key pair NAME."""
        path = self.root / f"{check_name(name)}.key_secret"
        if not path.is_file():
            raise KeyStoreError(f"no key pair named {name!r} in {self.root}; create one with `edgepsl keys new {name}`")
        public, secret = zmq.auth.load_certificate(path)
        if not secret:
            raise KeyStoreError(f"{path} holds no secret key")
        return KeyPair(name, public, secret)

    def identities(self) -> dict[str, bytes]:
        """Own key pairs as name -> Z85 public key."""
        if not self.root.is_dir():
            return {}
        return {p.name[: -len(".key_secret")]: zmq.auth.load_certificate(p)[0] for p in sorted(self.root.glob("*.key_secret"))}

    def allow(self, name: str, public_key: bytes) -> Path:
        """Add (or replace) peer NAME with a Z85 public key in the allow-list; returns the file written."""
        check_name(name)
        key = parse_public_key(public_key)
        holders = [other for other, known in self.allowed().items() if known == key and other != name]
        if holders:
            raise KeyStoreError(f"this public key is already allowed as {holders[0]!r}; revoke {holders[0]!r} first")
        self._ensure_dirs()
        path = self.allowed_dir / f"{name}.key"
        path.write_text(f"# edgepsl: public key of peer {name}\nmetadata\ncurve\n    public-key = \"{key.decode()}\"\n", encoding="utf-8")
        return path

    def revoke(self, name: str) -> None:
        """Remove peer NAME from the allow-list."""
        path = self.allowed_dir / f"{check_name(name)}.key"
        if not path.is_file():
            raise KeyStoreError(f"peer {name!r} is not in the allow-list {self.allowed_dir}")
        path.unlink()

    def allowed(self) -> dict[str, bytes]:
        """The allow-list as peer name -> Z85 public key."""
        if not self.allowed_dir.is_dir():
            return {}
        return {p.stem: parse_public_key(str(p)) for p in sorted(self.allowed_dir.glob("*.key"))}
