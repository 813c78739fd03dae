"""Local search over assignment and job order, accepting only strict improvements (mirrored in csrc/search.pxi).

State: each helper's client set, job order and span (latest finish of its clients). Each helper is first
dispatched with the best of the three rules. Then, until no move improves or the work budget is spent:
  A. reorder: swap two adjacent jobs of the critical helper (not a client's own fwd/bwd pair);
  B. move: take a client off the critical helper and put it on another helper with room;
  C. swap: exchange a client of the critical helper with one of another helper that has less work
     or a shorter chain on the critical helper; a swap whose chain or load bound (below) already rules it
     out on either helper is skipped before dispatching (this changes no decision, only the work). With
     relief_swaps, only the clients whose removal alone shortens the critical helper's span (as found in B)
     are swapped out: a client whose jobs do not delay the last one to finish there seldom makes room for
     another client's. Where long chains, not the helpers' work, set the makespan, this skips most of the
     swaps' dispatches (the re-planner uses it; greedy-ls does not, so its plans stay as they were).
A candidate is accepted only if (makespan, sum of spans) decreases lexicographically. Helpers touched by a
move or swap are re-dispatched with the best rule (the critical helper may also keep its current order
minus the moved client). A move target whose load bound (smallest release + total work + smallest tail)
would exceed the makespan is skipped without dispatching it: it could not be accepted. The work budget
counts jobs processed by dispatches and evaluations, so a run is deterministic for a seed and bounded in
time; an optional deadline (monotonic clock) also stops it, at the cost of determinism.

Span memo: a candidate's helper span (the best dispatch of a client set) is looked up first in a memo keyed
by (helper, set), where a set's key is the XOR of fixed random 64-bit words of its clients (Zobrist hashing,
kept up to date as clients move) mixed with the helper's word. A hit costs one work unit; a miss dispatches
and stores the span in a direct-mapped table (one slot per key's low bits, overwritten on collision). Only
an accepted candidate is dispatched again for its job order. The memo outlives a call, so the restarts of
greedy-ls, which revisit mostly the same client sets, share one. Decisions are those without the memo
(barring a 64-bit hash collision); only the work counted shrinks.
"""
from __future__ import annotations

import bisect
import time

import numpy as np

from edgepsl.plan.pure.chain import bwd_release, chain_of
from edgepsl.plan.pure.constants import FWD, RULES
from edgepsl.plan.pure.dispatch import dispatch_helper, members_by_helper
from edgepsl.plan.pure.rng import SplitMix64

Jobs = list[tuple[int, int]]
# Relative slack of the load bounds that subtract a client's work: rounding must never prune a candidate
# the exact evaluation would accept.
BOUND_SLACK = 1e-9
# Seed of the per-client and per-helper words of the span memo's set hashes (fixed, so a memo outlives a call).
ZOBRIST_SEED = 0x5EED5EED
_MASK = (1 << 64) - 1


def new_memo(K: int) -> tuple[np.ndarray, np.ndarray]:
    """An empty span memo for local_search on K clients: (keys uint64, spans float64), a power-of-two size."""
    size = 1 << 12
    while size < 64 * K and size < (1 << 20):
        size <<= 1
    return np.zeros(size, dtype=np.uint64), np.zeros(size, dtype=np.float64)


class _Search:
    """The instance arrays, the budget and the work spent so far."""

    def __init__(self, r, p, g, pb, q, floor, mem, cap, budget, deadline_ns, memo):
        self.r, self.p, self.g, self.pb, self.q, self.floor = r, p, g, pb, q, floor
        self.mem, self.cap = mem, cap
        self.budget = budget
        self.work = 0
        self.deadline_ns = deadline_ns
        self.timed_out = False
        self.memo_keys, self.memo_spans = memo
        self.memo_mask = len(self.memo_keys) - 1
        words = SplitMix64(ZOBRIST_SEED)
        K, H = r.shape
        self.zc = [words.next() for _ in range(K)]
        self.zh = [words.next() for _ in range(H)]

    def set_span(self, h: int, clients: list[int], i: int) -> float:
        """Best-dispatch span of `clients` (set hash h) on helper i, from the memo when it holds it (1 work unit)."""
        key = (h ^ self.zh[i]) or 1
        slot = key & self.memo_mask
        if int(self.memo_keys[slot]) == key:
            self.work += 1
            return float(self.memo_spans[slot])
        span = self.best_dispatch(clients, i)[1]
        self.memo_keys[slot] = key
        self.memo_spans[slot] = span
        return span

    def spent(self) -> bool:
        """True once the work budget is spent or the deadline has passed (the deadline sticks once seen)."""
        if self.work >= self.budget or self.timed_out:
            return True
        if self.deadline_ns > 0 and time.monotonic_ns() >= self.deadline_ns:
            self.timed_out = True
        return self.timed_out

    def best_dispatch(self, clients: list[int], i: int) -> tuple[Jobs, float]:
        """The job order of the rule giving the smallest span of `clients` on helper i, and that span."""
        best_jobs, best_span = [], -1.0
        for rule in RULES:
            jobs, span, steps = dispatch_helper(clients, i, rule, self.r, self.p, self.g, self.pb, self.q, self.floor)
            self.work += steps
            if best_span < 0 or span < best_span:
                best_jobs, best_span = jobs, span
        return best_jobs, best_span

    def stats(self, clients: list[int], i: int) -> tuple[float, float, float]:
        """(total work p + p', smallest release, smallest tail) of `clients` on helper i."""
        work = lo = hi = 0.0
        for n, j in enumerate(clients):
            work += self.p[j, i] + self.pb[j, i]
            if n == 0 or self.r[j, i] < lo:
                lo = self.r[j, i]
            if n == 0 or self.q[j, i] < hi:
                hi = self.q[j, i]
        return work, lo, hi

    def span_of(self, jobs: Jobs, i: int) -> float:
        """Span of helper i running `jobs` in this order."""
        r, p, g, pb, q = self.r, self.p, self.g, self.pb, self.q
        self.work += len(jobs)
        tau = 0.0
        span = 0.0
        fwd_end = {}
        for j, kind in jobs:
            if kind == FWD:
                tau = max(tau, r[j, i]) + p[j, i]
                fwd_end[j] = tau
            else:
                tau = max(tau, bwd_release(g, self.floor, j, i, fwd_end[j])) + pb[j, i]
                span = max(span, tau + q[j, i])
        return span


def _totals(span: list[float], a: int, va: float, b: int, vb: float) -> tuple[float, float]:
    """(max, sum) of the spans with span[a] = va and span[b] = vb, summed in index order."""
    m = 0.0
    s = 0.0
    for i, v in enumerate(span):
        if i == a:
            v = va
        elif i == b:
            v = vb
        m = max(m, v)
        s += v
    return m, s


def local_search(
    assign: np.ndarray, r: np.ndarray, p: np.ndarray, g: np.ndarray, pb: np.ndarray, q: np.ndarray,
    mem: np.ndarray, cap: np.ndarray, seed: int, budget: int, deadline_ns: int = 0,
    memo: tuple[np.ndarray, np.ndarray] | None = None, floor: np.ndarray | None = None, relief_swaps: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Improve a feasible assignment; returns (assign, seq_client, seq_kind, offsets, stats).

    stats = [iterations, reorders, moves, swaps, work, timed out]; deadline_ns > 0 also stops the search at
    that time.monotonic_ns() value. memo, from new_memo, keeps helper spans of client sets across calls on the
    same instance (a fresh one if None). relief_swaps swaps out only the clients whose removal shortens the critical
    helper's span.
    """
    K, H = r.shape
    if memo is None:
        memo = new_memo(K)
    size = len(memo[0])
    if size < 1 or size & (size - 1) or len(memo[1]) != size:
        raise ValueError("memo must be two arrays of the same power-of-two length, as new_memo makes them")
    st = _Search(r, p, g, pb, q, floor, mem, cap, budget, deadline_ns, memo)
    assign = assign.copy()
    members = members_by_helper(assign, H)
    used = [0.0] * H
    for j in range(K):
        used[assign[j]] += mem[j]
    seqs: list[Jobs] = []
    span: list[float] = []
    for i in range(H):
        jobs, s = st.best_dispatch(members[i], i)
        seqs.append(jobs)
        span.append(s)
    hstats = [st.stats(members[i], i) for i in range(H)]
    hsh = [0] * H
    for j in range(K):
        hsh[assign[j]] ^= st.zc[j]
    rng = SplitMix64(seed)
    iterations = reorders = moves = swaps = 0
    while not st.spent():
        iterations += 1
        M, S = _totals(span, -1, 0.0, -1, 0.0)
        c = span.index(M)
        improved = False
        # A. reorder the critical helper's jobs by adjacent swaps.
        jobs = seqs[c]
        for pos in range(len(jobs) - 1):
            if st.spent():
                break
            if jobs[pos][0] == jobs[pos + 1][0]:
                continue
            trial = jobs.copy()
            trial[pos], trial[pos + 1] = trial[pos + 1], trial[pos]
            s = st.span_of(trial, c)
            m2, s2 = _totals(span, c, s, -1, 0.0)
            if m2 < M or (m2 == M and s2 < S):
                seqs[c], span[c] = trial, s
                reorders += 1
                improved = True
                break
        if improved:
            continue
        targets = sorted((span[i], i) for i in range(H) if i != c)
        order = [members[c][k] for k in rng.permutation(len(members[c]))]
        # B. move a client off the critical helper; `relief` keeps those whose removal shortens its span.
        relief = set()
        for j in order:
            if st.spent():
                break
            rest = [k for k in members[c] if k != j]
            kept = [job for job in seqs[c] if job[0] != j]
            wo_span = st.span_of(kept, c)
            d_span = st.set_span(hsh[c] ^ st.zc[j], rest, c)
            use_d = d_span < wo_span
            if use_d:
                wo_span = d_span
            if not wo_span < span[c]:
                continue
            relief.add(j)
            for t_span, i in targets:
                if st.spent():
                    break
                if t_span >= M or used[i] + mem[j] > cap[i]:
                    continue
                if chain_of(r, p, g, pb, q, floor, j, i) > M:
                    continue
                work, lo, hi = hstats[i]
                if members[i]:
                    lo, hi = min(lo, r[j, i]), min(hi, q[j, i])
                else:
                    lo, hi = r[j, i], q[j, i]
                if lo + (work + (p[j, i] + pb[j, i])) + hi > M:
                    continue
                grown = members[i].copy()
                bisect.insort(grown, j)
                in_span = st.set_span(hsh[i] ^ st.zc[j], grown, i)
                if in_span > M:
                    continue
                m2, s2 = _totals(span, c, wo_span, i, in_span)
                if m2 < M or (m2 == M and s2 < S):
                    wo_jobs = st.best_dispatch(rest, c)[0] if use_d else kept
                    in_jobs = st.best_dispatch(grown, i)[0]
                    hsh[c] ^= st.zc[j]
                    hsh[i] ^= st.zc[j]
                    members[c], members[i] = rest, grown
                    seqs[c], seqs[i] = wo_jobs, in_jobs
                    span[c], span[i] = wo_span, in_span
                    used[c] -= mem[j]
                    used[i] += mem[j]
                    assign[j] = i
                    hstats[c], hstats[i] = st.stats(rest, c), st.stats(grown, i)
                    moves += 1
                    improved = True
                    break
            if improved:
                break
        if improved:
            continue
        # C. swap a client of the critical helper with a lighter or shorter-chained client elsewhere.
        for j in order:
            if improved or st.spent():
                break
            if relief_swaps and j not in relief:
                continue
            for t_span, i in targets:
                if improved or st.spent():
                    break
                if t_span >= M:
                    continue
                for k in members[i]:
                    if st.spent():
                        break
                    lighter = p[k, c] + pb[k, c] < p[j, c] + pb[j, c]
                    shorter = (chain_of(r, p, g, pb, q, floor, k, c)
                               < chain_of(r, p, g, pb, q, floor, j, c))
                    if not (lighter or shorter):
                        continue
                    if used[c] - mem[j] + mem[k] > cap[c] or used[i] - mem[k] + mem[j] > cap[i]:
                        continue
                    # Cheap bounds first: k's chain and the load bound of helper c with k for j must stay
                    # below c's span, j's chain and the load bound of helper i with j for k within M.
                    if chain_of(r, p, g, pb, q, floor, k, c) >= span[c]:
                        continue
                    work, lo, hi = hstats[c]
                    lo = lo if lo <= r[k, c] else r[k, c]
                    hi = hi if hi <= q[k, c] else q[k, c]
                    lo = lo + ((work - (p[j, c] + pb[j, c])) + (p[k, c] + pb[k, c])) + hi
                    if lo * (1 - BOUND_SLACK) >= span[c]:
                        continue
                    if chain_of(r, p, g, pb, q, floor, j, i) > M:
                        continue
                    work, lo, hi = hstats[i]
                    lo = lo if lo <= r[j, i] else r[j, i]
                    hi = hi if hi <= q[j, i] else q[j, i]
                    lo = lo + ((work - (p[k, i] + pb[k, i])) + (p[j, i] + pb[j, i])) + hi
                    if lo * (1 - BOUND_SLACK) > M:
                        continue
                    new_c = [x for x in members[c] if x != j]
                    bisect.insort(new_c, k)
                    c_span = st.set_span(hsh[c] ^ st.zc[j] ^ st.zc[k], new_c, c)
                    if not c_span < span[c]:
                        continue
                    new_i = [x for x in members[i] if x != k]
                    bisect.insort(new_i, j)
                    i_span = st.set_span(hsh[i] ^ st.zc[k] ^ st.zc[j], new_i, i)
                    if i_span > M:
                        continue
                    m2, s2 = _totals(span, c, c_span, i, i_span)
                    if m2 < M or (m2 == M and s2 < S):
                        c_jobs = st.best_dispatch(new_c, c)[0]
                        i_jobs = st.best_dispatch(new_i, i)[0]
                        hsh[c] ^= st.zc[j] ^ st.zc[k]
                        hsh[i] ^= st.zc[j] ^ st.zc[k]
                        members[c], members[i] = new_c, new_i
                        seqs[c], seqs[i] = c_jobs, i_jobs
                        span[c], span[i] = c_span, i_span
                        used[c] += mem[k] - mem[j]
                        used[i] += mem[j] - mem[k]
                        assign[j], assign[k] = i, c
                        hstats[c], hstats[i] = st.stats(new_c, c), st.stats(new_i, i)
                        swaps += 1
                        improved = True
                        break
        if not improved:
            break
    seq_client = np.empty(2 * K, dtype=np.int64)
    seq_kind = np.empty(2 * K, dtype=np.int64)
    offsets = np.zeros(H + 1, dtype=np.int64)
    pos = 0
    for i in range(H):
        for j, kind in seqs[i]:
            seq_client[pos], seq_kind[pos] = j, kind
            pos += 1
        offsets[i + 1] = pos
    stats = np.array([iterations, reorders, moves, swaps, st.work, st.timed_out], dtype=np.int64)
    return assign, seq_client, seq_kind, offsets, stats
