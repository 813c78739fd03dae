"""Exact pipelined planning for small instances: the micro-batch model of edgepsl.plan.pipeline as a MILP on HiGHS.

For given N per client: binaries y_ji assign clients; every stage of every micro-batch has a start time bound
below by its predecessors in the model (the client's CPU, its uplink and downlink, its helper); a stage's length
is linear in y (sum_i y_ji st[j, i, stage]). Two jobs of one client whose order the model leaves free (backward
of micro-batch m before or after forward of micro-batch k > m) get an order binary, which also orders their
downloads; two jobs of different clients get an order binary active only on a helper both are assigned to
(big-M disjunctions, M from a heuristic plan's makespan). Minimise W >= every client's last part-1 backward end.
The solution's per-helper order is run by edgepsl's evaluator, so the plan's makespan is the model's.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from edgepsl.plan.evaluate import evaluate
from edgepsl.plan.highs import add_assignment, new_model, run
from edgepsl.plan.instance import Instance
from edgepsl.plan.milp import MilpSolution
from edgepsl.plan.pipeline import pipeline_bound, stage_times
from edgepsl.plan.pure.constants import BWD, FWD
from edgepsl.plan.pure.pipeline import ST_A1, ST_B1, ST_D1, ST_D2, ST_HB, ST_HF, ST_M, ST_U1, ST_U2
from edgepsl.plan.schedule import Plan


def solve_pipeline_milp(instance: Instance, micro: np.ndarray, warm_start: Plan, time_limit: float = 60.0,
                        threads: int = 1, verbose: bool = False) -> MilpSolution:
    """The optimal plan with N = micro[j] micro-batches per client (or HiGHS's incumbent and gap at the time
    limit); never worse than `warm_start` (a valid plan with the same N), which also bounds every start."""
    t0 = time.perf_counter()
    micro = np.asarray(micro, dtype=np.int64)
    warm = evaluate(instance, warm_start)
    K, H = instance.K, instance.H
    st = stage_times(instance, micro)
    fits = instance.fits
    r, g, q = instance.r, instance.gap, instance.tail
    upper = warm.makespan
    big_m = upper + float(st[..., ST_HF].max() + st[..., ST_HB].max() + st[..., ST_D1].max() + st[..., ST_D2].max())
    h = new_model(time_limit, threads, verbose)
    y = add_assignment(h, instance)
    W = h.addVariable(lb=0.0, ub=upper, obj=1.0)

    def lin(values: np.ndarray, j: int) -> Any:
        return sum(float(values[j, i]) * y[j, i] for i in range(H) if fits[j, i])

    def var() -> Any:
        return h.addVariable(lb=0.0, ub=upper)

    def at(stage: int, j: int) -> Any:
        return lin(st[..., stage], j)

    start: dict[tuple[int, int, int], Any] = {}   # (client, kind, k) -> helper job start
    for j in range(K):
        n = int(micro[j])
        for k in range(n):
            start[j, FWD, k], start[j, BWD, k] = var(), var()
        if n == 1:
            h.addConstr(start[j, FWD, 0] - lin(r, j) >= 0)
            h.addConstr(start[j, BWD, 0] - start[j, FWD, 0] - lin(instance.p + g, j) >= 0)
            h.addConstr(W - start[j, BWD, 0] - lin(instance.p_bwd + q, j) >= 0)
            continue
        up1 = [var() for _ in range(n)]
        up2 = [var() for _ in range(n)]
        down = {(kind, k): var() for kind in (FWD, BWD) for k in range(n)}
        mid = [var() for _ in range(n)]
        last = [var() for _ in range(n)]
        for k in range(n):
            h.addConstr(up1[k] - (k + 1) * at(ST_A1, j) >= 0)
            h.addConstr(start[j, FWD, k] - up1[k] - at(ST_U1, j) >= 0)
            h.addConstr(down[FWD, k] - start[j, FWD, k] - at(ST_HF, j) >= 0)
            h.addConstr(mid[k] - down[FWD, k] - at(ST_D2, j) >= 0)
            h.addConstr(up2[k] - mid[k] - at(ST_M, j) >= 0)
            h.addConstr(start[j, BWD, k] - up2[k] - at(ST_U2, j) >= 0)
            h.addConstr(down[BWD, k] - start[j, BWD, k] - at(ST_HB, j) >= 0)
            h.addConstr(last[k] - down[BWD, k] - at(ST_D1, j) >= 0)
            if k:
                h.addConstr(up1[k] - up1[k - 1] - at(ST_U1, j) >= 0)
                h.addConstr(mid[k] - mid[k - 1] - at(ST_M, j) >= 0)
                h.addConstr(up2[k] - up2[k - 1] - at(ST_U2, j) >= 0)
                h.addConstr(last[k] - last[k - 1] - at(ST_B1, j) >= 0)
                for kind, stage, dstage in ((FWD, ST_HF, ST_D2), (BWD, ST_HB, ST_D1)):
                    h.addConstr(start[j, kind, k] - start[j, kind, k - 1] - at(stage, j) >= 0)
                    h.addConstr(down[kind, k] - down[kind, k - 1] - at(dstage, j) >= 0)
        h.addConstr(mid[0] - n * at(ST_A1, j) >= 0)
        h.addConstr(up2[0] - up1[n - 1] - at(ST_U1, j) >= 0)
        h.addConstr(last[0] - mid[n - 1] - at(ST_M, j) >= 0)
        h.addConstr(W - last[n - 1] - at(ST_B1, j) >= 0)
        for m in range(n):
            for k in range(n):
                if k <= m:  # forward k runs (and downloads) before backward m
                    h.addConstr(start[j, BWD, m] - start[j, FWD, k] - at(ST_HF, j) >= 0)
                    h.addConstr(down[BWD, m] - down[FWD, k] - at(ST_D2, j) >= 0)
                    continue
                o = h.addBinary()  # 1: backward m before forward k
                h.addConstr(start[j, FWD, k] - start[j, BWD, m] - at(ST_HB, j) + big_m * (1 - o) >= 0)
                h.addConstr(down[FWD, k] - down[BWD, m] - at(ST_D1, j) + big_m * (1 - o) >= 0)
                h.addConstr(start[j, BWD, m] - start[j, FWD, k] - at(ST_HF, j) + big_m * o >= 0)
                h.addConstr(down[BWD, m] - down[FWD, k] - at(ST_D2, j) + big_m * o >= 0)
    length = {FWD: st[..., ST_HF], BWD: st[..., ST_HB]}
    jobs = list(start)
    for x, (j, a, ka) in enumerate(jobs):
        for (k, b, kb) in jobs[x + 1:]:
            shared = [i for i in range(H) if k != j and fits[j, i] and fits[k, i]]
            if not shared:
                continue
            o = h.addBinary()
            for i in shared:
                away = big_m * (2 - y[j, i] - y[k, i])
                h.addConstr(start[k, b, kb] - start[j, a, ka] - float(length[a][j, i]) + big_m * (1 - o) + away >= 0)
                h.addConstr(start[j, a, ka] - start[k, b, kb] - float(length[b][k, i]) + big_m * o + away >= 0)
    out = run(h, "pipelined plan")
    assignment = out.assignment(y, K)
    orders = []
    for i in range(H):
        keyed = sorted((float(out.values[v.index]) + 0.5 * float(length[kind][j, assignment[j]]), kind, j, k)
                       for (j, kind, k), v in start.items() if assignment[j] == i)
        orders.append(np.array([[j, kind] for _, kind, j, _ in keyed], dtype=np.int64).reshape(-1, 2))
    meta = {"status": out.status, "time_limit": time_limit, "threads": threads, "micro_batches": "fixed"}
    plan = Plan(assignment, tuple(orders), "milp", meta, micro)
    timeline = evaluate(instance, plan)
    if timeline.makespan > warm.makespan:
        plan, timeline = Plan(warm_start.assignment, warm_start.orders, "milp", meta, warm_start.micro), warm
    return MilpSolution(plan=plan, timeline=timeline, instance=instance, bound_of=pipeline_bound,
                        solve_seconds=time.perf_counter() - t0, status=out.status, optimal=out.optimal,
                        objective=out.objective, dual_bound=out.dual_bound, mip_gap=out.mip_gap)
