"""Evaluate given job orders non-preemptively in continuous time (mirrored in csrc/evaluate.pxi).

Each helper runs its sequence in order: a job starts at max(helper free, job release); a forward job is
released at r, a backward job at its forward end + g (at least the floor w, local loss). The caller guarantees a
valid structure (edgepsl.plan.evaluate checks it first).
"""
from __future__ import annotations

import numpy as np

from edgepsl.plan.pure.chain import bwd_release
from edgepsl.plan.pure.constants import FWD


def evaluate(
    assign: np.ndarray, seq_client: np.ndarray, seq_kind: np.ndarray, offsets: np.ndarray,
    r: np.ndarray, p: np.ndarray, g: np.ndarray, pb: np.ndarray, q: np.ndarray, floor: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Start and end of every client's forward and backward job, and each client's finish time."""
    K, H = r.shape
    fwd_start = np.zeros(K)
    fwd_end = np.zeros(K)
    bwd_start = np.zeros(K)
    bwd_end = np.zeros(K)
    finish = np.zeros(K)
    for i in range(H):
        tau = 0.0
        for k in range(offsets[i], offsets[i + 1]):
            j = int(seq_client[k])
            if seq_kind[k] == FWD:
                start = max(tau, r[j, i])
                tau = start + p[j, i]
                fwd_start[j], fwd_end[j] = start, tau
            else:
                start = max(tau, bwd_release(g, floor, j, i, fwd_end[j]))
                tau = start + pb[j, i]
                bwd_start[j], bwd_end[j] = start, tau
                finish[j] = tau + q[j, i]
    return fwd_start, fwd_end, bwd_start, bwd_end, finish
