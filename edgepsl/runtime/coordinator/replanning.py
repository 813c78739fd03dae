"""Re-planning during a run: a new plan version, warm-started from the current plan, for a changed fleet or instance.

Every plan version is kept in the run directory as plans/v{N}.json (N from 0: the start-up plan) with the round it
takes effect, the reason, its instance and its plan; the metrics name the version each round ran (`plan_version`).
Every trigger (a helper lost, roles joined, a drift of realised against planned makespans; coordinator/run.py) builds
the changed instance, calls `replan` between rounds with the run's estimates, and runs the next round with the
Schedule it returns, whose planned makespan is the one the last rounds say it will realise.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from edgepsl.plan.errors import InfeasibleError
from edgepsl.plan.hybrid import replan_hybrid
from edgepsl.plan.instance import Instance
from edgepsl.plan.replan import replan as repair
from edgepsl.plan.replan import replan_pipelined
from edgepsl.plan.solvers import solver
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.coordinator import schedule as schedule_phase
from edgepsl.runtime.coordinator.fleet import Fleet, Profiles
from edgepsl.runtime.coordinator.schedule import Schedule
from edgepsl.runtime.errors import RunAbortedError
from edgepsl.runtime.estimates import Estimates

log = logging.getLogger("edgepsl.runtime.coordinator")
PLANS = "plans"


def without_helpers(instance: Instance, helpers: list[str]) -> Instance:
    """The instance with these helpers' columns removed (matched by name)."""
    keep = np.array([i for i, name in enumerate(instance.helper_names) if name not in helpers], dtype=np.int64)
    arrays = {name: (getattr(instance, name)[:, keep] if kind == "KH" else getattr(instance, name)[keep]
                     if kind == "H" else getattr(instance, name))
              for name, kind, _ in instance._fields()}
    return Instance(**arrays, client_names=instance.client_names,
                    helper_names=tuple(instance.helper_names[i] for i in keep), meta=dict(instance.meta))


def save_version(run_dir: Path, schedule: Schedule, round_: int, reason: str) -> Path:
    """Write plans/v{schedule.version}.json: the round the plan takes effect, why, its instance and its plan."""
    path = run_dir / PLANS / f"v{schedule.version}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"version": schedule.version, "round": round_, "reason": reason,
              "planned_makespan_ms": schedule.planned_ms, "nominal_makespan_ms": float(schedule.timeline.makespan),
              "instance": schedule.instance.to_dict(), "plan": schedule.plan.to_dict()}
    path.write_text(json.dumps(record) + "\n")
    return path


def replan(config: RunConfig, fleet: Fleet, profiles: Profiles, instance: Instance, current: Schedule, round_: int,
           reason: str, run_dir: Path, coordinator: str, log_level: int = logging.WARNING,
           estimates: Estimates | None = None) -> Schedule:
    """The next plan version for `fleet` (its clients and helpers: instance's names, in order), warm-started from
    `current` (edgepsl.plan.replan.replan: clients keep their helper where it still exists and has room; for a hybrid
    method edgepsl.plan.hybrid.replan_hybrid, which also keeps local clients local where they still fit; for a
    pipelined plan edgepsl.plan.replan.replan_pipelined, which keeps each client's micro-batches N), as the
    Schedule whose round payloads the next round sends; written to plans/v{N}.json as taking effect at round_.

    With `estimates` that observed rounds, the plan's planned makespan is the one they predict it will realise
    (Estimates.expected_makespan). RunAbortedError names the missing capacity when the helpers cannot hold every
    client's middle part. The new version is logged at log_level (a membership change warns; the closed loop's
    routine re-plans are info).
    """
    method = (replan_hybrid if solver(config.method).local_mode else
              replan_pipelined if current.plan.pipelined else repair)
    try:
        plan = method(instance, current.plan, current.instance, seed=config.seed).plan
    except InfeasibleError as exc:
        need, have = float(np.sum(instance.mem)), float(np.sum(instance.cap))
        raise RunAbortedError(f"cannot re-plan at round {round_} ({reason}): the helpers {', '.join(fleet.helpers)} "
                              f"hold {have:g} MB but the clients' middle parts need {need:g} MB "
                              f"({max(need - have, 0.0):g} MB missing; {exc})") from None
    schedule = schedule_phase.schedule(config, fleet, profiles, instance, plan, coordinator, run_dir)
    expected = None if estimates is None else estimates.expected_makespan(instance, plan)
    schedule = dataclasses.replace(schedule, version=current.version + 1, expected_ms=expected)
    instance.save(run_dir / "instance.json")
    plan.save(run_dir / "plan.json")
    save_version(run_dir, schedule, round_, reason)
    log.log(log_level, "plan v%d from round %d (%s): planned makespan %.1f ms (nominal %.1f ms; was %.1f ms)",
            schedule.version, round_, reason, schedule.planned_ms, schedule.timeline.makespan, current.planned_ms)
    return schedule


def moved(fleet: Fleet, before: Schedule, before_fleet: Fleet, after: Schedule) -> list[str]:
    """The clients whose middle part changes place between two schedules (helper to helper, or to or from local);
    clients new to `fleet` (not in before_fleet) have no place to leave."""
    out = []
    for name in fleet.clients:
        if name not in before_fleet.clients:
            continue
        old = before.helper_of(before_fleet, name)
        if old != after.helper_of(fleet, name):
            out.append(name)
    return out

