"""The helper's round schedule as arrays indexed by client position, and its bounded buffer of early jobs."""
from __future__ import annotations

import numpy as np
import pytest

from edgepsl.plan import pure
from edgepsl.plan.backend import Kernels, kernels
from edgepsl.plan.pure.constants import RULE_FCFS, RULE_TAIL
from edgepsl.runtime import helper as helper_module
from edgepsl.runtime import state
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.helper import EarlyJobs, Helper, HelperOptions, Job, RoundSchedule, Serving
from edgepsl.runtime.modes import PART2
from edgepsl.runtime.protocol import BWD, FWD, CutShapes, HelperRoundStart
from edgepsl.segment import Segment, load_manifest
from edgepsl.wire import Envelope, JobId, Message, MsgType

START = HelperRoundStart(
    clients=["client0", "client1", "client2"], duration_ms=[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
    priority=[[10.0, 1.0], [30.0, 3.0], [20.0, 2.0]], bandwidth_mbps=[None, 5.0, None], memory_mb=[1.0, 2.0, 3.0],
    order=[[1, FWD], [0, FWD], [1, BWD], [2, FWD], [0, BWD], [2, BWD]], planned_start_ms=[0, 3, 4, 8, 13, 15],
    t0_ms=0.0, token=17)


def test_the_schedule_follows_the_order_and_skips_jobs_done_out_of_order():
    plan = RoundSchedule(4, "run", START)
    assert plan.position == {"client0": 0, "client1": 1, "client2": 2} and plan.memory_mb == 6.0
    assert plan.duration[2, BWD] == 6.0 and plan.priority[1, FWD] == 30.0
    assert plan.planned_next() == (1, FWD) and plan.planned_start[plan.next] == 0.0
    plan.mark_done(0, FWD)  # out of order: the pointer stays on the plan's next job
    assert plan.planned_next() == (1, FWD)
    plan.mark_done(1, FWD)  # now both of the first two are done
    assert plan.planned_next() == (1, BWD)
    assert plan.missing() == ["client1:bwd", "client2:fwd", "client0:bwd", "client2:bwd"]
    for position, kind in ((1, BWD), (2, FWD), (0, BWD), (2, BWD)):
        plan.mark_done(position, kind)
    assert plan.finished and plan.missing() == []


def test_the_fallback_pick_works_on_the_arrived_jobs_only():
    plan = RoundSchedule(0, "run", START)
    for (position, kind), arrival in {(2, FWD): 5.0, (0, FWD): 7.0, (1, FWD): 6.0}.items():
        plan.ready[position, kind] = True
        plan.arrival[position, kind] = arrival
    assert plan.pick(10.0, RULE_FCFS) == (2, FWD)  # earliest arrival
    assert plan.pick(10.0, RULE_TAIL) == (1, FWD)  # largest forward priority
    assert plan.pick(5.5, RULE_TAIL) == (2, FWD)  # the only job released by then
    plan.ready[1, FWD] = False
    assert plan.pick(10.0, RULE_TAIL) == (2, FWD)


def _job(nbytes: int, seq: int, peer: str = "mallory") -> Envelope:
    return Envelope(peer, Message(MsgType.FORWARD, JobId("run", 1, peer, seq), {"x": np.zeros(nbytes, np.uint8)}))


def test_early_jobs_are_bounded_per_sender_in_messages_and_bytes():
    early = EarlyJobs()
    assert all(early.offer(_job(100, k), 3, 10_000) is None for k in range(3))
    assert "holds 3 messages (300 bytes) of mallory" in early.offer(_job(100, 3), 3, 10_000)
    assert early.offer(_job(100, 0, "client0"), 3, 10_000) is None  # another sender has its own bound
    kept = early.take()
    assert len(kept) == 4 and early.held == {}
    assert early.offer(_job(6_000, 4), 3, 10_000) is None
    assert "6000 bytes" in early.offer(_job(6_000, 5), 3, 10_000)


@pytest.fixture(scope="module")
def helper():
    """A real Helper (its coordinator channel unconnected) serving with the tail rule; closed after the test."""
    config = RunConfig(fallback_rule="tail")
    manifest = load_manifest(config.artifact)
    role = Helper(HelperOptions("helper0", "tcp://127.0.0.1:9"))
    role.serving = Serving(config, manifest, {}, CutShapes.of(manifest, config.batch_size),
                           state.shapes({PART2: Segment(manifest, "part2")}), RULE_TAIL, {})
    yield role
    role.pacer.close()
    role.link.channel.close()
    role.trace.close()


def _arrive(plan: RoundSchedule, ready: dict, position: int, kind: int, at: float) -> None:
    plan.ready[position, kind] = True
    plan.arrival[position, kind] = at
    ready[(position, kind)] = Job(position, kind, _job(8, 10 * position + kind, f"client{position}"),
                                  np.zeros(1), at)


def test_a_late_planned_job_does_not_hold_back_an_arrived_one(helper):
    plan, ready = RoundSchedule(0, "run", START), {}
    _arrive(plan, ready, 0, FWD, 1.0)  # client1's forward (planned first, at 0 ms) has not arrived
    job, planned = helper._choose(plan, ready, 2.0)
    # late by 2 ms, client1's forward is expected at 4 ms; client0's forward ends at 3 ms, before it: it runs
    assert (job.position, job.kind, planned) == (0, FWD, False) and plan.resequenced == 1
    assert plan.planned_next() == (0, FWD) and plan.planned_start[0] == 2.0


def test_before_its_planned_start_the_planned_job_is_not_delayed_and_once_arrived_it_runs_first(helper):
    plan, ready = RoundSchedule(0, "run", START), {}
    _arrive(plan, ready, 1, FWD, 0.0)
    job, planned = helper._choose(plan, ready, 0.0)
    assert (job.position, planned) == (1, True)
    plan.mark_done(1, FWD)  # next: client0's forward, planned at 3 ms
    _arrive(plan, ready, 2, FWD, 0.5)
    assert helper._choose(plan, ready, 1.0) is None  # 5 ms of client2 would delay it past 3 ms: wait
    assert plan.wait_ms(1.0) == 2.0 and plan.resequenced == 0
    _arrive(plan, ready, 0, FWD, 1.5)
    job, planned = helper._choose(plan, ready, 1.5)  # arrived: the planned job runs, not the other
    assert (job.position, job.kind, planned) == (0, FWD, True) and plan.resequenced == 0


def test_the_queue_after_re_sequencing_is_the_kernels_online_dispatch(helper):
    plan, ready = RoundSchedule(0, "run", START), {}
    _arrive(plan, ready, 0, FWD, 1.0)
    _arrive(plan, ready, 2, FWD, 1.5)
    job, planned = helper._choose(plan, ready, 2.0)
    # At 2 ms client1's forward (priority 30, due at 0) is expected at 4 (as late again). The tail rule prefers
    # client2's forward (20, 5 ms) among the arrived jobs, but it would run past 4 where the rule prefers
    # client1's: client0's forward (1 ms) fits and starts at 2; nothing else fits, so the queue idles to 4 for
    # client1's forward; then client2's forward at 7 (ends 12, before client0's backward is due at 13), client1's
    # backward at 12 (the rule still prefers it at 13), client2's backward (2) at 16, client0's (1) at 22.
    assert (job.position, job.kind, planned) == (0, FWD, False)
    assert list(zip(plan.order_position.tolist(), plan.order_kind.tolist())) == [
        (0, FWD), (1, FWD), (2, FWD), (1, BWD), (2, BWD), (0, BWD)]
    np.testing.assert_allclose(plan.planned_start, [2.0, 4.0, 7.0, 12.0, 16.0, 22.0])
    plan.mark_done(0, FWD)
    assert plan.planned_next() == (1, FWD) and plan.missing()[0] == "client1:fwd"
    assert helper._choose(plan, ready, 3.5) is None  # client2's 5 ms would delay client1's, expected at 4: wait
    assert plan.wait_ms(3.5) == 0.5
    # still missing at 4.5, client1's forward is expected at 9: client2's would end at 9.5, so the helper waits
    assert helper._choose(plan, ready, 4.5) is None
    assert plan.resequenced == 2 and plan.planned_start[plan.next] == 9.0 and plan.wait_ms(4.5) == 4.5
    job, planned = helper._choose(plan, ready, 9.5)  # late by 9.5, expected at 19: client2's forward runs now
    assert (job.position, job.kind, planned) == (2, FWD, False) and plan.resequenced == 3
    assert plan.planned_next() == (2, FWD) and plan.planned_start[plan.next] == 9.5


def test_re_sequencing_is_the_same_on_the_compiled_kernels_and_the_pure_twin(monkeypatch):
    orders = []
    for backend in (kernels, Kernels(pure)):
        monkeypatch.setattr(helper_module, "kernels", backend)
        plan = RoundSchedule(0, "run", START)
        for position, at in ((0, 1.0), (2, 1.5)):
            plan.ready[position, FWD], plan.arrival[position, FWD] = True, at
        plan.resequence(2.0, RULE_TAIL)
        orders.append((plan.order_position.tolist(), plan.order_kind.tolist(), plan.planned_start.tolist()))
    assert orders[0] == orders[1]
