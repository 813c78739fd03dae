"""The coordinator: fleet, links, schedule, rounds, aggregation, evaluation and checkpoint phases (run.py reads top
to bottom); each phase lives in its own module and returns what the next needs."""
from edgepsl.runtime.coordinator.run import Coordinator, RunSummary

__all__ = ["Coordinator", "RunSummary"]
