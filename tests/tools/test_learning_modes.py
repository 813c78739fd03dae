"""Learning-mode building blocks against PyTorch float64: the exported aux head, one local-loss step (LeNet-5 and an
MLP), the local + weighted helper gradient, the two-part step (equal to the U-shaped step), and SmashMix's mixed
loss (equal to the soft-label cross-entropy)."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import models
from edgepsl.export import export_model
from edgepsl.export.aux_head import auto_aux_head, export_aux_head
from edgepsl.export.errors import ExportError
from edgepsl.export.verify import reference, rel_l2, tensor_errors
from edgepsl.learning import LocalLoss, SmashMix, two_part_mixed_step, two_part_step
from edgepsl.segment import SGD, Segment, load_manifest, names
from edgepsl.segment.losses import CROSS_ENTROPY, LOSSES
from tests.segment.conftest import ARTIFACT
from tests.tools.torch_reference import assert_within_bounds

CE = LOSSES[CROSS_ENTROPY]
BATCH = 6


@pytest.fixture(scope="module")
def mlp_artifact(tmp_path_factory):
    """The MLP at its default cuts with the auto aux head, exported and verified."""
    spec = models.get_spec("mlp")
    model = models.build("mlp")
    out = tmp_path_factory.mktemp("mlp") / "art"
    exported = export_model(model, spec.default_cuts, spec.input_shape, out, name="mlp", aux_head="auto")
    return model, exported


def _torch_model(name: str, directory) -> tuple[nn.Sequential, nn.Sequential, list[Segment]]:
    """The registered model and its auto aux head holding an artifact's weights, and the artifact's segments."""
    manifest = load_manifest(directory)
    segments = [Segment(manifest, s.name, threads=1) for s in manifest.all_segments]
    model = models.build(name)
    model.load_state_dict({k: torch.from_numpy(v.copy()) for s in segments[:-1] for k, v in s.params.items()})
    aux_spec = manifest.aux_head.segment
    aux = auto_aux_head(aux_spec.input.shape[1:], manifest.num_classes)
    aux.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in segments[-1].params.items()})
    return model, aux, segments


def _data(shape, rng) -> tuple[np.ndarray, np.ndarray]:
    """A batch of standard-normal inputs and class labels."""
    return rng.standard_normal((BATCH, *shape)).astype(np.float32), rng.integers(0, 10, BATCH).astype(np.int64)


def test_aux_head_is_exported_verified_and_recorded(mlp_artifact):
    _, exported = mlp_artifact
    aux = exported.aux_head
    assert aux.name == names.AUX and aux.role == names.LAST
    assert {k.split(":", 1)[0] for k in aux.errors} == {names.TRAIN, names.EVAL} and max(aux.errors.values()) <= 1e-5
    entry = json.loads((exported.directory / names.MANIFEST_FILE).read_text())["aux_head"]
    assert entry["after"] == "part1" and entry["loss"] == CROSS_ENTROPY and entry["name"] == names.AUX
    assert entry["input"]["shape"] == [None, 256] and entry["output"]["shape"] == [None, 10]
    assert [p["shape"] for p in entry["params"]] == [[10, 256], [10]]
    assert entry["verification"]["max_rel_l2"] <= 1e-5
    manifest = load_manifest(exported.directory)
    assert manifest.aux_head.after == "part1" and [s.name for s in manifest.segments] == ["part1", "part2", "part3"]
    assert {"aux.train.onnx", "aux.eval.onnx", "aux.npz"} <= set(manifest.files)


def test_auto_rule_pools_feature_maps_and_keeps_flat_outputs():
    conv = auto_aux_head((6, 14, 14), 10)
    assert [type(m).__name__ for m in conv] == ["AdaptiveAvgPool2d", "Flatten", "Linear"]
    assert conv[0].output_size == 2 and conv[2].in_features == 24
    assert auto_aux_head((16, 5, 5), 10)[0].output_size == 1
    assert [type(m).__name__ for m in auto_aux_head((256,), 10)] == ["Linear"]
    assert auto_aux_head((4, 8), 3)[1].in_features == 32


def _local_loss_reference(part1: nn.Module, aux: nn.Module, x: np.ndarray, y: np.ndarray):
    """float64 PyTorch loss and gradients of CE(aux(part1(x)), y), keyed like the runtime's (grad:0.NAME part-1,
    grad:1.NAME aux)."""
    return reference(nn.Sequential(part1, aux), torch.from_numpy(x), torch.from_numpy(y), CE, grad_input=False)


@pytest.mark.parametrize("name", ["mlp", "lenet5"])
def test_one_local_loss_step_equals_float64_pytorch(name, mlp_artifact):
    directory = mlp_artifact[1].directory if name == "mlp" else ARTIFACT
    model, aux_module, segments = _torch_model(name, directory)
    part1, aux = segments[0], segments[-1]
    rng = np.random.default_rng(11)
    x, y = _data(models.get_spec(name).input_shape, rng)
    ref = _local_loss_reference(model[:part1.spec.blocks[1]], aux_module, x, y)
    local = LocalLoss(part1, aux)
    out = local.forward("j", x)
    result = local.local_step("j", y)
    assert part1.pending_jobs == [] and out.shape == (BATCH, *part1.spec.output.shape[1:])
    got = {names.LOSS: np.float64(result.loss), **{f"{names.GRAD}0.{k}": v for k, v in result.grads.items()},
           **{f"{names.GRAD}1.{k}": v for k, v in result.aux_grads.items()}}
    errors = tensor_errors(got, ref.train)
    assert set(errors) == set(ref.train)
    assert_within_bounds(errors, ref.float32_error)


def test_helper_gradient_adds_the_weighted_global_loss_gradient(mlp_artifact):
    model, aux_module, (p1, p2, p3, aux) = _torch_model("mlp", mlp_artifact[1].directory)
    weight = 0.5
    rng = np.random.default_rng(5)
    x, y = _data((1, 28, 28), rng)
    local = LocalLoss(p1, aux, helper_weight=weight)
    out = local.forward(1, x)
    result = local.local_step(1, y)
    assert p1.pending_jobs == [1]
    step = p3.train_step(p2.forward(1, out), y)
    helper = local.helper_gradient(1, p2.backward(1, step.grad_in).grad_in)
    assert p1.pending_jobs == []
    xt, yt = torch.from_numpy(x).double(), torch.from_numpy(y)
    model64, aux64 = copy.deepcopy(model).double(), copy.deepcopy(aux_module).double()
    features = model64[:1](xt)
    total = F.cross_entropy(aux64(features), yt) + weight * F.cross_entropy(model64[1:](features), yt)
    expected = torch.autograd.grad(total, list(model64[:1].parameters()))
    for (pname, _), grad in zip(model64[:1].named_parameters(), expected):
        assert rel_l2(result.grads[pname] + helper[pname], grad.numpy(), 0.0) <= 1e-5, pname


def test_two_part_step_equals_the_u_shaped_step_and_float64_pytorch():
    model, _, _ = _torch_model("lenet5", ARTIFACT)
    manifest = load_manifest(ARTIFACT)
    u_shape = [Segment(manifest, s.name, threads=1) for s in manifest.segments]
    two_part = [Segment(manifest, s.name, threads=1) for s in manifest.segments]
    rng = np.random.default_rng(7)
    x, y = _data((1, 28, 28), rng)
    ref = reference(model, torch.from_numpy(x), torch.from_numpy(y), CE, grad_input=False)
    p1, p2, p3 = u_shape
    u_result = p3.train_step(p2.forward(0, p1.forward(0, x)), y)
    u_back2 = p2.backward(0, u_result.grad_in)
    u_grads = [p1.backward(0, u_back2.grad_in).grads, u_back2.grads, u_result.grads]
    q1, q2, q3 = two_part
    helper = two_part_step(q2, q3, 0, q1.forward(0, x), y)
    t_grads = [q1.backward(0, helper.grad_in).grads, helper.middle_grads, helper.last_grads]
    assert helper.loss == u_result.loss
    for segs, grads in ((u_shape, u_grads), (two_part, t_grads)):
        for seg, g in zip(segs, grads):
            SGD(seg.params, lr=0.1, momentum=0.9).step(g)
    for a, b in zip(u_shape, two_part):
        for k in a.params:
            np.testing.assert_array_equal(a.params[k], b.params[k])
    got = {names.LOSS: np.float64(helper.loss), **{names.GRAD + k: v for g in t_grads for k, v in g.items()}}
    errors = tensor_errors(got, ref.train)
    assert set(errors) == set(ref.train)
    assert_within_bounds(errors, ref.float32_error)


def test_smashmix_step_equals_float64_soft_label_cross_entropy():
    model, _, _ = _torch_model("lenet5", ARTIFACT)
    manifest = load_manifest(ARTIFACT)
    p1, p2, p3 = (Segment(manifest, s.name, threads=1) for s in manifest.segments)
    rng = np.random.default_rng(9)
    smashed = {}
    for client in range(3):
        x, y = _data((1, 28, 28), rng)
        smashed[client] = (p1.evaluate(x), y)
    batch = SmashMix(alpha=0.5, pairs=1, seed=4).mix(smashed, round_index=0)[0]
    assert 0 < batch.lam < 1 and batch.clients[0] != batch.clients[1]
    result = two_part_mixed_step(p2, p3, "mix", batch)
    helper64 = copy.deepcopy(model[1:]).double()
    xt = torch.from_numpy(batch.x).double().requires_grad_(True)
    soft = torch.from_numpy(batch.soft_labels(10)).double()
    loss = F.cross_entropy(helper64(xt), soft)
    params = list(helper64.named_parameters())
    grads = torch.autograd.grad(loss, [xt] + [p for _, p in params])
    assert abs(result.loss - loss.item()) <= 1e-5 * abs(loss.item())
    assert rel_l2(result.grad_in, grads[0].numpy(), 0.0) <= 1e-5
    ours = {**result.middle_grads, **result.last_grads}
    for (pname, _), grad in zip(params, grads[1:]):
        assert rel_l2(ours[pname], grad.numpy(), 0.0) <= 1e-5, pname
    assert p2.pending_jobs == []


def test_own_aux_head_module_is_exported_and_bad_choices_are_refused():
    model = models.build("mlp")
    head = export_aux_head(model, (1, 28, 28), [1, 3], nn.Sequential(nn.Linear(256, 32), nn.ReLU(),
                                                                     nn.Linear(32, 10)), CE)
    assert head.name == names.AUX and head.params == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert max(head.errors.values()) <= 1e-5
    assert export_aux_head(model, (1, 28, 28), [1, 3], "none", CE) is None
    with pytest.raises(ExportError, match="aux_head must be 'auto' or 'none'"):
        export_aux_head(model, (1, 28, 28), [1, 3], "big", CE)
    grid = nn.Sequential(nn.Linear(4, 6), nn.Unflatten(1, (2, 3)))
    with pytest.raises(ExportError, match="flat output"):
        export_aux_head(grid, (4,), [1], "auto", LOSSES["mse"])
    with pytest.raises(ExportError, match="fails on part-1's output"):
        export_aux_head(model, (1, 28, 28), [1, 3], nn.Linear(100, 10), CE)
