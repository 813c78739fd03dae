"""Fixtures of the wire tests: a key store with a server and peers and channel factories."""
from __future__ import annotations

from typing import Callable, Iterator

import pytest

from edgepsl.wire import ChannelConfig, KeyStore, PeerChannel, PeerSecurity, ServerChannel, ServerSecurity
from tests.wire.helpers import FAST


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
