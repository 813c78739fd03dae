"""HiGHS plumbing shared by the exact planners: import, options, the assignment model part, results."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgepsl.errors import EdgePSLError
from edgepsl.plan.instance import Instance
from edgepsl.plan.schedule import LOCAL


class SolverUnavailableError(EdgePSLError):
    """The MILP solver HiGHS (Python package highspy) is not installed."""


class SolverFailedError(EdgePSLError):
    """HiGHS stopped without any feasible solution (for example a time limit hit before the first incumbent)."""


def highs_module() -> Any:
    """The highspy module, or SolverUnavailableError naming the extra that installs it."""
    try:
        import highspy
    except ImportError:
        raise SolverUnavailableError(
            "the exact planner needs HiGHS: pip install 'edgepsl[solvers]' (the highspy package)"
        ) from None
    return highspy


def new_model(time_limit: float, threads: int, verbose: bool) -> Any:
    """A HiGHS model with the time limit, thread count, fixed seed and logging set."""
    h = highs_module().Highs()
    h.setOptionValue("output_flag", bool(verbose))
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("threads", int(threads))
    h.setOptionValue("random_seed", 0)
    return h


def add_assignment(h: Any, instance: Instance, local: dict[int, Any] | None = None) -> dict[tuple[int, int], Any]:
    """Binaries y[j, i] for each helper that fits client j, one helper per client, helper memory respected; with
    `local` (client -> its local-mode binary), a client takes one helper or local mode."""
    K, H, fits = instance.K, instance.H, instance.fits
    local = local or {}
    y = {(j, i): h.addBinary() for j in range(K) for i in range(H) if fits[j, i]}
    for j in range(K):
        h.addConstr(sum(y[j, i] for i in range(H) if fits[j, i]) + (local[j] if j in local else 0) == 1)
    for i in range(H):
        members = [j for j in range(K) if fits[j, i]]
        if float(instance.mem[members].sum()) > instance.cap[i]:
            h.addConstr(sum(float(instance.mem[j]) * y[j, i] for j in members) <= float(instance.cap[i]))
    return y


@dataclass(frozen=True)
class SolveOutcome:
    """What HiGHS ended with: status text, proven optimality, objective, dual bound, gap and column values."""

    status: str
    optimal: bool
    objective: float
    dual_bound: float
    mip_gap: float
    values: np.ndarray

    def assignment(self, y: dict[tuple[int, int], Any], K: int, local: dict[int, Any] | None = None) -> np.ndarray:
        """Each client's helper: the y[j, i] set in the solution, or LOCAL where its local-mode binary is set."""
        best = {j: LOCAL for j, var in (local or {}).items() if self.values[var.index] > 0.5}
        for (j, i), var in y.items():
            if j not in best or (best[j] != LOCAL and self.values[var.index] > self.values[y[j, best[j]].index]):
                best[j] = i
        return np.array([best[j] for j in range(K)], dtype=np.int64)


def run(h: Any, what: str) -> SolveOutcome:
    """Minimise, then return the outcome; SolverFailedError when HiGHS has no feasible solution."""
    highspy = highs_module()
    h.changeObjectiveSense(highspy.ObjSense.kMinimize)
    h.run()
    status = h.modelStatusToString(h.getModelStatus())
    info = h.getInfo()
    if info.primal_solution_status != 2:
        raise SolverFailedError(f"HiGHS found no feasible {what} ({status}); raise the time limit")
    return SolveOutcome(status, h.getModelStatus() == highspy.HighsModelStatus.kOptimal,
                        float(info.objective_function_value), float(info.mip_dual_bound), float(info.mip_gap),
                        np.array(h.getSolution().col_value))
