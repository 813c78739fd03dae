"""Lifecycle of the standalone commands as processes: signals, early roles, a role's start-up error, a restarted
coordinator, a diverging run. Every process is ended by PID; every wait is bounded."""
from __future__ import annotations

import json
import math
import re
import signal
import time

import pytest

from tests.runtime.conftest import SMALL
from tests.runtime.processes import EXIT_S, CommandRun

RUN_S = 120.0
LIVENESS_S = 4.0  # a role notices a silent coordinator after 3 s (the wire's heartbeat_s * liveness)
ENDLESS = SMALL.replace(clients=2, helpers=1, rounds=400, aggregate_every=5, eval_every=10)
LEARNING = ("round", "loss", "client_loss", "accuracy")


def _metrics(run: CommandRun) -> list[dict]:
    return [json.loads(line) for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()]


def _no_tracebacks(run: CommandRun) -> None:
    for name in run.procs:
        assert "Traceback" not in run.log(name), run.log(name)


@pytest.mark.parametrize("target,sig", [("coordinator", signal.SIGINT), ("helper0", signal.SIGINT),
                                        ("client0", signal.SIGINT), ("coordinator", signal.SIGTERM)])
def test_a_signal_to_one_process_ends_every_process_within_10_s(tmp_path, target, sig):
    run = CommandRun(tmp_path, ENDLESS)
    try:
        run.coordinator()
        run.roles()
        run.wait_round(2)
        run.procs[target].send_signal(sig)
        codes = run.wait_all(EXIT_S)
    finally:
        run.kill_all()
    expected = {name: 0 for name in run.procs}  # roles leave on the coordinator's bye with status 0
    expected["coordinator"] = 1  # the run was aborted by a role that left
    expected[target] = 128 + sig
    assert codes == expected
    _no_tracebacks(run)
    assert f"stopped by {sig.name}" in run.log(target)
    if target != "coordinator":
        assert f"{target} left the run: {target} was stopped by a signal" in run.log("coordinator")
    assert len(_metrics(run)) >= 3 and (run.run_dir / "curves.png").is_file()


def test_roles_started_5_s_before_the_coordinator_register_and_train(tmp_path):
    run = CommandRun(tmp_path, SMALL.replace(clients=2, helpers=1, rounds=4, aggregate_every=2, eval_every=4))
    try:
        run.roles()
        time.sleep(5.0)
        run.coordinator()
        codes = run.wait_all(RUN_S)
    finally:
        run.kill_all()
    assert codes == {name: 0 for name in run.procs}
    assert [m["round"] for m in _metrics(run)] == [0, 1, 2, 3]
    _no_tracebacks(run)


def test_a_role_start_up_error_reaches_the_coordinator_and_ends_the_run(tmp_path):
    run = CommandRun(tmp_path, SMALL.replace(clients=2, helpers=1))
    try:
        run.coordinator()
        run.role("helper0", "--device", "nosuch")
        run.role("client0")
        run.role("client1")
        codes = run.wait_all(RUN_S)
    finally:
        run.kill_all()
    assert codes == {"coordinator": 1, "helper0": 1, "client0": 0, "client1": 0}
    assert "helper0: ROLE_FAILED: helper0 failed: unknown emulated device 'nosuch'" in run.log("coordinator")
    assert "the coordinator said bye: run aborted: helper0" in run.log("client0")


def test_a_resumed_coordinator_continues_with_the_roles_that_kept_running(reference_run, tmp_path):
    run = CommandRun(tmp_path, SMALL.replace(clients=3, helpers=2))  # the reference run's configuration
    try:
        run.coordinator()
        run.roles()
        run.wait_round(4)  # the checkpoint of round 4 is written before its metrics line
        run.procs["coordinator"].kill()
        run.procs["coordinator"].wait()
        roles = {name: proc for name, proc in run.procs.items() if name != "coordinator"}
        time.sleep(LIVENESS_S)
        assert all(proc.poll() is None for proc in roles.values())
        run.coordinator("--resume", name="coordinator2")
        codes = run.wait_all(RUN_S)
    finally:
        run.kill_all()
    assert codes == {"coordinator": -signal.SIGKILL, **{name: 0 for name in roles}, "coordinator2": 0}
    assert set(run.procs) == {"coordinator", "coordinator2", *roles}  # no role was restarted
    for name in roles:
        assert "the coordinator is back; registering again" in run.log(name)
    learned = [{k: m[k] for k in LEARNING if k in m} for m in _metrics(run)]
    assert learned == [{k: m[k] for k in LEARNING if k in m} for m in reference_run.records]


def test_a_diverging_run_stops_naming_the_round_and_keeps_its_metrics(tmp_path):
    run = CommandRun(tmp_path, SMALL.replace(clients=2, helpers=1, lr=100.0, rounds=20, aggregate_every=5,
                                             eval_every=10))
    try:
        run.coordinator()
        run.roles()
        codes = run.wait_all(RUN_S)
    finally:
        run.kill_all()
    assert codes == {name: 0 if name != "coordinator" else 1 for name in run.procs}
    found = re.search(r"error: training diverged at round (\d+): client\d: ", run.log("coordinator"))
    assert found, run.log("coordinator")
    metrics = _metrics(run)
    assert [m["round"] for m in metrics] == list(range(int(found.group(1))))
    assert all(math.isfinite(m["loss"]) for m in metrics)
    assert (run.run_dir / "curves.png").is_file()
    _no_tracebacks(run)


def test_roles_leave_on_the_bye_of_a_coordinator_whose_registration_timed_out(tmp_path):
    run = CommandRun(tmp_path, SMALL.replace(clients=2, helpers=1, register_timeout_s=3.0))
    try:
        run.coordinator()
        run.role("helper0")
        run.role("client0")  # client1 never comes
        codes = run.wait_all(RUN_S)
    finally:
        run.kill_all()
    assert codes == {"coordinator": 1, "helper0": 0, "client0": 0}
    assert "timed out after 3 s waiting for registrations (2 of 3)" in run.log("coordinator")
    for name in ("helper0", "client0"):
        assert "the coordinator said bye: run aborted: timed out" in run.log(name)
