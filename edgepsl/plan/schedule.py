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
# Version 3: micro-batch pipelining; `micro_batches` gives N per client and every job row is [client, kind, k]
# (micro-batch k = 0..N-1 of that kind); written only when some client has N > 1.
PIPELINED_VERSION = 3
# Version 4: `local_loss` gives each client's learning mode as the planner chose it (true = local loss, false =
# U-shaped SplitFed; docs/planning.md, "Local-loss mode"); written only when the plan records modes.
LOSS_VERSION = 4
LOCAL = -1
KIND_NAMES = {FWD: "fwd", BWD: "bwd"}
KIND_CODES = {name: code for code, name in KIND_NAMES.items()}


@dataclass(frozen=True, eq=False)
class Plan:
    """assignment[j] is client j's helper, or LOCAL (-1) for local mode; orders[i] is helper i's jobs as rows
    (client, kind) in run order (a local client has no jobs). With micro-batches (micro[j] = N_j > 1), client j
    has N_j forward and N_j backward jobs on its helper: the k-th (j, kind) row of an order is micro-batch k of
    that kind (`jobs(i)` lists them with k); micro None means N = 1 for every client. local_loss[j] (boolean K)
    is client j's learning mode as the planner chose it; None means the instance's own modes."""

    assignment: np.ndarray
    orders: tuple[np.ndarray, ...]
    method: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    micro: np.ndarray | None = None
    local_loss: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "assignment", np.ascontiguousarray(self.assignment, dtype=np.int64))
        orders = tuple(np.ascontiguousarray(np.asarray(o, dtype=np.int64).reshape(-1, 2)) for o in self.orders)
        object.__setattr__(self, "orders", orders)
        if self.micro is not None:
            micro = np.ascontiguousarray(self.micro, dtype=np.int64)
            object.__setattr__(self, "micro", micro if (micro != 1).any() else None)
        if self.local_loss is not None:
            object.__setattr__(self, "local_loss", np.ascontiguousarray(self.local_loss, dtype=bool))

    @property
    def micro_batches(self) -> np.ndarray:
        """N per client (int64; all 1 for an unpipelined plan)."""
        return self.micro if self.micro is not None else np.ones(len(self.assignment), dtype=np.int64)

    @property
    def pipelined(self) -> bool:
        """Whether some client's round is split into micro-batches (N > 1)."""
        return self.micro is not None

    def jobs(self, i: int) -> list[tuple[int, int, int]]:
        """Helper i's jobs in run order as (client, kind, micro-batch index); kind is FWD or BWD."""
        seen: dict[tuple[int, int], int] = {}
        out = []
        for j, kind in self.orders[i].tolist():
            k = seen.get((j, kind), 0)
            seen[(j, kind)] = k + 1
            out.append((j, kind, k))
        return out

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
        if self.pipelined:
            return {
                "format": FORMAT_NAME,
                "version": PIPELINED_VERSION,
                "method": self.method,
                "assignment": self.assignment.tolist(),
                "micro_batches": self.micro.tolist(),
                "orders": [[[j, KIND_NAMES.get(k, str(k)), n] for j, k, n in self.jobs(i)]
                           for i in range(len(self.orders))],
                "meta": self.meta,
            }
        out = {
            "format": FORMAT_NAME,
            "version": HYBRID_VERSION if self.local.any() else FORMAT_VERSION,
            "method": self.method,
            "assignment": self.assignment.tolist(),
            "orders": [[[int(j), KIND_NAMES.get(int(k), str(k))] for j, k in order] for order in self.orders],
            "meta": self.meta,
        }
        if self.local_loss is not None:
            out["version"] = LOSS_VERSION
            out["local_loss"] = self.local_loss.tolist()
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Plan:
        """Read a plan from its JSON-ready form (structure only; evaluate() checks it against an instance)."""
        data = check_header(data, "plan", FORMAT_NAME,
                            (FORMAT_VERSION, HYBRID_VERSION, PIPELINED_VERSION, LOSS_VERSION), PlanFormatError)
        piped = data["version"] == PIPELINED_VERSION
        moded = data["version"] == LOSS_VERSION
        needed = ("assignment", "orders") + (("micro_batches",) if piped else ()) + (("local_loss",) if moded else ())
        for key in needed:
            if key not in data:
                raise PlanFormatError(f"plan (version {data['version']}) is missing field {key!r}")
        try:
            assignment = np.array(data["assignment"], dtype=np.int64)
            micro = np.array(data["micro_batches"], dtype=np.int64) if piped else None
            orders = []
            for i, order in enumerate(data["orders"]):
                rows = []
                seen: dict[tuple[int, int], int] = {}
                for job in order:
                    client, kind, *index = job
                    if kind not in KIND_CODES:
                        raise PlanFormatError(f"helper {i}: job kind {kind!r} is neither 'fwd' nor 'bwd'")
                    if len(index) != int(piped):
                        raise PlanFormatError(f"helper {i}: job {job!r} must be [client, kind"
                                              f"{', micro-batch' if piped else ''}] in a version {data['version']} plan")
                    key = (int(client), KIND_CODES[kind])
                    if piped and int(index[0]) != seen.get(key, 0):
                        raise PlanFormatError(f"helper {i}: job {job!r} is out of micro-batch order: the "
                                              f"{kind} jobs of client {client} run as micro-batches 0, 1, 2, ...")
                    seen[key] = seen.get(key, 0) + 1
                    rows.append(key)
                orders.append(np.array(rows, dtype=np.int64).reshape(-1, 2))
        except (TypeError, ValueError) as exc:
            raise PlanFormatError(f"plan has a malformed assignment or job list: {exc}") from None
        if micro is not None and (micro.shape != assignment.shape or (micro < 1).any()):
            raise PlanFormatError("plan micro_batches must hold one whole number >= 1 per client")
        if assignment.ndim != 1:
            raise PlanFormatError("plan assignment must be a flat list of helper indices")
        modes = None
        if moded:
            modes = data["local_loss"]
            if (not isinstance(modes, list) or any(not isinstance(v, bool) for v in modes)
                    or len(modes) != len(assignment)):
                raise PlanFormatError("plan local_loss must hold one true (local loss) or false (U-shaped SplitFed) "
                                      "per client")
        if data["version"] == FORMAT_VERSION and (assignment == LOCAL).any():
            raise PlanFormatError(f"a version {FORMAT_VERSION} plan cannot put a client in local mode "
                                  f"(assignment {LOCAL}); local mode needs version {HYBRID_VERSION}")
        return cls(assignment, tuple(orders), str(data.get("method", "")), dict(data.get("meta", {})), micro,
                   None if modes is None else np.array(modes, dtype=bool))

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
    # Pipelined plans: start and end of every micro-batch job, flat in the plan's order (Plan.flat()); the
    # per-client fields above then hold the first start and last end of each kind.
    job_start: np.ndarray | None = None
    job_end: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready times, for the plan file's evaluation section."""
        out = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value is not None:
                out[name] = value.tolist() if isinstance(value, np.ndarray) else value
        return out
