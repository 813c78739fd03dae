"""Aggregation and checkpoint phases: gather the members' states, merge them with the configured strategy, send the
result back, write the checkpoint; on resume, send the checkpoint's state back to the roles.

Partial participation: only the clients that are members at the boundary (not lost) are asked for their states, and
a client lost while the states are gathered is left out; the strategy weighs the states that arrived.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from edgepsl.runtime import checkpoint as ckpt
from edgepsl.runtime import state
from edgepsl.runtime.aggregation import Aggregation
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.coordinator.fleet import Fleet
from edgepsl.runtime.coordinator.membership import Membership
from edgepsl.runtime.coordinator.messenger import DROP, Messenger
from edgepsl.runtime.coordinator.schedule import Schedule
from edgepsl.runtime.errors import NonFiniteError, RunAbortedError, TrainingDivergedError
from edgepsl.runtime.modes import PART1, PART2, PART3, LearningMode
from edgepsl.runtime.protocol import State, StateRequest, StateShapes
from edgepsl.segment import Segment
from edgepsl.wire import Envelope, EventKind, MsgType, PeerEvent

PARTS = (PART1, PART2, PART3)


@dataclass(frozen=True)
class Gathered:
    """Every client's own state (part-1, part-3 and the aux head as its learning mode has them) with its samples,
    and every client's middle state (part-2, and part-3 in the two-part split) from its helper (by client)."""

    clients: Mapping[str, State]
    middles: Mapping[str, State]
    modes: Mapping[str, LearningMode]


def _shapes(model: Mapping[str, Segment], prefixes: tuple[str, ...]) -> StateShapes:
    """What a STATE of these parts carries (the coordinator's own segments, by prefix)."""
    return state.shapes({prefix: model[prefix[:-1]] for prefix in prefixes})


def gather(messenger: Messenger, config: RunConfig, fleet: Fleet, schedule: Schedule, model: Mapping[str, Segment],
           membership: Membership, r: int) -> Gathered:
    """STATE (model and optimizer) of every member (part1, part3) and of its middle part after round r; a client
    in local mode sends its own part-2 with its ends, which is split off as its middle part. A client lost meanwhile
    is left out (both its parts); Gathered holds the clients whose every part arrived.

    A state that holds NaN or infinity ends the run at once (TrainingDivergedError naming the round and the role).
    """
    members = [name for name in membership.members if messenger.reach(
        name, StateRequest(True, [name] if schedule.is_local(fleet, name) else []), r, name)]
    for i, name in enumerate(fleet.helpers):
        mine = [c for j, c in enumerate(fleet.clients) if schedule.plan.assignment[j] == i and c in members]
        messenger.send(name, StateRequest(True, mine), r)
    modes = {name: schedule.mode(config, fleet, name) for name in fleet.clients}  # the plan's (mode "auto")
    middle = _shapes(model, LearningMode.of(config).helper_prefixes)
    clients: dict[str, State] = {}
    middles: dict[str, State] = {}

    def accept(env: Envelope) -> str | None:
        if env.message.type is not MsgType.STATE or env.message.job.round != r:
            return None
        if env.peer in fleet.clients:
            if env.peer not in expected:
                return None
            local = schedule.is_local(fleet, env.peer)
            own = modes[env.peer].client_prefixes
            payload = _decode(env, _shapes(model, (*own, PART2) if local else own), r, env.peer)
            if payload.samples is None:
                return None
            if local:
                mine = ckpt.select(payload.state, (PART2,))
                middles[env.peer] = State(None, mine)
                payload = State(payload.samples, {k: v for k, v in payload.state.items() if k not in mine})
            clients[env.peer] = payload
            return env.peer
        owner = env.message.job.client
        if env.peer in fleet.helpers and owner in fleet.clients and schedule.helper_of(fleet, owner) == env.peer:
            if owner not in expected:
                return DROP  # the middle part of a client lost meanwhile
            middles[owner] = _decode(env, middle, r, f"{env.peer} ({owner}'s middle part)")
            return owner + "@part2"
        return None

    expected = set(members)
    split = {n for n in members if not schedule.is_local(fleet, n)}

    def events(event: PeerEvent) -> None:
        if event.peer in fleet.helpers and event.kind is EventKind.LOST:
            raise RunAbortedError(f"helper {event.peer} was lost while the states of round {r} were gathered; the "
                                  f"last checkpoint is in the run directory")
        if event.peer not in fleet.clients:
            return
        if event.kind is EventKind.LOST:
            membership.lose(event.peer)
            expected.discard(event.peer)
        else:
            membership.heard(event.peer)

    messenger.collect(accept, lambda: len(expected) + len(split & expected), f"the states of round {r}",
                      config.round_timeout_s, r, events=events)
    done = [n for n in members if n in expected and n in clients and n in middles]
    if not done:
        raise RunAbortedError(f"no client's state arrived after round {r}: every member was lost")
    return Gathered({n: clients[n] for n in done}, {n: middles[n] for n in done}, {n: modes[n] for n in done})


def _decode(env: Envelope, shapes: StateShapes, r: int, role: str) -> State:
    """A role's expected state; TrainingDivergedError when it is not finite (waiting on would only time out)."""
    try:
        return State.decode(env.message, shapes=shapes)
    except NonFiniteError as exc:
        raise TrainingDivergedError(f"training diverged at round {r}: {role}: {exc}") from None


def aggregate(strategy: Aggregation, gathered: Gathered, r: int) -> ckpt.Checkpoint:
    """The merged model of the gathered clients (part1, part2, part3 and the aux head of the local-loss clients; each
    part over the clients that train it, weights: their samples) and each one's optimizer state (its own under its
    name, its middle's under NAME@part2)."""
    names = list(gathered.clients)
    samples = {n: float(gathered.clients[n].samples or 0) for n in names}
    model: dict[str, np.ndarray] = {}
    own = {n: gathered.modes[n].client_prefixes for n in names}
    middle = gathered.modes[names[0]].helper_prefixes  # the same for every client
    for prefix in (*dict.fromkeys(p for n in names for p in own[n]), *middle):
        owners = [n for n in names if prefix in middle or prefix in own[n]]
        source = gathered.middles if prefix in middle else gathered.clients
        states = [state.unpack(source[n].state, prefix)[0] for n in owners]
        merged = strategy.aggregate(states, [samples[n] for n in owners])
        model.update({prefix + state.MODEL + k: v for k, v in merged.items()})
    optim = {n: ckpt.select(gathered.clients[n].state, tuple(p + state.OPTIM for p in own[n])) for n in names}
    optim.update({n + "@part2": ckpt.select(gathered.middles[n].state, tuple(p + state.OPTIM for p in middle))
                  for n in names})
    return ckpt.Checkpoint(r, model, optim)


def broadcast(messenger: Messenger, fleet: Fleet, schedule: Schedule, saved: ckpt.Checkpoint,
              with_optimizer: bool, clients: list[str], config: RunConfig) -> None:
    """Send the model (and, on resume, each owner's optimizer state where the checkpoint has one: a client left out
    of the last averaging has none) to these clients and their middle parts; a client in local mode gets its part-2
    in the same STATE as its ends. Which parts are a client's and which its helper's: its learning mode (in mode
    "auto" every client holds an aux head and gets the averaged one, if any client trained it)."""
    middle = ckpt.select(saved.model, LearningMode.of(config).helper_prefixes)
    for name in clients:
        ends = ckpt.select(saved.model, schedule.mode(config, fleet, name).held_prefixes)
        extra = saved.optim.get(name, {}) if with_optimizer else {}
        if schedule.is_local(fleet, name):
            extra = {**extra, **middle, **(saved.optim.get(name + "@part2", {}) if with_optimizer else {})}
        messenger.reach(name, State(None, {**ends, **extra}), saved.round, name)
    for name in clients:
        if schedule.is_local(fleet, name):
            continue
        extra = saved.optim.get(name + "@part2", {}) if with_optimizer else {}
        messenger.send(schedule.helper_of(fleet, name), State(None, {**middle, **extra}), saved.round, name)


def load_model(model: Mapping[str, Segment], saved: ckpt.Checkpoint) -> None:
    """Put an averaged model into the coordinator's own segments (for evaluation)."""
    for prefix in PARTS:
        model[prefix[:-1]].set_state(state.unpack(saved.model, prefix)[0])


def save(run_dir: Path, saved: ckpt.Checkpoint) -> None:
    """Write the checkpoint of an averaging round."""
    ckpt.save(run_dir / "checkpoint", saved)
