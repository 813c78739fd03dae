"""Lower bounds on the makespan of any plan (mirrored in csrc/bounds.pxi)."""
from __future__ import annotations

import numpy as np


def lower_bound(
    r: np.ndarray, p: np.ndarray, g: np.ndarray, pb: np.ndarray, q: np.ndarray, mem: np.ndarray, cap: np.ndarray
) -> tuple[float, float]:
    """(chain bound, load bound); the makespan of every plan is at least the larger of the two.

    Chain: each client's whole chain r + p + g + p' + q' on its best helper that can hold it.
    Load: for any weights lambda on the simplex, the busiest helper carries at least
    sum_j min_i lambda_i * (p + p')_ji; it starts no earlier than the smallest release and its last
    (backward) job is followed by at least the smallest tail. Two weightings are used: uniform, and
    lambda_i proportional to 1 / (helper i's mean work), which is exact for helpers that differ by speed.
    """
    K, H = r.shape
    chain = 0.0
    total = 0.0
    min_r = -1.0
    min_q = -1.0
    for j in range(K):
        best_chain = -1.0
        best_work = -1.0
        for i in range(H):
            if mem[j] > cap[i]:
                continue
            c = r[j, i] + p[j, i] + g[j, i] + pb[j, i] + q[j, i]
            w = p[j, i] + pb[j, i]
            if best_chain < 0 or c < best_chain:
                best_chain = c
            if best_work < 0 or w < best_work:
                best_work = w
            if min_r < 0 or r[j, i] < min_r:
                min_r = r[j, i]
            if min_q < 0 or q[j, i] < min_q:
                min_q = q[j, i]
        chain = max(chain, best_chain)
        total += best_work
    load = total / H
    mean = [0.0] * H
    for j in range(K):
        for i in range(H):
            mean[i] += p[j, i] + pb[j, i]
    if all(m > 0 for m in mean):
        inv = [1.0 / (m / K) for m in mean]
        tot = 0.0
        for v in inv:
            tot += v
        lam = [v / tot for v in inv]
        weighted = 0.0
        for j in range(K):
            best = -1.0
            for i in range(H):
                if mem[j] > cap[i]:
                    continue
                v = lam[i] * (p[j, i] + pb[j, i])
                if best < 0 or v < best:
                    best = v
            weighted += best
        load = max(load, weighted)
    return chain, min_r + load + min_q


def _mandatory(release: float, proc: float, tail: float, a: float, b: float) -> float:
    """Work of a job that must fall inside the window [a, C - b] of any schedule ending by C (energetic reasoning)."""
    early = a - release
    late = b - tail
    w = proc
    if early > 0:
        w -= early
    if late > 0:
        w -= late
    return w if w > 0 else 0.0


def window_bound(
    r: np.ndarray, p: np.ndarray, g: np.ndarray, pb: np.ndarray, q: np.ndarray, mem: np.ndarray, cap: np.ndarray,
    wa: np.ndarray, wb: np.ndarray,
) -> tuple[float, float, float]:
    """(bound, a, b): max over windows [a, C - b] of a + b + the pigeonhole load of the work that must fall inside.

    A client's forward job (release r, work p, tail g + p' + q') and backward job (release r + p + g, work p',
    tail q') on helper i put at least their mandatory work m_j(a, b) inside the window; v_j is its smallest
    value over the helpers that fit j. If any v_j > 0, some helper has positive mandatory work, so C >= a + b +
    its load; the t largest v_j put ceil(t / H) of them on one helper, whose load is at least the sum of the
    ceil(t / H) smallest of those t values.
    """
    K, H = r.shape
    best = (0.0, 0.0, 0.0)
    for a in wa:
        a = float(a)
        for b in wb:
            b = float(b)
            v = []
            for j in range(K):
                best_i = -1.0
                for i in range(H):
                    if mem[j] > cap[i]:
                        continue
                    m = _mandatory(r[j, i], p[j, i], g[j, i] + pb[j, i] + q[j, i], a, b)
                    m = m + _mandatory(r[j, i] + p[j, i] + g[j, i], pb[j, i], q[j, i], a, b)
                    if best_i < 0 or m < best_i:
                        best_i = m
                if best_i > 0:
                    v.append(best_i)
            if not v:
                continue
            v.sort(reverse=True)
            prefix = [0.0]
            for x in v:
                prefix.append(prefix[-1] + x)
            w = 0.0
            for t in range(1, len(v) + 1):
                n = (t + H - 1) // H
                if prefix[t] - prefix[t - n] > w:
                    w = prefix[t] - prefix[t - n]
            if a + b + w > best[0]:
                best = (float(a + b + w), a, b)
    return best
