"""docs/byo.md run as written: the model file, the `edgepsl export` command, the per-client shares, the data config
and the loader (the exported segments then learn on client 0's data); then the keys and the three role commands,
each role in a directory of its own (its own key store, data and artifact cache; only the coordinator holds the
artifact), with fewer rounds than the tutorial's."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from edgepsl.runtime.artifact_store import artifact_sha256
from edgepsl.runtime.config import RunConfig
from edgepsl.segment import SGD, Segment, load_manifest

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's edgepsl, run from a directory outside it
ROLES_S = 180


def _blocks() -> list[tuple[str, str]]:
    """(language, code) of every fenced block of docs/byo.md."""
    return BLOCK.findall((ROOT / "docs" / "byo.md").read_text())


def _block(language: str, marker: str) -> str:
    """The first block of `language` containing `marker`."""
    return next(code for lang, code in _blocks() if lang == language and marker in code)


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a snippet in a fresh interpreter in cwd."""
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


def _edgepsl(command: str, cwd: Path, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    """Start an `edgepsl ...` line of the tutorial as this checkout's command in cwd."""
    return subprocess.Popen([sys.executable, "-m", "edgepsl", *shlex.split(command)[1:]], cwd=cwd,
                            env={**ENV, **(env or {})}, **kwargs)


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory) -> Path:
    """A directory where the tutorial's export and share steps ran (my_model.py, my-artifact/, data/)."""
    root = tmp_path_factory.mktemp("byo")
    (root / "my_model.py").write_text(_block("python", "def build():"))
    command = next(line for line in _block("sh", "edgepsl export").splitlines() if line.startswith("edgepsl export"))
    done = subprocess.run([sys.executable, "-m", "edgepsl", *shlex.split(command)[1:]], cwd=root, env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    done = _python(_block("python", "write_fashion_mnist_shares("), root)
    assert done.returncode == 0, done.stderr
    return root


def test_tutorial_export_and_data_steps_run_as_written(tutorial, tmp_path):
    for name in ("my_model.py", "my-artifact", "data"):
        (tmp_path / name).symlink_to(tutorial / name)
    manifest = load_manifest(tmp_path / "my-artifact")
    assert manifest.model == "build" and manifest.metric == "accuracy"
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["client0.npz", "client1.npz", "client2.npz"]
    (tmp_path / "client0-data.toml").write_text(_block("toml", "# client0-data.toml"))
    loader = _block("python", "DataConfig.load(")
    done = _python(loader + "\nimport numpy\nnumpy.savez('batch.npz', x=x, y=y, samples=data.samples)\n", tmp_path)
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "batch.npz") as batch:
        x, y, samples = batch["x"], batch["y"], int(batch["samples"])
    assert x.shape == (32, 1, 28, 28) and y.dtype == np.int64 and samples == 1000
    parts = [Segment(manifest, s.name, threads=1) for s in manifest.segments]
    optimizers = [SGD(p.params, lr=0.05, momentum=0.9) for p in parts]
    losses = []
    for step in range(15):
        result = parts[2].train_step(parts[1].forward(step, parts[0].forward(step, x)), y)
        back = parts[1].backward(step, result.grad_in)
        grads = [parts[0].backward(step, back.grad_in).grads, back.grads, result.grads]
        for opt, g in zip(optimizers, grads):
            opt.step(g)
        losses.append(result.loss)
    assert losses[-1] < 0.5 * losses[0]


def _commands(marker: str) -> list[str]:
    """The `edgepsl` lines of the first sh block holding `marker`, continuation lines joined, comments dropped."""
    text = _block("sh", marker).replace("\\\n", " ")
    return [line.split("#")[0].strip() for line in text.splitlines() if line.startswith("edgepsl ")]


def test_tutorial_role_commands_train_on_each_clients_own_data(tutorial, tmp_path):
    """Keys, run.toml and the coordinator, helper and client commands as the tutorial gives them (endpoints on
    127.0.0.1, 20 rounds instead of 200; client1 and client2 as client0 with their names)."""
    clients = [f"client{j}" for j in range(3)]
    machines = {name: tmp_path / name for name in ["coordinator", "helper0", *clients]}
    for name, home in machines.items():
        home.mkdir()
    env = {name: {"EDGEPSL_KEYS": str(home / "keys"), "EDGEPSL_ARTIFACT_CACHE": str(home / "cache")}
           for name, home in machines.items()}
    new, *allow = _commands("edgepsl keys new")
    for name, home in machines.items():  # on each machine: its own key pair
        assert _edgepsl(new.replace("client0", name), home, env[name], stdout=subprocess.DEVNULL).wait(60) == 0
    coordinator = machines["coordinator"]
    for name in ["helper0", *clients]:  # copy NAME.key over, allow it
        shutil.copy(machines[name] / "keys" / f"{name}.key", coordinator / f"{name}.key")
        shutil.copy(coordinator / "keys" / "coordinator.key", machines[name] / "coordinator.key")
    allows = allow + [allow[-1].replace("client0", name) for name in clients[1:]]
    for line in allows:
        assert _edgepsl(line, coordinator, env["coordinator"], stdout=subprocess.DEVNULL).wait(60) == 0
    config = tomllib.loads(_block("toml", 'artifact = "my-artifact"'))
    assert config["artifact"] == "my-artifact" and config["clients"] == 3
    config.update(rounds=20, eval_every=20)
    RunConfig.from_dict(config).save(coordinator / "run.toml")
    shutil.copytree(tutorial / "my-artifact", coordinator / "my-artifact")  # only the coordinator has it
    for j, name in enumerate(clients):  # each client: its own share and data config
        (machines[name] / "data").mkdir()
        shutil.copy(tutorial / "data" / f"client{j}.npz", machines[name] / "data" / f"client{j}.npz")
        data_config = _block("toml", "# client0-data.toml").replace("client0", name)
        (machines[name] / f"{name}-data.toml").write_text(data_config)
    port, helper_port = _free_port(), _free_port()
    lines = _commands("edgepsl coordinator")
    rename = {"tcp://0.0.0.0:5555": f"tcp://127.0.0.1:{port}", "tcp://coord-host:5555": f"tcp://127.0.0.1:{port}",
              "tcp://0.0.0.0:5600": f"tcp://127.0.0.1:{helper_port}",
              "tcp://helper0-host:5600": f"tcp://127.0.0.1:{helper_port}"}

    def local(line: str) -> str:
        for old, new in rename.items():
            line = line.replace(old, new)
        return line

    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, line in (("coordinator", lines[0]), ("helper0", lines[1]),
                           *((name, lines[2].replace("client0", name)) for name in clients)):
            with open(tmp_path / f"{name}.log", "wb") as log:
                procs[name] = _edgepsl(local(line), machines[name], env[name], stdout=log, stderr=subprocess.STDOUT)
        codes = {name: proc.wait(timeout=ROLES_S) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    logs = {name: (tmp_path / f"{name}.log").read_text(errors="replace") for name in procs}
    assert codes == {name: 0 for name in procs}, logs
    sha = artifact_sha256(coordinator / "my-artifact")
    for name in ["helper0", *clients]:
        assert artifact_sha256(machines[name] / "cache" / sha) == sha
    records = [json.loads(line) for line in (coordinator / "runs" / "mine" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 20 and records[-1]["accuracy"] > 0.3, records[-1]  # chance: 0.1
    assert "test accuracy:" in logs["coordinator"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
