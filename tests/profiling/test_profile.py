"""`edgepsl profile`: a measured profile is complete and plausible, plans, merges devices, rejects bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgepsl.cli import main
from edgepsl.plan.heuristics import solve
from edgepsl.plan.profiles import build_instance, load_profile
from edgepsl.profiling.device import device_info
from edgepsl.profiling.errors import ProfilingError
from edgepsl.profiling.measure import profile_artifact
from edgepsl.profiling.profile_file import merge_device, profile_dict
from edgepsl.segment import Segment, load_manifest

ARTIFACT = str(Path(__file__).resolve().parents[2] / "edgepsl" / "artifacts" / "lenet5-fmnist")
BATCH = 16


@pytest.fixture(scope="module")
def costs():
    return profile_artifact(ARTIFACT, batch=BATCH, warmup=1, repeats=5, threads=1)


def test_profile_is_complete_and_plausible(costs) -> None:
    manifest = load_manifest(ARTIFACT)
    assert costs.names == [s.name for s in manifest.segments]
    for key in ("fwd_ms", "bwd_ms"):
        assert all(v > 0 for v in costs.median[key])
        assert all(lo <= med <= hi for lo, med, hi in zip(costs.p10[key], costs.median[key], costs.p90[key]))
    assert all(v > 0 for v in costs.median["update_ms"])
    # part1 is LeNet's first convolution block: its backward (input and weight gradients) costs more.
    assert costs.median["bwd_ms"][0] > costs.median["fwd_ms"][0]


def test_sizes_are_the_tensors_byte_sizes(costs) -> None:
    rng = np.random.default_rng(0)
    for k, name in enumerate(costs.names):
        seg = Segment(ARTIFACT, name, threads=1)
        x = rng.standard_normal((BATCH, *seg.spec.input.shape[1:])).astype(np.float32)
        out = seg.evaluate(x)
        assert costs.activation_kb[k] == out.nbytes / 1024
        assert costs.weights_kb[k] == sum(p.nbytes for p in seg.params.values()) / 1024


def test_measured_profile_builds_an_instance_that_plans(costs, tmp_path) -> None:
    info = device_info(["CPUExecutionProvider"], 1, BATCH)
    fast = profile_dict(costs, "lenet5", "fashion-mnist", "here", info)
    slow = profile_dict(costs, "lenet5", "fashion-mnist", "here-again", info)
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(merge_device(fast, slow)))
    profile = load_profile(path)
    assert profile.devices == ("here", "here-again") and profile.fwd_ms.shape == (2, 3)
    inst = build_instance(profile, ["here-again"] * 4, ["here"] * 2, (1, 2), 20.0)
    sol = solve(inst, "greedy-ls")
    assert sol.makespan >= sol.bound.value > 0


def test_merge_refuses_a_different_batch(costs) -> None:
    info = device_info(["CPUExecutionProvider"], 1, BATCH)
    a = profile_dict(costs, "lenet5", "fmnist", "a", info)
    b = profile_dict(costs, "lenet5", "fmnist", "b", info)
    b["memory"] = {k: [2 * v for v in vals] for k, vals in b["memory"].items()}
    with pytest.raises(ProfilingError, match="batch size different"):
        merge_device(a, b)
    b = profile_dict(costs, "vgg11", "fmnist", "b", info)
    with pytest.raises(ProfilingError, match="model="):
        merge_device(a, b)


def test_bad_options_are_clear_errors() -> None:
    with pytest.raises(ProfilingError, match="repeats >= 1"):
        profile_artifact(ARTIFACT, repeats=0)
    with pytest.raises(ProfilingError, match="not available here"):
        profile_artifact(ARTIFACT, providers=("NoSuchExecutionProvider",))


def test_cli_writes_and_extends_a_profile(tmp_path, capsys) -> None:
    out = tmp_path / "lenet.json"
    args = ["profile", "--model", ARTIFACT, "--batch", "8", "--repeats", "3", "--warmup", "1", "--threads", "1"]
    assert main([*args, "--device", "pi", "--out", str(out)]) == 0
    assert main([*args, "--device", "gpu-box", "--out", str(out), "--merge"]) == 0
    assert "wrote" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert set(data["devices"]) == {"pi", "gpu-box"} and data["device_info"]["pi"]["batch"] == 8
    assert main([*args, "--device", "x", "--out", str(tmp_path / "none.json"), "--merge"]) == 1
    assert "needs an existing profile" in capsys.readouterr().err
