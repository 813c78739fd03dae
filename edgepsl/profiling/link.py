"""Link probe: round trips of activation-sized payloads between a client and a helper over the real wire.

The client sends `probe` messages carrying one uint8 payload of each size; the helper answers each with
`probe_echo` carrying the same payload back. Per size the probe keeps the median round-trip time. A line
rtt = a + b * bytes fitted over the sizes gives the one-way latency a / 2 and the bandwidth: one byte
crosses once each way, so one direction takes b / 2 ms per byte, i.e. 16 / b bits per ms, 0.016 / b Mbps.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from edgepsl.profiling.errors import ProfilingError
from edgepsl.wire import Envelope, EventKind, JobId, Message, MsgType, PeerChannel, PeerEvent, ServerChannel

PAYLOAD = "payload"
DEFAULT_SIZES_KB = (64, 256, 1024, 4096)


@dataclass(frozen=True)
class LinkStats:
    """Median round trip per payload size, and the fitted one-way latency (ms) and bandwidth (Mbps)."""

    sizes_bytes: tuple[int, ...]
    rtt_ms: tuple[float, ...]
    latency_ms: float
    mbps: float
    fit: str = "line"

    def to_dict(self) -> dict:
        """JSON-ready form, as the coordinator records it per link."""
        return {"sizes_bytes": list(self.sizes_bytes), "rtt_ms": list(self.rtt_ms),
                "latency_ms": self.latency_ms, "mbps": self.mbps, "fit": self.fit}


def fit_link(sizes_bytes: Sequence[int], rtt_ms: Sequence[float]) -> tuple[float, float]:
    """(one-way latency ms, bandwidth Mbps) from round trips of echoed payloads."""
    if len(sizes_bytes) < 2 or len(set(sizes_bytes)) < 2:
        raise ProfilingError("a link probe needs at least two different payload sizes")
    slope, intercept = np.polyfit(np.asarray(sizes_bytes, dtype=float), np.asarray(rtt_ms, dtype=float), 1)
    if not slope > 0:
        raise ProfilingError(f"round trips did not grow with the payload (slope {slope:g} ms/byte); "
                             "probe larger payloads or more repeats")
    return max(float(intercept) / 2, 0.0), 0.016 / float(slope)


class ProbeTimeoutError(ProfilingError):
    """A probed helper did not echo a probe in time (it is not running, or does not answer probes)."""


class ProbeRefusedError(ProfilingError):
    """The CURVE handshake with the probed helper failed (the message is the channel's cause)."""


def _round_trip(channel: PeerChannel, message: Message, timeout_s: float,
                pace: Callable[[int], None] | None) -> float:
    """Send one probe (after pace(nbytes), which counts as part of the trip) and wait for its echo; ms."""
    t0 = time.perf_counter()
    if pace is not None:
        pace(message.tensors[PAYLOAD].nbytes)
    channel.send(message)
    deadline = time.perf_counter() + timeout_s
    while True:
        item = channel.recv(timeout=max(deadline - time.perf_counter(), 0.0))
        if item is None:
            raise ProbeTimeoutError(f"no probe echo for {message.tensors[PAYLOAD].nbytes} bytes within {timeout_s:g} s")
        if isinstance(item, Envelope) and item.message.type is MsgType.PROBE_ECHO and item.message.job == message.job:
            return (time.perf_counter() - t0) * 1e3
        if isinstance(item, PeerEvent) and item.kind is EventKind.AUTH_FAILED:
            raise ProbeRefusedError(item.detail)


def probe_link(channel: PeerChannel, run: str, client: str, seqs: Callable[[], int],
               sizes_kb: Sequence[int] = DEFAULT_SIZES_KB, repeats: int = 5, timeout_s: float = 10.0,
               pace: Callable[[int], None] | None = None) -> LinkStats:
    """Probe the helper behind `channel`: one warm-up round trip, then `repeats` per size, smallest first.

    seqs gives fresh job sequence numbers (they must not repeat on the channel); pace(nbytes), when given, runs
    before each send (an emulated uplink sleeps there). When the round trips do not grow with the payload (a
    link faster than the probe can resolve), the bandwidth is the throughput bound of the largest payload,
    0.016 * bytes / rtt Mbps, and the latency 0: a conservative reading, marked fit = "bound".
    """
    if repeats < 1:
        raise ProfilingError(f"repeats must be >= 1, got {repeats}")

    def once(nbytes: int) -> float:
        payload = np.zeros(nbytes, dtype=np.uint8)
        return _round_trip(channel, Message(MsgType.PROBE, JobId(run, 0, client, seqs()), {PAYLOAD: payload}),
                           timeout_s, pace)

    sizes = sorted({int(kb) * 1024 for kb in sizes_kb})
    once(sizes[0])
    medians = [float(np.median([once(nbytes) for _ in range(repeats)])) for nbytes in sizes]
    try:
        latency, mbps = fit_link(sizes, medians)
        fit = "line"
    except ProfilingError:
        latency, mbps, fit = 0.0, 0.016 * sizes[-1] / medians[-1], "bound"
    return LinkStats(tuple(sizes), tuple(medians), latency, mbps, fit)


def answer_probe(server: ServerChannel, envelope: Envelope) -> bool:
    """Echo a `probe` back to its sender; False (nothing sent) for any other message."""
    message = envelope.message
    if message.type is not MsgType.PROBE:
        return False
    server.send(envelope.peer, Message(MsgType.PROBE_ECHO, message.job, dict(message.tensors)))
    return True
