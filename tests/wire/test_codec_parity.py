"""The compiled fast path edgepsl.wire._codec against the reference codec edgepsl.wire.codec, differentially.

The fast path must take every well-formed message (float16 casting on encode excepted, by design) and give exactly
the reference's frames or Message; it must decline (return None) everything the reference refuses, so that
_codec.encode / _codec.decode raise exactly the reference's MessageError / ProtocolError.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgepsl.wire import _codec, backend, codec
from edgepsl.wire.errors import MessageError, ProtocolError
from edgepsl.wire.messages import ALLOWED_DTYPES, FLOAT16_TYPES, TENSOR_TYPES, ErrorCode, JobId, Message, MsgType
from edgepsl.wire.validate import Limits
from tests.wire.test_codec import GOOD_FRAME, _header, counts, header_values, headers, jobs, meta_values
from tests.wire.test_fuzz import MUTATIONS, _valid

LIMITS = Limits()
HUGE = Limits(max_message_bytes=2**70, max_header_bytes=2**70, max_tensors=2**70, max_rank=2**70, max_name_len=2**70)
TINY = Limits(max_message_bytes=1, max_header_bytes=1, max_tensors=1, max_rank=1, max_name_len=1)
TYPES = sorted(MsgType, key=lambda kind: kind.value)
DTYPES = sorted(ALLOWED_DTYPES)
MAX_INT = 2**63 - 1

# the reference's float16 cast of large float32 values overflows to inf, as documented
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")


# --- comparing results -----------------------------------------------------------------------------------------------

def assert_same_array(got, want) -> None:
    """Same type, dtype (as the wire spells it), shape, bytes and flags that matter to a receiver."""
    assert type(got) is np.ndarray and type(want) is np.ndarray
    assert got.dtype == want.dtype and got.dtype.str == want.dtype.str
    assert got.shape == want.shape
    assert got.tobytes() == want.tobytes()  # bytes, not values: NaN payloads and -0.0 count
    assert got.flags.writeable == want.flags.writeable
    assert got.flags.owndata == want.flags.owndata  # a view of the frame, or a cast copy, in both
    assert got.flags.c_contiguous


def assert_same_message(got, want) -> None:
    """Equal decode results: type, job, meta, sent_ns, tensor names in order, and every tensor."""
    assert type(got) is Message
    assert got.type is want.type
    assert type(got.job) is JobId and tuple(got.job) == tuple(want.job)
    assert [type(v) for v in got.job] == [type(v) for v in want.job]
    assert type(got.meta) is dict
    # packb also compares types (str/bytes, list) and NaN bit patterns, where == would not
    assert msgpack.packb(got.meta) == msgpack.packb(want.meta)
    assert got.sent_ns == want.sent_ns and type(got.sent_ns) is int
    assert list(got.tensors) == list(want.tensors)
    for name in want.tensors:
        assert_same_array(got.tensors[name], want.tensors[name])


def assert_same_frames(got, want) -> None:
    """Equal encode results: byte-identical header, then the same arrays."""
    assert type(got) is list and len(got) == len(want)
    assert type(got[0]) is bytes and got[0] == want[0]
    for a, b in zip(got[1:], want[1:]):
        assert_same_array(a, b)


def decode_outcome(decode, frames, limits):
    """('message', Message), ('refused', class, code, reason, job) or, for any other exception (which the reference
    should never raise: see test_a_shape_numpy_cannot_build_under_huge_limits_is_refused_not_raised), ('raised',
    class, text)."""
    try:
        return ("message", decode(frames, limits))
    except ProtocolError as exc:
        return ("refused", type(exc), exc.code, exc.reason, exc.job, type(exc.job))
    except Exception as exc:  # noqa: BLE001 - compared, not swallowed: both codecs must raise the same
        return ("raised", type(exc), str(exc))


def assert_same_decode(frames, limits):
    """_codec.decode does exactly what the reference does; decode_fast declines whatever the reference refuses.

    Returns the reference's outcome.
    """
    want = decode_outcome(codec.decode, frames, limits)
    got = decode_outcome(_codec.decode, frames, limits)
    if want[0] == "raised":
        assert got == want
        assert decode_outcome(_codec.decode_fast, frames, limits) in (("message", None), want)
        return want
    fast = _codec.decode_fast(frames, limits)
    if want[0] == "refused":
        assert got == want
        assert fast is None, f"the fast path accepted what the reference refuses: {want[2]} {want[3]}"
    else:
        assert got[0] == "message", got
        assert_same_message(got[1], want[1])
        if fast is not None:
            assert_same_message(fast, want[1])
    return want


def encode_outcome(encode, message, float16):
    try:
        return ("frames", encode(message, float16=float16))
    except MessageError as exc:
        return ("refused", type(exc), str(exc))
    except Exception as exc:  # noqa: BLE001 - compared, not swallowed
        return ("raised", type(exc), str(exc))


def assert_same_encode(message, float16=False):
    """_codec.encode does exactly what the reference does; encode_fast declines whatever the reference refuses.

    Returns the reference's outcome.
    """
    want = encode_outcome(codec.encode, message, float16)
    got = encode_outcome(_codec.encode, message, float16)
    fast = encode_outcome(lambda m, float16: _codec.encode_fast(m, float16), message, float16)
    if want[0] != "frames":
        assert got == want
        assert fast == ("frames", None) or (want[0] == "raised" and fast == want), \
            f"the fast path encoded what the reference refuses: {want[2]}"
    else:
        assert got[0] == "frames", got
        assert_same_frames(got[1], want[1])
        assert fast[0] == "frames", fast
        if fast[1] is not None:
            assert_same_frames(fast[1], want[1])
    return want


def as_frames(frames, kind: str) -> list:
    """The frames as a receiver may hold them: bytes, bytearray (writable), zmq.Frame, or the encoder's arrays."""
    if kind == "arrays":
        return list(frames)
    raw = [bytes(memoryview(f)) for f in frames]
    if kind == "zmq":
        return [zmq.Frame(b) for b in raw]
    if kind == "bytearray":
        return [bytearray(b) for b in raw]
    return raw


def casts(message: Message, float16: bool) -> bool:
    """Whether the reference encoder casts a tensor of this message to float16 (the fast path leaves that to it)."""
    return float16 and message.type in FLOAT16_TYPES and any(np.asarray(a).dtype.str == "<f4" for a in message.tensors.values())


def fitting_limits(frames) -> Limits:
    """The tightest Limits that the encoded message still meets (every bound reached exactly)."""
    header = msgpack.unpackb(frames[0])
    specs = header["tensors"]
    names = [header["run"], header["client"], *(spec["name"] for spec in specs)]
    # a zero-size tensor declares 0 bytes, but its non-zero dimensions must fit under max_message_bytes as well
    extents = [np.dtype(spec["dtype"]).itemsize * math.prod(d for d in spec["shape"] if d) for spec in specs if 0 in spec["shape"]]
    return Limits(max_message_bytes=max(1, sum(memoryview(f).nbytes for f in frames[1:]), *extents),
                  max_header_bytes=len(frames[0]), max_tensors=max(1, len(specs)),
                  max_rank=max([1, *(len(spec["shape"]) for spec in specs)]), max_name_len=max(1, *map(len, names)))


# --- valid messages --------------------------------------------------------------------------------------------------

_SIDE = {0: 0, 1: 40, 2: 10, 3: 5, 4: 4}  # keeps every array at a few hundred elements


def shapes(min_rank: int = 1):
    return st.integers(min_rank, 8).flatmap(lambda r: st.tuples(*[st.integers(0, _SIDE.get(r, 2))] * r))


def wire_arrays(min_rank: int = 1):
    return st.tuples(st.sampled_from(DTYPES), shapes(min_rank)).flatmap(lambda ds: hnp.arrays(np.dtype(ds[0]), ds[1]))


tensor_names = st.text(min_size=1, max_size=12) | st.sampled_from(["n" * 256, "é" * 256, "\x00"])
wire_jobs = jobs | st.builds(JobId, st.just("r" * 256), st.just(MAX_INT), st.just("ü" * 256), st.just(MAX_INT))
metas = st.dictionaries(st.text(max_size=8), meta_values, min_size=1, max_size=4)


@st.composite
def messages(draw, min_rank: int = 1, meta=metas):
    """A well-formed message of any type: tensors (any allowed dtype, rank min_rank..8) only on tensor types."""
    kind = draw(st.sampled_from(TYPES))
    tensors = draw(st.dictionaries(tensor_names, wire_arrays(min_rank), max_size=4)) if kind in TENSOR_TYPES else {}
    return Message(kind, draw(wire_jobs), tensors, draw(meta), draw(st.integers(1, MAX_INT)))


@settings(max_examples=100, deadline=None)
@given(message=messages(), float16=st.booleans())
def test_encode_fast_takes_every_valid_message_and_builds_the_reference_frames(message, float16):
    """Any type, dtype, rank 1..8, meta: encode_fast takes it (unless it must cast) and its frames are the reference's."""
    want = codec.encode(message, float16=float16)
    fast = _codec.encode_fast(message, float16)
    if casts(message, float16):
        assert fast is None  # float16 casting is left to the reference by design
    else:
        assert fast is not None, "encode_fast declined a well-formed message"
        assert_same_frames(fast, want)
    assert_same_frames(_codec.encode(message, float16=float16), want)


@settings(max_examples=100, deadline=None)
@given(message=messages(min_rank=0, meta=metas | st.just({})), float16=st.booleans(),
       kind=st.sampled_from(["bytes", "zmq", "bytearray", "arrays"]), bounds=st.sampled_from(["default", "fitting", "huge"]))
def test_decode_fast_takes_every_valid_message_and_gives_the_reference_message(message, float16, kind, bounds):
    """Frames from the reference encoder (float16 casts included), as bytes, bytearray, zmq.Frame or arrays, under
    the default Limits, Limits the message just meets, and Limits beyond 2**63: decode_fast takes them, as the
    reference decodes them."""
    encoded = codec.encode(message, float16=float16)
    limits = {"default": LIMITS, "fitting": fitting_limits(encoded), "huge": HUGE}[bounds]
    frames = as_frames(encoded, kind)
    want = codec.decode(frames, limits)
    fast = _codec.decode_fast(frames, limits)
    assert fast is not None, "decode_fast declined a well-formed message"
    assert_same_message(fast, want)
    assert_same_message(_codec.decode(frames, limits), want)


def test_every_type_dtype_and_rank_is_taken_both_ways():
    """A sweep that does not depend on hypothesis' luck: every type, every dtype on every tensor type, ranks 1..8."""
    seen = 0
    for kind in TYPES:
        job = JobId("sweep", 1, "c", 2)
        cases = [{}] if kind not in TENSOR_TYPES else [
            {"t": np.arange(2 ** min(rank, 3), dtype=dtype).reshape((2,) * min(rank, 3) + (1,) * (rank - 3))
             if dtype != "|b1" else np.ones((1,) * rank, bool)}
            for dtype in DTYPES for rank in range(1, 9)]
        for tensors in cases:
            message = Message(kind, job, tensors, {"k": [1, "v", None]}, 123)
            frames = _codec.encode_fast(message, False)
            assert frames is not None, (kind, tensors)
            assert_same_frames(frames, codec.encode(message))
            for holder in ("bytes", "zmq"):
                held = as_frames(frames, holder)
                got = _codec.decode_fast(held, LIMITS)
                assert got is not None, (kind, tensors, holder)
                assert_same_message(got, codec.decode(held, LIMITS))
            seen += 1
    assert seen == len(TYPES) - len(TENSOR_TYPES) + len(TENSOR_TYPES) * len(DTYPES) * 8


def test_float16_wire_decode_is_taken_and_float16_encode_is_left_to_the_reference():
    """A header declaring "cast": "<f4" is decoded by the fast path into the same writable float32 copy."""
    arr = np.linspace(-3, 3, 24, dtype=np.float32).reshape(2, 3, 4)
    for kind in sorted(FLOAT16_TYPES, key=lambda t: t.value):
        message = Message(kind, JobId("r", 0, "c", 1), {"a": arr, "i": np.arange(3, dtype="<i8")}, {"m": 1}, 7)
        assert _codec.encode_fast(message, True) is None
        frames = assert_same_encode(message, float16=True)[1]
        assert msgpack.unpackb(frames[0])["tensors"][0]["cast"] == "<f4"
        got = _codec.decode_fast(as_frames(frames, "zmq"), LIMITS)
        assert got is not None and got.tensors["a"].dtype == np.float32 and got.tensors["a"].flags.writeable
        assert_same_message(got, codec.decode(as_frames(frames, "zmq"), LIMITS))
        # a float16 channel sends non-float32 tensors as they are: that the fast path takes
        plain = Message(kind, JobId("r", 0, "c", 1), {"i": np.arange(3, dtype="<i8")}, {"m": 1}, 7)
        assert_same_frames(_codec.encode_fast(plain, True), codec.encode(plain, float16=True))


@pytest.mark.parametrize("shape, dtype, limits", [
    ((0, 1000), "<f4", LIMITS),
    ((2**20, 0), "<f4", LIMITS),
    ((0,), "<f2", Limits(max_message_bytes=2)),
], ids=["0x1000", "2**20x0", "0 cap 2"])
def test_decode_fast_takes_zero_size_tensors_whose_other_dimensions_fit(shape, dtype, limits):
    """A C-contiguous array of 0 bytes whose non-zero dimensions fit under the cap: both codecs take it."""
    message = Message(MsgType.FORWARD, JobId("r", 0, "c", 1), {"x": np.zeros(shape, dtype)}, {"m": 1}, 5)
    frames = _codec.encode_fast(message, False)
    assert frames is not None
    want = codec.decode(frames, limits)
    assert want.tensors["x"].shape == shape
    got = _codec.decode_fast(frames, limits)
    assert got is not None
    assert_same_message(got, want)


@pytest.mark.parametrize("shape, dtype, limits", [
    ((0, 2**40), "<f4", LIMITS),                      # a dimension over the 256 MiB cap, after the 0
    ((2**27, 0), "<f4", LIMITS),                      # 4 * 2**27 = 512 MiB without the 0
    ((0, 2), "<f2", Limits(max_message_bytes=1)),
    ((1, 0, 0), "<f2", Limits(max_message_bytes=1)),  # the itemsize alone is over the cap
    ((2**32, 2**32, 0), "|u1", LIMITS),               # past numpy's size limit: np.ndarray could not shape it
    ((0, 2**28, 2**28, 2**28), "<f8", LIMITS),
], ids=["0x2**40", "2**27x0", "0x2 cap 1", "1x0x0 cap 1", "2**32x2**32x0", "0x2**28x2**28x2**28"])
def test_zero_size_tensors_whose_other_dimensions_exceed_the_cap_are_refused(shape, dtype, limits):
    """A zero-size tensor is bounded by its non-zero dimensions: beyond the cap both codecs refuse it as TOO_LARGE
    (before this rule, a shape numpy cannot build got through validation and raised ValueError, which stopped a
    server channel's I/O thread)."""
    frames = [_header(tensors=[{"name": "x", "dtype": dtype, "shape": list(shape)}]), b""]
    outcome = assert_same_decode(frames, limits)
    assert outcome[0] == "refused" and outcome[2] == ErrorCode.TOO_LARGE


def test_msgpack_timestamps_in_meta_are_refused():
    """msgpack decodes extension type -1 (its timestamp) without the ext_hook; meta must still refuse it."""
    head = msgpack.packb({"v": 1, "type": "report", "client": "c", "seq": 1,
                          "meta": {"when": [msgpack.Timestamp(1, 2)]}}, use_bin_type=True)
    outcome = assert_same_decode([head], LIMITS)
    assert outcome[0] == "refused" and outcome[2] == ErrorCode.BAD_HEADER and "Timestamp" in outcome[3]


@pytest.mark.parametrize("where, reason", [
    ("unknown top-level key", "header field 'when' holds a Timestamp: extension types are refused"),
    ("unknown key of a tensor spec", "header field 'tensors' holds a Timestamp: extension types are refused"),
    ("nested in a list", "header field 'when' holds a Timestamp: extension types are refused"),
])
def test_msgpack_timestamps_anywhere_in_the_header_are_refused(where, reason):
    """A timestamp (ext -1) is refused wherever it sits, under keys the schema does not know too: the same
    BAD_HEADER reason from both codecs, and the fast path declines it."""
    header = _base({})
    stamp = msgpack.Timestamp(1, 2)
    if where == "unknown top-level key":
        header["when"] = stamp
    elif where == "unknown key of a tensor spec":
        header["tensors"][0]["when"] = stamp
    else:
        header["when"] = [1, {"k": [stamp]}]
    outcome = assert_same_decode([msgpack.packb(header, use_bin_type=True), GOOD_FRAME], LIMITS)
    assert outcome[:4] == ("refused", ProtocolError, ErrorCode.BAD_HEADER, reason)
    assert outcome[4] == JobId("r", 0, "c", 1)


@pytest.mark.parametrize("version", [True, 1.0], ids=["true", "1.0"])
def test_a_version_equal_to_1_but_not_an_int_is_refused(version):
    """`v` must be the integer 1: true and 1.0 compare equal to 1 in Python, and both codecs refuse them alike."""
    outcome = assert_same_decode([_header(v=version), GOOD_FRAME], LIMITS)
    assert outcome[:4] == ("refused", ProtocolError, ErrorCode.BAD_VERSION,
                           f"protocol version {version!r} is not supported (this peer speaks 1)")


# --- malformed input: decode ----------------------------------------------------------------------------------------

def _base(header):
    return {"v": 1, "type": "forward", "run": "r", "round": 0, "client": "c", "seq": 1, "sent_ns": 1,
            "tensors": [{"name": "x", "dtype": "<f4", "shape": [2, 2]}], "meta": {}, **header}


def _tensor(**spec):
    return _header(tensors=[{"name": "x", "dtype": "<f4", "shape": [2, 2], **spec}])


def _without(key):
    header = _base({})
    del header[key]
    return msgpack.packb(header)


MALFORMED = [
    # framing and msgpack
    ("no frames", [], LIMITS, ErrorCode.BAD_FRAMING),
    ("empty header", [b"", GOOD_FRAME], LIMITS, ErrorCode.BAD_HEADER),
    ("garbage", [b"\xc1\x00\xff", GOOD_FRAME], LIMITS, ErrorCode.BAD_HEADER),
    ("truncated header", [_header()[:-3], GOOD_FRAME], LIMITS, ErrorCode.BAD_HEADER),
    ("trailing bytes", [_header() + b"\x00", GOOD_FRAME], LIMITS, ErrorCode.BAD_HEADER),
    ("not a map", [msgpack.packb(["forward"]), GOOD_FRAME], LIMITS, ErrorCode.BAD_HEADER),
    ("int map key", [msgpack.packb({**_base({}), 1: 2}), GOOD_FRAME], LIMITS, ErrorCode.BAD_HEADER),
    ("extension type in meta", [_header(meta={"x": msgpack.ExtType(5, b"a")}), GOOD_FRAME], LIMITS, ErrorCode.BAD_HEADER),
    ("extension type as a field", [_header(run=msgpack.ExtType(0, b"r")), GOOD_FRAME], LIMITS, ErrorCode.BAD_HEADER),
    ("timestamp (ext -1) as a field", [_header(seq=msgpack.Timestamp(1, 0)), GOOD_FRAME], LIMITS, ErrorCode.BAD_HEADER),
    ("one frame missing", [_header()], LIMITS, ErrorCode.BAD_FRAMING),
    ("one frame too many", [_header(), GOOD_FRAME, b""], LIMITS, ErrorCode.BAD_FRAMING),
    ("frame on a header-only message", [_header(tensors=[]), b""], LIMITS, ErrorCode.BAD_FRAMING),
    ("frame one byte short", [_header(), GOOD_FRAME[:-1]], LIMITS, ErrorCode.BAD_TENSOR),
    ("frame one byte long", [_header(), GOOD_FRAME + b"\x00"], LIMITS, ErrorCode.BAD_TENSOR),
    # fields
    ("no version", [_without("v"), GOOD_FRAME], LIMITS, ErrorCode.BAD_VERSION),
    ("version 2", [_header(v=2), GOOD_FRAME], LIMITS, ErrorCode.BAD_VERSION),
    ("version '1'", [_header(v="1"), GOOD_FRAME], LIMITS, ErrorCode.BAD_VERSION),
    ("version 2**64-1", [_header(v=2**64 - 1), GOOD_FRAME], LIMITS, ErrorCode.BAD_VERSION),
    ("no type", [_without("type"), GOOD_FRAME], LIMITS, ErrorCode.UNKNOWN_TYPE),
    ("unknown type", [_header(type="FORWARD"), GOOD_FRAME], LIMITS, ErrorCode.UNKNOWN_TYPE),
    ("bytes type", [_header(type=b"forward"), GOOD_FRAME], LIMITS, ErrorCode.UNKNOWN_TYPE),
    ("negative round", [_header(round=-1), GOOD_FRAME], LIMITS, ErrorCode.BAD_HEADER),
    ("seq 2**63", [_header(seq=2**63), GOOD_FRAME], LIMITS, ErrorCode.BAD_HEADER),
    ("sent_ns 2**64-1", [_header(sent_ns=2**64 - 1), GOOD_FRAME], LIMITS, ErrorCode.BAD_HEADER),
    ("sent_ns float", [_header(sent_ns=1.0), GOOD_FRAME], LIMITS, ErrorCode.BAD_HEADER),
    ("round bool", [_header(round=True), GOOD_FRAME], LIMITS, ErrorCode.BAD_HEADER),
    ("run too long", [_header(run="r" * 257), GOOD_FRAME], LIMITS, ErrorCode.BAD_HEADER),
    ("client bytes", [_header(client=b"c"), GOOD_FRAME], LIMITS, ErrorCode.BAD_HEADER),
    ("meta a list", [_header(meta=[1]), GOOD_FRAME], LIMITS, ErrorCode.BAD_HEADER),
    ("tensors a map", [_header(tensors={"x": 1}), GOOD_FRAME], LIMITS, ErrorCode.BAD_HEADER),
    # tensor specs
    ("spec not a map", [_header(tensors=[["x", "<f4", [2, 2]]]), GOOD_FRAME], LIMITS, ErrorCode.BAD_TENSOR),
    ("spec without name", [_header(tensors=[{"dtype": "<f4", "shape": [2, 2]}]), GOOD_FRAME], LIMITS, ErrorCode.BAD_TENSOR),
    ("empty name", [_tensor(name=""), GOOD_FRAME], LIMITS, ErrorCode.BAD_TENSOR),
    ("name too long", [_tensor(name="x" * 257), GOOD_FRAME], LIMITS, ErrorCode.BAD_TENSOR),
    ("duplicate names", [_header(tensors=[{"name": "x", "dtype": "|u1", "shape": [1]}] * 2), b"a", b"b"], LIMITS,
     ErrorCode.BAD_TENSOR),
    ("big-endian dtype", [_tensor(dtype=">f4"), GOOD_FRAME], LIMITS, ErrorCode.BAD_TENSOR),
    ("uint16 dtype", [_tensor(dtype="<u2", shape=[8]), GOOD_FRAME], LIMITS, ErrorCode.BAD_TENSOR),
    ("object dtype", [_tensor(dtype="|O", shape=[2]), GOOD_FRAME], LIMITS, ErrorCode.BAD_TENSOR),
    ("dtype not a string", [_tensor(dtype=4), GOOD_FRAME], LIMITS, ErrorCode.BAD_TENSOR),
    ("negative dimension", [_tensor(shape=[-2, -2]), GOOD_FRAME], LIMITS, ErrorCode.BAD_TENSOR),
    ("dimension -2**63", [_tensor(shape=[-(2**63)]), GOOD_FRAME], LIMITS, ErrorCode.BAD_TENSOR),
    ("dimension 2**63", [_tensor(shape=[2**63]), GOOD_FRAME], LIMITS, ErrorCode.BAD_TENSOR),
    ("dimension 2**64-1", [_tensor(shape=[2**64 - 1, 0]), b""], LIMITS, ErrorCode.BAD_TENSOR),
    ("float dimension", [_tensor(shape=[2.0, 2]), GOOD_FRAME], LIMITS, ErrorCode.BAD_TENSOR),
    ("bool dimension", [_tensor(shape=[True, 4]), GOOD_FRAME], LIMITS, ErrorCode.BAD_TENSOR),
    ("string dimension", [_tensor(shape=["2", 2]), GOOD_FRAME], LIMITS, ErrorCode.BAD_TENSOR),
    ("shape a string", [_tensor(shape="2x2"), GOOD_FRAME], LIMITS, ErrorCode.BAD_TENSOR),
    ("rank 9", [_tensor(shape=[1] * 8 + [4]), GOOD_FRAME], LIMITS, ErrorCode.BAD_TENSOR),
    ("huge declared size", [_tensor(shape=[2**40, 2**40]), GOOD_FRAME], LIMITS, ErrorCode.TOO_LARGE),
    ("size wrapping to 0 in 64 bits", [_tensor(dtype="|u1", shape=[2**32, 2**32]), b""], LIMITS, ErrorCode.TOO_LARGE),
    ("size wrapping to 0, no cap", [_tensor(dtype="|u1", shape=[2**32, 2**32]), b""], HUGE, ErrorCode.BAD_TENSOR),
    ("size 2**66 wrapping to 0, cap 2**70", [_tensor(dtype="<f4", shape=[2**62, 4]), b""], HUGE, ErrorCode.BAD_TENSOR),
    ("size 2**63, no cap", [_tensor(dtype="<i8", shape=[2**60]), b""], HUGE, ErrorCode.BAD_TENSOR),
    ("cast to float64", [_tensor(cast="<f8"), GOOD_FRAME], LIMITS, ErrorCode.BAD_TENSOR),
    ("cast on a float32 tensor", [_tensor(cast="<f4"), GOOD_FRAME], LIMITS, ErrorCode.BAD_TENSOR),
    ("cast not a string", [_tensor(dtype="<f2", shape=[8], cast=4), GOOD_FRAME], LIMITS, ErrorCode.BAD_TENSOR),
    ("tensors on a report", [_header(type="report"), GOOD_FRAME], LIMITS, ErrorCode.BAD_TENSOR),
    ("tensors on a heartbeat", [_header(type="heartbeat"), GOOD_FRAME], LIMITS, ErrorCode.BAD_TENSOR),
    # sizes and limits
    ("too many tensors", [_header(tensors=[{"name": "x", "dtype": "<f4", "shape": [1]}] * 513)], LIMITS, ErrorCode.TOO_LARGE),
    ("header over the limit", [_header(meta={"pad": "z" * 65_536}), GOOD_FRAME], LIMITS, ErrorCode.TOO_LARGE),
    ("header one byte over", [_header(), GOOD_FRAME], Limits(max_header_bytes=len(_header()) - 1), ErrorCode.TOO_LARGE),
    ("tensor over max_message_bytes", [_header(), GOOD_FRAME], Limits(max_message_bytes=15), ErrorCode.TOO_LARGE),
    ("total over max_message_bytes", [_header(tensors=[{"name": n, "dtype": "<f4", "shape": [2]} for n in "ab"]),
                                      GOOD_FRAME[:8], GOOD_FRAME[:8]], Limits(max_message_bytes=15), ErrorCode.TOO_LARGE),
    ("tiny limits", [_header(), GOOD_FRAME], TINY, ErrorCode.TOO_LARGE),
    ("name over max_name_len 1", [_header(run="", client="", tensors=[{"name": "xy", "dtype": "|u1", "shape": [1]}]), b"a"],
     Limits(max_name_len=1), ErrorCode.BAD_TENSOR),
    ("run over max_name_len 1", [_header(run="rr", tensors=[]), ], Limits(max_name_len=1), ErrorCode.BAD_HEADER),
    ("rank over max_rank 1", [_tensor(), GOOD_FRAME], Limits(max_rank=1), ErrorCode.BAD_TENSOR),
    ("two tensors over max_tensors 1", [_header(tensors=[{"name": n, "dtype": "|u1", "shape": [1]} for n in "ab"]), b"a", b"b"],
     Limits(max_tensors=1), ErrorCode.TOO_LARGE),
]


@pytest.mark.parametrize("frames, limits, code", [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_malformed_messages_are_refused_with_the_reference_error(frames, limits, code):
    """Each malformed message: the reference refuses it with `code`; _codec.decode raises the very same
    ProtocolError (class, code, reason, job) and decode_fast declines it, with bytes and with zmq.Frame frames."""
    for kind in ("bytes", "zmq"):
        want = assert_same_decode(as_frames(frames, kind), limits)
        assert want[0] == "refused" and want[2] == code, want


@settings(max_examples=100, deadline=None)
@given(mutation=st.sampled_from(MUTATIONS), rng=st.randoms(use_true_random=False))
def test_fuzz_mutations_of_test_fuzz_are_refused_alike(mutation, rng):
    """Every mutation the live-server fuzzer sends: both codecs refuse it with the same error."""
    header, frames = _valid(rng)
    want = assert_same_decode(mutation(rng, header, frames), LIMITS)
    assert want[0] == "refused"


@settings(max_examples=100, deadline=None)
@given(header=headers, frames=st.lists(st.binary(max_size=64), max_size=4), raw=st.booleans(), junk=st.binary(max_size=64))
def test_arbitrary_headers_get_the_reference_outcome(header, frames, raw, junk):
    """test_codec's arbitrary headers and frames: the same Message or the same ProtocolError from both codecs."""
    want = assert_same_decode([junk if raw else msgpack.packb(header), *frames], LIMITS)
    event({"refused": lambda: f"refused {ErrorCode(want[2]).name}", "message": lambda: "valid",
           "raised": lambda: f"raised {want[1].__name__}"}[want[0]]())


BAD_VERSIONS = [0, 2, -1, 2**64 - 1, "1", None, True, 1.0, 1.5, [1], b"\x01", {"v": 1}]
BAD_TYPES = ["", "FORWARD", "forward ", "nope", 3, None, b"forward", ["forward"], True]
BAD_COUNTS = [-1, -(2**63), 2**63, 2**64 - 1, 1.0, True, "1", None, b"\x01", [1]]
BAD_STRINGS = ["x" * 257, "é" * 257, "x" * 256, "", 7, None, b"run", ["run"], True]
BAD_SPEC_VALUES = {
    "name": ["", "n" * 257, "é" * 257, "n" * 256, 7, None, b"x", ["x"], True],
    "dtype": ["|O", "<c8", ">f4", ">i8", "<u2", "<u8", "float32", "f4", "<f4 ", "", "<U4", "|V16", "<M8[s]", 7, None,
              ["<f4"], b"<f4", True, *DTYPES],
    "shape": [[-1], [2, -3], [-(2**63)], [2**63], [2**64 - 1], [2**62, 2**62], [2**32, 2**32], [2**32, 2**32, 0],
              [MAX_INT, 2], [0, MAX_INT], [MAX_INT, 0], [0, 2**64 - 1], [2**40, 0, 2**40], [], [0], [3], [1.0], [2.5],
              [True], [False, 1], ["2"], [None], [[2]], [b"\x02"], [1] * 9, [1] * 20, None, "2x2", 4, {"a": 1}, b"\x02"],
    "cast": ["<f4", "<f8", "<f2", "<f4 ", "", "f4", 1, True, ["<f4"], b"<f4", None],
}


def _declared_bytes(spec) -> int | None:
    """The byte length a spec declares, when it is a plausible one (allowed dtype, int dims, small)."""
    dtype, shape = spec.get("dtype"), spec.get("shape")
    if not isinstance(dtype, str) or dtype not in ALLOWED_DTYPES or not isinstance(shape, list):
        return None
    if not all(type(d) is int and d >= 0 for d in shape):
        return None
    nbytes = np.dtype(dtype).itemsize * math.prod(shape)
    return nbytes if nbytes <= 2**16 else None


# header_values without maps (no filter, so no draw is ever given up)
non_maps = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8) \
    | st.binary(max_size=8) | st.lists(header_values, max_size=3)


def _ensure_tensor(header, frames):
    """A message with at least one tensor to mutate (a forward with a 2x2 float32 one if there is none)."""
    if not header.get("tensors"):
        header["type"], header["tensors"], frames[:] = "forward", [{"name": "t", "dtype": "<f4", "shape": [2, 2]}], [bytes(16)]


def m_drop_field(draw, header, frames):
    del header[draw(st.sampled_from(sorted(header)))]


def m_retype_field(draw, header, frames):
    header[draw(st.sampled_from(sorted(header)))] = draw(header_values)


def m_bad_version(draw, header, frames):
    header["v"] = draw(st.sampled_from(BAD_VERSIONS))


def m_unknown_type(draw, header, frames):
    header["type"] = draw(st.sampled_from(BAD_TYPES) | st.text(max_size=12))


def m_bad_count(draw, header, frames):
    header[draw(st.sampled_from(["round", "seq", "sent_ns"]))] = draw(st.sampled_from(BAD_COUNTS))


def m_bad_string(draw, header, frames):
    header[draw(st.sampled_from(["run", "client"]))] = draw(st.sampled_from(BAD_STRINGS))


def m_odd_key(draw, header, frames):
    header[draw(st.sampled_from([1, -1, 1.5, None, True, b"v", b"type", b"tensors"]))] = draw(header_values)


def m_extension(draw, header, frames):
    # ext -1 unpacks as a msgpack.Timestamp, without the ext hook: both codecs then leave it to the field checks
    ext = draw(st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8))
               | st.builds(msgpack.Timestamp, st.integers(0, 2**32 - 1), st.integers(0, 999_999_999)))
    where = draw(st.sampled_from(["meta", "field", "spec", "nested"]))
    if where == "meta":
        header["meta"] = {**header.get("meta", {}), "x": ext}
    elif where == "field":
        header[draw(st.sampled_from(sorted(header)))] = ext
    elif where == "spec":
        _ensure_tensor(header, frames)
        header["tensors"][0][draw(st.sampled_from(["name", "dtype", "shape", "cast"]))] = ext
    else:
        header["meta"] = {"deep": [1, {"k": [ext]}]}


def m_spec_value(draw, header, frames):
    _ensure_tensor(header, frames)
    index = draw(st.integers(0, len(header["tensors"]) - 1))
    key = draw(st.sampled_from(sorted(BAD_SPEC_VALUES)))
    spec = header["tensors"][index]
    spec[key] = draw(st.sampled_from(BAD_SPEC_VALUES[key]) | header_values)
    nbytes = _declared_bytes(spec)
    if nbytes is not None and draw(st.booleans()):  # a frame that fits: the spec may well be valid now
        frames[index] = bytes(nbytes)


def m_spec_keys(draw, header, frames):
    _ensure_tensor(header, frames)
    spec = header["tensors"][draw(st.integers(0, len(header["tensors"]) - 1))]
    key = draw(st.sampled_from(["name", "dtype", "shape", "cast", "extra"]))
    if key in spec:
        del spec[key]
    else:
        spec[key] = draw(header_values)


def m_spec_not_a_map(draw, header, frames):
    _ensure_tensor(header, frames)
    header["tensors"][draw(st.integers(0, len(header["tensors"]) - 1))] = draw(non_maps)


def m_duplicate_name(draw, header, frames):
    _ensure_tensor(header, frames)
    index = draw(st.integers(0, len(header["tensors"]) - 1))
    header["tensors"].append(dict(header["tensors"][index]))
    frames.append(frames[index])


def m_tensors_on_header_only_type(draw, header, frames):
    _ensure_tensor(header, frames)
    header["type"] = draw(st.sampled_from([t.value for t in TYPES if t not in TENSOR_TYPES]))


def m_frame_count(draw, header, frames):
    if frames and draw(st.booleans()):
        del frames[draw(st.integers(0, len(frames) - 1))]
    else:
        frames.insert(draw(st.integers(0, len(frames))), draw(st.binary(max_size=16)))


def m_frame_length(draw, header, frames):
    _ensure_tensor(header, frames)
    index = draw(st.integers(0, len(frames) - 1))
    delta = draw(st.integers(-len(frames[index]), 8).filter(bool))
    frames[index] = frames[index][:delta] if delta < 0 else frames[index] + bytes(delta)


MALFORMERS = [m_drop_field, m_retype_field, m_bad_version, m_unknown_type, m_bad_count, m_bad_string, m_odd_key,
              m_extension, m_spec_value, m_spec_keys, m_spec_not_a_map, m_duplicate_name, m_tensors_on_header_only_type,
              m_frame_count, m_frame_length]


@st.composite
def malformed(draw):
    """A valid message with one mutation of its header, its packing, its frames or the receiver's Limits.

    Many results are malformed; some are still valid (a dropped field with a default, an unused extra key, a
    spec whose new frame fits), which the codecs must then decode alike.
    """
    message = draw(messages(meta=metas | st.just({})))
    encoded = [bytes(memoryview(f)) for f in codec.encode(message, float16=draw(st.booleans()))]
    header, frames = msgpack.unpackb(encoded[0]), encoded[1:]
    packed, limits = None, LIMITS
    where = draw(st.sampled_from(["header"] * 4 + ["packing", "limits"]))
    if where == "header":
        draw(st.sampled_from(MALFORMERS))(draw, header, frames)
        packed = msgpack.packb(header)
    elif where == "packing":
        packed = msgpack.packb(header)
        how = draw(st.sampled_from(["truncated", "trailing", "garbage", "not a map"]))
        if how == "truncated":
            packed = packed[:draw(st.integers(0, len(packed) - 1))]
        elif how == "trailing":
            packed += draw(st.binary(min_size=1, max_size=8))
        elif how == "garbage":
            packed = draw(st.binary(max_size=48))
        else:
            packed = msgpack.packb(draw(non_maps))
    else:
        packed = msgpack.packb(header)
        total, specs = sum(map(len, frames)), header["tensors"]
        ranks = [len(spec["shape"]) for spec in specs]
        names = [header["run"], header["client"], *(spec["name"] for spec in specs)]
        limits = Limits(  # each bound near what the message needs, a little above or below it
            max_message_bytes=draw(st.integers(max(1, total - 2), total + 2)),
            max_header_bytes=draw(st.integers(max(1, len(packed) - 2), len(packed) + 2)),
            max_tensors=draw(st.integers(max(1, len(specs) - 1), len(specs) + 1)),
            max_rank=draw(st.integers(max(1, max(ranks, default=1) - 1), max(ranks, default=1) + 1)),
            max_name_len=draw(st.integers(1, max(map(len, names)) + 1)))
    if where == "header" and draw(st.integers(0, 4)) == 0:
        limits = draw(st.sampled_from([HUGE, TINY]))
    return [packed, *frames], limits


@settings(max_examples=200, deadline=None)
@given(case=malformed(), kind=st.sampled_from(["bytes", "zmq"]))
def test_mutated_messages_get_the_reference_outcome(case, kind):
    """Dropped, retyped and out-of-range fields, bad specs, extension types, broken msgpack, frame mismatches and
    Limits around the message's size: the same ProtocolError (or Message) from both codecs, and never a fast-path
    acceptance of something the reference refuses."""
    frames, limits = case
    want = assert_same_decode(as_frames(frames, kind), limits)
    event({"refused": lambda: f"refused {ErrorCode(want[2]).name}", "message": lambda: "still valid",
           "raised": lambda: f"raised {want[1].__name__}"}[want[0]]())


@pytest.mark.parametrize("field", ["max_message_bytes", "max_header_bytes", "max_tensors", "max_rank", "max_name_len"])
def test_limits_beyond_int64_do_not_crash_the_fast_path(field):
    """A Limits value of 2**70 or 2**64 (more than a C int64 holds): the fast path still takes valid messages and
    declines malformed ones, as the reference decides."""
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    message = Message(MsgType.ACTIVATIONS, JobId("r", 3, "c", 4), {"a": arr, "b": np.arange(5, dtype="<i8")}, {"m": [1, 2]}, 9)
    frames = as_frames(codec.encode(message), "zmq")
    for big in (2**63, 2**64, 2**70):
        limits = Limits(**{field: big})
        got = _codec.decode_fast(frames, limits)
        assert got is not None
        assert_same_message(got, codec.decode(frames, limits))
        for shape in ([2**62, 2**62], [2**32, 2**32], [MAX_INT], [2**63], [2**64 - 1], [-1]):
            bad = [_header(tensors=[{"name": "x", "dtype": "|u1", "shape": shape}]), b""]
            assert assert_same_decode(bad, limits)[0] == "refused"
    assert_same_decode(as_frames(codec.encode(message), "bytes"), HUGE)


# --- malformed input: encode ----------------------------------------------------------------------------------------

JOB = JobId("r", 0, "c", 1)


def _msg(kind=MsgType.FORWARD, job=JOB, tensors=None, meta=None, sent_ns=5):
    return Message(kind, job, {} if tensors is None else tensors, {"k": 1} if meta is None else meta, sent_ns)


ENCODE_REFUSALS = [
    ("unicode dtype", _msg(tensors={"x": np.array(["a"])}), "dtype"),
    ("object dtype", _msg(tensors={"x": np.array([object()])}), "dtype"),
    ("complex dtype", _msg(tensors={"x": np.zeros(2, np.complex64)}), "dtype"),
    ("uint16 dtype", _msg(tensors={"x": np.zeros(2, np.uint16)}), "dtype"),
    ("uint64 dtype", _msg(tensors={"x": np.zeros(2, np.uint64)}), "dtype"),
    ("datetime dtype", _msg(tensors={"x": np.zeros(2, "<M8[s]")}), "dtype"),
    ("structured dtype", _msg(tensors={"x": np.zeros(2, [("a", "<f4")])}), "dtype"),
    ("longdouble dtype", _msg(tensors={"x": np.zeros(2, np.longdouble)}), "dtype"),
    ("empty name", _msg(tensors={"": np.zeros(1)}), "name"),
    ("name of 257 characters", _msg(tensors={"n" * 257: np.zeros(1)}), "name"),
    ("names equal as str", _msg(tensors={1: np.zeros(1), "1": np.zeros(1)}), "unique"),
    ("rank 9", _msg(tensors={"x": np.zeros((1,) * 9)}), "rank"),
    *[(f"tensors on {kind.value}", _msg(kind, tensors={"x": np.zeros(2, np.float32)}), "carries no tensors")
      for kind in TYPES if kind not in TENSOR_TYPES],
    ("meta numpy scalar", _msg(meta={"x": np.float32(1)}), "msgpack"),
    ("meta object", _msg(meta={"x": object()}), "msgpack"),
    ("meta set", _msg(meta={"x": {1, 2}}), "msgpack"),
    ("meta int 2**64", _msg(meta={"x": 2**64}), "msgpack"),
    ("meta nested array", _msg(meta={"x": [1, {"y": np.zeros(2)}]}), "msgpack"),
    ("round -1", _msg(job=JobId("r", -1, "c", 1)), "non-negative"),
    ("seq 2**63", _msg(job=JobId("r", 0, "c", 2**63)), "non-negative"),
    ("round bool", _msg(job=JobId("r", True, "c", 1)), "non-negative"),
    ("seq numpy int", _msg(job=JobId("r", 0, "c", np.int64(1))), "non-negative"),
    ("run of 257 characters", _msg(job=JobId("r" * 257, 0, "c", 1)), "string"),
    ("client not a string", _msg(job=JobId("r", 0, 7, 1)), "string"),
    ("sent_ns 2**63", _msg(sent_ns=2**63), "non-negative"),
    ("sent_ns negative", _msg(sent_ns=-5), "non-negative"),
]


@pytest.mark.parametrize("message, text", [case[1:] for case in ENCODE_REFUSALS], ids=[case[0] for case in ENCODE_REFUSALS])
def test_encode_refusals_are_the_reference_refusals(message, text):
    """A message the wire cannot carry: encode_fast declines it and _codec.encode raises the reference's MessageError."""
    for float16 in (False, True):
        want = assert_same_encode(message, float16)
        assert want[0] == "refused" and text in want[2], want


odd_arrays = st.one_of(
    wire_arrays(min_rank=0),
    wire_arrays().map(lambda a: a[..., ::2] if a.ndim else a),  # strided
    wire_arrays().map(lambda a: a.T),                            # Fortran order
    wire_arrays().map(lambda a: a.astype(a.dtype.newbyteorder(">"))),
    st.sampled_from(["<u2", "<u4", "<u8", "<c8", "<M8[ns]", "|S3", "<U1", "O", ">c16"]).map(lambda dt: np.zeros(3, dt)),
    st.lists(st.floats(width=32), max_size=4),                   # a plain list: np.asarray makes it an array
    st.just(np.zeros((1,) * 9, np.float32)),
)
odd_values = st.one_of(header_values, st.sampled_from([np.float32(1), np.int64(3), object(), 2**64, -(2**64) + 1, 1j]))


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(TYPES),
       job=st.builds(JobId, st.text(max_size=4) | st.sampled_from(BAD_STRINGS), counts | st.sampled_from(BAD_COUNTS),
                     st.text(max_size=4) | st.sampled_from(BAD_STRINGS), counts | st.sampled_from(BAD_COUNTS)),
       tensors=st.dictionaries(tensor_names | st.sampled_from(["", "n" * 257, 0, 1, "1"]), odd_arrays, max_size=3),
       meta=st.dictionaries(st.text(max_size=4), odd_values, max_size=3),
       sent_ns=st.integers(1, MAX_INT) | st.sampled_from([-1, 2**63, True, 1.5]),
       float16=st.booleans())
def test_encode_of_arbitrary_messages_gets_the_reference_outcome(kind, job, tensors, meta, sent_ns, float16):
    """Bad job fields, odd and invalid arrays, non-msgpack meta: the same frames or the same MessageError."""
    assert_same_encode(Message(kind, job, tensors, meta, sent_ns), float16)


# --- backend selection ----------------------------------------------------------------------------------------------

def test_backend_uses_the_compiled_codec_unless_pure_is_forced():
    from edgepsl import wire

    if os.environ.get("EDGEPSL_PURE", "") not in ("", "0"):
        assert backend.encode is codec.encode and backend.decode is codec.decode
        assert backend.backend_name() == "pure (EDGEPSL_PURE=1)"
    else:
        assert backend.encode is _codec.encode and backend.decode is _codec.decode
        assert backend.backend_name() == "compiled" and backend.compiled_import_error() is None
    assert wire.encode is backend.encode and wire.decode is backend.decode


def test_pure_env_variable_selects_the_reference_codec():
    code = ("from edgepsl.wire import backend, codec, encode, decode; "
            "assert backend.encode is codec.encode and backend.decode is codec.decode; "
            "assert encode is codec.encode and decode is codec.decode; "
            "print(backend.backend_name())")
    env = dict(os.environ, EDGEPSL_PURE="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "pure (EDGEPSL_PURE=1)"


def test_a_shape_numpy_cannot_build_under_huge_limits_is_refused_not_raised():
    """Limits beyond numpy's own size limit let a zero-size shape through validation; building the array then fails
    inside decode, and that failure is the message's BAD_TENSOR refusal, never another exception."""
    limits = Limits(max_message_bytes=2**90)
    frames = [_header(tensors=[{"name": "x", "dtype": "<f4", "shape": [0, 2**40, 2**40]}]), b""]
    outcome = assert_same_decode(frames, limits)
    assert outcome[0] == "refused" and outcome[2] == ErrorCode.BAD_TENSOR and "cannot be shaped" in outcome[3]
    assert outcome[4] is not None
