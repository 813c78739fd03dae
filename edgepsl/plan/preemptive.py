"""Exact preemptive single-helper schedules (the compiled Jackson kernel) and the executed plans derived from them.

Per helper, the forward jobs (release r, work p, tail d + l) and then the backward jobs (release at the forward
completion + gap, at least the local-loss floor w, work p', tail q') are scheduled by the preemptive largest-tail
rule, which is optimal for these single-machine problems (paper.md 2.4); the backward schedule runs around the
forward pieces. edgepsl executes jobs without preemption, so the preemptive schedules become job orders that the
evaluator then times.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgepsl.plan.backend import kernel_arrays, kernel_floor, kernels
from edgepsl.plan.evaluate import timeline_of
from edgepsl.plan.instance import Instance
from edgepsl.plan.pure.constants import BWD, FWD
from edgepsl.plan.schedule import Plan, Timeline


@dataclass(frozen=True)
class PreemptiveSchedules:
    """Every helper's exact preemptive forward and backward schedules for one assignment (ms)."""

    fwd_start: np.ndarray
    fwd_end: np.ndarray
    bwd_start: np.ndarray
    bwd_end: np.ndarray
    forward_objective: float


def preemptive_schedules(instance: Instance, assignment: np.ndarray) -> PreemptiveSchedules:
    """Per helper: forward jobs by the largest-tail rule (tail d + l), then backward jobs around them (tail q')."""
    K, H = instance.K, instance.H
    starts = {FWD: np.zeros(K), BWD: np.zeros(K)}
    ends = {FWD: np.zeros(K), BWD: np.zeros(K)}
    objective = 0.0
    empty = np.empty(0)
    floor = kernel_floor(instance)
    for i in range(H):
        m = np.flatnonzero(assignment == i)
        if m.size == 0:
            continue
        fwd_tail = instance.d[m, i] + instance.l[m]
        fc, fobj, fj, fs, fe = kernels.jackson_preemptive(instance.r[m, i], instance.p[m, i], fwd_tail, empty, empty)
        release = fc + instance.gap[m, i]
        if floor is not None:
            release = np.maximum(release, floor[m, i])
        bc, _, bj, bs, _ = kernels.jackson_preemptive(release, instance.p_bwd[m, i], instance.tail[m, i], fs, fe)
        objective = max(objective, float(fobj))
        for kind, end, job, piece_start in ((FWD, fc, fj, fs), (BWD, bc, bj, bs)):
            first = end.copy()          # a job without work starts where it ends
            np.minimum.at(first, job, piece_start)
            starts[kind][m] = first
            ends[kind][m] = end
    return PreemptiveSchedules(starts[FWD], ends[FWD], starts[BWD], ends[BWD], objective)


def _sequenced(assignment: np.ndarray, fwd_key: np.ndarray, bwd_key: np.ndarray, H: int) -> Plan:
    """Each helper's jobs sorted by key (forward before backward on ties, then by client)."""
    K = assignment.shape[0]
    client = np.concatenate([np.arange(K), np.arange(K)])
    kind = np.concatenate([np.full(K, FWD), np.full(K, BWD)])
    helper = assignment[client]
    order = np.lexsort((client, kind, np.concatenate([fwd_key, bwd_key]), helper))
    offsets = np.searchsorted(helper[order], np.arange(H + 1))
    return Plan.from_flat(assignment, client[order], kind[order], offsets)


def helper_spans(instance: Instance, plan: Plan) -> np.ndarray:
    """Each helper's finish time under the plan (ms; 0 for an idle helper)."""
    finish = kernels.evaluate(plan.assignment, *plan.flat(), *kernel_arrays(instance), floor=kernel_floor(instance))[4]
    span = np.zeros(instance.H)
    np.maximum.at(span, plan.assignment, finish)
    return span


def schedule_assignment(instance: Instance, assignment: np.ndarray) -> tuple[Plan, Timeline, float]:
    """The executed plan of an assignment: per helper the best of the preemptive schedules' completion order,
    their start order and the best dispatch rule; with its evaluated timeline and the exact P_f value (ms)."""
    sched = preemptive_schedules(instance, assignment)
    H = instance.H
    rules = kernels.local_search(assignment, *kernel_arrays(instance), instance.mem, instance.cap, 0, 0,
                                 floor=kernel_floor(instance))
    candidates = [
        _sequenced(assignment, sched.fwd_end, sched.bwd_end, H),
        _sequenced(assignment, sched.fwd_start, sched.bwd_start, H),
        Plan.from_flat(assignment, rules[1], rules[2], rules[3]),
    ]
    spans = np.stack([helper_spans(instance, c) for c in candidates])
    pick = spans.argmin(axis=0)
    plan = Plan(assignment, tuple(candidates[pick[i]].orders[i] for i in range(H)), "admm")
    return plan, timeline_of(instance, plan), sched.forward_objective
