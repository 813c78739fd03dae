"""Optimizers with torch.optim semantics (SGD with momentum and weight decay, Adam) over numpy parameters."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Mapping

import numpy as np

from edgepsl.segment.errors import StateError


class Optimizer(ABC):
    """Base: holds references to the parameter arrays it updates in place, and per-parameter state."""

    kind = "optimizer"
    slots: tuple[str, ...] = ()

    def __init__(self, params: Mapping[str, np.ndarray]) -> None:
        self.params = params
        self.state: dict[str, dict[str, np.ndarray]] = {slot: {} for slot in self.slots}
        self.steps = 0

    def _check_grads(self, grads: Mapping[str, np.ndarray]) -> None:
        """StateError unless there is one gradient of the right shape per parameter."""
        if set(grads) != set(self.params):
            raise StateError(f"gradients do not match the parameters: missing {sorted(set(self.params) - set(grads))[:5]}, "
                             f"unexpected {sorted(set(grads) - set(self.params))[:5]}")
        for name, grad in grads.items():
            if grad.shape != self.params[name].shape:
                raise StateError(f"gradient of {name!r} has shape {grad.shape}, the parameter {self.params[name].shape}")

    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        """Apply one update to every parameter, in place."""
        self._check_grads(grads)
        self.steps += 1
        for name, grad in grads.items():
            self._update(name, self.params[name], grad)

    @abstractmethod
    def _update(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        """Update one parameter in place."""

    def state_dict(self) -> dict[str, np.ndarray]:
        """Optimizer state as flat arrays: 'steps' and '<slot>:<param name>'."""
        flat = {"steps": np.array(self.steps, np.int64)}
        for slot, values in self.state.items():
            flat.update({f"{slot}:{name}": value.copy() for name, value in values.items()})
        return flat

    def load_state_dict(self, flat: Mapping[str, np.ndarray]) -> None:
        """Restore state_dict() output; checked completely before anything changes."""
        if "steps" not in flat:
            raise StateError(f"{self.kind} state lacks 'steps'")
        state: dict[str, dict[str, np.ndarray]] = {slot: {} for slot in self.slots}
        for key, value in flat.items():
            if key == "steps":
                continue
            slot, _, name = key.partition(":")
            if slot not in state or name not in self.params:
                raise StateError(f"{self.kind} state has an unknown entry {key!r}")
            if value.shape != self.params[name].shape:
                raise StateError(f"{self.kind} state {key!r} has shape {value.shape}, the parameter "
                                 f"{self.params[name].shape}")
            state[slot][name] = np.array(value, dtype=self.params[name].dtype)
        self.state, self.steps = state, int(flat["steps"])


class SGD(Optimizer):
    """torch.optim.SGD: weight decay added to the gradient, momentum buffer seeded with the first gradient."""

    kind = "sgd"
    slots = ("momentum",)

    def __init__(self, params: Mapping[str, np.ndarray], lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise StateError("SGD needs lr, momentum and weight_decay >= 0")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise StateError("Nesterov momentum needs momentum > 0 and dampening 0")
        super().__init__(params)
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov

    def _update(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        """p -= lr * d, d the (Nesterov) momentum direction of g + wd * p."""
        d = grad + self.weight_decay * param if self.weight_decay else grad
        if self.momentum:
            buf = self.state["momentum"].get(name)
            if buf is None:
                buf = self.state["momentum"][name] = np.array(d, dtype=param.dtype)
            else:
                buf *= self.momentum
                buf += (1 - self.dampening) * d if self.dampening else d
            d = d + self.momentum * buf if self.nesterov else buf
        param -= self.lr * d


class Adam(Optimizer):
    """torch.optim.Adam (L2 weight decay added to the gradient, bias-corrected moments, eps outside the sqrt)."""

    kind = "adam"
    slots = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Mapping[str, np.ndarray], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise StateError("Adam needs lr, eps, weight_decay >= 0 and betas in [0, 1)")
        super().__init__(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay

    def _update(self, name: str, param: np.ndarray, grad: np.ndarray) -> None:
        """p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)."""
        b1, b2 = self.betas
        g = grad + self.weight_decay * param if self.weight_decay else grad
        m = self.state["exp_avg"].setdefault(name, np.zeros_like(param))
        v = self.state["exp_avg_sq"].setdefault(name, np.zeros_like(param))
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        bc1, bc2 = 1 - b1 ** self.steps, 1 - b2 ** self.steps
        denom = np.sqrt(v) / np.float32(np.sqrt(bc2)) + np.float32(self.eps)
        param -= np.float32(self.lr / bc1) * (m / denom)
