"""The runtime's numpy optimizers follow torch.optim step for step."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edgepsl.segment import SGD, Adam

CASES = [
    (SGD, torch.optim.SGD, dict(lr=0.1)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=5e-4)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, dampening=0.1)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    (Adam, torch.optim.Adam, dict(lr=1e-3)),
    (Adam, torch.optim.Adam, dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2)),
]


@pytest.mark.parametrize("ours, theirs, kwargs", CASES)
def test_optimizer_matches_torch_over_steps(ours, theirs, kwargs):
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal((8, 5)).astype(np.float32), "b": rng.standard_normal(5).astype(np.float32)}
    tensors = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    mine, ref = ours(params, **kwargs), theirs(list(tensors.values()), **kwargs)
    for step in range(6):
        grads = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()}
        for k, t in tensors.items():
            t.grad = torch.from_numpy(grads[k].copy())
        ref.step()
        mine.step(grads)
        if step == 2:
            restored = ours(params, **kwargs)
            restored.load_state_dict(mine.state_dict())
            mine = restored
        for k, t in tensors.items():
            np.testing.assert_allclose(params[k], t.detach().numpy(), rtol=2e-6, atol=2e-7)
