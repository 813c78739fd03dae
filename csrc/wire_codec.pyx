# cython: language_level=3
"""Compiled fast path of the wire codec: encode and decode of well-formed messages, exactly as edgepsl.wire.codec.

Each function tries the common case with compiled checks and hands every message it does not take (anything
malformed, float16 casts, unusual arrays) to the pure-Python reference codec, which produces the result or the
exact error. `encode_fast` and `decode_fast` expose the fast path alone (None when they decline), so tests can
check that it takes what it should and that what it builds equals the reference's result.
"""
import time

import msgpack
import numpy as np

cimport numpy as cnp
from libc.stdint cimport int64_t

from edgepsl.wire import codec as _pure
from edgepsl.wire.messages import (ALLOWED_DTYPES, FLOAT16_TYPES, PROTOCOL_VERSION, TENSOR_TYPES, JobId, Message,
                                   MsgType)
from edgepsl.wire.validate import CASTS, ITEMSIZES, PLAIN_TYPES, TYPES, TensorSpec

cnp.import_array()

cdef object _ndarray = np.ndarray
cdef object _JobId = JobId
cdef object _Message = Message
cdef object _TensorSpec = TensorSpec
cdef object _new_tuple = tuple.__new__
cdef object _unpackb = msgpack.unpackb
cdef object _reject_ext = _pure.reject_ext
cdef object _thread_packer = _pure.thread_packer
cdef object _time_ns = time.time_ns
cdef object _UnpackException = msgpack.UnpackException
cdef dict _TYPES = TYPES
cdef frozenset _TENSOR_TYPES = TENSOR_TYPES
cdef frozenset _FLOAT16_TYPES = FLOAT16_TYPES
cdef dict _DTYPES = {name: np.dtype(name) for name in ALLOWED_DTYPES}      # wire name -> dtype
cdef dict _WIRE_NAMES = {np.dtype(name): name for name in ALLOWED_DTYPES}  # dtype -> wire name
cdef dict _ITEMSIZES = ITEMSIZES
cdef dict _CASTS = CASTS
cdef frozenset _PLAIN_TYPES = PLAIN_TYPES
cdef int64_t _MAX_INT = 0x7FFFFFFFFFFFFFFF
cdef int64_t _ENCODE_MAX_TENSORS = _pure.ENCODE_LIMITS.max_tensors
cdef Py_ssize_t _ENCODE_MAX_NAME = _pure.ENCODE_LIMITS.max_name_len
cdef Py_ssize_t _ENCODE_MAX_RANK = _pure.ENCODE_LIMITS.max_rank
cdef int _VERSION = PROTOCOL_VERSION
cdef Py_ssize_t _HEADER_KEYS = 9  # v, type, run, round, client, seq, sent_ns, tensors, meta: what encode writes


cdef inline bint _count_ok(object value):
    """A non-negative 64-bit int, as validate._count accepts it."""
    return type(value) is int and 0 <= value <= _MAX_INT


cdef inline bint _name_ok(object value, Py_ssize_t longest):
    return type(value) is str and len(<str>value) <= longest


cdef inline bint _job_ok(object run, object round_, object client, object seq, Py_ssize_t longest):
    """Whether the job fields are valid, as validate._read_job accepts them."""
    return _name_ok(run, longest) and _name_ok(client, longest) and _count_ok(round_) and _count_ok(seq)


cdef inline int64_t _clamp(object limit):
    """A limit as a C integer (a limit beyond 2**63 - 1 cannot be reached anyway)."""
    return _MAX_INT if limit > _MAX_INT else <int64_t>limit


cdef bint _plain(dict meta):
    """Whether meta holds only msgpack's plain types at any depth, as validate.check_plain accepts it.

    The fast path checks the rest of a header by its keys and types instead: it takes only headers with every key
    of the schema and no other (a timestamp under an unknown key is left to the reference), and tensor entries with
    no key besides name, dtype, shape and cast.
    """
    cdef list pending = [meta]
    while pending:
        container = pending.pop()
        for value in ((<dict>container).values() if type(container) is dict else <list>container):
            kind = type(value)
            if kind is dict or kind is list:
                pending.append(value)
            elif kind not in _PLAIN_TYPES:
                return False
    return True


cdef object _spec(object raw, int64_t max_bytes, Py_ssize_t max_rank, Py_ssize_t max_name):
    """The TensorSpec of one declared tensor, or None if any rule (or an overflow) says no."""
    cdef int64_t extent, dim
    cdef bint empty = False
    if type(raw) is not dict:
        return None
    cdef dict spec = <dict>raw
    name = spec.get("name")
    dtype = spec.get("dtype")
    shape = spec.get("shape")
    cast = spec.get("cast")
    if len(spec) != (3 if cast is None else 4):  # another key: the reference checks what it holds
        return None
    if type(name) is not str or not 0 < len(<str>name) <= max_name:
        return None
    if type(dtype) is not str:
        return None
    itemsize = _ITEMSIZES.get(dtype)
    if itemsize is None:
        return None
    if type(shape) is not list or len(<list>shape) > max_rank:
        return None
    extent = <int64_t>itemsize  # the bytes without the zero dimensions, as validate._tensor_spec bounds them
    for d in <list>shape:
        if type(d) is not int or not 0 <= d <= max_bytes:  # larger dimensions: the reference refuses them
            return None
        dim = <int64_t>d
        if dim == 0:
            empty = True
        elif extent > max_bytes // dim:
            return None
        else:
            extent *= dim
    if extent > max_bytes:
        return None
    if cast is not None and (type(cast) is not str or _CASTS.get(dtype) != cast):
        return None
    return _new_tuple(_TensorSpec, (name, dtype, tuple(<list>shape), cast, 0 if empty else extent))


cpdef object decode_fast(object frames, object limits):
    """decode() for a well-formed message, or None to leave the message (valid or not) to the reference codec."""
    cdef Py_ssize_t nframes = len(frames)
    cdef Py_ssize_t i, ntensors
    cdef int64_t max_bytes = _clamp(limits.max_message_bytes)
    cdef int64_t total = 0
    cdef Py_ssize_t max_name = <Py_ssize_t>_clamp(limits.max_name_len)
    cdef Py_ssize_t max_rank = <Py_ssize_t>_clamp(limits.max_rank)
    if nframes == 0:
        return None
    head = memoryview(frames[0])
    if head.nbytes > limits.max_header_bytes:
        return None
    try:
        raw = _unpackb(head, raw=False, strict_map_key=True, ext_hook=_reject_ext)
    except (ValueError, TypeError, OverflowError, _UnpackException):
        return None
    if type(raw) is not dict:
        return None
    cdef dict header = <dict>raw
    if len(header) != _HEADER_KEYS:  # a key missing (it has a default) or an unknown one: the reference decides
        return None
    version = header.get("v")
    if type(version) is not int or version != _VERSION:
        return None
    kind = header.get("type")
    if type(kind) is not str:
        return None
    kind = _TYPES.get(kind)
    if kind is None:
        return None
    run, round_, client, seq = header.get("run", ""), header.get("round", 0), header.get("client", ""), header.get("seq", 0)
    sent_ns = header.get("sent_ns", 0)
    if not _job_ok(run, round_, client, seq, max_name) or not _count_ok(sent_ns):
        return None
    job = _new_tuple(_JobId, (run, round_, client, seq))
    meta = header.get("meta", {})
    if type(meta) is not dict or (meta and not _plain(<dict>meta)):
        return None
    declared = header.get("tensors", ())
    if type(declared) is not list and type(declared) is not tuple:
        return None
    ntensors = len(declared)
    tensors = {}
    if ntensors == 0:
        if nframes != 1:
            return None
        return _Message(kind, job, tensors, meta, sent_ns)
    if ntensors > limits.max_tensors or kind not in _TENSOR_TYPES or nframes - 1 != ntensors:
        return None
    specs = []
    for raw_spec in declared:
        spec = _spec(raw_spec, max_bytes, max_rank, max_name)
        if spec is None:
            return None
        specs.append(spec)
    if ntensors > 1 and len({(<tuple>s)[0] for s in specs}) != ntensors:
        return None
    views = []
    for i in range(ntensors):
        view = memoryview(frames[i + 1])
        if view.nbytes != (<tuple>specs[i])[4]:
            return None
        total += view.nbytes
        views.append(view)
    if total > max_bytes:
        return None
    for i in range(ntensors):
        spec = specs[i]
        try:
            arr = _ndarray((<tuple>spec)[2], _DTYPES[(<tuple>spec)[1]], views[i])
        except (ValueError, TypeError):
            return None  # the reference names the error
        cast = (<tuple>spec)[3]
        tensors[(<tuple>spec)[0]] = arr if cast is None else arr.astype(cast)
    return _Message(kind, job, tensors, meta, sent_ns)


def decode(frames, limits):
    """Decode and validate [header, frames...], as edgepsl.wire.codec.decode (same result, same errors)."""
    message = decode_fast(frames, limits)
    return message if message is not None else _pure.decode(frames, limits)


cpdef object encode_fast(object message, bint float16=False):
    """encode() for a well-formed message of contiguous arrays, or None to leave it to the reference codec."""
    cdef cnp.ndarray arr
    kind = message.type
    job = message.job
    if type(job) is not _JobId or type(kind) is not MsgType:
        return None
    run, round_, client, seq = <tuple>job
    if not _job_ok(run, round_, client, seq, _ENCODE_MAX_NAME):
        return None
    sent_ns = message.sent_ns or _time_ns()
    if not _count_ok(sent_ns):
        return None
    tensors = message.tensors
    if type(tensors) is not dict:  # a dict's names are unique
        return None
    frames = [None]
    specs = []
    cast = float16 and kind in _FLOAT16_TYPES
    for name, value in (<dict>tensors).items():
        if type(name) is not str or not 0 < len(<str>name) <= _ENCODE_MAX_NAME or type(value) is not _ndarray:
            return None
        arr = <cnp.ndarray>value
        wire = _WIRE_NAMES.get(arr.dtype)
        if (wire is None or cnp.PyArray_NDIM(arr) == 0 or cnp.PyArray_NDIM(arr) > _ENCODE_MAX_RANK
                or not cnp.PyArray_IS_C_CONTIGUOUS(arr) or (cast and wire == "<f4")):
            return None
        frames.append(arr)
        specs.append({"name": name, "dtype": wire, "shape": list(value.shape)})
    if specs and (len(specs) > _ENCODE_MAX_TENSORS or kind not in _TENSOR_TYPES):
        return None
    header = {
        "v": _VERSION,
        "type": kind,
        "run": run,
        "round": round_,
        "client": client,
        "seq": seq,
        "sent_ns": sent_ns,
        "tensors": specs,
        "meta": dict(message.meta),
    }
    try:
        frames[0] = _thread_packer().pack(header)
    except (TypeError, ValueError, OverflowError):
        return None
    return frames


def encode(message, *, float16=False):
    """Encode a message as [header bytes, one contiguous array per tensor], as edgepsl.wire.codec.encode."""
    frames = encode_fast(message, float16)
    return frames if frames is not None else _pure.encode(message, float16=float16)
