"""The role commands a local run starts parse as their CLI reads them, whatever the throwaway keys look like."""
from __future__ import annotations

from edgepsl.cli import build_parser
from edgepsl.runtime.launch import COORDINATOR, _commands, _keys
from edgepsl.wire import KeyStore, PeerSecurity
from edgepsl.wire.options import peer_security
from tests.runtime.conftest import small_run
from tests.wire.helpers import new_dash_key_pair


def test_role_commands_carry_a_coordinator_key_beginning_with_a_dash(tmp_path):
    """A coordinator key that begins with '-' (one in 85) reaches every role: helpers and clients parse it as the
    server key instead of dying on an argparse error before they start."""
    run = small_run(tmp_path, clients=2, helpers=1)
    coordinator = new_dash_key_pair(KeyStore(tmp_path / "keys"), COORDINATOR)
    store = _keys(run)
    assert store.identity(COORDINATOR) == coordinator
    commands = list(_commands(run, "tcp://127.0.0.1:5555", store).values())
    assert [cmd[3] for cmd in commands] == ["helper", "client", "client"]
    parser = build_parser()
    for cmd in commands:
        args = parser.parse_args(cmd[3:])
        assert peer_security(args) == PeerSecurity(store.identity(args.name), coordinator.public)
