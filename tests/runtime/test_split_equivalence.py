"""1 client + 1 helper over real processes and sockets trains exactly like the same segments in one process."""
from __future__ import annotations

import json

import numpy as np

from edgepsl.runtime import checkpoint, state
from edgepsl.runtime.dataset import client_data
from edgepsl.runtime.launch import run_local
from edgepsl.segment import Segment, load_manifest
from tests.runtime.conftest import small_run


def _single_process(config, rounds: int) -> tuple[list[float], dict[str, dict[str, np.ndarray]]]:
    """Train the three segments in this process on the client's batches; (losses per round, final states)."""
    manifest = load_manifest(config.artifact)
    p1, p2, p3 = (Segment(manifest, name, threads=1) for name in ("part1", "part2", "part3"))
    o1, o2, o3 = (state.make_optimizer(config, s.params) for s in (p1, p2, p3))
    data = client_data(config, 0)
    losses = []
    for r in range(rounds):
        x, y = data.batch(r)
        result = p3.train_step(p2.forward(r, p1.forward(r, x)), y)
        o3.step(result.grads)
        back = p2.backward(r, result.grad_in)
        o2.step(back.grads)
        o1.step(p1.backward(r, back.grad_in).grads)
        losses.append(result.loss)
    return losses, {s.name: s.get_state() for s in (p1, p2, p3)}


def test_split_training_equals_single_process(tmp_path):
    run = small_run(tmp_path / "run", clients=1, helpers=1, rounds=8, aggregate_every=4, eval_every=8)
    summary = run_local(run)
    assert summary.rounds_done == 8
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    distributed = [m["client_loss"]["client0"] for m in records]
    losses, states = _single_process(run.config, 8)
    assert distributed == losses
    saved = checkpoint.load(tmp_path / "run" / "checkpoint")
    assert saved.round == 7
    for name, expected in states.items():
        got = state.unpack(saved.model, name + "/")[0]
        assert set(got) == set(expected)
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=f"{name} {key}")
