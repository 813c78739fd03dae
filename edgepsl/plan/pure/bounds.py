"""Lower bounds on the makespan of any plan (mirrored in csrc/bounds.pxi)."""
from __future__ import annotations

import math

import numpy as np

from edgepsl.plan.pure.chain import bwd_release, chain_of


def lower_bound(
    r: np.ndarray, p: np.ndarray, g: np.ndarray, pb: np.ndarray, q: np.ndarray, mem: np.ndarray, cap: np.ndarray,
    floor: np.ndarray | None = None,
) -> tuple[float, float]:
    """(chain bound, load bound); the makespan of every plan is at least the larger of the two.

    Chain: each client's whole chain r + p + g (at least the floor w) + p' + q' on its best helper that can hold it.
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
            c = chain_of(r, p, g, pb, q, floor, j, i)
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
    wa: np.ndarray, wb: np.ndarray, floor: np.ndarray | None = None,
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
                    m = m + _mandatory(bwd_release(g, floor, j, i, r[j, i] + p[j, i]), pb[j, i], q[j, i], a, b)
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


# Factors tried on one helper's window weight, and steps (in units of its weighted load per MB of capacity) tried
# on its memory multiplier, in each round of the joint bound's coordinate ascent.
WEIGHT_FACTORS = (0.5, 0.8, 1.25, 2.0)
MEMORY_STEPS = (0.01, 0.1, 0.5, 1.0)


def _column(r: np.ndarray, p: np.ndarray, g: np.ndarray, pb: np.ndarray, q: np.ndarray, floor: np.ndarray | None,
            mem: np.ndarray, cap: np.ndarray, i: int, a: float, b: float, lam: float, nu: float, out: list) -> float:
    """Fill out[j] with client j's weighted cost on helper i for window (a, b); return the plain mandatory sum."""
    total = 0.0
    for j in range(len(mem)):
        if mem[j] > cap[i]:
            out[j] = math.inf
            continue
        m = _mandatory(r[j, i], p[j, i], g[j, i] + pb[j, i] + q[j, i], a, b)
        m = m + _mandatory(bwd_release(g, floor, j, i, r[j, i] + p[j, i]), pb[j, i], q[j, i], a, b)
        total += m
        out[j] = lam * m + nu * mem[j]
    return total


def _top2(cost: list, K: int, H: int) -> tuple[list, list, list]:
    """Per client: the smallest cost over the helpers, its helper, and the second smallest."""
    m1, arg, m2 = [math.inf] * K, [0] * K, [math.inf] * K
    for j in range(K):
        for i in range(H):
            c = cost[j][i]
            if c < m1[j]:
                m2[j] = m1[j]
                m1[j] = c
                arg[j] = i
            elif c < m2[j]:
                m2[j] = c
    return m1, arg, m2


def _value(i: int, lam_i: float, nu_i: float, ab_i: float, column: list, m1: list, arg: list, m2: list,
           lam: list, nu: list, ab_sel: list, room: np.ndarray) -> float:
    """The Lagrangian value with helper i's column, weight, multiplier and window replaced by the given ones."""
    total = 0.0
    for j in range(len(column)):
        other = m2[j] if arg[j] == i else m1[j]
        total += column[j] if column[j] < other else other
    head, weight, paid = 0.0, 0.0, 0.0
    for k in range(len(lam)):
        lk = lam_i if k == i else lam[k]
        head += lk * (ab_i if k == i else ab_sel[k])
        weight += lk
        paid += (nu_i if k == i else nu[k]) * room[k]
    return (head + total - paid) / weight


def joint_bound(
    r: np.ndarray, p: np.ndarray, g: np.ndarray, pb: np.ndarray, q: np.ndarray, mem: np.ndarray, cap: np.ndarray,
    room: np.ndarray, ga: np.ndarray, gb: np.ndarray, rounds: int, floor: np.ndarray | None = None,
) -> float:
    """A Lagrangian bound coupling the windows of all helpers and their memory, by coordinate ascent.

    Every helper i has one window (ga[w_i], gb[w_i]) (each with ga + gb at most a proven bound), a weight
    lam_i > 0 and a memory multiplier nu_i >= 0; the value
    (sum_i lam_i (a + b)_{w_i} + sum_j min_i (lam_i m_ji(w_i) + nu_i mem_j) - sum_i nu_i room_i) / sum_i lam_i
    is a lower bound for any such choice (room = capacity with the evaluator's rounding slack). Starting from
    each helper's best window alone and equal weights, `rounds` passes over the helpers try every window, the
    weight factors and the memory steps for one helper at a time and keep each change that raises the value.
    """
    K, H = r.shape
    G = len(ga)
    if G == 0 or rounds <= 0:
        return 0.0
    ab = [float(ga[w]) + float(gb[w]) for w in range(G)]
    col = [0.0] * K
    sel = [0] * H
    for i in range(H):
        best = -1.0
        for w in range(G):
            v = ab[w] + _column(r, p, g, pb, q, floor, mem, cap, i, float(ga[w]), float(gb[w]), 1.0, 0.0, col) / H
            if v > best:
                best = v
                sel[i] = w
    lam = [1.0 / H] * H
    nu = [0.0] * H
    load = [0.0] * H
    cost = [[0.0] * H for _ in range(K)]
    for i in range(H):
        load[i] = _column(r, p, g, pb, q, floor, mem, cap, i, float(ga[sel[i]]), float(gb[sel[i]]), lam[i], nu[i], col)
        for j in range(K):
            cost[j][i] = col[j]
    m1, arg, m2 = _top2(cost, K, H)
    ab_sel = [ab[sel[i]] for i in range(H)]
    current = _value(0, lam[0], nu[0], ab_sel[0], [cost[j][0] for j in range(K)], m1, arg, m2, lam, nu, ab_sel,
                     room)
    nf, ns = len(WEIGHT_FACTORS), len(MEMORY_STEPS)
    for _ in range(rounds):
        for i in range(H):
            for t in range(G + nf + (ns if room[i] > 0 else 0)):
                if t < G:
                    w, lam_i, nu_i = t, lam[i], nu[i]
                elif t < G + nf:
                    w, lam_i, nu_i = sel[i], lam[i] * WEIGHT_FACTORS[t - G], nu[i]
                else:
                    w, lam_i, nu_i = sel[i], lam[i], nu[i] + MEMORY_STEPS[t - G - nf] * lam[i] * load[i] / room[i]
                total = _column(r, p, g, pb, q, floor, mem, cap, i, float(ga[w]), float(gb[w]), lam_i, nu_i, col)
                v = _value(i, lam_i, nu_i, ab[w], col, m1, arg, m2, lam, nu, ab_sel, room)
                if v > current:
                    current = v
                    sel[i], lam[i], nu[i], load[i], ab_sel[i] = w, lam_i, nu_i, total, ab[w]
                    for j in range(K):
                        cost[j][i] = col[j]
                    m1, arg, m2 = _top2(cost, K, H)
    return float(current)
