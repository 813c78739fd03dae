"""`edgepsl plan`: plan one training round from an instance file or a generated scenario, and draw it."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edgepsl.errors import EdgePSLError
from edgepsl.plan.backend import backend_name
from edgepsl.plan.instance import Instance
from edgepsl.plan.profiles import list_profiles
from edgepsl.plan.scenarios import SCENARIOS, hybrid_instance, scenario_instance
from edgepsl.plan.solvers import BUDGET, DISPATCH, KICKS, SOLVERS, THREADS, lp_bound_fits, plan, solver, with_lp_bound

HELP = "plan one round (assignment + job order): write plan.json, gantt.png and trace.json, print makespan and gap"


class PlanArgumentError(EdgePSLError):
    """The plan command's options do not describe one instance."""


def _cuts(text: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"cuts must be two layer indices 'A,B', got {text!r}") from None
    return a, b


def _positive_ms(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"the time limit must be a positive number of milliseconds, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Instance source, method and output options."""
    src = parser.add_argument_group("instance (either --instance, or a scenario from --profile)")
    src.add_argument("--instance", type=Path, help="instance JSON file (docs/formats.md)")
    src.add_argument("--profile", help=f"device profile: a shipped name ({', '.join(list_profiles())}) or a JSON file")
    src.add_argument("--scenario", type=int, default=1, choices=sorted(SCENARIOS),
                     help="; ".join(f"{k}: {v}" for k, v in SCENARIOS.items()))
    src.add_argument("--clients", "-K", type=int, default=50, help="number of clients K (default 50)")
    src.add_argument("--helpers", "-H", type=int, default=5, help="number of helpers H (default 5)")
    src.add_argument("--seed", type=int, default=0, help="seed of the scenario and of the method (default 0)")
    src.add_argument("--cuts", type=_cuts, help="cut layers A,B for every client (default: the model's usual cut)")
    src.add_argument("--binding-memory", action="store_true", help="give helpers capacities that bind")
    src.add_argument("--hybrid-scenario", action="store_true",
                     help="the paper's hybrid scenario instead of --scenario: laptop helpers, clients d1 / Jetson CPU / "
                          "Jetson GPU with local-mode times (plan it with --method hybrid)")
    cut = parser.add_argument_group("cut choice (with --profile)")
    cut.add_argument("--choose-cuts", action="store_true",
                     help="plan every cut (a, b) and keep the one with the shortest makespan (writes cuts.json)")
    cut.add_argument("--per-client-cuts", action="store_true", help="with --choose-cuts: one cut per client")
    cut.add_argument("--client-memory-mb", type=float, help="with --choose-cuts: memory a client can give its layers")
    parser.add_argument("--method", default="greedy-ls", choices=list(SOLVERS),
                        help="; ".join(f"{m.name}: {m.description}" + (f" (the '{m.extra}' extra)" if m.extra else "")
                                       for m in SOLVERS.values()))
    parser.add_argument("--dispatch", default=DISPATCH.default, choices=DISPATCH.choices,
                        help="job order rule for random and balanced-greedy (default fcfs, as in the paper)")
    parser.add_argument("--budget", type=int, default=BUDGET.default,
                        help=f"greedy-ls and milp's warm start: {BUDGET.help} (default {BUDGET.default})")
    parser.add_argument("--kicks", type=int, default=KICKS.default, help=f"greedy-ls: {KICKS.help} "
                                                                         f"(default {KICKS.default})")
    parser.add_argument("--time-limit-ms", type=_positive_ms, default=None,
                        help="greedy-ls (and milp's warm start): stop at this wall time in ms and return the best "
                             "plan found by then, or at the work budget if that comes first (default: no limit)")
    parser.add_argument("--micro-batches", default=None, metavar="N|auto",
                        help="greedy-ls: split each client's round into N micro-batches (PiPar pipelining), or 'auto' "
                             "for the N per client that minimises the planned makespan; needs stage times (with "
                             "--profile they are added; an --instance file needs format version 3). Default: the "
                             "instance's own N (1 for today's instances)")
    parser.add_argument("--local-loss", default=None, metavar="none|all|auto|LIST",
                        help="learning mode per client (random, balanced-greedy, greedy-eft, greedy-ls, milp): none "
                             "(U-shaped SplitFed), all (local loss: no cut-1 gradient, part-1 learns from an aux "
                             "head), a comma-separated list of client indices in local loss, or auto / auto:LIST "
                             "(the planner chooses: shortest makespan, then fewest local-loss clients); needs "
                             "local-loss times (with --profile they are added; an --instance file needs format "
                             "version 4). Default: the instance's own modes (SplitFed for today's instances)")
    parser.add_argument("--time-limit", type=float, default=60.0,
                        help="milp: seconds before HiGHS returns its incumbent and gap; admm: seconds for the "
                             "whole decomposition (default 60)")
    parser.add_argument("--threads", type=int, default=THREADS.default, help="milp and admm: HiGHS threads (default 1)")
    parser.add_argument("--bound", default="auto", choices=("auto", "fast", "lp"),
                        help="lower bound of the gap line: fast (chain, load, window, joint; compiled), lp (also "
                             "the linear relaxation on HiGHS, the 'solvers' extra), auto (lp where HiGHS is "
                             "installed and K x H <= 2000; default)")
    parser.add_argument("--out", type=Path, default=Path("runs/plan"), help="output folder (default runs/plan)")
    parser.add_argument("--no-plot", action="store_true", help="skip gantt.png (needs matplotlib, the 'plot' extra)")


def _instance(args: argparse.Namespace) -> Instance:
    if (args.instance is None) == (args.profile is None):
        raise PlanArgumentError("give exactly one of --instance FILE or --profile NAME (with --clients, --helpers)")
    if args.choose_cuts and args.profile is None:
        raise PlanArgumentError("--choose-cuts needs --profile (an instance file has its cuts built in)")
    if (args.per_client_cuts or args.client_memory_mb is not None) and not args.choose_cuts:
        raise PlanArgumentError("--per-client-cuts and --client-memory-mb go with --choose-cuts")
    if args.instance is not None:
        return Instance.load(args.instance)
    if args.choose_cuts:
        return _choose_cuts(args)
    if args.hybrid_scenario:
        return hybrid_instance(args.profile, args.clients, args.helpers, args.seed, cuts=args.cuts)
    return scenario_instance(args.profile, args.clients, args.helpers, args.scenario, args.seed,
                             cuts=args.cuts, binding_memory=args.binding_memory,
                             micro_batches=1 if args.micro_batches is not None else None,
                             loss_times=args.local_loss is not None)


def _choose_cuts(args: argparse.Namespace) -> Instance:
    from edgepsl.plan.cuts import choose_cuts

    method = "greedy-ls" if solver(args.method).extra else args.method
    choice = choose_cuts(args.profile, args.clients, args.helpers, args.scenario, args.seed,
                         per_client=args.per_client_cuts, client_memory_limit_mb=args.client_memory_mb,
                         binding_memory=args.binding_memory, method=method, budget=args.budget)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cuts.json").write_text(json.dumps(
        {"chosen": [list(c) for c in choice.cuts], "makespan_ms": choice.makespan, "method": method,
         "candidates": choice.candidates}, indent=1) + "\n")
    ranked = sorted((c for c in choice.candidates if c["makespan_ms"] is not None and c["reason"] == "common cut"),
                    key=lambda c: c["makespan_ms"])
    refused = sum(c["makespan_ms"] is None for c in choice.candidates)
    print(f"cut choice   {len(ranked)} common cuts planned with {method}"
          + (f", {refused} refused for client memory" if refused else "") + f"; best 5 (all in {args.out / 'cuts.json'}):")
    for c in ranked[:5]:
        print(f"               {tuple(c['cuts'])}: {c['makespan_ms']:.1f} ms")
    distinct = sorted(set(choice.cuts))
    print(f"chosen       {distinct[0] if len(distinct) == 1 else f'{len(distinct)} different cuts: {distinct}'}")
    return choice.instance


def run(args: argparse.Namespace) -> int:
    """Build the instance, plan it, write the outputs and print the summary."""
    from edgepsl.plan.gantt import gantt_png, write_chrome_trace

    instance = _instance(args)
    options = {k: v for k, v in vars(args).items() if not (k == "local_loss" and v is None)}
    sol = plan(instance, args.method, **solver(args.method).options_from(options))
    if args.bound == "lp" or (args.bound == "auto" and lp_bound_fits(instance)):
        sol = with_lp_bound(instance, sol, threads=args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    instance.save(args.out / "instance.json")
    doc = sol.plan.to_dict()
    doc["evaluation"] = {
        "makespan_ms": sol.makespan,
        "lower_bound_ms": sol.bound.value,
        "chain_bound_ms": sol.bound.chain,
        "load_bound_ms": sol.bound.load,
        "window_bound_ms": sol.bound.window,
        "joint_bound_ms": sol.bound.joint,
        "lp_bound_ms": sol.bound.lp,
        "local_bound_ms": sol.bound.local,
        "local_clients": int(sol.plan.local.sum()),
        "gap": sol.gap,
        "solve_seconds": sol.solve_seconds,
        "backend": backend_name(),
        **sol.details(),
        "timeline": sol.timeline.to_dict(),
    }
    (args.out / "plan.json").write_text(json.dumps(doc, indent=1) + "\n")
    write_chrome_trace(sol.instance, sol.plan, sol.timeline, args.out / "trace.json")
    title = f"{args.method}: K={instance.K}, H={instance.H}, makespan {sol.makespan / 1000:.2f} s"
    if not args.no_plot:
        gantt_png(sol.instance, sol.plan, sol.timeline, args.out / "gantt.png", title=title)
    print(f"instance     K={instance.K} clients, H={instance.H} helpers")
    print(f"method       {args.method} (scheduling core: {backend_name()})")
    print(f"makespan     {sol.makespan:.1f} ms")
    lp = "" if sol.bound.lp is None else f", lp {sol.bound.lp:.1f}"
    lp += f", local threshold {sol.bound.local:.1f}" if sol.bound.local else ""
    if sol.plan.pipelined:
        print(f"micro-batch  N per client {sol.plan.micro.tolist()} (unpipelined plan: "
              f"{sol.plan.meta['unpipelined_makespan']:.1f} ms)")
    if sol.plan.local_loss is not None:
        print(f"local loss   {int(sol.plan.local_loss.sum())} of {instance.K} clients train part-1 with the aux "
              f"head's loss: {np.flatnonzero(sol.plan.local_loss).tolist()}")
    if instance.hybrid:
        print(f"local mode   {int(sol.plan.local.sum())} of {instance.K} clients train part-2 on their own device")
    print(f"lower bound  {sol.bound.value:.1f} ms (chain {sol.bound.chain:.1f}, load {sol.bound.load:.1f}, "
          f"window {sol.bound.window:.1f}, joint {sol.bound.joint:.1f}{lp})")
    print(f"gap          {100 * sol.gap:.2f} %")
    for line in sol.summary():
        print(line)
    print(f"solve time   {1000 * sol.solve_seconds:.3f} ms")
    outputs = ["instance.json", "plan.json", "trace.json"] + ([] if args.no_plot else ["gantt.png"])
    print(f"wrote        {', '.join(str(args.out / name) for name in outputs)}")
    return 0
