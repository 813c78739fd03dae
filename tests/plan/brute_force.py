"""Brute-force optima for tiny instances: every assignment and every valid job sequence per helper (test oracle)."""
from __future__ import annotations

import itertools

import numpy as np


def helper_best_span(inst, clients, i) -> float:
    """Smallest span of `clients` on helper i over every valid job sequence (brute force)."""
    jobs = [(j, k) for j in clients for k in (0, 1)]
    best = None
    for seq in itertools.permutations(jobs):
        seen, tau, fwd_end, span, valid = set(), 0.0, {}, 0.0, True
        for j, k in seq:
            if k == 0:
                seen.add(j)
                tau = max(tau, inst.r[j, i]) + inst.p[j, i]
                fwd_end[j] = tau
            elif j not in seen:
                valid = False
                break
            else:
                tau = max(tau, fwd_end[j] + inst.gap[j, i]) + inst.p_bwd[j, i]
                span = max(span, tau + inst.tail[j, i])
        if valid and (best is None or span < best):
            best = span
    return 0.0 if best is None else best


def brute_force_optimum(inst) -> float:
    """The optimal makespan over every assignment within memory and every valid job sequence per helper."""
    best = None
    for a in itertools.product(range(inst.H), repeat=inst.K):
        a = np.array(a)
        if (np.bincount(a, weights=inst.mem, minlength=inst.H) > inst.cap).any():
            continue
        value = max(helper_best_span(inst, [j for j in range(inst.K) if a[j] == i], i) for i in range(inst.H))
        best = value if best is None else min(best, value)
    return best
