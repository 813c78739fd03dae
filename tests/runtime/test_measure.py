"""Start-up measurement: warm-up calls first, and time spent waiting (not computing) does not count."""
from __future__ import annotations

import time

from edgepsl.runtime import measure
from edgepsl.runtime.config import RunConfig
from edgepsl.segment import Segment, load_manifest


def test_warm_up_calls_come_first_and_waiting_is_not_counted():
    keys: list[int] = []

    def wait(k: int) -> None:  # a call that only waits, as a process does for a core it shares
        keys.append(k)
        time.sleep(0.02)

    assert measure._median_ms(wait, 3) < 20.0  # wall-clock time alone would be at least 20 ms
    assert keys == [-1, -2, 0, 1, 2]


def test_a_helper_measures_both_part2_directions():
    manifest = load_manifest(RunConfig().artifact)
    times = measure.measure_helper(Segment(manifest, "part2"), 8, 2)
    assert set(times) == {"part2_fwd", "part2_bwd"} and all(v > 0 for v in times.values())
