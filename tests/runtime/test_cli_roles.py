"""The standalone commands (edgepsl coordinator / helper / client) run a secure training run from a config file."""
from __future__ import annotations

import json
import re
import subprocess
import sys

from edgepsl.wire import KeyStore
from tests.runtime.conftest import SMALL

ROLE_TIMEOUT_S = 180


def test_coordinator_helper_and_client_commands(tmp_path):
    store = KeyStore(tmp_path / "keys")
    store.new("coordinator")
    for name in ("helper0", "client0", "client1"):
        store.allow(name, store.new(name).public)
    config = tmp_path / "run.toml"
    SMALL.replace(clients=2, helpers=1, rounds=6, aggregate_every=3, eval_every=6).save(config)
    run_dir = tmp_path / "run"
    edgepsl = [sys.executable, "-m", "edgepsl"]
    keys = ["--keys", str(store.root)]
    coordinator = subprocess.Popen(
        [*edgepsl, "coordinator", "--config", str(config), "--run-dir", str(run_dir), "--bind", "tcp://127.0.0.1:*",
         *keys, "--key", "coordinator"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    roles = []
    try:
        first = coordinator.stdout.readline()
        endpoint = re.search(r"tcp://\S+", first).group(0)
        for role, name in (("helper", "helper0"), ("client", "client0"), ("client", "client1")):
            roles.append(subprocess.Popen(
                [*edgepsl, role, "--coordinator", endpoint, "--name", name, *keys, "--key", name,
                 "--server-key", str(store.root / "coordinator.key")], stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True))
        out, _ = coordinator.communicate(timeout=ROLE_TIMEOUT_S)
        assert coordinator.returncode == 0, out
        for proc in roles:
            log, _ = proc.communicate(timeout=ROLE_TIMEOUT_S)
            assert proc.returncode == 0, log
    finally:
        for proc in [coordinator, *roles]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert "test accuracy:" in out and "run directory:" in out
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["round"] for m in records] == list(range(6))
    assert "accuracy" in records[-1]
    assert json.loads((run_dir / "roles.json").read_text())["clients"] == ["client0", "client1"]
