"""Encoding a Message to [msgpack header, raw frames...] and decoding received frames back, validated.

This is the reference codec; channels use edgepsl.wire.backend, whose compiled fast path gives the same results.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Sequence

import msgpack
import numpy as np

from edgepsl.wire.errors import MessageError, ProtocolError
from edgepsl.wire.messages import ALLOWED_DTYPES, FLOAT16_TYPES, PROTOCOL_VERSION, ErrorCode, Message
from edgepsl.wire.validate import Limits, check_frames, check_outgoing, parse_header, parse_job

Frames = Sequence[Any]  # bytes, memoryview, numpy arrays or zmq.Frame: anything exposing the buffer protocol

# Bounds an encoder's own header must keep (names, ranks, tensor count); sizes are the receiver's to cap.
ENCODE_LIMITS = Limits(max_message_bytes=2**62, max_header_bytes=2**62, max_tensors=2**31)
_PACKERS = threading.local()


def reject_ext(code: int, data: bytes) -> None:
    """msgpack ext_hook: headers may not carry extension types."""
    raise ValueError(f"msgpack extension type {code} is not allowed in headers")


def _wire_array(name: str, value: Any, float16: bool) -> tuple[np.ndarray, dict[str, Any]]:
    arr = np.asarray(value)
    dtype = arr.dtype.str
    if dtype not in ALLOWED_DTYPES:
        little = arr.dtype.newbyteorder("<")
        if little.str not in ALLOWED_DTYPES:
            raise MessageError(f"tensor {name!r} has dtype {arr.dtype}; the wire carries only {sorted(ALLOWED_DTYPES)}")
        arr = arr.astype(little)
        dtype = little.str
    if float16 and dtype == "<f4":
        return np.ascontiguousarray(arr.astype("<f2")), {"name": name, "dtype": "<f2", "shape": list(arr.shape), "cast": "<f4"}
    return np.ascontiguousarray(arr), {"name": name, "dtype": dtype, "shape": list(arr.shape)}


def thread_packer() -> msgpack.Packer:
    """This thread's msgpack packer: one is reused across calls, and never shared between threads."""
    packer = getattr(_PACKERS, "packer", None)
    if packer is None:
        packer = _PACKERS.packer = msgpack.Packer(use_bin_type=True)
    return packer


def encode(message: Message, *, float16: bool = False) -> list[Any]:
    """Encode a message as [header bytes, one contiguous array per tensor]; float16 applies to activations and gradients."""
    cast = float16 and message.type in FLOAT16_TYPES
    frames: list[Any] = [b""]
    specs = []
    for name, value in message.tensors.items():
        arr, spec = _wire_array(str(name), value, cast)
        frames.append(arr)
        specs.append(spec)
    job = message.job
    header = {
        "v": PROTOCOL_VERSION,
        "type": message.type,  # a str enum: msgpack writes its value
        "run": job.run,
        "round": job.round,
        "client": job.client,
        "seq": job.seq,
        "sent_ns": message.sent_ns or time.time_ns(),
        "tensors": specs,
        "meta": dict(message.meta),
    }
    try:
        check_outgoing(header, message.type, ENCODE_LIMITS)
        frames[0] = thread_packer().pack(header)
    except ProtocolError as exc:
        raise MessageError(f"cannot encode {message.type.value!r} message: {exc.reason}") from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise MessageError(f"cannot encode {message.type.value!r} message: meta must hold only msgpack types ({exc})") from None
    return frames


def unpack_header(frame: Any, limits: Limits) -> Any:
    """Unpack the header frame with msgpack (no extension types), enforcing the header size bound."""
    view = memoryview(frame)
    if view.nbytes > limits.max_header_bytes:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"header of {view.nbytes} bytes is over the {limits.max_header_bytes}-byte limit")
    try:
        return msgpack.unpackb(view, raw=False, strict_map_key=True, ext_hook=reject_ext)
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        raise ProtocolError(ErrorCode.BAD_HEADER, f"header is not valid msgpack: {exc}") from None


def decode(frames: Frames, limits: Limits) -> Message:
    """Decode and validate [header, frames...]; tensors are zero-copy views of the frames unless cast back from float16."""
    if not frames:
        raise ProtocolError(ErrorCode.BAD_FRAMING, "empty message: a header frame is required")
    raw = unpack_header(frames[0], limits)
    views = list(map(memoryview, frames[1:]))
    try:
        header = parse_header(raw, limits)
        check_frames(header, views, limits)
    except ProtocolError as exc:
        exc.job = parse_job(raw)
        raise
    except (TypeError, ValueError, OverflowError) as exc:  # a malformed value the explicit checks did not foresee
        refusal = ProtocolError(ErrorCode.BAD_HEADER, f"malformed header: {exc}")
        refusal.job = parse_job(raw)
        raise refusal from None
    tensors = {}
    for spec, view in zip(header.tensors, views):
        try:  # validation keeps numpy's own limits; should one still be hit, it is this message's fault, not the receiver's
            arr = np.ndarray(spec.shape, spec.dtype, view)  # a view of the frame, as np.frombuffer(...).reshape(...)
        except (ValueError, TypeError) as exc:
            refusal = ProtocolError(ErrorCode.BAD_TENSOR, f"tensor {spec.name!r} cannot be shaped: {exc}")
            refusal.job = header.job
            raise refusal from None
        tensors[spec.name] = arr.astype(spec.cast) if spec.cast else arr
    return Message(header.type, header.job, tensors, header.meta, header.sent_ns)
