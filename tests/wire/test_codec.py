"""Encode/decode round trips (hypothesis) and the validation of every kind of malformed message."""
from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgepsl.wire import ErrorCode, JobId, Limits, Message, MessageError, MsgType, ProtocolError, decode, encode
from edgepsl.wire.messages import ALLOWED_DTYPES, FLOAT16_TYPES, MAX_REASON_CHARS, TENSOR_TYPES, error_message

LIMITS = Limits()
names = st.text(min_size=0, max_size=20)
counts = st.integers(min_value=0, max_value=2**63 - 1)
jobs = st.builds(JobId, names, counts, names, counts)
arrays = st.sampled_from(sorted(ALLOWED_DTYPES)).flatmap(
    lambda dt: hnp.arrays(np.dtype(dt), hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
)
meta_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=10) | st.binary(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(sorted(TENSOR_TYPES, key=lambda t: t.value)),
    job=jobs,
    tensors=st.dictionaries(st.text(min_size=1, max_size=12), arrays, max_size=4),
    meta=st.dictionaries(st.text(max_size=8), meta_values, max_size=4),
)
def test_round_trip_preserves_everything(kind, job, tensors, meta):
    """decode(encode(m)) gives back the type, job, meta and every tensor bit for bit."""
    frames = encode(Message(kind, job, tensors, meta))
    got = decode([bytes(memoryview(f)) for f in frames], LIMITS)
    assert (got.type, got.job, got.meta) == (kind, job, meta)
    assert list(got.tensors) == list(tensors)
    for name, arr in tensors.items():
        assert got.tensors[name].dtype == arr.dtype.newbyteorder("<") and got.tensors[name].shape == arr.shape
        assert got.tensors[name].tobytes() == np.ascontiguousarray(arr).tobytes()


@settings(max_examples=50, deadline=None)
@given(arr=hnp.arrays(np.float32, hnp.array_shapes(max_dims=3, max_side=6), elements=st.floats(-1000, 1000, width=32)))
def test_float16_wire_halves_bytes_and_restores_float32(arr):
    """Activations travel as float16 when asked and come back float32 within float16 precision."""
    plain = encode(Message(MsgType.ACTIVATIONS, tensors={"a": arr}))
    half = encode(Message(MsgType.ACTIVATIONS, tensors={"a": arr}), float16=True)
    assert memoryview(half[1]).nbytes * 2 == memoryview(plain[1]).nbytes
    got = decode([bytes(memoryview(f)) for f in half], LIMITS).tensors["a"]
    assert got.dtype == np.float32 and got.flags.writeable
    np.testing.assert_allclose(got, arr, rtol=1e-3, atol=1e-3)


def test_float16_applies_only_to_activations_and_gradients():
    """State (weights) always travels exactly, even on a float16 channel."""
    weights = np.linspace(0, 1, 7, dtype=np.float32)
    for kind in (MsgType.STATE, *FLOAT16_TYPES):
        got = decode(encode(Message(kind, tensors={"w": weights}), float16=True), LIMITS).tensors["w"]
        assert got.dtype == np.float32
        assert np.array_equal(got, weights) == (kind is MsgType.STATE or np.array_equal(weights.astype(np.float16), weights))


def test_received_tensors_are_zero_copy_views_of_the_frames():
    """np.frombuffer over the received frame: no copy, read-only."""
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    frames = [bytearray(memoryview(f)) for f in encode(Message(MsgType.FORWARD, tensors={"x": arr}))]
    got = decode(frames, LIMITS).tensors["x"]
    frames[1][:4] = np.float32(42).tobytes()
    assert got[0, 0] == 42 and not got.flags.owndata


def test_big_endian_and_strided_inputs_are_normalised():
    """A big-endian or non-contiguous array is sent as contiguous little-endian with the same values."""
    arr = np.arange(20, dtype=">f4").reshape(4, 5)[:, ::2]
    got = decode(encode(Message(MsgType.GRADIENTS, tensors={"g": arr})), LIMITS).tensors["g"]
    assert got.dtype.str == "<f4" and np.array_equal(got, arr)


@pytest.mark.parametrize(
    "message, text",
    [
        (Message(MsgType.FORWARD, tensors={"x": np.array(["a"])}), "dtype"),
        (Message(MsgType.FORWARD, tensors={"x": np.zeros(2, dtype=np.complex64)}), "dtype"),
        (Message(MsgType.HEARTBEAT, tensors={"x": np.zeros(2)}), "carries no tensors"),
        (Message(MsgType.REPORT, meta={"x": np.float32(1)}), "msgpack"),
        (Message(MsgType.REPORT, JobId(round=-1)), "non-negative"),
        (Message(MsgType.FORWARD, tensors={"": np.zeros(1)}), "name"),
    ],
)
def test_encode_refuses_what_the_wire_cannot_carry(message, text):
    """Local mistakes are MessageError with the reason, before anything is sent."""
    with pytest.raises(MessageError, match=text):
        encode(message)


def _header(**fields):
    base = {"v": 1, "type": "forward", "run": "r", "round": 0, "client": "c", "seq": 1, "sent_ns": 1,
            "tensors": [{"name": "x", "dtype": "<f4", "shape": [2, 2]}], "meta": {}}
    base.update(fields)
    return msgpack.packb(base)


GOOD_FRAME = bytes(16)


@pytest.mark.parametrize(
    "frames, code",
    [
        ([], ErrorCode.BAD_FRAMING),
        ([b"\xc1"], ErrorCode.BAD_HEADER),
        ([b"\x92\x01"], ErrorCode.BAD_HEADER),
        ([msgpack.packb([1, 2])], ErrorCode.BAD_HEADER),
        ([msgpack.packb({"v": 1, "type": "forward", "x": msgpack.ExtType(1, b"a")})], ErrorCode.BAD_HEADER),
        ([_header(v=2), GOOD_FRAME], ErrorCode.BAD_VERSION),
        ([_header(type="launch"), GOOD_FRAME], ErrorCode.UNKNOWN_TYPE),
        ([_header(round="3"), GOOD_FRAME], ErrorCode.BAD_HEADER),
        ([_header(seq=True), GOOD_FRAME], ErrorCode.BAD_HEADER),
        ([_header(meta=[1]), GOOD_FRAME], ErrorCode.BAD_HEADER),
        ([_header()], ErrorCode.BAD_FRAMING),
        ([_header(), GOOD_FRAME, GOOD_FRAME], ErrorCode.BAD_FRAMING),
        ([_header(), GOOD_FRAME[:-1]], ErrorCode.BAD_TENSOR),
        ([_header(tensors=[{"name": "x", "dtype": "|O", "shape": [2]}]), GOOD_FRAME], ErrorCode.BAD_TENSOR),
        ([_header(tensors=[{"name": "x", "dtype": ["<f4"], "shape": [4]}]), GOOD_FRAME], ErrorCode.BAD_TENSOR),
        ([_header(tensors=[{"name": ["x"], "dtype": "<f4", "shape": [4]}]), GOOD_FRAME], ErrorCode.BAD_TENSOR),
        ([_header(tensors=[{"name": "x", "dtype": "<f4", "shape": {"a": 4}}]), GOOD_FRAME], ErrorCode.BAD_TENSOR),
        ([_header(type=["forward"]), GOOD_FRAME], ErrorCode.UNKNOWN_TYPE),
        ([_header(v=[1]), GOOD_FRAME], ErrorCode.BAD_VERSION),
        ([_header(tensors=[{"name": "x", "dtype": ">f4", "shape": [4]}]), GOOD_FRAME], ErrorCode.BAD_TENSOR),
        ([_header(tensors=[{"name": "x", "dtype": "<f4", "shape": [-4]}]), GOOD_FRAME], ErrorCode.BAD_TENSOR),
        ([_header(tensors=[{"name": "x", "dtype": "<f4", "shape": [1] * 9}]), GOOD_FRAME], ErrorCode.BAD_TENSOR),
        ([_header(tensors=[{"name": "x", "dtype": "<f4", "shape": [4], "cast": "<f8"}]), GOOD_FRAME], ErrorCode.BAD_TENSOR),
        ([_header(tensors=[{"name": "x", "dtype": "<f4", "shape": [2**40, 2**40]}]), GOOD_FRAME], ErrorCode.TOO_LARGE),
        ([_header(tensors=[{"name": "x", "dtype": "<f4", "shape": [1]}] * 600)], ErrorCode.TOO_LARGE),
        ([_header(meta={"pad": "x" * 70_000}), GOOD_FRAME], ErrorCode.TOO_LARGE),
        ([_header(type="heartbeat"), GOOD_FRAME], ErrorCode.BAD_TENSOR),
        ([_header(tensors=[{"name": "x", "dtype": "<f4", "shape": [1]}, {"name": "x", "dtype": "<f4", "shape": [1]}]), b"1234", b"1234"], ErrorCode.BAD_TENSOR),
    ],
)
def test_decode_refuses_malformed_messages_with_the_right_code(frames, code):
    """Each malformed message raises ProtocolError carrying the ERROR code to reply with."""
    with pytest.raises(ProtocolError) as info:
        decode(frames, LIMITS)
    assert info.value.code == code


def test_total_size_cap_is_configurable():
    """A message over Limits.max_message_bytes is TOO_LARGE; the same message passes a larger cap."""
    frames = encode(Message(MsgType.STATE, tensors={"a": np.zeros(300, np.float32), "b": np.zeros(300, np.float32)}))
    with pytest.raises(ProtocolError) as info:
        decode(frames, Limits(max_message_bytes=2000))
    assert info.value.code == ErrorCode.TOO_LARGE
    assert decode(frames, Limits(max_message_bytes=2400)).tensors["a"].shape == (300,)


def test_refusal_carries_the_job_id_when_the_header_was_readable():
    """The ERROR reply can name the refused job."""
    with pytest.raises(ProtocolError) as info:
        decode([_header(seq=9, run="run7"), b"short"], LIMITS)
    assert info.value.job == JobId("run7", 0, "c", 9)


header_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)
header_keys = st.sampled_from(["v", "type", "run", "round", "client", "seq", "sent_ns", "tensors", "meta", "name", "dtype", "shape", "cast"])
tensor_entries = st.fixed_dictionaries(
    {"name": st.text(max_size=4) | header_values,
     "dtype": st.sampled_from([*sorted(ALLOWED_DTYPES), "|O", ">f4", "x"]) | header_values,
     "shape": st.lists(st.integers(-2, 2**40), max_size=4) | header_values},
    optional={"cast": st.sampled_from(["<f4", "<f8", 1]) | header_values},
)
headers = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 1, 1, 2, "1"]),
     "type": st.sampled_from(sorted(t.value for t in TENSOR_TYPES)) | st.sampled_from([t.value for t in MsgType] + ["nope", 3]) | header_values},
    optional={"tensors": st.lists(tensor_entries | header_values, max_size=3) | header_values, "meta": header_values,
              "seq": header_values, "run": header_values},
).flatmap(lambda base: st.dictionaries(header_keys, header_values, max_size=3).map(lambda extra: {**extra, **base}))


@settings(max_examples=400, deadline=None)
@given(header=headers, frames=st.lists(st.binary(max_size=64), max_size=4), raw=st.booleans(), junk=st.binary(max_size=64))
def test_decode_of_arbitrary_input_returns_a_message_or_a_protocol_error(header, frames, raw, junk):
    """Whatever arrives, decode either yields a valid Message or raises ProtocolError with a wire code: nothing else."""
    first = junk if raw else msgpack.packb(header)
    try:
        message = decode([first, *frames], LIMITS)
    except ProtocolError as exc:
        assert exc.code in {c for c in ErrorCode if c < 200}
    else:
        assert isinstance(message.type, MsgType) and len(message.tensors) == len(frames)


def test_error_reasons_are_cut_to_a_bounded_length():
    """A reason quoting a huge value a peer sent stays short, so the ERROR reply fits any peer's header limit."""
    with pytest.raises(ProtocolError) as info:
        decode([_header(tensors=[{"name": "x", "dtype": "y" * 60_000, "shape": [4]}]), GOOD_FRAME], LIMITS)
    reply = decode(encode(error_message(info.value.code, info.value.reason)), Limits(max_header_bytes=1024))
    assert reply.error_info()[0] == ErrorCode.BAD_TENSOR and len(reply.error_info()[1]) == MAX_REASON_CHARS
