"""Fleet phase: registration and membership, the welcome, and the roles' part-time profiles."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.coordinator.messenger import Messenger
from edgepsl.runtime.protocol import ClientProfile, ClientWelcome, HelperProfile, HelperWelcome, Register
from edgepsl.wire import Envelope, MsgType


def joined(fleet: Fleet, registrations: Mapping[str, Register]) -> Fleet:
    """The fleet with the clients and helpers that registered during the run added (natural order)."""
    new = {role: [n for n, r in registrations.items() if r.role == role] for role in ("client", "helper")}
    return Fleet({**fleet.registrations, **registrations}, sorted([*fleet.clients, *new["client"]], key=natural),
                 sorted([*fleet.helpers, *new["helper"]], key=natural))


def natural(name: str) -> tuple[int, str]:
    """Sort key of role names: shorter first, so client2 comes before client10."""
    return len(name), name


@dataclass(frozen=True)
class Fleet:
    """The registered roles: their registrations, the clients and the helpers in natural order."""

    registrations: Mapping[str, Register]
    clients: list[str]
    helpers: list[str]

    @property
    def roles(self) -> list[str]:
        """Every role, helpers first."""
        return [*self.helpers, *self.clients]


@dataclass(frozen=True)
class Profiles:
    """What each role declared after the welcome: the clients' and the helpers' part times."""

    clients: Mapping[str, ClientProfile]
    helpers: Mapping[str, HelperProfile]

    def endpoints(self) -> dict[str, str]:
        """Each helper's client endpoint."""
        return {name: profile.endpoint for name, profile in self.helpers.items()}


def register(messenger: Messenger, config: RunConfig) -> Fleet:
    """Wait for `clients` clients and `helpers` helpers to register (register_timeout_s); the fleet, in natural order."""
    registrations: dict[str, Register] = {}
    want = {"client": config.clients, "helper": config.helpers}

    def accept(env: Envelope) -> str | None:
        if env.message.type is not MsgType.REGISTER:
            return None
        payload = Register.decode(env.message)
        if sum(1 for r in registrations.values() if r.role == payload.role) >= want[payload.role]:
            return None
        registrations[env.peer] = payload
        messenger.members[env.peer] = payload.role
        return env.peer

    messenger.collect(accept, config.clients + config.helpers, "registrations", config.register_timeout_s)
    names = sorted(registrations, key=natural)
    return Fleet(registrations, [n for n in names if registrations[n].role == "client"],
                 [n for n in names if registrations[n].role == "helper"])


def welcome(messenger: Messenger, config: RunConfig, fleet: Fleet, allowed: Mapping[str, bytes | str],
            roles: list[str] | None = None) -> Profiles:
    """Send every role (of `roles`, when given: the helpers again and the clients that join during the run) its
    welcome (naming the run's artifact and every client's key) and collect its profile (register_timeout_s)."""
    roles = fleet.roles if roles is None else roles
    artifact = messenger.artifact.info
    client_keys = {n: (allowed[n].decode() if isinstance(allowed[n], bytes) else str(allowed[n]))
                   for n in fleet.clients if n in allowed}
    client_links = {n: fleet.registrations[n].emulation.bandwidth_mbps for n in fleet.clients}
    for name in fleet.helpers:
        if name in roles:
            messenger.send(name, HelperWelcome(config, artifact, client_keys, client_links), 0)
    for index, name in enumerate(fleet.clients):
        if name in roles:
            messenger.send(name, ClientWelcome(config, artifact, index), 0, name)
    clients: dict[str, ClientProfile] = {}
    helpers: dict[str, HelperProfile] = {}

    def accept(env: Envelope) -> str | None:
        if env.message.type is not MsgType.REPORT or env.peer not in roles:
            return None
        if env.peer in fleet.clients:
            clients[env.peer] = ClientProfile.decode(env.message)
        else:
            helpers[env.peer] = HelperProfile.decode(env.message)
        return env.peer

    messenger.collect(accept, len(roles), "profiles", config.register_timeout_s)
    return Profiles(clients, helpers)
