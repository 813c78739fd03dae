"""Benchmark: a peer that never reads its replies does not slow a run's rounds.

A small local run with the demo's roles (helpers and clients as processes, CURVE, the paper's emulated devices as
`edgepsl demo --emulate paper` draws them, on loopback links so that rounds stay short) runs undisturbed and
disturbed, alternating, `--pairs` times. Disturbed, an intruder joins at round 0: a peer with an allowed key (no
role of the run) that sends the coordinator reports it refuses, first a burst that fills the coordinator's queue
towards it (its own receive buffers are tiny) and then a steady stream, and never reads the refusals. It reports
the median round wall time (between consecutive rounds' metrics) and the median realised makespan of each run, the
disturbed-to-undisturbed ratios of the medians, and the coordinator's refusals, dropped refusals and blocking waits
(a send that waited `send_timeout_s` for the intruder).

    python tools/bench_backpressure.py [--clients 3] [--helpers 2] [--rounds 30] [--pairs 2]
                                       [--out bench-results/backpressure.json]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgepsl.runtime.config import RunConfig  # noqa: E402
from edgepsl.runtime.emulation import Emulation, paper_fleet  # noqa: E402
from edgepsl.runtime.launch import COORDINATOR, LocalRun, run_local  # noqa: E402
from edgepsl.wire import JobId, KeyStore, Message, MsgType, encode  # noqa: E402
from tools.bench_output import machine, settings, write_result  # noqa: E402

INTRUDER = "mallory"
BURST = 10000  # refusals: more than the coordinator's queue towards the intruder (hwm 1024) and its socket buffers hold
RUN = "intruder-" + "x" * 247  # the longest run id the wire takes: every refusal echoes it (about 0.5 KiB each)
RATE_HZ = 50.0
TARGET_RATIO = 0.10
DROPPED = "dropped the refusal to " + INTRUDER
BLOCKED = f"dropped a error to {INTRUDER}, which is not reading: its queue stayed full"


class Intruder:
    """A peer with an allowed key that sends the coordinator messages it refuses and never reads the replies.

    Its socket holds one received message and a 4 KiB kernel buffer, so the coordinator's queue towards it fills.
    """

    def __init__(self, store: KeyStore, burst: int = BURST, rate_hz: float = RATE_HZ) -> None:
        self.keypair = store.identity(INTRUDER)
        self.server_key = store.identity(COORDINATOR).public
        self.burst = burst
        self.rate_hz = rate_hz
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, endpoint: str) -> None:
        """Connect to the coordinator and start sending (on a thread of its own)."""
        self._thread = threading.Thread(target=self._run, args=(endpoint,), daemon=True)
        self._thread.start()

    def stop(self) -> int:
        """Stop sending and disconnect; the number of messages sent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
        return self.sent

    def _run(self, endpoint: str) -> None:
        context = zmq.Context()
        socket = context.socket(zmq.DEALER)
        socket.linger = 0
        socket.rcvhwm, socket.rcvbuf = 1, 4096
        socket.sndhwm = self.burst
        socket.curve_secretkey, socket.curve_publickey = self.keypair.secret, self.keypair.public
        socket.curve_serverkey = self.server_key
        socket.routing_id = self.keypair.routing_id()
        socket.connect(endpoint)
        try:
            while not self._stop.is_set():
                if self.sent >= self.burst:
                    self._stop.wait(1.0 / self.rate_hz)
                # a round report without its fields: the coordinator refuses it with BAD_PAYLOAD
                frames = encode(Message(MsgType.REPORT, JobId(RUN, 10 ** 6, INTRUDER, self.sent),
                                        meta={"phase": "round"}))
                try:
                    socket.send_multipart(frames, flags=zmq.NOBLOCK)
                    self.sent += 1
                except zmq.Again:  # the coordinator reads only while it waits for something: try again later
                    self._stop.wait(0.01)
        finally:
            socket.close()
            context.term()


class Counts(logging.Handler):
    """Counts the coordinator's log lines about the intruder: refusals and dropped refusals (each line with the
    similar ones its rate limit suppressed), blocking waits."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.refused = self.dropped = self.blocked = 0

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        # refusal lines are rate-limited per peer: a line counts itself and the similar ones it says were suppressed
        suppressed = re.search(r"\((\d+) similar messages suppressed\)$", text)
        lines = 1 + (int(suppressed.group(1)) if suppressed else 0)
        self.refused += lines * text.startswith(f"refused report from {INTRUDER}")
        self.dropped += lines * text.startswith(DROPPED)
        self.blocked += text.startswith(BLOCKED)


def disturbed_run(run: LocalRun, intruder: Intruder | None) -> tuple[Any, list[float]]:
    """Run `run` (with the intruder joining at round 0, if any); (summary, wall time of each round from the 2nd, s)."""
    ends: list[float] = []

    def on_round(metrics: dict[str, Any]) -> None:
        ends.append(time.perf_counter())
        if metrics["round"] == 0 and intruder is not None:
            intruder.start(json.loads((run.run_dir / "roles.json").read_text())["coordinator"])

    try:
        summary = run_local(run, on_round)
    finally:
        if intruder is not None:
            intruder.stop()
    return summary, np.diff(ends).tolist()


def with_intruder_key(run_dir: Path) -> KeyStore:
    """The run's key store with the intruder's key pair in it: a local run allows every key of its store."""
    store = KeyStore(run_dir / "keys")
    store.new(INTRUDER)
    store.new(COORDINATOR)
    return store


def main() -> int:
    """Alternate undisturbed and disturbed runs, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--helpers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--pairs", type=int, default=2, help="undisturbed and disturbed runs, alternating")
    parser.add_argument("--time-scale", type=float, default=0.005,
                        help="scale of the emulated devices' times (default 0.005)")
    parser.add_argument("--burst", type=int, default=BURST)
    parser.add_argument("--rate", type=float, default=RATE_HZ,
                        help="the intruder's messages per second after the burst")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "backpressure.json")
    args = parser.parse_args()
    counts = Counts()
    logging.getLogger().addHandler(counts)  # also keeps the refusals' log lines off stderr
    fleet, helpers = paper_fleet(args.clients, args.helpers, args.seed)
    clients = [Emulation(device=e.device) for e in fleet]  # the paper's devices on loopback links: rounds stay short
    config = RunConfig(run_id="bench-backpressure", clients=args.clients, helpers=args.helpers, rounds=args.rounds,
                       batch_size=32, aggregate_every=5, eval_every=args.rounds, seed=args.seed,
                       train_samples=args.clients * 256, test_samples=500, emulation_profile="resnet101_cifar10",
                       time_scale=args.time_scale, profile_iters=1, probe_repeats=1)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-backpressure-") as tmp:
        for pair in range(args.pairs):
            for disturbed in (False, True):
                run_dir = Path(tmp) / f"{pair}-{'disturbed' if disturbed else 'undisturbed'}"
                intruder = Intruder(with_intruder_key(run_dir), args.burst, args.rate) if disturbed else None
                counts.refused = counts.dropped = counts.blocked = 0
                t = time.perf_counter()
                summary, round_s = disturbed_run(LocalRun(config, run_dir, client_emulation=clients,
                                                          helper_emulation=helpers), intruder)
                row = {"pair": pair, "disturbed": disturbed, "wall_s": time.perf_counter() - t,
                       "round_wall_ms_median": 1e3 * float(np.median(round_s)),
                       "round_wall_ms_max": 1e3 * float(np.max(round_s)),
                       "realised_makespan_ms_median": float(np.median(summary.realised_makespan_ms[1:])),
                       "final_loss": summary.records[-1]["loss"], "accuracy": summary.accuracy,
                       "intruder_sent": intruder.sent if intruder else 0, "refused": counts.refused,
                       "refusals_dropped": counts.dropped, "blocking_waits": counts.blocked}
                rows.append(row)
                print(f"pair {pair} {'disturbed  ' if disturbed else 'undisturbed'} round "
                      f"{row['round_wall_ms_median']:7.1f} ms (max {row['round_wall_ms_max']:7.1f})  "
                      f"makespan {row['realised_makespan_ms_median']:7.1f} ms  "
                      f"loss {row['final_loss']:.4f}  sent {row['intruder_sent']:5d}  refused {row['refused']:5d}  "
                      f"dropped {row['refusals_dropped']:5d}  blocking waits {row['blocking_waits']}", flush=True)

    def median(key: str, disturbed: bool) -> float:
        return float(np.median([r[key] for r in rows if r["disturbed"] is disturbed]))

    ratios = {key: median(key, True) / median(key, False)
              for key in ("round_wall_ms_median", "realised_makespan_ms_median")}
    same = all(r["final_loss"] == rows[0]["final_loss"] for r in rows)
    checks = {"round_time_within_10pct": abs(ratios["round_wall_ms_median"] - 1) <= TARGET_RATIO,
              "makespan_within_10pct": abs(ratios["realised_makespan_ms_median"] - 1) <= TARGET_RATIO,
              "same_final_loss": same, "ratios": ratios}
    print(f"\ndisturbed / undisturbed medians: round wall time {ratios['round_wall_ms_median']:.3f}, realised "
          f"makespan {ratios['realised_makespan_ms_median']:.3f}; same final loss in every run: {same}")
    write_result(args.out, {"benchmark": "backpressure",
                            "machine": machine(load_before),
                            "settings": settings(args),
                            "runs": rows, "targets": checks})
    return 0


if __name__ == "__main__":
    sys.exit(main())
