"""edgepsl: parallel split learning on edge devices."""

__version__ = "0.1.0"
