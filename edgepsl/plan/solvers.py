"""The one front door to planning: every method registered by name with its description, options and extra.

`plan(instance, "greedy-ls", seed=3)` runs any method and returns a `Solution` (the heuristics' type; the MILP
and ADMM return subclasses that add their diagnostics through `Solution.details()` and `Solution.summary()`).
`edgepsl plan --method` and a run's `method = "..."` choose from `SOLVERS`; a method whose package is missing
raises SolverUnavailableError naming the extra that installs it.
"""
from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from typing import Any, Callable

from edgepsl.errors import EdgePSLError
from edgepsl.plan import heuristics, hybrid
from edgepsl.plan.bounds import lower_bound, lp_bound
from edgepsl.plan.errors import UnknownMethodError
from edgepsl.plan.heuristics import DEFAULT_BUDGET, DEFAULT_KICKS, Solution
from edgepsl.plan.highs import SolverUnavailableError
from edgepsl.plan.errors import ModeError
from edgepsl.plan.instance import Instance
from edgepsl.plan.local_loss import loss_option, requested_modes, solve_with_modes
from edgepsl.plan.pipeline_search import micro_option, solve_pipelined
from edgepsl.plan.rules import DISPATCH_RULES
from edgepsl.plan.schedule import Plan

# `edgepsl plan` adds the LP bound by default up to this many (client, helper) cells (about 0.5 s at K H = 2,000).
LP_BOUND_MAX_CELLS = 2_000


class SolverOptionError(EdgePSLError):
    """An option a planning method does not take, or a value of the wrong type or outside its choices."""


@dataclass(frozen=True)
class SolverOption:
    """One keyword option of a method: its name (also the CLI flag and the run-config key), type, default, help."""

    name: str
    kind: type
    default: Any
    help: str
    choices: tuple[Any, ...] = ()
    # Turns a value of another accepted form into the option's type (None: no conversion); raises EdgePSLError.
    convert: Callable[[Any], Any] | None = None

    def check(self, method: str, value: Any) -> Any:
        """The value, converted to the option's type; SolverOptionError when it does not fit."""
        if value is None and self.default is None:
            return None
        if self.convert is not None:
            try:
                value = self.convert(value)
            except EdgePSLError as exc:
                raise SolverOptionError(f"option {self.name!r} of method {method!r}: {exc}") from None
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not self.kind:
            raise SolverOptionError(f"option {self.name!r} of method {method!r} must be a {self.kind.__name__}, "
                                    f"got {value!r}")
        if self.choices and value not in self.choices:
            raise SolverOptionError(f"option {self.name!r} of method {method!r} is {value!r}; choose one of "
                                    f"{', '.join(map(str, self.choices))}")
        return value


@dataclass(frozen=True)
class Solver:
    """A planning method: name, one-line description, options, the extra (and module) it needs, if any, and
    whether it may put clients in local mode (a run then has its clients declare their part-2 times)."""

    name: str
    description: str
    run: Callable[..., Solution]
    options: tuple[SolverOption, ...] = ()
    extra: str | None = None
    module: str | None = None
    local_mode: bool = False

    @property
    def option_names(self) -> tuple[str, ...]:
        """The names of the options this method takes."""
        return tuple(o.name for o in self.options)

    def available(self) -> bool:
        """Whether the package this method needs is installed."""
        return self.module is None or importlib.util.find_spec(self.module) is not None

    def require(self) -> None:
        """Raise SolverUnavailableError naming the extra to install when the method's package is missing."""
        if not self.available():
            raise SolverUnavailableError(f"planning method {self.name!r} needs {self.module}, which is not installed: "
                                         f"pip install 'edgepsl[{self.extra}]'")

    def options_from(self, values: dict[str, Any]) -> dict[str, Any]:
        """This method's options taken from a larger mapping (CLI arguments, a run's config); others ignored."""
        return {name: values[name] for name in self.option_names if name in values}


SEED = SolverOption("seed", int, 0, "seed of the method's random choices")
DISPATCH = SolverOption("dispatch", str, "fcfs", "job order rule (best: the best rule per helper)",
                        (*DISPATCH_RULES, "best"))
BUDGET = SolverOption("budget", int, DEFAULT_BUDGET, "local-search work budget in job steps")
KICKS = SolverOption("kicks", int, DEFAULT_KICKS, "restarts of the local search from a perturbed plan")
TIME_LIMIT = SolverOption("time_limit", float, 60.0, "seconds before HiGHS returns its best plan")
THREADS = SolverOption("threads", int, 1, "HiGHS threads")
TIME_LIMIT_MS = SolverOption("time_limit_ms", float, None,
                             "wall-clock ms after which the local search returns its best plan (None: no limit)")
MICRO_BATCHES = SolverOption("micro_batches", str, None,
                             "micro-batches per client (PiPar pipelining): a whole number N, or 'auto' for the N "
                             "per client that minimises the planned makespan (default: the instance's own N)",
                             convert=micro_option)
MAX_MICRO = SolverOption("max_micro", int, None,
                         "the most micro-batches per client (e.g. batch // 2 for a model with BatchNorm, whose "
                         "micro-batches need 2 rows); None: its batch")
LOCAL_LOSS = SolverOption("local_loss", str, "instance",
                          "learning mode per client (docs/planning.md, 'Local-loss mode'): instance (the instance's "
                          "own), none, all, a list of client indices in local loss, or auto / auto:<indices> (the "
                          "planner chooses: shortest makespan, then fewest local-loss clients)", convert=loss_option)


def _heuristic(method: str) -> Callable[..., Solution]:
    def run(instance: Instance, *, local_loss: str, **options: Any) -> Solution:
        return solve_with_modes(instance, local_loss, lambda inst: heuristics.solve(inst, method, **options))

    return run


def _unpipelined(instance: Instance, micro_batches: str | None, local_loss: str) -> bool:
    """Whether the plan has N = 1 for every client; ModeError when local loss would meet micro-batches."""
    if micro_batches is None and not (instance.micro_batches > 1).any():
        return True
    if requested_modes(instance, local_loss)[0].any():
        raise ModeError("the local-loss mode is not planned with micro-batches (pipelining): plan local-loss clients "
                        "with N = 1 (micro_batches 1) or set local_loss = 'none'")
    return False


def _greedy_ls(instance: Instance, *, micro_batches: str | None, max_micro: int | None, local_loss: str,
               **options: Any) -> Solution:
    if _unpipelined(instance, micro_batches, local_loss):
        return solve_with_modes(instance, local_loss, lambda inst: heuristics.solve(inst, "greedy-ls", **options))
    return solve_pipelined(instance, micro_batches, max_micro=max_micro, **options)


def _milp(instance: Instance, *, time_limit: float, threads: int, seed: int, budget: int,
          time_limit_ms: float | None, micro_batches: str | None, max_micro: int | None, local_loss: str) -> Solution:
    from edgepsl.plan.milp import solve_milp

    if _unpipelined(instance, micro_batches, local_loss):
        def exact(inst: Instance) -> Solution:
            warm = heuristics.solve(inst, "greedy-ls", seed=seed, budget=budget, time_limit_ms=time_limit_ms).plan
            return solve_milp(inst, time_limit=time_limit, threads=threads, warm_start=warm)

        return solve_with_modes(instance, local_loss, exact)
    from edgepsl.plan.pipeline_milp import solve_pipeline_milp

    warm = solve_pipelined(instance, micro_batches, seed=seed, budget=budget, time_limit_ms=time_limit_ms,
                           max_micro=max_micro).plan
    if not warm.pipelined:
        return solve_milp(instance, time_limit=time_limit, threads=threads, warm_start=warm)
    return solve_pipeline_milp(instance, warm.micro_batches, warm, time_limit=time_limit, threads=threads)


def _hybrid(instance: Instance, *, seed: int, budget: int, kicks: int, time_limit_ms: float | None) -> Solution:
    return hybrid.solve_hybrid(instance, seed=seed, budget=budget, kicks=kicks, time_limit_ms=time_limit_ms)


def _hybrid_baseline(method: str) -> Callable[..., Solution]:
    def run(instance: Instance, *, seed: int) -> Solution:
        return hybrid.solve_baseline(instance, method, seed=seed)

    return run


def _hybrid_milp(instance: Instance, *, time_limit: float, threads: int, seed: int, budget: int,
                 time_limit_ms: float | None) -> Solution:
    from edgepsl.plan.milp import solve_milp

    warm = hybrid.solve_hybrid(instance, seed=seed, budget=budget, time_limit_ms=time_limit_ms).plan
    sol = solve_milp(instance, time_limit=time_limit, threads=threads, warm_start=warm, hybrid=True)
    return dataclasses.replace(sol, plan=Plan(sol.plan.assignment, sol.plan.orders, "hybrid-milp", sol.plan.meta))


def _admm(instance: Instance, *, time_limit: float, threads: int) -> Solution:
    from edgepsl.plan.admm import solve_admm

    return solve_admm(instance, time_limit=time_limit, threads=threads)


SOLVERS: dict[str, Solver] = {s.name: s for s in (
    Solver("random", heuristics.METHODS["random"], _heuristic("random"), (SEED, DISPATCH, LOCAL_LOSS)),
    Solver("balanced-greedy", heuristics.METHODS["balanced-greedy"], _heuristic("balanced-greedy"),
           (DISPATCH, LOCAL_LOSS)),
    Solver("greedy-eft", heuristics.METHODS["greedy-eft"], _heuristic("greedy-eft"), (LOCAL_LOSS,)),
    Solver("greedy-ls", heuristics.METHODS["greedy-ls"] + "; with micro_batches, pipelined micro-batch jobs "
           "(docs/planning.md)", _greedy_ls, (SEED, BUDGET, KICKS, TIME_LIMIT_MS, MICRO_BATCHES, MAX_MICRO, LOCAL_LOSS)),
    Solver("milp", "exact MILP on HiGHS, warm-started from greedy-ls (docs/milp.md); with micro_batches, exact for "
           "the N greedy-ls plans (docs/planning.md)", _milp,
           (TIME_LIMIT, THREADS, SEED, BUDGET, TIME_LIMIT_MS, MICRO_BATCHES, MAX_MICRO, LOCAL_LOSS), extra="solvers",
           module="highspy"),
    Solver("hybrid", hybrid.METHODS["hybrid"], _hybrid, (SEED, BUDGET, KICKS, TIME_LIMIT_MS), local_mode=True),
    *(Solver(name, hybrid.METHODS[name], _hybrid_baseline(name), (SEED,), local_mode=True)
      for name in hybrid.BASELINES),
    Solver("hybrid-milp", "exact MILP with a local-mode binary per client on HiGHS, warm-started from hybrid "
           "(docs/milp.md)", _hybrid_milp, (TIME_LIMIT, THREADS, SEED, BUDGET, TIME_LIMIT_MS), extra="solvers",
           module="highspy", local_mode=True),
    Solver("admm", "the paper's ADMM decomposition on HiGHS with exact per-helper schedules (docs/admm.md)", _admm,
           (dataclasses.replace(TIME_LIMIT, help="seconds for the whole decomposition"), THREADS),
           extra="solvers", module="highspy"),
)}


def method_names() -> tuple[str, ...]:
    """Every registered method's name, in the registry's order."""
    return tuple(SOLVERS)


def solver(method: str) -> Solver:
    """The registered method of this name; UnknownMethodError listing the choices."""
    if method not in SOLVERS:
        raise UnknownMethodError(f"unknown planning method {method!r}; choose one of {', '.join(SOLVERS)}")
    return SOLVERS[method]


def plan(instance: Instance, method: str = "greedy-ls", **options: Any) -> Solution:
    """Plan one round with a registered method and its options (others are SolverOptionError); the solution
    carries the compiled lower bounds."""
    spec = solver(method)
    unknown = sorted(set(options) - set(spec.option_names))
    if unknown:
        raise SolverOptionError(f"method {method!r} takes no option {', '.join(map(repr, unknown))}; its options: "
                                f"{', '.join(spec.option_names) or 'none'}")
    spec.require()
    values = {o.name: o.check(method, options.get(o.name, o.default)) for o in spec.options}
    if "local_loss" not in values and instance.loss_modes.any():
        j = int(instance.loss_modes.argmax())
        raise ModeError(f"{instance.client_name(j)} runs the local-loss mode, which method {method!r} does not plan; "
                        f"use one of {', '.join(n for n, s in SOLVERS.items() if 'local_loss' in s.option_names)}, "
                        "or an instance whose local_loss field is all 0")
    return spec.run(instance, **values)


def with_lp_bound(instance: Instance, solution: Solution, threads: int = 1) -> Solution:
    """The solution with the LP bound (HiGHS, the `solvers` extra) added to its lower bound; unchanged for a hybrid
    method's solution (the all-split LP bound does not hold for hybrid plans)."""
    if solution.bound_of is not lower_bound:
        return solution
    return dataclasses.replace(solution, lp_bound=lp_bound(solution.instance, solution.bound.value, threads=threads))


def lp_bound_fits(instance: Instance) -> bool:
    """Whether the LP bound is installed (highspy) and quick for this instance (K H <= LP_BOUND_MAX_CELLS)."""
    return importlib.util.find_spec("highspy") is not None and instance.K * instance.H <= LP_BOUND_MAX_CELLS
