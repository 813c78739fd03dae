"""The runtime's messages as typed payloads: one class per message and phase, each with encode() and a validating decode().

A payload's fields travel in the wire header's `meta` map (and its tensors as frames). decode() checks every field
(presence, type, finiteness, range, list sizes, tensor names, shapes and dtypes) and raises PayloadError naming the
message, the field and the problem; nothing else in the runtime reads `meta`. docs/protocol.md's field tables are
generated from these classes (`python -m edgepsl.runtime.protocol --write docs/protocol.md`).
"""
from __future__ import annotations

import dataclasses
import enum
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence, TypeVar

import numpy as np

from edgepsl.runtime.artifact_store import MAX_ARCHIVE_BYTES, Chunk
from edgepsl.runtime.config import MAX_CHUNK_KB, RunConfig
from edgepsl.runtime.errors import NonFiniteError, PayloadError, RunConfigError
from edgepsl.runtime.microbatch import micro_sizes
from edgepsl.segment import Manifest
from edgepsl.wire import ErrorCode, JobId, Message, MsgType, error_message

MAX_ROLES = 4096          # bound on per-client and per-role lists and maps
MAX_NAME = 256            # role names, endpoints, tensor names
MAX_REASON = 500          # bye and error reasons (the wire cuts ERROR reasons to this too)
MAX_STATE_TENSORS = 512   # the wire's own bound on tensors per message
MAX_CHUNK_BYTES = MAX_CHUNK_KB << 10  # bound on one artifact chunk (the coordinator sends artifact_chunk_kb)
FWD, BWD = 0, 1           # job kinds, as in edgepsl.plan (0 forward, 1 backward)
MAX_MICRO = 4096          # bound on a client's micro-batches per round
MAX_JOBS = 2 ** 16        # bound on a helper's jobs per round (two per client and micro-batch)
KIND_WORDS = ("fwd", "bwd")
CLIENT_PARTS = ("part1_fwd", "part1_bwd", "part3_fwd", "part3_bwd")
HELPER_PARTS = ("part2_fwd", "part2_bwd")
LAST_PARTS = ("part3_fwd", "part3_bwd")  # a helper's part-3 in the two-part split (labels = "helper")
CLIENT_STEPS = ("part1_fwd", "part3", "part1_bwd")


class RuntimeCode(enum.IntEnum):
    """ERROR codes the runtime adds to the wire's (docs/protocol.md section 6)."""

    BAD_PAYLOAD = 202   # a message's payload failed validation (the reason names the field)
    DIVERGED = 203      # training diverged: a non-finite loss or tensor of the sender's own training
    ROLE_FAILED = 204   # a role cannot go on (start-up error, lost peer, timeout); the reason names the cause
    BUSY = 205          # a helper's buffer for jobs that arrive before their round is full
    CANCELLED = 206     # a job of a round that was closed without its client (lost or dropped as a straggler)


def code_name(code: int) -> str:
    """The name of a wire or runtime ERROR code (the number when it is neither)."""
    for kind in (ErrorCode, RuntimeCode):
        if code in kind._value2member_map_:
            return kind(code).name
    return str(code)


# ---- field checks ----

class Check:
    """Validates one decoded msgpack value; raises PayloadError(kind, path, problem)."""

    doc = ""

    def __call__(self, value: Any, kind: str, path: str) -> Any:  # pragma: no cover - interface
        raise NotImplementedError


def _fail(kind: str, path: str, problem: str) -> PayloadError:
    return PayloadError(kind, path, problem)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Str(Check):
    """A string of at most `max_len` characters (and at least 1 when `empty` is False)."""

    max_len: int = MAX_NAME
    empty: bool = False

    @property
    def doc(self) -> str:  # type: ignore[override]
        return f"str (≤ {self.max_len} chars)"

    def __call__(self, value: Any, kind: str, path: str) -> str:
        if not isinstance(value, str):
            raise _fail(kind, path, f"must be a string, got {type(value).__name__}")
        if len(value) > self.max_len or (not self.empty and not value):
            raise _fail(kind, path, f"must have 1 to {self.max_len} characters, got {len(value)}")
        return value


@dataclass(frozen=True)
class Int(Check):
    """An integer in [lo, hi]."""

    lo: int = 0
    hi: int = 2 ** 63 - 1

    @property
    def doc(self) -> str:  # type: ignore[override]
        return f"int in [{self.lo}, " + ("2^63)" if self.hi >= 2 ** 62 else f"{self.hi}]")

    def __call__(self, value: Any, kind: str, path: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _fail(kind, path, f"must be an integer, got {type(value).__name__}")
        if not self.lo <= value <= self.hi:
            raise _fail(kind, path, f"is {value}, out of range [{self.lo}, {self.hi}]")
        return value


@dataclass(frozen=True)
class Float(Check):
    """A finite number in [lo, hi] (integers accepted), returned as float."""

    lo: float = -math.inf
    hi: float = math.inf

    @property
    def doc(self) -> str:  # type: ignore[override]
        if self.lo == -math.inf and self.hi == math.inf:
            return "finite float"
        if self.hi == math.inf:
            return f"finite float ≥ {self.lo:g}"
        return f"finite float in [{self.lo:g}, {self.hi:g}]"

    def __call__(self, value: Any, kind: str, path: str) -> float:
        if not _number(value):
            raise _fail(kind, path, f"must be a number, got {type(value).__name__}")
        number = float(value)
        if not math.isfinite(number):
            raise NonFiniteError(kind, path, f"is {number}, not finite")
        if not self.lo <= number <= self.hi:
            raise _fail(kind, path, f"is {number:g}, out of range [{self.lo:g}, {self.hi:g}]")
        return number


@dataclass(frozen=True)
class Bool(Check):
    """true or false."""

    doc = "bool"

    def __call__(self, value: Any, kind: str, path: str) -> bool:
        if not isinstance(value, bool):
            raise _fail(kind, path, f"must be true or false, got {type(value).__name__}")
        return value


@dataclass(frozen=True)
class Sha256(Check):
    """A sha256 as 64 lowercase hex digits."""

    doc = "str, 64 lowercase hex digits"

    def __call__(self, value: Any, kind: str, path: str) -> str:
        if not isinstance(value, str) or len(value) != 64 or value.strip("0123456789abcdef"):
            raise _fail(kind, path, f"must be a sha256 as 64 lowercase hex digits, got {str(value)[:80]!r}")
        return value


@dataclass(frozen=True)
class OneOf(Check):
    """One of a few fixed values."""

    values: tuple[Any, ...]

    @property
    def doc(self) -> str:  # type: ignore[override]
        return " or ".join(repr(v).replace("'", '"') for v in self.values)

    def __call__(self, value: Any, kind: str, path: str) -> Any:
        if isinstance(value, bool) or value not in self.values:
            raise _fail(kind, path, f"is {value!r}; expected one of {', '.join(map(repr, self.values))}")
        return value


@dataclass(frozen=True)
class Opt(Check):
    """nil or a value passing `inner`."""

    inner: Check

    @property
    def doc(self) -> str:  # type: ignore[override]
        return f"nil or {self.inner.doc}"

    def __call__(self, value: Any, kind: str, path: str) -> Any:
        return None if value is None else self.inner(value, kind, path)


@dataclass(frozen=True)
class ListOf(Check):
    """A list of at most `max_len` items (exactly `length` when given), each passing `item`."""

    item: Check
    max_len: int = MAX_ROLES
    length: int | None = None

    @property
    def doc(self) -> str:  # type: ignore[override]
        size = f"{self.length}" if self.length is not None else f"≤ {self.max_len}"
        return f"list ({size}) of {self.item.doc}"

    def __call__(self, value: Any, kind: str, path: str) -> list:
        if not isinstance(value, (list, tuple)):
            raise _fail(kind, path, f"must be a list, got {type(value).__name__}")
        if self.length is not None and len(value) != self.length:
            raise _fail(kind, path, f"must have {self.length} items, got {len(value)}")
        if len(value) > self.max_len:
            raise _fail(kind, path, f"has {len(value)} items, more than {self.max_len}")
        return [self.item(v, kind, f"{path}[{k}]") for k, v in enumerate(value)]


@dataclass(frozen=True)
class MapOf(Check):
    """A map of string keys (exactly `keys` when given, else at most `max_len`) to values passing `value`."""

    value: Check
    max_len: int = MAX_ROLES
    keys: tuple[str, ...] | None = None

    @property
    def doc(self) -> str:  # type: ignore[override]
        if self.keys is not None:
            return f"map {{{', '.join(self.keys)}}} of {self.value.doc}"
        return f"map (≤ {self.max_len}) of name to {self.value.doc}"

    def __call__(self, value: Any, kind: str, path: str) -> dict:
        if not isinstance(value, Mapping):
            raise _fail(kind, path, f"must be a map, got {type(value).__name__}")
        if len(value) > self.max_len:
            raise _fail(kind, path, f"has {len(value)} entries, more than {self.max_len}")
        if self.keys is not None and set(value) != set(self.keys):
            raise _fail(kind, path, f"must have exactly the keys {', '.join(self.keys)}, got {sorted(map(str, value))}")
        out = {}
        for key, item in value.items():
            Str()(key, kind, f"{path} key")
            out[key] = self.value(item, kind, f"{path}[{key!r}]")
        return out


R = TypeVar("R", bound="Record")


@dataclass(frozen=True)
class Nested(Check):
    """A map decoded as a Record class."""

    record: type

    @property
    def doc(self) -> str:  # type: ignore[override]
        return f"`{self.record.__name__}` map"

    def __call__(self, value: Any, kind: str, path: str) -> Any:
        return self.record.from_meta(value, kind, path)


@dataclass(frozen=True)
class Config(Check):
    """A run configuration (RunConfig.to_dict()), validated by RunConfig.from_dict."""

    doc = "map of the run configuration's keys (docs/runtime.md)"

    def __call__(self, value: Any, kind: str, path: str) -> RunConfig:
        if not isinstance(value, Mapping):
            raise _fail(kind, path, f"must be a map, got {type(value).__name__}")
        try:
            return RunConfig.from_dict(value)
        except RunConfigError as exc:
            raise _fail(kind, path, str(exc)) from None


def spec(check: Check, doc: str, **kwargs: Any) -> Any:
    """A payload field: its check and one line for the docs (keyword default / default_factory as in dataclasses)."""
    return field(metadata={"check": check, "doc": doc}, **kwargs)


# ---- records and payloads ----

@dataclass(frozen=True)
class Record:
    """A map of checked fields; from_meta() validates, to_meta() gives the plain msgpack-able map."""

    def check(self, kind: str, path: str) -> None:
        """Cross-field checks after every field passed its own (override; raise PayloadError)."""

    @classmethod
    def from_meta(cls: type[R], meta: Any, kind: str, path: str = "") -> R:
        """Validate a map field by field; PayloadError names the first bad field."""
        if not isinstance(meta, Mapping):
            raise _fail(kind, path or "meta", f"must be a map, got {type(meta).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls) if "check" in f.metadata}
        unknown = sorted(str(k) for k in meta if k not in fields and k != "phase")
        if unknown:
            raise _fail(kind, f"{path}.{unknown[0]}" if path else unknown[0], "is not a field of this message")
        values = {}
        for name, f in fields.items():
            where = f"{path}.{name}" if path else name
            if name not in meta:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise _fail(kind, where, "is missing")
                continue
            values[name] = f.metadata["check"](meta[name], kind, where)
        record = cls(**values)
        record.check(kind, path)
        return record

    def to_meta(self) -> dict[str, Any]:
        """The record as a plain map (nested records as maps, RunConfig as its dict)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if "check" in f.metadata}


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_meta()
    if isinstance(value, RunConfig):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


P = TypeVar("P", bound="Payload")


@dataclass(frozen=True)
class TensorShape:
    """The one shape and dtype a tensor of a message must have."""

    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass(frozen=True)
class Payload(Record):
    """The payload of one message type (and phase): encode() to a wire Message, decode() with validation."""

    TYPE: ClassVar[MsgType]
    PHASE: ClassVar[str | None] = None
    DIRECTION: ClassVar[str] = ""
    TENSORS: ClassVar[str] = "–"

    @classmethod
    def kind(cls) -> str:
        """How errors and docs name this payload: the message type and its phase."""
        return cls.TYPE.value + (f" ({cls.PHASE})" if cls.PHASE else "")

    def tensors(self) -> dict[str, np.ndarray]:
        """The tensors this payload carries (none for control messages)."""
        return {}

    def encode(self, job: JobId) -> Message:
        """The wire message carrying this payload under job id `job`."""
        meta = self.to_meta()
        if self.PHASE is not None:
            meta["phase"] = self.PHASE
        return Message(self.TYPE, job, self.tensors(), meta)

    @classmethod
    def decode(cls: type[P], message: Message, **expect: Any) -> P:
        """Validate a received message as this payload; PayloadError names the field and the problem."""
        kind = cls.kind()
        if message.type is not cls.TYPE:
            raise _fail(kind, "type", f"is {message.type.value}, expected {cls.TYPE.value}")
        phase = cls.peek_phase(message)
        if cls.PHASE is not None and phase != cls.PHASE:
            raise _fail(kind, "phase", f"is {phase!r}, expected {cls.PHASE!r}")
        if cls.PHASE is None and "phase" in message.meta:
            raise _fail(kind, "phase", "is not a field of this message")
        return cls.from_meta(message.meta, kind)._with_tensors(message, kind, **expect)

    def _with_tensors(self: P, message: Message, kind: str, **expect: Any) -> P:
        """This payload with the message's checked tensors (override in tensor payloads: here none are allowed)."""
        if message.tensors:
            raise _fail(kind, "tensors", f"this message carries no tensors, got {sorted(message.tensors)}")
        return self

    @classmethod
    def peek_phase(cls, message: Message) -> str | None:
        """The phase tag of a REPORT, for choosing its payload class (None when absent or not a string)."""
        phase = message.meta.get("phase")
        return phase if isinstance(phase, str) else None


def check_tensor(kind: str, name: str, array: np.ndarray, want: TensorShape | None) -> np.ndarray:
    """A received tensor with the expected shape and dtype (when given), all finite if floating."""
    if want is not None:
        if array.dtype != want.dtype:
            raise _fail(kind, f"tensor {name!r}", f"has dtype {array.dtype}, expected {want.dtype}")
        if tuple(array.shape) != tuple(want.shape):
            raise _fail(kind, f"tensor {name!r}", f"has shape {tuple(array.shape)}, expected {tuple(want.shape)}")
    # min and max propagate NaN and reach any infinity, in two passes without a temporary of the array's size
    if np.issubdtype(array.dtype, np.floating) and array.size and not (np.isfinite(array.min())
                                                                       and np.isfinite(array.max())):
        raise NonFiniteError(kind, f"tensor {name!r}", "holds non-finite values (NaN or infinity)")
    return array


def _tensor_field(message: Message, kind: str, name: str, want: TensorShape | None) -> np.ndarray:
    if set(message.tensors) != {name}:
        raise _fail(kind, "tensors", f"must be exactly one tensor named {name!r}, got {sorted(message.tensors)}")
    return check_tensor(kind, name, message.tensors[name], want)


# ---- registration and welcome ----

@dataclass(frozen=True)
class EmulationInfo(Record):
    """What a role emulates: a profiled device or a slowdown factor, and a link bandwidth."""

    device: str | None = spec(Opt(Str()), "device of the run's emulation profile", default=None)
    slowdown: float | None = spec(Opt(Float(lo=1.0)), "measured times multiplied by this", default=None)
    bandwidth_mbps: float | None = spec(Opt(Float(lo=1e-6)), "emulated link bandwidth (Mbps)", default=None)


@dataclass(frozen=True)
class Register(Payload):
    """A role asks to join the run (re-sent every few seconds until welcomed; the coordinator dedupes by name)."""

    TYPE = MsgType.REGISTER
    DIRECTION = "C→K, H→K"
    role: str = spec(OneOf(("client", "helper")), "the sender's role")
    emulation: EmulationInfo = spec(Nested(EmulationInfo), "what it emulates", default=EmulationInfo())
    capacity_mb: float | None = spec(Opt(Float(lo=0.0)), "helpers: memory for middle parts (MB); nil: room for all",
                                     default=None)
    public_key: str | None = spec(Opt(Str(40)), "helpers: CURVE public key (Z85) clients connect with", default=None)


@dataclass(frozen=True)
class ArtifactInfo(Record):
    """The run's segment artifact: a role that lacks it (by hash) asks the coordinator for its chunks."""

    sha256: str = spec(Sha256(), "sha256 of the artifact's deterministic archive (its identity)")
    name: str = spec(Str(), "the artifact's model name (manifest `model`), for logs")
    size: int = spec(Int(1, MAX_ARCHIVE_BYTES), "archive bytes")
    chunk_bytes: int = spec(Int(1, MAX_CHUNK_BYTES), "bytes of every chunk but the last")

    @property
    def chunks(self) -> int:
        """How many chunks the archive travels in."""
        return -(-self.size // self.chunk_bytes)


@dataclass(frozen=True)
class HelperWelcome(Payload):
    """The coordinator admits a helper: the run's configuration and the clients it may serve."""

    TYPE = MsgType.WELCOME
    DIRECTION = "K→H"
    config: RunConfig = spec(Config(), "the run configuration")
    artifact: ArtifactInfo = spec(Nested(ArtifactInfo), "the run's artifact (fetched by hash when not cached)")
    client_keys: dict[str, str] = spec(MapOf(Str(40)), "client name → CURVE public key (the helper's allow-list)",
                                       default_factory=dict)
    client_links: dict[str, float | None] = spec(MapOf(Opt(Float(lo=1e-6))),
                                                 "client name → its emulated bandwidth (Mbps), to pace replies",
                                                 default_factory=dict)


@dataclass(frozen=True)
class ClientWelcome(Payload):
    """The coordinator admits a client: the run's configuration and its index (its share of the data)."""

    TYPE = MsgType.WELCOME
    DIRECTION = "K→C"
    config: RunConfig = spec(Config(), "the run configuration")
    artifact: ArtifactInfo = spec(Nested(ArtifactInfo), "the run's artifact (fetched by hash when not cached)")
    index: int = spec(Int(0, MAX_ROLES), "the client's position among the clients (its data share)")

    def check(self, kind: str, path: str) -> None:
        """The index must name one of the run's clients."""
        if self.index >= self.config.clients:
            raise _fail(kind, "index", f"is {self.index}, but the run has {self.config.clients} clients")


@dataclass(frozen=True)
class ClientProfile(Payload):
    """A client's part times on its device, its sample count and link."""

    TYPE = MsgType.REPORT
    PHASE = "profile"
    DIRECTION = "C→K"
    times: dict[str, float] = spec(MapOf(Float(lo=0.0), keys=CLIENT_PARTS), "part times it will take (ms)")
    measured: dict[str, float] = spec(MapOf(Float(lo=0.0), keys=CLIENT_PARTS), "part times measured (ms)")
    samples: int = spec(Int(1), "training samples it holds (its FedAvg weight)")
    bandwidth_mbps: float | None = spec(Opt(Float(lo=1e-6)), "its emulated link (Mbps), nil for none", default=None)
    local_times: dict[str, float] | None = spec(
        Opt(MapOf(Float(lo=0.0), keys=HELPER_PARTS)),
        "hybrid methods: part-2 times it will take training locally (ms); nil: it offers no local mode", default=None)
    memory_mb: float | None = spec(
        Opt(Float(lo=0.0)), "hybrid methods: memory (MB, > 0) its device gives to part-2 training; nil: none, it is "
        "never planned local", default=None)
    aux_ms: float | None = spec(
        Opt(Float(lo=0.0)), "local loss: its aux step (aux head train step, part-1 backward and update) as it will "
        "take it (ms); nil: it runs no local loss or its artifact has no aux head", default=None)
    aux_measured_ms: float | None = spec(Opt(Float(lo=0.0)), "local loss: its aux step as measured (ms); given "
                                                             "exactly when aux_ms is", default=None)

    def check(self, kind: str, path: str) -> None:
        """A stated memory must be positive; the aux step comes declared and measured or not at all."""
        if self.memory_mb is not None and self.memory_mb <= 0:
            raise _fail(kind, "memory_mb", f"is {self.memory_mb:g}; the memory for part-2 must be > 0 MB")
        if (self.aux_ms is None) != (self.aux_measured_ms is None):
            raise _fail(kind, "aux_measured_ms", "must be given exactly when aux_ms is (the aux step declared and "
                                                 "measured)")


@dataclass(frozen=True)
class HelperProfile(Payload):
    """A helper's part-2 times on its device and the endpoint its clients connect to."""

    TYPE = MsgType.REPORT
    PHASE = "profile"
    DIRECTION = "H→K"
    times: dict[str, float] = spec(MapOf(Float(lo=0.0), keys=HELPER_PARTS), "part times it will take (ms)")
    measured: dict[str, float] = spec(MapOf(Float(lo=0.0), keys=HELPER_PARTS), "part times measured (ms)")
    endpoint: str = spec(Str(), "where its clients connect")
    part3_times: dict[str, float] | None = spec(
        Opt(MapOf(Float(lo=0.0), keys=LAST_PARTS)), "labels = \"helper\" (two-part split): part-3 times it will "
        "take (ms); nil: it runs no part-3", default=None)
    part3_measured: dict[str, float] | None = spec(
        Opt(MapOf(Float(lo=0.0), keys=LAST_PARTS)), "two-part split: part-3 times measured (ms); given exactly when "
        "part3_times is", default=None)

    def check(self, kind: str, path: str) -> None:
        """The part-3 times come declared and measured or not at all."""
        if (self.part3_times is None) != (self.part3_measured is None):
            raise _fail(kind, "part3_measured", "must be given exactly when part3_times is")


# ---- artifact transfer ----

@dataclass(frozen=True)
class ArtifactRequest(Payload):
    """A welcomed role that lacks the run's artifact asks for one chunk of it (chunks are asked for in order)."""

    TYPE = MsgType.ARTIFACT_REQUEST
    DIRECTION = "C→K, H→K"

    sha256: str = spec(Sha256(), "the welcome's artifact sha256")
    index: int = spec(Int(0, MAX_ARCHIVE_BYTES), "the chunk wanted (0 first)")


@dataclass(frozen=True)
class ArtifactChunk(Payload):
    """One chunk of the run's artifact archive, answering an artifact_request."""

    TYPE = MsgType.ARTIFACT_CHUNK
    DIRECTION = "K→C, K→H"
    TENSORS = f"`data`: the chunk's bytes, 1-D uint8 of 1 to {MAX_CHUNK_BYTES} bytes"

    sha256: str = spec(Sha256(), "the archive it belongs to")
    index: int = spec(Int(0, MAX_ARCHIVE_BYTES), "its position (0 first)")
    total: int = spec(Int(1, MAX_ARCHIVE_BYTES), "how many chunks the archive has")
    data: np.ndarray = field(default=None, kw_only=True)  # type: ignore[assignment]

    def check(self, kind: str, path: str) -> None:
        """The index must lie within the total."""
        if self.index >= self.total:
            raise _fail(kind, "index", f"is {self.index}, but the archive has {self.total} chunks")

    def tensors(self) -> dict[str, np.ndarray]:
        """The chunk's bytes as one uint8 tensor."""
        return {"data": self.data}

    def _with_tensors(self, message: Message, kind: str, **expect: Any) -> "ArtifactChunk":
        """Exactly one tensor `data`: 1-D uint8 of 1 to MAX_CHUNK_BYTES bytes."""
        if set(message.tensors) != {"data"}:
            raise _fail(kind, "tensors", f"must be exactly one tensor named 'data', got {sorted(message.tensors)}")
        data = message.tensors["data"]
        if data.dtype != np.uint8 or data.ndim != 1 or not 1 <= data.size <= MAX_CHUNK_BYTES:
            raise _fail(kind, "tensor 'data'", f"has dtype {data.dtype} and shape {tuple(data.shape)}; expected "
                                               f"1-D uint8 of 1 to {MAX_CHUNK_BYTES} bytes")
        return dataclasses.replace(self, data=data)

    def chunk(self) -> Chunk:
        """As the Assembler takes it."""
        return Chunk(self.index, self.total, self.sha256, self.data.tobytes())


# ---- link probes ----

@dataclass(frozen=True)
class ProbeTarget(Record):
    """One helper a client probes."""

    helper: str = spec(Str(), "helper name")
    endpoint: str = spec(Str(), "its client endpoint")
    key: str | None = spec(Opt(Str(40)), "its CURVE public key (nil when insecure)", default=None)


@dataclass(frozen=True)
class ProbeRequest(Payload):
    """The coordinator asks a client to probe its link to every helper."""

    TYPE = MsgType.PROBE
    DIRECTION = "K→C"
    helpers: list[ProbeTarget] = spec(ListOf(Nested(ProbeTarget)), "the helpers, probed one after the other")
    sizes_kb: list[int] = spec(ListOf(Int(1, 2 ** 20), max_len=8), "probe payload sizes (KiB)")


@dataclass(frozen=True)
class LinkFit(Record):
    """One measured link (edgepsl.profiling.link.LinkStats)."""

    sizes_bytes: list[int] = spec(ListOf(Int(1), max_len=8), "payload sizes probed (bytes)")
    rtt_ms: list[float] = spec(ListOf(Float(lo=0.0), max_len=8), "median round trip per size (ms)")
    latency_ms: float = spec(Float(lo=0.0), "fitted one-way latency (ms)")
    mbps: float = spec(Float(lo=1e-9), "fitted bandwidth (Mbps)")
    fit: str = spec(OneOf(("line", "bound")), "how the bandwidth was read (docs/profiling.md)")


@dataclass(frozen=True)
class LinkReport(Payload):
    """A client's measured links, one per helper."""

    TYPE = MsgType.REPORT
    PHASE = "links"
    DIRECTION = "C→K"
    links: dict[str, LinkFit] = spec(MapOf(Nested(LinkFit)), "helper name → its measured link")


# ---- rounds ----

@dataclass(frozen=True)
class HelperRoundStart(Payload):
    """A helper's whole schedule of one round; a client's position in `clients` indexes every per-client list."""

    TYPE = MsgType.ROUND_START
    DIRECTION = "K→H"
    clients: list[str] = spec(ListOf(Str()), "the clients assigned to this helper")
    duration_ms: list[list[float]] = spec(ListOf(ListOf(Float(lo=0.0), length=2)),
                                          "per client: planned [forward, backward] job duration (ms)")
    priority: list[list[float]] = spec(ListOf(ListOf(Float(), length=2)),
                                       "per client: [forward, backward] priority of the fallback rule")
    bandwidth_mbps: list[float | None] = spec(ListOf(Opt(Float(lo=1e-6))),
                                              "per client: emulated link to pace replies (nil: none)")
    memory_mb: list[float] = spec(ListOf(Float(lo=0.0)), "per client: memory its middle part needs (MB)")
    order: list[list[int]] = spec(ListOf(ListOf(Int(0, MAX_ROLES), length=2), max_len=MAX_JOBS),
                                  "the job order: [client position, kind] rows, kind 0 forward, 1 backward; the "
                                  "k-th row of a client and kind is its micro-batch k")
    planned_start_ms: list[float] = spec(ListOf(Float(lo=0.0), max_len=MAX_JOBS),
                                         "planned start of each job of `order` (ms from the round start)")
    t0_ms: float = spec(Float(lo=0.0), "the coordinator's wall clock at the round start (ms)")
    token: int = spec(Int(), "this round start's token, which the round's jobs carry")
    micro_batches: list[int] = spec(ListOf(Int(1, MAX_MICRO)), "per client: micro-batches N of its round, "
                                    "`duration_ms` then per micro-batch job (empty: 1 for every client)",
                                    default_factory=list)
    local_loss: list[bool] = spec(ListOf(Bool()), "mode = \"auto\": per client, the plan's learning mode (true: "
                                  "local loss, no cut-1 gradient returned; false: SplitFed); empty: the configured "
                                  "modes", default_factory=list)

    @property
    def micro(self) -> list[int]:
        """N per client (1 for every client when `micro_batches` is empty)."""
        return list(self.micro_batches) or [1] * len(self.clients)

    def check(self, kind: str, path: str) -> None:
        """Per-client lists as long as `clients` (micro_batches and local_loss: or empty); `order` holds each
        client's N forward and N backward jobs."""
        n = len(self.clients)
        if len(set(self.clients)) != n:
            raise _fail(kind, "clients", "names a client twice")
        for name in ("duration_ms", "priority", "bandwidth_mbps", "memory_mb") + (
                ("micro_batches",) if self.micro_batches else ()) + (("local_loss",) if self.local_loss else ()):
            if len(getattr(self, name)) != n:
                raise _fail(kind, name, f"has {len(getattr(self, name))} entries for {n} clients")
        expected = sorted((j, k) for j, m in enumerate(self.micro) for k in (FWD, BWD) for _ in range(m))
        if sorted(map(tuple, self.order)) != expected:
            raise _fail(kind, "order", "must list every client's forward and backward job once per micro-batch")
        if len(self.planned_start_ms) != len(self.order):
            raise _fail(kind, "planned_start_ms", f"has {len(self.planned_start_ms)} entries for {len(self.order)} jobs")


@dataclass(frozen=True)
class ClientRoundStart(Payload):
    """A client's round: its helper (or local mode) and when the round began."""

    TYPE = MsgType.ROUND_START
    DIRECTION = "K→C"
    helper: str = spec(Str(empty=True), "the helper serving it this round (empty exactly in local mode)")
    helper_endpoint: str = spec(Str(empty=True), "where to reach it (empty exactly in local mode)")
    t0_ms: float = spec(Float(lo=0.0), "the coordinator's wall clock at the round start (ms)")
    token: int = spec(Int(), "this round start's token, which the round's jobs carry")
    helper_key: str | None = spec(Opt(Str(40)), "its CURVE public key (nil when insecure)", default=None)
    local: bool = spec(Bool(), "local mode: train part-2 on its own device, no helper, no transfers", default=False)
    micro_batches: int = spec(Int(1, MAX_MICRO), "micro-batches N its batch splits into (1 in local mode)", default=1)
    local_loss: bool | None = spec(Opt(Bool()), "mode = \"auto\": the plan's learning mode for it (true: local "
                                   "loss, false: SplitFed); nil: the configured mode", default=None)

    def check(self, kind: str, path: str) -> None:
        """A helper and its endpoint are given exactly when the client is not in local mode; local mode has N = 1."""
        for name in ("helper", "helper_endpoint"):
            if bool(getattr(self, name)) == self.local:
                raise _fail(kind, name, "must be empty in local mode" if self.local else "is empty, but the client "
                            "is not in local mode")
        if self.local and self.micro_batches != 1:
            raise _fail(kind, "micro_batches", f"is {self.micro_batches}; local mode runs no micro-batches")
        if self.local and self.local_loss is not None:
            raise _fail(kind, "local_loss", "must be nil in local mode (part-2 on the client: the U-shape)")


@dataclass(frozen=True)
class CancelJobs(Payload):
    """The coordinator closed a round without some clients (lost, or dropped as stragglers): the helper skips their
    jobs of that round not yet run and goes on with the rest of its order at once; a late job of theirs is refused
    CANCELLED."""

    TYPE = MsgType.ROUND_START
    PHASE = "cancel"
    DIRECTION = "K→H"
    round: int = spec(Int(), "the round whose jobs are cancelled")
    clients: list[str] = spec(ListOf(Str()), "the clients whose remaining jobs of that round are cancelled")


@dataclass(frozen=True)
class CutShapes:
    """The shapes of one batch of the two cut tensors: what job payloads must carry."""

    act: TensorShape
    out: TensorShape
    labels: TensorShape | None = None  # the two-part split's labels with a forward job; None: no labels accepted
    classes: int = 0  # class labels lie in 0..classes-1 (0: targets that are not class indices)

    @classmethod
    def of(cls, manifest: Manifest, batch: int, labels_on_helper: bool = False) -> "CutShapes":
        """From a segment manifest and the run's batch size (float32 after any float16 cast on the wire); with
        labels_on_helper (labels = "helper"), forward jobs carry the batch's labels of the model's loss."""
        specs = [manifest.segment(name).output for name in ("part1", "part2")]
        act, out = (TensorShape((batch, *s.shape[1:]), np.dtype(s.dtype)) for s in specs)
        if not labels_on_helper:
            return cls(act, out)
        last = manifest.segment("part3")
        label = manifest.loss_labels(last)
        classes = int(last.output.shape[-1]) if manifest.loss.class_labels else 0
        return cls(act, out, TensorShape((batch, *label.shape[1:]), np.dtype(label.dtype)), classes)

    def micro(self, k: int, n: int) -> "CutShapes":
        """The shapes of micro-batch k of n (microbatch.micro_sizes rows; these shapes at n = 1)."""
        if n == 1:
            return self
        rows = micro_sizes(self.act.shape[0], n)[k]
        act, out, labels = (None if t is None else TensorShape((rows, *t.shape[1:]), t.dtype)
                            for t in (self.act, self.out, self.labels))
        return CutShapes(act, out, labels, self.classes)


@dataclass(frozen=True)
class _Job(Payload):
    """A payload of one tensor whose shape the receiver knows from the cut shapes."""

    TENSOR: ClassVar[str]
    CUT: ClassVar[str]
    tensor: np.ndarray = field(default=None, kw_only=True)  # type: ignore[assignment]

    def tensors(self) -> dict[str, np.ndarray]:
        """The job's one tensor under its wire name."""
        return {self.TENSOR: self.tensor}

    def _job_cuts(self, kind: str, expect: dict[str, Any]) -> "CutShapes | None":
        """The expected `cuts` of this job: for a job with a micro-batch index k, those of micro-batch k of
        `micro_batches` N (k < N)."""
        cuts: CutShapes | None = expect.get("cuts")
        micro = getattr(self, "micro", None)
        if micro is not None:
            n = expect.get("micro_batches", 1)
            if micro >= n:
                raise _fail(kind, "micro", f"is {micro}, but the client's round has {n} micro-batch"
                                           f"{'es' if n > 1 else ''}")
            cuts = cuts.micro(micro, n) if cuts is not None else None
        return cuts

    def _with_tensors(self: P, message: Message, kind: str, **expect: Any) -> P:
        """Exactly its one tensor, with the cut's shape and dtype when `cuts` is given (a job with a micro-batch
        index k: micro-batch k of `micro_batches` N, k < N), all finite."""
        cuts = self._job_cuts(kind, expect)
        want = getattr(cuts, self.CUT) if cuts is not None else None
        return dataclasses.replace(self, tensor=_tensor_field(message, kind, self.TENSOR, want))


@dataclass(frozen=True)
class ForwardJob(_Job):
    """A client's part-1 activations of one batch."""

    TYPE = MsgType.FORWARD
    DIRECTION = "C→H"
    TENSOR, CUT = "x", "act"
    TENSORS = ("`x`: part-1 output, (batch, …) float32, finite; `labels` (only with labels = \"helper\", the "
               "two-part split): the batch's labels, (batch,) integer class indices in 0..classes-1 (the loss's "
               "targets otherwise)")
    token: int = spec(Int(), "the token of the round_start it belongs to (a job of an earlier start is refused)")
    micro: int = spec(Int(0, MAX_MICRO - 1), "its micro-batch index k (0 when the round is not split)", default=0)
    labels: np.ndarray | None = field(default=None, kw_only=True)

    def tensors(self) -> dict[str, np.ndarray]:
        """The activations, and the labels in the two-part split."""
        return {self.TENSOR: self.tensor, **({"labels": self.labels} if self.labels is not None else {})}

    def _with_tensors(self, message: Message, kind: str, **expect: Any) -> "ForwardJob":
        """The activations as a cut tensor; labels exactly when `cuts` expects them (shape, integer dtype, range)."""
        cuts = self._job_cuts(kind, expect)
        names = set(message.tensors)
        wanted = cuts is not None and cuts.labels is not None
        if cuts is not None and "labels" in names and not wanted:
            raise _fail(kind, "tensor 'labels'", "is not accepted: this run keeps the labels on the clients "
                                                  "(labels = \"client\")")
        if not wanted:
            return dataclasses.replace(self, tensor=_tensor_field(message, kind, self.TENSOR, cuts and cuts.act))
        if names != {self.TENSOR, "labels"}:
            raise _fail(kind, "tensors", f"must be exactly 'x' and 'labels' (labels = \"helper\"), got {sorted(names)}")
        labels = check_tensor(kind, "labels", message.tensors["labels"], cuts.labels)
        if cuts.classes:
            if not np.issubdtype(labels.dtype, np.integer):
                raise _fail(kind, "tensor 'labels'", f"must hold integer class indices, got {labels.dtype}")
            if labels.size and (labels.min() < 0 or labels.max() >= cuts.classes):
                raise _fail(kind, "tensor 'labels'", f"must lie in 0..{cuts.classes - 1}")
        x = check_tensor(kind, self.TENSOR, message.tensors[self.TENSOR], cuts.act)
        return dataclasses.replace(self, tensor=x, labels=labels)


@dataclass(frozen=True)
class Activations(_Job):
    """The helper's part-2 outputs for a forward job."""

    TYPE = MsgType.ACTIVATIONS
    DIRECTION = "H→C"
    TENSORS = "`y`: part-2 output, (batch, …) float32, finite"
    TENSOR, CUT = "y", "out"


@dataclass(frozen=True)
class Gradients(_Job):
    """A client's gradient of the loss with respect to the part-2 outputs."""

    TYPE = MsgType.GRADIENTS
    DIRECTION = "C→H"
    TENSORS = "`grad`: like the part-2 output, finite"
    TENSOR, CUT = "grad", "out"
    token: int = spec(Int(), "the token of the round_start it belongs to (a job of an earlier start is refused)")
    micro: int = spec(Int(0, MAX_MICRO - 1), "its micro-batch index k (0 when the round is not split)", default=0)


@dataclass(frozen=True)
class GradBack(_Job):
    """The helper's gradient with respect to the part-1 outputs."""

    TYPE = MsgType.GRAD_BACK
    DIRECTION = "H→C"
    TENSORS = "`grad`: like the part-1 output, finite"
    TENSOR, CUT = "grad", "act"
    loss: float | None = spec(Opt(Float()), "two-part split (the reply to a forward job): the training loss of the "
                              "batch on the helper", default=None)


@dataclass(frozen=True)
class Transfer(Record):
    """One job's exchange as the client saw it (its wall clock, ms)."""

    sent: float = spec(Float(lo=0.0), "when the job left (ms)")
    recv: float = spec(Float(lo=0.0), "when the reply arrived (ms)")
    up_s: float = spec(Float(lo=0.0), "emulated upload before the send (s)")
    bytes_up: int = spec(Int(), "tensor bytes sent")
    bytes_down: int = spec(Int(), "tensor bytes received")


@dataclass(frozen=True)
class ClientRoundReport(Payload):
    """What a client's round did: its loss, its chain's timestamps and bytes."""

    TYPE = MsgType.REPORT
    PHASE = "round"
    DIRECTION = "C→K"
    round: int = spec(Int(), "the round")
    loss: float = spec(Float(), "training loss of its batch (finite: a client whose loss is not sends DIVERGED)")
    samples: int = spec(Int(1), "samples in its batch")
    start: float = spec(Float(lo=0.0), "when it began the round (ms, wall clock)")
    finish: float = spec(Float(lo=0.0), "when its part-1 step ended (ms)")
    fwd: Transfer = spec(Nested(Transfer), "its forward job's exchange (local mode: its own part-2 forward, no bytes)")
    bwd: Transfer = spec(Nested(Transfer), "its backward job's exchange (local mode: its own part-2 backward)")
    compute_ms: dict[str, float] = spec(MapOf(Float(lo=0.0), keys=CLIENT_STEPS), "compute of its steps (ms)")
    pad_ms: dict[str, float] = spec(MapOf(Float(lo=0.0), keys=CLIENT_STEPS), "emulation padding of its steps (ms)")


@dataclass(frozen=True)
class JobRecord(Record):
    """One job as the helper ran it (its wall clock, ms)."""

    client: str = spec(Str(), "whose job")
    kind: int = spec(OneOf((FWD, BWD)), "0 forward, 1 backward")
    arrival: float = spec(Float(lo=0.0), "when it arrived (ms)")
    start: float = spec(Float(lo=0.0), "when it started (ms)")
    end: float = spec(Float(lo=0.0), "when it ended, padding included (ms)")
    compute_ms: float = spec(Float(lo=0.0), "compute (ms)")
    pad_ms: float = spec(Float(lo=0.0), "emulation padding (ms)")
    down_s: float = spec(Float(lo=0.0), "emulated download of its reply (s)")
    bytes_in: int = spec(Int(), "tensor bytes received")
    bytes_out: int = spec(Int(), "tensor bytes sent back")
    planned: bool = spec(Bool(), "whether it ran in plan order")
    micro: int = spec(Int(0, MAX_MICRO - 1), "its micro-batch index k (0 when the round is not split)", default=0)


@dataclass(frozen=True)
class HelperRoundReport(Payload):
    """What a helper's round did: one record per job."""

    TYPE = MsgType.REPORT
    PHASE = "round"
    DIRECTION = "H→K"
    round: int = spec(Int(), "the round")
    jobs: list[JobRecord] = spec(ListOf(Nested(JobRecord), max_len=MAX_JOBS), "one record per job it ran")
    smashmix_end: float | None = spec(Opt(Float(lo=0.0)), "when its SmashMix steps of the round ended (ms, wall "
                                      "clock; smashmix_pairs > 0 only)", default=None)


# ---- state, bye, error ----

@dataclass(frozen=True)
class StateRequest(Payload):
    """The coordinator asks for model (and optimizer) state."""

    TYPE = MsgType.STATE_REQUEST
    DIRECTION = "K→C, K→H"
    optimizer: bool = spec(Bool(), "include optimizer state")
    clients: list[str] = spec(ListOf(Str()), "helpers: the clients whose middle parts to send; a client in local "
                              "mode: its own name to add its part-2", default_factory=list)


@dataclass(frozen=True)
class StateShapes:
    """What a STATE may carry: exact model tensors, and optimizer tensors under some prefixes (checked when loaded)."""

    model: Mapping[str, TensorShape]
    optimizer_prefixes: tuple[str, ...]


@dataclass(frozen=True)
class State(Payload):
    """Named model and optimizer tensors (docs/runtime.md, step 7)."""

    TYPE = MsgType.STATE
    DIRECTION = "C→K, H→K, K→C, K→H"
    TENSORS = "`PART/m/NAME` model state, `PART/o/NAME` optimizer state, all finite"
    samples: int | None = spec(Opt(Int(1)), "clients to K: samples it holds (FedAvg weight)", default=None)
    state: dict[str, np.ndarray] = field(default_factory=dict)

    def tensors(self) -> dict[str, np.ndarray]:
        """The state tensors."""
        return dict(self.state)

    def _with_tensors(self, message: Message, kind: str, **expect: Any) -> "State":
        """The state tensors: with `shapes`, every model tensor exactly, others only under optimizer prefixes."""
        shapes: StateShapes | None = expect.get("shapes")
        tensors = message.tensors
        if len(tensors) > MAX_STATE_TENSORS:
            raise _fail(kind, "tensors", f"has {len(tensors)} tensors, more than {MAX_STATE_TENSORS}")
        if shapes is not None:
            missing = sorted(set(shapes.model) - set(tensors))
            if missing:
                raise _fail(kind, f"tensor {missing[0]!r}", "is missing")
        for name, array in tensors.items():
            want = shapes.model.get(name) if shapes is not None else None
            if shapes is not None and want is None and not name.startswith(shapes.optimizer_prefixes):
                raise _fail(kind, f"tensor {name!r}", "is not a tensor of this state")
            check_tensor(kind, name, array, want)
        return dataclasses.replace(self, state=dict(tensors))


@dataclass(frozen=True)
class Bye(Payload):
    """The end of the run (coordinator → role), or a role leaving it (role → coordinator)."""

    TYPE = MsgType.BYE
    DIRECTION = "K→C, K→H, C→K, H→K"
    reason: str = spec(Str(MAX_REASON, empty=True), "why")


@dataclass(frozen=True)
class ErrorReply(Payload):
    """A refusal or a failure report: a wire or runtime code and a reason naming the field or cause."""

    TYPE = MsgType.ERROR
    DIRECTION = "any"
    code: int = spec(Int(0, 2 ** 31), "docs/protocol.md section 6")
    reason: str = spec(Str(MAX_REASON, empty=True), "what was wrong, or what failed")

    def encode(self, job: JobId) -> Message:
        """The wire's ERROR message (reason cut to the wire's limit)."""
        return error_message(self.code, self.reason, job)

    def text(self, peer: str) -> str:
        """Readable form: who, the code's name and the reason."""
        return f"{peer}: {code_name(self.code)}: {self.reason}"


PAYLOADS: tuple[type[Payload], ...] = (
    Register, HelperWelcome, ClientWelcome, ArtifactRequest, ArtifactChunk, ClientProfile, HelperProfile,
    ProbeRequest, LinkReport, HelperRoundStart, ClientRoundStart, CancelJobs, ForwardJob, Activations, Gradients, GradBack, ClientRoundReport,
    HelperRoundReport, StateRequest, State, Bye, ErrorReply)
RECORDS: tuple[type[Record], ...] = (EmulationInfo, ArtifactInfo, ProbeTarget, LinkFit, Transfer, JobRecord)


# ---- generated documentation ----

BEGIN, END = "<!-- payloads: generated by edgepsl.runtime.protocol, do not edit -->", "<!-- payloads: end -->"


def _table(cls: type[Record]) -> list[str]:
    rows = [f"| `{f.name}` | {f.metadata['check'].doc}{'' if _required(f) else ', optional'} | {f.metadata['doc']} |"
            for f in dataclasses.fields(cls) if "check" in f.metadata]
    return ["| field | type | meaning |", "|---|---|---|", *rows] if rows else []


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def payload_docs() -> str:
    """The markdown block of every payload and nested record, as docs/protocol.md holds it."""
    lines = [BEGIN, ""]
    for cls in PAYLOADS:
        lines += [f"#### `{cls.__name__}`: `{cls.kind()}`, {cls.DIRECTION}", "", (cls.__doc__ or "").strip(), ""]
        if cls.TENSORS != "–":
            lines += [f"Tensors: {cls.TENSORS}.", ""]
        table = _table(cls)
        lines += [*table, ""] if table else ["No meta fields.", ""]
    for cls in RECORDS:
        lines += [f"#### `{cls.__name__}` (nested map)", "", (cls.__doc__ or "").strip(), "", *_table(cls), ""]
    lines.append(END)
    return "\n".join(lines)


def write_docs(path: str | Path) -> None:
    """Replace the generated block of a markdown file with payload_docs()."""
    text = Path(path).read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    Path(path).write_text(head + payload_docs() + tail)


def decode_any(message: Message, choices: Sequence[type[P]], **expect: Any) -> P:
    """Decode with the one class among `choices` whose type (and phase) the message has; PayloadError otherwise."""
    matching = [c for c in choices if c.TYPE is message.type and (c.PHASE is None or c.PHASE == Payload.peek_phase(message))]
    if not matching:
        kinds = ", ".join(c.kind() for c in choices)
        raise PayloadError(message.type.value, "type", f"is not expected here (expected {kinds})")
    return matching[0].decode(message, **expect)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        write_docs(sys.argv[2])
    else:
        print(payload_docs())
