"""Validate a plan against its instance, then run it non-preemptively in continuous time."""
from __future__ import annotations

import numpy as np

from edgepsl.plan.backend import kernel_arrays, kernel_floor, kernels
from edgepsl.plan.errors import (AssignmentError, JobCoverageError, JobOrderError, MemoryCapacityError, MicroBatchError,
                                 ModeError)
from edgepsl.plan.instance import Instance
from edgepsl.plan.pure.constants import BWD, FWD
from edgepsl.plan.schedule import LOCAL, Plan, Timeline

# Memory loads are sums of floats; a load may exceed a capacity by this relative slack from rounding alone.
MEMORY_RTOL = 1e-9


def _plainly_valid(instance: Instance, plan: Plan) -> bool:
    """True when the plan is valid, checked with array operations (validate's fast path; it finds the error
    message only when this says False)."""
    K, H = instance.K, instance.H
    a = plan.assignment
    if a.shape != (K,) or len(plan.orders) != H or ((a < 0) | (a >= H)).any():
        return False
    if (np.bincount(a, weights=instance.mem, minlength=H) > instance.cap * (1 + MEMORY_RTOL)).any():
        return False
    micro = plan.micro_batches
    if plan.pipelined and (micro.shape != (K,) or not instance.staged or (micro > instance.batch).any()):
        return False
    seq_client, seq_kind, offsets = plan.flat()
    if len(seq_client) != 2 * int(micro.sum()):
        return False
    if ((seq_client < 0) | (seq_client >= K) | ((seq_kind != FWD) & (seq_kind != BWD))).any():
        return False
    if (a[seq_client] != np.repeat(np.arange(H), np.diff(offsets))).any():
        return False
    key = 2 * seq_client + (seq_kind == BWD)
    if (np.bincount(key, minlength=2 * K) != np.repeat(micro, 2)).any():
        return False
    by_key = np.argsort(key, kind="stable")  # positions grouped by (client, kind), micro-batch order inside
    odd = key[by_key] % 2 == 1
    return bool((by_key[~odd] < by_key[odd]).all())


def with_plan_modes(instance: Instance, plan: Plan) -> Instance:
    """The instance with the learning modes the plan records (its own where the plan records none); ModeError when
    local-loss clients meet an instance without local-loss times, micro-batches or hybrid local mode."""
    if plan.local_loss is not None:
        if plan.local_loss.shape != (instance.K,):
            raise ModeError(f"the plan gives learning modes for {plan.local_loss.size} clients, the instance has "
                            f"{instance.K}")
        instance = instance.with_loss_modes(plan.local_loss)
    modes = instance.loss_modes
    if modes.any() and (plan.pipelined or plan.local.any()):
        what = "micro-batches (pipelining)" if plan.pipelined else "local (hybrid) mode"
        j = int(np.flatnonzero(modes)[0])
        raise ModeError(f"{instance.client_name(j)} runs the local-loss mode, which edgepsl does not plan together "
                        f"with {what}: plan local loss with N = 1 and every client on a helper")
    return instance


def validate(instance: Instance, plan: Plan) -> None:
    """Raise the specific PlanError for the first violated rule; return quietly for a valid plan."""
    with_plan_modes(instance, plan)
    if _plainly_valid(instance, plan):
        return
    K, H = instance.K, instance.H
    a = plan.assignment
    if a.shape != (K,):
        raise AssignmentError(f"the plan assigns {a.size} clients, the instance has {K}: each client needs exactly one helper")
    out = ((a < 0) & (a != LOCAL)) | (a >= H)
    if out.any():
        j = int(np.flatnonzero(out)[0])
        raise AssignmentError(f"{instance.client_name(j)} is assigned to helper {int(a[j])}, but helpers are "
                              f"0..{H - 1} (or {LOCAL} for local mode)")
    cannot = (a == LOCAL) & ~instance.local_fits
    if cannot.any():
        j = int(np.flatnonzero(cannot)[0])
        why = ("the instance has no local-mode times" if not instance.hybrid else
               f"part-2 needs {instance.mem[j]:g} MB and its device has {instance.cap_own[j]:g} MB")
        raise AssignmentError(f"{instance.client_name(j)} is in local mode but cannot train locally: {why}")
    split = a != LOCAL
    load = np.bincount(a[split], weights=instance.mem[split], minlength=H)
    over = load > instance.cap * (1 + MEMORY_RTOL)
    if over.any():
        i = int(np.flatnonzero(over)[0])
        raise MemoryCapacityError(
            f"{instance.helper_name(i)} holds clients needing {load[i]:g} MB but has {instance.cap[i]:g} MB"
        )
    if len(plan.orders) != H:
        raise JobCoverageError(f"the plan orders jobs for {len(plan.orders)} helpers, the instance has {H}")
    micro = _checked_micro(instance, plan)
    seen = np.zeros((K, 2), dtype=np.int64)
    for i, order in enumerate(plan.orders):
        for pos, (j, kind) in enumerate(order.tolist()):
            if not 0 <= j < K:
                raise JobCoverageError(f"{instance.helper_name(i)} runs a job of client {j}, but clients are 0..{K - 1}")
            if kind not in (FWD, BWD):
                raise JobCoverageError(f"{instance.helper_name(i)} runs a job of unknown kind {kind} (0 = fwd, 1 = bwd)")
            name = "forward" if kind == FWD else "backward"
            if a[j] != i:
                where = "in local mode" if a[j] == LOCAL else f"assigned to {instance.helper_name(int(a[j]))}"
                raise JobCoverageError(
                    f"{instance.helper_name(i)} runs the {name} job of {instance.client_name(j)}, which is {where}"
                )
            if seen[j, kind] >= micro[j]:
                raise JobCoverageError(f"the {name} job of {instance.client_name(j)} appears "
                                       f"{'twice' if micro[j] == 1 else f'more than N = {micro[j]} times'}")
            if kind == BWD and seen[j, BWD] >= seen[j, FWD]:
                which = "" if micro[j] == 1 else f" of micro-batch {seen[j, BWD]}"
                raise JobOrderError(
                    f"{instance.helper_name(i)} runs the backward job{which} of {instance.client_name(j)} at position "
                    f"{pos}, before its forward job"
                )
            seen[j, kind] += 1
    missing = np.argwhere((seen < micro[:, None]) & split[:, None])
    if missing.size:
        j, kind = (int(v) for v in missing[0])
        raise JobCoverageError(
            f"the {'forward' if kind == FWD else 'backward'} job of {instance.client_name(j)} is in no helper's order"
        )


def _checked_micro(instance: Instance, plan: Plan) -> np.ndarray:
    """The plan's N per client after checking it against the instance (MicroBatchError)."""
    micro = plan.micro_batches
    if not plan.pipelined:
        return micro
    if micro.shape != (instance.K,):
        raise MicroBatchError(f"the plan gives micro-batch counts for {micro.size} clients, the instance has "
                              f"{instance.K}")
    if not instance.staged:
        raise MicroBatchError("the plan splits rounds into micro-batches but the instance has no stage fields "
                              "(instance format version 3, docs/formats.md)")
    over = micro > instance.batch
    if over.any():
        j = int(np.flatnonzero(over)[0])
        raise MicroBatchError(f"{instance.client_name(j)} gets N = {micro[j]} micro-batches but its batch holds "
                              f"{instance.batch[j]:g} samples")
    local = (micro > 1) & (plan.assignment == LOCAL)
    if local.any():
        j = int(np.flatnonzero(local)[0])
        raise MicroBatchError(f"{instance.client_name(j)} is in local mode and has no jobs on a helper: its N must "
                              f"be 1, not {micro[j]}")
    return micro


def evaluate(instance: Instance, plan: Plan) -> Timeline:
    """Validate the plan, then compute every job's start and end, each client's finish and the makespan."""
    validate(instance, plan)
    return timeline_of(instance, plan)


def timeline_of(instance: Instance, plan: Plan) -> Timeline:
    """Compute the timeline of a plan already known to be valid (as the kernels produce them); a local client's
    'jobs' are its part-2 forward and backward on its own device; local-loss clients as the plan's modes say."""
    instance = with_plan_modes(instance, plan)
    if plan.local.any():
        return _hybrid_timeline(instance, plan)
    if plan.pipelined:
        from edgepsl.plan.pipeline import pipelined_timeline

        return pipelined_timeline(instance, plan)
    seq_client, seq_kind, offsets = plan.flat()
    fs, fe, bs, be, fin = kernels.evaluate(plan.assignment, seq_client, seq_kind, offsets, *kernel_arrays(instance),
                                           floor=kernel_floor(instance))
    H = instance.H
    rows = np.arange(instance.K)
    a = plan.assignment
    busy = np.bincount(a, weights=instance.p[rows, a] + instance.p_bwd[rows, a], minlength=H)
    span = np.zeros(H)
    np.maximum.at(span, a, be)
    return Timeline(fs, fe, bs, be, fin, busy, span - busy, span, float(fin.max()))


def split_part(instance: Instance, plan: Plan) -> tuple[np.ndarray, Instance | None, Plan | None]:
    """(split clients, their sub-instance, the plan restricted to them with clients renumbered); None, None when
    every client is local."""
    clients = np.flatnonzero(~plan.local)
    if clients.size == 0:
        return clients, None, None
    new = np.full(instance.K, -1, dtype=np.int64)
    new[clients] = np.arange(clients.size)
    orders = tuple(np.stack([new[o[:, 0]], o[:, 1]], axis=1) if len(o) else o for o in plan.orders)
    micro = plan.micro[clients] if plan.pipelined else None
    return clients, instance.subset(clients), Plan(plan.assignment[clients], orders, plan.method, micro=micro)


def _hybrid_timeline(instance: Instance, plan: Plan) -> Timeline:
    fs = np.asarray(instance.r_own, dtype=np.float64).copy()
    fe = fs + instance.p_own
    bs = fe + instance.l + instance.r_bwd_own
    be = bs + instance.p_bwd_own
    fin = be + instance.l_bwd
    busy, idle, span = np.zeros(instance.H), np.zeros(instance.H), np.zeros(instance.H)
    clients, sub, sub_plan = split_part(instance, plan)
    if sub is not None:
        part = timeline_of(sub, sub_plan)
        for full, mine in ((fs, part.fwd_start), (fe, part.fwd_end), (bs, part.bwd_start), (be, part.bwd_end),
                           (fin, part.finish)):
            full[clients] = mine
        busy, idle, span = part.helper_busy, part.helper_idle, part.helper_span
    return Timeline(fs, fe, bs, be, fin, busy, idle, span, float(fin.max()))
