"""What a round really did: the realised timeline from the roles' reports, makespans, utilisation and overhead."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgepsl.plan.instance import STAGE_FIELDS, Instance
from edgepsl.plan.pure.constants import BWD, FWD
from edgepsl.plan.schedule import KIND_NAMES, LOCAL, Plan, Timeline
from edgepsl.runtime.protocol import ClientRoundReport, HelperRoundReport, JobRecord


@dataclass(frozen=True)
class RoundRecord:
    """The realised timeline of one round, its chain durations as an Instance (for drawing), and its metrics."""

    timeline: Timeline
    measured: Instance
    metrics: dict[str, Any]
    client_steps: dict[str, dict[str, float]] = field(default_factory=dict)  # per client: compute + padding (ms)


def _jobs_by_client(helper_reports: Mapping[str, HelperRoundReport]) -> dict[tuple[str, int], tuple[JobRecord, str]]:
    """Each client's forward and backward job; a client's micro-batch jobs of one kind as one record: the first
    arrival and start, the last end, compute, padding and bytes summed, planned when all were."""
    out: dict[tuple[str, int], tuple[JobRecord, str]] = {}
    for helper, report in helper_reports.items():
        for job in report.jobs:
            key = (job.client, job.kind)
            if key in out:
                a = out[key][0]
                job = JobRecord(a.client, a.kind, min(a.arrival, job.arrival), min(a.start, job.start),
                                max(a.end, job.end), a.compute_ms + job.compute_ms, a.pad_ms + job.pad_ms,
                                max(a.down_s, job.down_s), a.bytes_in + job.bytes_in, a.bytes_out + job.bytes_out,
                                a.planned and job.planned, max(a.micro, job.micro))
            out[key] = (job, helper)
    return out


def _busy_by_client(helper_reports: Mapping[str, HelperRoundReport]) -> dict[tuple[str, int], float]:
    """Each client's helper time per kind (ms): the sum over its micro-batch jobs."""
    busy: dict[tuple[str, int], float] = {}
    for report in helper_reports.values():
        for job in report.jobs:
            busy[(job.client, job.kind)] = busy.get((job.client, job.kind), 0.0) + job.end - job.start
    return busy


def job_records(instance: Instance, plan: Plan, planned: Timeline, clients: Sequence[str], t0: float,
                client_reports: Mapping[str, ClientRoundReport],
                helper_reports: Mapping[str, HelperRoundReport]) -> list[dict[str, Any]]:
    """One record per helper job, from the helper's and its client's reports (ms, bytes).

    arrival_ms / start_ms / end_ms: at the helper, from the round start, beside the plan's planned_release_ms and
    planned_start_ms; queue_wait_ms: arrival to start; compute_ms / pad_ms: the helper's compute and emulation
    padding; upload_ms: the client's paced upload plus the wire until arrival; download_ms: end of the job until
    the client had the reply (the emulated download included); bytes_up / bytes_down: tensor bytes each way. A client
    whose round ran N > 1 micro-batches (micro_batches) has one record per kind over its micro-batch jobs: the
    first arrival and start, the last end, compute, padding and bytes summed.
    """
    jobs = _jobs_by_client(helper_reports)
    out = []
    for j, name in enumerate(clients):
        if plan.assignment[j] == LOCAL:
            continue
        rep, i = client_reports[name], int(plan.assignment[j])
        release = (float(instance.r[j, i]), float(planned.fwd_end[j] + instance.gap[j, i]))
        start = (float(planned.fwd_start[j]), float(planned.bwd_start[j]))
        for kind, side in ((FWD, rep.fwd), (BWD, rep.bwd)):
            job, helper = jobs[(name, kind)]
            out.append({"client": name, "helper": helper, "kind": KIND_NAMES[kind],
                        "arrival_ms": job.arrival - t0, "start_ms": job.start - t0, "end_ms": job.end - t0,
                        "planned_release_ms": release[kind], "planned_start_ms": start[kind],
                        "queue_wait_ms": job.start - job.arrival, "compute_ms": job.compute_ms,
                        "pad_ms": job.pad_ms, "upload_ms": side.up_s * 1e3 + job.arrival - side.sent,
                        "download_ms": side.recv - job.end, "bytes_up": job.bytes_in,
                        "bytes_down": job.bytes_out, "planned": job.planned,
                        "micro_batches": int(plan.micro_batches[j])})
    return out


def job_summary(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The round's per-job records summarised: mean and max queue wait, mean compute and transfer, total bytes (all 0
    when every client trained locally)."""
    if not records:
        return {"jobs": 0, "queue_wait_ms_mean": 0.0, "queue_wait_ms_max": 0.0, "compute_ms_mean": 0.0,
                "transfer_ms_mean": 0.0, "transfer_bytes": 0}
    wait = np.array([r["queue_wait_ms"] for r in records])
    transfer = np.array([r["upload_ms"] + r["download_ms"] for r in records])
    return {"jobs": len(records), "queue_wait_ms_mean": float(wait.mean()), "queue_wait_ms_max": float(wait.max()),
            "compute_ms_mean": float(np.mean([r["compute_ms"] for r in records])),
            "transfer_ms_mean": float(transfer.mean()),
            "transfer_bytes": int(sum(r["bytes_up"] + r["bytes_down"] for r in records))}


def realised(instance: Instance, plan: Plan, planned: Timeline, clients: Sequence[str], t0: float,
             client_reports: Mapping[str, ClientRoundReport], helper_reports: Mapping[str, HelperRoundReport]) -> RoundRecord:
    """Build the round's record from the reports (planned: the plan's timeline); times in ms from the round start t0.

    A client in local mode reports its own part-2 steps as its two exchanges: they give its job times, with no
    transfers and no helper."""
    jobs, busy_ms = _jobs_by_client(helper_reports), _busy_by_client(helper_reports)
    K, H = instance.K, instance.H
    times = {k: np.zeros(K) for k in ("fs", "fe", "bs", "be", "fin")}
    chain = {k: np.zeros(K) for k in ("r", "p", "d", "l", "r_bwd", "p_bwd", "d_bwd", "l_bwd")}
    overhead = np.zeros((K, 2))
    split = plan.assignment != LOCAL
    for j, name in enumerate(clients):
        if not split[j]:
            rep = client_reports[name]
            fs, fe, bs, be = rep.fwd.sent - t0, rep.fwd.recv - t0, rep.bwd.sent - t0, rep.bwd.recv - t0
            times["fs"][j], times["fe"][j], times["bs"][j], times["be"][j] = fs, fe, bs, be
            times["fin"][j] = rep.finish - t0
            chain["r"][j], chain["p"][j], chain["p_bwd"][j] = fs, fe - fs, be - bs
            chain["l"][j] = chain["r_bwd"][j] = (bs - fe) / 2.0
            chain["l_bwd"][j] = rep.finish - rep.bwd.recv
            continue
        rep, (fwd, _), (bwd, _) = client_reports[name], jobs[(name, FWD)], jobs[(name, BWD)]
        times["fs"][j], times["fe"][j] = fwd.start - t0, fwd.end - t0
        times["bs"][j], times["be"][j] = bwd.start - t0, bwd.end - t0
        times["fin"][j] = rep.finish - t0
        part3 = rep.bwd.sent - rep.fwd.recv
        chain["r"][j] = fwd.arrival - t0
        chain["p"][j] = busy_ms[(name, FWD)]
        chain["d"][j] = rep.fwd.recv - fwd.end
        chain["l"][j] = part3 / 2.0
        chain["r_bwd"][j] = bwd.arrival - rep.fwd.recv - part3 / 2.0
        chain["p_bwd"][j] = busy_ms[(name, BWD)]
        chain["d_bwd"][j] = rep.bwd.recv - bwd.end
        chain["l_bwd"][j] = rep.finish - rep.bwd.recv
        for k, (job, side) in enumerate(((fwd, rep.fwd), (bwd, rep.bwd))):
            overhead[j, k] = (side.recv - side.sent) - (job.end - job.arrival) - job.down_s * 1e3
    a = plan.assignment[split]
    busy = np.bincount(a, weights=(chain["p"] + chain["p_bwd"])[split], minlength=H)
    span = np.zeros(H)
    np.maximum.at(span, a, times["be"][split])
    # a round ends with its last client and its helpers' last work (in local loss and the two-part split a client
    # may finish before its helper's last job; SmashMix steps follow a helper's jobs)
    helper_ends = [job.end - t0 for job, _ in jobs.values()] + [
        report.smashmix_end - t0 for report in helper_reports.values() if report.smashmix_end is not None]
    makespan = float(max(times["fin"].max(), max(helper_ends, default=0.0)))
    job_start, job_end = _micro_job_times(plan, clients, t0, helper_reports) if plan.pipelined else (None, None)
    timeline = Timeline(times["fs"], times["fe"], times["bs"], times["be"], times["fin"], busy, span - busy, span,
                        makespan, job_start, job_end)
    wide = {k: np.tile(np.maximum(v, 0.0)[:, None], (1, H)) for k, v in chain.items() if k not in ("l", "l_bwd")}
    # A pipelined round keeps the plan's stage fields: its Gantt chart draws the client stages by the model's rules.
    stages = {name: getattr(instance, name) for name, _, _ in STAGE_FIELDS} if plan.pipelined else {}
    if stages:  # the uploads are parts of the realised r and r'
        stages.update(r_up=np.minimum(stages["r_up"], wide["r"]), r_bwd_up=np.minimum(stages["r_bwd_up"], wide["r_bwd"]))
    measured = Instance(**wide, l=np.maximum(chain["l"], 0.0), l_bwd=np.maximum(chain["l_bwd"], 0.0),
                        mem=instance.mem, cap=instance.cap, client_names=instance.client_names,
                        helper_names=instance.helper_names, meta={"measured": "realised chain durations (ms)"},
                        **stages)
    all_jobs = [job for job, _ in jobs.values()]
    records = job_records(instance, plan, planned, clients, t0, client_reports, helper_reports)
    metrics = {
        "realised_makespan_ms": makespan,
        "helper_utilisation": (busy / makespan).round(4).tolist() if makespan > 0 else [0.0] * H,
        "fallback_jobs": int(sum(1 for job in all_jobs if not job.planned)),
        "overhead_ms_per_job": float(overhead[split].mean()) if split.any() else 0.0,
        "overhead_share": float(overhead[split].sum(axis=1).mean() / makespan) if makespan > 0 and split.any() else 0.0,
        "local_clients": int((~split).sum()),
        "bytes": int(sum(job.bytes_in + job.bytes_out for job in all_jobs)),
        "job_summary": job_summary(records),
        "jobs": records,
    }
    steps = {name: {k: rep.compute_ms[k] + rep.pad_ms[k] for k in rep.compute_ms}
             for name, rep in client_reports.items()}
    return RoundRecord(timeline, measured, metrics, steps)


def _micro_job_times(plan: Plan, clients: Sequence[str], t0: float,
                     helper_reports: Mapping[str, HelperRoundReport]) -> tuple[np.ndarray, np.ndarray]:
    """Realised start and end (ms from the round start) of every micro-batch job, flat in the plan's order."""
    ran = {(job.client, job.kind, job.micro): job for report in helper_reports.values() for job in report.jobs}
    starts, ends = [], []
    for i in range(len(plan.orders)):
        for j, kind, k in plan.jobs(i):
            job = ran[(clients[j], kind, k)]
            starts.append(job.start - t0)
            ends.append(job.end - t0)
    return np.array(starts), np.array(ends)


class MetricsLog:
    """metrics.jsonl of a run: one JSON object per round, appended and flushed; truncated on resume."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def truncate_after(self, round_: int) -> None:
        """Keep only the lines of rounds <= round_ (a resumed run rewrites what follows)."""
        if self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines() if json.loads(line)["round"] <= round_]
            self.path.write_text("".join(line + "\n" for line in kept))

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one round's metrics."""
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, allow_nan=False) + "\n")

    def read(self) -> list[dict[str, Any]]:
        """Every round's metrics, in order."""
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
