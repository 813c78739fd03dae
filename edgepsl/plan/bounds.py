"""Lower bounds on the makespan, so every plan reports its optimality gap."""
from __future__ import annotations

from dataclasses import dataclass

from edgepsl.plan.backend import kernels
from edgepsl.plan.instance import Instance


@dataclass(frozen=True)
class LowerBound:
    """The chain and load bounds (ms); `value` is the larger, valid for every plan."""

    chain: float
    load: float

    @property
    def value(self) -> float:
        """The best of the bounds."""
        return max(self.chain, self.load)

    def gap(self, makespan: float) -> float:
        """Relative gap of a makespan above this bound (0.05 = 5 %)."""
        return (makespan - self.value) / self.value if self.value > 0 else 0.0


def lower_bound(instance: Instance) -> LowerBound:
    """Chain bound (each client's whole chain on its best helper) and load bound (average helper work)."""
    chain, load = kernels.lower_bound(
        instance.r, instance.p, instance.gap, instance.p_bwd, instance.tail, instance.mem, instance.cap
    )
    return LowerBound(float(chain), float(load))
