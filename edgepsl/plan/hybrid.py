"""Hybrid planning: each client trains locally (part-2 on its own device) or splits, chosen with the plan.

A client in local mode has no helper jobs and no transfers, so it finishes at the constant L_j
(Instance.local_time) and the makespan of a hybrid plan is max(max over local clients of L_j, makespan of the split
clients' plan). For a threshold T let S_T be the clients that cannot go local with L_j <= T (no own memory, or
L_j > T). Any local set with largest L_j = T leaves at least S_T to split, and dropping clients from a split
instance never lengthens its best plan, so (docs/planning.md, "Hybrid mode")

    OPT = min over T in {0} and the L_j of the clients that fit locally, of max(T, OPT_split(S_T)).

The planner, the exact method and the lower bound are this one outer layer over the split kernels: greedy-ls,
the MILP and the split bounds on each S_T; re-planning (replan_hybrid) is the same layer over replan.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgepsl.plan import heuristics
from edgepsl.plan.backend import kernel_arrays, kernels
from edgepsl.plan.bounds import LowerBound, lower_bound
from edgepsl.plan.errors import InfeasibleError, UnknownMethodError
from edgepsl.plan.evaluate import timeline_of, validate
from edgepsl.plan.heuristics import DEFAULT_BUDGET, DEFAULT_KICKS, Solution
from edgepsl.plan.instance import Instance
from edgepsl.plan.replan import REPLAN_BUDGET, REPLAN_KICKS, match, replan
from edgepsl.plan.rules import DISPATCH_RULES
from edgepsl.plan.schedule import LOCAL, Plan

# The hybrid planner runs full greedy-ls on the all-split threshold (T = 0) and on this many more thresholds, the
# ones whose quick plan (greedy-eft with the best rule per helper) is shortest.
REFINED_THRESHOLDS = 3

METHODS = {
    "hybrid": "local or split per client: thresholds on the local round time L_j, greedy-ls on each candidate's "
              "split clients (docs/planning.md, Hybrid mode)",
    "hybrid-random": "seeded random order, each client uniformly on its own device (if it fits) or a helper with "
                     "room (paper 4.7); FCFS",
    "hybrid-rule-random": "local if the paper's local-vs-offload rule says so, the rest random (paper 4.7); FCFS",
    "hybrid-balanced-greedy": "local if the paper's local-vs-offload rule says so, the rest balanced-greedy "
                              "(paper 2.5); FCFS",
}
BASELINES = ("hybrid-random", "hybrid-rule-random", "hybrid-balanced-greedy")


@dataclass(frozen=True)
class Threshold:
    """One candidate local set: every client that fits locally with L_j <= value goes local; `split` the rest."""

    value: float
    split: np.ndarray


def thresholds(instance: Instance) -> list[Threshold]:
    """The candidate thresholds in increasing order: 0 and each distinct L_j of the clients that fit locally,
    keeping only those whose split set fits some helper each (a client fitting no helper must go local)."""
    fits_local = instance.local_fits
    times = instance.local_time
    values = np.unique(np.concatenate([[0.0], times[fits_local]]))
    nowhere = ~instance.fits.any(axis=1)
    floor = float(times[nowhere].max()) if nowhere.any() else 0.0
    return [Threshold(float(t), np.flatnonzero(~(fits_local & (times <= t)))) for t in values if t >= floor]


def merge(instance: Instance, split: np.ndarray, sub_plan: Plan | None, method: str, meta: dict) -> Plan:
    """The full plan: clients outside `split` local, the split clients as in `sub_plan` (renumbered back)."""
    assignment = np.full(instance.K, LOCAL, dtype=np.int64)
    if sub_plan is None:
        return Plan(assignment, tuple(np.empty((0, 2), dtype=np.int64) for _ in range(instance.H)), method, meta)
    assignment[split] = sub_plan.assignment
    orders = tuple(np.stack([split[o[:, 0]], o[:, 1]], axis=1) if len(o) else o for o in sub_plan.orders)
    return Plan(assignment, orders, method, meta)


def hybrid_lower_bound(instance: Instance) -> LowerBound:
    """min over thresholds T of max(T, split bound of S_T): valid for every hybrid plan (docs/planning.md).

    The fields are those of the minimising threshold: its split set's chain, load, window and joint bounds, and
    `local` = T."""
    best: LowerBound | None = None
    for th in thresholds(instance):
        if th.split.size == 0:
            cand = LowerBound(0.0, 0.0, local=th.value)
        else:
            b = lower_bound(instance.subset(th.split))
            cand = LowerBound(b.chain, b.load, b.window, b.joint, local=th.value)
        if best is None or cand.value < best.value:
            best = cand
        if best.value <= th.value:   # every later threshold is at least th.value
            break
    assert best is not None, "thresholds() always holds the floor threshold"
    return best


def _quick(sub: Instance) -> float:
    """Makespan of greedy-eft with the best dispatch rule per helper (a cheap estimate); inf if it cannot place."""
    try:
        return heuristics.solve(sub, "greedy-eft").makespan
    except InfeasibleError:
        return float("inf")


def solve_hybrid(instance: Instance, seed: int = 0, budget: int = DEFAULT_BUDGET, kicks: int = DEFAULT_KICKS,
                 time_limit_ms: float | None = None) -> Solution:
    """The hybrid planner: quick plans for every threshold, then greedy-ls on T = 0 (all split) and on the
    REFINED_THRESHOLDS thresholds with the shortest quick plans; the best of these (never longer than greedy-ls
    all-split with the same seed and budget), the one with more local clients among equal makespans."""
    instance.require_splitfed("the hybrid planner")
    t0 = time.perf_counter()
    cands = thresholds(instance)
    quick = [max(th.value, _quick(instance.subset(th.split)) if th.split.size else 0.0) for th in cands]
    order = [k for k in np.argsort(quick, kind="stable").tolist() if np.isfinite(quick[k])]
    chosen = sorted(set(order[:REFINED_THRESHOLDS]) | ({0} if cands[0].value == 0.0 else set()))
    limit = None if time_limit_ms is None else time_limit_ms / max(1, len(chosen))
    best: tuple[float, Plan] | None = None
    for k in chosen:
        th = cands[k]
        if best is not None and th.value > best[0]:
            continue
        sub_plan = None
        value = th.value
        if th.split.size:
            try:
                sol = heuristics.solve(instance.subset(th.split), "greedy-ls", seed=seed, budget=budget, kicks=kicks,
                                       time_limit_ms=limit)
            except InfeasibleError:
                continue
            sub_plan, value = sol.plan, max(th.value, sol.makespan)
        if best is None or value <= best[0]:   # ties go to the larger local set: less helper work and traffic
            meta = {"seed": seed, "threshold_ms": th.value, "local_clients": int(instance.K - th.split.size),
                    "thresholds": len(cands), "refined": len(chosen), "budget": budget, "kicks": kicks,
                    "time_limit_ms": time_limit_ms}
            best = (value, merge(instance, th.split, sub_plan, "hybrid", meta))
    if best is None:
        raise InfeasibleError("no threshold of the hybrid planner has a split set that fits the helpers' memory")
    plan = best[1]
    return Solution(plan, timeline_of(instance, plan), instance, time.perf_counter() - t0,
                    bound_of=hybrid_lower_bound)


def offload_rule(instance: Instance) -> np.ndarray:
    """Boolean K, the paper's local-vs-offload rule (paper.md 2.5, hybrid): local if the client fits locally and
    r_own + p_own + r'_own + p'_own <= max over helpers k of r_jk + (K/H) p_jk + r'_jk + (K/H) p'_jk + d_jk + d'_jk."""
    if not instance.hybrid:
        return np.zeros(instance.K, dtype=bool)
    share = instance.K / instance.H
    own = instance.r_own + instance.p_own + instance.r_bwd_own + instance.p_bwd_own
    offload = (instance.r + share * instance.p + instance.r_bwd + share * instance.p_bwd + instance.d
               + instance.d_bwd).max(axis=1)
    return instance.local_fits & (own <= offload)


def _random_modes(instance: Instance, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = np.zeros(instance.K, dtype=np.int64)
    used = np.zeros(instance.H)
    fits_local = instance.local_fits
    for j in rng.permutation(instance.K).tolist():
        room = np.flatnonzero(used + instance.mem[j] <= instance.cap).tolist()
        choices = room + ([LOCAL] if fits_local[j] else [])
        if not choices:
            raise InfeasibleError(f"hybrid-random could not place {instance.client_name(j)}: no helper has room "
                                  "left and it cannot train locally")
        pick = choices[int(rng.integers(len(choices)))]
        if pick != LOCAL:
            used[pick] += instance.mem[j]
        a[j] = pick
    return a


def _rule_then(instance: Instance, assign: Callable[[Instance], np.ndarray], name: str) -> np.ndarray:
    a = np.full(instance.K, LOCAL, dtype=np.int64)
    split = np.flatnonzero(~offload_rule(instance))
    if split.size:
        sub = instance.subset(split)
        part = assign(sub)
        if (part < 0).any():
            j = int(split[np.flatnonzero(part < 0)[0]])
            raise InfeasibleError(f"{name} could not place {instance.client_name(j)}: every helper with room was "
                                  "already full")
        a[split] = part
    return a


def _fcfs_plan(instance: Instance, a: np.ndarray, method: str, meta: dict) -> Plan:
    split = np.flatnonzero(a != LOCAL)
    sub_plan = None
    if split.size:
        sub = instance.subset(split)
        sub_plan = Plan.from_flat(a[split], *kernels.dispatch(a[split], DISPATCH_RULES["fcfs"], *kernel_arrays(sub)))
    return merge(instance, split, sub_plan, method, meta)


def solve_baseline(instance: Instance, method: str, seed: int = 0) -> Solution:
    """One of the paper's hybrid baselines (hybrid-random, hybrid-rule-random, hybrid-balanced-greedy), FCFS."""
    instance.require_splitfed("the hybrid baselines")
    t0 = time.perf_counter()
    if method == "hybrid-random":
        a = _random_modes(instance, seed)
    elif method == "hybrid-rule-random":
        a = _rule_then(instance, lambda sub: kernels.assign_random(sub.mem, sub.cap, seed), method)
    elif method == "hybrid-balanced-greedy":
        a = _rule_then(instance, lambda sub: kernels.assign_balanced_greedy(sub.mem, sub.cap), method)
    else:
        raise UnknownMethodError(f"not a hybrid baseline: {method!r}; choose one of {', '.join(BASELINES)}")
    plan = _fcfs_plan(instance, a, method, {"seed": seed, "dispatch": "fcfs"})
    return Solution(plan, timeline_of(instance, plan), instance, time.perf_counter() - t0,
                    bound_of=hybrid_lower_bound)


def restrict(plan: Plan, split: np.ndarray) -> Plan:
    """The plan of only the `split` clients (a hybrid plan's helper clients), renumbered 0.. in that order: the
    inverse of merge."""
    renumber = np.full(len(plan.assignment), -1, dtype=np.int64)
    renumber[split] = np.arange(len(split))
    orders = tuple(np.stack([renumber[o[:, 0]], o[:, 1]], axis=1) if len(o) else o for o in plan.orders)
    return Plan(plan.assignment[split], orders)


def _named_subset(instance: Instance, clients: np.ndarray) -> Instance:
    """instance.subset(clients), its clients named by their index here when the instance has no names (so that
    replan matches two subsets of unnamed instances, which match by index, client by client)."""
    sub = instance.subset(clients)
    if instance.client_names:
        return sub
    return dataclasses.replace(sub, client_names=tuple(str(j) for j in clients))


def replan_hybrid(instance: Instance, plan: Plan, previous: Instance, seed: int = 0, budget: int = REPLAN_BUDGET,
                  kicks: int = REPLAN_KICKS, time_limit_ms: float | None = None) -> Solution:
    """Repair the hybrid `plan`, made for `previous`, into a hybrid plan for the changed `instance` (matched by name
    as replan does): local clients stay local while they fit their own memory, split clients are re-planned with
    replan on the split sub-instance, and the mode of a client that joined or whose helper left is chosen anew
    (each threshold on their L_j, as solve_hybrid); a local client whose L_j exceeds the best split makespan is
    then tried split. The best plan, never longer than keeping the old modes (new clients split)."""
    instance.require_splitfed("the hybrid re-planner")
    t0 = time.perf_counter()
    validate(previous, plan)
    clients, helpers = match(previous, instance)
    known = clients >= 0
    old = np.full(instance.K, LOCAL - 1, dtype=np.int64)   # LOCAL - 1: a client that joined
    old[known] = plan.assignment[clients[known]]
    gone = np.ones(previous.H, dtype=bool)
    gone[helpers[helpers >= 0]] = False
    helper_left = (old >= 0) & gone[np.maximum(old, 0)]
    fits_local, times = instance.local_fits, instance.local_time
    forced = ~instance.fits.any(axis=1)                     # fits no helper: local (validation says it fits there)
    base = forced | ((old == LOCAL) & fits_local)
    free = fits_local & ~base & (~known | helper_left)      # the clients whose mode is chosen anew
    previous_split = np.flatnonzero(plan.assignment != LOCAL)
    previous_sub = _named_subset(previous, previous_split) if previous_split.size else None
    previous_sub_plan = restrict(plan, previous_split) if previous_split.size else None
    values = np.unique(times[free]).tolist()
    limit = None if time_limit_ms is None else time_limit_ms / (len(values) + 2)

    def planned(local: np.ndarray) -> tuple[float, float, Plan] | None:
        """(makespan, split makespan, plan) with `local` in local mode; None if the split clients do not fit."""
        split = np.flatnonzero(~local)
        local_value = float(times[local].max()) if local.any() else 0.0
        if not split.size:
            return local_value, 0.0, merge(instance, split, None, "replan-hybrid", {})
        sub = _named_subset(instance, split)
        try:
            if previous_sub is None:
                sol = heuristics.solve(sub, "greedy-ls", seed=seed, budget=budget, kicks=kicks, time_limit_ms=limit)
            else:
                sol = replan(sub, previous_sub_plan, previous_sub, seed=seed, budget=budget, kicks=kicks,
                             time_limit_ms=limit)
        except InfeasibleError:
            return None
        return max(local_value, sol.makespan), sol.makespan, merge(instance, split, sol.plan, "replan-hybrid", {})

    best: tuple[float, float, Plan] | None = None
    tried = 0
    for value in [-np.inf] + values:                        # -inf: every free client split (the old modes)
        if best is not None and value >= best[0]:
            break
        found = planned(base | (free & (times <= value)))
        tried += 1
        if found is not None and (best is None or found[0] <= best[0]):
            best = found
    if best is not None:
        local = best[2].assignment == LOCAL
        movable = local & ~forced & (times > best[1])
        if movable.any() and best[0] > best[1]:
            found = planned(local & ~movable)
            tried += 1
            if found is not None and found[0] < best[0]:
                best = found
    if best is None:
        raise InfeasibleError("the changed instance has no hybrid plan: the clients that cannot train locally do "
                              "not fit the helpers' memory")
    local_count = int((best[2].assignment == LOCAL).sum())
    meta = {"seed": seed, "budget": budget, "kicks": kicks, "time_limit_ms": time_limit_ms,
            "local_clients": local_count, "reconsidered": int(free.sum()), "candidates": tried,
            "start": "greedy-ls" if previous_sub is None else "replan"}
    result = Plan(best[2].assignment, best[2].orders, "replan-hybrid", meta)
    return Solution(result, timeline_of(instance, result), instance, time.perf_counter() - t0,
                    bound_of=hybrid_lower_bound)
