"""Planning with micro-batches: assignment, per-helper micro-batch job order and N per client (docs/planning.md,
"Micro-batch pipelining").

`solve_pipelined` starts from greedy-ls's unpipelined plan. With a fixed N it improves the assignment by moves
and swaps judged by the compiled pipelined spans (kernels.pipe_span, the better of two dispatch rules per
helper). With N = "auto" it also runs PiPar's rule (pipeline.aps_micro), then descents that change one client's N
or helper at a time, from PiPar's N and from the best uniform N; the result is the best of the unpipelined plan,
PiPar's N and the descents, so it is never worse than N = 1 or PiPar's rule.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgepsl.plan import heuristics
from edgepsl.plan.backend import kernels
from edgepsl.plan.errors import SearchLimitError
from edgepsl.plan.evaluate import MEMORY_RTOL, timeline_of
from edgepsl.plan.heuristics import DEFAULT_BUDGET, DEFAULT_KICKS, Solution
from edgepsl.plan.instance import Instance
from edgepsl.plan.pipeline import _require_stages, aps_micro, pipeline_bound, stage_times
from edgepsl.plan.schedule import Plan

# N values the auto descent tries for every client (those above the client's batch B are dropped; PiPar's N is
# added).
N_CANDIDATES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64)
# Work budget of a descent in helper spans computed (each span runs one helper's micro-batch jobs once).
SPAN_BUDGET = 60_000
AUTO = "auto"
# The auto descent also starts from the best of these N for every client (capped at each client's batch).
UNIFORM_STARTS = (2, 4, 8, 16, 32)


def micro_option(value: Any) -> str | None:
    """The micro_batches option normalised: None (the instance's N), 'auto', or a whole number >= 1 as text;
    SearchLimitError otherwise."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return str(value)
    if isinstance(value, str) and (value == AUTO or (value.isdigit() and int(value) >= 1)):
        return value
    raise SearchLimitError(f"micro_batches must be a whole number >= 1 or 'auto', got {value!r}")


@dataclass
class _State:
    """A search state: assignment, N per client, per-micro-batch stage times and each helper's span."""

    assign: np.ndarray
    micro: np.ndarray
    st: np.ndarray
    span: np.ndarray

    def objective(self) -> tuple[float, float]:
        return float(self.span.max()), float(self.span.sum())


class _Search:
    """Descent over assignments (and N) judged by the compiled pipelined helper spans."""

    def __init__(self, instance: Instance, candidates: list[np.ndarray], deadline_ns: int) -> None:
        self.inst = instance
        self.r, self.g, self.q = instance.r, instance.gap, instance.tail
        self.candidates = candidates
        self.tables = {int(n): stage_times(instance, np.full(instance.K, n, dtype=np.int64))
                       for n in sorted({int(n) for c in candidates for n in c})}
        self.deadline_ns = deadline_ns
        self.spans = 0
        self.limit = SPAN_BUDGET

    def state(self, assign: np.ndarray, micro: np.ndarray) -> _State:
        st = stage_times(self.inst, micro)
        s = _State(assign.copy(), micro.copy(), st, np.zeros(self.inst.H))
        for i in range(self.inst.H):
            s.span[i] = self.span(s, i, np.flatnonzero(s.assign == i))
        return s

    def span(self, s: _State, i: int, clients: np.ndarray) -> float:
        self.spans += 2
        clients = np.ascontiguousarray(clients, dtype=np.int64)
        return min(kernels.pipe_span(clients, i, rule, s.micro, self.r, self.g, self.q, s.st)
                   for rule in kernels.PIPE_RULES)

    def _out(self) -> bool:
        return self.spans >= self.limit or (self.deadline_ns > 0 and time.monotonic_ns() >= self.deadline_ns)

    def _better(self, s: _State, changed: dict[int, float]) -> bool:
        span = s.span.copy()
        for i, v in changed.items():
            span[i] = v
        new = (float(span.max()), float(span.sum()))
        return new < s.objective()

    def descend(self, s: _State, with_micro: bool) -> _State:
        """Moves, swaps and (with_micro) N changes, first improvement, until none improves or the budget ends."""
        inst = self.inst
        self.limit = self.spans + SPAN_BUDGET
        used = np.bincount(s.assign, weights=inst.mem, minlength=inst.H)
        improved = True
        while improved and not self._out():
            improved = False
            for j in np.argsort(-s.span[s.assign], kind="stable"):
                if self._out():
                    break
                j = int(j)
                if with_micro and self._try_micro(s, j):
                    improved = True
                if self._try_move(s, j, used):
                    improved = True
            if not improved and inst.H > 1:
                improved = self._try_swaps(s, used)
        return s

    def _try_micro(self, s: _State, j: int) -> bool:
        i = int(s.assign[j])
        members = np.flatnonzero(s.assign == i)
        old = int(s.micro[j])
        row = s.st[j].copy()
        for n in self.candidates[j]:
            n = int(n)
            if n == old:
                continue
            s.micro[j] = n
            s.st[j] = self.tables[n][j]
            value = self.span(s, i, members)
            if self._better(s, {i: value}):
                s.span[i] = value
                return True
        s.micro[j] = old
        s.st[j] = row
        return False

    def _try_move(self, s: _State, j: int, used: np.ndarray) -> bool:
        inst = self.inst
        a = int(s.assign[j])
        rest = np.flatnonzero((s.assign == a) & (np.arange(inst.K) != j))
        without = None
        for b in range(inst.H):
            if b == a or used[b] + inst.mem[j] > inst.cap[b] * (1 + MEMORY_RTOL):
                continue
            if without is None:
                without = self.span(s, a, rest)
            with_j = self.span(s, b, np.sort(np.append(np.flatnonzero(s.assign == b), j)))
            if self._better(s, {a: without, b: with_j}):
                s.assign[j] = b
                s.span[a], s.span[b] = without, with_j
                used[a] -= inst.mem[j]
                used[b] += inst.mem[j]
                return True
        return False

    def _try_swaps(self, s: _State, used: np.ndarray) -> bool:
        inst = self.inst
        crit = int(np.argmax(s.span))
        for j in np.flatnonzero(s.assign == crit):
            for k in np.flatnonzero(s.assign != crit):
                if self._out():
                    return False
                b = int(s.assign[k])
                if (used[crit] - inst.mem[j] + inst.mem[k] > inst.cap[crit] * (1 + MEMORY_RTOL)
                        or used[b] - inst.mem[k] + inst.mem[j] > inst.cap[b] * (1 + MEMORY_RTOL)):
                    continue
                trial = s.assign.copy()
                trial[j], trial[k] = b, crit
                va = self.span(s, crit, np.flatnonzero(trial == crit))
                vb = self.span(s, b, np.flatnonzero(trial == b))
                if self._better(s, {crit: va, b: vb}):
                    s.assign[:] = trial
                    s.span[crit], s.span[b] = va, vb
                    used[crit] += inst.mem[k] - inst.mem[j]
                    used[b] += inst.mem[j] - inst.mem[k]
                    return True
        return False


def dispatch_pipelined(instance: Instance, assign: np.ndarray, micro: np.ndarray, method: str = "",
                       meta: dict[str, Any] | None = None) -> Plan:
    """The plan of an assignment and N per client: each helper's micro-batch jobs in the order of whichever
    dispatch rule gives it the shorter span."""
    assign = np.array(assign, dtype=np.int64)
    micro = np.array(micro, dtype=np.int64)
    st = stage_times(instance, micro)
    outs = [kernels.pipe_dispatch(assign, rule, micro, instance.r, instance.gap, instance.tail, st)
            for rule in kernels.PIPE_RULES]
    orders = []
    for i in range(instance.H):
        best = min(outs, key=lambda o: o.span[i])
        rows = np.stack([best.seq_client, best.seq_kind], axis=1)[best.offsets[i]:best.offsets[i + 1]]
        orders.append(rows)
    return Plan(assign, tuple(orders), method, dict(meta or {}), micro)


def micro_cap(instance: Instance, max_micro: int | None) -> np.ndarray:
    """Per client, the most micro-batches it may have: its batch, and at most max_micro (None: no further cap)."""
    batch = instance.batch.astype(np.int64)
    return batch if max_micro is None else np.minimum(batch, max(1, int(max_micro)))


def candidate_micro(instance: Instance, max_micro: int | None = None) -> list[np.ndarray]:
    """Per client, the N values the auto descent tries: N_CANDIDATES and PiPar's N, up to its cap (micro_cap)."""
    aps, cap = aps_micro(instance), micro_cap(instance, max_micro)
    return [np.array(sorted({n for n in (*N_CANDIDATES, int(aps[j])) if n <= cap[j]} or {1}), dtype=np.int64)
            for j in range(instance.K)]


def solve_pipelined(instance: Instance, micro_batches: str | int | None = AUTO, seed: int = 0,
                    budget: int = DEFAULT_BUDGET, kicks: int = DEFAULT_KICKS,
                    time_limit_ms: float | None = None, max_micro: int | None = None) -> Solution:
    """greedy-ls with micro-batches: N fixed (a whole number, capped at each client's batch and max_micro), the
    instance's own N (None), or chosen per client ('auto', never above the cap). N = 1 for every client returns
    greedy-ls's plan unchanged."""
    instance.require_splitfed("the micro-batch (pipelined) planner")
    mode = micro_option(micro_batches)
    t0 = time.perf_counter()
    base = heuristics.solve(instance, "greedy-ls", seed=seed, budget=budget, kicks=kicks, time_limit_ms=time_limit_ms)
    if mode is None:
        fixed = instance.micro_batches
    elif mode != AUTO:
        _require_stages(instance)
        fixed = np.minimum(int(mode), micro_cap(instance, max_micro))
    if mode != AUTO and (fixed == 1).all():
        return base
    _require_stages(instance)
    cap = micro_cap(instance, max_micro)
    deadline_ns = 0 if time_limit_ms is None else int(time.monotonic_ns() + time_limit_ms * 1e6)
    candidates = candidate_micro(instance, max_micro) if mode == AUTO else [np.array([n]) for n in fixed]
    search = _Search(instance, candidates, deadline_ns)
    meta: dict[str, Any] = {"seed": seed, "micro_batches": mode if mode is not None else "instance",
                            "unpipelined_makespan": base.makespan}
    start_micro = np.minimum(aps_micro(instance), cap) if mode == AUTO else fixed
    state = search.descend(search.state(base.plan.assignment, start_micro), with_micro=False)
    found = [(dispatch_pipelined(instance, state.assign, state.micro), "aps" if mode == AUTO else "fixed")]
    if mode == AUTO:
        aps_plan = found[0][0]
        meta["aps_micro"] = start_micro.tolist()
        meta["aps_makespan"] = timeline_of(instance, aps_plan).makespan
        state = search.descend(state, with_micro=True)
        found.append((dispatch_pipelined(instance, state.assign, state.micro), "descent from PiPar's N"))
        uniform = min((search.state(base.plan.assignment, np.minimum(n, cap))
                       for n in UNIFORM_STARTS), key=_State.objective)
        state = search.descend(search.descend(uniform, with_micro=False), with_micro=True)
        found.append((dispatch_pipelined(instance, state.assign, state.micro), "descent from a uniform N"))
        found.append((base.plan, "unpipelined"))
    scored = [(timeline_of(instance, p).makespan, k, p, name) for k, (p, name) in enumerate(found)]
    value, _, chosen, name = min(scored)
    meta.update(chosen=name, spans_computed=search.spans, base=base.plan.meta)
    seconds = time.perf_counter() - t0
    plan = Plan(chosen.assignment, chosen.orders, "greedy-ls", meta, chosen.micro)
    return Solution(plan, timeline_of(instance, plan), instance, seconds,
                    bound_of=pipeline_bound if instance.staged else heuristics.lower_bound)
