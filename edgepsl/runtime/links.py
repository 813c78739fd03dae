"""The K x H links a run plans with: measured by the clients' probes, or declared; recorded in links.json."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.protocol import CutShapes, LinkFit
from edgepsl.segment import Manifest

MEASURED = "measured"
DECLARED_CLIENT = "declared: the client's emulated link"
DECLARED_CONFIG = "declared: config bandwidth_mbps"


@dataclass(frozen=True)
class Links:
    """Per (client, helper): one-way latency (ms), bandwidth (Mbps) and where the numbers came from."""

    clients: tuple[str, ...]
    helpers: tuple[str, ...]
    latency_ms: np.ndarray
    mbps: np.ndarray
    source: tuple[tuple[str, ...], ...]
    probes: Mapping[str, Mapping[str, dict]]

    def to_dict(self) -> dict:
        """links.json: one row per link, and the raw probe results of measured links."""
        rows = [{"client": c, "helper": h, "latency_ms": float(self.latency_ms[j, i]), "mbps": float(self.mbps[j, i]),
                 "source": self.source[j][i]} for j, c in enumerate(self.clients) for i, h in enumerate(self.helpers)]
        return {"links": rows, "probes": {c: dict(v) for c, v in self.probes.items()}}

    def save(self, path: str | Path) -> None:
        """Write links.json."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    def restricted(self, clients: Sequence[str], helpers: Sequence[str]) -> "Links":
        """The links of these clients and helpers (all of them among this one's), in their order."""
        rows = [self.clients.index(c) for c in clients]
        columns = [self.helpers.index(h) for h in helpers]
        return Links(tuple(clients), tuple(helpers), self.latency_ms[np.ix_(rows, columns)],
                     self.mbps[np.ix_(rows, columns)], tuple(tuple(self.source[j][i] for i in columns) for j in rows),
                     {c: self.probes[c] for c in clients if c in self.probes})


def assembled(parts: Sequence[Links], clients: Sequence[str], helpers: Sequence[str]) -> Links:
    """The links of `clients` x `helpers` from blocks of them (e.g. the links before a join, the new clients' to every
    helper, the other clients' to the new helpers); a later part's pair replaces an earlier one's. Raises ValueError
    naming a pair no part holds."""
    K, H = len(clients), len(helpers)
    latency, mbps = np.full((K, H), np.nan), np.full((K, H), np.nan)
    source = [[""] * H for _ in clients]
    probes: dict[str, dict] = {}
    for part in parts:
        rows = [(j, part.clients.index(c)) for j, c in enumerate(clients) if c in part.clients]
        columns = [(i, part.helpers.index(h)) for i, h in enumerate(helpers) if h in part.helpers]
        for j, row in rows:
            for i, column in columns:
                latency[j, i], mbps[j, i] = part.latency_ms[row, column], part.mbps[row, column]
                source[j][i] = part.source[row][column]
            probes.setdefault(clients[j], {}).update(
                {h: fit for h, fit in part.probes.get(clients[j], {}).items() if h in helpers})
    missing = [f"{clients[j]} -> {helpers[i]}" for j, i in zip(*np.nonzero(np.isnan(latency)))]
    if missing:
        raise ValueError(f"no link measured or declared for {', '.join(missing)}")
    return Links(tuple(clients), tuple(helpers), latency, mbps, tuple(tuple(row) for row in source),
                 {c: v for c, v in probes.items() if v})


def declared_links(config: RunConfig, clients: Sequence[str], helpers: Sequence[str],
                   client_bandwidth: Mapping[str, float | None]) -> Links:
    """Links from each client's declared (emulated) bandwidth, else the config's bandwidth_mbps; no latency."""
    K, H = len(clients), len(helpers)
    mbps = np.array([[client_bandwidth.get(c) or config.bandwidth_mbps] * H for c in clients], dtype=np.float64)
    source = tuple(tuple([DECLARED_CLIENT if client_bandwidth.get(c) else DECLARED_CONFIG] * H) for c in clients)
    return Links(tuple(clients), tuple(helpers), np.zeros((K, H)), mbps.reshape(K, H), source, {})


def measured_links(clients: Sequence[str], helpers: Sequence[str], reports: Mapping[str, Mapping[str, LinkFit]]) -> Links:
    """Links from the clients' probe reports ({client: {helper: LinkFit}})."""
    K, H = len(clients), len(helpers)
    latency, mbps = np.zeros((K, H)), np.zeros((K, H))
    for j, c in enumerate(clients):
        for i, h in enumerate(helpers):
            latency[j, i] = reports[c][h].latency_ms
            mbps[j, i] = reports[c][h].mbps
    return Links(tuple(clients), tuple(helpers), latency, mbps, tuple(tuple([MEASURED] * H) for _ in clients),
                 {c: {h: fit.to_meta() for h, fit in reports[c].items()} for c in clients})


def cut_bytes(manifest: Manifest, segment: str, batch: int, float16: bool) -> int:
    """Bytes of one batch of a segment's output as it travels on the wire (float16 halves float32 tensors)."""
    spec = manifest.segment(segment).output
    itemsize = 2 if float16 and spec.dtype == np.float32 else spec.dtype.itemsize
    return batch * int(np.prod(spec.shape[1:])) * itemsize


def label_bytes(manifest: Manifest, batch: int) -> int:
    """Bytes of one batch of labels as they travel with the cut-1 activations in the two-part split."""
    labels = CutShapes.of(manifest, batch, labels_on_helper=True).labels
    assert labels is not None
    return int(np.prod(labels.shape)) * labels.dtype.itemsize


def probe_sizes_kb(manifest: Manifest, batch: int, float16: bool) -> list[int]:
    """Activation-sized probe payloads (KB of 1024 bytes): the two cut tensors of one batch, or a quarter of one."""
    sizes = {max(1, math.ceil(cut_bytes(manifest, segment, batch, float16) / 1024)) for segment in ("part1", "part2")}
    if len(sizes) == 1:
        (kb,) = sizes
        sizes.add(kb // 4 if kb >= 4 else kb + 1)
    return sorted(sizes)
