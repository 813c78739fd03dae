"""The paper's preemptive time-indexed ILP (paper.md 2.1) with an explicit slot length, on HiGHS.

Times are discretised as ceil(ms / slot_ms) (helper jobs at least one slot); slot t covers
[t, t + 1). Binaries y_ji (assignment), x_ijt and z_ijt (helper i runs j's forward / backward job in
slot t): at most one job per helper and slot; the forward job gets p_ij slots at or after r_ij; the
backward job gets p'_ij slots, each at least g_ij slots after the forward job's last slot; client j
finishes at its last backward slot + 1 + q'_ij. Minimise the latest finish W. Preemption is allowed,
as in the paper: a job may use non-contiguous slots. The horizon is the makespan of greedy-ls on the
discretised instance (a non-preemptive plan is a feasible slot schedule), so nothing optimal is cut.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from edgepsl.errors import EdgePSLError
from edgepsl.plan.backend import kernel_arrays
from edgepsl.plan.heuristics import solve
from edgepsl.plan.instance import FIELDS, Instance
from edgepsl.plan.highs import add_assignment, new_model, run


class SlotLengthError(EdgePSLError):
    """The slot length is not a positive number of milliseconds."""


@dataclass(frozen=True)
class SlotSolution:
    """Assignment, per-helper slot allocation (-1 idle, else client * 2 + kind) and the makespan."""

    assignment: np.ndarray
    slots: np.ndarray
    makespan_slots: int
    slot_ms: float
    status: str
    optimal: bool
    dual_bound_slots: float
    mip_gap: float
    solve_seconds: float

    @property
    def makespan_ms(self) -> float:
        """Makespan in milliseconds: slots times the slot length."""
        return self.makespan_slots * self.slot_ms


def discretise(instance: Instance, slot_ms: float) -> Instance:
    """The instance in whole slots: ceil(value / slot_ms); helper jobs p, p' take at least one slot."""
    if not (slot_ms > 0 and math.isfinite(slot_ms)):
        raise SlotLengthError(f"slot length must be a positive number of ms, got {slot_ms!r}")
    arrays = {}
    for name, _, _ in FIELDS:
        value = getattr(instance, name)
        if name in ("mem", "cap"):
            arrays[name] = value
        else:
            arrays[name] = np.ceil(value / slot_ms - 1e-9)
            if name in ("p", "p_bwd"):
                arrays[name] = np.maximum(arrays[name], 1.0)
    return Instance(**arrays, client_names=instance.client_names, helper_names=instance.helper_names,
                    meta={**instance.meta, "slot_ms": slot_ms})


def solve_slot_ilp(instance: Instance, slot_ms: float, time_limit: float = 60.0, threads: int = 1,
                   verbose: bool = False) -> SlotSolution:
    """Solve the paper's preemptive ILP at the given slot length; optimum or incumbent with HiGHS's gap."""
    instance.require_splitfed("the slot ILP")
    t0 = time.perf_counter()
    inst = discretise(instance, slot_ms)
    K, H = inst.K, inst.H
    r, p, g, pb, q = (a.astype(np.int64) for a in kernel_arrays(inst))
    horizon = int(round(solve(inst, "greedy-ls").makespan))
    fits = inst.fits

    h = new_model(time_limit, threads, verbose)
    W = h.addVariable(lb=0.0, ub=float(horizon), obj=1.0)
    y = add_assignment(h, inst)
    x, z = {}, {}
    for j in range(K):
        for i in range(H):
            if not fits[j, i]:
                continue
            last_b = horizon - int(q[j, i])            # a backward slot t needs t + 1 + q <= horizon
            for t in range(int(r[j, i]), horizon):
                x[i, j, t] = h.addBinary()
            for t in range(int(r[j, i] + p[j, i] + g[j, i]), last_b):
                z[i, j, t] = h.addBinary()
    for j in range(K):
        for i in range(H):
            if not fits[j, i]:
                continue
            xs = [(t, x[i, j, t]) for t in range(horizon) if (i, j, t) in x]
            zs = [(t, z[i, j, t]) for t in range(horizon) if (i, j, t) in z]
            h.addConstr(sum(v for _, v in xs) - int(p[j, i]) * y[j, i] == 0)
            h.addConstr(sum(v for _, v in zs) - int(pb[j, i]) * y[j, i] == 0)
            for t, v in zs:
                done = [u for s, u in xs if s < t - int(g[j, i])]
                h.addConstr(sum(done) - int(p[j, i]) * v >= 0 if done else v == 0)
                h.addConstr(W - (t + 1 + int(q[j, i])) * v >= 0)
    for i in range(H):
        members = [j for j in range(K) if fits[j, i]]
        for t in range(horizon):
            busy = [x[i, j, t] for j in members if (i, j, t) in x] + [z[i, j, t] for j in members if (i, j, t) in z]
            if len(busy) > 1:
                h.addConstr(sum(busy) <= 1)
    out = run(h, "slot schedule")
    col = out.values
    assignment = out.assignment(y, K)
    slots = np.full((H, horizon), -1, dtype=np.int64)
    for kind, var in ((0, x), (1, z)):
        for (i, j, t), v in var.items():
            if col[v.index] > 0.5:
                slots[i, t] = 2 * j + kind
    finish = max(int(np.flatnonzero(slots[assignment[j]] == 2 * j + 1).max()) + 1 + int(q[j, assignment[j]])
                 for j in range(K))
    return SlotSolution(
        assignment=assignment, slots=slots, makespan_slots=finish, slot_ms=float(slot_ms), status=out.status,
        optimal=out.optimal, dual_bound_slots=out.dual_bound, mip_gap=out.mip_gap,
        solve_seconds=time.perf_counter() - t0,
    )
