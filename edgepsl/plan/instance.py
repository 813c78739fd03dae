"""Instance: K clients and H helpers as K x H arrays of milliseconds plus memory; JSON round-trip; validation."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from edgepsl.plan.errors import InstanceError, InstanceFormatError, ModeError
from edgepsl.plan.jsonfile import check_header, read_json

FORMAT_NAME = "edgepsl-instance"
FORMAT_VERSION = 1
# Version 2 adds the optional local-mode fields (LOCAL_FIELDS); a file without them is written as version 1.
HYBRID_VERSION = 2
# Version 3 adds the optional micro-batch stage fields (STAGE_FIELDS, pipelining); the local-mode fields stay optional.
STAGED_VERSION = 3
# Version 4 adds the optional local-loss fields (LOSS_FIELDS); the local-mode and stage fields stay optional.
LOSS_VERSION = 4

# (field, shape kind, meaning); "KH" is K x H, "K" per client, "H" per helper.
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("r", "KH", "forward release: part-1 forward on the client plus upload of the cut-1 activations (ms)"),
    ("p", "KH", "helper forward job: part-2 forward on the helper (ms)"),
    ("d", "KH", "download of the cut-2 activations to the client (ms)"),
    ("l", "K", "part-3 forward and loss on the client (ms)"),
    ("r_bwd", "KH", "part-3 backward on the client plus upload of the cut-2 gradient (ms)"),
    ("p_bwd", "KH", "helper backward job: part-2 backward and weight update (ms)"),
    ("d_bwd", "KH", "download of the cut-1 gradient to the client (ms)"),
    ("l_bwd", "K", "part-1 backward and weight update on the client (ms)"),
    ("mem", "K", "memory client j's part-2 needs on a helper (MB)"),
    ("cap", "H", "memory capacity of helper i (MB)"),
)
# Optional, all or none (format version 2): client j training part-2 on its own device (local mode, no network).
LOCAL_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("r_own", "K", "local mode: part-1 forward on the client, no upload (ms)"),
    ("p_own", "K", "local mode: part-2 forward on the client's own device (ms)"),
    ("r_bwd_own", "K", "local mode: part-3 backward on the client, no upload (ms)"),
    ("p_bwd_own", "K", "local mode: part-2 backward and weight update on the client's own device (ms)"),
    ("cap_own", "K", "memory the client's own device has for part-2 (MB); local mode needs mem_j <= cap_own_j"),
)

# Optional, all or none (format version 3): what a client's round costs split into N micro-batches (docs/planning.md,
# "Micro-batch pipelining"). A stage of whole-batch time X with fixed part f costs min(f, X) + (X - min(f, X)) / N.
STAGE_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("r_up", "KH", "the upload part of r: cut-1 activations over the link (ms, whole batch)"),
    ("r_bwd_up", "KH", "the upload part of r_bwd: cut-2 gradient over the link (ms, whole batch)"),
    ("o_client", "K", "fixed cost of one compute call on the client (ms per stage and micro-batch)"),
    ("o_link", "KH", "fixed cost of one transfer on the link, its latency (ms per transfer)"),
    ("o_helper", "H", "fixed cost of one job on the helper (ms per job)"),
    ("batch", "K", "mini-batch size B of client j (samples); N <= B"),
    ("micro", "K", "micro-batches N of client j's round (1 = unpipelined, today's chain)"),
)

# Optional, all or none (format version 4): the local-loss mode (LocSplitFed; docs/planning.md, "Local-loss mode").
# A local-loss client trains part-1 from an aux head right after its part-1 forward, so nothing follows the helper's
# backward on the client (q'_ij = 0) and its part-3 starts no earlier than its own local work ends.
LOSS_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("local_loss", "K", "mode of client j: 1 = local loss, 0 = U-shaped SplitFed (a plan may choose otherwise)"),
    ("r_cpu", "K", "the client's part of r: part-1 forward on the client (ms); r_ij - r_cpu_j is the upload"),
    ("aux", "K", "local loss: aux head forward, loss and backward plus part-1 backward and update (ms)"),
)


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Instance:
    """One training round of K clients on H helpers; times in continuous milliseconds, memory in MB."""

    r: np.ndarray
    p: np.ndarray
    d: np.ndarray
    l: np.ndarray
    r_bwd: np.ndarray
    p_bwd: np.ndarray
    d_bwd: np.ndarray
    l_bwd: np.ndarray
    mem: np.ndarray
    cap: np.ndarray
    r_own: np.ndarray | None = None
    p_own: np.ndarray | None = None
    r_bwd_own: np.ndarray | None = None
    p_bwd_own: np.ndarray | None = None
    cap_own: np.ndarray | None = None
    r_up: np.ndarray | None = None
    r_bwd_up: np.ndarray | None = None
    o_client: np.ndarray | None = None
    o_link: np.ndarray | None = None
    o_helper: np.ndarray | None = None
    batch: np.ndarray | None = None
    micro: np.ndarray | None = None
    local_loss: np.ndarray | None = None
    r_cpu: np.ndarray | None = None
    aux: np.ndarray | None = None
    client_names: tuple[str, ...] = ()
    helper_names: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for group, what in ((LOCAL_FIELDS, "local-mode"), (STAGE_FIELDS, "micro-batch stage"),
                            (LOSS_FIELDS, "local-loss")):
            given = [name for name, _, _ in group if getattr(self, name) is not None]
            if given and len(given) != len(group):
                absent = [name for name, _, _ in group if name not in given]
                raise InstanceError(f"the {what} fields come all or none: {', '.join(given)} given but "
                                    f"{', '.join(absent)} missing")
        for name, _, _ in self._fields():
            try:
                arr = np.ascontiguousarray(np.asarray(getattr(self, name), dtype=np.float64))
            except (TypeError, ValueError) as exc:
                raise InstanceError(f"field {name!r} is not an array of numbers: {exc}") from None
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "client_names", tuple(str(n) for n in self.client_names))
        object.__setattr__(self, "helper_names", tuple(str(n) for n in self.helper_names))
        self._validate()

    def _fields(self) -> tuple[tuple[str, str, str], ...]:
        return (FIELDS + (LOCAL_FIELDS if self.hybrid else ()) + (STAGE_FIELDS if self.staged else ())
                + (LOSS_FIELDS if self.has_loss_times else ()))

    @property
    def has_loss_times(self) -> bool:
        """Whether the instance has the local-loss fields (its clients may train part-1 with a local loss)."""
        return self.aux is not None

    @property
    def loss_modes(self) -> np.ndarray:
        """Boolean K: which clients run the local-loss mode (all False without the local-loss fields)."""
        if not self.has_loss_times:
            return np.zeros(self.K, dtype=bool)
        return self.local_loss == 1

    def with_loss_modes(self, modes: np.ndarray) -> Instance:
        """The same instance with these clients (boolean K) in local-loss mode; ModeError without the times."""
        modes = np.asarray(modes, dtype=bool)
        if modes.shape != (self.K,):
            raise ModeError(f"a local-loss mode per client is needed: got {modes.size} values for {self.K} clients")
        if not self.has_loss_times:
            if not modes.any():
                return self
            j = int(np.flatnonzero(modes)[0])
            raise ModeError(f"{self.client_name(j)} is put in local-loss mode but the instance has no local-loss "
                            "times (fields local_loss, r_cpu, aux; instance format version 4, docs/formats.md)")
        return dataclasses.replace(self, local_loss=modes.astype(np.float64))

    def require_splitfed(self, what: str) -> None:
        """ModeError naming the first local-loss client: `what` (a method) plans U-shaped SplitFed clients only."""
        modes = self.loss_modes
        if modes.any():
            j = int(np.flatnonzero(modes)[0])
            raise ModeError(f"{self.client_name(j)} runs the local-loss mode, which {what} does not plan: plan it "
                            "with random, balanced-greedy, greedy-eft, greedy-ls or milp (N = 1, no local mode), "
                            "or set its local_loss to 0")

    @property
    def release_floor(self) -> np.ndarray | None:
        """w_ij: the earliest release of client j's backward job on helper i whatever its forward job does (its
        local work r_cpu + aux, then l and r'); 0 for U-shaped clients; None when no client runs local loss."""
        modes = self.loss_modes
        if not modes.any():
            return None
        own = self.r_cpu + self.aux + self.l
        return np.ascontiguousarray(np.where(modes[:, None], own[:, None] + self.r_bwd, 0.0))

    @property
    def staged(self) -> bool:
        """Whether the instance has the micro-batch stage fields (its clients' rounds can be pipelined)."""
        return self.r_up is not None

    @property
    def micro_batches(self) -> np.ndarray:
        """N per client as int64 (all 1 for an instance without stage fields)."""
        if not self.staged:
            return np.ones(self.K, dtype=np.int64)
        return self.micro.astype(np.int64)

    @property
    def hybrid(self) -> bool:
        """Whether the instance has the local-mode fields (clients may train part-2 on their own device)."""
        return self.r_own is not None

    @property
    def local_fits(self) -> np.ndarray:
        """Boolean K: client j may train locally (local-mode fields given and part-2 fits its own memory)."""
        if not self.hybrid:
            return np.zeros(self.K, dtype=bool)
        return self.mem <= self.cap_own

    @property
    def local_time(self) -> np.ndarray:
        """L_j: client j's round in local mode, all six part passes on its own device (inf where not hybrid)."""
        if not self.hybrid:
            return np.full(self.K, np.inf)
        return self.r_own + self.p_own + self.l + self.r_bwd_own + self.p_bwd_own + self.l_bwd

    def subset(self, clients: np.ndarray) -> Instance:
        """The instance of only these clients (indices, in this order), with all helpers."""
        idx = np.asarray(clients, dtype=np.int64)
        arrays = {name: (getattr(self, name)[idx] if kind in ("KH", "K") else getattr(self, name))
                  for name, kind, _ in self._fields()}
        names = tuple(self.client_names[j] for j in idx) if self.client_names else ()
        return Instance(**arrays, client_names=names, helper_names=self.helper_names, meta=dict(self.meta))

    @property
    def K(self) -> int:
        """Number of clients."""
        return int(self.mem.shape[0])

    @property
    def H(self) -> int:
        """Number of helpers."""
        return int(self.cap.shape[0])

    # gap and tail are computed once (the fields are read-only arrays, so they cannot go stale): every kernel
    # call takes them, several times per planning call.
    @cached_property
    def gap(self) -> np.ndarray:
        """g_ij = d_ij + l_j + r'_ij: from the end of the forward job to the release of the backward job."""
        return _frozen(self.d + self.l[:, None] + self.r_bwd)

    @cached_property
    def tail(self) -> np.ndarray:
        """q'_ij = d'_ij + l'_j: from the end of the backward job to the client's finish (0 in local-loss mode)."""
        tail = self.d_bwd + self.l_bwd[:, None]
        modes = self.loss_modes
        return _frozen(np.where(modes[:, None], 0.0, tail) if modes.any() else tail)

    @property
    def fits(self) -> np.ndarray:
        """Boolean K x H: client j's memory demand fits helper i's capacity on its own."""
        return self.mem[:, None] <= self.cap[None, :]

    def client_name(self, j: int) -> str:
        """Display name of client j."""
        return self.client_names[j] if self.client_names else f"client {j}"

    def helper_name(self, i: int) -> str:
        """Display name of helper i."""
        return self.helper_names[i] if self.helper_names else f"helper {i}"

    def _validate(self) -> None:
        if self.mem.ndim != 1 or self.cap.ndim != 1:
            raise InstanceError(
                f"mem must be a vector of K values and cap a vector of H values; got shapes "
                f"{self.mem.shape} and {self.cap.shape}"
            )
        K, H = self.K, self.H
        if K < 1 or H < 1:
            raise InstanceError(f"an instance needs at least one client and one helper; got K={K}, H={H}")
        expected = {"KH": (K, H), "K": (K,), "H": (H,)}
        for name, kind, _ in self._fields():
            arr = getattr(self, name)
            if arr.shape != expected[kind]:
                raise InstanceError(
                    f"field {name!r} has shape {arr.shape}, expected {expected[kind]} (K={K} clients, H={H} helpers)"
                )
            bad = ~np.isfinite(arr)
            if bad.any():
                idx = tuple(int(v) for v in np.argwhere(bad)[0])
                raise InstanceError(f"field {name!r} has a non-finite value {arr[idx]} at index {idx}")
            neg = arr < 0
            if neg.any():
                idx = tuple(int(v) for v in np.argwhere(neg)[0])
                raise InstanceError(f"field {name!r} has a negative value {arr[idx]} at index {idx}")
        for names, count, what in ((self.client_names, K, "client_names"), (self.helper_names, H, "helper_names")):
            if names and len(names) != count:
                raise InstanceError(f"{what} has {len(names)} entries, expected {count}")
        if self.staged:
            self._validate_stages()
        if self.has_loss_times:
            self._validate_loss()
        nowhere = ~self.fits.any(axis=1) & ~self.local_fits
        if nowhere.any():
            j = int(np.flatnonzero(nowhere)[0])
            raise InstanceError(
                f"{self.client_name(j)} needs {self.mem[j]:g} MB but the largest helper capacity is "
                f"{self.cap.max():g} MB: it fits on no helper{' nor on its own device' if self.hybrid else ''} "
                f"({int(nowhere.sum())} such clients)"
            )

    def _validate_stages(self) -> None:
        for part, whole in (("r_up", "r"), ("r_bwd_up", "r_bwd")):
            over = getattr(self, part) > getattr(self, whole)
            if over.any():
                j, i = (int(v) for v in np.argwhere(over)[0])
                raise InstanceError(f"{part}[{j}][{i}] = {getattr(self, part)[j, i]:g} ms exceeds {whole}[{j}][{i}] = "
                                    f"{getattr(self, whole)[j, i]:g} ms: the upload is a part of {whole}")
        for name in ("batch", "micro"):
            arr = getattr(self, name)
            bad = (arr != np.floor(arr)) | (arr < 1)
            if bad.any():
                j = int(np.flatnonzero(bad)[0])
                raise InstanceError(f"{name}[{j}] = {arr[j]:g}: {name} must hold whole numbers >= 1")
        over = self.micro > self.batch
        if over.any():
            j = int(np.flatnonzero(over)[0])
            raise InstanceError(f"{self.client_name(j)} has N = {self.micro[j]:g} micro-batches but a batch of "
                                f"{self.batch[j]:g} samples: N <= B")

    def _validate_loss(self) -> None:
        bad = (self.local_loss != 0) & (self.local_loss != 1)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise InstanceError(f"local_loss[{j}] = {self.local_loss[j]:g}: 1 (local loss) or 0 (U-shaped SplitFed)")
        over = self.r_cpu[:, None] > self.r
        if over.any():
            j, i = (int(v) for v in np.argwhere(over)[0])
            raise InstanceError(f"r_cpu[{j}] = {self.r_cpu[j]:g} ms exceeds r[{j}][{i}] = {self.r[j, i]:g} ms: the "
                                "part-1 forward is a part of r")

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form documented in docs/formats.md."""
        version = (LOSS_VERSION if self.has_loss_times else STAGED_VERSION if self.staged else
                   HYBRID_VERSION if self.hybrid else FORMAT_VERSION)
        out: dict[str, Any] = {"format": FORMAT_NAME, "version": version, "units": {"time": "ms", "memory": "MB"}}
        out["clients"] = self.K
        out["helpers"] = self.H
        for name, _, _ in self._fields():
            out[name] = getattr(self, name).tolist()
        if self.client_names:
            out["client_names"] = list(self.client_names)
        if self.helper_names:
            out["helper_names"] = list(self.helper_names)
        out["meta"] = self.meta
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Instance:
        """Build and validate an instance from its JSON-ready form."""
        data = check_header(data, "instance", FORMAT_NAME,
                            (FORMAT_VERSION, HYBRID_VERSION, STAGED_VERSION, LOSS_VERSION), InstanceFormatError)
        version = data["version"]
        fields = FIELDS
        if version == HYBRID_VERSION or (version >= STAGED_VERSION and "r_own" in data):
            fields = fields + LOCAL_FIELDS
        if version == STAGED_VERSION or (version == LOSS_VERSION and "r_up" in data):
            fields = fields + STAGE_FIELDS
        if version == LOSS_VERSION:
            fields = fields + LOSS_FIELDS
        missing = [name for name, _, _ in fields if name not in data]
        if missing:
            raise InstanceFormatError(f"instance (version {data['version']}) is missing field(s): {', '.join(missing)}")
        arrays = {}
        for name, _, _ in fields:
            try:
                arrays[name] = np.array(data[name], dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise InstanceError(f"field {name!r} is not a (nested) list of numbers: {exc}") from None
        inst = cls(
            **arrays,
            client_names=tuple(data.get("client_names", ())),
            helper_names=tuple(data.get("helper_names", ())),
            meta=dict(data.get("meta", {})),
        )
        for key, size in (("clients", inst.K), ("helpers", inst.H)):
            if key in data and data[key] != size:
                raise InstanceError(f"instance declares {key}={data[key]!r} but its arrays hold {size}")
        return inst

    def save(self, path: str | Path) -> None:
        """Write the instance as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Instance:
        """Read and validate an instance JSON file."""
        return cls.from_dict(read_json(path, "instance", InstanceFormatError))
