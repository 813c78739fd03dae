"""Device emulation: compute padded to an emulated duration and sends paced to an emulated link bandwidth."""
from __future__ import annotations

import heapq
import itertools
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgepsl.plan.profiles import load_profile
from edgepsl.plan.scenarios import DEFAULT_CUTS, HELPER_DEVICES, SCENARIO1_CLIENT_DEVICES, sample_bandwidth
from edgepsl.runtime.errors import RunConfigError

# Part times a role declares: clients part1/part3, helpers part2, each forward and backward (+ update), ms.
CLIENT_PARTS = ("part1_fwd", "part1_bwd", "part3_fwd", "part3_bwd")
HELPER_PARTS = ("part2_fwd", "part2_bwd")


@dataclass(frozen=True)
class Emulation:
    """How one process pretends to be another device: a profiled device or a slowdown, and a link bandwidth.

    device: a device of `profile` (its part times for the profile's usual cuts, times time_scale, replace the
    measured ones); slowdown: measured times multiplied by this factor; bandwidth_mbps: this process's link,
    its sends are delayed by bytes * 8 / Mbps. None everywhere means no emulation (real times, no pacing).
    """

    device: str | None = None
    slowdown: float | None = None
    bandwidth_mbps: float | None = None

    def __post_init__(self) -> None:
        if self.device is not None and self.slowdown is not None:
            raise RunConfigError("give a device or a slowdown factor to emulate, not both")
        if self.slowdown is not None and self.slowdown < 1:
            raise RunConfigError(f"a slowdown factor must be >= 1 (compute cannot be made faster), got {self.slowdown}")
        if self.bandwidth_mbps is not None and self.bandwidth_mbps <= 0:
            raise RunConfigError(f"an emulated bandwidth must be > 0 Mbps, got {self.bandwidth_mbps}")

    @property
    def active(self) -> bool:
        """True when compute is padded to emulated times."""
        return self.device is not None or self.slowdown is not None

    def to_meta(self) -> dict:
        """The emulation as a msgpack-able dict (sent with REGISTER)."""
        return {"device": self.device, "slowdown": self.slowdown, "bandwidth_mbps": self.bandwidth_mbps}

    def part_times(self, measured: dict[str, float], profile: str, time_scale: float) -> dict[str, float]:
        """The part times (ms) this process will take: measured, slowed down, or the emulated device's."""
        if self.slowdown is not None:
            return {k: v * self.slowdown for k, v in measured.items()}
        if self.device is None:
            return dict(measured)
        prof = load_profile(profile)
        a, b = DEFAULT_CUTS.get(prof.model, (1, prof.layers - 1))
        row = prof.device_indices([self.device], "emulated")[0]
        bounds = {"part1": (0, a), "part2": (a, b), "part3": (b, prof.layers)}
        out = {}
        for key in measured:
            part, kind = key.split("_")
            lo, hi = bounds[part]
            times = prof.part_fwd_ms(lo, hi) if kind == "fwd" else prof.part_bwd_ms(lo, hi)
            out[key] = float(times[row]) * time_scale
        return out

    def transfer_s(self, nbytes: int) -> float:
        """Seconds a send of `nbytes` takes on the emulated link (0 without one): KB * 8 / Mbps ms, KB = 1000 B."""
        return 0.0 if self.bandwidth_mbps is None else nbytes * 8.0 / (self.bandwidth_mbps * 1e6)


def paper_fleet(clients: int, helpers: int, seed: int, join_clients: int = 0,
                join_helpers: int = 0) -> tuple[list[Emulation], list[Emulation]]:
    """The paper's scenario-1 fleet: clients d1 / d2 with a link from the bandwidth classes each, helpers VM / laptop;
    then the join_clients and join_helpers roles that join during the run, further draws that leave the run's own
    unchanged."""
    def draw(k: int, h: int) -> tuple[list[Emulation], list[Emulation]]:
        rng = np.random.default_rng(seed)
        client_devices = rng.choice(SCENARIO1_CLIENT_DEVICES, k)
        helper_devices = rng.choice(HELPER_DEVICES, h)
        links = sample_bandwidth(rng, k, 1)[:, 0]
        return ([Emulation(device=str(d), bandwidth_mbps=float(b)) for d, b in zip(client_devices, links)],
                [Emulation(device=str(d)) for d in helper_devices])

    own_clients, own_helpers = draw(clients, helpers)
    return (own_clients + draw(clients + join_clients, helpers)[0][clients:],
            own_helpers + draw(clients, helpers + join_helpers)[1][helpers:])


def pad_to(start: float, target_s: float) -> float:
    """Sleep until `target_s` seconds after perf_counter time `start`; returns the seconds slept."""
    wait = target_s - (time.perf_counter() - start)
    if wait > 0:
        time.sleep(wait)
        return wait
    return 0.0


class Pacer:
    """Runs callbacks after a delay on one background thread (emulated downloads that must not block compute)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._count = itertools.count()
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="edgepsl-pacer", daemon=True)
        self._thread.start()

    def later(self, delay_s: float, action: Callable[[], None]) -> None:
        """Run `action` once `delay_s` seconds have passed (at once if delay_s <= 0, on the caller's thread)."""
        if delay_s <= 0:
            action()
            return
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay_s, next(self._count), action))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cond.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                if self._stop and not self._heap:
                    return
                _, _, action = heapq.heappop(self._heap)
            action()

    def close(self, run_pending: bool = True) -> None:
        """Run what is pending (or drop it, with run_pending False), then stop the thread."""
        with self._cond:
            if not run_pending:
                self._heap.clear()
            self._stop = True
            self._cond.notify()
        self._thread.join()
