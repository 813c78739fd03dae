"""Exact planning: the non-preemptive problem edgepsl executes as a MILP on HiGHS (highspy, `solvers` extra).

Formulation (continuous time, docs/milp.md): binaries y_ji assign client j to helper i; S_j and T_j are
the start times of j's forward and backward jobs; for every pair of jobs of two different clients a
binary o fixes their order when both clients share a helper (big-M disjunctions, active only on that
helper). Minimise W >= T_j + p'_j + q'_j subject to S_j >= r_j, T_j >= S_j + p_j + g_j, memory and
assignment. Every start is bounded by an upper bound U on the optimum (a heuristic plan's makespan), so
M = U + the longest job is valid. The solution's order per helper is evaluated with edgepsl's evaluator.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgepsl.plan.backend import kernel_arrays
from edgepsl.plan.bounds import lower_bound
from edgepsl.plan.evaluate import evaluate
from edgepsl.plan.heuristics import Solution, solve
from edgepsl.plan.highs import add_assignment, highs_module, new_model, run
from edgepsl.plan.instance import Instance
from edgepsl.plan.pure.constants import BWD, FWD
from edgepsl.plan.schedule import Plan


@dataclass(frozen=True)
class MilpSolution(Solution):
    """A Solution from HiGHS, with its status, proven optimality, objective, dual bound and gap."""

    status: str
    optimal: bool
    objective: float
    dual_bound: float
    mip_gap: float

    def details(self) -> dict[str, Any]:
        """HiGHS's status, dual bound and gap, for the plan file's evaluation section."""
        return {"highs_status": self.status, "highs_dual_bound_ms": self.dual_bound, "highs_gap": self.mip_gap}

    def summary(self) -> list[str]:
        """HiGHS's outcome as one summary line."""
        return [f"HiGHS        {self.status}: objective {self.objective:.1f} ms, bound {self.dual_bound:.1f} ms, "
                f"gap {100 * self.mip_gap:.2f} %"]


def helper_orders(assignment: np.ndarray, start: dict[int, list[float]], dur: dict[int, np.ndarray],
                  H: int) -> tuple[np.ndarray, ...]:
    """Each helper's jobs sorted by the midpoint of their solved interval, then kind (forward first), then client.

    Jobs on one helper do not overlap in the solution, so a job ending no later than another starts has the
    smaller midpoint; sorting by start alone could put a zero-length job after a longer one starting at the
    same moment and delay it by that job's length. Midpoints also keep the order under HiGHS's tolerances,
    which can move two back-to-back starts by far less than half their durations.
    """
    K = len(assignment)
    rows = np.arange(K)
    mid = {kind: np.asarray(start[kind]) + 0.5 * dur[kind][rows, assignment] for kind in (FWD, BWD)}
    jobs = sorted((float(mid[kind][j]), kind, j) for j in range(K) for kind in (FWD, BWD))
    return tuple(np.array([[j, kind] for _, kind, j in jobs if assignment[j] == i], dtype=np.int64).reshape(-1, 2)
                 for i in range(H))


def solve_milp(instance: Instance, time_limit: float = 60.0, threads: int = 1, warm_start: Plan | None = None,
               verbose: bool = False, hybrid: bool = False) -> MilpSolution:
    """Solve the non-preemptive assignment + job-order problem; proven optimum or incumbent with HiGHS's gap.

    With `hybrid` (and an instance with local-mode fields) each client that fits locally also gets a binary z_j
    for local mode: it replaces the helper in the one-per-client row and adds W >= L_j z_j; a local client has no
    y on any helper, so every ordering disjunction and every chain term of it is inactive."""
    from edgepsl.plan.hybrid import hybrid_lower_bound, solve_hybrid

    highspy = highs_module()
    t0 = time.perf_counter()
    hybrid = hybrid and instance.hybrid
    if warm_start is None:
        warm_start = solve_hybrid(instance).plan if hybrid else solve(instance, "greedy-ls").plan
    warm = evaluate(instance, warm_start)
    K, H = instance.K, instance.H
    r, p, g, pb, q = kernel_arrays(instance)
    fits = instance.fits
    upper = warm.makespan
    big_m = upper + float(max(p.max(), pb.max()))

    h = new_model(time_limit, threads, verbose)
    local_time = instance.local_time
    z = {j: h.addBinary() for j in np.flatnonzero(instance.local_fits).tolist()} if hybrid else {}
    y = add_assignment(h, instance, z)
    S = [h.addVariable(lb=0.0, ub=upper) for _ in range(K)]
    T = [h.addVariable(lb=0.0, ub=upper) for _ in range(K)]
    W = h.addVariable(lb=0.0, ub=upper, obj=1.0)
    for j, var in z.items():
        h.addConstr(W - float(local_time[j]) * var >= 0)

    def lin(coef: np.ndarray, j: int):
        return sum(float(coef[j, i]) * y[j, i] for i in range(H) if fits[j, i])

    floor = instance.release_floor
    for j in range(K):
        h.addConstr(S[j] - lin(r, j) >= 0)
        h.addConstr(T[j] - S[j] - lin(p + g, j) >= 0)
        if floor is not None and floor[j].any():
            h.addConstr(T[j] - lin(floor, j) >= 0)
        h.addConstr(W - T[j] - lin(pb + q, j) >= 0)
    order = {}
    starts = {FWD: S, BWD: T}
    dur = {FWD: p, BWD: pb}
    for j in range(K):
        for k in range(j + 1, K):
            shared = [i for i in range(H) if fits[j, i] and fits[k, i]]
            if not shared:
                continue
            for a in (FWD, BWD):
                for b in (FWD, BWD):
                    o = h.addBinary()
                    order[j, a, k, b] = o
                    for i in shared:
                        away = big_m * (2 - y[j, i] - y[k, i])
                        h.addConstr(starts[b][k] - starts[a][j] - float(dur[a][j, i]) + big_m * (1 - o) + away >= 0)
                        h.addConstr(starts[a][j] - starts[b][k] - float(dur[b][k, i]) + big_m * o + away >= 0)

    values = np.zeros(h.getNumCol())
    for (j, i), var in y.items():
        values[var.index] = float(warm_start.assignment[j] == i)
    for j, var in z.items():
        values[var.index] = float(warm_start.local[j])
    for j in range(K):
        values[S[j].index] = warm.fwd_start[j]
        values[T[j].index] = warm.bwd_start[j]
    values[W.index] = warm.makespan
    start_of = {FWD: warm.fwd_start, BWD: warm.bwd_start}
    for (j, a, k, b), o in order.items():
        values[o.index] = float(start_of[a][j] <= start_of[b][k])
    sol = highspy.HighsSolution()
    sol.col_value = values.tolist()
    sol.value_valid = True
    h.setSolution(sol)
    out = run(h, "plan")
    col = out.values
    assignment = out.assignment(y, K, z)
    orders = helper_orders(assignment, {kind: [col[starts[kind][j].index] for j in range(K)] for kind in (FWD, BWD)},
                           dur, H)
    plan = Plan(assignment, orders, "milp", {"status": out.status, "time_limit": time_limit, "threads": threads})
    timeline = evaluate(instance, plan)
    if timeline.makespan > warm.makespan:
        plan, timeline = Plan(warm_start.assignment, warm_start.orders, "milp", plan.meta), warm
    return MilpSolution(plan=plan, timeline=timeline, instance=instance,
                        bound_of=hybrid_lower_bound if hybrid else lower_bound,
                        solve_seconds=time.perf_counter() - t0, status=out.status, optimal=out.optimal,
                        objective=out.objective, dual_bound=out.dual_bound, mip_gap=out.mip_gap)
