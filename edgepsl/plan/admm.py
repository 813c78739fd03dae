"""The paper's decomposition planner (paper.md 2.2-2.4): ADMM on the forward problem, exact per-helper schedules.

Algorithm 1 alternates an x-update (a time-indexed MILP: which helper runs which forward work in which
slot, with the coupling sum_t x_ijt = p_ij y_ij dualised by the L1 penalty rho/2 |S_ij - p_ij y_ij + mu_ij|),
a y-update (an assignment MILP with memory capacities) and the scaled dual update. After every iteration
each helper's forward problem (release r, processing p, tail d + l) and then its backward problem
(release F + g, processing p', tail q', forward pieces blocked; Algorithm 2) are solved exactly in
continuous time by the preemptive largest-tail kernel, turned into a non-preemptive job order and
evaluated by edgepsl's evaluator; the best evaluated plan is returned. Slots only steer the assignment.
The formulation, slot choice and stopping rule are documented in docs/admm.md.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgepsl.errors import EdgePSLError
from edgepsl.plan.backend import kernels
from edgepsl.plan.errors import InfeasibleError
from edgepsl.plan.evaluate import MEMORY_RTOL
from edgepsl.plan.heuristics import Solution, assign
from edgepsl.plan.highs import SolverFailedError, add_assignment, highs_module, new_model, run
from edgepsl.plan.instance import Instance
from edgepsl.plan.packing import memory_feasible_assignment
from edgepsl.plan.preemptive import preemptive_schedules, schedule_assignment
from edgepsl.plan.schedule import Plan, Timeline
from edgepsl.plan.slot_ilp import SlotLengthError

# The x-update holds about this many slot binaries, with MIN_SLOTS..MAX_SLOTS slots over the forward window.
TARGET_X_VARS = 20_000
MIN_SLOTS, MAX_SLOTS = 24, 96
# The x-update horizon: the reference forward schedule's last completion plus this share.
HORIZON_SLACK = 0.25
# S, p and y are whole slots, so the squared primal residual is 0 or at least 1.
RESIDUAL_TOL = 0.5
# Share of an iteration's time slice given to the x-update (the y-update and the schedules take the rest).
X_SHARE = 0.75
# Shortest time limit handed to HiGHS; a shorter slice returns the warm start.
MIN_SOLVE_SECONDS = 0.05
# The y-update (a small assignment MILP) always gets this long, even when the x-update used up its slice.
MIN_Y_SECONDS = 0.2


class AdmmParameterError(EdgePSLError):
    """An ADMM parameter is out of range (negative rho or time limit, fewer than one iteration)."""


@dataclass(frozen=True)
class AdmmSolution(Solution):
    """A Solution of the ADMM decomposition: iterations run, why it stopped, slot length, per-iteration history."""

    iterations: int
    stop_reason: str
    slot_ms: float
    history: tuple[dict, ...]

    def details(self) -> dict[str, Any]:
        """Iterations, stop reason, slot length and history, for the plan file's evaluation section."""
        return {"admm_iterations": self.iterations, "admm_stop_reason": self.stop_reason, "admm_slot_ms": self.slot_ms,
                "admm_history": list(self.history)}

    def summary(self) -> list[str]:
        """The decomposition's run as one summary line."""
        return [f"ADMM         {self.iterations} iterations, stopped: {self.stop_reason}, slot {self.slot_ms:.1f} ms"]


def initial_assignment(instance: Instance) -> np.ndarray | None:
    """[C-HEAD]'s start: clients in index order, each on the helper with room that minimises r+p+d+r'+p'+d'
    (ties to the lowest index); None when a client finds no helper with room."""
    cost = instance.r + instance.p + instance.d + instance.r_bwd + instance.p_bwd + instance.d_bwd
    load = np.zeros(instance.H)
    out = np.empty(instance.K, dtype=np.int64)
    for j in range(instance.K):
        room = load + instance.mem[j] <= instance.cap * (1 + MEMORY_RTOL)
        if not room.any():
            return None
        i = int(np.flatnonzero(room)[np.argmin(cost[j, room])])
        out[j] = i
        load[i] += instance.mem[j]
    return out


def reference_assignment(instance: Instance, initial: np.ndarray | None, time_limit: float) -> np.ndarray:
    """The assignment that sets the slot length and horizon: of the initial y, greedy-eft and balanced-greedy the
    one with the smallest P_f value, else any memory-feasible assignment (InfeasibleError when there is none)."""
    best, best_value = None, math.inf
    for name in ("initial", "greedy-eft", "balanced-greedy"):
        try:
            a = assign(instance, name) if name != "initial" else initial
        except InfeasibleError:
            continue
        if a is None:
            continue
        value = preemptive_schedules(instance, a).forward_objective
        if value < best_value:
            best, best_value = a, value
    if best is not None:
        return best
    return memory_feasible_assignment(instance, time_limit=max(time_limit, MIN_SOLVE_SECONDS))


@dataclass(frozen=True)
class Slots:
    """The slotted forward problem: slot t covers [origin + t s, origin + (t + 1) s) ms; whole-slot releases and
    processing times, fractional tails."""

    slot_ms: float
    origin: float
    release: np.ndarray
    proc: np.ndarray
    horizon: int

    def tails(self, instance: Instance, y: np.ndarray) -> np.ndarray:
        """d + l of each client on its helper in y, in slots (the P_f tail while y is fixed)."""
        rows = np.arange(instance.K)
        return (instance.d[rows, y] + instance.l) / self.slot_ms

    def assigned_work(self, y: np.ndarray, H: int) -> np.ndarray:
        """p_ij y_ij in slots as a K x H array."""
        out = np.zeros((y.shape[0], H))
        rows = np.arange(y.shape[0])
        out[rows, y] = self.proc[rows, y]
        return out


def _slot_schedule(instance: Instance, y: np.ndarray, release: np.ndarray, proc: np.ndarray,
                   slot_ms: float) -> list[tuple[int, int, int, int]]:
    """Preemptive largest-tail forward schedule of y in whole slots: pieces (client, helper, start, end)."""
    pieces = []
    empty = np.empty(0)
    for i in range(instance.H):
        m = np.flatnonzero(y == i)
        if m.size == 0:
            continue
        tail = (instance.d[m, i] + instance.l[m]) / slot_ms
        _, _, pj, ps, pe = kernels.jackson_preemptive(release[m, i].astype(float), proc[m, i].astype(float),
                                                       tail, empty, empty)
        pieces += [(int(m[j]), i, round(s), round(e)) for j, s, e in zip(pj, ps, pe)]
    return pieces


def choose_slots(instance: Instance, reference: np.ndarray, slot_ms: float | None) -> Slots:
    """Slot length and horizon of the x-update (docs/admm.md): about TARGET_X_VARS slot binaries over the
    window from the earliest release to the reference's last forward completion, 24 to 96 slots across it."""
    fits = instance.fits
    origin = float(instance.r[fits].min())
    last = float(preemptive_schedules(instance, reference).fwd_end.max())
    span = last - origin if last > origin else max(float(instance.p.max()), 1.0)
    if slot_ms is None:
        window = np.maximum((1 + HORIZON_SLACK) * span - (instance.r - origin), 0.0)[fits].sum()
        slot_ms = min(max(window / TARGET_X_VARS, span / MAX_SLOTS), span / MIN_SLOTS)
    release = np.ceil((instance.r - origin) / slot_ms - 1e-9).astype(np.int64)
    proc = np.maximum(np.ceil(instance.p / slot_ms - 1e-9), 1).astype(np.int64)
    done = max(e for _, _, _, e in _slot_schedule(instance, reference, release, proc, slot_ms))
    return Slots(float(slot_ms), origin, release, proc, math.ceil((1 + HORIZON_SLACK) * done))


def _lp(highspy: Any, cost: np.ndarray, col_lo: np.ndarray, col_hi: np.ndarray, integer: np.ndarray,
        rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, row_lo: np.ndarray, row_hi: np.ndarray) -> Any:
    """A HighsLp from triplets (row, column, value), stored row-wise."""
    order = np.lexsort((cols, rows))
    lp = highspy.HighsLp()
    lp.num_col_ = int(cost.size)
    lp.num_row_ = int(row_lo.size)
    lp.col_cost_ = cost
    lp.col_lower_ = col_lo
    lp.col_upper_ = col_hi
    lp.row_lower_ = row_lo
    lp.row_upper_ = row_hi
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.num_col_ = lp.num_col_
    lp.a_matrix_.num_row_ = lp.num_row_
    lp.a_matrix_.start_ = np.searchsorted(rows[order], np.arange(row_lo.size + 1)).astype(np.int32)
    lp.a_matrix_.index_ = cols[order].astype(np.int32)
    lp.a_matrix_.value_ = vals[order]
    lp.integrality_ = [highspy.HighsVarType.kInteger if v else highspy.HighsVarType.kContinuous for v in integer]
    return lp


class ForwardModel:
    """The x-update MILP, built once; each iteration changes only row bounds (tails, penalty targets) and the start.

    Columns: x_ijt in {0, 1} for t in [release_ij, horizon) on helpers that fit j; f_j (forward completion,
    slots); w; a_ij >= |S_ij - p_ij y_ij + mu_ij| with S_ij = sum_t x_ijt. Rows: one job per helper and slot;
    sum_i S_ij / p_ij = 1; f_j >= (t + 1) x_ijt; w >= f_j + tail_j; the two sides of each |.|.
    Minimise w + rho / 2 sum a_ij.
    """

    def __init__(self, instance: Instance, slots: Slots, rho: float, threads: int, verbose: bool) -> None:
        self.highspy = highs_module()
        K, H, T = instance.K, instance.H, slots.horizon
        self.K, self.H, self.slots = K, H, slots
        ok = instance.fits & (slots.release + slots.proc <= T)
        self.pair_j, self.pair_i = np.nonzero(ok)
        n_pairs = self.pair_j.size
        self.pair_of = np.full((K, H), -1, dtype=np.int64)
        self.pair_of[self.pair_j, self.pair_i] = np.arange(n_pairs)
        width = T - slots.release[self.pair_j, self.pair_i]
        self.base = np.concatenate([[0], np.cumsum(width)])
        nx = int(self.base[-1])
        self.nx = nx
        xp = np.repeat(np.arange(n_pairs), width)                      # pair of each x column
        xj, xi = self.pair_j[xp], self.pair_i[xp]
        xt = np.arange(nx) - self.base[xp] + slots.release[xj, xi]
        self.x_pair, self.x_t = xp, xt
        self.f0, self.w_col, self.a0 = nx, nx + K, nx + K + 1
        n_col = nx + K + 1 + n_pairs
        inf = self.highspy.kHighsInf

        rows, cols, vals, lo, hi = [], [], [], [], []

        def block(r: np.ndarray, c: np.ndarray, v: np.ndarray, n: int, low: np.ndarray, high: np.ndarray) -> int:
            first = sum(len(x) for x in lo)
            rows.append(r + first)
            cols.append(c)
            vals.append(v)
            lo.append(np.broadcast_to(low, (n,)).astype(float))
            hi.append(np.broadcast_to(high, (n,)).astype(float))
            return first

        xs = np.arange(nx)
        slot_ids, slot_row = np.unique(xi * T + xt, return_inverse=True)
        block(slot_row, xs, np.ones(nx), slot_ids.size, -inf, 1.0)
        block(xj, xs, 1.0 / slots.proc[xj, xi], K, 1.0, 1.0)
        block(np.repeat(xs, 2), np.stack([xs, self.f0 + xj], 1).ravel(),
              np.stack([xt + 1.0, -np.ones(nx)], 1).ravel(), nx, -inf, 0.0)
        ks = np.arange(K)
        self.tail_row = block(np.repeat(ks, 2), np.stack([np.full(K, self.w_col), self.f0 + ks], 1).ravel(),
                              np.tile([1.0, -1.0], K), K, 0.0, inf)
        pairs = np.arange(n_pairs)
        for sign in (-1.0, 1.0):                                       # a - S >= target, a + S >= -target
            first = block(np.concatenate([pairs, xp]), np.concatenate([self.a0 + pairs, xs]),
                          np.concatenate([np.ones(n_pairs), np.full(nx, sign)]), n_pairs, 0.0, inf)
            if sign < 0:
                self.abs_row = first
        cost = np.zeros(n_col)
        cost[self.w_col] = 1.0
        cost[self.a0:] = rho / 2
        col_hi = np.full(n_col, inf)
        col_hi[:nx] = 1.0
        col_hi[self.f0:self.f0 + K] = T
        self.h = new_model(1.0, threads, verbose)
        self.h.passModel(_lp(self.highspy, cost, np.zeros(n_col), col_hi, np.arange(n_col) < nx,
                             np.concatenate(rows), np.concatenate(cols), np.concatenate(vals),
                             np.concatenate(lo), np.concatenate(hi)))
        self.tails = np.zeros(K)
        self.target = np.zeros(n_pairs)
        self.rho = rho

    def x_from_pieces(self, pieces: list[tuple[int, int, int, int]]) -> np.ndarray | None:
        """x columns of a slot schedule given as pieces (client, helper, start, end); None if it leaves the model."""
        x = np.zeros(self.nx)
        for j, i, s, e in pieces:
            k = self.pair_of[j, i]
            if k < 0 or e > self.slots.horizon:
                return None
            lo = self.base[k] - self.slots.release[j, i]
            x[lo + s:lo + e] = 1.0
        return x

    def work(self, x: np.ndarray) -> np.ndarray:
        """S_ij = sum_t x_ijt as a K x H array (slots)."""
        S = np.zeros((self.K, self.H))
        np.add.at(S, (self.pair_j[self.x_pair], self.pair_i[self.x_pair]), np.round(x))
        return S

    def finish(self, x: np.ndarray) -> np.ndarray:
        """f_j = last forward slot + 1 of each client under x."""
        f = np.zeros(self.K)
        on = np.round(x) > 0
        np.maximum.at(f, self.pair_j[self.x_pair[on]], self.x_t[on] + 1.0)
        return f

    def update(self, tails: np.ndarray, py: np.ndarray, mu: np.ndarray) -> None:
        """Set the tails d + l under y and the penalty targets p_ij y_ij - mu_ij (slots)."""
        inf = self.highspy.kHighsInf
        self.tails = tails
        self.target = (py - mu)[self.pair_j, self.pair_i]
        n = self.target.size
        h = self.h
        h.changeRowsBounds(self.K, np.arange(self.tail_row, self.tail_row + self.K, dtype=np.int32),
                           tails, np.full(self.K, inf))
        h.changeRowsBounds(n, np.arange(self.abs_row, self.abs_row + n, dtype=np.int32), -self.target,
                           np.full(n, inf))
        h.changeRowsBounds(n, np.arange(self.abs_row + n, self.abs_row + 2 * n, dtype=np.int32), self.target,
                           np.full(n, inf))

    def objective(self, x: np.ndarray) -> float:
        """w + rho / 2 sum |S - p y + mu| of x under the current tails and targets."""
        S = self.work(x)[self.pair_j, self.pair_i]
        return float((self.finish(x) + self.tails).max() + self.rho / 2 * np.abs(S - self.target).sum())

    def solve(self, starts: list[np.ndarray], time_limit: float) -> tuple[np.ndarray, str]:
        """The x-update from the best warm start: HiGHS's incumbent, or that start when HiGHS has nothing better."""
        x_start = min(starts, key=self.objective)
        if time_limit < MIN_SOLVE_SECONDS:
            return x_start, "skipped (no time left)"
        f = self.finish(x_start)
        S = self.work(x_start)[self.pair_j, self.pair_i]
        values = np.concatenate([x_start, f, [(f + self.tails).max()], np.abs(S - self.target)])
        sol = self.highspy.HighsSolution()
        sol.col_value = values.tolist()
        sol.value_valid = True
        self.h.setOptionValue("time_limit", float(time_limit))
        self.h.setSolution(sol)
        try:
            out = run(self.h, "forward schedule")
        except SolverFailedError:
            return x_start, "no incumbent"
        x = np.round(out.values[:self.nx])
        return (x, out.status) if self.objective(x) <= self.objective(x_start) + 1e-9 else (x_start, out.status)


def assignment_update(instance: Instance, slots: Slots, S: np.ndarray, f: np.ndarray, mu: np.ndarray, rho: float,
                      y_start: np.ndarray, time_limit: float, threads: int, verbose: bool) -> tuple[np.ndarray, str]:
    """The y-update: min w' + rho/2 sum |S - p y + mu| s.t. w' >= f_j + d_ij y_ji + l_j, one helper, memory.

    With y binary each |.| is linear in y: |S - p + mu| when y_ji = 1, |S + mu| otherwise.
    """
    if time_limit < MIN_SOLVE_SECONDS:
        return y_start, "skipped (no time left)"
    K, H = instance.K, instance.H
    d = instance.d / slots.slot_ms
    head = f + instance.l / slots.slot_ms
    h = new_model(time_limit, threads, verbose)
    y = add_assignment(h, instance)
    w = h.addVariable(lb=0.0, obj=1.0)
    for j in range(K):
        h.addConstr(w - sum(float(d[j, i]) * y[j, i] for i in range(H) if (j, i) in y) >= float(head[j]))
    gain = rho / 2 * (np.abs(S - slots.proc + mu) - np.abs(S + mu))
    for (j, i), var in y.items():
        h.changeColCost(var.index, float(gain[j, i]))
    values = np.zeros(h.getNumCol())
    for (j, i), var in y.items():
        values[var.index] = float(y_start[j] == i)
    values[w.index] = float((head + d[np.arange(K), y_start]).max())
    sol = highs_module().HighsSolution()
    sol.col_value = values.tolist()
    sol.value_valid = True
    h.setSolution(sol)
    try:
        out = run(h, "assignment")
    except SolverFailedError:
        return y_start, "no incumbent"
    return out.assignment(y, K), out.status


def solve_admm(instance: Instance, *, rho: float = 350.0, max_iter: int = 10, stable_iters: int = 3,
               time_limit: float = 60.0, threads: int = 1, slot_ms: float | None = None,
               verbose: bool = False) -> AdmmSolution:
    """Plan with the paper's decomposition (Algorithm 1 + exact per-helper schedules); the best evaluated plan."""
    instance.require_splitfed("ADMM")
    if not (rho >= 0 and max_iter >= 1 and stable_iters >= 1 and time_limit >= 0):
        raise AdmmParameterError(f"ADMM needs rho >= 0, max_iter >= 1, stable_iters >= 1 and time_limit >= 0; got "
                                 f"rho={rho}, max_iter={max_iter}, stable_iters={stable_iters}, time_limit={time_limit}")
    if slot_ms is not None and not (slot_ms > 0 and math.isfinite(slot_ms)):
        raise SlotLengthError(f"slot length must be a positive number of ms, got {slot_ms!r}")
    highs_module()
    t0 = time.perf_counter()
    deadline = t0 + time_limit
    y = initial_assignment(instance)
    reference = reference_assignment(instance, y, time_limit)
    y = reference.copy() if y is None else y
    slots = choose_slots(instance, reference, slot_ms)
    model = ForwardModel(instance, slots, rho, threads, verbose)
    x = model.x_from_pieces(_slot_schedule(instance, reference, slots.release, slots.proc, slots.slot_ms))
    mu = np.zeros((instance.K, instance.H))
    best: tuple[Plan, Timeline] | None = None
    history: list[dict] = []
    stable, stop = 0, "max_iter"
    for k in range(max_iter):
        start = time.perf_counter()
        if start >= deadline:
            stop = "time_limit"
            break
        budget = (deadline - start) / (max_iter - k)
        model.update(slots.tails(instance, y), slots.assigned_work(y, instance.H), mu)
        follow = model.x_from_pieces(_slot_schedule(instance, y, slots.release, slots.proc, slots.slot_ms))
        x, x_status = model.solve([x] if follow is None else [x, follow], X_SHARE * budget)
        x_objective = model.objective(x)
        S, f = model.work(x), model.finish(x)
        y_budget = max(budget - (time.perf_counter() - start), MIN_Y_SECONDS)
        y_new, y_status = assignment_update(instance, slots, S, f, mu, rho, y, y_budget, threads, verbose)
        moved = int((y_new != y).sum())
        y = y_new
        py = slots.assigned_work(y, instance.H)
        mu += S - py
        residual = float(((S - py) ** 2).sum())
        plan, timeline, pf = schedule_assignment(instance, y)
        if best is None or timeline.makespan < best[1].makespan:
            best = (plan, timeline)
        history.append({"iteration": k + 1, "pf_objective_ms": pf, "x_objective_slots": x_objective,
                        "primal_residual": residual, "moved": moved, "makespan_ms": timeline.makespan,
                        "x_status": x_status, "y_status": y_status, "seconds": time.perf_counter() - start})
        if verbose:
            print(f"admm iteration {k + 1}: P_f {pf:.1f} ms, residual {residual:g}, moved {moved}, "
                  f"makespan {timeline.makespan:.1f} ms ({x_status}; {y_status})")
        stable = stable + 1 if moved == 0 else 0
        if residual <= RESIDUAL_TOL and moved == 0:
            stop = "residual"
            break
        if stable >= stable_iters:
            stop = "stable"
            break
        if time.perf_counter() >= deadline and k + 1 < max_iter:
            stop = "time_limit"
            break
    if best is None:
        plan, timeline, _ = schedule_assignment(instance, y)
        best = (plan, timeline)
    meta = {"rho": rho, "iterations": len(history), "stop_reason": stop, "slot_ms": slots.slot_ms,
            "horizon_slots": slots.horizon, "x_binaries": model.nx, "time_limit": time_limit, "threads": threads}
    plan = Plan(best[0].assignment, best[0].orders, "admm", meta)
    return AdmmSolution(plan=plan, timeline=best[1], instance=instance,
                        solve_seconds=time.perf_counter() - t0, iterations=len(history), stop_reason=stop,
                        slot_ms=slots.slot_ms, history=tuple(history))
