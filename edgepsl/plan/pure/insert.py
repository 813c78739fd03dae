"""Greedy insertion (mirrored in csrc/insert.pxi): an assignment built with real dispatched spans.

Clients go in greedy-eft's order (largest smallest work p + p' first, ties by index), or by a given priority
(largest first, ties by index; greedy-ls's insertion by chain gives each client's mean chain). Each client is
tried on the `width` helpers with room whose estimate is smallest (greedy-eft's estimate, and at least the helper's
current span; ties by index): the helper's clients with it are dispatched with the best rule, and it goes
where (makespan over all helpers, that helper's span, helper index) is smallest. Clients given a helper in
`start` stay there and count from the beginning (the re-planner inserts only new or displaced clients). Its
cost is about 6 width K^2 / H job steps, against greedy-eft's K H, and it starts the local search far closer
to a local optimum when helpers differ.
"""
from __future__ import annotations

import bisect

import numpy as np

from edgepsl.plan.pure.chain import chain_of
from edgepsl.plan.pure.constants import RULES
from edgepsl.plan.pure.dispatch import dispatch_helper


def _best_span(clients: list[int], i: int, r, p, g, pb, q, floor) -> float:
    """The smallest span of the dispatch rules for `clients` (ascending) on helper i (first rule wins ties)."""
    s = -1.0
    for rule in RULES:
        value = dispatch_helper(clients, i, rule, r, p, g, pb, q, floor)[1]
        if s < 0 or value < s:
            s = value
    return s


def assign_greedy_insert(
    r: np.ndarray, p: np.ndarray, g: np.ndarray, pb: np.ndarray, q: np.ndarray, mem: np.ndarray, cap: np.ndarray,
    width: int, start: np.ndarray | None = None, priority: np.ndarray | None = None,
    floor: np.ndarray | None = None,
) -> np.ndarray:
    """Each client, largest work first, onto the best of its `width` most promising helpers by dispatched span.

    start, if given, fixes the clients with start[j] >= 0 on that helper; only the others are inserted.
    priority, if given, orders the insertion instead: largest priority[j] first (ties by index).
    """
    if width < 1:
        raise ValueError(f"width must be at least 1, got {width}")
    K, H = r.shape
    if start is None:
        start = np.full(K, -1, dtype=np.int64)
    if len(start) != K:
        raise ValueError(f"start has {len(start)} entries, expected {K}")
    if priority is not None and len(priority) != K:
        raise ValueError(f"priority has {len(priority)} entries, expected {K}")
    for j in range(K):
        if start[j] >= H:
            raise ValueError(f"client {j} starts on helper {start[j]}, not in [0, {H})")
    out = np.full(K, -1, dtype=np.int64)
    used = [0.0] * H
    work = [0.0] * H
    chain = [0.0] * H
    minr = [0.0] * H
    minq = [0.0] * H
    span = [0.0] * H
    members: list[list[int]] = [[] for _ in range(H)]

    def place(j: int, i: int) -> None:
        out[j] = i
        c = chain_of(r, p, g, pb, q, floor, j, i)
        if members[i]:
            chain[i] = max(chain[i], c)
            minr[i] = min(minr[i], r[j, i])
            minq[i] = min(minq[i], q[j, i])
        else:
            chain[i], minr[i], minq[i] = c, r[j, i], q[j, i]
        bisect.insort(members[i], j)
        work[i] += p[j, i] + pb[j, i]
        used[i] += mem[j]

    for j in range(K):
        if start[j] >= 0:
            place(j, int(start[j]))
    for i in range(H):
        if members[i]:
            span[i] = _best_span(members[i], i, r, p, g, pb, q, floor)
    key = []
    for j in range(K):
        if start[j] >= 0:
            continue
        w = -1.0
        if priority is not None:
            w = float(priority[j])
        else:
            for i in range(H):
                if mem[j] <= cap[i] and (w < 0 or p[j, i] + pb[j, i] < w):
                    w = p[j, i] + pb[j, i]
        key.append((-w, j))
    key.sort()
    for _, j in key:
        est = []
        for i in range(H):
            if used[i] + mem[j] > cap[i]:
                continue
            c = chain_of(r, p, g, pb, q, floor, j, i)
            if members[i]:
                c = max(c, chain[i])
                lo = min(minr[i], r[j, i])
                hi = min(minq[i], q[j, i])
            else:
                lo, hi = r[j, i], q[j, i]
            e = max(c, lo + work[i] + (p[j, i] + pb[j, i]) + hi)
            est.append((max(e, span[i]), i))
        if not est:
            return out
        est.sort()
        best = None
        for _, i in est[:width]:
            grown = members[i].copy()
            bisect.insort(grown, j)
            s = _best_span(grown, i, r, p, g, pb, q, floor)
            other = max((span[x] for x in range(H) if x != i), default=0.0)
            cand = (max(other, s), s, i)
            if best is None or cand < best:
                best = cand
        _, s, i = best
        place(j, i)
        span[i] = s
    return out
