"""Bring your own data and receive the artifact: role commands where every client reads its own .npz file and every
role starts with an empty artifact cache and no artifact path; a client whose file has the wrong shape ends the run
with a DataShapeError naming it."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgepsl.cli import build_parser
from edgepsl.cli import client as client_cli
from edgepsl.data.idx import load_fashion_mnist
from edgepsl.data.shares import write_fashion_mnist_shares
from edgepsl.data.spec import load_client_data, load_test_data
from edgepsl.runtime.artifact_store import artifact_sha256
from edgepsl.runtime import dataset
from edgepsl.runtime.errors import RunConfigError
from edgepsl.runtime.launch import LocalRun, client_data_args
from edgepsl.segment import load_manifest
from tests.runtime.conftest import SMALL
from tests.runtime.processes import CommandRun

EXIT_S = 120.0
NORMALISATION = ["--mean", "0.286", "--std", "0.353", "--divide", "255"]


def _start(run: CommandRun, data: list[str], caches) -> None:
    """The coordinator, then every helper and client (client j reads data[j]), each with its own empty cache."""
    run.coordinator()
    for name in run.helpers:
        run.role(name, env={"EDGEPSL_ARTIFACT_CACHE": str(caches / name)})
    for name, spec in zip(run.clients, data):
        run.role(name, "--data", spec, *NORMALISATION, env={"EDGEPSL_ARTIFACT_CACHE": str(caches / name)})


def test_clients_read_their_own_files_and_receive_the_artifact(tmp_path):
    """3 clients, 300 Fashion-MNIST images each in their own file; the artifact travels in 64 KiB chunks."""
    config = SMALL.replace(clients=3, helpers=1, rounds=20, aggregate_every=5, eval_every=10, artifact_chunk_kb=64)
    files = write_fashion_mnist_shares(tmp_path / "data", 3, train_samples=900, min_size=config.batch_size)
    run = CommandRun(tmp_path, config)
    try:
        _start(run, [f"npz:{path}" for path in files], tmp_path / "caches")
        codes = run.wait_all(EXIT_S)
    finally:
        run.kill_all()
    assert codes == {name: 0 for name in run.procs}, run.log("coordinator")
    sha = artifact_sha256(config.artifact)
    for name in [*run.helpers, *run.clients]:
        assert f"receiving artifact lenet5 ({sha[:12]}..., " in run.log(name)
        assert artifact_sha256(tmp_path / "caches" / name / sha) == sha
        assert sorted(p.name for p in (tmp_path / "caches" / name).iterdir()) == [sha]
    records = [json.loads(line) for line in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["round"] for m in records] == list(range(20))
    assert records[-1]["accuracy"] > 0.25, records[-1]  # chance is 0.1; this seed gave 0.369
    assert "test accuracy:" in run.log("coordinator")


def test_a_client_whose_data_has_the_wrong_shape_ends_the_run_naming_it(tmp_path):
    config = SMALL.replace(clients=2, helpers=1, rounds=4, aggregate_every=2, eval_every=4)
    good = write_fashion_mnist_shares(tmp_path / "data", 2, train_samples=200, min_size=config.batch_size)[0]
    bad = tmp_path / "data" / "wrong.npz"
    np.savez(bad, x=np.zeros((100, 28, 27), np.uint8), y=np.zeros(100, np.int64))
    run = CommandRun(tmp_path, config)
    try:
        _start(run, [f"npz:{good}", f"npz:{bad}"], tmp_path / "caches")
        codes = run.wait_all(EXIT_S)
    finally:
        run.kill_all()
    coordinator = run.log("coordinator")
    assert codes["coordinator"] == 1 and codes["client1"] == 1, coordinator
    assert codes["client0"] == 0 and codes["helper0"] == 0
    assert "client1 failed: DataShapeError: data npz:" in coordinator, coordinator
    assert "x has shape 100x28x27, but the artifact 'lenet5' takes inputs of shape Bx1x28x28" in coordinator
    assert not (run.run_dir / "metrics.jsonl").is_file() or not (run.run_dir / "metrics.jsonl").read_text()


@pytest.mark.parametrize("spec,text", [("npz:/nonexistent/share.npz", "DataSpecError: data file /nonexistent"),
                                       ("csv:share.csv", "data spec 'csv:share.csv' must be")])
def test_a_bad_data_spec_is_named_before_anything_starts(spec, text, tmp_path):
    """A spec that cannot be parsed stops the client at once; one that names no file ends the run naming it."""
    config = SMALL.replace(clients=1, helpers=1, rounds=2, aggregate_every=2, eval_every=2)
    run = CommandRun(tmp_path, config)
    try:
        _start(run, [spec], tmp_path / "caches")
        if spec.startswith("csv"):
            assert run.procs["client0"].wait(timeout=EXIT_S) == 1
            assert text in run.log("client0")
            return
        codes = run.wait_all(EXIT_S)
    finally:
        run.kill_all()
    assert codes["coordinator"] == 1 and codes["client0"] == 1
    assert text in run.log("coordinator")


def test_local_runs_give_each_client_the_demo_share_and_the_coordinator_the_demo_test_set(tmp_path):
    """The shares written for a local run's clients, read with their --data options, are today's demo arrays."""
    config = SMALL.replace(clients=3, partition="dirichlet", alpha=0.5)
    manifest = load_manifest(config.artifact)
    for j, args in enumerate(client_data_args(LocalRun(config, tmp_path))):
        assert args[:2] == ["--data", f"npz:{tmp_path / 'data' / f'client{j}.npz'}"]
        spec, normalisation = client_cli._data(build_parser().parse_args(
            ["client", "--coordinator", "tcp://127.0.0.1:1", "--name", f"client{j}", "--insecure", *args]))
        ours = load_client_data(spec, manifest, normalisation, index=j, seed=config.seed,
                                batch_size=config.batch_size)
        demo = dataset.client_data(config, j)
        np.testing.assert_array_equal(ours.x, demo.x)
        np.testing.assert_array_equal(ours.y, demo.y)
        assert ours.x.dtype == demo.x.dtype and ours.y.dtype == demo.y.dtype
    x, y = load_test_data(config.test_spec, manifest, config.normalisation, limit=config.test_samples)
    test_x, test_y = load_fashion_mnist("t10k", config.data_dir)  # the demo's test set until now
    np.testing.assert_array_equal(x, dataset.normalise(test_x[:config.test_samples]))
    np.testing.assert_array_equal(y, test_y[:config.test_samples])


@pytest.mark.parametrize("changes,text", [({"mean": [0.5, 0.5], "std": [0.2]}, "one value per channel"),
                                          ({"std": [0.0]}, "std > 0"),
                                          ({"artifact_chunk_kb": 5000}, "artifact_chunk_kb' must be in 1..4096"),
                                          ({"mean": ["a"]}, "config key 'mean' must be a tuple")])
def test_the_test_set_normalisation_and_chunk_size_keys_are_checked(changes, text):
    with pytest.raises(RunConfigError, match=text):
        SMALL.replace(**changes)
