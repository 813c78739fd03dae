"""The planner's choice of learning mode per client: U-shaped SplitFed or local loss (docs/planning.md, "Local-loss
mode").

A method's `local_loss` option says which clients run local loss: "instance" (the instance's own `local_loss`
field, none without it), "none", "all", a list of client indices ("0,3,7"), or "auto" / "auto:0,3,7" (the planner
chooses for every client, or for the listed ones, the others staying on SplitFed). Auto minimises the planned
makespan and, at that makespan, keeps as many clients as it can on SplitFed, whose part-1 learns from the exact
gradient: it plans with every allowed client in local loss and with none, keeps the shorter plan (SplitFed on a
tie), and then returns each local-loss client to SplitFed whose round, with the same assignment and job orders,
still ends within that makespan.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from edgepsl.plan.bounds import LowerBound, lower_bound
from edgepsl.plan.errors import ModeError
from edgepsl.plan.evaluate import timeline_of
from edgepsl.plan.heuristics import Solution
from edgepsl.plan.instance import Instance
from edgepsl.plan.schedule import Plan

FIXED_CHOICES = ("instance", "none", "all")
AUTO = "auto"
# Auto's second pass returns local-loss clients to SplitFed one by one, each judged by one evaluation, at most this
# many (the first pass returns, in one evaluation, every client whose round provably still fits).
AUTO_SINGLE_TRIES = 256


def loss_option(value: Any) -> str:
    """The canonical form of a `local_loss` option (a choice, 'auto', 'auto:<indices>' or '<indices>'); a list of
    client indices becomes '<indices>'. ModeError for anything else."""
    if isinstance(value, (list, tuple)):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ModeError(f"a list of local-loss clients must hold client indices, got {value!r}")
        return ",".join(str(v) for v in value)
    if not isinstance(value, str):
        raise ModeError(f"local_loss must be one of {', '.join(FIXED_CHOICES)}, auto, auto:<indices> or a list of "
                        f"client indices, got {value!r}")
    text = value.strip()
    if text in FIXED_CHOICES or text == AUTO:
        return text
    _indices(text[len(AUTO) + 1:] if text.startswith(AUTO + ":") else text)
    return text


def _indices(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ModeError(f"local_loss {text!r} is neither one of {', '.join(FIXED_CHOICES)}, auto, nor a "
                        "comma-separated list of client indices") from None


def requested_modes(instance: Instance, option: str) -> tuple[np.ndarray, bool]:
    """(modes, auto): the clients the option puts in local loss (auto: those the planner may put there)."""
    option = loss_option(option)
    if option == "instance":
        return instance.loss_modes, False
    if option in ("none", "all"):
        return np.full(instance.K, option == "all"), False
    auto = option == AUTO or option.startswith(AUTO + ":")
    if option == AUTO:
        return np.ones(instance.K, dtype=bool), True
    listed = _indices(option[len(AUTO) + 1:] if auto else option)
    bad = [j for j in listed if not 0 <= j < instance.K]
    if bad:
        raise ModeError(f"local_loss names client {bad[0]}, but the clients are 0..{instance.K - 1}")
    modes = np.zeros(instance.K, dtype=bool)
    modes[listed] = True
    return modes, auto


def relaxed_instance(instance: Instance, free: np.ndarray) -> Instance:
    """The instance whose `free` clients have local loss's tail (0) without its floor (no local work): every job
    of it is released no later and followed by no longer a tail than in either mode, so its bounds hold for
    every choice of modes."""
    if not free.any():
        return instance.with_loss_modes(np.zeros(instance.K, dtype=bool)) if instance.has_loss_times else instance
    inst = instance.with_loss_modes(free)
    return dataclasses.replace(inst, r_cpu=np.where(free, 0.0, inst.r_cpu), aux=np.where(free, 0.0, inst.aux))


def _recorded(solution: Solution, instance: Instance, modes: np.ndarray) -> Solution:
    """The solution with its plan recording the modes (plans of instances without local-loss times record none)."""
    if not instance.has_loss_times:
        return solution
    p = solution.plan
    plan = Plan(p.assignment, p.orders, p.method, p.meta, p.micro, local_loss=modes)
    return dataclasses.replace(solution, plan=plan)


def _fewest_local(instance: Instance, plan: Plan, modes: np.ndarray, makespan: float) -> np.ndarray:
    """The modes with local-loss clients returned to SplitFed while the plan's makespan stays within `makespan`."""
    timeline = timeline_of(instance.with_loss_modes(modes), plan)
    splitfed_tail = (instance.d_bwd + instance.l_bwd[:, None])[np.arange(instance.K), plan.assignment]
    # With fixed job orders, earlier releases never delay a job: a returned client's backward job ends no later
    # than now, so every client whose backward end plus SplitFed's tail fits returns at once.
    fits = modes & (timeline.bwd_end + splitfed_tail <= makespan)
    trial = modes & ~fits
    if fits.any() and timeline_of(instance.with_loss_modes(trial), plan).makespan <= makespan:
        modes = trial
    slack = makespan - timeline_of(instance.with_loss_modes(modes), plan).finish
    for j in [int(j) for j in np.argsort(-slack, kind="stable") if modes[j]][:AUTO_SINGLE_TRIES]:
        trial = modes.copy()
        trial[j] = False
        if timeline_of(instance.with_loss_modes(trial), plan).makespan <= makespan:
            modes = trial
    return modes


def solve_with_modes(instance: Instance, option: str, solve: Callable[[Instance], Solution]) -> Solution:
    """Run a planning method (`solve` on an instance with fixed modes) under a `local_loss` option; the plan
    records the modes (where the instance has local-loss times)."""
    modes, auto = requested_modes(instance, option)
    if not auto:
        fixed = instance.with_loss_modes(modes)
        return _recorded(solve(fixed), fixed, modes)
    splitfed_modes = np.zeros(instance.K, dtype=bool)
    local = instance.with_loss_modes(modes)
    splitfed = instance.with_loss_modes(splitfed_modes)
    with_local, without = solve(local), solve(splitfed)
    relaxed = relaxed_instance(instance, modes)

    def bound_of(_: Instance) -> LowerBound:
        return lower_bound(relaxed)

    if without.makespan <= with_local.makespan:
        chosen, chosen_modes = without, splitfed_modes
    else:
        chosen_modes = _fewest_local(instance, with_local.plan, modes, with_local.makespan)
        moded = instance.with_loss_modes(chosen_modes)
        chosen = dataclasses.replace(with_local, instance=moded, timeline=timeline_of(moded, with_local.plan))
    meta = dict(chosen.plan.meta, local_loss_option=option, local_loss_allowed=int(modes.sum()),
                makespan_all_local=with_local.makespan, makespan_splitfed=without.makespan)
    chosen = dataclasses.replace(chosen, plan=dataclasses.replace(chosen.plan, meta=meta), bound_of=bound_of,
                                 solve_seconds=with_local.solve_seconds + without.solve_seconds)
    return _recorded(chosen, instance, chosen_modes)
