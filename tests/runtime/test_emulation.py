"""Device emulation: profiled or slowed-down part times, link pacing arithmetic, the delayed-send thread and a client's
uplink."""
from __future__ import annotations

import threading
import time

import pytest

from edgepsl.plan.profiles import load_profile
from edgepsl.plan.scenarios import DEFAULT_CUTS
from edgepsl.runtime.emulation import Emulation, Pacer, paper_fleet
from edgepsl.runtime.errors import RunConfigError
from edgepsl.runtime.microbatch import Uplink

MEASURED = {"part1_fwd": 2.0, "part1_bwd": 3.0, "part3_fwd": 1.0, "part3_bwd": 1.5}


def test_no_emulation_keeps_measured_times_and_does_not_pace():
    emu = Emulation()
    assert not emu.active
    assert emu.part_times(MEASURED, "vgg19_cifar10", 0.1) == MEASURED
    assert emu.transfer_s(10**6) == 0.0


def test_slowdown_multiplies_measured_times():
    emu = Emulation(slowdown=3.0)
    assert emu.active
    assert emu.part_times(MEASURED, "vgg19_cifar10", 0.1) == {k: 3.0 * v for k, v in MEASURED.items()}


def test_device_takes_the_profiled_part_times_scaled():
    prof = load_profile("resnet101_cifar10")
    a, b = DEFAULT_CUTS["resnet101"]
    row = prof.device_indices(["VM"], "helper")[0]
    times = Emulation(device="VM").part_times({"part2_fwd": 1.0, "part2_bwd": 1.0}, "resnet101_cifar10", 0.5)
    assert times["part2_fwd"] == pytest.approx(0.5 * prof.part_fwd_ms(a, b)[row])
    assert times["part2_bwd"] == pytest.approx(0.5 * prof.part_bwd_ms(a, b)[row])


def test_link_pacing_follows_kb_times_8_over_mbps():
    # 125 000 bytes = 125 KB at 10 Mbps: 125 * 8 / 10 = 100 ms
    assert Emulation(bandwidth_mbps=10.0).transfer_s(125_000) == pytest.approx(0.1)


@pytest.mark.parametrize("kwargs", [{"device": "VM", "slowdown": 2.0}, {"slowdown": 0.5}, {"bandwidth_mbps": 0.0}])
def test_impossible_emulations_are_refused(kwargs):
    with pytest.raises(RunConfigError):
        Emulation(**kwargs)


def test_pacer_runs_actions_in_due_order():
    pacer = Pacer()
    done: list[int] = []
    finished = threading.Event()
    pacer.later(0.08, lambda: (done.append(2), finished.set()))
    pacer.later(0.02, lambda: done.append(1))
    pacer.later(0.0, lambda: done.append(0))
    assert finished.wait(10.0)
    pacer.close()
    assert done == [0, 1, 2]


def test_paper_fleet_draws_scenario_one_devices_and_links():
    clients, helpers = paper_fleet(12, 3, seed=4)
    assert {c.device for c in clients} <= {"d1", "d2"} and {h.device for h in helpers} <= {"VM", "laptop"}
    assert all(1 <= c.bandwidth_mbps <= 20 for c in clients) and all(h.bandwidth_mbps is None for h in helpers)
    assert paper_fleet(12, 3, seed=4) == (clients, helpers)


def test_closing_an_uplink_drops_the_uploads_still_queued():
    uplink = Uplink()
    sent: list[int] = []
    assert uplink.send(time.perf_counter(), 0.0, lambda: sent.append(0)) == 0.0  # no upload time: sent at once
    assert uplink.send(time.perf_counter(), 30.0, lambda: sent.append(1)) > 29.0  # queued behind a 30 s upload
    uplink.close()  # the round ended (aborted): the queued upload is dropped, not sent
    assert sent == [0]
