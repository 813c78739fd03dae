"""Drift trigger: say "re-plan now" when the realised makespan departs from the planned one for consecutive rounds."""
from __future__ import annotations

from edgepsl.runtime.errors import RunConfigError
from edgepsl.runtime.estimates import WINDOW

CONSECUTIVE = 2  # rounds in a row beyond the threshold before a re-plan (one slow round is noise, not drift)
# Rounds a new plan runs before drift is judged again: the estimates' median window, so that every estimate the
# next re-plan would use comes from rounds of the new plan (with CONSECUTIVE, at least 5 rounds between re-plans).
COOLDOWN = WINDOW


class DriftMonitor:
    """Counts rounds whose |realised / planned - 1| exceeds `threshold` (config replan_threshold); observe() is True
    on the CONSECUTIVE-th such round in a row, then the monitor waits COOLDOWN rounds (the new plan's) before
    counting again. planned_changed() restarts that wait when a plan takes effect for another reason."""

    def __init__(self, threshold: float) -> None:
        if not threshold > 0:
            raise RunConfigError(f"the drift threshold must be > 0, got {threshold!r} (config key replan_threshold)")
        self.threshold = threshold
        self.streak = 0
        self.cooldown = 0

    def departs(self, planned_ms: float, realised_ms: float) -> bool:
        """Whether one round's realised makespan departs from the planned one by more than the threshold."""
        return planned_ms <= 0 or abs(realised_ms / planned_ms - 1.0) > self.threshold

    def observe(self, planned_ms: float, realised_ms: float) -> bool:
        """Take one round's planned and realised makespan (ms); True: re-plan now (then the new plan runs)."""
        if self.cooldown > 0:
            self.cooldown -= 1
            return False
        self.streak = self.streak + 1 if self.departs(planned_ms, realised_ms) else 0
        if self.streak < CONSECUTIVE:
            return False
        self.planned_changed()
        return True

    def planned_changed(self) -> None:
        """A new plan takes effect (drift, membership): forget the streak and wait COOLDOWN rounds of it."""
        self.streak = 0
        self.cooldown = COOLDOWN
