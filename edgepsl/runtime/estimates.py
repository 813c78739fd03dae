"""Closed-loop estimates: every part time and link, smoothed from the rounds' per-job records, as a planning Instance.

Each quantity is a `Smoothed` value: the median of its last WINDOW observations (so one outlier round never moves
it), fed into an EWMA with factor ALPHA once WINDOW observations exist (before that, the plain median of what was
seen). Quantities never observed (a pair of client and helper that never worked together, a client that left the
records) keep their last estimate, else the declared start-up value. docs/runtime.md "Closed-loop estimates".
"""
from __future__ import annotations

import dataclasses
from collections import deque
from typing import Any, Mapping, Sequence

import numpy as np

from edgepsl.plan.instance import Instance
from edgepsl.runtime import planning
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.links import Links
from edgepsl.runtime.metrics import RoundRecord
from edgepsl.segment import Manifest

ALPHA = 0.3  # EWMA factor: a step change is 97 % absorbed after 10 rounds ((1 - 0.3) ** 10 = 0.028)
WINDOW = 3  # median of the last 3 observations: one outlier round is discarded
ESTIMATED = "estimated: closed loop from the round records"
MS_PER_BYTE_MBPS = 8e-3  # ms per byte on a 1 Mbps link (bytes * 8 bits / 1e6 * 1e3 ms)
CLIENT_PARTS = ("part1_fwd", "part1_bwd", "part3_fwd", "part3_bwd")
HELPER_PARTS = ("part2_fwd", "part2_bwd")


class Smoothed:
    """One smoothed quantity (its declared value until observed): EWMA (ALPHA) of the median of the last WINDOW
    observations."""

    def __init__(self, prior: float) -> None:
        self.value = float(prior)
        self.recent: deque[float] = deque(maxlen=WINDOW)
        self.count = 0

    def update(self, x: float) -> None:
        """Take one observation (non-finite ones are ignored)."""
        if not np.isfinite(x):
            return
        self.recent.append(float(x))
        self.count += 1
        middle = float(np.median(self.recent))
        self.value = middle if self.count <= WINDOW else self.value + ALPHA * (middle - self.value)


def _fit_link(nbytes: np.ndarray, ms: np.ndarray, ms_per_byte: float) -> tuple[float, float]:
    """(latency ms, ms per byte) of a link from its transfers' sizes and times: least squares of
    ms = latency + bytes * slope, both kept >= 0; with a single size, the slope stays `ms_per_byte` (the declared
    one) and the latency takes the rest."""
    if np.ptp(nbytes) > 0:
        slope = float(np.cov(nbytes, ms, bias=True)[0, 1] / np.var(nbytes))
        latency = float(ms.mean() - slope * nbytes.mean())
        if slope > 0 and latency >= 0:
            return latency, slope
        if slope > 0:
            return 0.0, float((nbytes * ms).sum() / (nbytes * nbytes).sum())
    return max(0.0, float(ms.mean() - ms_per_byte * nbytes.mean())), ms_per_byte


class Estimates:
    """Smoothed part times of every client, part-2 times of every helper per client, and every link's latency and
    bandwidth; built from the same declared profiles and links as planning.build_instance, updated by observe()."""

    def __init__(self, config: RunConfig, manifest: Manifest, clients: Sequence[str], helpers: Sequence[str],
                 client_profiles: Mapping[str, dict], helper_profiles: Mapping[str, dict], links: Links) -> None:
        self.config, self.manifest = config, manifest
        self.clients, self.helpers = tuple(clients), tuple(helpers)
        self.client_profiles, self.helper_profiles = client_profiles, helper_profiles
        self.declared_links = links
        self.client_times = {(c, k): Smoothed(client_profiles[c]["times"][k])
                             for c in clients for k in CLIENT_PARTS}
        self.helper_times = {(h, k): Smoothed(helper_profiles[h]["times"][k]) for h in helpers for k in HELPER_PARTS}
        self.pair_times: dict[tuple[str, str, str], Smoothed] = {}
        # per link: the four transfers of a chain (forward upload and download, backward upload and download),
        # each smoothed on its own as (bytes, ms); the link's latency and bandwidth are fitted to the four
        self.transfers: dict[tuple[str, str], tuple[list[int], list[Smoothed]]] = {}
        self.rounds = 0

    def observe(self, record: RoundRecord) -> None:
        """Take one round's record (metrics.realised): its per-job records and realised chain durations.

        Per split client: part-1 forward = forward arrival - upload (from the round start, so the start-up of its
        round is included as the plan's release), part-3 = the realised l (each half), part-1 backward = l'; per job:
        part-2 time = end - start on its helper (per pair, and the round's median per helper); per link: the time of
        each of a chain's four transfers, to which links() fits the latency and bandwidth.
        Records of roles outside this fleet, and clients in local mode (no jobs), change nothing.
        """
        jobs: dict[str, dict[str, Mapping[str, Any]]] = {}
        for job in record.metrics.get("jobs", []):
            if job["client"] in self.clients and job["helper"] in self.helpers:
                jobs.setdefault(job["client"], {})[job["kind"]] = job
        names = list(record.measured.client_names)
        per_helper: dict[tuple[str, str], list[float]] = {}
        for client, pair in jobs.items():
            if set(pair) != {"fwd", "bwd"} or client not in names:
                continue
            j, fwd, bwd = names.index(client), pair["fwd"], pair["bwd"]
            helper = fwd["helper"]
            self.client_times[(client, "part1_fwd")].update(fwd["arrival_ms"] - fwd["upload_ms"])
            for key in ("part3_fwd", "part3_bwd"):
                self.client_times[(client, key)].update(float(record.measured.l[j]))
            self.client_times[(client, "part1_bwd")].update(float(record.measured.l_bwd[j]))
            for key, job in (("part2_fwd", fwd), ("part2_bwd", bwd)):
                took = job["end_ms"] - job["start_ms"]
                per_helper.setdefault((helper, key), []).append(took)
                self.pair_times.setdefault((client, helper, key), Smoothed(took)).update(took)
            sides = ((fwd["bytes_up"], fwd["upload_ms"]), (fwd["bytes_down"], fwd["download_ms"]),
                     (bwd["bytes_up"], bwd["upload_ms"]), (bwd["bytes_down"], bwd["download_ms"]))
            sizes, times = self.transfers.setdefault((client, helper), ([0] * 4, [Smoothed(0.0) for _ in sides]))
            for k, (nbytes, ms) in enumerate(sides):
                sizes[k] = int(nbytes)
                times[k].update(max(ms, 0.0))
        for key, took in per_helper.items():  # one observation per round: the median over the helper's jobs
            self.helper_times[key].update(float(np.median(took)))
        self.rounds += 1

    def part2_ms(self, client: str, helper: str, key: str) -> float:
        """A helper's part-2 time for one client: the pair's estimate, else the helper's over all its clients."""
        pair = self.pair_times.get((client, helper, key))
        return (pair or self.helper_times[(helper, key)]).value

    def links(self) -> Links:
        """The K x H links as estimated (pairs never observed keep their probed or declared values)."""
        latency, mbps = self.declared_links.latency_ms.copy(), self.declared_links.mbps.copy()
        source = [list(row) for row in self.declared_links.source]
        for (c, h), (sizes, times) in self.transfers.items():
            j, i = self.clients.index(c), self.helpers.index(h)
            ms = np.array([value.value for value in times])
            latency[j, i], slope = _fit_link(np.array(sizes, dtype=np.float64), ms, MS_PER_BYTE_MBPS / mbps[j, i])
            mbps[j, i] = MS_PER_BYTE_MBPS / max(slope, 1e-12)
            source[j][i] = ESTIMATED
        return Links(self.clients, self.helpers, latency, mbps, tuple(tuple(row) for row in source), {})

    def instance(self) -> Instance:
        """The planning instance with every time replaced by its estimate (same clients, helpers, memory, capacity),
        built by planning.build_instance."""
        clients = {c: {**self.client_profiles[c], "times": {k: self.client_times[(c, k)].value for k in CLIENT_PARTS}}
                   for c in self.clients}
        helpers = {h: {**self.helper_profiles[h],
                       "times": {k: np.array([self.part2_ms(c, h, k) for c in self.clients]) for k in HELPER_PARTS}}
                   for h in self.helpers}
        built = planning.build_instance(self.config, self.manifest, self.clients, self.helpers, clients, helpers,
                                        self.links())
        return dataclasses.replace(built, meta={**built.meta, "estimated_rounds": self.rounds})
