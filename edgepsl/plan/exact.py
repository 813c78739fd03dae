"""Exact job orders for small helpers, a descent over assignments judged by them, and exhaustive search.

greedy-ls ends with these on small instances (docs/planning.md); solve_exhaustive is the oracle the tests and
tools/bench_small.py compare with.

One helper's job order is exact by branch and bound over the active schedules: a job is started next only if
it can start no later than the earliest moment some available job could finish (a schedule that starts a later
job first is no worse with that job run before it, since the objective, max over clients of backward end +
tail, is regular). A node is cut when its lower bound, the larger of the finished clients' latest finish,
every unfinished client's chain from its earliest start, and the earliest start + remaining work + smallest
remaining tail, reaches the best span found; the best dispatch rule gives the first incumbent. The plan is the
best over every assignment within memory of the exact helper spans (each set of clients on a helper solved once).
The descent moves one client to another helper or swaps two clients of different helpers while that lowers
(makespan, sum of helper spans) lexicographically, every helper span exact.
"""
from __future__ import annotations

import itertools
import time

import numpy as np

from edgepsl.plan.errors import InfeasibleError, TooLargeError
from edgepsl.plan.instance import Instance
from edgepsl.plan.preemptive import helper_spans
from edgepsl.plan.pure.constants import BWD, FWD, RULES
from edgepsl.plan.pure.dispatch import dispatch_helper
from edgepsl.plan.schedule import Plan

# Largest K solve_exhaustive accepts: H^K assignments and one branch and bound per (helper, client set).
MAX_CLIENTS = 8


def best_sequence(instance: Instance, clients: list[int], i: int) -> tuple[float, list[tuple[int, int]]]:
    """The smallest span of `clients` on helper i over every valid job order, and one order reaching it."""
    if not clients:
        return 0.0, []
    floor = instance.release_floor
    r, p, g, pb, q = (a[:, i] for a in (instance.r, instance.p, instance.gap, instance.p_bwd, instance.tail))
    w = np.zeros(instance.K) if floor is None else floor[:, i]
    best_span, best_jobs = None, []
    for rule in RULES:
        jobs, span, _ = dispatch_helper(sorted(clients), i, rule, instance.r, instance.p, instance.gap,
                                        instance.p_bwd, instance.tail, floor)
        if best_span is None or span < best_span:
            best_span, best_jobs = span, jobs
    state = {"best": best_span, "jobs": best_jobs}
    path: list[tuple[int, int]] = []

    def release(j: int, kind: int, fwd_end: dict[int, float]) -> float:
        return r[j] if kind == FWD else max(fwd_end[j] + g[j], w[j])

    def duration(j: int, kind: int) -> float:
        return p[j] if kind == FWD else pb[j]

    def search(tau: float, span: float, todo: set[tuple[int, int]], fwd_end: dict[int, float]) -> None:
        if not todo:
            if span < state["best"]:
                state["best"], state["jobs"] = span, list(path)
            return
        avail = [(j, k) for j, k in todo if k == FWD or j in fwd_end]
        starts = {job: max(tau, release(*job, fwd_end)) for job in avail}
        bound = span
        for j in {j for j, _ in todo}:
            t = starts[(j, BWD)] if (j, BWD) in starts else max(starts[(j, FWD)] + p[j] + g[j], w[j])
            bound = max(bound, t + pb[j] + q[j])
        earliest = min(starts.values())
        bound = max(bound, earliest + sum(duration(*job) for job in todo) + min(q[j] for j, _ in todo))
        if bound >= state["best"]:
            return
        first_end = min(starts[job] + duration(*job) for job in avail)
        for job in sorted(avail, key=lambda x: (starts[x], x)):
            s = starts[job]
            if s > first_end:
                continue
            j, kind = job
            end = s + duration(j, kind)
            todo.discard(job)
            path.append(job)
            if kind == FWD:
                fwd_end[j] = end
                search(end, span, todo, fwd_end)
                del fwd_end[j]
            else:
                search(end, max(span, end + q[j]), todo, fwd_end)
            path.pop()
            todo.add(job)

    search(0.0, 0.0, {(j, k) for j in clients for k in (FWD, BWD)}, {})
    return float(state["best"]), state["jobs"]


class ExactSpans:
    """Exact helper spans of client sets, each set solved once per helper."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.cache: dict[tuple[int, tuple[int, ...]], tuple[float, list[tuple[int, int]]]] = {}

    def get(self, i: int, clients: tuple[int, ...]) -> tuple[float, list[tuple[int, int]]]:
        """(span, job order) of the sorted `clients` on helper i."""
        key = (i, clients)
        if key not in self.cache:
            self.cache[key] = best_sequence(self.instance, list(clients), i)
        return self.cache[key]


def exact_descent(instance: Instance, starts: list[np.ndarray], deadline_ns: int = 0) -> Plan:
    """The best over the starts (assignments within memory) of a descent by moves and swaps of clients while
    (makespan, sum of exact helper spans) decreases, with every helper's exact job order; the starts share
    one cache of exact spans; stops early at deadline_ns (time.monotonic_ns, 0: none)."""
    spans = ExactSpans(instance)
    best, best_value = None, None
    for start in starts:
        plan, value = _descend(instance, start, spans, deadline_ns)
        if best_value is None or value < best_value:
            best, best_value = plan, value
        if deadline_ns and time.monotonic_ns() >= deadline_ns:
            break
    return best


def _descend(instance: Instance, assignment: np.ndarray, spans: ExactSpans, deadline_ns: int) -> tuple[Plan, float]:
    """One descent of exact_descent from one assignment, with its makespan."""
    K, H, mem, cap = instance.K, instance.H, instance.mem, instance.cap
    a = assignment.copy()
    members = [tuple(np.flatnonzero(a == i).tolist()) for i in range(H)]
    span = [spans.get(i, members[i])[0] for i in range(H)]
    used = np.bincount(a, weights=mem, minlength=H)

    def better(changes: dict[int, tuple[int, ...]]) -> list[float] | None:
        trial = list(span)
        for i, clients in changes.items():
            trial[i] = spans.get(i, clients)[0]
        return trial if (max(trial), sum(trial)) < (max(span), sum(span)) else None

    improved = True
    while improved and not (deadline_ns and time.monotonic_ns() >= deadline_ns):
        improved = False
        for j, i in itertools.product(range(K), range(H)):
            c = int(a[j])
            if i == c or used[i] + mem[j] > cap[i]:
                continue
            changes = {c: tuple(x for x in members[c] if x != j), i: tuple(sorted(members[i] + (j,)))}
            trial = better(changes)
            if trial is not None:
                span, a[j], improved = trial, i, True
                used[c] -= mem[j]
                used[i] += mem[j]
                members[c], members[i] = changes[c], changes[i]
                break
        if improved:
            continue
        for j, k in itertools.combinations(range(K), 2):
            c, i = int(a[j]), int(a[k])
            if c == i or used[c] - mem[j] + mem[k] > cap[c] or used[i] - mem[k] + mem[j] > cap[i]:
                continue
            changes = {c: tuple(sorted([x for x in members[c] if x != j] + [k])),
                       i: tuple(sorted([x for x in members[i] if x != k] + [j]))}
            trial = better(changes)
            if trial is not None:
                span, improved = trial, True
                a[j], a[k] = i, c
                used[c] += mem[k] - mem[j]
                used[i] += mem[j] - mem[k]
                members[c], members[i] = changes[c], changes[i]
                break
    orders = tuple(np.array(spans.get(i, members[i])[1], dtype=np.int64).reshape(-1, 2) for i in range(H))
    return Plan(a, orders), max(span)


def exact_orders(instance: Instance, plan: Plan, max_clients: int, deadline_ns: int = 0) -> Plan:
    """The plan with its critical helper running its exact job order, repeated for each new critical helper
    while that one has at most max_clients clients and was not done yet (or until deadline_ns)."""
    span = helper_spans(instance, plan)
    orders = list(plan.orders)
    done: set[int] = set()
    while not (deadline_ns and time.monotonic_ns() >= deadline_ns):
        i = int(np.argmax(span))
        clients = sorted(set(orders[i][:, 0].tolist()))
        if i in done or not 0 < len(clients) <= max_clients:
            break
        done.add(i)
        value, jobs = best_sequence(instance, clients, i)
        if value < span[i]:
            orders[i] = np.array(jobs, dtype=np.int64).reshape(-1, 2)
            span[i] = value
    return Plan(plan.assignment, tuple(orders))


def solve_exhaustive(instance: Instance, deadline_ns: int = 0) -> tuple[Plan, float]:
    """The optimal plan and makespan over every assignment within memory and every job order (K <= MAX_CLIENTS);
    past deadline_ns (time.monotonic_ns, 0: none) the best plan seen so far, which need not be optimal."""
    K, H = instance.K, instance.H
    if K > MAX_CLIENTS:
        raise TooLargeError(f"exhaustive search takes at most {MAX_CLIENTS} clients, the instance has {K}")
    spans = ExactSpans(instance)
    best, best_a = None, None
    for a in itertools.product(range(H), repeat=K):
        if best is not None and deadline_ns and time.monotonic_ns() >= deadline_ns:
            break
        a = np.array(a, dtype=np.int64)
        if (np.bincount(a, weights=instance.mem, minlength=H) > instance.cap).any():
            continue
        value = 0.0
        for i in range(H):
            value = max(value, spans.get(i, tuple(np.flatnonzero(a == i).tolist()))[0])
            if best is not None and value >= best:
                break
        if best is None or value < best:
            best, best_a = value, a
    if best_a is None:
        raise InfeasibleError("no assignment fits every client within the helpers' memory (exhaustive search)")
    orders = tuple(np.array(spans.get(i, tuple(np.flatnonzero(best_a == i).tolist()))[1],
                            dtype=np.int64).reshape(-1, 2) for i in range(H))
    return Plan(best_a, orders, "exhaustive"), float(best)
