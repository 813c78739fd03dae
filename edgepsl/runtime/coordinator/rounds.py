"""Rounds phase: start a round on every role and turn their reports into the round's record."""
from __future__ import annotations

import numpy as np

from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.coordinator.fleet import Fleet
from edgepsl.runtime.coordinator.messenger import Messenger
from edgepsl.runtime.coordinator.schedule import Schedule, at
from edgepsl.runtime.metrics import RoundRecord, realised
from edgepsl.runtime.protocol import ClientRoundReport, HelperRoundReport
from edgepsl.runtime.trace import now_ms
from edgepsl.wire import Envelope, MsgType


def play_round(messenger: Messenger, config: RunConfig, fleet: Fleet, schedule: Schedule, r: int) -> RoundRecord:
    """Send every role its ROUND_START, collect every report of round r, and build the round's record.

    The round's token (unique across coordinator restarts: it comes from the clock) ties the jobs to this start, so
    a helper refuses a job a client sent for the same round number before a restarted coordinator replayed it.
    """
    t0, token = now_ms(), messenger.token()
    for name in fleet.helpers:
        messenger.send(name, at(schedule.helper_starts[name], t0, token), r)
    for name in fleet.clients:
        messenger.send(name, at(schedule.client_starts[name], t0, token), r, name)
    clients: dict[str, ClientRoundReport] = {}
    helpers: dict[str, HelperRoundReport] = {}

    def accept(env: Envelope) -> str | None:
        if env.message.type is not MsgType.REPORT or env.message.job.round != r:
            return None
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

    messenger.collect(accept, len(fleet.roles), f"the reports of round {r}", config.round_timeout_s, r)
    record = realised(schedule.instance, schedule.plan, schedule.timeline, fleet.clients, t0,
                      {n: clients[n] for n in fleet.clients}, {n: helpers[n] for n in fleet.helpers})
    samples = np.array([clients[n].samples for n in fleet.clients], dtype=np.float64)
    losses = np.array([clients[n].loss for n in fleet.clients])
    record.metrics.update({"round": r, "loss": float((losses * samples).sum() / samples.sum()),
                           "client_loss": dict(zip(fleet.clients, losses.tolist())),
                           "planned_makespan_ms": float(schedule.timeline.makespan)})
    return record
