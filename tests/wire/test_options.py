"""The shared --keys/--key/--server-key/--insecure options build the security settings channels need."""
from __future__ import annotations

import argparse

import pytest

from edgepsl.wire import ChannelConfigError, KeyStore, PeerSecurity, ServerSecurity
from edgepsl.wire.options import add_security_arguments, peer_security, server_security
from tests.wire.helpers import new_dash_key_pair


def parse(*argv: str) -> argparse.Namespace:
    """Parse as a helper would (it binds for its clients and connects to the coordinator)."""
    parser = argparse.ArgumentParser()
    add_security_arguments(parser, connects=True, binds=True)
    return parser.parse_args(list(argv))


def test_keys_make_server_and_peer_security(tmp_path):
    """--key with --server-key gives PeerSecurity; --key gives ServerSecurity with the store's allow-list."""
    store = KeyStore(tmp_path)
    helper, coordinator = store.new("helper0"), store.new("coord")
    store.allow("client1", store.new("client1").public)
    args = parse("--keys", str(tmp_path), "--key", "helper0", "--server-key", str(tmp_path / "coord.key"))
    assert server_security(args) == ServerSecurity(helper, {"client1": store.identity("client1").public})
    assert peer_security(args) == PeerSecurity(helper, coordinator.public)


def test_a_z85_server_key_beginning_with_a_dash_is_written_with_equals(tmp_path):
    """A Z85 key that begins with '-' is taken as --server-key=KEY; standing alone argparse reads it as an option."""
    store = KeyStore(tmp_path)
    helper, coordinator = store.new("helper0"), new_dash_key_pair(store, "coord")
    key = coordinator.public.decode()
    args = parse("--keys", str(tmp_path), "--key", "helper0", f"--server-key={key}")
    assert peer_security(args) == PeerSecurity(helper, coordinator.public)
    with pytest.raises(SystemExit):
        parse("--keys", str(tmp_path), "--key", "helper0", "--server-key", key)


def test_insecure_is_explicit(tmp_path):
    """No key and no --insecure is an error naming both ways out; --insecure gives no security; both is an error."""
    KeyStore(tmp_path).new("c")
    with pytest.raises(ChannelConfigError, match="--insecure"):
        server_security(parse("--keys", str(tmp_path)))
    with pytest.raises(ChannelConfigError, match="--server-key"):
        peer_security(parse("--keys", str(tmp_path), "--key", "c"))
    insecure = parse("--insecure")
    assert server_security(insecure) is None and peer_security(insecure) is None
    with pytest.raises(ChannelConfigError, match="exclude each other"):
        server_security(parse("--insecure", "--key", "c"))


def test_allowed_from_reads_another_store(tmp_path):
    """--allowed-from takes the allow-list from a separate directory."""
    own, shared = KeyStore(tmp_path / "own"), KeyStore(tmp_path / "shared")
    own.new("h")
    shared.allow("c9", own.new("c9").public)
    args = parse("--keys", str(own.root), "--key", "h", "--allowed-from", str(shared.root))
    assert server_security(args).allowed == {"c9": own.identity("c9").public}
