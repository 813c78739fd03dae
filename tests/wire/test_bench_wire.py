"""tools/bench_wire.py runs end to end at a tiny scale on either transport and writes the JSON its docs describe."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_bench_wire_smoke(tmp_path, transport):
    """64 KiB, plaintext and CURVE, 2 rounds of 2 blocks: every row is measured, and no target is claimed below 1 MiB."""
    out = tmp_path / "wire.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_wire.py"), "--sizes", "64K", "--scale", "0.02",
                           "--rounds", "2", "--transport", transport, "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert [(row["security"], row["blocks"]) for row in report["overhead"]] == [("plain", 4), ("curve", 4)]
    assert all(row["verdict"] == "no target below 1 MiB" for row in report["overhead"])
    assert {(row["impl"], row["security"]) for row in report["results"]} == {
        (impl, sec) for impl in ("raw", "channel") for sec in ("plain", "curve")}
    assert all(row["iterations"] == 4 * 10 and row["rtt_ms_median"] > 0 for row in report["results"])
    assert report["params"]["transport"].startswith(transport) and report["params"]["heap"]
