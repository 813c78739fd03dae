"""The heap policy of channel processes: pinned glibc thresholds keep message buffers in the heap, and the policy
follows the environment (EDGEPSL_HEAP, glibc's own malloc settings) or refuses an unknown value."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from edgepsl.cli import main
from edgepsl.wire import ChannelConfigError, ServerChannel, heap

ROOT = Path(__file__).resolve().parents[2]
GLIBC = platform.libc_ver()[0] == "glibc"

# 1 MiB CURVE round trips through a real server and peer in one fresh process; prints the heap policy and the minor
# page faults of every round trip (the process's, so libzmq's I/O threads count too)
ROUND_TRIPS = """
import json, resource, sys, tempfile
import numpy as np
from edgepsl.wire import (Envelope, JobId, KeyStore, Message, MsgType, PeerChannel, PeerSecurity, ServerChannel,
                          ServerSecurity, heap)

store = KeyStore(tempfile.mkdtemp())
store.new("server")
store.allow("c", store.new("c").public)
server = ServerChannel("tcp://127.0.0.1:*", security=ServerSecurity.from_store(store, "server"))
peer = PeerChannel(server.endpoint, "c", security=PeerSecurity.from_store(store, "c", store.identity("server").public))
arr = np.ones(2**18, np.float32)


def take(channel):
    for _ in range(100):
        item = channel.recv(timeout=10)
        if isinstance(item, Envelope):
            return item
    sys.exit("no message within 100 deliveries")


faults = []
for seq in range(40):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    peer.send(Message(MsgType.FORWARD, JobId("r", 0, "c", seq), {"act": arr}))
    got = take(server)
    server.send("c", Message(MsgType.ACTIVATIONS, got.message.job, {"act": got.message.tensors["act"]}))
    del got
    take(peer)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
peer.close()
server.close()
print(json.dumps({"pinned": heap.tune().pinned, "faults": faults}))
"""


def faults_per_round_trip(**env: str) -> tuple[bool, list[int]]:
    """Run ROUND_TRIPS in a fresh interpreter with `env` added; return whether the heap was pinned and the faults."""
    clean = {k: v for k, v in os.environ.items() if k not in ("EDGEPSL_HEAP", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    proc = subprocess.run([sys.executable, "-c", ROUND_TRIPS], capture_output=True, text=True, timeout=120,
                          env={**clean, "PYTHONPATH": str(ROOT), **env})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    return out["pinned"], out["faults"]


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's; other C libraries are left alone")
def test_pinned_heap_reuses_curve_message_buffers():
    """Once warm, a pinned process faults in (almost) no pages per 1 MiB CURVE round trip; under glibc's dynamic
    thresholds the same round trips hand the buffers back and fault hundreds of pages in again each time."""
    pinned, faults = faults_per_round_trip()
    assert pinned
    warm = sorted(faults[10:])
    assert warm[len(warm) // 2] <= 8 and warm[-1] <= 64, faults
    dynamic, faults = faults_per_round_trip(EDGEPSL_HEAP="glibc")
    assert not dynamic
    warm = sorted(faults[10:])
    assert warm[len(warm) // 2] >= 100, faults  # the cost the pinning removes (256 pages make 1 MiB)


@pytest.fixture()
def fresh_policy(monkeypatch):
    """tune() decides anew in this test (the process's own decision is restored afterwards)."""
    monkeypatch.setattr(heap, "_state", None)
    for name in ("EDGEPSL_HEAP", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("name, value, named", [
    ("EDGEPSL_HEAP", "glibc", "EDGEPSL_HEAP=glibc"),
    ("MALLOC_MMAP_THRESHOLD_", "1048576", "MALLOC_MMAP_THRESHOLD_"),
    ("MALLOC_TRIM_THRESHOLD_", "1048576", "MALLOC_TRIM_THRESHOLD_"),
    ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1048576", "GLIBC_TUNABLES (glibc.malloc.trim_threshold)"),
])
def test_user_settings_leave_the_heap_alone(fresh_policy, name, value, named):
    """A heap the user tuned (or EDGEPSL_HEAP=glibc) is not pinned, and the report names the setting."""
    fresh_policy.setenv(name, value)
    state = heap.tune()
    assert not state.pinned and named in state.detail


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's; other C libraries are left alone")
@pytest.mark.parametrize("value", ["", "pinned"])
def test_default_policy_pins_once(fresh_policy, value):
    """Unset or 'pinned': both thresholds pinned, reported with their values; later calls return the same outcome."""
    fresh_policy.setenv("EDGEPSL_HEAP", value)
    state = heap.tune()
    assert state.pinned and f"mmap threshold {heap.MMAP_THRESHOLD >> 20} MiB" in state.detail
    fresh_policy.setenv("EDGEPSL_HEAP", "glibc")
    assert heap.tune() is state


def test_unknown_policy_is_refused(fresh_policy, capsys):
    """An unknown EDGEPSL_HEAP stops a channel before it opens anything, and doctor reports it with status 1."""
    fresh_policy.setenv("EDGEPSL_HEAP", "huge")
    with pytest.raises(ChannelConfigError, match="EDGEPSL_HEAP='huge' is not a heap policy: use 'pinned'"):
        ServerChannel("tcp://127.0.0.1:*", insecure=True)
    assert main(["doctor"]) == 1
    assert "heap thresholds: error: EDGEPSL_HEAP='huge'" in capsys.readouterr().out
