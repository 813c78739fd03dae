"""A peer with an allowed key that never reads its replies: the coordinator waits for it once (one send_timeout_s),
then drops its refusals without waiting, and the run trains exactly as an undisturbed one. The round times themselves
are measured by tools/bench_backpressure.py (bench-results/backpressure.json)."""
from __future__ import annotations

import logging

from tests.runtime.conftest import small_run
from tools.bench_backpressure import Counts, Intruder, disturbed_run, with_intruder_key

LEARNING = ("round", "loss", "client_loss", "accuracy")
RUN_S = 120.0  # generous: the run takes a few seconds; blocking once per refusal would take the burst's size in s


def test_a_peer_that_never_reads_costs_the_coordinator_one_wait_and_the_run_trains_as_usual(reference_run, tmp_path):
    run_dir = tmp_path / "run"
    intruder = Intruder(with_intruder_key(run_dir))
    counts = Counts()
    logging.getLogger().addHandler(counts)
    try:
        summary, round_s = disturbed_run(small_run(run_dir, clients=3, helpers=2), intruder)
    finally:
        logging.getLogger().removeHandler(counts)
    assert [{k: m[k] for k in LEARNING if k in m} for m in summary.records] == \
        [{k: m[k] for k in LEARNING if k in m} for m in reference_run.records]
    assert intruder.sent >= counts.refused > 0
    assert counts.dropped > 0, f"its queue never filled ({intruder.sent} sent, {counts.refused} refused)"
    assert counts.blocked == 1  # one send_timeout_s in all; every later refusal was dropped without waiting
    assert sum(round_s) < RUN_S
