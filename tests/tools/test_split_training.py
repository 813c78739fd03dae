"""Three-segment training on onnxruntime equals unsplit PyTorch training (VGG-11 with BatchNorm, 5 steps).

Per step, every gradient, the loss and the BatchNorm running statistics of the split pipeline are compared with
float64 PyTorch computed from the pipeline's current state (relative L2, as the feasibility study recommends);
the losses and the weight updates after 5 steps are also compared with an independent unsplit float32 PyTorch run
with torch.optim.SGD (updates agree within 1% relative L2). Adam is checked against torch.optim.Adam in
test_optim_vs_torch.py: a trajectory check would be meaningless, as Adam turns the float32 noise of analytically
zero gradients (convolution biases before BatchNorm) into full +-lr steps in both implementations.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import models
from edgepsl.export.artifact import export_segments, write_artifact
from edgepsl.export.verify import reference, rel_l2, tensor_errors
from edgepsl.segment import SGD, Segment, load_manifest, names
from edgepsl.segment.losses import CROSS_ENTROPY, LOSSES
from tests.tools.torch_reference import assert_within_bounds, load_runtime_state

STEPS, BATCH = 5, 4
LR, MOMENTUM, WEIGHT_DECAY = 0.02, 0.9, 5e-4


@pytest.fixture(scope="module")
def vgg11_artifact(tmp_path_factory):
    """VGG-11 cut at the default cuts, exported and verified."""
    spec = models.get_spec("vgg11")
    model = models.build("vgg11")
    segments = export_segments(model, spec.input_shape, spec.default_cuts, LOSSES[CROSS_ENTROPY])
    out = write_artifact(tmp_path_factory.mktemp("vgg11") / "art", "vgg11", spec.default_cuts, len(model),
                         spec.num_classes, segments, LOSSES[CROSS_ENTROPY])
    return model, out


def _split_step(segments: list[Segment], job: int, x: np.ndarray, y: np.ndarray) -> tuple[float, dict]:
    """Client part-1 forward, helper part-2 forward, client part-3 train step, helper and client backward."""
    p1, p2, p3 = segments
    result = p3.train_step(p2.forward(job, p1.forward(job, x)), y)
    back2 = p2.backward(job, result.grad_in)
    back1 = p1.backward(job, back2.grad_in)
    return result.loss, {**back1.grads, **back2.grads, **result.grads}


def test_three_segments_train_like_unsplit_pytorch(vgg11_artifact):
    model, out = vgg11_artifact
    manifest = load_manifest(out)
    segments = [Segment(manifest, s.name, threads=1) for s in manifest.segments]
    ours = [SGD(s.params, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY) for s in segments]
    unsplit = copy.deepcopy(model).train()
    torch_optimizer = torch.optim.SGD(unsplit.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    rng = np.random.default_rng(3)
    for step in range(STEPS):
        x = rng.standard_normal((BATCH, 3, 32, 32)).astype(np.float32)
        y = rng.integers(0, 10, BATCH).astype(np.int64)
        state_model = copy.deepcopy(model)
        load_runtime_state(state_model, segments)
        ref = reference(state_model, torch.from_numpy(x), torch.from_numpy(y), LOSSES[CROSS_ENTROPY], grad_input=False)
        loss, grads = _split_step(segments, step, x, y)
        got = {names.LOSS: np.float64(loss), **{names.GRAD + k: v for k, v in grads.items()}}
        got.update({names.NEW_BUFFER + k: v for s in segments for k, v in s.buffers.items()})
        errors = tensor_errors(got, ref.train)
        assert set(errors) == set(ref.train)
        assert_within_bounds(errors, ref.float32_error)
        for opt, seg in zip(ours, segments):
            opt.step({k: grads[k] for k in seg.params})
        torch_optimizer.zero_grad()
        torch_loss = F.cross_entropy(unsplit(torch.from_numpy(x)), torch.from_numpy(y))
        torch_loss.backward()
        torch_optimizer.step()
        assert abs(loss - torch_loss.item()) <= 1e-4 * max(1.0, abs(loss))
    initial, final = model.state_dict(), unsplit.state_dict()
    for seg in segments:
        for name, value in {**seg.params, **seg.buffers}.items():
            start = initial[name].double().numpy()
            assert rel_l2(value - start, final[name].double().numpy() - start, 1e-9) <= 1e-2, name
