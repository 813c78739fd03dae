"""Faults a local run injects into its own role processes, by PID: `kill:client3@40,stop:client1@60:10s,
kill:helper1@80,join:client6@100` (SIGKILL, SIGSTOP then SIGCONT, or a new role process) when round N starts."""
from __future__ import annotations

import re
from dataclasses import dataclass

from edgepsl.runtime.errors import RunConfigError

ACTIONS = ("kill", "stop", "join")
_FAULT = re.compile(r"^(?P<action>[a-z]+):(?P<role>[A-Za-z0-9_-]+)@(?P<round>\d+)(?::(?P<secs>\d+(?:\.\d+)?)s)?$")


class FaultSpecError(RunConfigError):
    """A --faults specification that cannot be parsed or does not fit the run."""


@dataclass(frozen=True)
class Fault:
    """One fault: what happens (kill, stop, join) to which role when round `round` starts; stop lasts `seconds`."""

    action: str
    role: str
    round: int
    seconds: float = 0.0

    def __str__(self) -> str:
        return f"{self.action}:{self.role}@{self.round}" + (f":{self.seconds:g}s" if self.action == "stop" else "")


def parse_faults(spec: str) -> list[Fault]:
    """The faults of a comma-separated SPEC, in round order; FaultSpecError names the bad item and the form."""
    faults = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        match = _FAULT.match(item)
        if match is None:
            raise FaultSpecError(f"fault {item!r} is not ACTION:ROLE@ROUND[:SECONDSs], e.g. kill:client3@40, "
                                 f"stop:client1@60:10s, join:client6@100")
        action, seconds = match["action"], match["secs"]
        if action not in ACTIONS:
            raise FaultSpecError(f"fault {item!r}: unknown action {action!r}; choose one of {', '.join(ACTIONS)}")
        if (action == "stop") != (seconds is not None):
            raise FaultSpecError(f"fault {item!r}: " + ("stop needs a duration, e.g. stop:client1@60:10s"
                                                          if action == "stop" else f"{action} takes no duration"))
        if not match["role"].startswith(("client", "helper")):
            raise FaultSpecError(f"fault {item!r}: the role must be a clientN or helperN of the run")
        faults.append(Fault(action, match["role"], int(match["round"]), float(seconds or 0.0)))
    return sorted(faults, key=lambda f: f.round)


def check_faults(faults: list[Fault], helpers: list[str], clients: list[str], rounds: int) -> None:
    """FaultSpecError unless every fault names a role of the run (join: a new one) at a round within the run."""
    for fault in faults:
        known = fault.role in helpers or fault.role in clients
        if fault.action == "join" and known:
            raise FaultSpecError(f"fault {fault}: {fault.role} is already a role of the run; join a new name")
        if fault.action != "join" and not known:
            raise FaultSpecError(f"fault {fault}: {fault.role} is not a role of this run "
                                 f"({', '.join([*helpers, *clients])})")
        if not 0 < fault.round < rounds:
            raise FaultSpecError(f"fault {fault}: round {fault.round} is not within the run's rounds 1..{rounds - 1}")
