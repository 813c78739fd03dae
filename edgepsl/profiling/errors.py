"""Errors of the profiler."""
from edgepsl.errors import EdgePSLError


class ProfilingError(EdgePSLError):
    """A profiling run cannot proceed: bad options, or a profile file it should extend does not match."""
