"""Fixtures of the wire tests: a key store with a server and peers, fast channel settings, channel factories."""
from __future__ import annotations

import time
from typing import Callable, Iterator

import pytest

from edgepsl.wire import ChannelConfig, Envelope, KeyStore, PeerChannel, PeerEvent, PeerSecurity, ServerChannel, ServerSecurity
from edgepsl.wire.inbox import Delivery

FAST = ChannelConfig(heartbeat_s=0.1, liveness=5, reconnect_min_s=0.05, reconnect_max_s=0.2, send_timeout_s=1.0, linger_s=0.0)


@pytest.fixture()
def keys(tmp_path) -> KeyStore:
    """Key pairs server, alice, bob, mallory and stranger; all but stranger are allowed by the server."""
    store = KeyStore(tmp_path / "keys")
    for name in ("server", "alice", "bob", "mallory", "stranger"):
        pair = store.new(name)
        if name not in ("server", "stranger"):
            store.allow(name, pair.public)
    return store


@pytest.fixture()
def channels() -> Iterator[list]:
    """Every channel a test opens is appended here and closed afterwards."""
    opened: list = []
    yield opened
    for channel in reversed(opened):
        channel.close()


@pytest.fixture()
def secure_server(keys, channels) -> ServerChannel:
    """A CURVE server on an ephemeral loopback port."""
    server = ServerChannel("tcp://127.0.0.1:*", security=ServerSecurity.from_store(keys, "server"), config=FAST)
    channels.append(server)
    return server


@pytest.fixture()
def connect(keys, channels) -> Callable[..., PeerChannel]:
    """connect(server_endpoint, name, **config overrides): a CURVE peer using key pair `name`."""

    def make(endpoint: str, name: str, **overrides) -> PeerChannel:
        config = ChannelConfig(**{**FAST.__dict__, **overrides})
        security = PeerSecurity.from_store(keys, name, keys.identity("server").public)
        peer = PeerChannel(endpoint, name, security=security, config=config)
        channels.append(peer)
        return peer

    return make


def wait_for(channel, match: Callable[[Delivery], bool], timeout: float = 5.0) -> tuple[Delivery | None, list[Delivery]]:
    """The first delivery matching `match` within `timeout` seconds, and every delivery seen before it."""
    seen: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        item = channel.recv(timeout=remaining)
        if item is None:
            break
        if match(item):
            return item, seen
        seen.append(item)
    return None, seen


def is_event(kind) -> Callable[[Delivery], bool]:
    """Match a PeerEvent of one kind."""
    return lambda item: isinstance(item, PeerEvent) and item.kind is kind


def is_message(kind) -> Callable[[Delivery], bool]:
    """Match an Envelope of one message type."""
    return lambda item: isinstance(item, Envelope) and item.message.type is kind
