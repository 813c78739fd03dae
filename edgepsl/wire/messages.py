"""The message schema: message types, error codes, job ids and the Message value passed to channels."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

import numpy as np

PROTOCOL_VERSION = 1

# Tensor dtypes allowed on the wire, spelled as numpy `dtype.str` (explicit little-endian byte order).
ALLOWED_DTYPES = frozenset({"<f2", "<f4", "<f8", "|i1", "|u1", "<i2", "<i4", "<i8", "|b1"})


class MsgType(str, enum.Enum):
    """Every message type of the round and control plane; the value is what travels in the header."""

    REGISTER = "register"
    WELCOME = "welcome"
    ROUND_START = "round_start"
    FORWARD = "forward"
    ACTIVATIONS = "activations"
    GRADIENTS = "gradients"
    GRAD_BACK = "grad_back"
    REPORT = "report"
    STATE_REQUEST = "state_request"
    STATE = "state"
    HEARTBEAT = "heartbeat"
    ERROR = "error"
    BYE = "bye"
    PROBE = "probe"
    PROBE_ECHO = "probe_echo"
    ARTIFACT_REQUEST = "artifact_request"
    ARTIFACT_CHUNK = "artifact_chunk"

    # Hash as the value string it equals (Enum's own __hash__ hashes the member name in Python code): consistent
    # with str equality, and a C-level hash for the sets and dicts every message is looked up in.
    __hash__ = str.__hash__


# Types that may carry tensor frames; every other type is header-only.
TENSOR_TYPES = frozenset({MsgType.FORWARD, MsgType.ACTIVATIONS, MsgType.GRADIENTS, MsgType.GRAD_BACK, MsgType.STATE,
                          MsgType.PROBE, MsgType.PROBE_ECHO, MsgType.ARTIFACT_CHUNK})

# Types whose float32 tensors may travel as float16 when a channel enables the float16 wire format.
FLOAT16_TYPES = frozenset({MsgType.FORWARD, MsgType.ACTIVATIONS, MsgType.GRADIENTS, MsgType.GRAD_BACK})

# Types a peer sends about itself: a server refuses them unless header `client` is the sender's own name.
SENDER_BOUND_TYPES = frozenset({MsgType.REGISTER, MsgType.FORWARD, MsgType.GRADIENTS, MsgType.BYE, MsgType.PROBE,
                                MsgType.ARTIFACT_REQUEST})

# Types exempt from duplicate suppression (they carry no job).
UNTRACKED_TYPES = frozenset({MsgType.HEARTBEAT, MsgType.ERROR})


class ErrorCode(enum.IntEnum):
    """Codes of ERROR replies: 1xx are raised by the wire itself, 2xx are for the runtime to use."""

    BAD_FRAMING = 100
    BAD_HEADER = 101
    BAD_VERSION = 102
    UNKNOWN_TYPE = 103
    BAD_TENSOR = 104
    TOO_LARGE = 105
    UNAUTHORIZED = 106
    IMPERSONATION = 107
    REJECTED = 200
    UNKNOWN_JOB = 201


class JobId(NamedTuple):
    """Identifies one job: a resent message carries the same JobId and is processed once."""

    run: str = ""
    round: int = 0
    client: str = ""
    seq: int = 0


@dataclass
class Message:
    """One protocol message: its type, job id, named tensors and a small msgpack-able `meta` map."""

    type: MsgType
    job: JobId = field(default_factory=JobId)
    tensors: Mapping[str, np.ndarray] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)
    sent_ns: int = 0

    def error_info(self) -> tuple[int, str]:
        """The (code, reason) of an ERROR message."""
        return int(self.meta.get("code", 0)), str(self.meta.get("reason", ""))


MAX_REASON_CHARS = 500


def error_message(code: int, reason: str, job: JobId | None = None) -> Message:
    """Build the ERROR reply for a refused message (job is the refused job's id when it could be read).

    The reason is cut to MAX_REASON_CHARS: it may quote values a peer sent.
    """
    return Message(MsgType.ERROR, job or JobId(), meta={"code": int(code), "reason": reason[:MAX_REASON_CHARS]})


def heartbeat_message() -> Message:
    """Build a heartbeat (header only, no job)."""
    return Message(MsgType.HEARTBEAT)
