"""Link probe on loopback: a helper echoes probes, the client fits latency and bandwidth."""
from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import pytest

from edgepsl.profiling.errors import ProfilingError
from edgepsl.profiling.link import ProbeTimeoutError, answer_probe, fit_link, probe_link
from edgepsl.wire import ChannelConfig, Envelope, JobId, Message, MsgType, PeerChannel, ServerChannel

FAST = ChannelConfig(heartbeat_s=0.1, liveness=5, reconnect_min_s=0.05, reconnect_max_s=0.2, send_timeout_s=2.0,
                     linger_s=0.0)


@pytest.fixture
def echo_helper():
    server = ServerChannel("tcp://127.0.0.1:*", insecure=True, config=FAST)
    stop = threading.Event()
    answered = []

    def serve() -> None:
        while not stop.is_set():
            item = server.recv(timeout=0.05)
            if isinstance(item, Envelope):
                answered.append(answer_probe(server, item))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server, answered
    stop.set()
    thread.join(timeout=5)
    server.close()


def test_fit_recovers_latency_and_bandwidth() -> None:
    sizes = [1024, 65536, 1 << 20]
    latency_ms, mbps = 0.5, 100.0
    rtt = [2 * (latency_ms + s * 8 / (mbps * 1000)) for s in sizes]
    got_latency, got_mbps = fit_link(sizes, rtt)
    assert got_latency == pytest.approx(latency_ms) and got_mbps == pytest.approx(mbps)
    with pytest.raises(ProfilingError, match="did not grow"):
        fit_link(sizes, [3.0, 2.0, 1.0])
    with pytest.raises(ProfilingError, match="two different payload sizes"):
        fit_link([10, 10], [1.0, 1.0])


def test_probe_over_loopback_gives_finite_numbers(echo_helper) -> None:
    server, answered = echo_helper
    peer = PeerChannel(server.endpoint, "client0", insecure=True, config=FAST)
    try:
        stats = probe_link(peer, "run", "client0", itertools.count(1).__next__, sizes_kb=(64, 1024, 4096), repeats=3)
    finally:
        peer.close()
    assert stats.sizes_bytes == (64 * 1024, 1024 * 1024, 4096 * 1024)
    assert all(np.isfinite(stats.rtt_ms)) and all(r > 0 for r in stats.rtt_ms)
    assert np.isfinite(stats.mbps) and stats.mbps > 0 and stats.latency_ms >= 0
    assert len(answered) == 1 + 3 * 3 and all(answered)
    assert stats.to_dict()["mbps"] == stats.mbps


def test_only_probes_are_echoed(echo_helper) -> None:
    server, answered = echo_helper
    peer = PeerChannel(server.endpoint, "client1", insecure=True, config=FAST)
    try:
        peer.send(Message(MsgType.REPORT, JobId("run", 0, "client1", 1), meta={"x": 1}))
        deadline = time.monotonic() + 5
        while not answered and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        peer.close()
    assert answered == [False]


def test_probe_without_an_answering_helper_times_out() -> None:
    server = ServerChannel("tcp://127.0.0.1:*", insecure=True, config=FAST)
    peer = PeerChannel(server.endpoint, "client2", insecure=True, config=FAST)
    try:
        with pytest.raises(ProbeTimeoutError, match="no probe echo"):
            probe_link(peer, "run", "client2", itertools.count(1).__next__, sizes_kb=(1, 2), repeats=1, timeout_s=0.3)
    finally:
        peer.close()
        server.close()
