"""CURVE settings of both channel ends and the ZAP authenticator that enforces a server's allow-list."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Mapping

import zmq
from zmq.auth.thread import ThreadAuthenticator

from edgepsl.wire.errors import ChannelConfigError
from edgepsl.wire.keys import KeyPair, KeyStore, parse_public_key, routing_prefix


@dataclass(frozen=True)
class ServerSecurity:
    """A server's own key pair and its allow-list (peer name -> Z85 public key)."""

    keypair: KeyPair
    allowed: Mapping[str, bytes] = field(default_factory=dict)

    @classmethod
    def from_store(cls, store: KeyStore, name: str) -> "ServerSecurity":
        """Key pair NAME and the allow-list of a key store."""
        return cls(store.identity(name), store.allowed())


@dataclass(frozen=True)
class PeerSecurity:
    """A peer's own key pair and the Z85 public key of the server it connects to."""

    keypair: KeyPair
    server_key: bytes

    @classmethod
    def from_store(cls, store: KeyStore, name: str, server_key: str | bytes) -> "PeerSecurity":
        """Key pair NAME of a key store, and the server's key (Z85 text or certificate path)."""
        return cls(store.identity(name), parse_public_key(server_key))


class AllowList:
    """Thread-safe map Z85 public key -> (peer name, its routing prefix), read by the ZAP thread and the I/O thread.

    replace() builds a new dict and swaps the reference under the lock; readers look up whichever dict is current
    (one atomic read under the GIL), so the per-message lookup takes no lock. `on_refused(z85_key)` is called from
    the ZAP thread for every handshake it refuses.
    """

    def __init__(self, allowed: Mapping[str, bytes], on_refused: Callable[[str], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, tuple[str, bytes]] = {}
        self._on_refused = on_refused
        self.replace(allowed)

    def replace(self, allowed: Mapping[str, bytes]) -> None:
        """Swap in a new allow-list (peer name -> Z85 public key)."""
        by_key = {}
        for name, key in allowed.items():
            text = parse_public_key(key).decode("ascii")
            if text in by_key:
                raise ChannelConfigError(f"peers {by_key[text][0]!r} and {name!r} share one public key; each peer needs its own")
            by_key[text] = (name, routing_prefix(text.encode("ascii")))
        with self._lock:
            self._by_key = by_key

    def lookup(self, key: str) -> tuple[str, bytes] | None:
        """The peer name of an allowed Z85 key and the prefix its connections' routing ids must have, else None."""
        return self._by_key.get(key)

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP credentials-provider hook: admit only allowed keys (and tell on_refused about the others)."""
        text = key.decode("ascii")
        if text in self._by_key:
            return True
        if self._on_refused is not None:
            self._on_refused(text)
        return False


def start_authenticator(context: zmq.Context, allow_list: AllowList) -> ThreadAuthenticator:
    """Start the ZAP handler of `context` so that CURVE handshakes succeed only for allowed keys."""
    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=allow_list)
    return auth


def apply_server(socket: zmq.Socket, security: ServerSecurity) -> None:
    """Make a binding socket a CURVE server with the given key pair."""
    socket.curve_secretkey = security.keypair.secret
    socket.curve_publickey = security.keypair.public
    socket.curve_server = True


def apply_peer(socket: zmq.Socket, security: PeerSecurity) -> None:
    """Make a connecting socket a CURVE client of the given server key."""
    socket.curve_secretkey = security.keypair.secret
    socket.curve_publickey = security.keypair.public
    socket.curve_serverkey = security.server_key
