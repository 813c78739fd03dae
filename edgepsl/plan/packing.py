"""Memory packing: an assignment that fits every helper's memory whenever one exists, or a proof that none does.

The planners' starting heuristics place clients greedily and can fail on tight memory although a valid
assignment exists (memory 2, 2, 2, 3 MB on helpers of 6 and 3 MB: first-fit puts the 3 MB client on the
6 MB helper). This module decides the bin-packing question exactly:
  1. the total memory of the clients exceeds the total capacity: proved infeasible;
  2. a depth-first branch and bound over clients by decreasing memory, each onto a helper with room, tightest
     fit first (its first descent is best-fit-decreasing; later descents are the repairs). Helpers with equal
     free memory are interchangeable, so only one of them is tried; a node is cut when the clients left need
     more than the free memory of the helpers that can still take the smallest of them. A search that ends
     without a packing proves there is none; one that reaches its node limit proves nothing, and then
  3. HiGHS decides the feasibility model of the MILP (the `solvers` extra), within a time limit.
"""
from __future__ import annotations

import numpy as np

from edgepsl.plan.errors import InfeasibleError
from edgepsl.plan.instance import Instance

# Nodes (placements) of the branch and bound before it hands the question to HiGHS.
NODE_LIMIT = 200_000
# Seconds HiGHS may take to decide the feasibility model.
HIGHS_SECONDS = 10.0


class NoFeasibleAssignmentError(InfeasibleError):
    """No assignment of clients to helpers fits the helpers' memory, and this was proved."""


def _candidates(free: list[float], size: float) -> list[int]:
    """Helpers with room for `size`, tightest first (ties by index), one per distinct free memory."""
    room = sorted((f, i) for i, f in enumerate(free) if size <= f)
    out, last = [], None
    for f, i in room:
        if f != last:
            out.append(i)
            last = f
    return out


def branch_and_bound(mem: np.ndarray, cap: np.ndarray, node_limit: int = NODE_LIMIT) -> tuple[np.ndarray | None, bool]:
    """(assignment, True) if one fits; (None, True) if none fits (proved); (None, False) at the node limit."""
    K = len(mem)
    order = [int(j) for j in np.argsort(-mem, kind="stable")]
    size = [float(mem[j]) for j in order]
    need = [0.0] * (K + 1)
    for t in range(K - 1, -1, -1):
        need[t] = need[t + 1] + size[t]
    free = [float(c) for c in cap]
    choice = [0] * K
    cands: list[list[int]] = [[] for _ in range(K)]
    pos = [0] * K
    cands[0] = _candidates(free, size[0])
    t = nodes = 0
    while t >= 0:
        if pos[t] > 0:
            free[choice[t]] += size[t]
        if pos[t] == len(cands[t]):
            t -= 1
            continue
        i = cands[t][pos[t]]
        pos[t] += 1
        free[i] -= size[t]
        choice[t] = i
        nodes += 1
        t += 1
        if t == K:
            out = np.empty(K, dtype=np.int64)
            out[order] = choice
            return out, True
        if nodes >= node_limit:
            return None, False
        smallest = size[K - 1]
        pos[t] = 0
        if need[t] > sum(f for f in free if f >= smallest):
            cands[t] = []
        else:
            cands[t] = _candidates(free, size[t])
    return None, True


def _highs_feasible(instance: Instance, time_limit: float) -> tuple[np.ndarray | None, bool]:
    """The MILP's assignment model on HiGHS with no objective: (assignment, True), (None, True) or (None, False)."""
    from edgepsl.plan.highs import SolverFailedError, add_assignment, highs_module, new_model, run

    highspy = highs_module()
    h = new_model(time_limit, 1, False)
    y = add_assignment(h, instance)
    try:
        return run(h, "assignment within helper memory").assignment(y, instance.K), True
    except SolverFailedError:
        return None, h.getModelStatus() == highspy.HighsModelStatus.kInfeasible


def memory_feasible_assignment(instance: Instance, node_limit: int = NODE_LIMIT,
                               time_limit: float = HIGHS_SECONDS) -> np.ndarray:
    """An assignment within every helper's memory; NoFeasibleAssignmentError when none exists (proved).

    InfeasibleError (not proved) only when both the branch and bound's node limit and HiGHS's time limit
    are reached, or HiGHS is not installed after the branch and bound gave up.
    """
    mem, cap = instance.mem, instance.cap
    total, room = float(mem.sum()), float(cap.sum())
    if total > room:
        raise NoFeasibleAssignmentError(
            f"the clients need {total:g} MB of helper memory and the helpers have {room:g} MB in all, so no "
            "assignment fits (proved); add helper memory or remove clients"
        )
    found, decided = branch_and_bound(mem, cap, node_limit)
    if decided and found is None:
        raise NoFeasibleAssignmentError(
            f"no assignment fits the clients' memory ({total:g} MB) into the helpers' capacities "
            f"({', '.join(f'{c:g}' for c in cap)} MB), proved by exhaustive branch and bound; add helper memory "
            "or remove clients"
        )
    if found is not None:
        return found
    from edgepsl.plan.highs import SolverUnavailableError

    try:
        found, decided = _highs_feasible(instance, time_limit)
    except SolverUnavailableError:
        raise InfeasibleError(
            f"no memory-feasible assignment found in {node_limit} branch-and-bound nodes, and none ruled out; "
            "install the 'solvers' extra (HiGHS) to decide it exactly, or add helper memory"
        ) from None
    if found is not None:
        return found
    if decided:
        raise NoFeasibleAssignmentError(
            "no assignment fits every client within the helpers' memory capacities (proved by HiGHS); add helper "
            "memory or remove clients"
        )
    raise InfeasibleError(
        f"no memory-feasible assignment found in {node_limit} branch-and-bound nodes nor by HiGHS in "
        f"{time_limit:g} s, and none ruled out; add helper memory"
    )
