"""A backward job's release and a client's chain, with the local-loss floor w (mirrored in csrc/instance.pxi)."""
from __future__ import annotations

import numpy as np


def bwd_release(g: np.ndarray, w: np.ndarray | None, j: int, i: int, fwd_end: float) -> float:
    """Release of client j's backward job on helper i after its forward job ended at fwd_end: + g, at least w."""
    rel = fwd_end + g[j, i]
    if w is not None and w[j, i] > rel:
        rel = w[j, i]
    return rel


def chain_of(r: np.ndarray, p: np.ndarray, g: np.ndarray, pb: np.ndarray, q: np.ndarray, w: np.ndarray | None,
          j: int, i: int) -> float:
    """Client j's chain on helper i alone: r + p + g (at least w) + p' + q'."""
    return bwd_release(g, w, j, i, r[j, i] + p[j, i]) + pb[j, i] + q[j, i]
