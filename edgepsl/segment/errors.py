"""Errors of the segment runtime: bad artifacts, bad inputs, unknown jobs, bad optimizer or checkpoint state."""
from edgepsl.errors import EdgePSLError


class SegmentError(EdgePSLError):
    """Base class of the segment runtime's errors."""


class ArtifactError(SegmentError):
    """A segment artifact cannot be used: missing or corrupt files, a bad manifest, a hash mismatch."""


class SegmentInputError(SegmentError):
    """An input has the wrong shape, dtype or value range; the segment's state is unchanged."""


class UnknownJobError(SegmentError):
    """A backward names a job id with no pending forward; the segment's state is unchanged."""


class SegmentRoleError(SegmentError):
    """The call does not exist for this segment's role (e.g. train_step on a first segment)."""


class StateError(SegmentError):
    """Parameters, buffers, optimizer state or a checkpoint do not match the segment."""
