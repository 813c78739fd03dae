"""Rounds phase: start a round on every member, close it with the survivors, and turn the reports into its record.

A client lost during the round (silent longer than peer_timeout_s), one that cannot be reached when the round starts,
or one still running at the straggler deadline under straggler_policy "drop", is closed out of the round: its helper is told to skip its remaining jobs
(CancelJobs), its late report is dropped, and the round's record names it. A lost helper ends the run.
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
from edgepsl.runtime.errors import RunAbortedError
from edgepsl.runtime.metrics import RoundRecord, realised
from edgepsl.runtime.protocol import CancelJobs, ClientRoundReport, HelperRoundReport
from edgepsl.runtime.trace import now_ms
from edgepsl.wire import Envelope, EventKind, MsgType, PeerEvent


CLOSED = ("lost", "dropped", "unreachable")  # why a client was closed out of a round (each a key of its metrics)


@dataclass
class RoundOutcome:
    """What one round did: its metrics (always), and its realised record when every client of the plan completed."""

    metrics: dict[str, Any]
    record: RoundRecord | None = None
    closed: dict[str, str] = field(default_factory=dict)  # client -> one of CLOSED


def _cancel(messenger: Messenger, fleet: Fleet, schedule: Schedule, clients: list[str], r: int) -> None:
    """Tell each helper to skip the jobs of round r of these clients (local-mode clients have none)."""
    by_helper: dict[str, list[str]] = {}
    for name in clients:
        if not schedule.is_local(fleet, name):
            by_helper.setdefault(schedule.helper_of(fleet, name), []).append(name)
    for helper, names in by_helper.items():
        messenger.send(helper, CancelJobs(r, names), r)


def play_round(messenger: Messenger, config: RunConfig, fleet: Fleet, schedule: Schedule, membership: Membership,
               r: int) -> RoundOutcome:
    """Send every helper and member its ROUND_START, collect the reports of round r from the survivors, and build
    the round's metrics (and its realised record when every client completed).

    The round's token (unique across coordinator restarts: it comes from the clock) ties the jobs to this start, so
    a helper refuses a job a client sent for the same round number before a restarted coordinator replayed it.
    """
    t0, token = now_ms(), messenger.token()
    started = time.monotonic()
    members = membership.members
    absent = [c for c in fleet.clients if c not in members]
    for name in fleet.helpers:
        messenger.send(name, at(schedule.helper_starts[name], t0, token), r)
    _cancel(messenger, fleet, schedule, absent, r)
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
        _cancel(messenger, fleet, schedule, names, r)

    def events(event: PeerEvent) -> None:
        if event.peer in fleet.helpers:
            if event.kind is EventKind.LOST:
                raise RunAbortedError(f"helper {event.peer} was lost at round {r} (silent for more than "
                                      f"peer_timeout_s = {config.peer_timeout_s:g} s); this runtime cannot move its "
                                      f"clients to the other helpers yet")
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
        if env.message.job.round != r:
            return DROP if env.message.job.round < r else None
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

    # A client that cannot be reached (its connection is down or being re-established) sits this round out; it
    # stays a member until the wire declares it lost (silent longer than peer_timeout_s).
    close([name for name in members if not messenger.reach(name, at(schedule.client_starts[name], t0, token), r, name)],
          "unreachable")
    planned = float(schedule.timeline.makespan)
    due = None
    if config.straggler_policy == "drop":
        due = (started + config.round_deadline_ms(planned) / 1000.0,
               lambda: close([n for n in members if n not in clients], "dropped"))
    messenger.collect(accept, lambda: len(expected), f"the reports of round {r}", config.round_timeout_s, r,
                      events=events, due=due)
    done = [n for n in fleet.clients if n in clients]
    metrics: dict[str, Any] = {"round": r, "members": done, "absent": absent, "planned_makespan_ms": planned,
                               **{why: sorted(n for n, w in closed.items() if w == why) for why in CLOSED}}
    if not done:
        raise RunAbortedError(f"no client completed round {r}: {', '.join(closed) or 'none'} closed, "
                              f"{', '.join(absent) or 'none'} absent")
    samples = np.array([clients[n].samples for n in done], dtype=np.float64)
    losses = np.array([clients[n].loss for n in done])
    metrics.update({"loss": float((losses * samples).sum() / samples.sum()),
                    "client_loss": dict(zip(done, losses.tolist()))})
    if len(done) < len(fleet.clients):
        metrics.update({"realised_makespan_ms": now_ms() - t0, "partial": True})
        return RoundOutcome(metrics, None, closed)
    record = realised(schedule.instance, schedule.plan, schedule.timeline, fleet.clients, t0, clients,
                      {n: helpers[n] for n in fleet.helpers})
    record.metrics.update(metrics)
    record.metrics["partial"] = False
    return RoundOutcome(record.metrics, record, closed)
