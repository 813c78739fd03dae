"""Typed payloads: every message round-trips the wire, and each kind of malformed payload is refused by field name."""
from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest

from edgepsl.runtime import protocol as p
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.errors import NonFiniteError, PayloadError
from edgepsl.segment import load_manifest
from edgepsl.wire import JobId, Limits, Message, decode, encode

ROOT = Path(__file__).resolve().parents[2]
CONFIG = RunConfig(clients=2, helpers=1, batch_size=4)
CUTS = p.CutShapes.of(load_manifest(CONFIG.artifact), CONFIG.batch_size)
KEY = "k" * 40
TRANSFER = p.Transfer(1.0, 2.0, 0.0, 10, 20)
TIMES1 = {k: 1.0 for k in p.CLIENT_PARTS}
TIMES2 = {k: 1.0 for k in p.HELPER_PARTS}
STEPS = {k: 1.0 for k in p.CLIENT_STEPS}
FIT = p.LinkFit([1024, 4096], [1.0, 2.0], 0.5, 100.0, "line")
SHA = "0123456789abcdef" * 4
ARTIFACT = p.ArtifactInfo(SHA, "lenet5", 3000, 1024)
STATE_SHAPES = p.StateShapes({"part1/m/p:w": p.TensorShape((2, 2), np.dtype(np.float32))}, ("part1/o/",))


def _tensor(shape: p.TensorShape) -> np.ndarray:
    return np.ones(shape.shape, shape.dtype)


SAMPLES: list[p.Payload] = [
    p.Register("helper", p.EmulationInfo("d1", None, 10.0), 512.0, KEY),
    p.HelperWelcome(CONFIG, ARTIFACT, {"client0": KEY}, {"client0": 5.0, "client1": None}),
    p.ClientWelcome(CONFIG, ARTIFACT, 1),
    p.ClientProfile(TIMES1, TIMES1, 100, None),
    p.HelperProfile(TIMES2, TIMES2, "tcp://127.0.0.1:5600"),
    p.ProbeRequest([p.ProbeTarget("helper0", "tcp://127.0.0.1:5600", KEY)], [1, 4]),
    p.LinkReport({"helper0": FIT}),
    p.HelperRoundStart(["client0", "client1"], [[1.0, 2.0], [1.0, 2.0]], [[0.0, 1.0], [0.0, 1.0]], [None, 5.0],
                       [1.0, 1.0], [[0, 0], [1, 0], [0, 1], [1, 1]], [0.0, 1.0, 2.0, 3.0], 1.0e12, 17),
    p.ClientRoundStart("helper0", "tcp://127.0.0.1:5600", 1.0e12, 17, KEY),
    p.ForwardJob(17, tensor=_tensor(CUTS.act)),
    p.Activations(tensor=_tensor(CUTS.out)),
    p.Gradients(17, tensor=_tensor(CUTS.out)),
    p.GradBack(tensor=_tensor(CUTS.act)),
    p.ClientRoundReport(3, 0.5, 4, 1.0, 2.0, TRANSFER, TRANSFER, STEPS, STEPS),
    p.HelperRoundReport(3, [p.JobRecord("client0", 0, 1.0, 2.0, 3.0, 1.0, 0.0, 0.0, 10, 20, True)]),
    p.StateRequest(True, ["client0"]),
    p.State(100, {"part1/m/p:w": np.ones((2, 2), np.float32), "part1/o/steps": np.array(3, np.int64)}),
    p.Bye("run finished"),
    p.ErrorReply(int(p.RuntimeCode.BAD_PAYLOAD), "register: role is missing"),
    p.CancelJobs(3, ["client1"]),
    p.ArtifactRequest(SHA, 2),
    p.ArtifactChunk(SHA, 2, 3, data=np.arange(952, dtype=np.uint8)),
]
EXPECT = {"cuts": CUTS, "shapes": STATE_SHAPES}


def _over_the_wire(message: Message) -> Message:
    return decode(encode(message), Limits())


def _decode(cls: type[p.Payload], message: Message) -> p.Payload:
    if issubclass(cls, p.State):
        return cls.decode(message, shapes=STATE_SHAPES)
    if cls.TENSORS != "–":
        return cls.decode(message, cuts=CUTS)
    return cls.decode(message)


def _with_meta(payload: p.Payload, wire: bool = True, **changes) -> Message:
    """The payload's message with meta fields changed (or dropped), through the wire's codec unless wire=False."""
    message = payload.encode(JobId("run", 1, "client0", 1))
    meta = {k: v for k, v in {**message.meta, **changes}.items() if v is not _DROP}
    changed = Message(message.type, message.job, message.tensors, meta)
    return _over_the_wire(changed) if wire else changed


_DROP = object()


def test_every_message_has_a_payload_class_and_the_samples_cover_them():
    assert {type(s) for s in SAMPLES} == set(p.PAYLOADS)


@pytest.mark.parametrize("payload", SAMPLES, ids=lambda s: type(s).__name__)
def test_a_payload_round_trips_the_wire(payload):
    got = _decode(type(payload), _over_the_wire(payload.encode(JobId("run", 1, "client0", 1))))
    assert got.to_meta() == payload.to_meta()
    assert set(got.tensors()) == set(payload.tensors())
    for name, tensor in payload.tensors().items():
        np.testing.assert_array_equal(got.tensors()[name], tensor)


def _required(cls: type[p.Record]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if "check" in f.metadata
            and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]


def _wrong_type(check: p.Check) -> object:
    inner = check.inner if isinstance(check, p.Opt) else check
    return [True] if isinstance(inner, (p.MapOf, p.Nested, p.Config)) else {"bad": 1}


MISSING = [(s, name) for s in SAMPLES for name in _required(type(s))]
TYPED = [(s, f) for s in SAMPLES for f in dataclasses.fields(s) if "check" in f.metadata]


@pytest.mark.parametrize("payload,name", MISSING, ids=lambda v: v if isinstance(v, str) else type(v).__name__)
def test_a_missing_field_is_refused_by_name(payload, name):
    with pytest.raises(PayloadError) as info:
        _decode(type(payload), _with_meta(payload, **{name: _DROP}))
    assert info.value.field == name and info.value.problem == "is missing"
    assert str(info.value).startswith(type(payload).kind())


@pytest.mark.parametrize("payload,f", TYPED, ids=lambda v: v.name if isinstance(v, dataclasses.Field)
                         else type(v).__name__)
def test_a_field_of_the_wrong_type_is_refused_by_name(payload, f):
    with pytest.raises(PayloadError) as info:
        _decode(type(payload), _with_meta(payload, **{f.name: _wrong_type(f.metadata["check"])}))
    assert info.value.field.startswith(f.name), str(info.value)


NON_FINITE = [
    (SAMPLES[0], {"capacity_mb": math.nan}, "capacity_mb"),
    (SAMPLES[3], {"times": {**TIMES1, "part1_fwd": math.inf}}, "times['part1_fwd']"),
    (SAMPLES[3], {"memory_mb": math.inf}, "memory_mb"),
    (SAMPLES[6], {"links": {"helper0": {**FIT.to_meta(), "mbps": math.nan}}}, "links['helper0'].mbps"),
    (SAMPLES[7], {"t0_ms": math.inf}, "t0_ms"),
    (SAMPLES[13], {"loss": math.nan}, "loss"),
    (SAMPLES[13], {"fwd": {**TRANSFER.to_meta(), "recv": -math.inf}}, "fwd.recv"),
    (SAMPLES[14], {"jobs": [{**SAMPLES[14].jobs[0].to_meta(), "compute_ms": math.nan}]}, "jobs[0].compute_ms"),
]


@pytest.mark.parametrize("payload,changes,field", NON_FINITE, ids=lambda v: v if isinstance(v, str) else "")
def test_a_non_finite_number_is_refused_by_name(payload, changes, field):
    with pytest.raises(NonFiniteError) as info:
        _decode(type(payload), _with_meta(payload, **changes))
    assert info.value.field == field and "not finite" in info.value.problem


@pytest.mark.parametrize("payload", [s for s in SAMPLES if any(t.dtype.kind == "f" for t in s.tensors().values())],
                         ids=lambda s: type(s).__name__)
def test_a_non_finite_tensor_is_refused_by_name(payload):
    message = payload.encode(JobId("run", 1, "client0", 1))
    name = next(n for n, t in message.tensors.items() if t.dtype.kind == "f")
    bad = dict(message.tensors)
    bad[name] = bad[name].copy()
    bad[name].flat[0] = np.nan
    with pytest.raises(NonFiniteError) as info:
        _decode(type(payload), _over_the_wire(Message(message.type, message.job, bad, message.meta)))
    assert info.value.field == f"tensor {name!r}"


OVERSIZED = [
    (SAMPLES[5], {"sizes_kb": list(range(1, 10))}, "sizes_kb", "more than 8"),
    (SAMPLES[6], {"links": {f"helper{i}": FIT.to_meta() for i in range(p.MAX_ROLES + 1)}}, "links", "more than"),
    (SAMPLES[14], {"jobs": [SAMPLES[14].jobs[0].to_meta()] * (p.MAX_JOBS + 1)}, "jobs", "more than"),
    (SAMPLES[17], {"reason": "x" * (p.MAX_REASON + 1)}, "reason", "characters"),
    (SAMPLES[0], {"public_key": "k" * 41}, "public_key", "characters"),
]


@pytest.mark.parametrize("payload,changes,field,problem", OVERSIZED, ids=lambda v: v if isinstance(v, str) else "")
def test_an_oversized_list_map_or_string_is_refused_by_name(payload, changes, field, problem):
    """Checked on the decoded message: some of these are also beyond the wire's 64 KiB header bound."""
    with pytest.raises(PayloadError) as info:
        _decode(type(payload), _with_meta(payload, wire=False, **changes))
    assert info.value.field == field and problem in info.value.problem


def test_an_unknown_field_is_refused():
    with pytest.raises(PayloadError, match="surprise is not a field"):
        _decode(p.Register, _with_meta(SAMPLES[0], surprise=1))


def test_job_tensors_must_have_the_cut_name_shape_and_dtype():
    good = _tensor(CUTS.act)
    cases = {"x2": good, "x": good[:-1], "x ": good.astype(np.float64)}
    for name, tensor in cases.items():
        message = Message(p.ForwardJob.TYPE, JobId("run", 1, "client0", 1), {name.strip(): tensor}, {"token": 17})
        with pytest.raises(PayloadError, match="tensor|tensors"):
            p.ForwardJob.decode(_over_the_wire(message), cuts=CUTS)
    with pytest.raises(PayloadError, match="carries no tensors"):
        p.Bye.decode(Message(p.Bye.TYPE, JobId(), {"x": good}, {"reason": ""}))


def test_a_state_must_hold_exactly_its_model_tensors():
    base = SAMPLES[16].encode(JobId("run", 1, "client0", 1))
    missing = {k: v for k, v in base.tensors.items() if k != "part1/m/p:w"}
    foreign = {**base.tensors, "part2/m/p:w": np.ones(2, np.float32)}
    for tensors, text in ((missing, "is missing"), (foreign, "not a tensor of this state")):
        with pytest.raises(PayloadError, match=text):
            p.State.decode(Message(base.type, base.job, tensors, base.meta), shapes=STATE_SHAPES)


def test_a_helper_schedule_must_list_every_job_once():
    start = SAMPLES[7]
    with pytest.raises(PayloadError, match="order must list every client's forward and backward job once per micro"):
        _decode(p.HelperRoundStart, _with_meta(start, order=[[0, 0], [0, 0], [0, 1], [1, 1]]))
    with pytest.raises(PayloadError, match="memory_mb has 1 entries for 2 clients"):
        _decode(p.HelperRoundStart, _with_meta(start, memory_mb=[1.0]))


def test_a_pipelined_helper_schedule_lists_each_client_jobs_once_per_micro_batch():
    start = SAMPLES[7]
    order = [[0, 0], [0, 0], [1, 0], [0, 1], [1, 1], [0, 1]]
    piped = _decode(p.HelperRoundStart, _with_meta(start, micro_batches=[2, 1], order=order,
                                                   planned_start_ms=[0.0] * 6))
    assert piped.micro == [2, 1] and piped.order == order and start.micro == [1, 1]
    with pytest.raises(PayloadError, match="order must list every client's forward and backward job once per micro"):
        _decode(p.HelperRoundStart, _with_meta(start, micro_batches=[2, 1]))
    with pytest.raises(PayloadError, match="micro_batches has 1 entries for 2 clients"):
        _decode(p.HelperRoundStart, _with_meta(start, micro_batches=[2], order=order, planned_start_ms=[0.0] * 6))
    with pytest.raises(PayloadError, match=r"micro_batches\[0\] is 0, out of range"):
        _decode(p.HelperRoundStart, _with_meta(start, micro_batches=[0, 1]))


def test_a_client_round_start_names_its_micro_batches_and_local_mode_has_none():
    start = SAMPLES[8]
    assert _decode(p.ClientRoundStart, _with_meta(start, micro_batches=4)).micro_batches == 4
    assert _decode(p.ClientRoundStart, _with_meta(start)).micro_batches == 1
    with pytest.raises(PayloadError, match="micro_batches is 3; local mode runs no micro-batches"):
        _decode(p.ClientRoundStart, _with_meta(start, helper="", helper_endpoint="", helper_key=None, local=True,
                                               micro_batches=3))


def test_a_micro_batch_job_carries_its_index_and_the_rows_of_that_micro_batch():
    rows = p.micro_sizes(CONFIG.batch_size, 3)
    cuts = CUTS.micro(1, 3)
    assert cuts.act.shape == (rows[1], *CUTS.act.shape[1:]) and CUTS.micro(0, 1) is CUTS
    job = p.ForwardJob(17, micro=1, tensor=_tensor(cuts.act)).encode(JobId("run", 1, "client0", 5))
    decoded = p.ForwardJob.decode(_over_the_wire(job), cuts=CUTS, micro_batches=3)
    assert decoded.micro == 1 and decoded.tensor.shape == cuts.act.shape
    with pytest.raises(PayloadError, match="micro is 1, but the client's round has 1 micro-batch"):
        p.ForwardJob.decode(job, cuts=CUTS)
    with pytest.raises(PayloadError, match="has shape"):
        p.ForwardJob.decode(job, cuts=CUTS, micro_batches=2)  # micro-batch 1 of 2 has other rows
    grad = p.Gradients(17, micro=2, tensor=_tensor(CUTS.micro(2, 3).out)).encode(JobId("run", 1, "client0", 6))
    assert p.Gradients.decode(grad, cuts=CUTS, micro_batches=3).micro == 2
    with pytest.raises(PayloadError, match="micro is -1, out of range"):
        p.Gradients.decode(_with_meta(SAMPLES[11], micro=-1), cuts=CUTS)
    record = p.JobRecord("client0", 1, 1.0, 2.0, 3.0, 1.0, 0.0, 0.0, 10, 20, True, 3)
    report = p.HelperRoundReport(3, [record]).encode(JobId("run", 3, "helper0", 1))
    assert p.HelperRoundReport.decode(_over_the_wire(report)).jobs[0].micro == 3


def test_a_welcome_config_is_validated_by_the_run_configuration():
    bad = {**CONFIG.to_dict(), "rounds": 0}
    with pytest.raises(PayloadError, match="config key 'rounds' must be > 0"):
        _decode(p.ClientWelcome, _with_meta(SAMPLES[2], config=bad))
    with pytest.raises(PayloadError, match="index is 2, but the run has 2 clients"):
        _decode(p.ClientWelcome, _with_meta(SAMPLES[2], index=2))


def test_artifact_messages_are_checked_by_name():
    chunk = SAMPLES[-1]
    with pytest.raises(PayloadError, match="sha256 must be a sha256 as 64 lowercase hex digits"):
        _decode(p.ArtifactRequest, _with_meta(SAMPLES[-2], sha256="../" + SHA[3:]))
    with pytest.raises(PayloadError, match="index is 3, but the archive has 3 chunks"):
        _decode(p.ArtifactChunk, _with_meta(chunk, index=3))
    with pytest.raises(PayloadError, match="chunk_bytes"):
        _decode(p.ClientWelcome, _with_meta(SAMPLES[2], artifact={**ARTIFACT.to_meta(), "chunk_bytes": 0}))
    base = chunk.encode(JobId("run", 1, "client0", 1))
    too_big = np.zeros(p.MAX_CHUNK_BYTES + 1, np.uint8)
    for tensors, text in (({"data": base.tensors["data"].astype(np.int8)}, "expected 1-D uint8"),
                          ({"data": base.tensors["data"].reshape(8, -1)}, "expected 1-D uint8"),
                          ({"data": too_big}, "expected 1-D uint8"),
                          ({"bytes": base.tensors["data"]}, "exactly one tensor named 'data'")):
        with pytest.raises(PayloadError, match=text):
            p.ArtifactChunk.decode(Message(base.type, base.job, tensors, base.meta))


def test_a_report_of_the_wrong_phase_is_refused():
    with pytest.raises(PayloadError, match="phase is 'profile', expected 'round'"):
        p.ClientRoundReport.decode(SAMPLES[3].encode(JobId("run", 1, "client0", 1)))


def test_the_docs_hold_the_payload_tables_generated_from_the_classes():
    protocol_md = (ROOT / "docs" / "protocol.md").read_text()
    assert p.payload_docs() in protocol_md, (
        "docs/protocol.md drifted from edgepsl/runtime/protocol.py: run "
        "`python -m edgepsl.runtime.protocol --write docs/protocol.md`")
    runtime_md = (ROOT / "docs" / "runtime.md").read_text()
    missing = [cls.__name__ for cls in p.PAYLOADS if f"`{cls.__name__}`" not in runtime_md]
    assert not missing, f"docs/runtime.md does not name the payload classes {missing}"


def test_no_role_reads_a_message_meta_outside_the_protocol_module():
    pattern = re.compile(r"meta(\.get\(|\[)")
    runtime = ROOT / "edgepsl" / "runtime"
    readers = [f"{path.relative_to(ROOT)}:{k + 1}" for path in sorted(runtime.rglob("*.py")) if path.name != "protocol.py"
               for k, line in enumerate(path.read_text().splitlines()) if pattern.search(line)]
    assert not readers, f"read payloads through edgepsl.runtime.protocol, not meta: {readers}"


def test_a_round_start_names_a_helper_exactly_when_the_client_is_not_local():
    local = p.ClientRoundStart("", "", 1.0, 7, None, local=True)
    assert _decode(p.ClientRoundStart, _with_meta(local)) == local
    with pytest.raises(PayloadError, match="helper must be empty in local mode"):
        _decode(p.ClientRoundStart, _with_meta(local, helper="helper0"))
    with pytest.raises(PayloadError, match="helper is empty, but the client is not in local mode"):
        _decode(p.ClientRoundStart, _with_meta(local, local=False))


def test_a_client_profile_states_a_positive_memory_for_part2_or_none():
    local = p.ClientProfile(TIMES1, TIMES1, 100, None, TIMES2, 512.0)
    assert _decode(p.ClientProfile, _with_meta(local)) == local
    assert _decode(p.ClientProfile, _with_meta(local, memory_mb=_DROP)).memory_mb is None
    for bad, problem in ((0.0, "must be > 0 MB"), (-1.0, "out of range")):
        with pytest.raises(PayloadError, match=problem) as info:
            _decode(p.ClientProfile, _with_meta(local, memory_mb=bad))
        assert info.value.field == "memory_mb"


def test_the_aux_step_and_a_helpers_part3_times_come_declared_and_measured_or_not_at_all():
    client = p.ClientProfile(TIMES1, TIMES1, 100, None, aux_ms=3.0, aux_measured_ms=2.0)
    assert _decode(p.ClientProfile, _with_meta(client)) == client
    with pytest.raises(PayloadError, match="given exactly when aux_ms is") as info:
        _decode(p.ClientProfile, _with_meta(client, aux_measured_ms=_DROP))
    assert info.value.field == "aux_measured_ms"
    with pytest.raises(PayloadError, match="out of range"):
        _decode(p.ClientProfile, _with_meta(client, aux_ms=-1.0))
    last = {k: 1.0 for k in p.LAST_PARTS}
    helper = p.HelperProfile(TIMES2, TIMES2, "tcp://127.0.0.1:1", last, last)
    assert _decode(p.HelperProfile, _with_meta(helper)) == helper
    with pytest.raises(PayloadError, match="given exactly when part3_times is"):
        _decode(p.HelperProfile, _with_meta(helper, part3_times=_DROP))
    with pytest.raises(PayloadError, match="exactly the keys part3_fwd, part3_bwd"):
        _decode(p.HelperProfile, _with_meta(helper, part3_times=TIMES2, part3_measured=TIMES2))


def test_a_round_start_gives_the_plans_learning_modes_per_client_or_none():
    helper = dataclasses.replace(next(s for s in SAMPLES if isinstance(s, p.HelperRoundStart)),
                                 local_loss=[True, False])
    assert _decode(p.HelperRoundStart, _with_meta(helper)) == helper
    with pytest.raises(PayloadError, match="has 1 entries for 2 clients") as info:
        _decode(p.HelperRoundStart, _with_meta(helper, local_loss=[True]))
    assert info.value.field == "local_loss"
    client = p.ClientRoundStart("helper0", "tcp://127.0.0.1:1", 1.0, 7, None, local_loss=True)
    assert _decode(p.ClientRoundStart, _with_meta(client)) == client
    with pytest.raises(PayloadError, match="must be nil in local mode"):
        _decode(p.ClientRoundStart, _with_meta(client, helper="", helper_endpoint="", local=True))
