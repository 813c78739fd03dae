"""Errors of the planning layer: bad instances, impossible assignments and invalid plans."""
from edgepsl.errors import EdgePSLError


class InstanceError(EdgePSLError):
    """An instance is malformed: wrong shapes, negative or non-finite times, a client that fits nowhere."""


class InstanceFormatError(InstanceError):
    """An instance file cannot be read: not JSON, wrong format name or version, missing fields."""


class ProfileError(EdgePSLError):
    """A device profile, a device name, a cut or a bandwidth cannot be used to build an instance."""


class InfeasibleError(EdgePSLError):
    """A heuristic could not place every client within the helpers' memory capacities."""


class PlanError(EdgePSLError):
    """A plan is invalid for its instance; subclasses name the violated rule."""


class PlanFormatError(PlanError):
    """A plan file cannot be read: not JSON, wrong format name or version, missing fields."""


class AssignmentError(PlanError):
    """A client is assigned to no helper, to a helper that does not exist, or to more than one."""


class MemoryCapacityError(PlanError):
    """The clients assigned to a helper need more memory than the helper has."""


class JobCoverageError(PlanError):
    """A job is missing from the plan, appears twice, or sits on a helper its client is not assigned to."""


class JobOrderError(PlanError):
    """A client's backward job is ordered before its own forward job."""


class PlotUnavailableError(EdgePSLError):
    """Drawing a Gantt chart needs matplotlib, which is not installed (install the `plot` extra)."""


class ReplanMatchError(EdgePSLError):
    """A previous plan's clients or helpers cannot be matched to the changed instance (names missing or duplicated)."""


class TooLargeError(EdgePSLError, ValueError):
    """An instance is too large for an exact method that enumerates its assignments."""


class SearchLimitError(EdgePSLError, ValueError):
    """A planner's time limit or work budget is not a positive number."""


class UnknownMethodError(EdgePSLError):
    """A planning method or dispatch rule name that does not exist."""


class MicroBatchError(PlanError):
    """A plan's micro-batch counts do not fit its instance (no stage fields, N above the batch, a local client)."""


class ModeError(PlanError):
    """A client's learning mode (U-shaped SplitFed or local loss) does not fit the instance or the method: local-loss
    clients without local-loss times, or combined with micro-batches or hybrid local mode."""
