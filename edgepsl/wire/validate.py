"""Validation of received headers and frames against the schema and the size limits (pure functions)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from edgepsl.wire.errors import ProtocolError
from edgepsl.wire.messages import ALLOWED_DTYPES, PROTOCOL_VERSION, TENSOR_TYPES, ErrorCode, JobId, MsgType

_MAX_INT = 2**63 - 1
CASTS = {"<f2": "<f4"}  # wire dtype -> dtype it may be converted back to on receipt


@dataclass(frozen=True)
class Limits:
    """Bounds every received message must respect; the defaults suit 1-4 GB boards."""

    max_message_bytes: int = 256 * 2**20
    max_header_bytes: int = 64 * 2**10
    max_tensors: int = 512
    max_rank: int = 8
    max_name_len: int = 256

    def __post_init__(self) -> None:
        for name in ("max_message_bytes", "max_header_bytes", "max_tensors", "max_rank", "max_name_len"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"Limits.{name} must be a positive integer, got {getattr(self, name)!r}")


_DEFAULT_LIMITS = Limits()
ITEMSIZES = {name: np.dtype(name).itemsize for name in ALLOWED_DTYPES}  # wire dtype -> bytes per value
TYPES = {kind.value: kind for kind in MsgType}  # header 'type' string -> MsgType


class TensorSpec(NamedTuple):
    """One tensor as declared in a header: name, wire dtype, shape, the dtype to restore (cast), frame bytes."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    cast: str | None
    nbytes: int


class Header(NamedTuple):
    """A validated header: message type, job id, send time, tensor specs and the meta map."""

    type: MsgType
    job: JobId
    sent_ns: int
    tensors: tuple[TensorSpec, ...]
    meta: Mapping[str, Any]


# tuple.__new__(NamedTupleClass, values) builds a named tuple without the Python-level __new__ of
# NamedTuple(...) calls; it halves the cost of the three built for every received message.
_make = tuple.__new__


def _fail(code: ErrorCode, reason: str) -> ProtocolError:
    return ProtocolError(code, reason)


def _string(raw: Mapping[str, Any], key: str, limits: Limits) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str) or len(value) > limits.max_name_len:
        raise _fail(ErrorCode.BAD_HEADER, f"header field {key!r} must be a string of at most {limits.max_name_len} characters")
    return value


def _count(raw: Mapping[str, Any], key: str) -> int:
    value = raw.get(key, 0)
    if type(value) is not int or not 0 <= value <= _MAX_INT:
        raise _fail(ErrorCode.BAD_HEADER, f"header field {key!r} must be a non-negative 64-bit integer")
    return value


def _read_job(raw: Mapping[str, Any], limits: Limits) -> JobId:
    return JobId(_string(raw, "run", limits), _count(raw, "round"), _string(raw, "client", limits), _count(raw, "seq"))


def _job_and_time(raw: Mapping[str, Any], limits: Limits) -> tuple[JobId, int]:
    """The job id and sent_ns, checked in one expression for the common case; a failure is named by the slow path.

    For ints, `0 <= a | b | c <= 2**63 - 1` holds exactly when each of them does: a negative one makes the OR
    negative, and one of 2**63 or more sets a bit at or above 63.
    """
    get = raw.get
    run, round_, client, seq, sent_ns = get("run", ""), get("round", 0), get("client", ""), get("seq", 0), get("sent_ns", 0)
    if (type(run) is str and type(client) is str and type(round_) is int and type(seq) is int and type(sent_ns) is int
            and len(run) <= limits.max_name_len and len(client) <= limits.max_name_len
            and 0 <= round_ | seq | sent_ns <= _MAX_INT):
        return _make(JobId, (run, round_, client, seq)), sent_ns
    job = _read_job(raw, limits)
    return job, _count(raw, "sent_ns")


def parse_job(raw: Any) -> JobId | None:
    """The job id of an unpacked header if it can be read, else None (used to address ERROR replies)."""
    if not isinstance(raw, dict):
        return None
    try:
        return _read_job(raw, _DEFAULT_LIMITS)
    except ProtocolError:
        return None


def _bad_name(index: int, limits: Limits) -> ProtocolError:
    return _fail(ErrorCode.BAD_TENSOR, f"tensor #{index} needs a name of 1 to {limits.max_name_len} characters")


def _bad_rank(name: str, limits: Limits) -> ProtocolError:
    return _fail(ErrorCode.BAD_TENSOR, f"tensor {name!r} needs a shape list of rank at most {limits.max_rank}")


def _tensors_on(kind: MsgType) -> ProtocolError:
    return _fail(ErrorCode.BAD_TENSOR, f"a {kind.value!r} message carries no tensors")


def _not_unique() -> ProtocolError:
    return _fail(ErrorCode.BAD_TENSOR, "tensor names must be unique within a message")


def _tensor_spec(raw: Any, limits: Limits, index: int) -> TensorSpec:
    if not isinstance(raw, dict):
        raise _fail(ErrorCode.BAD_TENSOR, f"tensor #{index} must be a map with name, dtype and shape")
    name, dtype, shape, cast = raw.get("name"), raw.get("dtype"), raw.get("shape"), raw.get("cast")
    if not isinstance(name, str) or not 0 < len(name) <= limits.max_name_len:
        raise _bad_name(index, limits)
    itemsize = ITEMSIZES.get(dtype) if isinstance(dtype, str) else None
    if itemsize is None:
        raise _fail(ErrorCode.BAD_TENSOR, f"tensor {name!r} has dtype {dtype!r}; allowed: {sorted(ALLOWED_DTYPES)}")
    if not isinstance(shape, (list, tuple)) or len(shape) > limits.max_rank:
        raise _bad_rank(name, limits)
    nbytes = extent = itemsize  # extent: the bytes without the zero dimensions, which numpy must also be able to shape
    for d in shape:
        if type(d) is not int or not 0 <= d <= _MAX_INT:
            raise _fail(ErrorCode.BAD_TENSOR, f"tensor {name!r} has a shape with non-integer or negative dimensions")
        nbytes *= d
        if d:
            extent *= d
    if cast is not None and CASTS.get(dtype) != cast:
        raise _fail(ErrorCode.BAD_TENSOR, f"tensor {name!r} cannot be cast from {dtype!r} to {cast!r}")
    if extent > limits.max_message_bytes:
        if nbytes:
            raise _fail(ErrorCode.TOO_LARGE, f"tensor {name!r} declares {nbytes} bytes, over the {limits.max_message_bytes}-byte cap")
        raise _fail(ErrorCode.TOO_LARGE, f"tensor {name!r} has no elements, but its non-zero dimensions span {extent} bytes, "
                                         f"over the {limits.max_message_bytes}-byte cap")
    return _make(TensorSpec, (name, dtype, tuple(shape), cast, nbytes))


PLAIN_TYPES = frozenset({type(None), bool, int, float, str, bytes})  # what a header may hold besides maps and lists


def check_plain(header: dict) -> None:
    """Refuse a header that holds anything but msgpack's plain types, under any key, known or not, at any depth:
    msgpack decodes extension type -1 (its timestamp) without consulting the ext_hook that refuses every other one."""
    for key, top in header.items():
        pending = [top]
        while pending:
            value = pending.pop()
            kind = type(value)
            if kind is dict:
                pending.extend(value.values())
            elif kind is list:
                pending.extend(value)
            elif kind not in PLAIN_TYPES:
                raise _fail(ErrorCode.BAD_HEADER, f"header field {key!r} holds a {kind.__name__}: extension types are refused")


def parse_header(raw: Any, limits: Limits) -> Header:
    """Validate an unpacked header map and return it as a Header; raise ProtocolError with the reply code."""
    if not isinstance(raw, dict):
        raise _fail(ErrorCode.BAD_HEADER, "the header must be a msgpack map")
    check_plain(raw)
    version = raw.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise _fail(ErrorCode.BAD_VERSION, f"protocol version {version!r} is not supported (this peer speaks {PROTOCOL_VERSION})")
    kind = raw.get("type")
    kind = TYPES.get(kind) if isinstance(kind, str) else None
    if kind is None:
        raise _fail(ErrorCode.UNKNOWN_TYPE, f"unknown message type {raw.get('type')!r}")
    job, sent_ns = _job_and_time(raw, limits)
    meta = raw.get("meta", {})
    if not isinstance(meta, dict):
        raise _fail(ErrorCode.BAD_HEADER, "header field 'meta' must be a map")
    tensors = raw.get("tensors", ())
    if not isinstance(tensors, (list, tuple)):
        raise _fail(ErrorCode.BAD_HEADER, "header field 'tensors' must be a list")
    if not tensors:
        return _make(Header, (kind, job, sent_ns, (), meta))
    if len(tensors) > limits.max_tensors:
        raise _fail(ErrorCode.TOO_LARGE, f"{len(tensors)} tensors declared, over the limit of {limits.max_tensors}")
    if kind not in TENSOR_TYPES:
        raise _tensors_on(kind)
    parsed = []
    for index, raw_spec in enumerate(tensors):
        parsed.append(_tensor_spec(raw_spec, limits, index))
    specs = tuple(parsed)
    if len(specs) > 1 and len({s.name for s in specs}) != len(specs):
        raise _not_unique()
    return _make(Header, (kind, job, sent_ns, specs, meta))


def check_outgoing(header: Mapping[str, Any], kind: MsgType, limits: Limits) -> None:
    """parse_header's checks that an encoder's own header can fail, without building a Header.

    `header` holds the job fields, sent_ns and a list of tensor specs written from numpy arrays, whose dtype,
    shape and cast are valid by construction; what remains is checked here: job fields, send time, tensor names
    (non-empty, bounded, unique), ranks, their count, and tensors on a header-only type.
    """
    _job_and_time(header, limits)
    specs = header["tensors"]
    if not specs:
        return
    if len(specs) > limits.max_tensors:
        raise _fail(ErrorCode.TOO_LARGE, f"{len(specs)} tensors declared, over the limit of {limits.max_tensors}")
    if kind not in TENSOR_TYPES:
        raise _tensors_on(kind)
    for index, spec in enumerate(specs):
        if not 0 < len(spec["name"]) <= limits.max_name_len:
            raise _bad_name(index, limits)
        if len(spec["shape"]) > limits.max_rank:
            raise _bad_rank(spec["name"], limits)
    if len(specs) > 1 and len({spec["name"] for spec in specs}) != len(specs):
        raise _not_unique()


def check_frames(header: Header, frames: Sequence[memoryview], limits: Limits) -> None:
    """Check that the tensor frames match the header: one frame per tensor, each of the declared length."""
    if len(frames) != len(header.tensors):
        raise _fail(ErrorCode.BAD_FRAMING, f"header declares {len(header.tensors)} tensors but {len(frames)} frames followed")
    total = 0
    for spec, frame in zip(header.tensors, frames):
        length = frame.nbytes
        if length != spec.nbytes:
            raise _fail(ErrorCode.BAD_TENSOR, f"tensor {spec.name!r} of shape {list(spec.shape)} {spec.dtype} needs {spec.nbytes} bytes, its frame has {length}")
        total += length
    if total > limits.max_message_bytes:
        raise _fail(ErrorCode.TOO_LARGE, f"message carries {total} bytes, over the {limits.max_message_bytes}-byte cap")
