"""Elastic rounds on 127.0.0.1 (roles as processes, faults applied by PID): a client killed (-9) or paused (SIGSTOP)
beyond peer_timeout_s is closed out of its round, training goes on with the survivors, and a paused client rejoins
at the next aggregation boundary; clients and helpers that register during the run join at the next one."""
from __future__ import annotations

import dataclasses
import json

import pytest

from edgepsl.runtime.faults import Fault, FaultSpecError, parse_faults
from edgepsl.runtime.launch import run_local
from tests.runtime.conftest import small_run

# replan_threshold: membership alone changes these runs' plans (drift re-planning has its own test below)
ELASTIC = dict(clients=2, helpers=1, rounds=8, aggregate_every=2, eval_every=8, train_samples=400,
               test_samples=200, peer_timeout_s=2.0, replan_threshold=1e9)


ROUNDS = 80  # rounds take milliseconds: enough of them (and of averagings) to outlast the pause


def _run(tmp_path, faults: str, **changes):
    run = small_run(tmp_path / "run", **{**ELASTIC, **changes})
    return run_local(dataclasses.replace(run, faults=parse_faults(faults)))


def test_a_killed_client_is_closed_out_and_training_goes_on(tmp_path):
    summary = _run(tmp_path, "kill:client1@3")
    records = summary.records
    assert [m["round"] for m in records] == list(range(8))
    assert all(m["members"] == ["client0", "client1"] and not m["partial"] for m in records[:3])
    assert records[3]["members"] == ["client0"] and records[3]["lost"] == ["client1"] and records[3]["partial"]
    for m in records[4:]:
        assert m["members"] == ["client0"] and m["absent"] == ["client1"]
    assert records[-1]["averaged"] == ["client0"]
    assert summary.accuracy is not None and summary.accuracy > 0.1


def test_a_client_paused_beyond_peer_timeout_is_lost_then_rejoins(tmp_path):
    summary = _run(tmp_path, "stop:client1@2:3s", rounds=ROUNDS, aggregate_every=5, eval_every=ROUNDS)
    records = summary.records
    assert [m["round"] for m in records] == list(range(ROUNDS))
    assert records[2]["members"] == ["client0"] and records[2]["lost"] == ["client1"]
    back = [m["round"] for m in records[3:] if m["members"] == ["client0", "client1"]]
    assert back, "the paused client never rejoined"
    assert back[0] % 5 == 0  # it rejoins right after an aggregation boundary (every 5 rounds)
    assert all(m["members"] == ["client0", "client1"] for m in records[-10:])
    assert records[-1]["averaged"] == ["client0", "client1"]


def test_fault_specs_are_parsed_with_clear_errors():
    assert parse_faults("kill:client3@40,stop:client1@60:10s, kill:helper1@80") == [
        Fault("kill", "client3", 40), Fault("stop", "client1", 60, 10.0), Fault("kill", "helper1", 80)]
    assert parse_faults("join:helper3@3,join:client4@2") == [Fault("join", "client4", 2), Fault("join", "helper3", 3)]
    for bad, words in (("kill:client3", "ACTION:ROLE@ROUND"),
                       ("nuke:client1@3", "unknown action"),
                       ("stop:client1@3", "needs a duration"), ("kill:client1@3:2s", "takes no duration"),
                       ("kill:server@3", "clientN or helperN")):
        with pytest.raises(FaultSpecError, match=words):
            parse_faults(bad)


def test_a_killed_helper_has_its_clients_replanned_onto_the_survivor(tmp_path):
    summary = _run(tmp_path, "kill:helper1@3", helpers=2)
    records = summary.records
    assert [m["round"] for m in records] == list(range(8))
    assert all(m["plan_version"] == 0 and not m["lost_helpers"] for m in records[:3])
    hit = records[3]
    assert hit["lost_helpers"] == ["helper1"] and hit["replanned_to"] == 1
    assert hit["members"] == ["client0", "client1"]  # the lost helper's clients re-ran the round on helper0
    for m in records[4:]:
        assert m["plan_version"] == 1 and m["members"] == ["client0", "client1"] and not m["partial"]
    plans = json.loads((summary.run_dir / "plans" / "v1.json").read_text())
    assert plans["round"] == 3 and plans["instance"]["helper_names"] == ["helper0"]
    assert json.loads((summary.run_dir / "plans" / "v0.json").read_text())["round"] == 0


def test_a_client_that_registers_during_the_run_joins_at_an_aggregation_boundary(tmp_path):
    summary = _run(tmp_path, "join:client2@2", rounds=ROUNDS, aggregate_every=5, eval_every=ROUNDS)
    records = summary.records
    assert [m["round"] for m in records] == list(range(ROUNDS))
    boundary = next(m for m in records if m.get("joined"))
    assert boundary["joined"] == ["client2"] and boundary["round"] % 5 == 4
    after = records[boundary["round"] + 1]
    assert after["members"] == ["client0", "client1", "client2"] and after["plan_version"] == 1
    assert all(m["members"] == ["client0", "client1"] for m in records[:boundary["round"] + 1])
    assert records[-1]["averaged"] == ["client0", "client1", "client2"]
    version = json.loads((summary.run_dir / "plans" / "v1.json").read_text())
    assert version["round"] == boundary["round"] + 1 and version["instance"]["client_names"][-1] == "client2"


def test_a_helper_that_registers_during_the_run_joins_and_takes_clients(tmp_path):
    """Two clients on one helper; helper1 starts at round 2 and joins at the next aggregation boundary: the clients'
    links to it are probed, the warm-started re-plan moves a client onto it (with the client's averaged part-2), and
    it runs that client's jobs from then on."""
    summary = _run(tmp_path, "join:helper1@2", rounds=ROUNDS, aggregate_every=5, eval_every=ROUNDS)
    records = summary.records
    assert [m["round"] for m in records] == list(range(ROUNDS))
    assert all(m["members"] == ["client0", "client1"] and not m["partial"] for m in records)
    boundary = next(m for m in records if m.get("joined"))
    assert boundary["joined"] == ["helper1"] and boundary["round"] % 5 == 4
    version = json.loads((summary.run_dir / "plans" / "v1.json").read_text())
    assert version["round"] == boundary["round"] + 1 and version["instance"]["helper_names"] == ["helper0", "helper1"]
    assert 1 in version["plan"]["assignment"], version["plan"]
    assert all(m["plan_version"] >= 1 for m in records[boundary["round"] + 1:])
    trace = [json.loads(line) for line in (summary.run_dir / "traces" / "helper1.jsonl").read_text().splitlines()]
    served = {e["round"] for e in trace if e["ev"] == "job_end"}
    assert served and min(served) == boundary["round"] + 1 and max(served) == ROUNDS - 1
    links = {(row["client"], row["helper"]): row["source"]
             for row in json.loads((summary.run_dir / "links.json").read_text())["links"]}
    assert set(links) == {(c, h) for c in ("client0", "client1") for h in ("helper0", "helper1")}
    assert links[("client0", "helper1")] == links[("client0", "helper0")]  # probed like the start-up links
    assert any(job["helper"] == "helper1" for m in records[boundary["round"] + 1:] for job in m["jobs"])
    assert summary.accuracy is not None and summary.accuracy > 0.1


def test_a_straggler_is_dropped_from_its_round_without_being_disconnected(tmp_path):
    summary = _run(tmp_path, "stop:client1@3:1s", rounds=40, aggregate_every=5, eval_every=40,
                   straggler_policy="drop", straggler_slack=0.0, straggler_grace_ms=300.0)
    records = summary.records
    assert [m["round"] for m in records] == list(range(40))
    # client1 is dropped; client0 too when its helper queued its jobs behind client1's (plan order)
    assert "client1" in records[3]["dropped"] and "client1" not in records[3]["members"]
    assert not any(m["lost"] for m in records)  # paused for less than peer_timeout_s: never declared lost
    assert all(m["members"] == ["client0", "client1"] for m in records[-5:])


def test_a_drifting_round_time_replans_from_the_estimates_at_an_aggregation_boundary(tmp_path):
    """client0 paused for 0.6 s (below peer_timeout_s) in rounds 2 and 3: two rounds far above the plan fire the
    drift monitor, and the coordinator re-plans from its smoothed estimates after the next averaging."""
    summary = _run(tmp_path, "stop:client0@2:0.6s,stop:client0@3:0.6s", replan_threshold=0.10)
    records = summary.records
    assert [m["round"] for m in records] == list(range(8))
    assert all(m["members"] == ["client0", "client1"] and not m["partial"] for m in records)
    versions = [json.loads(p.read_text()) for p in sorted((summary.run_dir / "plans").glob("v*.json"))]
    drift = [v for v in versions if v["reason"].startswith("drift")]
    assert drift, [v["reason"] for v in versions]
    for v in drift:
        assert v["round"] % 2 == 0 and v["instance"]["meta"]["estimated_rounds"] >= 2
        assert records[v["round"] - 1]["replanned_to"] == v["version"]
        assert all(m["plan_version"] >= v["version"] for m in records[v["round"]:])
