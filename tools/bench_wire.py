"""Benchmark the wire: round-trip latency and throughput of edgepsl channels vs raw pyzmq, plaintext and CURVE.

A client sends one tensor to an echo server running in another process and waits for it to come back.
`raw` is bare pyzmq DEALER/ROUTER doing what an application would without edgepsl: send_multipart([msgpack
header, array], copy=False), recv_multipart(copy=False), msgpack.unpackb + np.frombuffer (the server sends that
array back), with the channel's high-water marks and ROUTER_MANDATORY. `channel` is PeerChannel.send(FORWARD) -> ServerChannel.recv ->
ServerChannel.send(ACTIVATIONS) -> PeerChannel.recv, with validation, duplicate suppression, liveness and
heartbeats. Both move the same bytes.

Statistics for a noisy shared machine: the round trips come in blocks, raw and channel alternating (ABBA...), each
block a few round trips of one kind. Each pair of neighbouring blocks gives one ratio of median round trips; the
overhead is the median of those ratios, with its interquartile range and a bootstrap 95 % interval. The target
(overhead <= 5 % at >= 1 MiB) is 'met' when the median is within it, and the interval says how sure that is.

Where the machine has two CPUs or more, the client process runs on one CPU and the echo servers on another
(--no-pin lets the scheduler place them): left to itself, the scheduler puts the four busy threads of a round trip
(each side's Python thread and libzmq I/O thread) on the cores differently for each fresh server, and that
placement, not the code, moved the per-round medians by tens of percent in either direction.

Every block runs on a fresh, warmed-up client connection, so that each block ratio samples a connection's own TCP
state anew. Clients and echo servers, raw ones included, run under the heap policy a channel sets
(edgepsl.wire.heap); EDGEPSL_HEAP=glibc runs them all under glibc's own rule instead.

`--null` runs the same design with a second raw pyzmq pair in the channel's place: the overhead it reports is the
method's noise floor on this machine.

    python tools/bench_wire.py [--sizes 64K,1M,4M,32M] [--scale 1.0] [--rounds 6] [--no-pin] [--transport tcp|ipc]
                               [--null] [--out bench-results/wire.json]
"""
from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
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
from tools.bench_output import write_result  # noqa: E402
from edgepsl.wire import Limits, decode, encode, heap  # noqa: E402
from edgepsl.wire.security import AllowList, apply_peer, apply_server, start_authenticator  # noqa: E402

TARGET_OVERHEAD_PCT = 5.0
TARGET_MIN_BYTES = 2**20
# payload bytes -> (blocks per kind, round trips per block), before --scale; 1 MiB and 4 MiB get the most
BLOCKS = {64 * 2**10: (60, 10), 2**20: (120, 8), 4 * 2**20: (80, 4), 32 * 2**20: (16, 2)}
CONFIG = ChannelConfig(hwm=4, inbox=4)
BOOTSTRAP = 2000


def parse_size(text: str) -> int:
    """'64K', '1M', '4M', '32M' or a number of bytes."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


# ---- echo servers (run in a child process: `--serve raw|channel --security plain|curve --keys DIR`) ----


def pin_cpus(pin: bool) -> tuple[int, int] | None:
    """The (client CPU, server CPU) pair to pin to, or None when not pinning or with fewer than two CPUs."""
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if pin and len(cpus) >= 2 else None


def serve_raw(secure: bool, store: KeyStore, bind: str) -> None:
    """Echo every message the way an application would with bare pyzmq: header + np.frombuffer, sent back zero-copy.

    The process gets the heap thresholds a channel sets (edgepsl.wire.heap), so both servers run under the same
    allocator policy and the comparison is of code, not of which buffers each process happened to free first.
    """
    heap.tune()
    context = zmq.Context()
    auth = start_authenticator(context, AllowList(store.allowed())) if secure else None
    socket = context.socket(zmq.ROUTER)
    socket.sndhwm = socket.rcvhwm = CONFIG.hwm
    # With a high-water mark this small, a ROUTER learns only now and then that its peer has read, so without
    # ROUTER_MANDATORY it would drop an echo now and then (the channel's ROUTER has it too): the send waits instead.
    socket.router_mandatory = 1
    if secure:
        apply_server(socket, ServerSecurity(store.identity("server"), store.allowed()))
    socket.bind(bind)
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


def serve_channel(secure: bool, store: KeyStore, bind: str) -> None:
    """Answer every FORWARD with ACTIVATIONS carrying the same tensor."""
    options = {"security": ServerSecurity.from_store(store, "server")} if secure else {"insecure": True}
    server = ServerChannel(bind, config=CONFIG, **options)
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
        self.socket.sndhwm = self.socket.rcvhwm = CONFIG.hwm
        self.socket.rcvtimeo = 60_000  # a lost echo fails the run instead of hanging it
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


def start_server(impl: str, secure: bool, keys: Path, cpu: int | None, transport: str) -> tuple[subprocess.Popen, str]:
    """Start an echo server process (on CPU `cpu` if given) on loopback TCP or a Unix socket in `keys`, and return
    it with its endpoint."""
    bind = "tcp://127.0.0.1:*" if transport == "tcp" else f"ipc://{keys}/{uuid.uuid4().hex}.sock"
    cmd = [sys.executable, __file__, "--serve", impl, "--bind", bind, "--security", "curve" if secure else "plain", "--keys", str(keys)]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def warmup_round_trips(size: int) -> int:
    """Untimed round trips on each fresh connection, so that its set-up and TCP's early window growth stay out of the
    timing: 40 up to 1 MiB, fewer for larger payloads, whose every round trip moves enough bytes by itself."""
    return min(40, max(5, 2**26 // size))


def connect(impl: str, kind: type, endpoint: str, secure: bool, store: KeyStore, arr: np.ndarray, seq: int,
            warmup: int) -> RawClient | ChannelClient:
    """A fresh client on a fresh connection, after `warmup` round trips that also check the echoed data."""
    client = kind(endpoint, secure, store)
    try:
        for i in range(warmup):
            back = client.round_trip(arr, seq + i)
        if back.nbytes != arr.nbytes or back[:16].tobytes() != arr[:16].tobytes():
            raise RuntimeError(f"{impl} echo returned different data")
    except BaseException:
        client.close()
        raise
    return client


def measure(secure: bool, keys: Path, arr: np.ndarray, blocks: int, per_block: int, seq0: int,
            cpus: tuple[int, int] | None, null: bool, transport: str) -> tuple[dict[str, list[list[float]]], dict[str, list[float]]]:
    """Round-trip times (s) in blocks of `per_block`, raw and channel alternating ABBA, `blocks` blocks per kind,
    and the CPU time (s) the client's thread spent on each round trip (its send and receive paths, system calls
    included; the echo server does the same work the other way round).

    Both echo servers are fresh processes. Every block runs on a fresh connection (a new client, warmed up first):
    on loopback TCP each connection settles into its own speed (its pacing, its acknowledgement pattern), up to a
    few times apart for the same code on both ends, so a block ratio must sample that anew rather than all blocks of
    a round sharing one connection's luck. With `null`, a second raw client and raw server stand in the channel's
    place (the null experiment).
    """
    store = KeyStore(keys)
    procs, endpoints = [], {}
    kinds = {"raw": RawClient, "channel": RawClient if null else ChannelClient}
    warmup = warmup_round_trips(arr.nbytes)
    try:
        for impl, kind in kinds.items():
            proc, endpoints[impl] = start_server("raw" if kind is RawClient else impl, secure, keys, cpus[1] if cpus else None, transport)
            procs.append(proc)
        times: dict[str, list[list[float]]] = {"raw": [], "channel": []}
        cpu: dict[str, list[float]] = {"raw": [], "channel": []}
        seq = seq0
        for b in range(blocks):
            for impl in (("raw", "channel") if b % 2 == 0 else ("channel", "raw")):
                client = connect(impl, kinds[impl], endpoints[impl], secure, store, arr, seq, warmup)
                seq += warmup
                try:
                    block = []
                    for _ in range(per_block):
                        start, start_cpu = time.perf_counter(), time.thread_time()
                        client.round_trip(arr, seq)
                        block.append(time.perf_counter() - start)
                        cpu[impl].append(time.thread_time() - start_cpu)
                        seq += 1
                finally:
                    client.close()
                times[impl].append(block)
        return times, cpu
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def summarise(times: list[float], size: int) -> dict:
    """Median / p10 / p90 round trip in ms and the two-way throughput at the median."""
    qs = statistics.quantiles(times, n=10)
    median = statistics.median(times)
    return {"iterations": len(times), "rtt_ms_median": median * 1e3, "rtt_ms_p10": qs[0] * 1e3, "rtt_ms_p90": qs[-1] * 1e3,
            "throughput_mib_s": 2 * size / 2**20 / median}


def overhead(raw_blocks: list[list[float]], channel_blocks: list[list[float]], rounds: int, seed: int) -> dict:
    """Channel overhead in % from the ratios of neighbouring blocks' medians: median, IQR, 95 % interval, and the
    median of each round. Each round has its own pair of server processes, so blocks of one round share a CPU
    placement; the interval comes from a two-level bootstrap (rounds, then blocks within them) to account for it."""
    ratios = np.array([statistics.median(c) / statistics.median(r) for r, c in zip(raw_blocks, channel_blocks)])
    pct = (ratios - 1) * 100
    parts = np.array_split(pct, rounds)
    rng = np.random.default_rng(seed)
    boot = np.empty(BOOTSTRAP)
    for i in range(BOOTSTRAP):
        chosen = [parts[j] for j in rng.integers(0, rounds, rounds)]
        boot[i] = np.median(np.concatenate([rng.choice(part, len(part)) for part in chosen]))
    return {"blocks": len(pct), "overhead_pct_median": float(np.median(pct)),
            "overhead_pct_iqr": [float(np.percentile(pct, 25)), float(np.percentile(pct, 75))],
            "overhead_pct_ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
            "overhead_pct_per_round": [float(np.median(part)) for part in parts]}


def verdict(size: int, stats: dict) -> dict:
    """Whether the target applies to this size and, if so, whether it is met and how sure that is."""
    applies = size >= TARGET_MIN_BYTES
    met = stats["overhead_pct_median"] <= TARGET_OVERHEAD_PCT
    low, high = stats["overhead_pct_ci95"]
    sure = high <= TARGET_OVERHEAD_PCT if met else low > TARGET_OVERHEAD_PCT
    return {"target_pct": TARGET_OVERHEAD_PCT, "target_applies": applies, "meets_target": met if applies else None,
            "verdict": ("met" if met else "missed") + ("" if sure else " (the 95 % interval straddles the target)") if applies else "no target below 1 MiB"}


def measure_rounds(secure: bool, keys: Path, size: int, rounds: int, blocks: int, per_block: int,
                   cpus: tuple[int, int] | None, null: bool, transport: str) -> tuple[dict[str, list[list[float]]], dict[str, list[float]]]:
    """measure() over `rounds` pairs of fresh echo servers, pooled; this process runs on the client CPU if pinned."""
    if cpus is not None:
        os.sched_setaffinity(0, {cpus[0]})  # before any socket exists, so libzmq's threads inherit it
    heap.tune()  # before the first raw client: a channel would set it later, and raw must run under the same heap
    arr = np.random.default_rng(size).standard_normal(size // 4, dtype=np.float32)
    times: dict[str, list[list[float]]] = {"raw": [], "channel": []}
    cpu: dict[str, list[float]] = {"raw": [], "channel": []}
    for r in range(rounds):
        got_times, got_cpu = measure(secure, keys, arr, blocks, per_block, r * 10**6, cpus, null, transport)
        for impl in times:
            times[impl] += got_times[impl]
            cpu[impl] += got_cpu[impl]
    return times, cpu


def run_benchmark(sizes: list[int], scale: float, rounds: int, cpus: tuple[int, int] | None, null: bool, transport: str) -> dict:
    """Measure every size x security, raw and channel in alternating blocks, over `rounds` pairs of fresh servers.

    Each size x security runs its clients in a fresh process, so that what earlier sizes left in the
    allocator and the caches (32 MiB buffers, say) does not weigh on the next measurement.
    """
    results, overheads = [], []
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp)
        store = KeyStore(keys)
        store.new("server")
        store.allow("client", store.new("client").public)
        for secure in (False, True):
            for size in sizes:
                blocks, per_block = BLOCKS.get(size, (max(8, 2**28 // size // 8), 4))
                blocks_per_round = max(2, round(blocks * scale / rounds))
                load_before = os.getloadavg()[0]
                with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
                    times, cpu = pool.submit(measure_rounds, secure, keys, size, rounds, blocks_per_round, per_block, cpus, null, transport).result()
                security = "curve" if secure else "plain"
                row = {}
                for impl in ("raw", "channel"):
                    flat = [t for block in times[impl] for t in block]
                    row[impl] = {"payload_bytes": size, "security": security, "impl": impl, **summarise(flat, size),
                                 "client_cpu_us_median": statistics.median(cpu[impl]) * 1e6}
                    results.append(row[impl])
                stats = overhead(times["raw"], times["channel"], rounds, seed=size + secure)
                stats["client_cpu_extra_us"] = row["channel"]["client_cpu_us_median"] - row["raw"]["client_cpu_us_median"]
                overheads.append({"payload_bytes": size, "security": security, "round_trips_per_block": per_block,
                                  "load_avg_1m_before_after": [load_before, os.getloadavg()[0]], **stats, **verdict(size, stats)})
                print_row(row["raw"], row["channel"], overheads[-1])
    return {"results": results, "overhead": overheads}


def stage_costs(repeats: int = 20000) -> dict[str, float]:
    """Per-call cost in microseconds, in a warm loop, of the codec steps each message takes vs what raw does.

    Raw: msgpack.packb of its header; msgpack.unpackb + np.frombuffer(...).reshape on receipt. Channel: encode
    (header with job id, send time, tensor specs and meta, checked) and decode (full validation, Message with a
    view of the frame). In the round trips the same steps run cache-cold after each payload, two to three times
    slower; these numbers show their relative weight.
    """
    arr = np.zeros(2**18, np.float32)
    message = Message(MsgType.FORWARD, JobId("bench", 0, "client", 1), {"act": arr})
    frames = [zmq.Frame(bytes(memoryview(f))) for f in encode(message)]
    raw_frames = [zmq.Frame(msgpack.packb({"v": 1, "type": "forward", "seq": 1, "tensors": [
        {"name": "act", "dtype": "<f4", "shape": [arr.size]}]})), frames[1]]
    limits = Limits()

    def raw_unpack() -> None:
        spec = msgpack.unpackb(raw_frames[0].buffer)["tensors"][0]
        np.frombuffer(raw_frames[1].buffer, dtype=spec["dtype"]).reshape(spec["shape"])

    steps = {
        "raw_pack": lambda: msgpack.packb({"v": 1, "type": "forward", "seq": 1, "tensors": [
            {"name": "act", "dtype": arr.dtype.str, "shape": list(arr.shape)}]}),
        "channel_encode": lambda: encode(message),
        "raw_unpack": raw_unpack,
        "channel_decode": lambda: decode(frames, limits),
    }
    costs = {}
    for name, step in steps.items():
        best = math.inf
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(repeats // 5):
                step()
            best = min(best, (time.perf_counter() - start) / (repeats // 5))
        costs[name] = best * 1e6
    return costs


def print_header() -> None:
    """Column titles of the table."""
    print(f"{'payload':>8} {'security':>8} | {'raw ms':>8} {'raw MiB/s':>10} | {'chan ms':>8} {'chan MiB/s':>10} | "
          f"{'overhead':>8} {'95% interval':>16} {'per round':>22} {'+cpu us':>7} {'load':>5} | target")


def print_row(raw: dict, chan: dict, over: dict) -> None:
    """One table row: raw vs channel median round trip and throughput, overhead from the block ratios, verdict."""
    size = raw["payload_bytes"]
    label = f"{size // 2**20}M" if size >= 2**20 else f"{size // 2**10}K"
    low, high = over["overhead_pct_ci95"]
    rounds = " ".join(f"{pct:+.1f}" for pct in over["overhead_pct_per_round"])
    print(f"{label:>8} {raw['security']:>8} | {raw['rtt_ms_median']:8.3f} {raw['throughput_mib_s']:10.1f} | "
          f"{chan['rtt_ms_median']:8.3f} {chan['throughput_mib_s']:10.1f} | {over['overhead_pct_median']:+7.1f}% "
          f"[{low:+6.1f}, {high:+6.1f}] {rounds:>22} {over['client_cpu_extra_us']:+7.1f} "
          f"{over['load_avg_1m_before_after'][1]:5.1f} | {over['verdict']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse options, run (or serve), print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="64K,1M,4M,32M", help="comma-separated payload sizes")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the iteration counts (0.1 for a quick look)")
    parser.add_argument("--rounds", type=int, default=6, help="fresh server pairs per size (blocks are split among them)")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="let the scheduler place client and servers (default: client on one CPU, servers on another)")
    parser.add_argument("--transport", choices=("tcp", "ipc"), default="tcp",
                        help="loopback TCP (default), or Unix domain sockets, which take TCP's per-connection window "
                             "and pacing state out of the comparison")
    parser.add_argument("--null", action="store_true",
                        help="null experiment: a second raw pyzmq pair stands in for the channel, so the 'overhead' "
                             "shows the method's own noise (its verdicts mean nothing)")
    parser.add_argument("--out", default="bench-results/wire.json", help="JSON output path")
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bind", help=argparse.SUPPRESS)
    parser.add_argument("--serve", choices=("raw", "channel"), help=argparse.SUPPRESS)
    parser.add_argument("--security", choices=("plain", "curve"), help=argparse.SUPPRESS)
    parser.add_argument("--keys", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        if args.cpu is not None:
            os.sched_setaffinity(0, {args.cpu})  # before any socket exists, so libzmq's threads inherit it
        (serve_raw if args.serve == "raw" else serve_channel)(args.security == "curve", KeyStore(args.keys), args.bind)
        return 0
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    load_before = os.getloadavg()
    print_header()
    cpus = pin_cpus(args.pin)
    report = run_benchmark(sizes, args.scale, args.rounds, cpus, args.null, args.transport)
    stages = stage_costs()
    print("warm per-call us: " + ", ".join(f"{name} {us:.2f}" for name, us in stages.items()))
    report = {
        "benchmark": "wire",
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
                 "python": platform.python_version(), "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version(),
                 "msgpack": ".".join(map(str, msgpack.version)), "numpy": np.__version__,
                 "load_avg_1m_before_after": [load_before[0], os.getloadavg()[0]]},
        "params": {"sizes": sizes, "scale": args.scale, "rounds": args.rounds, "transport": "tcp loopback" if args.transport == "tcp" else "ipc (Unix domain socket)",
                   "pinned_cpus": {"client": cpus[0], "servers": cpus[1]} if cpus else None,
                   "null_experiment": args.null, "heap": heap.tune().detail,
                   "connections": "a fresh client connection per block, warmed up first",
                   "warmup_round_trips": {size: warmup_round_trips(size) for size in sizes},
                   "design": "blocks of round trips, raw and channel alternating ABBA; overhead = median over neighbouring "
                             "block pairs of (channel median / raw median - 1), IQR and bootstrap 95 % interval",
                   "raw_sockets": {"sndhwm": CONFIG.hwm, "rcvhwm": CONFIG.hwm, "router_mandatory": True, "copy": False},
                   "channel_config": {"hwm": CONFIG.hwm, "inbox": CONFIG.inbox, "heartbeat_s": CONFIG.heartbeat_s}},
        "target": {"overhead_pct": TARGET_OVERHEAD_PCT, "min_payload_bytes": TARGET_MIN_BYTES,
                   "met_everywhere": all(o["meets_target"] for o in report["overhead"] if o["target_applies"])},
        **report,
        "stage_costs_us_warm": stages,
    }
    write_result(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
