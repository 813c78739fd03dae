"""The solver registry: every method by name, its options checked, clear errors for unknown names and missing
extras; the CLI and a run's config choose from it; dispatch priorities come from plan.rules."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from edgepsl.cli import main
from edgepsl.plan.errors import UnknownMethodError
from edgepsl.plan.evaluate import evaluate
from edgepsl.plan.heuristics import Solution
from edgepsl.plan.highs import SolverUnavailableError
from edgepsl.plan.rules import DISPATCH_RULES, dispatch_priorities, priority_values
from edgepsl.plan.scenarios import scenario_instance
from edgepsl.plan.solvers import SOLVERS, SolverOptionError, method_names, plan, solver
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.errors import RunConfigError
from edgepsl.runtime.planning import make_plan

from .instances import random_instance

QUICK = {"milp": {"time_limit": 20.0}, "admm": {"time_limit": 5.0}}
CHOICES = ("choose one of random, balanced-greedy, greedy-eft, greedy-ls, milp, hybrid, hybrid-random, "
           "hybrid-rule-random, hybrid-balanced-greedy, hybrid-milp, admm")


def test_every_method_is_registered() -> None:
    assert method_names() == ("random", "balanced-greedy", "greedy-eft", "greedy-ls", "milp", "hybrid", "hybrid-random",
                              "hybrid-rule-random", "hybrid-balanced-greedy", "hybrid-milp", "admm")
    for spec in SOLVERS.values():
        assert spec.description and all(o.help for o in spec.options)
        assert (spec.extra, spec.module) in ((None, None), ("solvers", "highspy"))


@pytest.mark.parametrize("method", method_names())
def test_every_method_plans_by_name_and_returns_a_solution(method) -> None:
    inst = random_instance(3, K=6, H=2, integer_times=False, tight_memory=False)
    sol = plan(inst, method, **QUICK.get(method, {}))
    assert isinstance(sol, Solution) and sol.plan.method == method
    assert evaluate(inst, sol.plan).makespan == sol.makespan >= sol.bound.value
    assert isinstance(sol.details(), dict) and isinstance(sol.summary(), list)


def test_options_reach_the_method() -> None:
    inst = random_instance(4, K=8, H=3, integer_times=True, tight_memory=False)
    assert plan(inst, "random", seed=7, dispatch="tail").plan.meta == {"seed": 7, "dispatch": "tail"}
    assert plan(inst, "greedy-ls", seed=2, budget=1000, kicks=0).plan.meta["budget"] == 1000


def test_unknown_method_lists_the_choices() -> None:
    inst = random_instance(0, K=3, H=2, integer_times=True, tight_memory=False)
    with pytest.raises(UnknownMethodError, match=CHOICES):
        plan(inst, "simulated-annealing")


def test_an_option_the_method_does_not_take_or_of_the_wrong_type_is_refused() -> None:
    inst = random_instance(0, K=3, H=2, integer_times=True, tight_memory=False)
    with pytest.raises(SolverOptionError, match="takes no option 'budget'; its options: local_loss"):
        plan(inst, "greedy-eft", budget=10)
    with pytest.raises(SolverOptionError, match="must be a int"):
        plan(inst, "greedy-ls", seed="3")
    with pytest.raises(SolverOptionError, match="choose one of fcfs, fwd-first, tail, best"):
        plan(inst, "random", dispatch="lifo")


@pytest.mark.parametrize("method", ["milp", "admm"])
def test_a_missing_extra_names_the_install_command(monkeypatch, method) -> None:
    monkeypatch.setitem(sys.modules, "highspy", None)
    inst = random_instance(0, K=3, H=2, integer_times=True, tight_memory=False)
    assert not solver(method).available()
    with pytest.raises(SolverUnavailableError, match=rf"'{method}' needs highspy.*pip install 'edgepsl\[solvers\]'"):
        plan(inst, method)
    with pytest.raises(SolverUnavailableError, match=r"pip install 'edgepsl\[solvers\]'"):
        make_plan(RunConfig(method=method), inst)


def test_a_run_config_chooses_any_registered_method() -> None:
    inst = random_instance(5, K=6, H=2, integer_times=False, tight_memory=False)
    assert make_plan(RunConfig(method="milp"), inst).plan.method == "milp"
    assert make_plan(RunConfig(method="random", seed=3, dispatch="tail"), inst).plan.meta == {"seed": 3,
                                                                                             "dispatch": "tail"}
    with pytest.raises(RunConfigError, match=CHOICES):
        RunConfig(method="magic")


@pytest.mark.parametrize("rule", list(DISPATCH_RULES))
def test_dispatch_priorities_are_the_kernel_keys(rule) -> None:
    inst = random_instance(6, K=7, H=3, integer_times=False, tight_memory=False)
    assignment = np.arange(inst.K) % inst.H
    got = dispatch_priorities(inst, rule, assignment)
    g, pb, q = inst.gap, inst.p_bwd, inst.tail
    for j, i in enumerate(assignment):
        want = {"fcfs": (0.0, 0.0), "fwd-first": (g[j, i], q[j, i]), "tail": (g[j, i] + pb[j, i] + q[j, i], q[j, i])}
        assert tuple(got[j]) == want[rule]
    with pytest.raises(UnknownMethodError, match="choose one of fcfs, fwd-first, tail"):
        priority_values(inst, "best")


def test_cli_plans_with_any_registered_method_and_reports_every_bound(tmp_path, capsys) -> None:
    inst = scenario_instance("resnet101_cifar10", 8, 2, 1, 0)
    inst.save(tmp_path / "instance.json")
    out = tmp_path / "admm"
    assert main(["plan", "--instance", str(tmp_path / "instance.json"), "--method", "admm", "--time-limit", "5",
                 "--bound", "lp", "--no-plot", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ADMM " in printed and ", window " in printed and ", joint " in printed and ", lp " in printed
    evaluation = json.loads((out / "plan.json").read_text())["evaluation"]
    assert evaluation["admm_iterations"] >= 1 and evaluation["lp_bound_ms"] > 0
    assert evaluation["lower_bound_ms"] == max(evaluation[k] for k in ("chain_bound_ms", "load_bound_ms",
                                                                      "window_bound_ms", "joint_bound_ms",
                                                                      "lp_bound_ms"))
    assert main(["plan", "--instance", str(tmp_path / "instance.json"), "--bound", "fast", "--no-plot",
                 "--out", str(tmp_path / "fast")]) == 0
    assert json.loads((tmp_path / "fast" / "plan.json").read_text())["evaluation"]["lp_bound_ms"] is None
