"""The run's learning mode (docs/modes.md): how part-1 learns, where the labels and part-3 live, which state each
role holds for averaging, and which messages a job exchanges."""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Mapping

from edgepsl.runtime.config import RunConfig

PART1, PART2, PART3, AUX = "part1/", "part2/", "part3/", "aux/"


@dataclass(frozen=True)
class LearningMode:
    """The learning mode of a run, from its configuration (mode, labels, helper_model, local_loss_helper_weight,
    smashmix_pairs, smashmix_alpha)."""

    local_loss: bool = False
    labels_on_helper: bool = False
    shared: bool = False
    helper_weight: float = 0.0
    smashmix_pairs: int = 0
    smashmix_alpha: float = 1.0
    auto: bool = False  # mode = "auto": the plan in force chooses local loss or SplitFed per client (in_plan)

    @classmethod
    def of(cls, config: RunConfig, client: str | None = None) -> "LearningMode":
        """The mode a configuration selects for a client (`local_loss_clients` overrides mode = "splitfed" per
        client; with mode = "auto" SplitFed until a plan says otherwise: in_plan); without a client, the run's
        mode."""
        local = config.mode == "local-loss" or client in config.local_loss_clients
        return cls(local, config.labels == "helper", config.helper_model == "shared",
                   config.local_loss_helper_weight, config.smashmix_pairs, config.smashmix_alpha,
                   config.mode == "auto")

    def in_plan(self, local_loss: bool | None) -> "LearningMode":
        """The mode in the plan in force: with mode = "auto", local loss as the plan chose it for this client
        (None: not told, SplitFed); any other mode is the configuration's."""
        if not self.auto:
            return self
        return dataclasses.replace(self, local_loss=bool(local_loss))

    @property
    def cut1_gradient(self) -> bool:
        """Whether the helper returns the cut-1 gradient (not in local loss with helper weight 0: LocSplitFed)."""
        return not self.local_loss or self.helper_weight > 0

    @property
    def planned_local_loss(self) -> bool:
        """Whether the planner models this client with the local-loss chain (nothing follows the helper's backward
        on the client): local loss without the helper's gradient. With local_loss_helper_weight > 0 the client
        waits for the cut-1 gradient as in SplitFed and is planned with SplitFed's chain (its aux step, which
        overlaps the helper's forward job, is not modelled)."""
        return self.local_loss and not self.cut1_gradient

    @property
    def client_prefixes(self) -> tuple[str, ...]:
        """The state prefixes a client trains and sends for averaging: part-1, its aux head in local loss, and
        part-3 unless the labels (and part-3) are on the helper."""
        return (PART1, *((AUX,) if self.local_loss else ()), *(() if self.labels_on_helper else (PART3,)))

    @property
    def held_prefixes(self) -> tuple[str, ...]:
        """The state prefixes a client holds and takes from an averaging: those it trains, and in mode = "auto"
        the aux head whatever the plan in force (so a client the next plan puts in local loss starts from the
        averaged head)."""
        if not self.auto or self.local_loss:
            return self.client_prefixes
        return (PART1, AUX, *(() if self.labels_on_helper else (PART3,)))

    @property
    def helper_prefixes(self) -> tuple[str, ...]:
        """The state prefixes a helper holds per client: part-2, and part-3 in the two-part split."""
        return (PART2, *((PART3,) if self.labels_on_helper else ()))

    @property
    def name(self) -> str:
        """The algorithm's name in the literature: SplitFed, two-part SplitFed, LocSplitFed, LocFedMix-SL (in mode
        "auto", the mode of the plan in force)."""
        base = {(False, False): "SplitFed", (False, True): "two-part SplitFed", (True, False): "LocSplitFed",
                (True, True): "LocSplitFed (two-part)"}[(self.local_loss, self.labels_on_helper)]
        return "LocFedMix-SL" if self.local_loss and self.smashmix_pairs else base + (
            " + SmashMix" if self.smashmix_pairs else "")


def two_part_ms(times: Mapping[str, float]) -> float:
    """A helper's whole two-part step (ms): part-2 forward, part-3 forward and backward, part-2 backward."""
    return times["part2_fwd"] + times["part3_fwd"] + times["part3_bwd"] + times["part2_bwd"]


def warn_privacy(mode: LearningMode, log: logging.Logger, role: str) -> None:
    """Log a warning when the labels leave the clients (labels = "helper": the two-part split, weaker privacy)."""
    if mode.labels_on_helper:
        log.warning("%s: labels = \"helper\": every client sends its labels with its activations to its helper (the "
                    "two-part split, %s); this is weaker privacy than the U-shape, where labels never leave a client",
                    role, mode.name)
