"""Gantt PNG and Chrome trace of an evaluated plan."""
import json
import sys

import numpy as np
import pytest

from edgepsl.plan.errors import PlanError, PlotUnavailableError
from edgepsl.plan.gantt import KINDS, chrome_trace, gantt_layout, gantt_png, write_chrome_trace
from edgepsl.plan.profiles import build_instance
from edgepsl.plan.scenarios import scenario_instance
from edgepsl.plan.schedule import BWD, FWD, Plan, Timeline


def run_in_order(inst, assignment, orders):
    """Timeline of a plan whose helpers run their jobs in the given order, each as soon as released."""
    K = inst.K
    rows = np.arange(K)
    fs, fe, bs, be = (np.zeros(K) for _ in range(4))
    for i, order in enumerate(orders):
        free = 0.0
        for j, kind in order:
            if kind == FWD:
                fs[j] = max(free, inst.r[j, i])
                fe[j] = free = fs[j] + inst.p[j, i]
            else:
                bs[j] = max(free, fe[j] + inst.gap[j, i])
                be[j] = free = bs[j] + inst.p_bwd[j, i]
    finish = be + inst.tail[rows, assignment]
    busy = np.bincount(assignment, weights=inst.p[rows, assignment] + inst.p_bwd[rows, assignment], minlength=inst.H)
    last = np.zeros(inst.H)
    np.maximum.at(last, assignment, be)
    return Timeline(fs, fe, bs, be, finish, busy, last - busy, last, float(finish.max()))


def fcfs_like_plan(inst, method):
    """All forward jobs by release, then all backward jobs by release, on a round-robin assignment."""
    assignment = np.arange(inst.K) % inst.H
    orders = []
    for i in range(inst.H):
        mine = np.flatnonzero(assignment == i)
        fwd = sorted(mine.tolist(), key=lambda j: inst.r[j, i])
        bwd = sorted(mine.tolist(), key=lambda j: inst.r[j, i] + inst.p[j, i] + inst.gap[j, i])
        orders.append(np.array([(j, FWD) for j in fwd] + [(j, BWD) for j in bwd], dtype=np.int64))
    plan = Plan(assignment, tuple(orders), method)
    return plan, run_in_order(inst, assignment, plan.orders)


@pytest.fixture(scope="module")
def small():
    inst = build_instance("resnet101_cifar10", ["d1", "d2", "jetson-gpu", "d1", "d2"], ["VM", "laptop"], (3, 33), [[5, 10], [20, 1], [16, 16], [2, 8], [11, 4]])
    plan, timeline = fcfs_like_plan(inst, "round-robin + release order")
    return inst, plan, timeline


def test_client_lanes_chain_the_whole_round(small):
    inst, plan, timeline = small
    layout = gantt_layout(inst, plan, timeline)
    assert layout.helpers.tolist() == [0, 1] and layout.clients.tolist() == [0, 1, 2, 3, 4]
    for j in range(inst.K):
        i = int(plan.assignment[j])
        lane = [s for s in layout.segments if s.group == "clients" and s.lane == j]
        assert [s.kind for s in lane] == [
            "client_upload", "helper_fwd", "transfer", "client_compute", "client_upload", "helper_bwd", "transfer", "client_compute",
        ]
        assert lane[0].start == 0.0 and lane[0].end == inst.r[j, i]
        assert lane[4].end == pytest.approx(timeline.fwd_end[j] + inst.gap[j, i], rel=1e-12)
        assert lane[-1].end == pytest.approx(timeline.finish[j], rel=1e-12)
        on_helper = [s for s in layout.segments if s.group == "helpers" and s.client == j]
        assert [(s.lane, s.kind, s.start, s.end) for s in on_helper] == [
            (i, "helper_fwd", timeline.fwd_start[j], timeline.fwd_end[j]),
            (i, "helper_bwd", timeline.bwd_start[j], timeline.bwd_end[j]),
        ]


def test_png_is_a_readable_image(small, tmp_path):
    import matplotlib.image

    inst, plan, timeline = small
    path = tmp_path / "gantt.png"
    gantt_png(inst, plan, timeline, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(str(path))
    height, width = pixels.shape[:2]
    assert width == 1400 and 300 <= height <= 800
    colours = {tuple(int(round(c * 255)) for c in px[:3]) for px in pixels[::4, ::4].reshape(-1, pixels.shape[2])}
    for _, colour, _ in KINDS.values():
        assert tuple(int(colour[k:k + 2], 16) for k in (1, 3, 5)) in colours, colour


def test_large_instance_caps_client_lanes(tmp_path):
    import matplotlib.image

    inst = scenario_instance("vgg19_cifar10", 200, 8, 2, seed=1)
    plan, timeline = fcfs_like_plan(inst, "round-robin")
    path = tmp_path / "big.png"
    layout = gantt_png(inst, plan, timeline, path, title="200 clients", max_client_lanes=60)
    assert len(layout.clients) == 60 and len(layout.helpers) == 8
    cutoff = np.sort(timeline.finish)[-60]
    assert (timeline.finish[layout.clients] >= cutoff).all()
    assert timeline.makespan == timeline.finish[layout.clients].max()
    inches_high = 1.8 + 0.24 * (60 + 8)
    assert abs(matplotlib.image.imread(str(path)).shape[0] - inches_high * 100) <= 1


def test_chrome_trace_has_one_event_per_segment(small, tmp_path):
    inst, plan, timeline = small
    trace = json.loads(json.dumps(chrome_trace(inst, plan, timeline), allow_nan=False))
    layout = gantt_layout(inst, plan, timeline)
    complete = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(complete) == len(layout.segments)
    pids = {"helpers": 1, "clients": 2}
    for event, seg in zip(complete, layout.segments):
        assert event["pid"] == pids[seg.group] and event["tid"] == seg.lane and event["cat"] == seg.kind
        assert event["ts"] == pytest.approx(seg.start * 1000.0) and event["dur"] == pytest.approx((seg.end - seg.start) * 1000.0)
        assert event["dur"] > 0
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"}
    assert names[(1, 1)] == "helper 1 (laptop)" and names[(2, 2)] == "client 2 (jetson-gpu)" and len(names) == 7
    assert {e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "process_name"} == {"helpers", "clients"}
    ends = [e["ts"] + e["dur"] for e in complete if e["pid"] == 2]
    assert max(ends) == pytest.approx(timeline.makespan * 1000.0)
    assert trace["otherData"]["makespan_ms"] == timeline.makespan
    path = tmp_path / "trace.json"
    write_chrome_trace(inst, plan, timeline, path)
    assert json.loads(path.read_text()) == trace


def test_zero_length_segments_are_omitted():
    inst = build_instance("vgg19_mnist", ["d2", "d1"], ["VM"], (3, 10), 10.0)
    assert inst.l_bwd[0] == 0.0, "d2 has no part-1 time at this cut in the profile"
    plan, timeline = fcfs_like_plan(inst, "one helper")
    layout = gantt_layout(inst, plan, timeline)
    assert all(s.end > s.start for s in layout.segments)
    assert not any(s.lane == 0 and s.label == "part-1 bwd" for s in layout.segments if s.group == "clients")


def test_mismatched_timeline_is_rejected(small):
    inst, plan, timeline = small
    other = scenario_instance("vgg19_cifar10", 4, 2, 1, seed=0)
    with pytest.raises(PlanError, match="K=4 clients"):
        gantt_layout(other, plan, timeline)


def test_missing_matplotlib_names_the_plot_extra(small, tmp_path, monkeypatch):
    inst, plan, timeline = small
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg", "matplotlib.patches"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(PlotUnavailableError, match=r"pip install 'edgepsl\[plot\]'"):
        gantt_png(inst, plan, timeline, tmp_path / "never.png")
    assert not (tmp_path / "never.png").exists()
