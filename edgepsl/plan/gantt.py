"""Gantt chart (PNG, matplotlib) and Chrome trace-event JSON (Perfetto) of an evaluated plan.

Both draw the same segments: on each helper lane its forward and backward jobs; on each client lane the
client's whole chain: part-1 fwd + upload [0, r), the helper fwd job, download d, part-3 fwd l,
part-3 bwd + upload r', the helper bwd job, download d', part-1 bwd l'. Zero-length segments are omitted.
In a pipelined plan every micro-batch job is its own bar labelled "client.micro-batch"; a client with N > 1
micro-batches has its compute stages on its client lane and its transfers on two link lanes (uplink, downlink).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from edgepsl.plan.errors import PlanError, PlotUnavailableError
from edgepsl.plan.instance import Instance
from edgepsl.plan.schedule import LOCAL

if TYPE_CHECKING:
    from edgepsl.plan.schedule import Plan, Timeline

HELPERS, CLIENTS, LINKS = "helpers", "clients", "links"
# kind -> (legend text, face colour, hatch colour or None)
KINDS: dict[str, tuple[str, str, Optional[str]]] = {
    "helper_fwd": ("helper forward job (part-2 fwd)", "#1f77b4", None),
    "helper_bwd": ("helper backward job (part-2 bwd + update)", "#9467bd", None),
    "transfer": ("download (activations / gradient)", "#ff7f0e", None),
    "client_compute": ("client compute (part-3 fwd, part-1 bwd)", "#2ca02c", None),
    "client_upload": ("client compute + upload (part-1 fwd, part-3 bwd)", "#2ca02c", "#ff7f0e"),
    "local_part2": ("local mode: part-2 on the client's own device", "#8c564b", None),
}
DEFAULT_MAX_CLIENT_LANES = 60
DEFAULT_MAX_HELPER_LANES = 60
TRACE_PIDS = {HELPERS: 1, CLIENTS: 2, LINKS: 3}


@dataclass(frozen=True)
class Segment:
    """One bar of the chart: [start, end) ms on a helper or client lane."""

    group: str
    lane: int
    kind: str
    label: str
    start: float
    end: float
    client: int
    helper: int


@dataclass(frozen=True)
class GanttLayout:
    """The lanes to draw (helper and client indices, in index order) and their segments."""

    helpers: np.ndarray
    clients: np.ndarray
    segments: tuple[Segment, ...]
    K: int
    H: int
    links: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # link lanes: 2 j uplink, 2 j + 1 downlink of client j


def link_name(instance: Instance, lane: int) -> str:
    """Display name of a link lane (2 j: client j's uplink, 2 j + 1: its downlink)."""
    return f"{instance.client_name(lane // 2)} {'downlink' if lane % 2 else 'uplink'}"


def gantt_layout(
    instance: Instance,
    plan: Plan,
    timeline: Timeline,
    max_client_lanes: int | None = None,
    max_helper_lanes: int | None = None,
) -> GanttLayout:
    """Segments of every drawn lane; with a cap, the latest-finishing clients / helpers are kept."""
    K, H = instance.K, instance.H
    assignment = np.asarray(plan.assignment, dtype=np.int64)
    times = {name: np.asarray(getattr(timeline, name), dtype=np.float64) for name in ("fwd_start", "fwd_end", "bwd_start", "bwd_end", "finish")}
    if assignment.shape != (K,) or any(v.shape != (K,) for v in times.values()):
        raise PlanError(f"plan and timeline must describe the instance's K={K} clients (assignment shape {assignment.shape})")
    if (((assignment < 0) & (assignment != LOCAL)) | (assignment >= H)).any():
        raise PlanError(f"plan assigns a client to a helper outside 0..{H - 1} (or {LOCAL}, local mode)")
    split = assignment != LOCAL
    helper_end = np.zeros(H)
    np.maximum.at(helper_end, assignment[split], times["bwd_end"][split])
    clients = _latest(times["finish"], max_client_lanes)
    helpers = _latest(helper_end, max_helper_lanes)
    segments: list[Segment] = []
    if plan.pipelined:
        segments.extend(_micro_jobs(plan, timeline, set(helpers.tolist())))
    else:
        for i in helpers.tolist():
            for j in np.flatnonzero(assignment == i).tolist():
                segments.append(Segment(HELPERS, i, "helper_fwd", f"{j}", times["fwd_start"][j], times["fwd_end"][j], j, i))
                segments.append(Segment(HELPERS, i, "helper_bwd", f"{j}", times["bwd_start"][j], times["bwd_end"][j], j, i))
    micro = plan.micro_batches
    staged = _micro_stages(instance, plan, timeline) if plan.pipelined else {}
    for j in clients.tolist():
        if micro[j] > 1:
            segments.extend(staged[j])
            continue
        chain = _local_chain if assignment[j] == LOCAL else _client_chain
        segments.extend(chain(instance, j, int(assignment[j]), times))
    kept = tuple(s for s in segments if s.end > s.start)
    links = np.array(sorted(s.lane for s in kept if s.group == LINKS and s.lane % 2 == 0), dtype=np.int64)
    links = np.unique(np.concatenate([links, links + 1]))
    return GanttLayout(helpers=helpers, clients=clients, segments=kept, K=K, H=H, links=links)


def _micro_jobs(plan: Plan, timeline: Timeline, helpers: set[int]) -> list[Segment]:
    """One bar per micro-batch job on the drawn helpers, labelled client.micro-batch."""
    out = []
    pos = 0
    for i in range(len(plan.orders)):
        for j, kind, k in plan.jobs(i):
            if i in helpers:
                out.append(Segment(HELPERS, i, "helper_fwd" if kind == 0 else "helper_bwd", f"{j}.{k}",
                                   float(timeline.job_start[pos]), float(timeline.job_end[pos]), j, i))
            pos += 1
    return out


def _micro_stages(instance: Instance, plan: Plan, timeline: Timeline) -> dict[int, list[Segment]]:
    """Per pipelined client, its compute stages on its client lane and its transfers on its link lanes."""
    from edgepsl.plan.pipeline import client_stages

    out: dict[int, list[Segment]] = {}
    for j, rows in enumerate(client_stages(instance, plan, timeline)):
        i = int(plan.assignment[j])
        segs = []
        for stage, k, a, b in rows:
            if stage.startswith(("upload", "download")):
                lane = 2 * j + (1 if stage.startswith("download") else 0)
                segs.append(Segment(LINKS, lane, "transfer", f"{stage} {k}", float(a), float(b), j, i))
            else:
                segs.append(Segment(CLIENTS, j, "client_compute", f"{stage} {k}", float(a), float(b), j, i))
        out[j] = segs
    return out


def gantt_png(
    instance: Instance,
    plan: Plan,
    timeline: Timeline,
    path: str | Path,
    title: str | None = None,
    max_client_lanes: int = DEFAULT_MAX_CLIENT_LANES,
    max_helper_lanes: int = DEFAULT_MAX_HELPER_LANES,
) -> GanttLayout:
    """Draw the plan's Gantt chart to a PNG file (one lane per helper and per client) and return its layout."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError:
        raise PlotUnavailableError(
            "drawing a Gantt chart needs matplotlib; install the plot extra: pip install 'edgepsl[plot]'"
        ) from None
    layout = gantt_layout(instance, plan, timeline, max_client_lanes, max_helper_lanes)
    makespan = float(timeline.makespan)
    lanes = ([(HELPERS, int(i)) for i in layout.helpers] + [(CLIENTS, int(j)) for j in layout.clients]
             + [(LINKS, int(n)) for n in layout.links])
    row = {lane: n for n, lane in enumerate(lanes)}
    fig = Figure(figsize=(14.0, 1.8 + 0.24 * len(lanes)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.16, 1.0 / fig.get_figheight(), 0.82, 1.0 - 1.6 / fig.get_figheight()))
    x_max = max(makespan, max((s.end for s in layout.segments), default=0.0)) * 1.02 or 1.0
    px_per_ms = ax.get_position().width * fig.get_figwidth() * fig.dpi / x_max
    for kind, (_, colour, hatch_colour) in KINDS.items():
        # Bars wider than 4 px get a thin white outline to separate neighbours; narrower ones keep their colour.
        by_lane: dict[tuple[int, bool], list[tuple[float, float]]] = {}
        for s in layout.segments:
            if s.kind == kind:
                wide = (s.end - s.start) * px_per_ms > 4.0
                by_lane.setdefault((row[(s.group, s.lane)], wide), []).append((s.start, s.end - s.start))
        for (y, wide), spans in by_lane.items():
            ax.broken_barh(
                spans, (y - 0.4, 0.8), facecolors=colour, edgecolor=hatch_colour or "white",
                linewidth=0.3 if wide and not hatch_colour else 0.0, hatch="////" if hatch_colour else None,
            )
    for s in layout.segments:
        if (s.end - s.start) * px_per_ms > 6.5 * len(s.label) + 4:
            ax.text((s.start + s.end) / 2, row[(s.group, s.lane)], s.label, ha="center", va="center", fontsize=6.5, color="white")
    ax.set_ylim(len(lanes) - 0.5, -0.5)
    ax.set_xlim(0.0, x_max)
    ax.set_yticks(range(len(lanes)))
    names = {HELPERS: instance.helper_name, CLIENTS: instance.client_name, LINKS: lambda n: link_name(instance, n)}
    ax.set_yticklabels([names[g](i) for g, i in lanes], fontsize=7)
    ax.axhline(len(layout.helpers) - 0.5, color="black", linewidth=0.8)
    ax.axvline(makespan, color="red", linewidth=1.2, linestyle="--")
    ax.text(makespan, -0.5, f" makespan {makespan:,.1f} ms", color="red", fontsize=8, ha="right", va="bottom")
    ax.set_xlabel("time (ms)")
    ax.grid(axis="x", linewidth=0.3, alpha=0.5)
    method = plan.method or "plan"
    ax.set_title(title or f"{method}: K={instance.K} clients, H={instance.H} helpers, makespan {makespan:,.1f} ms", fontsize=10)
    handles = [Patch(facecolor=c, edgecolor=h or c, hatch="////" if h else None, label=text) for text, c, h in KINDS.values()]
    handles.append(Patch(facecolor="none", edgecolor="red", linestyle="--", label="makespan"))
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=7, frameon=False)
    note = _cap_note(layout)
    if note:
        fig.text(0.01, 0.995, note, fontsize=8, va="top", color="dimgray")
    fig.savefig(str(path), format="png")
    return layout


def chrome_trace(
    instance: Instance,
    plan: Plan,
    timeline: Timeline,
    max_client_lanes: int | None = None,
    max_helper_lanes: int | None = None,
) -> dict[str, Any]:
    """Chrome trace-event JSON object (ts/dur in microseconds) of the plan: pid 1 = helpers, pid 2 = clients."""
    layout = gantt_layout(instance, plan, timeline, max_client_lanes, max_helper_lanes)
    events: list[dict[str, Any]] = []
    groups = [(HELPERS, layout.helpers, instance.helper_name), (CLIENTS, layout.clients, instance.client_name)]
    if len(layout.links):
        groups.append((LINKS, layout.links, lambda n: link_name(instance, n)))
    for group, lanes, name_of in groups:
        pid = TRACE_PIDS[group]
        events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": group}})
        events.append({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": pid}})
        for lane in lanes.tolist():
            events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": lane, "args": {"name": name_of(lane)}})
            events.append({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": lane, "args": {"sort_index": lane}})
    for s in layout.segments:
        events.append({
            "ph": "X",
            "name": s.label if s.group != HELPERS else _job_name(s),
            "cat": s.kind,
            "pid": TRACE_PIDS[s.group],
            "tid": s.lane,
            "ts": s.start * 1000.0,
            "dur": (s.end - s.start) * 1000.0,
            "args": {"client": s.client, "helper": s.helper},
        })
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"method": plan.method, "makespan_ms": float(timeline.makespan), "K": layout.K, "H": layout.H},
    }


def _job_name(s: Segment) -> str:
    kind = "fwd" if s.kind == "helper_fwd" else "bwd"
    client, _, micro = s.label.partition(".")
    return f"{kind} client {client}" + (f" micro-batch {micro}" if micro else "")


def write_chrome_trace(instance: Instance, plan: Plan, timeline: Timeline, path: str | Path) -> None:
    """Write the plan's Chrome trace (all lanes) as JSON; open it in https://ui.perfetto.dev."""
    Path(path).write_text(json.dumps(chrome_trace(instance, plan, timeline), allow_nan=False))


def _client_chain(instance: Instance, j: int, i: int, times: dict[str, np.ndarray]) -> list[Segment]:
    fwd_end, bwd_end = times["fwd_end"][j], times["bwd_end"][j]
    download = fwd_end + instance.d[j, i]
    local_loss = bool(instance.loss_modes[j])
    if local_loss:  # the local step runs on the client's CPU while the activations travel (docs/planning.md)
        own = instance.r_cpu[j] + instance.aux[j]
        start = (("client_compute", "part-1 fwd", 0.0, instance.r_cpu[j]),
                 ("client_upload", "upload | local step", instance.r_cpu[j], instance.r[j, i]),
                 ("client_compute", "aux head + part-1 bwd", instance.r_cpu[j], own))
        download_end = max(download, own)
    else:
        start = (("client_upload", "part-1 fwd + upload", 0.0, instance.r[j, i]),)
        download_end = download
    part3 = download_end + instance.l[j]
    grad_down = bwd_end + instance.d_bwd[j, i]
    steps = start + (
        ("helper_fwd", f"fwd on h{i}", times["fwd_start"][j], fwd_end),
        ("transfer", "download", fwd_end, download),
        ("client_compute", "part-3 fwd", download_end, part3),
        ("client_upload", "part-3 bwd + upload", part3, part3 + instance.r_bwd[j, i]),
        ("helper_bwd", f"bwd on h{i}", times["bwd_start"][j], bwd_end),
    ) + (() if local_loss else (
        ("transfer", "download grad", bwd_end, grad_down),
        ("client_compute", "part-1 bwd", grad_down, grad_down + instance.l_bwd[j]),
    ))
    return [Segment(CLIENTS, j, kind, label, float(a), float(b), j, i) for kind, label, a, b in steps]


def _local_chain(instance: Instance, j: int, i: int, times: dict[str, np.ndarray]) -> list[Segment]:
    fwd_start, fwd_end = times["fwd_start"][j], times["fwd_end"][j]
    bwd_start, bwd_end = times["bwd_start"][j], times["bwd_end"][j]
    steps = (
        ("client_compute", "part-1 fwd", 0.0, fwd_start),
        ("local_part2", "part-2 fwd (local)", fwd_start, fwd_end),
        ("client_compute", "part-3 fwd", fwd_end, fwd_end + instance.l[j]),
        ("client_compute", "part-3 bwd", fwd_end + instance.l[j], bwd_start),
        ("local_part2", "part-2 bwd (local)", bwd_start, bwd_end),
        ("client_compute", "part-1 bwd", bwd_end, times["finish"][j]),
    )
    return [Segment(CLIENTS, j, kind, label, float(a), float(b), j, i) for kind, label, a, b in steps]


def _latest(ends: np.ndarray, cap: int | None) -> np.ndarray:
    if cap is None or cap >= ends.shape[0]:
        return np.arange(ends.shape[0])
    return np.sort(np.argsort(-ends, kind="stable")[:cap])


def _cap_note(layout: GanttLayout) -> str:
    parts = []
    if len(layout.clients) < layout.K:
        parts.append(f"showing {len(layout.clients)} of {layout.K} clients (the latest finishing)")
    if len(layout.helpers) < layout.H:
        parts.append(f"{len(layout.helpers)} of {layout.H} helpers (the latest busy)")
    return "; ".join(parts)
