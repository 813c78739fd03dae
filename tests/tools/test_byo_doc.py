"""docs/byo.md's export and data steps, run as written: the model file, the `edgepsl export` command, the
per-client shares, the data config and the loader; the exported segments then learn on client 0's data."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgepsl.segment import SGD, Segment, load_manifest

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's edgepsl, run from a directory outside it


def _blocks() -> list[tuple[str, str]]:
    """(language, code) of every fenced block of docs/byo.md."""
    return BLOCK.findall((ROOT / "docs" / "byo.md").read_text())


def _block(language: str, marker: str) -> str:
    """The first block of `language` containing `marker`."""
    return next(code for lang, code in _blocks() if lang == language and marker in code)


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a snippet in a fresh interpreter in cwd."""
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)


def test_tutorial_export_and_data_steps_run_as_written(tmp_path):
    (tmp_path / "my_model.py").write_text(_block("python", "def build():"))
    command = next(line for line in _block("sh", "edgepsl export").splitlines() if line.startswith("edgepsl export"))
    done = subprocess.run([sys.executable, "-m", "edgepsl", *shlex.split(command)[1:]], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    manifest = load_manifest(tmp_path / "my-artifact")
    assert manifest.model == "build" and manifest.metric == "accuracy"
    done = _python(_block("python", "write_fashion_mnist_shares("), tmp_path)
    assert done.returncode == 0, done.stderr
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
