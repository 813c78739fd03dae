"""A helper's models in every learning mode (docs/modes.md): part-2 per client (U-shape), part-2 and part-3 per
client or one shared pair (the two-part split, LocFedMix-SL's server), and SmashMix over its clients' smashed data."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable

import numpy as np

from edgepsl.learning import SmashMix, TwoPartResult, two_part_mixed_step, two_part_step
from edgepsl.runtime import state
from edgepsl.runtime.config import RunConfig
from edgepsl.runtime.modes import PART2, PART3, LearningMode
from edgepsl.runtime.protocol import StateShapes
from edgepsl.segment import Manifest, Optimizer, Segment

SHARED = ""  # the key of the one shared model


@dataclass
class MiddleModel:
    """The helper's part of one client's model: part-2 (and part-3 in the two-part split) with their optimizers."""

    part2: Segment
    opt2: Optimizer
    part3: Segment | None = None
    opt3: Optimizer | None = None

    def set_lr(self, lr: float) -> None:
        """Set the learning rate of its optimizers."""
        for optimizer in (self.opt2, self.opt3):
            if optimizer is not None:
                optimizer.lr = lr

    def pack(self, optimizer: bool) -> dict[str, np.ndarray]:
        """Its state for averaging (part2/..., part3/... in the two-part split), with optimizer state if asked."""
        out = state.pack(self.part2, PART2, self.opt2 if optimizer else None)
        if self.part3 is not None:
            out.update(state.pack(self.part3, PART3, self.opt3 if optimizer else None))
        return out

    def restore(self, tensors: dict[str, np.ndarray]) -> None:
        """Load a STATE sent by the coordinator (StateError if it does not fit)."""
        state.restore(self.part2, self.opt2, tensors, PART2)
        if self.part3 is not None and self.opt3 is not None:
            state.restore(self.part3, self.opt3, tensors, PART3)


class HelperModels:
    """The middle models of a helper's clients: one per client, or one shared by all of them (helper_model =
    "shared"); in the two-part split it runs the step of parts 2 and 3 and keeps the round's smashed data for
    SmashMix."""

    def __init__(self, manifest: Manifest, config: RunConfig) -> None:
        self.manifest, self.config = manifest, config
        self.mode = LearningMode.of(config)
        self.models: dict[str, MiddleModel] = {}
        self.mix = SmashMix(config.smashmix_alpha, config.smashmix_pairs, seed=config.seed) \
            if self.mode.smashmix_pairs else None
        self.smashed: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def mode_of(self, client: str, planned: bool | None = None) -> LearningMode:
        """A client's learning mode (local loss may be chosen per client: in the config, or by the plan in force
        in mode "auto", `planned`)."""
        return LearningMode.of(self.config, client).in_plan(planned)

    def state_shapes(self) -> StateShapes:
        """What a STATE for one client's middle model carries."""
        segments = {PART2: Segment(self.manifest, "part2")}
        if self.mode.labels_on_helper:
            segments[PART3] = Segment(self.manifest, "part3")
        return state.shapes(segments)

    def of(self, client: str) -> MiddleModel:
        """The middle model of a client (created on first use; the shared one when helper_model is "shared")."""
        key = SHARED if self.mode.shared else client
        if key not in self.models:
            threads = self.config.threads
            part2 = Segment(self.manifest, "part2", threads=threads)
            model = MiddleModel(part2, state.make_optimizer(self.config, part2.params))
            if self.mode.labels_on_helper:
                model.part3 = Segment(self.manifest, "part3", threads=threads)
                model.opt3 = state.make_optimizer(self.config, model.part3.params)
            self.models[key] = model
        return self.models[key]

    def two_part(self, client: str, job_id: Hashable, x: np.ndarray, labels: np.ndarray) -> TwoPartResult:
        """One step of parts 2 and 3 on a client's smashed data and labels, optimizers stepped; the batch is kept
        for the round's SmashMix."""
        model = self.of(client)
        assert model.part3 is not None and model.opt3 is not None
        result = two_part_step(model.part2, model.part3, job_id, x, labels)
        model.opt2.step(result.middle_grads)
        model.opt3.step(result.last_grads)
        if self.mix is not None:
            self.smashed[client] = (x, labels)
        return result

    def smashmix(self, round_: int) -> list[float]:
        """The round's SmashMix steps on the shared model from the smashed data its clients sent this round (none
        with fewer than two clients); the mixed losses. The kept batches are dropped."""
        batches, self.smashed = self.smashed, {}
        if self.mix is None or len(batches) < 2:
            return []
        model = self.of(SHARED)
        assert model.part3 is not None and model.opt3 is not None
        losses = []
        for i, batch in enumerate(self.mix.mix(batches, round_)):
            result = two_part_mixed_step(model.part2, model.part3, ("smashmix", round_, i), batch)
            model.opt2.step(result.middle_grads)
            model.opt3.step(result.last_grads)
            losses.append(float(result.loss))
        return losses

    def drop(self, client: str, round_: int) -> None:
        """Forget a cancelled client's pending jobs of a round (ids (round, micro-batch)) and its smashed data."""
        part2 = self.of(client).part2
        for job_id in part2.pending_jobs:
            if job_id[0] == round_:
                part2.drop(job_id)
        self.smashed.pop(client, None)
