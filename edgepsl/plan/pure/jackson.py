"""Preemptive Jackson schedule on one helper (mirrored in csrc/jackson.pxi).

Jobs with release R, processing P and tail Q on a machine that is unavailable during given blocked
intervals (for example slots taken by forward jobs). At every moment the released job with the
largest tail runs, preempted when a job with a larger tail is released. This minimises max_j (C_j + Q_j)
for 1 | r_j, pmtn | max(C_j + q_j) (paper.md 2.4), blocked intervals included.
"""
from __future__ import annotations

import heapq

import numpy as np


def jackson_preemptive(
    release: np.ndarray, proc: np.ndarray, tail: np.ndarray, block_start: np.ndarray, block_end: np.ndarray,
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray]:
    """(completion times, max(C + Q), piece job, piece start, piece end); blocks sorted and disjoint."""
    n = release.shape[0]
    nb = block_start.shape[0]
    completion = np.zeros(n)
    pieces_job: list[int] = []
    pieces_start: list[float] = []
    pieces_end: list[float] = []
    pending = sorted((float(release[j]), j) for j in range(n))
    remaining = [float(proc[j]) for j in range(n)]
    ready: list[tuple[float, int]] = []
    nxt = 0
    blk = 0
    done = 0
    t = 0.0
    objective = 0.0
    while done < n:
        while nxt < n and pending[nxt][0] <= t:
            j = pending[nxt][1]
            if remaining[j] > 0:
                heapq.heappush(ready, (-float(tail[j]), j))
            else:
                completion[j] = pending[nxt][0]
                objective = max(objective, completion[j] + tail[j])
                done += 1
            nxt += 1
        while blk < nb and block_end[blk] <= t:
            blk += 1
        if blk < nb and block_start[blk] <= t:
            t = float(block_end[blk])
            continue
        if not ready:
            if nxt < n:
                t = pending[nxt][0]
            continue
        j = ready[0][1]
        stop = t + remaining[j]
        cut = False
        if nxt < n and pending[nxt][0] < stop:
            stop = pending[nxt][0]
            cut = True
        if blk < nb and block_start[blk] < stop:
            stop = float(block_start[blk])
            cut = True
        pieces_job.append(j)
        pieces_start.append(t)
        pieces_end.append(stop)
        remaining[j] = remaining[j] - (stop - t) if cut else 0.0
        t = stop
        if remaining[j] <= 0.0:
            heapq.heappop(ready)
            completion[j] = t
            objective = max(objective, t + tail[j])
            done += 1
    return (completion, objective, np.array(pieces_job, dtype=np.int64), np.array(pieces_start),
            np.array(pieces_end))
