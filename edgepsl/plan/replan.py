"""Incremental re-planning: repair a plan for a changed instance instead of planning from scratch.

The changed instance may lose or gain clients, lose or gain helpers, and have any times, memory or
capacities updated. Clients and helpers are matched to the previous instance by name (Instance.client_names
and helper_names); two instances without names match by index when their sizes agree. Matched clients stay
on their matched helper while it exists and has room; the others (new clients, clients of a removed helper,
clients evicted from a helper whose capacity shrank, largest memory first) are inserted longest mean chain first
where the dispatched spans say, as in greedy-ls's insertion by chain. The local search of greedy-ls then runs
from that assignment under a small work budget, swapping out only the clients whose removal shortens the critical
helper's span (kernels.local_search's relief_swaps); where it converges above the chain and load bound, or spends
its budget close to that bound, restarts (as greedy-ls's kicks) follow under a larger budget until the plan reaches
the bound. Each helper whose clients did not change keeps its previous job order where that ends earlier than the
search's.
"""
from __future__ import annotations

import time

import numpy as np

from edgepsl.plan.backend import kernel_arrays, kernel_floor, kernels
from edgepsl.plan.errors import InfeasibleError, ReplanMatchError, SearchLimitError
from edgepsl.plan.evaluate import timeline_of, validate
from edgepsl.plan.heuristics import CHAIN_INSERT_WIDTH, Solution, chain_priority, iterated_local_search
from edgepsl.plan.instance import Instance
from edgepsl.plan.packing import memory_feasible_assignment
from edgepsl.plan.preemptive import helper_spans
from edgepsl.plan.schedule import Plan

# Work budget of the repair's first descent (jobs processed by its dispatches and evaluations).
REPLAN_DESCENT_BUDGET = 20_000
# Work budget of the whole repair: where the first descent converged short of the chain or load bound, or spent
# its budget within REPLAN_NEAR_BOUND of that bound, restarts (as greedy-ls's kicks, at most REPLAN_KICKS) run
# until this budget is spent or the plan reaches the bound. Near the bound a few long chains set the makespan and
# the restarts rearrange them (scenario 2: repairs end 0-1.9 % above the bound); far from it (scenario 1: 7.9-25 %)
# a descent that spent its budget is not continued, so that a repair stays within about a millisecond at K = 100,
# H = 10 (docs/planning.md, "Anytime planning and re-planning").
REPLAN_BUDGET = 60_000
REPLAN_KICKS = 64
REPLAN_NEAR_BOUND = 0.05


def match(previous: Instance, instance: Instance) -> tuple[np.ndarray, np.ndarray]:
    """(client_map, helper_map): for each client and helper of `instance`, its index in `previous`, or -1 if new."""
    maps = []
    for old, new, count_old, count_new, what in (
        (previous.client_names, instance.client_names, previous.K, instance.K, "client"),
        (previous.helper_names, instance.helper_names, previous.H, instance.H, "helper"),
    ):
        if not old and not new:
            if count_old != count_new:
                raise ReplanMatchError(
                    f"the {what} count changed ({count_old} -> {count_new}) and the instances have no {what}_names "
                    f"to match them by; give both instances {what}_names"
                )
            maps.append(np.arange(count_new, dtype=np.int64))
            continue
        if not old or not new:
            raise ReplanMatchError(f"only one of the two instances has {what}_names; give both or neither")
        for names, which in ((old, "previous"), (new, "changed")):
            if len(set(names)) != len(names):
                raise ReplanMatchError(f"the {which} instance has duplicate {what}_names; names must be unique")
        index = {name: k for k, name in enumerate(old)}
        maps.append(np.array([index.get(name, -1) for name in new], dtype=np.int64))
    return maps[0], maps[1]


def _carried(instance: Instance, plan: Plan, clients: np.ndarray, helpers: np.ndarray) -> np.ndarray:
    """Each matched client's previous helper in the new indexing, -1 where it is new or its helper is gone;
    clients leave a helper whose capacity no longer holds them, largest memory first."""
    new_of_old = np.full(len(plan.orders), -1, dtype=np.int64)
    new_of_old[helpers[helpers >= 0]] = np.flatnonzero(helpers >= 0)
    a = np.full(instance.K, -1, dtype=np.int64)
    known = clients >= 0
    a[known] = new_of_old[plan.assignment[clients[known]]]
    placed = a >= 0
    loads = np.bincount(a[placed], weights=instance.mem[placed], minlength=instance.H)
    # The helpers that may be over capacity (a margin for the other summation order); each is then checked exactly.
    for i in np.flatnonzero(loads > instance.cap * (1 - 1e-9)):
        members = np.flatnonzero(a == i)
        load = float(instance.mem[members].sum())
        for j in members[np.argsort(-instance.mem[members], kind="stable")]:
            if load <= instance.cap[i]:
                break
            a[j] = -1
            load -= float(instance.mem[j])
    return a


def _place(instance: Instance, a: np.ndarray) -> np.ndarray | None:
    """The clients at -1 inserted by dispatched span among the others (kernels.assign_greedy_insert, as
    greedy-ls's insertion by chain); None if one finds no helper with room."""
    if (a >= 0).all():
        return a
    out = kernels.assign_greedy_insert(*kernel_arrays(instance), instance.mem, instance.cap, CHAIN_INSERT_WIDTH, a,
                                       chain_priority(instance), floor=kernel_floor(instance))
    return out if (out >= 0).all() else None


def _previous_orders(previous_plan: Plan, clients: np.ndarray, helpers: np.ndarray) -> list[np.ndarray | None]:
    """Per helper of the changed instance, its previous job order in the new client indexing; None where the
    helper is new or one of its previous clients is gone."""
    new_client = np.full(len(previous_plan.assignment), -1, dtype=np.int64)
    new_client[clients[clients >= 0]] = np.flatnonzero(clients >= 0)
    orders: list[np.ndarray | None] = []
    for old_helper in helpers:
        order = None
        if old_helper >= 0:
            order = previous_plan.orders[old_helper].copy()
            order[:, 0] = new_client[order[:, 0]]
            if (order[:, 0] < 0).any():
                order = None
        orders.append(order)
    return orders


def _kept_orders(instance: Instance, plan: Plan, previous_orders: list[np.ndarray | None]) -> tuple[Plan, float]:
    """Per helper with the same clients as before, the previous job order where it ends earlier than the plan's;
    with the resulting makespan."""
    counts = np.bincount(plan.assignment, minlength=instance.H)
    orders = list(plan.orders)
    kept = []
    for i, old in enumerate(previous_orders):
        # Both orders hold each of their clients twice: as many jobs and every previous client now on helper i
        # mean the same clients.
        if (old is not None and len(old) == 2 * counts[i] and bool((plan.assignment[old[:, 0]] == i).all())
                and not np.array_equal(old, orders[i])):
            orders[i] = old
            kept.append(i)
    mine = helper_spans(instance, plan)
    if not kept:
        return plan, float(mine.max())
    theirs = helper_spans(instance, Plan(plan.assignment, tuple(orders)))
    orders = tuple(orders[i] if theirs[i] < mine[i] else plan.orders[i] for i in range(instance.H))
    return Plan(plan.assignment, orders), float(np.minimum(mine, theirs).max())


def replan(instance: Instance, plan: Plan, previous: Instance, seed: int = 0, budget: int = REPLAN_BUDGET,
           kicks: int = REPLAN_KICKS, time_limit_ms: float | None = None) -> Solution:
    """Repair `plan`, made for `previous`, into a plan for the changed `instance` (clients and helpers matched by
    name); the local search and its restarts stop at the work budget or the time limit, whichever comes first."""
    if time_limit_ms is not None and not time_limit_ms > 0:
        raise SearchLimitError(f"time_limit_ms must be a positive number of milliseconds or None, got {time_limit_ms!r}")
    if budget < 0:
        raise SearchLimitError(f"budget must be a non-negative number of job steps, got {budget}")
    t0 = time.perf_counter()
    deadline_ns = 0 if time_limit_ms is None else time.monotonic_ns() + max(1, int(time_limit_ms * 1e6))
    validate(previous, plan)
    clients, helpers = match(previous, instance)
    modes = None
    if plan.local_loss is not None:
        # Matched clients keep the learning mode the previous plan chose; new ones take the instance's own.
        modes = instance.loss_modes.copy()
        modes[clients >= 0] = plan.local_loss[clients[clients >= 0]]
        instance = instance.with_loss_modes(modes)
    a = _carried(instance, plan, clients, helpers)
    kept = int((a >= 0).sum())
    start = "repair"
    placed = _place(instance, a)
    if placed is not None:
        a = placed
    else:
        try:
            a = memory_feasible_assignment(instance)
        except InfeasibleError as exc:
            raise type(exc)(f"the changed instance has no plan: {exc}") from None
        start = "packing"
    target = max(kernels.lower_bound(*kernel_arrays(instance), instance.mem, instance.cap,
                                     floor=kernel_floor(instance)))
    found = iterated_local_search(instance, a, seed, budget, kicks, deadline_ns, REPLAN_DESCENT_BUDGET, target,
                                  (1 + REPLAN_NEAR_BOUND) * target, relief_swaps=True)
    stats = found.stats
    previous_orders = _previous_orders(plan, clients, helpers)
    repaired, value = _kept_orders(instance, found.plan, previous_orders)
    if stats[2] + stats[3] > 0:
        # The search moved clients; the repaired assignment with the kept orders may still be better.
        dispatched = Plan.from_flat(*kernels.local_search(a, *kernel_arrays(instance), instance.mem, instance.cap, seed,
                                                          0, floor=kernel_floor(instance))[:4])
        carried, carried_value = _kept_orders(instance, dispatched, previous_orders)
        if carried_value < value:
            repaired = carried
    meta = {"seed": seed, "start": start, "clients_kept": kept, "clients_placed": instance.K - kept,
            "moves": int(stats[2]), "swaps": int(stats[3]), "reorders": int(stats[1]), "work": int(stats[4]),
            "kicks": found.kicks, "budget": budget, "bound": float(target), "time_limit_ms": time_limit_ms,
            "stopped": found.stopped}
    result = Plan(repaired.assignment, repaired.orders, "replan", meta, local_loss=modes)
    return Solution(result, timeline_of(instance, result), instance, time.perf_counter() - t0)


def replan_pipelined(instance: Instance, plan: Plan, previous: Instance, seed: int = 0, budget: int = REPLAN_BUDGET,
                     kicks: int = REPLAN_KICKS, time_limit_ms: float | None = None) -> Solution:
    """Repair a pipelined `plan` (micro-batches) into a plan for the changed, staged `instance`: the assignment is
    replan's on the whole-batch model, every matched client keeps its N (a new client takes the instance's N, or
    PiPar's rule where that is 1), and each helper's micro-batch jobs are dispatched by whichever rule gives it the
    shorter span (pipeline_search.dispatch_pipelined)."""
    from edgepsl.plan.pipeline import aps_micro, pipeline_bound
    from edgepsl.plan.pipeline_search import dispatch_pipelined

    t0 = time.perf_counter()
    whole = replan(instance, Plan(plan.assignment, _whole_orders(plan)), previous, seed, budget, kicks,
                   time_limit_ms)
    clients, _ = match(previous, instance)
    own = instance.micro_batches
    fresh = np.where(own > 1, own, aps_micro(instance))
    micro = np.where(clients >= 0, plan.micro_batches[np.maximum(clients, 0)], fresh)
    micro = np.minimum(micro, instance.batch.astype(np.int64))
    result = dispatch_pipelined(instance, whole.plan.assignment, micro, "replan",
                                {**whole.plan.meta, "micro_batches": "kept"})
    return Solution(result, timeline_of(instance, result), instance, time.perf_counter() - t0,
                    bound_of=pipeline_bound)


def _whole_orders(plan: Plan) -> tuple[np.ndarray, ...]:
    """A pipelined plan's job orders with each client's first forward and last backward only (the unpipelined
    plan of the same assignment, whose order replan repairs)."""
    orders = []
    for i in range(len(plan.orders)):
        micro = plan.micro_batches
        rows = [(j, kind) for j, kind, k in plan.jobs(i) if (kind == 0 and k == 0) or (kind == 1 and k == micro[j] - 1)]
        orders.append(np.array(rows, dtype=np.int64).reshape(-1, 2))
    return tuple(orders)
