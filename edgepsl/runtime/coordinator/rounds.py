"""Rounds phase: start a round on every member, close it with the survivors, and turn the reports into its record.

A client lost during the round (silent longer than peer_timeout_s), one that cannot be reached when the round starts,
or one still running at the straggler deadline under straggler_policy "drop", is closed out of the round: its helper
is told to skip its remaining jobs (CancelJobs), its late report is dropped, and the round's record names it. A lost
helper closes its clients out of the round and is named in the outcome; the run loop re-plans and re-runs the round
for them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.coordinator.fleet import Fleet
from edgepsl.runtime.coordinator.membership import Membership
from edgepsl.runtime.coordinator.messenger import DROP, Messenger
from edgepsl.runtime.coordinator.schedule import Schedule, at
from edgepsl.runtime.metrics import RoundRecord, realised
from edgepsl.runtime.protocol import CancelJobs, ClientRoundReport, HelperRoundReport
from edgepsl.runtime.trace import now_ms
from edgepsl.wire import Envelope, EventKind, MsgType, PeerEvent


# Why a client was closed out of a round (each a key of the round's metrics).
CLOSED = ("lost", "dropped", "unreachable", "helper_lost")


@dataclass
class RoundOutcome:
    """What one round did: its metrics (always), and its realised record when every client of the plan completed."""

    metrics: dict[str, Any]
    record: RoundRecord | None = None
    closed: dict[str, str] = field(default_factory=dict)  # client -> one of CLOSED
    lost_helpers: list[str] = field(default_factory=list)

    def closed_for(self, why: str) -> list[str]:
        """The clients closed out of the round for this reason."""
        return [name for name, w in self.closed.items() if w == why]


def _cancel(messenger: Messenger, fleet: Fleet, schedule: Schedule, clients: list[str], r: int) -> None:
    """Tell each helper (that can be reached) to skip the jobs of round r of these clients (local-mode clients have
    none)."""
    by_helper: dict[str, list[str]] = {}
    for name in clients:
        if not schedule.is_local(fleet, name):
            by_helper.setdefault(schedule.helper_of(fleet, name), []).append(name)
    for helper, names in by_helper.items():
        messenger.reach(helper, CancelJobs(r, names), r)  # a helper that cannot be reached is lost: nothing to cancel


def play_round(messenger: Messenger, config: RunConfig, fleet: Fleet, schedule: Schedule, membership: Membership,
               r: int, only: list[str] | None = None) -> RoundOutcome:
    """Send every helper and member (of `only`, when given: a re-run of the round for them) its ROUND_START,
    collect the reports of round r from the survivors, and build the round's metrics (and its realised record when
    every client completed). A helper lost meanwhile closes its clients out of the round (`helper_lost`) and is
    named in the outcome's lost_helpers; the caller re-plans.

    The round's token (unique across coordinator restarts: it comes from the clock) ties the jobs to this start, so
    a helper refuses a job a client sent for the same round number before a restarted coordinator replayed it.
    """
    t0, token = now_ms(), messenger.token()
    started = time.monotonic()
    members = [c for c in membership.members if only is None or c in only]
    absent = [c for c in fleet.clients if c not in membership.members]
    skipped = [c for c in fleet.clients if c not in members]
    lost_helpers: list[str] = []
    lost_at: list[float] = []
    clients: dict[str, ClientRoundReport] = {}
    helpers: dict[str, HelperRoundReport] = {}
    expected = {*members, *fleet.helpers}
    closed: dict[str, str] = {}

    def close(names: list[str], why: str) -> None:
        names = [n for n in names if n in expected and n not in clients]
        if not names:
            return
        expected.difference_update(names)
        closed.update({n: why for n in names})
        messenger.trace.event("closed", round=r, clients=names, why=why)
        if why != "helper_lost":
            _cancel(messenger, fleet, schedule, names, r)

    def lose_helper(name: str) -> None:
        lost_helpers.append(name)
        lost_at.append(now_ms())
        expected.discard(name)
        messenger.trace.event("helper_lost", round=r, helper=name)
        close([c for c in members if schedule.helper_of(fleet, c) == name], "helper_lost")

    def events(event: PeerEvent) -> None:
        if event.peer in fleet.helpers:
            if event.kind is EventKind.LOST and event.peer in expected:
                lose_helper(event.peer)
            return
        if event.kind is EventKind.LOST:
            membership.lose(event.peer)
            close([event.peer], "lost")
        else:
            membership.heard(event.peer)

    def accept(env: Envelope) -> str | None:
        if env.message.type is not MsgType.REPORT:
            return None
        if env.peer in fleet.clients and env.peer not in expected:
            return DROP  # the late report of a client closed out of this (or an earlier) round
        if env.message.job.round != r:  # a client's late report of an earlier round; anything else is refused
            return DROP if env.message.job.round < r and env.peer in fleet.clients else None
        if env.peer in fleet.clients:
            report = ClientRoundReport.decode(env.message)
            if report.round == r:
                clients[env.peer] = report
                return env.peer
        elif env.peer in fleet.helpers:
            helper_report = HelperRoundReport.decode(env.message)
            if helper_report.round == r:
                helpers[env.peer] = helper_report
                return env.peer
        return None

    for name in fleet.helpers:
        if not messenger.reach(name, at(schedule.helper_starts[name], t0, token), r):
            lose_helper(name)
    _cancel(messenger, fleet, schedule, skipped, r)
    # A client that cannot be reached (its connection is down or being re-established) sits this round out; it
    # stays a member until the wire declares it lost (silent longer than peer_timeout_s).
    close([name for name in members if name in expected
           and not messenger.reach(name, at(schedule.client_starts[name], t0, token), r, name)], "unreachable")
    due = None
    if config.straggler_policy == "drop":
        due = (started + config.round_deadline_ms(schedule.planned_ms) / 1000.0,
               lambda: close([n for n in members if n not in clients], "dropped"))
    messenger.collect(accept, lambda: len(expected), f"the reports of round {r}", config.round_timeout_s, r,
                      events=events, due=due)
    done = [n for n in fleet.clients if n in clients]
    metrics: dict[str, Any] = {"round": r, "members": done, "absent": absent,
                               "planned_makespan_ms": schedule.planned_ms,
                               "nominal_makespan_ms": float(schedule.timeline.makespan),
                               "plan_version": schedule.version, "lost_helpers": lost_helpers,
                               "started_ms": t0, "ended_ms": now_ms(),
                               **({"helper_lost_at_ms": lost_at[0]} if lost_at else {}),
                               **{why: sorted(n for n, w in closed.items() if w == why) for why in CLOSED}}
    if not done:  # every member was closed out (dropped, lost, or on a lost helper): a round without an update
        metrics.update({"loss": None, "client_loss": {}, "realised_makespan_ms": now_ms() - t0, "partial": True})
        return RoundOutcome(metrics, None, closed, lost_helpers)
    samples = np.array([clients[n].samples for n in done], dtype=np.float64)
    losses = np.array([clients[n].loss for n in done])
    metrics.update({"loss": float((losses * samples).sum() / samples.sum()),
                    "client_loss": dict(zip(done, losses.tolist()))})
    if len(done) < len(fleet.clients):
        metrics.update({"realised_makespan_ms": now_ms() - t0, "partial": True})
        return RoundOutcome(metrics, None, closed, lost_helpers)
    record = realised(schedule.instance, schedule.plan, schedule.timeline, fleet.clients, t0, clients,
                      {n: helpers[n] for n in fleet.helpers})
    record.metrics.update(metrics)
    record.metrics["partial"] = False
    return RoundOutcome(record.metrics, record, closed)
