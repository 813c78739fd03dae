"""The helper's round schedule as arrays indexed by client position, and its bounded buffer of early jobs."""
from __future__ import annotations

import numpy as np

from edgepsl.plan.pure.constants import RULE_FCFS, RULE_TAIL
from edgepsl.runtime.helper import EarlyJobs, RoundSchedule
from edgepsl.runtime.protocol import BWD, FWD, HelperRoundStart
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
