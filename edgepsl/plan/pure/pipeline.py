"""Micro-batch pipelining on one helper: run or choose the order of its micro-batch jobs (mirrored in
csrc/pipeline.pxi; the model is docs/planning.md, "Micro-batch pipelining").

A client with N = 1 is today's chain: forward job released at r, backward job at its forward end + g, finish at
the backward end + q. A client with N > 1 runs N micro-batch chains through four resources of its own (its CPU,
its uplink, its downlink) and its helper, with per-micro-batch stage times st[j, i, stage]:

* CPU: the N part-1 forwards back to back from 0, then each micro-batch's part-3 (forward, loss, backward) in
  micro-batch order as its activations arrive, then the N part-1 backwards in order as their gradients arrive;
* uplink: the N activation uploads in order, then the N gradient uploads in order;
* downlink: the helper's outputs for this client in the order the helper finishes them;
* helper: its jobs in the given order (or chosen by a rule), micro-batch k's forward before its backward.
"""
from __future__ import annotations

import numpy as np

from edgepsl.plan.pure.constants import BWD, FWD

# Stage columns of st (per micro-batch ms): client part-1 fwd, upload act, helper fwd, download act,
# client part-3 fwd+loss+bwd, upload grad, helper bwd, download grad, client part-1 bwd.
ST_A1, ST_U1, ST_HF, ST_D2, ST_M, ST_U2, ST_HB, ST_D1, ST_B1 = range(9)
STAGES = 9
PIPE_FCFS = 0   # smallest release first, idling for it; ties: backward first, then client position
PIPE_WORK = 1   # never idle while a job is released: largest remaining helper work of its client first; ties as FCFS
PIPE_RULES = (PIPE_FCFS, PIPE_WORK)


class _Client:
    """One client's pipeline state on its helper."""

    __slots__ = ("j", "n", "nf", "nb", "relf", "relb", "dn1", "cpu", "up", "down", "finish")

    def __init__(self, j: int, i: int, n: int, r: np.ndarray, st: np.ndarray) -> None:
        self.j, self.n, self.nf, self.nb = j, n, 0, 0
        self.relb = [0.0] * n
        self.dn1 = [0.0] * n
        self.cpu = self.up = self.down = self.finish = 0.0
        if n == 1:
            self.relf = [float(r[j, i])]
            return
        self.relf = [0.0] * n
        f1 = 0.0
        for k in range(n):
            f1 += st[j, i, ST_A1]
            self.up = max(f1, self.up) + st[j, i, ST_U1]
            self.relf[k] = self.up
        self.cpu = f1

    def release(self, kind: int) -> float:
        return self.relf[self.nf] if kind == FWD else self.relb[self.nb]

    def done(self, kind: int, end: float, i: int, g: np.ndarray, q: np.ndarray, st: np.ndarray) -> None:
        j = self.j
        if kind == FWD:
            k = self.nf
            self.nf += 1
            if self.n == 1:
                self.relb[0] = end + g[j, i]
                return
            self.down = max(end, self.down) + st[j, i, ST_D2]
            self.cpu = max(self.down, self.cpu) + st[j, i, ST_M]
            self.up = max(self.cpu, self.up) + st[j, i, ST_U2]
            self.relb[k] = self.up
            return
        k = self.nb
        self.nb += 1
        if self.n == 1:
            self.finish = end + q[j, i]
            return
        self.down = max(end, self.down) + st[j, i, ST_D1]
        self.dn1[k] = self.down
        if self.nb == self.n:
            c = self.cpu
            for m in range(self.n):
                c = max(c, self.dn1[m]) + st[j, i, ST_B1]
            self.finish = c


def run_helper(i: int, clients: list[int], micro: np.ndarray, rule: int, r: np.ndarray, g: np.ndarray,
               q: np.ndarray, st: np.ndarray, order: list[tuple[int, int]] | None = None
               ) -> tuple[list[tuple[int, int]], list[float], list[float], dict[int, float], float]:
    """Run helper i's micro-batch jobs in `order` (client, kind), or choose them by `rule` when order is None;
    returns (jobs, starts, ends, finish per client, span)."""
    state = {j: _Client(j, i, int(micro[j]), r, st) for j in clients}
    total = 2 * sum(int(micro[j]) for j in clients)
    jobs: list[tuple[int, int]] = []
    starts: list[float] = []
    ends: list[float] = []
    tau = 0.0
    for step in range(total):
        if order is not None:
            j, kind = order[step]
        else:
            j, kind = _choose(clients, state, rule, tau, i, st)
        c = state[j]
        start = max(tau, c.release(kind))
        tau = start + st[j, i, ST_HF if kind == FWD else ST_HB]
        c.done(kind, tau, i, g, q, st)
        jobs.append((j, kind))
        starts.append(start)
        ends.append(tau)
    finish = {j: state[j].finish for j in clients}
    return jobs, starts, ends, finish, max(finish.values(), default=0.0)


def _choose(clients: list[int], state: dict, rule: int, tau: float, i: int, st: np.ndarray) -> tuple[int, int]:
    best, best_key = (-1, -1), None
    earliest = None
    for pos, j in enumerate(clients):
        c = state[j]
        for kind in (BWD, FWD):
            if (kind == FWD and c.nf >= c.n) or (kind == BWD and c.nb >= c.nf):
                continue
            rel = c.release(kind)
            if earliest is None or rel < earliest:
                earliest = rel
            if rule == PIPE_FCFS:
                key = (rel, 1 - kind, pos)
            else:
                if rel > tau:
                    continue
                work = (c.n - c.nf) * st[j, i, ST_HF] + (c.n - c.nb) * st[j, i, ST_HB]
                key = (-work, 1 - kind, pos)
            if best_key is None or key < best_key:
                best, best_key = (j, kind), key
    if best_key is None:  # PIPE_WORK with nothing released: wait for the earliest release
        return _choose(clients, state, rule, earliest, i, st)
    return best


def pipe_span(clients: np.ndarray, i: int, rule: int, micro: np.ndarray, r: np.ndarray, g: np.ndarray,
              q: np.ndarray, st: np.ndarray) -> float:
    """The latest finish of `clients` on helper i with their jobs chosen by `rule` (0.0 for no clients)."""
    return run_helper(i, [int(j) for j in clients], micro, rule, r, g, q, st)[4]


def pipe_dispatch(assign: np.ndarray, rule: int, micro: np.ndarray, r: np.ndarray, g: np.ndarray, q: np.ndarray,
                  st: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every helper's micro-batch job order under a rule, flat (seq_client, seq_kind, offsets), and its span."""
    K, H = r.shape
    total = int(2 * micro[assign >= 0].sum())
    seq_client = np.empty(total, dtype=np.int64)
    seq_kind = np.empty(total, dtype=np.int64)
    offsets = np.zeros(H + 1, dtype=np.int64)
    span = np.zeros(H)
    pos = 0
    for i in range(H):
        clients = [j for j in range(K) if assign[j] == i]
        jobs, _, _, _, span[i] = run_helper(i, clients, micro, rule, r, g, q, st)
        for j, kind in jobs:
            seq_client[pos], seq_kind[pos] = j, kind
            pos += 1
        offsets[i + 1] = pos
    return seq_client, seq_kind, offsets, span


def pipe_evaluate(assign: np.ndarray, seq_client: np.ndarray, seq_kind: np.ndarray, offsets: np.ndarray,
                  micro: np.ndarray, r: np.ndarray, g: np.ndarray, q: np.ndarray, st: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start and end of every job (flat, in plan order) and every client's finish, for valid job orders."""
    K, H = r.shape
    start = np.zeros(len(seq_client))
    end = np.zeros(len(seq_client))
    finish = np.zeros(K)
    for i in range(H):
        lo, hi = int(offsets[i]), int(offsets[i + 1])
        clients = [j for j in range(K) if assign[j] == i]
        order = [(int(seq_client[k]), int(seq_kind[k])) for k in range(lo, hi)]
        _, s, e, fin, _ = run_helper(i, clients, micro, 0, r, g, q, st, order)
        start[lo:hi], end[lo:hi] = s, e
        for j, v in fin.items():
            finish[j] = v
    return start, end, finish
