"""Failed CURVE handshakes between the standalone commands: a client whose key the coordinator does not allow and a
client given a wrong --server-key. Each side names the failure within 5 s of the client's first try, the client
exits with status 1 without a traceback, and the coordinator goes on to run its roles. Processes ended by PID."""
from __future__ import annotations

import datetime
import subprocess
import time

from tests.runtime.conftest import SMALL
from tests.runtime.processes import CommandRun

NAMED_WITHIN_S = 5.0  # the bound on naming an authentication failure
RUN_S = 120.0
START_S = 60.0


def _when(run: CommandRun, name: str, text: str) -> datetime.datetime:
    """The time stamp of the first log line of process `name` that contains text (AssertionError if none)."""
    for line in run.log(name).splitlines():
        if text in line:
            return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    raise AssertionError(f"{name} never logged {text!r}:\n{run.log(name)}")


def _wait_for(run: CommandRun, name: str, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in run.log(name):
        assert time.monotonic() < deadline, f"{name} did not log {text!r} within {timeout_s} s:\n{run.log(name)}"
        time.sleep(0.05)


def test_an_unlisted_key_and_a_wrong_server_key_are_named_on_both_sides_within_5_s(tmp_path):
    run = CommandRun(tmp_path, SMALL.replace(clients=1, helpers=1, rounds=2, aggregate_every=2, eval_every=2))
    run.store.allow("client7", run.store.new("client7").public)  # an allowed key, given the wrong server key
    stranger = run.store.new("stranger").public.decode()  # a key that is not in the coordinator's allow-list
    try:
        run.coordinator()
        _wait_for(run, "coordinator", "coordinator listening on", START_S)
        bad = {"stranger": run.role("stranger"),
               "client7": run.role("client7", "--server-key", str(run.store.root / "helper0.key"))}
        bad_codes = {name: proc.wait(timeout=START_S) for name, proc in bad.items()}
        assert run.procs["coordinator"].poll() is None  # a refused stranger does not end the run
        run.roles()
        codes = run.wait_all(RUN_S)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{exc.cmd} still running:\n{run.log('stranger')}\n{run.log('client7')}") from None
    finally:
        run.kill_all()
    assert bad_codes == {"stranger": 1, "client7": 1}
    assert codes == {"coordinator": 0, "helper0": 0, "client0": 0, "stranger": 1, "client7": 1}
    for name in run.procs:
        assert "Traceback" not in run.log(name), run.log(name)
    named = {  # process -> (when the client first tried, when each side named the failure)
        "stranger": ("stranger", "the server refused this client's key",
                     f"refused a connection from an unknown key {stranger}"),
        "client7": ("client7", "the server's key is not the expected one",
                    "a CURVE handshake failed: a peer did not encrypt for this server's key "
                    "(its --server-key is wrong)")}
    for client, (name, client_text, coordinator_text) in named.items():
        tried = _when(run, name, "registering with")
        assert (_when(run, name, client_text) - tried).total_seconds() <= NAMED_WITHIN_S
        assert (_when(run, "coordinator", coordinator_text) - tried).total_seconds() <= NAMED_WITHIN_S
        assert f"edgepsl client: error: {name}: " in run.log(name)
    assert "allow it there (edgepsl keys allow stranger KEY" in run.log("stranger")
    assert f"allow it (edgepsl keys allow NAME {stranger})" in run.log("coordinator")
