"""Micro-batch pipelining over real processes: a round split into N micro-batches updates the model as the whole batch
does (gradients summed, loss scaled by each micro-batch's share, one optimizer step per part and round)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from edgepsl.plan.profiles import transfer_ms
from edgepsl.runtime import checkpoint, planning
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.errors import RunConfigError
from edgepsl.runtime.launch import run_local
from edgepsl.runtime.links import Links, cut_bytes
from edgepsl.segment import load_manifest
from tests.runtime.conftest import small_run

ROUNDS = 10


def _instance(config: RunConfig):
    """The planning instance of 3 clients on 2 helpers with stated part times and 8 Mbps links of 2 ms latency."""
    clients, helpers = ["client0", "client1", "client2"], ["helper0", "helper1"]
    times = {"part1_fwd": 30.0, "part1_bwd": 40.0, "part3_fwd": 5.0, "part3_bwd": 6.0}
    links = Links(tuple(clients), tuple(helpers), np.full((3, 2), 2.0), np.full((3, 2), 8.0),
                  (("declared",) * 2,) * 3, {})
    return planning.build_instance(config, load_manifest(config.artifact), clients, helpers,
                                   {c: {"times": times} for c in clients},
                                   {h: {"times": {"part2_fwd": 20.0, "part2_bwd": 25.0}} for h in helpers}, links)


def test_a_run_plans_the_configured_micro_batches_with_stage_fields_of_its_links():
    piped = RunConfig(micro_batches="4")
    instance = _instance(piped)
    cut1 = cut_bytes(load_manifest(piped.artifact), "part1", piped.batch_size, False) / 1000.0
    np.testing.assert_allclose(instance.r_up, transfer_ms(cut1, 8.0) + 2.0)
    assert instance.o_link.tolist() == [[2.0, 2.0]] * 3 and instance.micro.tolist() == [4.0] * 3
    plan = planning.make_plan(piped, instance).plan
    assert plan.pipelined and plan.micro_batches.tolist() == [4, 4, 4]
    auto = planning.make_plan(RunConfig(micro_batches="auto"), _instance(RunConfig(micro_batches="auto"))).plan
    assert auto.meta["micro_batches"] == "auto" and "aps_micro" in auto.meta
    whole = _instance(RunConfig())
    assert not whole.staged and not planning.make_plan(RunConfig(), whole).plan.pipelined
    assert (RunConfig().max_micro_batches, piped.max_micro_batches, RunConfig(micro_batches="auto").max_micro_batches
            ) == (1, 4, 64)  # a helper's bound on early jobs per sender scales with it
    with pytest.raises(RunConfigError, match="does not plan micro-batches; choose one that does \\(greedy-ls, milp\\)"):
        RunConfig(method="balanced-greedy", micro_batches="4")
    with pytest.raises(RunConfigError, match="method 'hybrid' does not plan micro-batches"):
        RunConfig(method="hybrid", micro_batches="auto")
    for modes in ({"mode": "local-loss"}, {"local_loss_clients": ("client0",)}, {"labels": "helper"}):
        with pytest.raises(RunConfigError, match="pipelines the U-shaped SplitFed only"):
            RunConfig(micro_batches="4", **modes)


def _run(tmp_path, micro_batches: str):
    """LeNet-5 (the default artifact), K = 3, H = 2, batch 64, ROUNDS rounds at N = micro_batches."""
    run_dir = tmp_path / f"n{micro_batches}"
    run = small_run(run_dir, clients=3, helpers=2, rounds=ROUNDS, batch_size=64, aggregate_every=5,
                    eval_every=ROUNDS, train_samples=600, test_samples=200, micro_batches=micro_batches)
    summary = run_local(dataclasses.replace(run, secure=False))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return summary, records, checkpoint.load(run_dir / "checkpoint"), run_dir


def test_four_micro_batches_train_every_parameter_as_the_whole_batch(tmp_path):
    piped, piped_records, piped_ckpt, piped_dir = _run(tmp_path, "4")
    plan = json.loads((piped_dir / "plans" / "v0.json").read_text())["plan"]
    assert plan["version"] == 3 and plan["micro_batches"] == [4, 4, 4]
    assert piped.rounds_done == ROUNDS
    for record in piped_records:
        assert {job["micro_batches"] for job in record["jobs"]} == {4}
    helper_trace = [json.loads(line) for name in ("helper0", "helper1")
                    for line in (piped_dir / "traces" / f"{name}.jsonl").read_text().splitlines()]
    ran = [(e["client"], e["round"], e["kind"], e["micro"]) for e in helper_trace if e["ev"] == "job_end"]
    assert len(ran) == len(set(ran)) == ROUNDS * 3 * 2 * 4  # every micro-batch job of every round ran once
    whole, whole_records, whole_ckpt, whole_dir = _run(tmp_path, "1")
    assert json.loads((whole_dir / "plan.json").read_text())["version"] == 1
    np.testing.assert_allclose([r["loss"] for r in piped_records], [r["loss"] for r in whole_records], rtol=1e-5)
    assert set(piped_ckpt.model) == set(whole_ckpt.model) and piped_ckpt.round == whole_ckpt.round == ROUNDS - 1
    for name, expected in whole_ckpt.model.items():
        error = np.linalg.norm(piped_ckpt.model[name] - expected) / max(np.linalg.norm(expected), 1e-30)
        assert error <= 1e-5, f"{name}: relative L2 difference {error:.2e} at N = 4"
