"""Bring your own model: models defined in a file outside the repository, exported with `edgepsl export` in a
subprocess, train split (part1 -> part2 -> part3 on onnxruntime) exactly like PyTorch, step for step.

A small CNN with BatchNorm (cross-entropy) and an MLP regression model (mean squared error), both with the auto aux
head (its local-loss step matches float64 PyTorch, BatchNorm statistics included); per step the loss,
every gradient and the BatchNorm statistics match float64 PyTorch computed from the pipeline's current state within
the exporter's bound, and the loss and the weights after the steps match an unsplit float32 PyTorch run with
torch.optim.SGD.
"""
from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgepsl.data.shares import save_npz
from edgepsl.data.spec import DataShapeError, Normalisation, load_client_data
from edgepsl.errors import EdgePSLError
from edgepsl.export import export_model, load_model
from edgepsl.export.aux_head import auto_aux_head
from edgepsl.export.losses import loss_value
from edgepsl.export.verify import reference, rel_l2, tensor_errors
from edgepsl.learning import LocalLoss
from edgepsl.segment import SGD, Segment, SegmentInputError, load_manifest, names
from edgepsl.segment.losses import BCE_LOGITS, CROSS_ENTROPY, LOSSES, MSE
from tests.tools.torch_reference import assert_within_bounds, load_runtime_state

ROOT = Path(__file__).resolve().parents[2]
STEPS, BATCH, LR = 3, 4, 0.05

MODEL_FILE = '''
import torch
from torch import nn


def cnn():
    """Two conv-BatchNorm-ReLU-pool blocks and a classifier, as a list of blocks."""
    return [nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2)),
            nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2)),
            nn.Sequential(nn.Flatten(), nn.Linear(6 * 2 * 2, 3))]


def regression():
    """A 5-16-8-2 MLP with two regression outputs."""
    return nn.Sequential(nn.Sequential(nn.Linear(5, 16), nn.Tanh()), nn.Sequential(nn.Linear(16, 8), nn.ReLU()),
                         nn.Linear(8, 2))


class Unsupported(nn.Module):
    def forward(self, x):
        return torch.cummax(x, 1)[0]


def unsupported():
    return [nn.Linear(4, 4), Unsupported(), nn.Linear(4, 3)]
'''

CASES = {"cnn": ("1,8,8", CROSS_ENTROPY), "regression": ("5", MSE)}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """The user's model file, in a temporary directory outside the repository."""
    path = tmp_path_factory.mktemp("user") / "my_models.py"
    path.write_text(MODEL_FILE)
    return path


def _cli_export(model_ref: str, shape: str, loss: str, out: Path) -> subprocess.CompletedProcess:
    """`python -m edgepsl export ...` from the repository root."""
    return subprocess.run([sys.executable, "-m", "edgepsl", "export", "--model", model_ref, "--cuts", "1,2",
                           "--input-shape", shape, "--loss", loss, "--aux-head", "auto", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module", params=sorted(CASES))
def exported(request, model_file, tmp_path_factory):
    """(factory name, artifact directory) of a model exported with the CLI."""
    name = request.param
    shape, loss = CASES[name]
    out = tmp_path_factory.mktemp(name) / "artifact"
    done = _cli_export(f"{model_file}:{name}", shape, loss, out)
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout
    return name, out


def _batch(name: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random batch of inputs and labels for the named test model."""
    if name == "cnn":
        return rng.standard_normal((BATCH, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, BATCH).astype(np.int64)
    return rng.standard_normal((BATCH, 5)).astype(np.float32), rng.standard_normal((BATCH, 2)).astype(np.float32)


def test_cli_export_records_the_loss_and_trains_like_pytorch(exported, model_file):
    name, out = exported
    manifest = load_manifest(out)
    loss = LOSSES[CASES[name][1]]
    assert manifest.loss is loss and manifest.model == name
    assert manifest.metric == ("accuracy" if name == "cnn" else "mse")
    assert json.loads((out / names.MANIFEST_FILE).read_text())["loss"] == loss.name
    segments = [Segment(manifest, s.name, threads=1) for s in manifest.segments]
    ours = [SGD(s.params, lr=LR, momentum=0.9) for s in segments]
    model = load_model(f"{model_file}:{name}", seed=0)  # the export's weights: same factory, same seed
    unsplit = copy.deepcopy(model).train()
    torch_optimizer = torch.optim.SGD(unsplit.parameters(), lr=LR, momentum=0.9)
    rng = np.random.default_rng(5)
    for step in range(STEPS):
        x, y = _batch(name, rng)
        state_model = copy.deepcopy(model)
        load_runtime_state(state_model, segments)
        ref = reference(state_model, torch.from_numpy(x), torch.from_numpy(y), loss, grad_input=False)
        p1, p2, p3 = segments
        result = p3.train_step(p2.forward(step, p1.forward(step, x)), y)
        back2 = p2.backward(step, result.grad_in)
        back1 = p1.backward(step, back2.grad_in)
        grads = {**back1.grads, **back2.grads, **result.grads}
        got = {names.LOSS: np.float64(result.loss), **{names.GRAD + k: v for k, v in grads.items()}}
        got.update({names.NEW_BUFFER + k: v for s in segments for k, v in s.buffers.items()})
        errors = tensor_errors(got, ref.train)
        assert set(errors) == set(ref.train)
        assert_within_bounds(errors, ref.float32_error)
        for opt, seg in zip(ours, segments):
            opt.step({k: grads[k] for k in seg.params})
        torch_optimizer.zero_grad()
        torch_loss = loss_value(loss, unsplit(torch.from_numpy(x)), torch.from_numpy(y))
        torch_loss.backward()
        torch_optimizer.step()
        assert abs(result.loss - torch_loss.item()) <= 1e-4 * max(1.0, abs(result.loss))
    initial, final = model.state_dict(), unsplit.state_dict()
    for seg in segments:
        for key, value in {**seg.params, **seg.buffers}.items():
            start = initial[key].double().numpy()
            assert rel_l2(value - start, final[key].double().numpy() - start, 1e-9) <= 1e-3, key
    x, y = _batch(name, rng)
    wrong = y.astype(np.float32) if loss.class_labels else y.astype(np.int64)
    with pytest.raises(SegmentInputError, match=loss.label_dtype.name):
        segments[2].train_step(segments[1].evaluate(segments[0].evaluate(x)), wrong)


def test_cli_aux_head_gives_the_local_loss_step_of_pytorch(exported, model_file):
    name, out = exported
    manifest = load_manifest(out)
    loss = LOSSES[CASES[name][1]]
    assert manifest.aux_head.loss == loss.name and manifest.aux_head.after == "part1"
    part1, aux = Segment(manifest, "part1", threads=1), Segment(manifest, names.AUX, threads=1)
    model = load_model(f"{model_file}:{name}", seed=0)
    head = auto_aux_head(manifest.aux_head.segment.input.shape[1:], manifest.aux_head.segment.output.shape[1])
    head.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in aux.params.items()})
    x, y = _batch(name, np.random.default_rng(8))
    ref = reference(torch.nn.Sequential(model[:1], head), torch.from_numpy(x), torch.from_numpy(y), loss,
                    grad_input=False)
    local = LocalLoss(part1, aux)
    local.forward(0, x)
    result = local.local_step(0, y)
    got = {names.LOSS: np.float64(result.loss), **{f"{names.GRAD}0.{k}": v for k, v in result.grads.items()},
           **{f"{names.GRAD}1.{k}": v for k, v in result.aux_grads.items()},
           **{f"{names.NEW_BUFFER}0.{k}": v for k, v in part1.buffers.items()}}
    errors = tensor_errors(got, ref.train)
    assert set(errors) == set(ref.train)
    assert_within_bounds(errors, ref.float32_error)


def test_python_api_exports_a_multilabel_model_with_bce(model_file, tmp_path):
    artifact = export_model(f"{model_file}:regression", [1, 2], [5], tmp_path / "bce", loss=BCE_LOGITS)
    manifest = load_manifest(artifact.directory)
    assert manifest.loss.name == BCE_LOGITS and manifest.metric == "label_accuracy"
    assert manifest.labels.dtype == np.float32 and manifest.labels.shape == (None, 2)
    part3, x = Segment(manifest, "part3", threads=1), np.zeros((BATCH, 8), np.float32)
    assert np.isfinite(part3.train_step(x, np.ones((BATCH, 2), np.float32)).loss)
    with pytest.raises(SegmentInputError, match=r"\[0, 1\]"):
        part3.train_step(x, np.full((BATCH, 2), 2.0, np.float32))
    with pytest.raises(SegmentInputError, match="shape Bx2"):
        part3.train_step(x, np.zeros((BATCH, 3), np.float32))
    with pytest.raises(SegmentInputError, match="finite"):
        part3.train_step(x, np.full((BATCH, 2), np.nan, np.float32))


def test_an_op_without_standard_onnx_translation_is_named_and_nothing_is_written(model_file, tmp_path):
    out = tmp_path / "never"
    done = _cli_export(f"{model_file}:unsupported", "4", CROSS_ENTROPY, out)
    assert done.returncode == 1
    assert "the op aten.cummax has no translation to standard ONNX ops" in done.stderr
    assert not out.exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"loss": "hinge"}, "unknown loss 'hinge'"),
    ({"input_shape": [0, 5]}, "positive sizes"),
    ({"input_shape": [7]}, "fail on a batch of input shape [7]"),
    ({"model": "no_such_module_xyz:f"}, "cannot import module 'no_such_module_xyz'"),
    ({"model": "time:time"}, "must be an nn.Sequential or a non-empty list"),
])
def test_bad_export_requests_get_specific_errors(model_file, tmp_path, kwargs, message):
    args = {"model": f"{model_file}:regression", "input_shape": [5], "loss": MSE, **kwargs}
    with pytest.raises(EdgePSLError, match=re.escape(message)):
        export_model(args["model"], [1, 2], args["input_shape"], tmp_path / "never", loss=args["loss"])
    assert not (tmp_path / "never").exists()


def test_client_data_files_are_checked_against_the_exported_model(exported, tmp_path):
    name, out = exported
    manifest = load_manifest(out)
    x, y = _batch(name, np.random.default_rng(1))
    good, bad_x, bad_y = tmp_path / "good.npz", tmp_path / "bad_x.npz", tmp_path / "bad_y.npz"
    save_npz(good, x, y)
    save_npz(bad_x, x[..., :-1], y)
    save_npz(bad_y, x, y.astype(np.float32) if name == "cnn" else y[:, :1])
    data = load_client_data(f"npz:{good}", manifest, Normalisation(), index=0, seed=0, batch_size=2)
    assert np.array_equal(data.x, x) and np.array_equal(data.y, y)
    with pytest.raises(DataShapeError, match=f"{bad_x}: x has shape .* takes inputs of shape"):
        load_client_data(f"npz:{bad_x}", manifest, Normalisation(), index=0, seed=0, batch_size=2)
    with pytest.raises(DataShapeError, match=f"{bad_y}: y has dtype"):
        load_client_data(f"npz:{bad_y}", manifest, Normalisation(), index=0, seed=0, batch_size=2)
