"""Micro-batch pipelining (PiPar in the U-shaped, multi-helper model): per-micro-batch stage times, the
pipelined timeline of a plan, PiPar's rule for N and a lower bound valid for every N (docs/planning.md,
"Micro-batch pipelining").

A stage whose whole-batch time is X (ms) and whose fixed part is f costs min(f, X) + (X - min(f, X)) / N per
micro-batch: the fixed part (a call's overhead, a transfer's latency) is paid by every micro-batch, the rest
scales with the micro-batch size. At N = 1 a client is exactly today's chain (release r, gap g, tail q').
"""
from __future__ import annotations

import math

import numpy as np

from edgepsl.plan.backend import kernels
from edgepsl.plan.bounds import LowerBound
from edgepsl.plan.errors import InstanceError
from edgepsl.plan.instance import Instance
from edgepsl.plan.pure.constants import BWD, FWD
from edgepsl.plan.pure.pipeline import (ST_A1, ST_B1, ST_D1, ST_D2, ST_HB, ST_HF, ST_M, ST_U1, ST_U2, STAGES)
from edgepsl.plan.schedule import Plan, Timeline

# PiPar's cap on N: at most half the batch and at most this many micro-batches.
APS_MAX = 100


def stage_ms(whole: np.ndarray | float, fixed: np.ndarray | float, n: np.ndarray | int) -> np.ndarray:
    """Per-micro-batch time of a stage of whole-batch time `whole` with fixed part `fixed` at N = n:
    min(fixed, whole) + (whole - min(fixed, whole)) / n (the runtime's emulation pads micro-batches to it)."""
    f = np.minimum(fixed, whole)
    return f + (whole - f) / n


def whole_stages(instance: Instance) -> np.ndarray:
    """K x H x 9 whole-batch stage times (ms): part-1 fwd, upload act, helper fwd, download act, part-3 fwd + loss +
    bwd, upload grad, helper bwd, download grad, part-1 bwd."""
    _require_stages(instance)
    K, H = instance.K, instance.H
    out = np.empty((K, H, STAGES))
    out[..., ST_A1] = np.maximum(instance.r - instance.r_up, 0.0)
    out[..., ST_U1] = instance.r_up
    out[..., ST_HF] = instance.p
    out[..., ST_D2] = instance.d
    out[..., ST_M] = instance.l[:, None] + np.maximum(instance.r_bwd - instance.r_bwd_up, 0.0)
    out[..., ST_U2] = instance.r_bwd_up
    out[..., ST_HB] = instance.p_bwd
    out[..., ST_D1] = instance.d_bwd
    out[..., ST_B1] = np.broadcast_to(instance.l_bwd[:, None], (K, H))
    return out


def stage_times(instance: Instance, micro: np.ndarray) -> np.ndarray:
    """K x H x 9 per-micro-batch stage times (ms) for N = micro[j]; a client with N = 1 keeps its whole-batch
    helper jobs p and p' exactly (its other stages are not used: it runs today's chain)."""
    n = np.asarray(micro, dtype=np.float64)[:, None]
    whole = whole_stages(instance)
    oc = np.broadcast_to(instance.o_client[:, None], (instance.K, instance.H))
    ol = instance.o_link
    oh = np.broadcast_to(instance.o_helper[None, :], (instance.K, instance.H))
    # part-3 is two calls (forward with the loss, backward): two fixed parts.
    fixed = {ST_A1: oc, ST_U1: ol, ST_HF: oh, ST_D2: ol, ST_M: 2 * oc, ST_U2: ol, ST_HB: oh, ST_D1: ol, ST_B1: oc}
    out = np.empty_like(whole)
    for stage, f in fixed.items():
        out[..., stage] = stage_ms(whole[..., stage], f, n)
    one = np.asarray(micro) == 1
    out[one, :, ST_HF] = instance.p[one]
    out[one, :, ST_HB] = instance.p_bwd[one]
    return np.ascontiguousarray(out)


def aps_micro(instance: Instance) -> np.ndarray:
    """PiPar's Automated Parameter Selection per client, on the helper its upload is fastest to:
    N = ceil((upload + helper fwd + helper bwd + download) / min(device fwd, device bwd)) + 1, capped at
    min(N, B / 2, 100), then B // (B // N). Device fwd is part-1 + part-3 forward, device bwd part-3 + part-1
    backward; the transfers are both uploads and both downloads."""
    whole = whole_stages(instance)
    best = np.argmin(instance.r_up + instance.r_bwd_up, axis=1)
    w = whole[np.arange(instance.K), best]
    link = w[:, ST_U1] + w[:, ST_U2] + w[:, ST_D1] + w[:, ST_D2]
    server = w[:, ST_HF] + w[:, ST_HB]
    dev_fwd = w[:, ST_A1] + instance.l
    dev_bwd = w[:, ST_M] - instance.l + w[:, ST_B1]
    device = np.maximum(np.minimum(dev_fwd, dev_bwd), 1e-9)
    out = np.empty(instance.K, dtype=np.int64)
    for j in range(instance.K):
        batch = int(instance.batch[j])
        n = math.ceil((link[j] + server[j]) / device[j]) + 1
        n = max(1, min(n, batch // 2, APS_MAX))
        out[j] = batch // (batch // n)
    return out


def pipelined_timeline(instance: Instance, plan: Plan) -> Timeline:
    """The timeline of a valid pipelined plan (no local clients): every micro-batch job's start and end, and per
    client the first start and last end of each kind, its finish and the makespan."""
    micro = plan.micro_batches
    st = stage_times(instance, micro)
    seq_client, seq_kind, offsets = plan.flat()
    start, end, finish = kernels.pipe_evaluate(plan.assignment, seq_client, seq_kind, offsets, micro, instance.r,
                                               instance.gap, instance.tail, st)
    K, H = instance.K, instance.H
    fs, fe, bs, be = (np.full(K, np.inf), np.zeros(K), np.full(K, np.inf), np.zeros(K))
    fwd = seq_kind == FWD
    np.minimum.at(fs, seq_client[fwd], start[fwd])
    np.maximum.at(fe, seq_client[fwd], end[fwd])
    np.minimum.at(bs, seq_client[~fwd], start[~fwd])
    np.maximum.at(be, seq_client[~fwd], end[~fwd])
    helper = np.repeat(np.arange(H), np.diff(offsets))
    busy = np.bincount(helper, weights=end - start, minlength=H)
    span = np.zeros(H)
    np.maximum.at(span, plan.assignment, be)
    return Timeline(fs, fe, bs, be, finish, busy, span - busy, span, float(finish.max()), start, end)


def client_stages(instance: Instance, plan: Plan, timeline: Timeline) -> list[list[tuple[str, int, float, float]]]:
    """Per client, its pipelined client-side and link stages as (stage, micro-batch, start, end), rebuilt from the
    helper job times by the model's rules (for Gantt charts and traces); empty for a client with N = 1."""
    micro = plan.micro_batches
    st = stage_times(instance, micro)
    out: list[list[tuple[str, int, float, float]]] = [[] for _ in range(instance.K)]
    seq_client, seq_kind, _ = plan.flat()
    ends: dict[tuple[int, int], list[float]] = {}
    for j, kind, e in zip(seq_client.tolist(), seq_kind.tolist(), timeline.job_end.tolist()):
        ends.setdefault((j, kind), []).append(e)
    order = sorted(range(len(seq_client)), key=lambda k: timeline.job_end[k])
    for j in range(instance.K):
        n = int(micro[j])
        if n == 1:
            continue
        s = st[j, plan.assignment[j]]
        rows = out[j]
        cpu = up = 0.0
        for k in range(n):
            rows.append(("part-1 fwd", k, cpu, cpu + s[ST_A1]))
            cpu += s[ST_A1]
            u0 = max(cpu, up)
            up = u0 + s[ST_U1]
            rows.append(("upload act", k, u0, up))
        down = 0.0
        dn1 = []
        counters = {FWD: 0, BWD: 0}
        for pos in order:
            if seq_client[pos] != j:
                continue
            kind = int(seq_kind[pos])
            k = counters[kind]
            counters[kind] += 1
            d0 = max(timeline.job_end[pos], down)
            down = d0 + (s[ST_D2] if kind == FWD else s[ST_D1])
            rows.append(("download act" if kind == FWD else "download grad", k, d0, down))
            if kind == FWD:
                c0 = max(down, cpu)
                cpu = c0 + s[ST_M]
                rows.append(("part-3", k, c0, cpu))
                u0 = max(cpu, up)
                up = u0 + s[ST_U2]
                rows.append(("upload grad", k, u0, up))
            else:
                dn1.append(down)
        for k in range(n):
            c0 = max(cpu, dn1[k])
            cpu = c0 + s[ST_B1]
            rows.append(("part-1 bwd", k, c0, cpu))
    return out


def pipeline_bound(instance: Instance) -> LowerBound:
    """Chain and load bounds valid for every plan with any N per client (1 <= N <= B): chain = the least over
    helpers of a client's own work (unpipelined: its chain; pipelined: its compute, which its CPU runs one call at
    a time, and its first stage, then the last micro-batch's path at N = B); load = the earliest possible first
    release plus the average least helper work (N s(p) >= p) plus the shortest possible tail."""
    _require_stages(instance)
    fits = instance.fits
    big = np.asarray(instance.batch, dtype=np.float64)
    whole = whole_stages(instance)
    st = stage_times(instance, instance.batch.astype(np.int64)) if (big > 1).any() else whole
    chain1 = instance.r + instance.p + instance.gap + instance.p_bwd + instance.tail
    cpu = whole[..., ST_A1] + whole[..., ST_M] + whole[..., ST_B1]
    path = whole[..., ST_A1] + st[..., ST_U1:].sum(axis=2)
    piped = np.maximum(cpu, path)
    per = np.where((big > 1)[:, None], np.minimum(chain1, piped), chain1)
    chain = float(np.where(fits, per, np.inf).min(axis=1).max())
    first = np.minimum(instance.r, st[..., ST_A1] + st[..., ST_U1])
    last = np.minimum(instance.tail, st[..., ST_D1] + st[..., ST_B1])
    work = np.where(fits, instance.p + instance.p_bwd, np.inf).min(axis=1)
    load = float(np.where(fits, first, np.inf).min() + work.sum() / instance.H + np.where(fits, last, np.inf).min())
    return LowerBound(chain=chain * (1 - 1e-12), load=load * (1 - 1e-12))


def _require_stages(instance: Instance) -> None:
    if not instance.staged:
        raise InstanceError("micro-batch pipelining needs the instance's stage fields (format version 3): build it "
                            "with scenario_instance(..., micro_batches=N) or build_instance(..., stages=...)")
