"""Membership of the clients, round by round: who trains, who was lost (silent longer than peer_timeout_s), and who
came back and rejoins at the next aggregation boundary."""
from __future__ import annotations

import logging

from edgepsl.runtime.coordinator.fleet import natural

log = logging.getLogger("edgepsl.runtime.coordinator")


class Membership:
    """The clients that train (`members`, in the fleet's order), the lost ones, and the lost ones heard from again.

    A lost client gets no ROUND_START and no state until it is back and the next aggregation boundary is reached;
    then it receives the averaged model with the other members and trains again from the next round.
    """

    def __init__(self, clients: list[str]) -> None:
        self.clients = list(clients)
        self.lost: set[str] = set()
        self.back: set[str] = set()

    @property
    def members(self) -> list[str]:
        """The clients that train, in the fleet's order."""
        return [c for c in self.clients if c not in self.lost]

    def lose(self, client: str) -> None:
        """Declare a client lost (it was silent longer than peer_timeout_s)."""
        if client not in self.lost:
            log.warning("%s was declared lost; the run goes on without it", client)
        self.lost.add(client)
        self.back.discard(client)

    def heard(self, client: str) -> None:
        """A lost client was heard from again: it rejoins at the next aggregation boundary."""
        if client in self.lost and client not in self.back:
            log.info("%s is back; it rejoins at the next aggregation boundary", client)
            self.back.add(client)

    def add(self, clients: list[str]) -> None:
        """Clients that joined the run: members from now on (the fleet's order is natural order)."""
        self.clients = sorted([*self.clients, *clients], key=natural)

    def rejoin(self) -> list[str]:
        """At an aggregation boundary: the clients that are back become members again (returned, in fleet order)."""
        back = [c for c in self.clients if c in self.back]
        self.lost -= self.back
        self.back.clear()
        return back
