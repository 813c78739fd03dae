"""Planning methods, the Python face of the compiled core: random, balanced-greedy, greedy-eft, greedy-ls."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Callable

import numpy as np

from edgepsl.plan.backend import kernel_arrays as _arrays
from edgepsl.plan.backend import kernel_floor as _floor
from edgepsl.plan.backend import kernels
from edgepsl.plan.bounds import LowerBound, lower_bound
from edgepsl.plan.errors import InfeasibleError, SearchLimitError, UnknownMethodError
from edgepsl.plan.evaluate import timeline_of
from edgepsl.plan.exact import exact_descent, exact_orders, solve_exhaustive
from edgepsl.plan.instance import Instance
from edgepsl.plan.packing import memory_feasible_assignment
from edgepsl.plan.preemptive import helper_spans, schedule_assignment
from edgepsl.plan.rules import DISPATCH_RULES
from edgepsl.plan.schedule import Plan, Timeline

METHODS = {
    "random": "seeded random order, uniform helper among those with room (paper 2.6); then the dispatch rule",
    "balanced-greedy": "clients in index order, helper that keeps client counts most even (paper 2.5); then the dispatch rule",
    "greedy-eft": "largest work first to the helper with the earliest estimated finish; best rule per helper",
    "greedy-ls": "best of greedy insertion (by chain, by work) / greedy-eft / balanced-greedy / random starts (an "
                 "exact memory packing if none fits), then local search (move, swap, reorder) with restarts",
}
# Work budget of the local search, in jobs processed by its dispatches and evaluations.
DEFAULT_BUDGET = 8_000_000
# Restarts of the local search from the current plan with one to three clients moved at random
# (iterated local search), while the work budget lasts.
DEFAULT_KICKS = 128
# greedy-ls also starts from greedy insertion (kernels.assign_greedy_insert: each client tried on its
# INSERT_WIDTH most promising helpers by dispatched span) where its cost, about 6 INSERT_WIDTH K^2 / H job
# steps, stays within INSERT_WORK_LIMIT.
INSERT_WIDTH = 2
INSERT_WORK_LIMIT = 2_000_000
# The second insertion start takes clients by decreasing mean chain r + p + g + p' + q' over the helpers that can
# hold them (the clients with slow links first, where the chains and not the helpers' work set the makespan), each
# tried on its CHAIN_INSERT_WIDTH most promising helpers: on scenario 1 at K = 100, H = 10 it starts within 1 % of
# the default plan where the insertion by work starts 2-3 % above it (docs/planning.md).
CHAIN_INSERT_WIDTH = 3
# Under a time limit shorter than this, greedy-ls takes only the first start that places every client (greedy
# insertion where it applies): at K = 100, H = 10 the other starts and their evaluation cost about 0.2 ms, a fifth
# of a 1 ms limit, which the first descent needs more (bench-results/anytime.json).
QUICK_LIMIT_MS = 10.0
# The end of greedy-ls on small instances (edgepsl.plan.exact): with at most EXHAUSTIVE_ASSIGNMENTS
# assignments (H^K), the exact optimum; else with at most EXACT_SEARCH_CLIENTS clients, a descent over moves and
# swaps judged by exact helper spans; else each helper of at most EXACT_ORDER_CLIENTS clients gets its exact order.
EXHAUSTIVE_ASSIGNMENTS = 256
EXACT_SEARCH_CLIENTS = 6
EXACT_ORDER_CLIENTS = 5


@dataclass(frozen=True)
class Solution:
    """A plan with its timeline, the instance it is for and the wall time the method took; its lower bound is
    computed on first use, so that the certificate is not part of the planning time."""

    plan: Plan
    timeline: Timeline
    instance: Instance = field(repr=False, compare=False)
    solve_seconds: float
    lp_bound: float | None = field(default=None, kw_only=True)
    # The bound that holds for the plans the method searches: all-split (lower_bound) or hybrid.
    bound_of: Callable[[Instance], LowerBound] = field(default=lower_bound, kw_only=True, repr=False, compare=False)

    @cached_property
    def bound(self) -> LowerBound:
        """The lower bound of the plans the method searches (chain, load, window, joint; hybrid's local threshold;
        the LP bound where one was added)."""
        return replace(self.bound_of(self.instance), lp=self.lp_bound)

    @property
    def makespan(self) -> float:
        """Makespan of the plan (ms)."""
        return self.timeline.makespan

    @property
    def gap(self) -> float:
        """Relative gap of the makespan above the lower bound."""
        return self.bound.gap(self.makespan)

    def details(self) -> dict[str, Any]:
        """Method-specific results for the plan file's evaluation section (none for the heuristics)."""
        return {}

    def summary(self) -> list[str]:
        """Method-specific lines of `edgepsl plan`'s summary (none for the heuristics)."""
        return []


def _checked(instance: Instance, assign: np.ndarray, method: str) -> np.ndarray:
    if (assign < 0).any():
        j = int(np.flatnonzero(assign < 0)[0])
        what = (f"{method} could not place {instance.client_name(j)} ({instance.mem[j]:g} MB): every helper with "
                "room was already full")
        try:
            memory_feasible_assignment(instance)
        except InfeasibleError as exc:
            raise type(exc)(f"{what}; {exc}") from None
        raise InfeasibleError(f"{what}; an assignment within memory exists: greedy-ls (or milp) finds one")
    return assign


def _heuristic(instance: Instance, method: str, seed: int) -> np.ndarray:
    """The kernel's assignment, -1 for the clients it could not place."""
    if method == "random":
        return kernels.assign_random(instance.mem, instance.cap, seed)
    if method == "balanced-greedy":
        return kernels.assign_balanced_greedy(instance.mem, instance.cap)
    if method in ("greedy-eft", "greedy-ls"):
        return kernels.assign_greedy_eft(*_arrays(instance), instance.mem, instance.cap, floor=_floor(instance))
    if method == "greedy-insert":
        return kernels.assign_greedy_insert(*_arrays(instance), instance.mem, instance.cap, INSERT_WIDTH,
                                            floor=_floor(instance))
    if method == "greedy-chain":
        return kernels.assign_greedy_insert(*_arrays(instance), instance.mem, instance.cap, CHAIN_INSERT_WIDTH,
                                            None, chain_priority(instance), floor=_floor(instance))
    raise UnknownMethodError(f"unknown planning method {method!r}; choose one of {', '.join(METHODS)}")


def chain_priority(instance: Instance) -> np.ndarray:
    """Each client's mean chain r + p + g (at least the local-loss floor) + p' + q' over the helpers whose capacity
    holds it (0 where none does)."""
    arrays, floor = _arrays(instance), _floor(instance)
    release = arrays.r + arrays.p + arrays.g
    chain = (release if floor is None else np.maximum(release, floor)) + arrays.pb + arrays.q
    fits = instance.mem[:, None] <= instance.cap[None, :]
    return np.where(fits, chain, 0.0).sum(axis=1) / np.maximum(fits.sum(axis=1), 1)


def assign(instance: Instance, method: str, seed: int = 0) -> np.ndarray:
    """The assignment of one of the assignment heuristics; InfeasibleError if it cannot place a client."""
    return _checked(instance, _heuristic(instance, method, seed), method)


def _dispatched(instance: Instance, assignment: np.ndarray, rule: str) -> tuple[np.ndarray, ...]:
    if rule == "best":
        out = kernels.local_search(assignment, *_arrays(instance), instance.mem, instance.cap, 0, 0,
                                   floor=_floor(instance))
        return out[1], out[2], out[3]
    if rule not in DISPATCH_RULES:
        raise UnknownMethodError(f"unknown dispatch rule {rule!r}; choose one of {', '.join(DISPATCH_RULES)} or best")
    return kernels.dispatch(assignment, DISPATCH_RULES[rule], *_arrays(instance), floor=_floor(instance))


def _makespan(instance: Instance, flat: tuple[np.ndarray, ...]) -> float:
    fin = kernels.evaluate(*flat[:4], *_arrays(instance), floor=_floor(instance))[4]
    return float(fin.max()) if len(fin) else 0.0


def _kick(instance: Instance, assignment: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Move one to three random clients to random other helpers with room (the perturbation of the restarts)."""
    a = assignment.copy()
    used = np.bincount(a, weights=instance.mem, minlength=instance.H)
    for j in rng.choice(instance.K, size=min(instance.K, int(rng.integers(1, 4))), replace=False):
        room = np.flatnonzero(used + instance.mem[j] <= instance.cap)
        room = room[room != a[j]]
        if len(room):
            i = int(room[rng.integers(len(room))])
            used[a[j]] -= instance.mem[j]
            used[i] += instance.mem[j]
            a[j] = i
    return a


def _polished(instance: Instance, plan: Plan) -> Plan:
    """Per helper, the plan's job order or the order from its exact preemptive schedule, whichever ends earlier."""
    other = schedule_assignment(instance, plan.assignment)[0]
    mine, theirs = helper_spans(instance, plan), helper_spans(instance, other)
    orders = tuple(other.orders[i] if theirs[i] < mine[i] else plan.orders[i] for i in range(instance.H))
    return Plan(plan.assignment, orders)


def _passed(deadline_ns: int) -> bool:
    return deadline_ns > 0 and time.monotonic_ns() >= deadline_ns


def _exact_end(instance: Instance, plan: Plan, starts: list[np.ndarray], deadline_ns: int) -> tuple[Plan, str | None]:
    """The plan improved by the exact methods that fit the instance's size (the descent also from the greedy
    starts), and which one ran."""
    if _passed(deadline_ns):
        return plan, None
    if instance.K <= EXACT_SEARCH_CLIENTS and instance.H ** instance.K <= EXHAUSTIVE_ASSIGNMENTS:
        other, exact = solve_exhaustive(instance, deadline_ns)[0], "exhaustive"
    elif instance.K <= EXACT_SEARCH_CLIENTS:
        other, exact = exact_descent(instance, [plan.assignment, *starts], deadline_ns), "descent"
    else:
        other, exact = exact_orders(instance, plan, EXACT_ORDER_CLIENTS, deadline_ns), "orders"
    if timeline_of(instance, other).makespan <= timeline_of(instance, plan).makespan:
        return Plan(other.assignment, other.orders), exact
    return plan, None


@dataclass(frozen=True)
class SearchResult:
    """The best plan of an iterated local search and its counters."""

    plan: Plan
    stats: np.ndarray  # iterations, reorders, moves, swaps, work, stopped by the deadline
    kicks: int
    kicks_improving: int
    stopped: str  # time, budget, bound (reached the target) or converged


def iterated_local_search(instance: Instance, start: np.ndarray, seed: int, budget: int, kicks: int,
                          deadline_ns: int = 0, descent_budget: int | None = None, target: float = 0.0,
                          resume_below: float = 0.0, relief_swaps: bool = False) -> SearchResult:
    """The local search from an assignment within memory, then up to `kicks` restarts from the current plan with
    one to three clients moved at random, while the work budget and the deadline (time.monotonic_ns) last.

    The first descent stops at descent_budget (default: budget); the restarts follow where it converged, or where it
    spent that budget with a makespan at most resume_below (default: never), and they stop once the makespan is at
    most `target` (a lower bound: the plan is then optimal). relief_swaps is the local search's
    (kernels.local_search)."""
    arrays, floor = _arrays(instance), _floor(instance)
    memo = kernels.new_memo(instance.K)
    first = budget if descent_budget is None else min(descent_budget, budget)
    cur = kernels.local_search(start, *arrays, instance.mem, instance.cap, seed, first, deadline_ns, memo, floor=floor,
                               relief_swaps=relief_swaps)
    stats = cur[4].copy()
    # The makespan is needed only to judge restarts.
    cur_value = _makespan(instance, cur) if kicks > 0 else 0.0
    best, best_ls = cur, cur_value
    rng = None
    accepted = 0
    n = 0
    restarts = kicks if stats[4] < first or cur_value <= resume_below else 0
    while (n < restarts and stats[4] < budget and cur_value > target and instance.H > 1 and not stats[5]
           and not _passed(deadline_ns)):
        n += 1
        if rng is None:  # made at the first restart: a generator costs as much as a short descent
            rng = np.random.default_rng(seed)
        out = kernels.local_search(_kick(instance, cur[0], rng), *arrays, instance.mem, instance.cap,
                                   seed + n, budget - int(stats[4]), deadline_ns, memo, floor=floor,
                                   relief_swaps=relief_swaps)
        stats[:4] += out[4][:4]
        stats[4] += out[4][4]
        stats[5] = out[4][5]
        value = _makespan(instance, out)
        if value <= cur_value:
            cur, cur_value = out, value
            if value < best_ls:
                best, best_ls = out, value
                accepted += 1
    if stats[5] or _passed(deadline_ns):
        stopped = "time"
    elif stats[4] >= (budget if n else first):
        stopped = "budget"
    elif kicks > 0 and cur_value <= target:
        stopped = "bound"
    else:
        stopped = "converged"
    return SearchResult(Plan.from_flat(*best[:4]), stats, n, accepted, stopped)


def _greedy_ls(instance: Instance, seed: int, budget: int, kicks: int, deadline_ns: int,
               quick: bool) -> tuple[Plan, dict]:
    """The starts (only the first that places every client when `quick`), the first descent, the restarts and the
    final reordering, each while budget and time last."""
    starts = {}
    names = ("greedy-eft", "balanced-greedy", "random")
    if 6 * INSERT_WIDTH * instance.K * instance.K <= INSERT_WORK_LIMIT * instance.H:
        names = ("greedy-insert", *names)
    if 6 * CHAIN_INSERT_WIDTH * instance.K * instance.K <= INSERT_WORK_LIMIT * instance.H:
        names = ("greedy-chain", *names)
    for name in names:
        if starts and (quick or _passed(deadline_ns)):
            break
        a = _heuristic(instance, name, seed)
        if (a >= 0).all():
            starts[name] = a
    if not starts:
        starts["packing"] = memory_feasible_assignment(instance)
    best_name, best_value = None, None
    for name, a in starts.items():
        value = _makespan(instance, (a, *_dispatched(instance, a, "best")))
        if best_value is None or value < best_value:
            best_name, best_value = name, value
    found = iterated_local_search(instance, starts[best_name], seed, budget, kicks, deadline_ns)
    stats, n, accepted = found.stats, found.kicks, found.kicks_improving
    plan = found.plan
    timed_out = bool(stats[5]) or _passed(deadline_ns)
    polish = bool(stats[4] < budget) and not timed_out
    exact = None
    if polish:
        plan = _polished(instance, plan)
        plan, exact = _exact_end(instance, plan, list(starts.values()), deadline_ns)
    stopped = "time" if timed_out else "budget" if stats[4] >= budget else "converged"
    meta = {"start": best_name, "start_makespan": best_value, "iterations": int(stats[0]), "reorders": int(stats[1]),
            "moves": int(stats[2]), "swaps": int(stats[3]), "work": int(stats[4]), "budget": budget,
            "kicks": n, "kicks_improving": accepted, "polished": polish, "exact": exact, "stopped": stopped}
    return plan, meta


def solve(instance: Instance, method: str = "greedy-ls", dispatch: str = "fcfs", seed: int = 0,
          budget: int = DEFAULT_BUDGET, kicks: int = DEFAULT_KICKS, time_limit_ms: float | None = None) -> Solution:
    """Plan one round with a method; the dispatch rule applies to random and balanced-greedy.

    greedy-ls stops at whichever comes first of its work budget (deterministic for a seed) and
    time_limit_ms (wall clock from the call, None for no limit), and returns the best plan found by then; under a
    limit below QUICK_LIMIT_MS it takes only its first start.
    """
    if method not in METHODS:
        raise UnknownMethodError(f"unknown planning method {method!r}; choose one of {', '.join(METHODS)}")
    if time_limit_ms is not None and not time_limit_ms > 0:
        raise SearchLimitError(f"time_limit_ms must be a positive number of milliseconds or None, got {time_limit_ms!r}")
    t0 = time.perf_counter()
    deadline_ns = 0 if time_limit_ms is None else time.monotonic_ns() + max(1, int(time_limit_ms * 1e6))
    meta: dict = {"seed": seed}
    if method == "greedy-ls":
        quick = time_limit_ms is not None and time_limit_ms < QUICK_LIMIT_MS
        plan, extra = _greedy_ls(instance, seed, budget, kicks, deadline_ns, quick)
        extra["time_limit_ms"] = time_limit_ms
        meta.update(extra)
    else:
        rule = "best" if method == "greedy-eft" else dispatch
        a = assign(instance, method, seed)
        plan = Plan.from_flat(a, *_dispatched(instance, a, rule))
        meta["dispatch"] = rule
    seconds = time.perf_counter() - t0
    plan = Plan(plan.assignment, plan.orders, method, meta)
    return Solution(plan, timeline_of(instance, plan), instance, seconds)
