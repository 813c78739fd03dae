"""Closed-loop estimates: every part time and link, smoothed from the rounds' per-job records, as a planning Instance.

Each quantity is a `Smoothed` value: the median of its last WINDOW observations (so one outlier round never moves
it), fed into an EWMA with factor ALPHA once WINDOW observations exist (before that, the plain median of what was
seen). Quantities never observed (a pair of client and helper that never worked together, a client that left the
records) keep their last estimate, else the declared start-up value. docs/runtime.md "Closed-loop estimates".

The estimates are medians, but a round's makespan is a maximum over chains of sums of right-skewed terms, so a plan of
the medians predicts less than its rounds realise. `expected_makespan` predicts a plan's makespan from the last
SCENARIOS rounds instead: the plan's timeline under each round's realised chain terms, the median over those rounds;
a pipelined plan's, whose rounds give no chain terms, from the realised / planned makespan of the last SCENARIOS
pipelined rounds (docs/runtime.md "Expected makespan").
"""
from __future__ import annotations

import dataclasses
from collections import deque
from typing import Any, Mapping, Sequence

import numpy as np

from edgepsl.plan.evaluate import evaluate, timeline_of
from edgepsl.plan.instance import Instance
from edgepsl.plan.schedule import Plan
from edgepsl.runtime import planning
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.links import Links, cut_bytes
from edgepsl.runtime.metrics import RoundRecord
from edgepsl.segment import Manifest

ALPHA = 0.3  # EWMA factor: a step change is 97 % absorbed after 10 rounds ((1 - 0.3) ** 10 = 0.028)
WINDOW = 3  # median of the last 3 observations: one outlier round is discarded
ESTIMATED = "estimated: closed loop from the round records"
MS_PER_BYTE_MBPS = 8e-3  # ms per byte on a 1 Mbps link (bytes * 8 bits / 1e6 * 1e3 ms)
HELPER_PARTS = ("part2_fwd", "part2_bwd")
# The last rounds (one aggregation period by default) whose realised chain terms predict a plan's makespan
SCENARIOS = 5
CHAIN_KH = ("r", "p", "d", "r_bwd", "p_bwd", "d_bwd")  # a chain's terms that depend on the helper (K x H)


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One complete round as it ran: per split client, its realised chain terms (ms, CHAIN_KH and l, l_bwd) and the
    helper it ran on."""

    terms: dict[str, dict[str, float]]
    helper: dict[str, str]


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
        # per client, what its records show: the forward job's arrival from the round start, part-3 (each half),
        # the backward job's arrival after the forward reply, part-1 backward; and the helper they came from
        self.client_terms: dict[tuple[str, str], Smoothed] = {}
        self.seen_on: dict[str, str] = {}
        self.helper_times = {(h, k): Smoothed(helper_profiles[h]["times"][k]) for h in helpers for k in HELPER_PARTS}
        self.pair_times: dict[tuple[str, str, str], Smoothed] = {}
        # per link: its two downloads (the forward reply, the backward reply) as (bytes, smoothed ms)
        self.downloads: dict[tuple[str, str], tuple[list[int], list[Smoothed]]] = {}
        self.cut_bytes = {name: cut_bytes(manifest, name, config.batch_size, config.float16)
                          for name in ("part1", "part2")}
        self.rounds = 0
        self.scenarios: deque[Scenario] = deque(maxlen=SCENARIOS)
        self.pipelined_ratios: deque[float] = deque(maxlen=SCENARIOS)  # realised / planned of pipelined rounds

    def _term(self, client: str, key: str, value: float) -> None:
        self.client_terms.setdefault((client, key), Smoothed(value)).update(value)

    def observe(self, record: RoundRecord) -> None:
        """Take one round's record (metrics.realised): its per-job records and realised chain durations.

        Per split client: its forward job's arrival (from the round start), part-3 (the realised l, each half), its
        backward job's arrival after the forward reply reached it, and part-1 backward (l'); per job: part-2 time =
        end - start on its helper (per pair, and the round's median per helper); per link: its two downloads, to
        which links() fits latency and bandwidth. Records of roles outside this fleet, and clients in local mode
        (no jobs), change nothing.
        """
        jobs: dict[str, dict[str, Mapping[str, Any]]] = {}
        for job in record.metrics.get("jobs", []):
            if job["client"] in self.clients and job["helper"] in self.helpers:
                jobs.setdefault(job["client"], {})[job["kind"]] = job
        names = list(record.measured.client_names)
        per_helper: dict[tuple[str, str], list[float]] = {}
        scenario = Scenario({}, {})
        for client, pair in jobs.items():
            if set(pair) != {"fwd", "bwd"} or client not in names or pair["fwd"].get("micro_batches", 1) > 1:
                continue  # a pipelined round's terms are not a chain's: its client keeps its declared times
            j, fwd, bwd = names.index(client), pair["fwd"], pair["bwd"]
            helper = fwd["helper"]
            self.seen_on[client] = helper
            scenario.helper[client] = helper
            scenario.terms[client] = {**{k: float(getattr(record.measured, k)[j, 0]) for k in CHAIN_KH},
                                      "l": float(record.measured.l[j]), "l_bwd": float(record.measured.l_bwd[j])}
            self._term(client, "arrival", fwd["arrival_ms"])
            self._term(client, "part3_half", float(record.measured.l[j]))
            self._term(client, "reply_to_bwd", bwd["arrival_ms"] - fwd["end_ms"] - fwd["download_ms"])
            self._term(client, "part1_bwd", float(record.measured.l_bwd[j]))
            for key, job in (("part2_fwd", fwd), ("part2_bwd", bwd)):
                took = job["end_ms"] - job["start_ms"]
                per_helper.setdefault((helper, key), []).append(took)
                self.pair_times.setdefault((client, helper, key), Smoothed(took)).update(took)
            sizes, times = self.downloads.setdefault((client, helper), ([0, 0], [Smoothed(0.0), Smoothed(0.0)]))
            for k, job in enumerate((fwd, bwd)):
                sizes[k] = int(job["bytes_down"])
                times[k].update(max(job["download_ms"], 0.0))
        for key, took in per_helper.items():  # one observation per round: the median over the helper's jobs
            self.helper_times[key].update(float(np.median(took)))
        if scenario.terms:
            self.scenarios.append(scenario)
        planned = record.metrics.get("planned_makespan_ms")
        if any(job.get("micro_batches", 1) > 1 for pair in jobs.values() for job in pair.values()) and planned:
            self.pipelined_ratios.append(float(record.metrics["realised_makespan_ms"]) / float(planned))
        self.rounds += 1

    def expected_makespan(self, instance: Instance, plan: Plan) -> float | None:
        """The makespan `plan` is expected to realise (ms): the median over the last SCENARIOS observed rounds of its
        timeline with each round's realised chain terms (None before any round was observed).

        A client's terms on the helper it ran on are the round's; on another helper its instance terms there, shifted
        by the round's departure on its own helper (>= 0). Clients a round did not observe (local, or not yet in the
        fleet) keep the instance's terms. A pipelined plan's: its timeline's makespan times the median realised /
        planned makespan of the last SCENARIOS pipelined rounds (None before any).
        """
        if plan.pipelined:
            if not self.pipelined_ratios:
                return None
            return float(timeline_of(instance, plan).makespan * np.median(self.pipelined_ratios))
        if not self.scenarios:
            return None
        clients, helpers = list(instance.client_names), list(instance.helper_names)
        spans = []
        for scenario in self.scenarios:
            arrays = {k: getattr(instance, k).copy() for k in (*CHAIN_KH, "l", "l_bwd")}
            for client, terms in scenario.terms.items():
                if client not in clients or scenario.helper[client] not in helpers or plan.local[clients.index(client)]:
                    continue
                j, i = clients.index(client), helpers.index(scenario.helper[client])
                for k in CHAIN_KH:
                    arrays[k][j] = np.maximum(arrays[k][j] + (terms[k] - arrays[k][j, i]), 0.0)
                arrays["l"][j], arrays["l_bwd"][j] = terms["l"], terms["l_bwd"]
            spans.append(evaluate(dataclasses.replace(instance, **arrays), plan).makespan)
        return float(np.median(spans))

    def part2_ms(self, client: str, helper: str, key: str) -> float:
        """A helper's part-2 time for one client: the pair's estimate, else the helper's over all its clients."""
        pair = self.pair_times.get((client, helper, key))
        return (pair or self.helper_times[(helper, key)]).value

    def links(self) -> Links:
        """The K x H links as estimated from the downloads (pairs never observed keep their probed or declared
        values)."""
        latency, mbps = self.declared_links.latency_ms.copy(), self.declared_links.mbps.copy()
        source = [list(row) for row in self.declared_links.source]
        for (c, h), (sizes, times) in self.downloads.items():
            j, i = self.clients.index(c), self.helpers.index(h)
            ms = np.array([value.value for value in times])
            latency[j, i], slope = _fit_link(np.array(sizes, dtype=np.float64), ms, MS_PER_BYTE_MBPS / mbps[j, i])
            mbps[j, i] = MS_PER_BYTE_MBPS / max(slope, 1e-12)
            source[j][i] = ESTIMATED
        return Links(self.clients, self.helpers, latency, mbps, tuple(tuple(row) for row in source), {})

    def client_times(self, links: Links) -> dict[str, dict[str, float]]:
        """Every client's part times: declared until it was observed; then part-1 forward = its forward arrival -
        the upload of cut 1 on its link, part-3 forward = half of part-3, part-3 backward = its backward arrival
        after the forward reply - part-3 forward - the upload of cut 2, part-1 backward as observed (all >= 0).
        Time an upload takes beyond its link's fit (the sender's serialisation, its wait for a core) is thus the
        client's, and the instance's release terms r and l + r' are the realised ones."""
        out = {}
        for j, c in enumerate(self.clients):
            if c not in self.seen_on:
                out[c] = dict(self.client_profiles[c]["times"])
                continue
            i = self.helpers.index(self.seen_on[c])
            upload = {name: links.latency_ms[j, i] + n * MS_PER_BYTE_MBPS / links.mbps[j, i]
                      for name, n in self.cut_bytes.items()}
            term = {key: self.client_terms[(c, key)].value for key in
                    ("arrival", "part3_half", "reply_to_bwd", "part1_bwd")}
            out[c] = {"part1_fwd": max(0.0, term["arrival"] - upload["part1"]), "part3_fwd": term["part3_half"],
                      "part3_bwd": max(0.0, term["reply_to_bwd"] - term["part3_half"] - upload["part2"]),
                      "part1_bwd": term["part1_bwd"]}
        return out

    def instance(self) -> Instance:
        """The planning instance with every time replaced by its estimate (same clients, helpers, memory, capacity),
        built by planning.build_instance."""
        links = self.links()
        times = self.client_times(links)
        clients = {c: {**self.client_profiles[c], "times": times[c]} for c in self.clients}
        helpers = {h: {**self.helper_profiles[h],
                       "times": {k: np.array([self.part2_ms(c, h, k) for c in self.clients]) for k in HELPER_PARTS}}
                   for h in self.helpers}
        built = planning.build_instance(self.config, self.manifest, self.clients, self.helpers, clients, helpers, links)
        return dataclasses.replace(built, meta={**built.meta, "estimated_rounds": self.rounds})
