"""Per-helper dispatch: turn an assignment into each helper's job order (FCFS or a priority rule).

The helper runs one job at a time, non-preemptively. FCFS is the paper's utils.fifo: the pending job with
the smallest release goes next even if it is not released yet (ties by list position; a backward job
joins the end of the list). The priority rules never idle while a job is released: at each decision the
best released job by the rule's key runs; when none is released the helper waits for the next release.
"""
from __future__ import annotations

import heapq

import numpy as np

from edgepsl.plan.pure.chain import bwd_release
from edgepsl.plan.pure.constants import BWD, FWD, RULE_FCFS, RULE_FWD_FIRST


def _key(rule: int, kind: int, tail: float, client: int) -> tuple:
    if rule == RULE_FWD_FIRST:
        return (float(kind), -tail, client)
    return (-tail, float(kind), client)


def dispatch_helper(
    clients: list[int], i: int, rule: int,
    r: np.ndarray, p: np.ndarray, g: np.ndarray, pb: np.ndarray, q: np.ndarray, floor: np.ndarray | None = None,
) -> tuple[list[tuple[int, int]], float, int]:
    """Order the jobs of `clients` (ascending) on helper i; returns (jobs, span, work steps)."""
    jobs: list[tuple[int, int]] = []
    span = 0.0
    tau = 0.0
    n = len(clients)
    if rule == RULE_FCFS:
        heap = [(float(r[j, i]), s, j, FWD) for s, j in enumerate(clients)]
        heapq.heapify(heap)
        seq = n
        while heap:
            key, _, j, kind = heapq.heappop(heap)
            start = max(tau, key)
            jobs.append((j, kind))
            if kind == FWD:
                tau = start + p[j, i]
                heapq.heappush(heap, (bwd_release(g, floor, j, i, tau), seq, j, BWD))
                seq += 1
            else:
                tau = start + pb[j, i]
                span = max(span, tau + q[j, i])
        return jobs, span, 2 * n
    pending = sorted((float(r[j, i]), j) for j in clients)
    nxt = 0
    future: list[tuple[float, int]] = []
    ready: list[tuple] = []
    while len(jobs) < 2 * n:
        while nxt < n and pending[nxt][0] <= tau:
            j = pending[nxt][1]
            heapq.heappush(ready, _key(rule, FWD, g[j, i] if rule == RULE_FWD_FIRST else g[j, i] + pb[j, i] + q[j, i], j))
            nxt += 1
        while future and future[0][0] <= tau:
            _, j = heapq.heappop(future)
            heapq.heappush(ready, _key(rule, BWD, q[j, i], j))
        if not ready:
            t_next = pending[nxt][0] if nxt < n else future[0][0]
            if future and future[0][0] < t_next:
                t_next = future[0][0]
            tau = t_next
            continue
        key = heapq.heappop(ready)
        j = key[2]
        kind = int(key[0]) if rule == RULE_FWD_FIRST else int(key[1])
        jobs.append((j, kind))
        if kind == FWD:
            tau = tau + p[j, i]
            heapq.heappush(future, (bwd_release(g, floor, j, i, tau), j))
        else:
            tau = tau + pb[j, i]
            span = max(span, tau + q[j, i])
    return jobs, span, 2 * n


def members_by_helper(assign: np.ndarray, H: int) -> list[list[int]]:
    """Client lists per helper, each ascending."""
    members: list[list[int]] = [[] for _ in range(H)]
    for j, i in enumerate(assign.tolist()):
        members[i].append(j)
    return members


def dispatch(
    assign: np.ndarray, rule: int, r: np.ndarray, p: np.ndarray, g: np.ndarray, pb: np.ndarray, q: np.ndarray,
    floor: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Job order of every helper under one rule, flat: (seq_client, seq_kind, offsets of length H + 1)."""
    K, H = r.shape
    seq_client = np.empty(2 * K, dtype=np.int64)
    seq_kind = np.empty(2 * K, dtype=np.int64)
    offsets = np.zeros(H + 1, dtype=np.int64)
    pos = 0
    for i, clients in enumerate(members_by_helper(assign, H)):
        jobs, _, _ = dispatch_helper(clients, i, rule, r, p, g, pb, q, floor)
        for j, kind in jobs:
            seq_client[pos], seq_kind[pos] = j, kind
            pos += 1
        offsets[i + 1] = pos
    return seq_client, seq_kind, offsets


def pick_next(now: float, kind: np.ndarray, release: np.ndarray, tail: np.ndarray, client: np.ndarray, rule: int) -> int:
    """Online decision: index of the job to run next among those released by `now`, or -1 if none is.

    FCFS takes the earliest release (ties by position); the priority rules use their dispatch keys, with
    `tail` the job's priority value (forward: g, or g + p' + q' for RULE_TAIL; backward: q').
    """
    best, best_key = -1, None
    for k in range(kind.shape[0]):
        if release[k] > now:
            continue
        key = (release[k], k) if rule == RULE_FCFS else _key(rule, int(kind[k]), float(tail[k]), int(client[k]))
        if best < 0 or key < best_key:
            best, best_key = k, key
    return best
