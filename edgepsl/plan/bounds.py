"""Lower bounds on the makespan, so every plan reports its optimality gap (docs/planning.md, "Lower bounds").

Three bounds come from the compiled core on every plan: chain (one client alone), load (average helper work)
and window (energetic reasoning per helper over windows [a, C - b], with a pigeonhole argument over the
assignment). `lp_bound` adds the linear relaxation that couples all windows, the assignment and helper memory;
it is solved by HiGHS (the `solvers` extra) and certified from HiGHS's duals, so its value is valid whatever
HiGHS's tolerances.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgepsl.plan.backend import kernel_arrays, kernel_floor, kernels
from edgepsl.plan.evaluate import MEMORY_RTOL
from edgepsl.plan.instance import Instance

# Work budget of the window bound in (client, helper, window) cells; the window grid shrinks to fit it.
WINDOW_WORK = 4_000_000
# Largest window grid (release values x tail values) and the ratio of release to tail values in it.
MAX_WINDOWS, RELEASE_PER_TAIL = 768, 4
# The window and LP bounds add and weigh many floats in another order than the evaluator does; they are rounded
# down by this relative margin so that rounding never puts them above the makespan of an optimal plan.
ROUNDING_MARGIN = 1e-12
# The joint bound's coordinate ascent: passes over the helpers, largest window grid, and work budget in
# (client, helper, window, pass) cells; it is skipped where even a small grid does not fit (K H above 200,000).
JOINT_ROUNDS, JOINT_WINDOWS, JOINT_WORK = 4, 144, 4_000_000
# The linear relaxation's window grid (release values x tail values); its rows are H times as many.
LP_RELEASES, LP_TAILS = 48, 12


@dataclass(frozen=True)
class LowerBound:
    """The chain, load, window, joint and (when computed) LP bounds (ms); `value` is the largest, valid for every
    plan. A hybrid bound (edgepsl.plan.hybrid) holds its minimising threshold T in `local` and the split bounds
    of that threshold's split clients in the others."""

    chain: float
    load: float
    window: float = 0.0
    joint: float = 0.0
    lp: float | None = None
    local: float = 0.0

    @property
    def value(self) -> float:
        """The best of the bounds."""
        return max(self.chain, self.load, self.window, self.joint, self.lp or 0.0, self.local)

    def gap(self, makespan: float) -> float:
        """Relative gap of a makespan above this bound (0.05 = 5 %)."""
        return (makespan - self.value) / self.value if self.value > 0 else 0.0


def window_grid(instance: Instance, releases: int, tails: int) -> tuple[np.ndarray, np.ndarray]:
    """Window starts a and tail lengths b: quantiles of the clients' earliest job releases (forward r, backward
    r + p + g, at least the local-loss floor w) and of their shortest job tails (forward g + p' + q', backward q'),
    over the helpers that fit them."""
    r, p, g, pb, q = kernel_arrays(instance)
    fits = instance.fits
    everywhere = bool(fits.all())

    def least(values: np.ndarray) -> np.ndarray:
        return (values if everywhere else np.where(fits, values, np.inf)).min(axis=1)

    rel = np.concatenate([least(r), least(backward_release(instance))])
    tl = np.concatenate([least(g + pb + q), least(q)])
    a = np.unique(np.quantile(rel, np.linspace(0.0, 1.0, releases), method="lower"))
    b = np.unique(np.quantile(tl, np.linspace(0.0, 1.0, tails), method="lower"))
    return np.ascontiguousarray(a), np.ascontiguousarray(b)


def backward_release(instance: Instance) -> np.ndarray:
    """K x H: the earliest release of each client's backward job on each helper, r + p + g or the floor w."""
    r, p, g, _, _ = kernel_arrays(instance)
    floor = kernel_floor(instance)
    return r + p + g if floor is None else np.maximum(r + p + g, floor)


def window_grid_size(K: int, H: int) -> tuple[int, int]:
    """(release values, tail values) of the window grid within the work budget WINDOW_WORK."""
    pairs = max(RELEASE_PER_TAIL, min(MAX_WINDOWS, WINDOW_WORK // (K * H)))
    tails = max(1, int(math.sqrt(pairs / RELEASE_PER_TAIL)))
    return pairs // tails, tails


def window_pairs(instance: Instance, releases: int, tails: int, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """The windows (a, b) of a releases x tails grid with a + b <= floor, as two flat arrays (a-major)."""
    wa, wb = window_grid(instance, releases, tails)
    a, b = (grid.ravel() for grid in np.meshgrid(wa, wb, indexing="ij"))
    keep = a + b <= floor
    return np.ascontiguousarray(a[keep]), np.ascontiguousarray(b[keep])


def joint_grid_size(K: int, H: int) -> tuple[int, int]:
    """(release values, tail values) of the joint bound's grid within JOINT_WORK; (0, 0) where none fits."""
    pairs = min(JOINT_WINDOWS, JOINT_WORK // (K * H * (JOINT_ROUNDS + 1)) - 8)
    if pairs < RELEASE_PER_TAIL:
        return 0, 0
    tails = max(1, int(math.sqrt(pairs / RELEASE_PER_TAIL)))
    return pairs // tails, tails


def lower_bound(instance: Instance) -> LowerBound:
    """Chain, load, window and joint bounds from the compiled core (cheap: every plan reports them)."""
    arrays, w = kernel_arrays(instance), kernel_floor(instance)
    chain, load = kernels.lower_bound(*arrays, instance.mem, instance.cap, floor=w)
    wa, wb = window_grid(instance, *window_grid_size(instance.K, instance.H))
    window = kernels.window_bound(*arrays, instance.mem, instance.cap, wa, wb, floor=w).value * (1 - ROUNDING_MARGIN)
    floor = max(float(chain), float(load), window)
    releases, tails = joint_grid_size(instance.K, instance.H)
    joint = 0.0
    if releases:
        ga, gb = window_pairs(instance, releases, tails, floor)
        room = instance.cap * (1 + MEMORY_RTOL)
        joint = kernels.joint_bound(*arrays, instance.mem, instance.cap, room, ga, gb, JOINT_ROUNDS, floor=w)
    return LowerBound(float(chain), float(load), float(window), float(joint) * (1 - ROUNDING_MARGIN))


def mandatory_work(instance: Instance, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """G x K x H: the work of client j's two jobs on helper i that must fall inside window g, [a_g, C - b_g]."""
    r, p, g, pb, q = kernel_arrays(instance)
    a, b = a[:, None, None], b[:, None, None]

    def must(release: np.ndarray, proc: np.ndarray, tail: np.ndarray) -> np.ndarray:
        return np.maximum(0.0, proc - np.maximum(0.0, a - release) - np.maximum(0.0, b - tail))

    return np.where(instance.fits, must(r, p, g + pb + q) + must(backward_release(instance), pb, q), 0.0)


def lagrangian_bound(instance: Instance, ab: np.ndarray, work: np.ndarray, mu: np.ndarray, nu: np.ndarray) -> float:
    """The bound certified by multipliers mu >= 0 (G x H, windows) and nu >= 0 (H, memory); 0 if mu is all zero.

    For the best plan (makespan C >= every a_g + b_g) and each helper i and window g, C >= a_g + b_g + W_ig, W_ig
    the mandatory work of i's clients in window g; and every helper's memory load is at most its capacity.
    Weighting these by mu and nu and letting each client pick its cheapest helper gives
    C * sum(mu) >= sum(mu * (a + b)) + sum_j min_i (sum_g mu_ig m_jig + nu_i mem_j) - sum_i nu_i cap_i.
    """
    total = float(mu.sum())
    if not total > 0:
        return 0.0
    cost = np.einsum("gh,gkh->kh", mu, work) + nu[None, :] * instance.mem[:, None]
    cost = np.where(instance.fits, cost, np.inf).min(axis=1)
    cap = instance.cap * (1 + MEMORY_RTOL)
    return (float((mu * ab[:, None]).sum()) + float(cost.sum()) - float(nu @ cap)) / total


def lp_bound(instance: Instance, floor: float, threads: int = 1) -> float:
    """The linear relaxation over all windows at once, the fractional assignment and helper memory, on HiGHS.

    Minimise C over x_ji >= 0 (client j's share on helper i, summing to 1 per client) subject to
    C >= a_g + b_g + sum_j m_jig x_ji for every helper i and window g with a_g + b_g <= floor (a proven bound, so
    that these rows hold for the best plan), and sum_j mem_j x_ji <= cap_i. The value returned is certified by
    `lagrangian_bound` from HiGHS's row duals, so it is valid whatever the solver's tolerances; never below 0.
    """
    from edgepsl.plan.highs import highs_module

    highspy = highs_module()
    a, b = window_pairs(instance, LP_RELEASES, LP_TAILS, floor)
    ab = a + b
    work = mandatory_work(instance, a, b)
    K, H = instance.K, instance.H
    fits = instance.fits
    col = np.full((K, H), -1, dtype=np.int64)
    col[fits] = np.arange(int(fits.sum()))
    n = int(fits.sum()) + 1   # the x_ji, then C
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", int(threads))
    h.setOptionValue("random_seed", 0)
    h.addVars(n, np.zeros(n), np.full(n, highspy.kHighsInf))
    h.changeColsCost(1, np.array([n - 1], dtype=np.int32), np.array([1.0]))
    rows = []   # (lower, upper, columns, values)
    for j in range(K):
        rows.append((1.0, 1.0, col[j, fits[j]], np.ones(int(fits[j].sum()))))
    window_rows = []
    for g in range(len(ab)):
        for i in range(H):
            js = np.flatnonzero(work[g, :, i] > 0)
            if js.size:
                window_rows.append((g, i))
                rows.append((float(ab[g]), highspy.kHighsInf, np.append(col[js, i], n - 1),
                             np.append(-work[g, js, i], 1.0)))
    memory_rows = []
    for i in range(H):
        js = np.flatnonzero(fits[:, i])
        if float(instance.mem[js].sum()) > instance.cap[i]:
            memory_rows.append(i)
            rows.append((-highspy.kHighsInf, float(instance.cap[i]), col[js, i], instance.mem[js]))
    starts = np.cumsum([0] + [len(c) for _, _, c, _ in rows[:-1]]).astype(np.int32)
    h.addRows(len(rows), np.array([lo for lo, _, _, _ in rows]), np.array([hi for _, hi, _, _ in rows]),
              int(sum(len(c) for _, _, c, _ in rows)), starts,
              np.concatenate([c for _, _, c, _ in rows]).astype(np.int32),
              np.concatenate([v for _, _, _, v in rows]).astype(np.float64))
    h.run()
    dual = np.array(h.getSolution().row_dual)
    mu = np.zeros((len(ab), H))
    for row, (g, i) in enumerate(window_rows, start=K):
        mu[g, i] = max(dual[row], 0.0)
    nu = np.zeros(H)
    for row, i in enumerate(memory_rows, start=K + len(window_rows)):
        nu[i] = max(-dual[row], 0.0)
    return max(0.0, lagrangian_bound(instance, ab, work, mu, nu) * (1 - ROUNDING_MARGIN))
