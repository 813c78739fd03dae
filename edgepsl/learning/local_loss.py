"""The client side of local-loss training (LocSplitFed; the "Loc" of LocFedMix-SL): part-1 learns from the loss of
an auxiliary head on its own output, so the client never waits for the helper's cut-1 gradient.

One job: `forward` (part-1, training mode; send the output to the helper now), then `local_step` (the aux head's
train step on that output and the labels, and part-1's backward with the aux head's input gradient). By default
(helper_weight 0, LocSplitFed) the helper's gradient is not used and the job is released by `local_step`. With
helper_weight w > 0, part-1's gradient of a job is the local one plus w times the one that the helper's cut-1
gradient gives, i.e. the gradient of L_aux + w * L: `local_step` keeps the job's saved tensors and
`helper_gradient` returns the second contribution when the helper's gradient arrives (computed with the parameters
current then, a delayed gradient when the local one was already applied).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable

import numpy as np

from edgepsl.learning.errors import LearningError
from edgepsl.segment import Segment, UnknownJobError, names


@dataclass
class LocalLossResult:
    """A local-loss step: the aux head's loss, part-1's parameter gradients from it, and the aux head's gradients."""

    loss: float
    grads: dict[str, np.ndarray]
    aux_grads: dict[str, np.ndarray]


class LocalLoss:
    """Part-1 and its aux head (`Segment(artifact, "aux")`) trained with the local loss, optionally plus the helper's
    gradient weighted by helper_weight."""

    def __init__(self, part1: Segment, aux: Segment, helper_weight: float = 0.0) -> None:
        if part1.role != names.FIRST or aux.role != names.LAST:
            raise LearningError(f"local-loss training needs a first segment and an aux head (a last segment), got "
                                f"{part1.name} ({part1.role}) and {aux.name} ({aux.role})")
        if aux.spec.input.shape[1:] != part1.spec.output.shape[1:] or aux.spec.input.dtype != part1.spec.output.dtype:
            raise LearningError(f"the aux head takes {aux.spec.input.shape[1:]}, but {part1.name} outputs "
                                f"{part1.spec.output.shape[1:]}")
        if not (math.isfinite(helper_weight) and helper_weight >= 0):
            raise LearningError(f"helper_weight must be a finite number >= 0, got {helper_weight}")
        self.part1, self.aux, self.helper_weight = part1, aux, float(helper_weight)
        self._outputs: dict[Hashable, np.ndarray] = {}
        self._awaiting_helper: set[Hashable] = set()

    def forward(self, job_id: Hashable, x: np.ndarray) -> np.ndarray:
        """Part-1's training forward of a job: the smashed data to send to the helper."""
        out = self.part1.forward(job_id, x)
        self._outputs[job_id] = out
        return out

    def local_step(self, job_id: Hashable, labels: np.ndarray) -> LocalLossResult:
        """The aux head's train step on the job's part-1 output and part-1's backward with its input gradient; the
        job stays pending for `helper_gradient` when helper_weight > 0. Bad labels change nothing."""
        out = self._outputs.get(job_id)
        if out is None:
            raise UnknownJobError(f"local loss: no part-1 forward of job {job_id!r} awaits its local step")
        aux = self.aux.train_step(out, labels)
        keep = self.helper_weight > 0
        back = self.part1.backward(job_id, aux.grad_in, release=not keep)
        del self._outputs[job_id]
        if keep:
            self._awaiting_helper.add(job_id)
        return LocalLossResult(aux.loss, back.grads, aux.grads)

    def helper_gradient(self, job_id: Hashable, grad_out: np.ndarray) -> dict[str, np.ndarray]:
        """Part-1's parameter gradients from the helper's cut-1 gradient of a job, times helper_weight; releases
        the job. LearningError when helper_weight is 0 (the helper's gradient is not used in that mode)."""
        if self.helper_weight == 0:
            raise LearningError("helper_weight is 0: local-loss training does not use the helper's gradient "
                                "(pass helper_weight > 0 to LocalLoss to add it)")
        if job_id not in self._awaiting_helper:
            raise UnknownJobError(f"local loss: job {job_id!r} has no local step awaiting the helper's gradient")
        back = self.part1.backward(job_id, grad_out)
        self._awaiting_helper.discard(job_id)
        return {name: self.helper_weight * grad for name, grad in back.grads.items()}

    def drop(self, job_id: Hashable) -> None:
        """Forget a job at any stage (e.g. the helper's gradient will never come)."""
        self._outputs.pop(job_id, None)
        self._awaiting_helper.discard(job_id)
        if job_id in self.part1.pending_jobs:
            self.part1.drop(job_id)
