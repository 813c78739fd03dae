"""Assignment heuristics: the paper's random and balanced-greedy (memory bookkeeping fixed), and greedy-EFT.

Each returns an int64 vector of helper indices; a client that no helper can take any more is marked -1 and
the remaining clients are left at -1 too (the Python policy layer turns that into an InfeasibleError).
"""
from __future__ import annotations

import numpy as np

from edgepsl.plan.pure.chain import chain_of

from edgepsl.plan.pure.rng import SplitMix64


def assign_random(mem: np.ndarray, cap: np.ndarray, seed: int) -> np.ndarray:
    """Visit clients in a seeded random order; put each on a uniformly drawn helper with room for it."""
    K, H = mem.shape[0], cap.shape[0]
    out = np.full(K, -1, dtype=np.int64)
    used = [0.0] * H
    rng = SplitMix64(seed)
    for j in rng.permutation(K):
        feasible = [i for i in range(H) if used[i] + mem[j] <= cap[i]]
        if not feasible:
            return out
        i = feasible[rng.below(len(feasible))]
        out[j] = i
        used[i] += mem[j]
    return out


def assign_balanced_greedy(mem: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Clients in index order; each goes where the spread (max - min) of client counts stays smallest.

    Ties go to the lowest helper index; the spread after adding to helper i is found in O(1) from the
    current max, min, multiplicity of the min and the next value above it.
    """
    K, H = mem.shape[0], cap.shape[0]
    out = np.full(K, -1, dtype=np.int64)
    used = [0.0] * H
    count = [0] * H
    for j in range(K):
        hi, lo = max(count), min(count)
        n_lo = count.count(lo)
        above = [c for c in count if c > lo]
        next_lo = min(above) if above else -1
        best, best_spread = -1, 0
        for i in range(H):
            if used[i] + mem[j] > cap[i]:
                continue
            new_lo = lo
            if count[i] == lo and n_lo == 1:
                new_lo = count[i] + 1 if next_lo < 0 else min(count[i] + 1, next_lo)
            spread = max(hi, count[i] + 1) - new_lo
            if best < 0 or spread < best_spread:
                best, best_spread = i, spread
        if best < 0:
            return out
        out[j] = best
        count[best] += 1
        used[best] += mem[j]
    return out


def assign_greedy_eft(
    r: np.ndarray, p: np.ndarray, g: np.ndarray, pb: np.ndarray, q: np.ndarray, mem: np.ndarray, cap: np.ndarray,
    floor: np.ndarray | None = None,
) -> np.ndarray:
    """Largest work first; each client goes to the helper with the earliest estimated finish.

    A helper's estimate is max(longest chain r+p+g(>=w)+p'+q' of its clients, min release + total work + min tail).
    """
    K, H = r.shape
    out = np.full(K, -1, dtype=np.int64)
    used = [0.0] * H
    work = [0.0] * H
    chain = [0.0] * H
    minr = [0.0] * H
    minq = [0.0] * H
    count = [0] * H
    key = []
    for j in range(K):
        w = -1.0
        for i in range(H):
            if mem[j] <= cap[i] and (w < 0 or p[j, i] + pb[j, i] < w):
                w = p[j, i] + pb[j, i]
        key.append((-w, j))
    key.sort()
    for _, j in key:
        best, best_est, best_work = -1, 0.0, 0.0
        for i in range(H):
            if used[i] + mem[j] > cap[i]:
                continue
            w = p[j, i] + pb[j, i]
            c = chain_of(r, p, g, pb, q, floor, j, i)
            if count[i] > 0:
                c = max(c, chain[i])
                lo = min(minr[i], r[j, i])
                hi = min(minq[i], q[j, i])
            else:
                lo, hi = r[j, i], q[j, i]
            est = max(c, lo + work[i] + w + hi)
            new_work = work[i] + w
            if best < 0 or est < best_est or (est == best_est and new_work < best_work):
                best, best_est, best_work = i, est, new_work
        if best < 0:
            return out
        i = best
        out[j] = i
        c = chain_of(r, p, g, pb, q, floor, j, i)
        if count[i] > 0:
            chain[i] = max(chain[i], c)
            minr[i] = min(minr[i], r[j, i])
            minq[i] = min(minq[i], q[j, i])
        else:
            chain[i], minr[i], minq[i] = c, r[j, i], q[j, i]
        count[i] += 1
        work[i] += p[j, i] + pb[j, i]
        used[i] += mem[j]
    return out
