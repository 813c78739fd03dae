"""Errors of the runtime: bad configuration, a peer breaking the round protocol, a run that cannot go on."""
from __future__ import annotations

from edgepsl.errors import EdgePSLError


class RuntimeErrorBase(EdgePSLError):
    """Base class of the runtime's errors."""


class RunConfigError(RuntimeErrorBase):
    """A run configuration (TOML file or options) is invalid; the message names the key."""


class RunAbortedError(RuntimeErrorBase):
    """The run cannot continue: a peer left, timed out, or refused a job of this process."""


class ResumeError(RuntimeErrorBase):
    """A run directory has no usable checkpoint to resume from."""


class PayloadError(RuntimeErrorBase):
    """A received message's payload failed validation; the message names the payload, the field and the problem."""

    def __init__(self, kind: str, field: str, problem: str) -> None:
        self.kind, self.field, self.problem = kind, field, problem
        super().__init__(f"{kind}: {field} {problem}")


class TrainingDivergedError(RunAbortedError):
    """Training produced a non-finite loss or tensor; the message names the round."""


class StopRequested(BaseException):
    """SIGINT or SIGTERM arrived: the process flushes what it wrote, says bye and exits with 128 + signal."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by signal {signum}")


class RoleFailedError(RunAbortedError):
    """A helper or client cannot go on (no coordinator, a timeout, its own start-up error); it tells the coordinator."""


class AuthenticationFailedError(RoleFailedError):
    """A CURVE handshake of this role failed: its key was refused, or the server's key is not the one it was given."""


class CommandArrived(Exception):
    """The coordinator sent a command while a role waited for something else; the role's loop handles it next."""

    def __init__(self, envelope) -> None:
        self.envelope = envelope
        super().__init__(f"{envelope.message.type.value} from the coordinator")


class NonFiniteError(PayloadError):
    """A payload's number or tensor is NaN or infinite."""
