"""Plan: an assignment plus, per helper, the order of its jobs; JSON round-trip; the evaluated Timeline."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepsl.plan.errors import PlanFormatError
from edgepsl.plan.jsonfile import check_header, read_json
from edgepsl.plan.pure.constants import BWD, FWD

FORMAT_NAME = "edgepsl-plan"
FORMAT_VERSION = 1
# Version 2: the assignment may hold LOCAL (client trains part-2 on its own device); written only when it does.
HYBRID_VERSION = 2
LOCAL = -1
KIND_NAMES = {FWD: "fwd", BWD: "bwd"}
KIND_CODES = {name: code for code, name in KIND_NAMES.items()}


@dataclass(frozen=True, eq=False)
class Plan:
    """assignment[j] is client j's helper, or LOCAL (-1) for local mode; orders[i] is helper i's jobs as rows
    (client, kind) in run order (a local client has no jobs)."""

    assignment: np.ndarray
    orders: tuple[np.ndarray, ...]
    method: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "assignment", np.ascontiguousarray(self.assignment, dtype=np.int64))
        orders = tuple(np.ascontiguousarray(np.asarray(o, dtype=np.int64).reshape(-1, 2)) for o in self.orders)
        object.__setattr__(self, "orders", orders)

    @classmethod
    def from_flat(cls, assignment: np.ndarray, seq_client: np.ndarray, seq_kind: np.ndarray, offsets: np.ndarray,
                  method: str = "", meta: dict[str, Any] | None = None) -> Plan:
        """Build a plan from the kernels' flat job arrays."""
        jobs = np.stack([seq_client, seq_kind], axis=1)
        orders = tuple(jobs[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1))
        return cls(assignment, orders, method, dict(meta or {}))

    def flat(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(seq_client, seq_kind, offsets): the job orders as the kernels take them."""
        jobs = np.concatenate(self.orders) if self.orders else np.empty((0, 2), dtype=np.int64)
        offsets = np.zeros(len(self.orders) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(o) for o in self.orders])
        return np.ascontiguousarray(jobs[:, 0]), np.ascontiguousarray(jobs[:, 1]), offsets

    @property
    def local(self) -> np.ndarray:
        """Boolean K: which clients train in local mode."""
        return self.assignment == LOCAL

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form documented in docs/formats.md."""
        return {
            "format": FORMAT_NAME,
            "version": HYBRID_VERSION if self.local.any() else FORMAT_VERSION,
            "method": self.method,
            "assignment": self.assignment.tolist(),
            "orders": [[[int(j), KIND_NAMES.get(int(k), str(k))] for j, k in order] for order in self.orders],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Plan:
        """Read a plan from its JSON-ready form (structure only; evaluate() checks it against an instance)."""
        data = check_header(data, "plan", FORMAT_NAME, (FORMAT_VERSION, HYBRID_VERSION), PlanFormatError)
        for key in ("assignment", "orders"):
            if key not in data:
                raise PlanFormatError(f"plan is missing field {key!r}")
        try:
            assignment = np.array(data["assignment"], dtype=np.int64)
            orders = []
            for i, order in enumerate(data["orders"]):
                rows = []
                for job in order:
                    client, kind = job
                    if kind not in KIND_CODES:
                        raise PlanFormatError(f"helper {i}: job kind {kind!r} is neither 'fwd' nor 'bwd'")
                    rows.append((int(client), KIND_CODES[kind]))
                orders.append(np.array(rows, dtype=np.int64).reshape(-1, 2))
        except (TypeError, ValueError) as exc:
            raise PlanFormatError(f"plan has a malformed assignment or job list: {exc}") from None
        if assignment.ndim != 1:
            raise PlanFormatError("plan assignment must be a flat list of helper indices")
        if data["version"] == FORMAT_VERSION and (assignment == LOCAL).any():
            raise PlanFormatError(f"a version {FORMAT_VERSION} plan cannot put a client in local mode "
                                  f"(assignment {LOCAL}); local mode needs version {HYBRID_VERSION}")
        return cls(assignment, tuple(orders), str(data.get("method", "")), dict(data.get("meta", {})))

    def save(self, path: str | Path) -> None:
        """Write the plan as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        """Read a plan JSON file."""
        return cls.from_dict(read_json(path, "plan", PlanFormatError))


@dataclass(frozen=True, eq=False)
class Timeline:
    """A plan run non-preemptively in continuous time: per-client job times and finishes, per-helper load (ms)."""

    fwd_start: np.ndarray
    fwd_end: np.ndarray
    bwd_start: np.ndarray
    bwd_end: np.ndarray
    finish: np.ndarray
    helper_busy: np.ndarray
    helper_idle: np.ndarray
    helper_span: np.ndarray
    makespan: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready times, for the plan file's evaluation section."""
        return {name: (getattr(self, name).tolist() if name != "makespan" else self.makespan)
                for name in self.__dataclass_fields__}
