"""Exception classes shared across edgepsl; every error a user can meet derives from EdgePSLError."""


class EdgePSLError(Exception):
    """Base class of every error edgepsl raises on purpose."""
