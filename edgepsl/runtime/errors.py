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
