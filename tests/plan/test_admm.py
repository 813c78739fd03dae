"""The paper's ADMM decomposition: valid evaluated plans, never below the optimum or the bound, its stopping rule."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from edgepsl.cli import main
from edgepsl.plan.admm import AdmmParameterError, solve_admm
from edgepsl.plan.preemptive import preemptive_schedules
from edgepsl.plan.errors import InfeasibleError
from edgepsl.plan.evaluate import evaluate
from edgepsl.plan.highs import SolverUnavailableError
from edgepsl.plan.instance import Instance
from edgepsl.plan.milp import solve_milp
from edgepsl.plan.scenarios import scenario_instance
from edgepsl.plan.schedule import Plan
from edgepsl.plan.slot_ilp import SlotLengthError

from .instances import random_instance


@pytest.mark.parametrize("profile,scenario,seed", [("resnet101_cifar10", 1, 0), ("resnet101_cifar10", 2, 1),
                                                   ("vgg19_cifar10", 1, 2), ("vgg19_cifar10", 2, 3)])
def test_plan_is_valid_and_reports_the_evaluators_makespan(profile, scenario, seed) -> None:
    inst = scenario_instance(profile, 8, 3, scenario, seed)
    sol = solve_admm(inst, time_limit=10)
    timeline = evaluate(inst, sol.plan)
    assert sol.makespan == timeline.makespan
    assert sol.makespan >= sol.bound.value - 1e-6
    assert sol.plan.method == "admm" and sol.plan.meta["stop_reason"] == sol.stop_reason
    assert len(sol.history) == sol.iterations >= 1
    assert min(h["makespan_ms"] for h in sol.history) == sol.makespan
    assert sol.slot_ms > 0


@pytest.mark.parametrize("seed", range(6))
def test_never_below_the_proven_optimum(seed) -> None:
    inst = random_instance(seed, K=3 + seed % 2, H=2, integer_times=seed % 3 == 0, tight_memory=seed % 2 == 1)
    exact = solve_milp(inst, time_limit=30)
    assert exact.optimal
    sol = solve_admm(inst, time_limit=10)
    evaluate(inst, sol.plan)
    assert sol.makespan >= exact.makespan - 1e-9


def test_preemptive_schedules_respect_releases_gaps_and_order() -> None:
    inst = scenario_instance("resnet101_cifar10", 12, 3, 2, 5)
    a = np.arange(12) % 3
    s = preemptive_schedules(inst, a)
    rows = np.arange(12)
    assert (s.fwd_start >= inst.r[rows, a] - 1e-9).all()
    assert (s.fwd_end >= s.fwd_start + inst.p[rows, a] - 1e-9).all()
    assert (s.bwd_start >= s.fwd_end + inst.gap[rows, a] - 1e-9).all()
    assert s.forward_objective == pytest.approx(float((s.fwd_end + inst.d[rows, a] + inst.l).max()))


def test_stopping_rule_ends_early_and_max_iter_caps_the_iterations() -> None:
    inst = scenario_instance("resnet101_cifar10", 10, 2, 1, 4)
    sol = solve_admm(inst, max_iter=10, stable_iters=2, time_limit=20)
    assert sol.stop_reason in ("residual", "stable") and sol.iterations < 10
    assert sol.history[-1]["moved"] == 0
    if sol.stop_reason == "stable":
        assert all(h["moved"] == 0 for h in sol.history[-2:])
    else:
        assert sol.history[-1]["primal_residual"] == 0
    one = solve_admm(inst, max_iter=1, time_limit=20)
    assert one.iterations == 1 and one.stop_reason in ("max_iter", "residual")


def test_the_horizon_moves_work_off_a_piled_helper_and_the_assignment_follows() -> None:
    K = 6
    zero = np.zeros((K, 2))
    d = zero.copy()
    d[:, 1] = 5.0                       # helper 0 has the better links: the [C-HEAD] start piles everyone there
    inst = Instance(r=zero, p=np.full((K, 2), 100.0), d=d, l=np.full(K, 10.0), r_bwd=np.full((K, 2), 10.0),
                    p_bwd=np.full((K, 2), 100.0), d_bwd=zero, l_bwd=np.full(K, 10.0), mem=np.ones(K),
                    cap=np.full(2, 10.0))
    sol = solve_admm(inst, time_limit=10)
    # The x-updates stop at HiGHS's wall-clock share of the time limit, so which iteration moves what depends on
    # the machine's load (on a loaded machine the first one sometimes moves nothing, or the last still moves):
    # check that work left the piled helper and the assignment followed, not the trajectory.
    assert any(h["moved"] > 0 for h in sol.history)
    assert min(h["pf_objective_ms"] for h in sol.history) < 6 * 100.0
    assert set(sol.plan.assignment.tolist()) == {0, 1}
    assert evaluate(inst, sol.plan).makespan == sol.makespan


def test_no_time_still_returns_a_valid_plan() -> None:
    inst = scenario_instance("vgg19_cifar10", 10, 3, 2, 6)
    sol = solve_admm(inst, time_limit=0.0)
    assert sol.stop_reason == "time_limit" and sol.iterations == 0
    assert evaluate(inst, sol.plan).makespan == sol.makespan


def test_memory_that_fits_no_assignment_is_infeasible() -> None:
    inst = Instance(r=np.ones((3, 2)), p=np.ones((3, 2)), d=np.ones((3, 2)), l=np.ones(3),
                    r_bwd=np.ones((3, 2)), p_bwd=np.ones((3, 2)), d_bwd=np.ones((3, 2)), l_bwd=np.ones(3),
                    mem=np.full(3, 2.0), cap=np.array([3.0, 3.0]))
    with pytest.raises(InfeasibleError, match="memory"):
        solve_admm(inst, time_limit=5)


def test_binding_memory_is_respected() -> None:
    inst = scenario_instance("resnet101_cifar10", 12, 3, 1, 7, binding_memory=True)
    sol = solve_admm(inst, time_limit=10)
    evaluate(inst, sol.plan)


def test_fifty_clients_get_a_plan() -> None:
    inst = scenario_instance("resnet101_cifar10", 50, 5, 2, 0)
    sol = solve_admm(inst, time_limit=5)
    assert evaluate(inst, sol.plan).makespan == sol.makespan
    assert sol.iterations >= 1


def test_bad_parameters_are_refused() -> None:
    inst = random_instance(1, K=3, H=2, integer_times=False, tight_memory=False)
    with pytest.raises(AdmmParameterError, match="max_iter"):
        solve_admm(inst, max_iter=0)
    with pytest.raises(SlotLengthError):
        solve_admm(inst, slot_ms=0.0)


def test_missing_highspy_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "highspy", None)
    inst = random_instance(0, K=3, H=2, integer_times=True, tight_memory=False)
    with pytest.raises(SolverUnavailableError, match=r"pip install 'edgepsl\[solvers\]'"):
        solve_admm(inst)


def test_plan_cli_with_admm(tmp_path, capsys) -> None:
    out = tmp_path / "admm"
    assert main(["plan", "--profile", "resnet101_cifar10", "-K", "8", "-H", "2", "--method", "admm",
                 "--time-limit", "10", "--no-plot", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ADMM" in printed and "iterations" in printed
    doc = json.loads((out / "plan.json").read_text())
    inst = Instance.load(out / "instance.json")
    assert doc["method"] == "admm" and doc["evaluation"]["admm_iterations"] >= 1
    assert doc["evaluation"]["admm_stop_reason"] in ("stable", "residual", "max_iter", "time_limit")
    assert evaluate(inst, Plan.from_dict(doc)).makespan == pytest.approx(doc["evaluation"]["makespan_ms"])
