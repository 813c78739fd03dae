"""Benchmark the wire: round-trip latency and throughput of edgepsl channels vs raw pyzmq, plaintext and CURVE.

A client sends one tensor to an echo server running in another process and waits for it to come back.
`raw` is bare pyzmq DEALER/ROUTER doing what an application would without edgepsl: send_multipart([msgpack
header, array], copy=False), and on receipt msgpack.unpackb + np.frombuffer (the server sends that array back).
`channel` is PeerChannel.send(FORWARD) -> ServerChannel.recv -> ServerChannel.send(ACTIVATIONS) -> PeerChannel.recv,
with validation, duplicate suppression, liveness and heartbeats. Both move the same bytes. Raw and channel round
trips are interleaved one by one, so that machine noise hits both alike; the overhead compares median round trips.

    python tools/bench_wire.py [--sizes 64K,1M,4M,32M] [--scale 1.0] [--out bench-results/wire.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
import numpy as np
import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgepsl.wire import (  # noqa: E402
    ChannelConfig,
    Envelope,
    JobId,
    KeyStore,
    Message,
    MsgType,
    PeerChannel,
    PeerSecurity,
    ServerChannel,
    ServerSecurity,
)
from edgepsl.wire.security import AllowList, apply_peer, apply_server, start_authenticator  # noqa: E402

TARGET_OVERHEAD_PCT = 5.0
BASE_ITERATIONS = {64 * 2**10: 600, 2**20: 150, 4 * 2**20: 60, 32 * 2**20: 12}
CONFIG = ChannelConfig(hwm=4, inbox=4)


def parse_size(text: str) -> int:
    """'64K', '1M', '4M', '32M' or a number of bytes."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


# ---- echo servers (run in a child process: `--serve raw|channel --security plain|curve --keys DIR`) ----


def serve_raw(secure: bool, store: KeyStore) -> None:
    """Echo every message the way an application would with bare pyzmq: header + np.frombuffer, sent back zero-copy."""
    context = zmq.Context()
    auth = start_authenticator(context, AllowList(store.allowed())) if secure else None
    socket = context.socket(zmq.ROUTER)
    if secure:
        apply_server(socket, ServerSecurity(store.identity("server"), store.allowed()))
    socket.bind("tcp://127.0.0.1:*")
    print(socket.last_endpoint.decode(), flush=True)
    try:
        while True:
            frames = socket.recv_multipart(copy=False)
            if len(frames) != 3:
                continue  # a header-only message (an edgepsl heartbeat): nothing to echo
            route, head, body = frames
            spec = msgpack.unpackb(head.buffer)["tensors"][0]
            arr = np.frombuffer(body.buffer, dtype=spec["dtype"]).reshape(spec["shape"])
            socket.send_multipart([route, head, arr], copy=False)
    finally:
        if auth is not None:
            auth.stop()


def serve_channel(secure: bool, store: KeyStore) -> None:
    """Answer every FORWARD with ACTIVATIONS carrying the same tensor."""
    options = {"security": ServerSecurity.from_store(store, "server")} if secure else {"insecure": True}
    server = ServerChannel("tcp://127.0.0.1:*", config=CONFIG, **options)
    print(server.endpoint, flush=True)
    while True:
        item = server.recv()
        if isinstance(item, Envelope) and item.message.type is MsgType.FORWARD:
            server.send(item.peer, Message(MsgType.ACTIVATIONS, item.message.job, {"act": item.message.tensors["act"]}))


# ---- clients (this process) ----


class RawClient:
    """pyzmq DEALER sending [msgpack header, raw buffer] and rebuilding the echoed array."""

    def __init__(self, endpoint: str, secure: bool, store: KeyStore) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        if secure:
            apply_peer(self.socket, PeerSecurity.from_store(store, "client", store.identity("server").public))
        self.socket.connect(endpoint)

    def round_trip(self, arr: np.ndarray, seq: int) -> np.ndarray:
        """Send arr and return the echoed array."""
        header = msgpack.packb({"v": 1, "type": "forward", "seq": seq, "tensors": [{"name": "act", "dtype": arr.dtype.str, "shape": list(arr.shape)}]})
        self.socket.send_multipart([header, arr], copy=False)
        head, body = self.socket.recv_multipart(copy=False)
        spec = msgpack.unpackb(head.buffer)["tensors"][0]
        return np.frombuffer(body.buffer, dtype=spec["dtype"]).reshape(spec["shape"])

    def close(self) -> None:
        """Release the socket and context."""
        self.socket.close(linger=0)
        self.context.term()


class ChannelClient:
    """An edgepsl PeerChannel doing FORWARD -> ACTIVATIONS."""

    def __init__(self, endpoint: str, secure: bool, store: KeyStore) -> None:
        options = {"security": PeerSecurity.from_store(store, "client", store.identity("server").public)} if secure else {"insecure": True}
        self.peer = PeerChannel(endpoint, "client", config=CONFIG, **options)

    def round_trip(self, arr: np.ndarray, seq: int) -> np.ndarray:
        """Send arr as a FORWARD job and return the tensor of the ACTIVATIONS reply."""
        self.peer.send(Message(MsgType.FORWARD, JobId("bench", 0, "client", seq), {"act": arr}))
        while True:
            item = self.peer.recv(timeout=60)
            if item is None:
                raise RuntimeError("no reply from the channel echo server within 60 s")
            if isinstance(item, Envelope) and item.message.type is MsgType.ACTIVATIONS:
                return item.message.tensors["act"]

    def close(self) -> None:
        """Close the channel."""
        self.peer.close()


def start_server(impl: str, secure: bool, keys: Path) -> tuple[subprocess.Popen, str]:
    """Start an echo server process and return it with its endpoint."""
    cmd = [sys.executable, __file__, "--serve", impl, "--security", "curve" if secure else "plain", "--keys", str(keys)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def measure(secure: bool, keys: Path, arr: np.ndarray, iterations: int, seq0: int) -> dict[str, list[float]]:
    """Round-trip times (s) of raw and channel echoes, interleaved one by one so that machine noise hits both alike.

    Both echo servers are fresh processes; each client makes 3 warm-up round trips and checks the echoed data.
    """
    store = KeyStore(keys)
    procs, clients = [], {}
    try:
        for impl, kind in (("raw", RawClient), ("channel", ChannelClient)):
            proc, endpoint = start_server(impl, secure, keys)
            procs.append(proc)
            clients[impl] = kind(endpoint, secure, store)
            for i in range(3):
                back = clients[impl].round_trip(arr, seq0 + i)
            if back.nbytes != arr.nbytes or back[:16].tobytes() != arr[:16].tobytes():
                raise RuntimeError(f"{impl} echo returned different data")
        times: dict[str, list[float]] = {"raw": [], "channel": []}
        for i in range(iterations):
            for impl in (("raw", "channel") if i % 2 == 0 else ("channel", "raw")):
                start = time.perf_counter()
                clients[impl].round_trip(arr, seq0 + 3 + i)
                times[impl].append(time.perf_counter() - start)
        return times
    finally:
        for client in clients.values():
            client.close()
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def summarise(times: list[float], size: int) -> dict:
    """Median / p10 / p90 round trip in ms and the two-way throughput at the median."""
    qs = statistics.quantiles(times, n=10)
    median = statistics.median(times)
    return {"iterations": len(times), "rtt_ms_median": median * 1e3, "rtt_ms_p10": qs[0] * 1e3, "rtt_ms_p90": qs[-1] * 1e3,
            "throughput_mib_s": 2 * size / 2**20 / median}


def run_benchmark(sizes: list[int], scale: float, rounds: int) -> dict:
    """Measure every size x security, raw and channel interleaved, over `rounds` pairs of fresh servers."""
    results, overhead = [], []
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp)
        store = KeyStore(keys)
        store.new("server")
        store.allow("client", store.new("client").public)
        for secure in (False, True):
            for size in sizes:
                arr = np.random.default_rng(size).standard_normal(size // 4, dtype=np.float32)
                per_round = max(2, int(BASE_ITERATIONS.get(size, max(10, 2**26 // size)) * scale / rounds))
                times: dict[str, list[float]] = {"raw": [], "channel": []}
                for r in range(rounds):
                    for impl, samples in measure(secure, keys, arr, per_round, seq0=r * 10**6).items():
                        times[impl] += samples
                row = {}
                for impl in ("raw", "channel"):
                    row[impl] = {"payload_bytes": size, "security": "curve" if secure else "plain", "impl": impl, **summarise(times[impl], size)}
                    results.append(row[impl])
                pct = (row["channel"]["rtt_ms_median"] / row["raw"]["rtt_ms_median"] - 1) * 100
                overhead.append({"payload_bytes": size, "security": row["raw"]["security"], "overhead_pct_median_rtt": pct,
                                 "target_pct": TARGET_OVERHEAD_PCT, "target_applies": size >= 2**20,
                                 "meets_target": pct <= TARGET_OVERHEAD_PCT})
                print_row(row["raw"], row["channel"], pct)
    return {"results": results, "overhead": overhead}


def print_header() -> None:
    """Column titles of the table."""
    print(f"{'payload':>8} {'security':>8} | {'raw ms':>8} {'raw MiB/s':>10} | {'chan ms':>8} {'chan MiB/s':>10} | {'overhead':>8}")


def print_row(raw: dict, chan: dict, pct: float) -> None:
    """One table row: raw vs channel median round trip and throughput."""
    size = raw["payload_bytes"]
    label = f"{size // 2**20}M" if size >= 2**20 else f"{size // 2**10}K"
    print(f"{label:>8} {raw['security']:>8} | {raw['rtt_ms_median']:8.3f} {raw['throughput_mib_s']:10.1f} | "
          f"{chan['rtt_ms_median']:8.3f} {chan['throughput_mib_s']:10.1f} | {pct:+7.1f}%", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse options, run (or serve), print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="64K,1M,4M,32M", help="comma-separated payload sizes")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the iteration counts (0.1 for a quick look)")
    parser.add_argument("--rounds", type=int, default=3, help="fresh server pairs per size (iterations are split among them)")
    parser.add_argument("--out", default="bench-results/wire.json", help="JSON output path")
    parser.add_argument("--serve", choices=("raw", "channel"), help=argparse.SUPPRESS)
    parser.add_argument("--security", choices=("plain", "curve"), help=argparse.SUPPRESS)
    parser.add_argument("--keys", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        (serve_raw if args.serve == "raw" else serve_channel)(args.security == "curve", KeyStore(args.keys))
        return 0
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    load_before = os.getloadavg()
    print_header()
    report = run_benchmark(sizes, args.scale, args.rounds)
    report = {
        "benchmark": "wire",
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
                 "python": platform.python_version(), "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version(),
                 "msgpack": ".".join(map(str, msgpack.version)), "numpy": np.__version__,
                 "load_avg_1m_before_after": [load_before[0], os.getloadavg()[0]]},
        "params": {"sizes": sizes, "scale": args.scale, "rounds": args.rounds, "transport": "tcp loopback",
                   "channel_config": {"hwm": CONFIG.hwm, "inbox": CONFIG.inbox, "heartbeat_s": CONFIG.heartbeat_s}},
        **report,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
