"""The key store and `edgepsl keys new|list|allow|revoke` on a real directory."""
from __future__ import annotations

import argparse
import stat

import pytest

from edgepsl.cli import keys as keys_cli
from edgepsl.wire import KeyStore, KeyStoreError
from edgepsl.wire.keys import parse_public_key, routing_prefix
from tests.wire.helpers import new_dash_key_pair


def run_keys(*argv: str) -> int:
    """Run the keys subcommand as the console script would."""
    parser = argparse.ArgumentParser(prog="edgepsl keys")
    keys_cli.add_arguments(parser)
    return keys_cli.run(parser.parse_args(list(argv)))


def test_new_list_allow_revoke(tmp_path, capsys):
    """The whole life of a key pair through the CLI, reading back what it wrote."""
    root = str(tmp_path / "ks")
    assert run_keys("--dir", root, "new", "helper0") == 0
    assert run_keys("--dir", root, "new", "client1") == 0
    store = KeyStore(root)
    public = store.identity("client1").public
    assert run_keys("--dir", root, "allow", "client1", str(tmp_path / "ks" / "client1.key")) == 0
    assert store.allowed() == {"client1": public}
    capsys.readouterr()
    assert run_keys("--dir", root, "list") == 0
    listing = capsys.readouterr().out
    assert listing.count(public.decode()) == 2 and "helper0" in listing
    assert run_keys("--dir", root, "revoke", "client1") == 0
    assert store.allowed() == {}


def test_secret_key_is_private_and_never_overwritten(tmp_path):
    """NAME.key_secret is 0600; a second `new` refuses unless forced, and force makes a new key."""
    store = KeyStore(tmp_path)
    first = store.new("c")
    assert stat.S_IMODE((tmp_path / "c.key_secret").stat().st_mode) == 0o600
    with pytest.raises(KeyStoreError, match="--force"):
        store.new("c")
    assert store.new("c", force=True).public != first.public


def test_allow_accepts_z85_text_and_refuses_garbage(tmp_path):
    """A key can be allowed from its Z85 text; junk, bad names and a key already allowed under another name are refused."""
    store = KeyStore(tmp_path)
    public = store.new("a").public
    store.allow("a", public.decode())
    with pytest.raises(KeyStoreError, match="already allowed as 'a'"):
        store.allow("b", public)
    with pytest.raises(KeyStoreError, match="neither"):
        store.allow("c", "not-a-key")
    with pytest.raises(KeyStoreError, match="invalid key name"):
        store.allow("../evil", public)
    with pytest.raises(KeyStoreError, match="not in the allow-list"):
        store.revoke("zed")


def test_allow_takes_a_z85_key_beginning_with_a_dash_after_double_dash(tmp_path):
    """`keys allow NAME -- KEY` allows a Z85 key that begins with '-', as the argument's help says."""
    root = tmp_path / "ks"
    public = new_dash_key_pair(KeyStore(tmp_path / "peer"), "client1").public
    assert run_keys("--dir", str(root), "allow", "client1", "--", public.decode()) == 0
    assert KeyStore(root).allowed() == {"client1": public}


def test_missing_identity_says_how_to_create_it(tmp_path):
    """Loading an absent key pair names the command that creates it."""
    with pytest.raises(KeyStoreError, match="edgepsl keys new ghost"):
        KeyStore(tmp_path).identity("ghost")


def test_parse_public_key_reads_certificate_files(tmp_path):
    """A public certificate file and its Z85 key parse to the same key; a file without a key is refused."""
    store = KeyStore(tmp_path)
    public = store.new("a").public
    assert parse_public_key(str(tmp_path / "a.key")) == public == parse_public_key(public)
    (tmp_path / "empty.key").write_text("metadata\n")
    with pytest.raises(KeyStoreError, match="No public key"):
        parse_public_key(str(tmp_path / "empty.key"))


def test_routing_ids_carry_the_key_prefix_and_a_fresh_nonce(tmp_path):
    """Every routing id of a key pair begins with its key's prefix (the same on every load, another for another key)
    and ends in 8 fresh random bytes."""
    store = KeyStore(tmp_path)
    a, b = store.new("a"), store.new("b")
    first, second = store.identity("a").routing_id(), a.routing_id()
    assert first[:16] == second[:16] == routing_prefix(a.public) != routing_prefix(b.public) == b.routing_id()[:16]
    assert len(first) == len(second) == 24 and first != second


def test_a_forty_character_path_is_read_as_a_file_not_as_z85(tmp_path, monkeypatch):
    store = KeyStore(tmp_path / "k")
    pair = store.new("client0")
    monkeypatch.chdir(tmp_path)
    relative = "k/" + "x" * 34 + ".key"
    assert len(relative) == 40
    (tmp_path / relative).write_bytes((tmp_path / "k" / "client0.key").read_bytes())
    assert parse_public_key(relative) == pair.public
