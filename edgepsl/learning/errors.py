"""Errors of the learning-mode building blocks."""
from edgepsl.errors import EdgePSLError


class LearningError(EdgePSLError):
    """A learning mode is set up wrongly: segments of the wrong role or shape, or a call the mode does not allow."""


class SmashMixError(LearningError):
    """SmashMix settings or its clients' smashed data are invalid (alpha, pairs, too few clients, shapes, dtypes)."""
