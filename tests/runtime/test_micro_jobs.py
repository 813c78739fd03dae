"""A helper's micro-batch jobs over real sockets: a duplicated micro-batch is run once, a resend under its id is
answered again, a lost one's client is cancelled with its remaining micro-batches, and part-2 takes one optimizer step
per round over the summed micro-batch gradients."""
from __future__ import annotations

import time

import numpy as np
import pytest

from edgepsl.plan.pure.constants import RULE_TAIL
from edgepsl.runtime import state
from edgepsl.runtime.channels import channel_config
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.helper import Helper, HelperOptions, RoundSchedule, Serving
from edgepsl.runtime.helper_models import HelperModels
from edgepsl.runtime.microbatch import GradientSum, micro_slices
from edgepsl.runtime.modes import PART2
from edgepsl.runtime.protocol import (BWD, FWD, Activations, CancelJobs, CutShapes, ErrorReply, ForwardJob, GradBack,
                                      Gradients, HelperRoundStart, RuntimeCode)
from edgepsl.segment import Segment, load_manifest
from edgepsl.wire import Envelope, JobId, MsgType, PeerChannel, ServerChannel

CONFIG = RunConfig(batch_size=8, fallback_rule="tail")
MANIFEST = load_manifest(CONFIG.artifact)
CUTS = CutShapes.of(MANIFEST, CONFIG.batch_size)
# client0 splits its batch into 2 micro-batches, client1 does not
START = HelperRoundStart(
    clients=["client0", "client1"], duration_ms=[[1.0, 1.0], [2.0, 2.0]], priority=[[1.0, 1.0], [1.0, 1.0]],
    bandwidth_mbps=[None, None], memory_mb=[1.0, 1.0],
    order=[[0, FWD], [0, FWD], [1, FWD], [0, BWD], [0, BWD], [1, BWD]], planned_start_ms=[0.0] * 6, t0_ms=0.0,
    token=17, micro_batches=[2, 1])


@pytest.fixture
def served():
    """A real Helper serving on 127.0.0.1 (insecure; its coordinator channel unconnected) and client0's channel."""
    role = Helper(HelperOptions("helper0", "tcp://127.0.0.1:9"))
    role.serving = Serving(CONFIG, MANIFEST, {"part2_fwd": 1.0, "part2_bwd": 1.0}, CUTS,
                           state.shapes({PART2: Segment(MANIFEST, "part2")}), RULE_TAIL, {})
    role.models = HelperModels(MANIFEST, CONFIG)
    role.server = ServerChannel("tcp://127.0.0.1:*", insecure=True, config=channel_config())
    client = PeerChannel(role.server.endpoint, "client0", insecure=True, config=channel_config())
    yield role, client
    client.close()
    role.server.close()
    role.pacer.close()
    role.link.channel.close()
    role.trace.close()


def _x(k: int, n: int) -> np.ndarray:
    rows = micro_slices(CONFIG.batch_size, n)[k]
    rng = np.random.default_rng(k)
    return rng.standard_normal((rows.stop - rows.start, *CUTS.act.shape[1:])).astype(np.float32)


def _until(helper: Helper, plan: RoundSchedule, ready: dict, done, what: str) -> None:
    """Let the helper receive until done() holds (bounded: 5 s)."""
    deadline = time.monotonic() + 5.0
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        helper._receive(0.05, plan, ready, 0.0)


def _reply(client: PeerChannel, kind: MsgType, helper: Helper, plan: RoundSchedule, ready: dict) -> Envelope:
    """The next message of this type the client receives (others skipped, a refusal fails) while the helper
    receives too (bounded: 5 s)."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        helper._receive(0.02, plan, ready, 0.0)
        item = client.recv(timeout=0.05)
        if isinstance(item, Envelope) and item.message.type is kind:
            return item
        assert not (isinstance(item, Envelope) and item.message.type is MsgType.ERROR), "unexpected refusal"
    raise AssertionError(f"no {kind.value} within 5 s")


def _run_next(helper: Helper, plan: RoundSchedule, ready: dict) -> None:
    job, _ = helper._choose(plan, ready, 1e9)
    assert helper._execute(job, plan, ready, 0.0, True) is not None


def test_a_duplicated_micro_batch_runs_once_and_a_resend_by_id_is_answered_again(served):
    helper, client = served
    plan, ready = RoundSchedule(0, "run", START), {}
    first = ForwardJob(17, micro=0, tensor=_x(0, 2)).encode(JobId("run", 0, "client0", 1))
    client.send(first)
    _until(helper, plan, ready, lambda: (0, FWD) in ready, "micro-batch 0")
    client.send(ForwardJob(17, micro=0, tensor=_x(0, 2)).encode(JobId("run", 0, "client0", 2)))  # same k, new id
    refusal = _reply(client, MsgType.ERROR, helper, plan, ready)
    assert "(micro-batch 0) was already received" in ErrorReply.decode(refusal.message).reason
    _run_next(helper, plan, ready)
    got = Activations.decode(_reply(client, MsgType.ACTIVATIONS, helper, plan, ready).message, cuts=CUTS.micro(0, 2))
    assert got.tensor.shape[0] == 4 and plan.done[0, FWD] and not plan.done[1, FWD]
    # had the reply not reached the client, the helper keeps it; a resend under the same id is dropped by the wire
    # (never run twice) and the kept reply is sent again
    helper.undelivered["client0"] = {first.job: Activations(tensor=got.tensor).encode(first.job)}
    client.send(first)
    _until(helper, plan, ready, lambda: "client0" not in helper.undelivered, "the reply sent again")
    assert helper._part("client0").part2.pending_jobs == [(0, 0)]  # micro-batch 0's forward ran once


def test_part2_steps_once_per_round_on_the_micro_batch_gradients_summed(served):
    helper, client = served
    plan, ready = RoundSchedule(0, "run", START), {}
    model = helper._part("client0")
    segment, optimizer = model.part2, model.opt2
    reference = Segment(MANIFEST, "part2")
    reference.set_state(segment.get_state())
    for k in range(2):
        client.send(ForwardJob(17, micro=k, tensor=_x(k, 2)).encode(JobId("run", 0, "client0", 10 + k)))
    _until(helper, plan, ready, lambda: (1, FWD) in ready, "both forward micro-batches")
    _run_next(helper, plan, ready)
    _run_next(helper, plan, ready)
    grads = [np.full(CUTS.micro(k, 2).out.shape, 0.5 + k, np.float32) for k in range(2)]
    for k in range(2):
        client.send(Gradients(17, micro=k, tensor=grads[k]).encode(JobId("run", 0, "client0", 20 + k)))
    _until(helper, plan, ready, lambda: (1, BWD) in ready, "both backward micro-batches")
    _run_next(helper, plan, ready)
    assert optimizer.steps == 0  # one of two micro-batch gradients is in
    _run_next(helper, plan, ready)
    assert optimizer.steps == 1 and segment.pending_jobs == []
    backs = [GradBack.decode(_reply(client, MsgType.GRAD_BACK, helper, plan, ready).message, cuts=CUTS.micro(k, 2))
             for k in range(2)]
    assert [b.tensor.shape[0] for b in backs] == [4, 4]
    total = GradientSum(2)
    for k in range(2):
        reference.forward(k, _x(k, 2))
    for k in range(2):
        summed = total.add(reference.backward(k, grads[k]).grads)
    expected_opt = state.make_optimizer(CONFIG, reference.params)
    expected_opt.lr = optimizer.lr
    expected_opt.step(summed)
    for name, value in reference.params.items():
        np.testing.assert_allclose(segment.params[name], value, rtol=1e-6, atol=1e-7)


def test_a_lost_micro_batch_cancels_its_client_remaining_jobs_and_a_late_one_is_refused(served):
    helper, client = served
    plan, ready = RoundSchedule(0, "run", START), {}
    client.send(ForwardJob(17, micro=0, tensor=_x(0, 2)).encode(JobId("run", 0, "client0", 1)))
    _until(helper, plan, ready, lambda: (0, FWD) in ready, "micro-batch 0")
    _run_next(helper, plan, ready)
    _reply(client, MsgType.ACTIVATIONS, helper, plan, ready)
    # micro-batch 1 is lost; the coordinator closes the round without client0
    cancel = CancelJobs(0, ["client0"]).encode(JobId("run", 0, "coordinator", 1))
    cancel.meta["phase"] = CancelJobs.PHASE
    helper._cancel(Envelope("coordinator", cancel), plan, ready)
    assert plan.done[:2].all() and not plan.done[2].any()  # client0's two slots are done, client1's wait
    assert plan.planned_next() == (2, FWD) and plan.missing() == ["client1:fwd", "client1:bwd"]
    assert helper._part("client0").part2.pending_jobs == [] and plan.grads[0].added == 0
    client.send(ForwardJob(17, micro=1, tensor=_x(1, 2)).encode(JobId("run", 0, "client0", 2)))
    refusal = _reply(client, MsgType.ERROR, helper, plan, ready)
    assert ErrorReply.decode(refusal.message).code == RuntimeCode.CANCELLED
    assert (1, FWD) not in ready
