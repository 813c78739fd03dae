"""Closed-loop estimates: every part time and link, smoothed from the rounds' per-job records, as a planning Instance.

Each quantity is a `Smoothed` value: the median of its last WINDOW observations (so one outlier round never moves
it), fed into an EWMA with factor ALPHA once WINDOW observations exist (before that, the plain median of what was
seen). Quantities never observed (a pair of client and helper that never worked together, a client that left the
records) keep their last estimate, else the declared start-up value. docs/runtime.md "Closed-loop estimates".

The estimates are medians, but a round's makespan is a maximum over chains of sums of right-skewed terms, so a plan of
the medians predicts less than its rounds realise. `expected_makespan` predicts a plan's makespan from the last
SCENARIOS rounds instead (`scenario_instances`: the instance under each round's realised chain terms), the median of
its makespans on them; a pipelined plan's, whose rounds give no chain terms, from the realised / planned makespan of
the last SCENARIOS pipelined rounds (docs/runtime.md "Planned makespan").
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
from edgepsl.runtime.links import Links, cut_bytes, label_bytes
from edgepsl.runtime.metrics import RoundRecord
from edgepsl.runtime.modes import LearningMode
from edgepsl.segment import Manifest

ALPHA = 0.3  # EWMA factor: a step change is 97 % absorbed after 10 rounds ((1 - 0.3) ** 10 = 0.028)
WINDOW = 3  # median of the last 3 observations: one outlier round is discarded
ESTIMATED = "estimated: closed loop from the round records"
MS_PER_BYTE_MBPS = 8e-3  # ms per byte on a 1 Mbps link (bytes * 8 bits / 1e6 * 1e3 ms)
HELPER_PARTS = ("part2_fwd", "part2_bwd")
TWO_PART = "two_part"  # the helper's whole step in the two-part split (labels = "helper")
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
        self.modes = {c: LearningMode.of(config, c) for c in clients}
        self.two_part = config.labels == "helper"
        # per client, what its records show: the forward job's arrival from the round start, part-3 (each half),
        # the backward job's arrival after the forward reply, part-1 backward, the local-loss aux step; and the
        # helper they came from
        self.client_terms: dict[tuple[str, str], Smoothed] = {}
        self.seen_on: dict[str, str] = {}
        # the helper's work per job kind: part-2 forward and backward, or in the two-part split its whole step
        # (the forward job; the backward job is empty)
        self.helper_keys = (TWO_PART,) if self.two_part else HELPER_PARTS
        self.helper_times = {(h, k): Smoothed(_declared_helper_ms(helper_profiles[h], k))
                             for h in helpers for k in self.helper_keys}
        self.pair_times: dict[tuple[str, str, str], Smoothed] = {}
        # per link: its downloads by kind (0 the forward reply, 1 the backward reply) as (bytes, smoothed ms)
        self.downloads: dict[tuple[str, str], dict[int, tuple[int, Smoothed]]] = {}
        self.cut_bytes = {name: cut_bytes(manifest, name, config.batch_size, config.float16)
                          for name in ("part1", "part2")}
        if self.two_part:  # the labels travel with the cut-1 activations
            self.cut_bytes["part1"] += label_bytes(manifest, config.batch_size)
        self.rounds = 0
        self.scenarios: deque[Scenario] = deque(maxlen=SCENARIOS)
        self.pipelined_ratios: deque[float] = deque(maxlen=SCENARIOS)  # realised / planned of pipelined rounds

    def _term(self, client: str, key: str, value: float) -> None:
        self.client_terms.setdefault((client, key), Smoothed(value)).update(value)

    def observe(self, record: RoundRecord) -> None:
        """Take one round's record (metrics.realised): its per-job records, realised chain durations and the
        clients' step times.

        Per split client: its forward job's arrival (from the round start); in the U-shape part-3 (the realised l,
        each half) and its backward job's arrival after the forward reply reached it; part-1 backward (l') where
        the client waits for the cut-1 gradient; in local loss its aux step (the report's local step, compute and
        padding). Per job: the helper's time = end - start (per pair, and the round's median per helper): part-2
        forward and backward, or the two-part step (the forward job). Per link: the downloads the client received
        when they arrived (not in local loss, where its own step may hold a reply back; in the two-part split the
        cut-1 gradient only), to which links() fits latency and bandwidth. Records of roles outside this fleet,
        and clients in local mode (no jobs), change nothing.
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
            # mode "auto": a client ran local loss where its helper returned no cut-1 gradient
            mode = self.modes[client].in_plan(bwd["bytes_down"] == 0)
            helper = fwd["helper"]
            self.seen_on[client] = helper
            scenario.helper[client] = helper
            scenario.terms[client] = {**{k: float(getattr(record.measured, k)[j, 0]) for k in CHAIN_KH},
                                      "l": float(record.measured.l[j]), "l_bwd": float(record.measured.l_bwd[j])}
            self._term(client, "arrival", fwd["arrival_ms"])
            if not self.two_part:
                self._term(client, "part3_half", float(record.measured.l[j]))
                self._term(client, "reply_to_bwd", bwd["arrival_ms"] - fwd["end_ms"] - fwd["download_ms"])
            if mode.cut1_gradient:
                self._term(client, "part1_bwd", float(record.measured.l_bwd[j]))
            steps = record.client_steps.get(client)
            if mode.local_loss and steps is not None:
                self._term(client, "aux", steps["part1_bwd"])
            kinds = ((TWO_PART, fwd),) if self.two_part else (("part2_fwd", fwd), ("part2_bwd", bwd))
            for key, job in kinds:
                took = job["end_ms"] - job["start_ms"]
                per_helper.setdefault((helper, key), []).append(took)
                self.pair_times.setdefault((client, helper, key), Smoothed(took)).update(took)
            if mode.local_loss:
                continue
            seen = self.downloads.setdefault((client, helper), {})
            for k, job in enumerate((fwd, bwd)):
                if self.two_part and k == 0:
                    continue  # the two-part forward job returns nothing: its cut-1 gradient is the backward's
                smoothed = seen[k][1] if k in seen else Smoothed(0.0)
                smoothed.update(max(job["download_ms"], 0.0))
                seen[k] = (int(job["bytes_down"]), smoothed)
        for key, took in per_helper.items():  # one observation per round: the median over the helper's jobs
            self.helper_times[key].update(float(np.median(took)))
        if scenario.terms:
            self.scenarios.append(scenario)
        planned = record.metrics.get("planned_makespan_ms")
        if any(job.get("micro_batches", 1) > 1 for pair in jobs.values() for job in pair.values()) and planned:
            self.pipelined_ratios.append(float(record.metrics["realised_makespan_ms"]) / float(planned))
        self.rounds += 1

    def scenario_instances(self, instance: Instance) -> list[Instance]:
        """The instance under each of the last SCENARIOS observed rounds (oldest first; none before any round).

        A client's chain terms on the helper it ran on are the round's; on another helper its instance terms there,
        shifted by the round's departure on its own helper (>= 0); its part-3 terms (l, l_bwd) the round's. Clients a
        round did not observe (local, on a helper no longer in `instance`, or not yet in the fleet) keep the
        instance's terms.
        """
        clients, helpers = list(instance.client_names), list(instance.helper_names)
        worlds = []
        for scenario in self.scenarios:
            arrays = {k: getattr(instance, k).copy() for k in (*CHAIN_KH, "l", "l_bwd")}
            for client, terms in scenario.terms.items():
                if client not in clients or scenario.helper[client] not in helpers:
                    continue
                j, i = clients.index(client), helpers.index(scenario.helper[client])
                for k in CHAIN_KH:
                    arrays[k][j] = np.maximum(arrays[k][j] + (terms[k] - arrays[k][j, i]), 0.0)
                arrays["l"][j], arrays["l_bwd"][j] = terms["l"], terms["l_bwd"]
            worlds.append(dataclasses.replace(instance, **arrays))
        return worlds

    def expected_makespan(self, instance: Instance, plan: Plan) -> float | None:
        """The makespan `plan` is expected to realise (ms): the median of its makespans on scenario_instances, each
        with the helpers' SmashMix steps (planning.with_smashmix; None before any round was observed). A pipelined
        plan's: its timeline's makespan times the median realised / planned makespan of the last SCENARIOS pipelined
        rounds (None before any)."""
        if plan.pipelined:
            if not self.pipelined_ratios:
                return None
            return float(timeline_of(instance, plan).makespan * np.median(self.pipelined_ratios))
        worlds = self.scenario_instances(instance)
        if not worlds:
            return None
        return float(np.median([planning.with_smashmix(self.config, world, plan, evaluate(world, plan)).makespan
                                for world in worlds]))

    def for_fleet(self, clients: Sequence[str], helpers: Sequence[str], client_profiles: Mapping[str, dict],
                  helper_profiles: Mapping[str, dict], links: Links) -> Estimates:
        """Estimates for a changed fleet (a helper lost, roles joined): what was learnt of the members that stay (their
        smoothed terms, pairs, links and the observed rounds) carries over; new members start from their declared
        times and probed links. A client whose last helper left keeps its terms but plans with its declared part
        times until it is observed again (its upload cannot be told from its part-1 without that link)."""
        new = Estimates(self.config, self.manifest, clients, helpers, client_profiles, helper_profiles, links)
        new.client_terms = {key: v for key, v in self.client_terms.items() if key[0] in new.clients}
        new.seen_on = {c: h for c, h in self.seen_on.items() if c in new.clients and h in new.helpers}
        new.helper_times.update({key: v for key, v in self.helper_times.items() if key[0] in new.helpers})
        new.pair_times = {key: v for key, v in self.pair_times.items()
                          if key[0] in new.clients and key[1] in new.helpers}
        new.downloads = {key: v for key, v in self.downloads.items() if key[0] in new.clients and key[1] in new.helpers}
        new.scenarios.extend(self.scenarios)
        new.pipelined_ratios.extend(self.pipelined_ratios)
        new.rounds = self.rounds
        return new

    def part2_ms(self, client: str, helper: str, key: str) -> float:
        """A helper's part-2 time for one client: the pair's estimate, else the helper's over all its clients."""
        pair = self.pair_times.get((client, helper, key))
        return (pair or self.helper_times[(helper, key)]).value

    def links(self) -> Links:
        """The K x H links as estimated from the downloads (pairs never observed keep their probed or declared
        values)."""
        latency, mbps = self.declared_links.latency_ms.copy(), self.declared_links.mbps.copy()
        source = [list(row) for row in self.declared_links.source]
        for (c, h), seen in self.downloads.items():
            if not seen:
                continue
            j, i = self.clients.index(c), self.helpers.index(h)
            sizes = np.array([n for n, _ in seen.values()], dtype=np.float64)
            ms = np.array([value.value for _, value in seen.values()])
            latency[j, i], slope = _fit_link(sizes, ms, MS_PER_BYTE_MBPS / mbps[j, i])
            mbps[j, i] = MS_PER_BYTE_MBPS / max(slope, 1e-12)
            source[j][i] = ESTIMATED
        return Links(self.clients, self.helpers, latency, mbps, tuple(tuple(row) for row in source), {})

    def client_times(self, links: Links) -> dict[str, dict[str, float]]:
        """Every client's part times, each declared until observed: part-1 forward = its forward arrival - the
        upload of cut 1 (and the labels, two-part) on its link, part-3 forward = half of part-3, part-3 backward =
        its backward arrival after the forward reply - part-3 forward - the upload of cut 2, part-1 backward as
        observed, and `aux` (local loss: the aux step as observed; absent for a client that declared none), all
        >= 0. Time an upload takes beyond its link's fit (the sender's serialisation, its wait for a core) is thus
        the client's, and the instance's release terms r and l + r' are the realised ones."""
        out = {}
        for j, c in enumerate(self.clients):
            times = dict(self.client_profiles[c]["times"])
            declared_aux = self.client_profiles[c].get("aux_ms")
            if declared_aux is not None:
                times["aux"] = float(declared_aux)
            out[c] = times
            if c not in self.seen_on:
                continue
            i = self.helpers.index(self.seen_on[c])
            upload = {name: links.latency_ms[j, i] + n * MS_PER_BYTE_MBPS / links.mbps[j, i]
                      for name, n in self.cut_bytes.items()}
            term = {key: value.value for (client, key), value in self.client_terms.items() if client == c}
            times["part1_fwd"] = max(0.0, term["arrival"] - upload["part1"])
            if "part3_half" in term:
                times["part3_fwd"] = term["part3_half"]
                times["part3_bwd"] = max(0.0, term["reply_to_bwd"] - term["part3_half"] - upload["part2"])
            for key in ("part1_bwd", "aux"):
                if key in term:
                    times[key] = term[key]
        return out

    def instance(self) -> Instance:
        """The planning instance with every time replaced by its estimate (same clients, helpers, memory, capacity,
        learning modes), built by planning.build_instance."""
        links = self.links()
        times = self.client_times(links)
        clients = {c: {**self.client_profiles[c], "times": {k: v for k, v in times[c].items() if k != "aux"},
                       "aux_ms": times[c].get("aux")} for c in self.clients}
        helpers = {}
        for h in self.helpers:
            estimated = {k: np.array([self.part2_ms(c, h, k) for c in self.clients]) for k in self.helper_keys}
            helpers[h] = ({**self.helper_profiles[h], "two_part_ms": estimated[TWO_PART]} if self.two_part else
                          {**self.helper_profiles[h], "times": estimated})
        built = planning.build_instance(self.config, self.manifest, self.clients, self.helpers, clients, helpers, links)
        return dataclasses.replace(built, meta={**built.meta, "estimated_rounds": self.rounds})


def _declared_helper_ms(profile: Mapping[str, Any], key: str) -> float:
    """A helper's declared time of one kind of work: a part-2 pass, or its two-part step (TWO_PART: 0 where it
    declared no part-3 times; planning.build_instance then names the helper)."""
    if key != TWO_PART:
        return profile["times"][key]
    step = planning.declared_two_part_ms(profile)
    return 0.0 if step is None else step
