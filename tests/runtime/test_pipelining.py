"""Micro-batch pipelining over real processes: a round split into N micro-batches updates the model as the whole batch
does (gradients summed, loss scaled by each micro-batch's share, one optimizer step per part and round)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np

from edgepsl.runtime import checkpoint
from edgepsl.runtime.launch import run_local
from tests.runtime.conftest import small_run

ROUNDS = 10


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
