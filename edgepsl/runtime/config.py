"""The run configuration: one flat TOML table shared by the coordinator (source of truth) and sent to every role."""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from edgepsl.data.spec import Normalisation
from edgepsl.plan.rules import DISPATCH_RULES
from edgepsl.plan.solvers import MICRO_BATCHES, SolverOptionError, method_names, solver
from edgepsl.runtime.aggregation import STRATEGIES
from edgepsl.runtime.errors import RunConfigError

MAX_CHUNK_KB = 4096  # the protocol's bound on an artifact chunk (protocol.MAX_CHUNK_BYTES)
STRAGGLER_POLICIES = ("wait", "drop")
MODES = ("splitfed", "local-loss", "auto")
LABEL_PLACES = ("client", "helper")
HELPER_MODELS = ("per-client", "shared")
TUPLE_ITEMS = {"local_loss_clients": str}  # list-valued keys of other items than numbers (as float)
MIN_PEER_TIMEOUT_S = 2.0
DEFAULT_ARTIFACT = str(Path(__file__).resolve().parents[1] / "artifacts" / "lenet5-fmnist")


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs that is not a property of one device; see docs/runtime.md for each key."""

    run_id: str = "run"
    artifact: str = DEFAULT_ARTIFACT
    clients: int = 6
    helpers: int = 2
    rounds: int = 1000
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.05
    lr_schedule: str = "constant"
    momentum: float = 0.9
    weight_decay: float = 0.0
    aggregate_every: int = 5
    eval_every: int = 125
    method: str = "greedy-ls"
    dispatch: str = "fcfs"
    # Micro-batches per client round (PiPar pipelining, docs/runtime.md): "1" (none), a whole number N, or "auto"
    # (the planner's choice per client); the TOML may give a whole number.
    micro_batches: str = "1"
    fallback_rule: str = "tail"
    seed: int = 0
    partition: str = "iid"
    alpha: float = 0.5
    train_samples: int = 0
    test_samples: int = 0
    data_dir: str = "/usr/share/datasets/fashion-mnist"
    test_data: str = ""
    mean: tuple[float, ...] = (0.2860,)
    std: tuple[float, ...] = (0.3530,)
    divide: float = 255.0
    bandwidth_mbps: float = 1000.0
    links: str = "measured"
    probe_repeats: int = 3
    probe_timeout_s: float = 10.0
    float16: bool = False
    time_scale: float = 1.0
    emulation_profile: str = "vgg19_cifar10"
    profile_iters: int = 3
    threads: int = 1
    register_timeout_s: float = 120.0
    round_timeout_s: float = 300.0
    aggregation: str = "fedavg"
    helper_early_messages: int = 8
    helper_early_mb: float = 256.0
    artifact_chunk_kb: int = 1024
    replan_threshold: float = 0.10
    peer_timeout_s: float = 3.0
    straggler_policy: str = "wait"
    straggler_slack: float = 0.5
    straggler_grace_ms: float = 1000.0
    # Learning modes (docs/modes.md): how part-1 learns, where the labels and part-3 live, SmashMix.
    mode: str = "splitfed"
    local_loss_clients: tuple[str, ...] = ()
    labels: str = "client"
    helper_model: str = "per-client"
    local_loss_helper_weight: float = 0.0
    smashmix_pairs: int = 0
    smashmix_alpha: float = 1.0

    def __post_init__(self) -> None:
        try:
            MICRO_BATCHES.check("run config", self.micro_batches)
        except SolverOptionError as exc:
            raise RunConfigError(f"config key 'micro_batches': {exc}") from None
        if self.micro_batches != "1" and "micro_batches" not in solver(self.method).option_names:
            piped = ", ".join(name for name in method_names() if "micro_batches" in solver(name).option_names)
            raise RunConfigError(f"config key 'micro_batches' is {self.micro_batches!r}, but method {self.method!r} "
                                 f"does not plan micro-batches; choose one that does ({piped}) or micro_batches 1")
        positive = ("clients", "helpers", "rounds", "batch_size", "aggregate_every", "eval_every", "profile_iters",
                    "threads", "bandwidth_mbps", "probe_repeats", "probe_timeout_s", "time_scale", "register_timeout_s",
                    "round_timeout_s", "helper_early_messages", "helper_early_mb", "replan_threshold")
        for name in positive:
            if not getattr(self, name) > 0:
                raise RunConfigError(f"config key {name!r} must be > 0, got {getattr(self, name)!r}")
        for name in ("lr", "momentum", "weight_decay", "train_samples", "test_samples"):
            if getattr(self, name) < 0:
                raise RunConfigError(f"config key {name!r} must be >= 0, got {getattr(self, name)!r}")
        choices = {"optimizer": ("sgd", "adam"), "lr_schedule": ("constant", "cosine"), "method": method_names(), "dispatch": (*DISPATCH_RULES, "best"),
                   "fallback_rule": tuple(DISPATCH_RULES), "partition": ("iid", "dirichlet"),
                   "links": ("measured", "declared"), "aggregation": tuple(STRATEGIES),
                   "straggler_policy": STRAGGLER_POLICIES, "mode": MODES, "labels": LABEL_PLACES,
                   "helper_model": HELPER_MODELS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise RunConfigError(f"config key {name!r} is {getattr(self, name)!r}; choose one of {', '.join(allowed)}")
        if not self.peer_timeout_s >= MIN_PEER_TIMEOUT_S:
            raise RunConfigError(f"config key 'peer_timeout_s' must be >= {MIN_PEER_TIMEOUT_S:g} (two of the roles' "
                                 f"1 s heartbeats), got {self.peer_timeout_s!r}")
        for name in ("straggler_slack", "straggler_grace_ms"):
            if not getattr(self, name) >= 0:
                raise RunConfigError(f"config key {name!r} must be >= 0, got {getattr(self, name)!r}")
        if not 1 <= self.artifact_chunk_kb <= MAX_CHUNK_KB:
            raise RunConfigError(f"config key 'artifact_chunk_kb' must be in 1..{MAX_CHUNK_KB}, "
                                 f"got {self.artifact_chunk_kb}")
        if not self.mean or len(self.mean) != len(self.std) or min(self.std) <= 0 or not self.divide > 0:
            raise RunConfigError(f"config keys 'mean' and 'std' need one value per channel (std > 0) and 'divide' "
                                 f"must be > 0, got mean {list(self.mean)}, std {list(self.std)}, divide {self.divide}")
        self._check_modes()
        if self.eval_every % self.aggregate_every:
            raise RunConfigError(f"eval_every ({self.eval_every}) must be a multiple of aggregate_every "
                                 f"({self.aggregate_every}): only averaged models are evaluated")

    @property
    def any_local_loss(self) -> bool:
        """Whether some client trains (or, mode = "auto", may train) with local loss: the run needs the artifact's
        aux head."""
        return self.mode != "splitfed" or bool(self.local_loss_clients)

    @property
    def splitfed_only(self) -> bool:
        """Whether every client trains the U-shaped SplitFed (no local loss, labels on the clients)."""
        return not self.any_local_loss and self.labels == "client"

    @property
    def max_micro_batches(self) -> int:
        """The most micro-batches a client's round may have: the configured N, or the batch size under "auto"."""
        return self.batch_size if self.micro_batches == "auto" else min(int(self.micro_batches), self.batch_size)

    def _check_modes(self) -> None:
        """RunConfigError naming the key of a learning-mode combination the runtime cannot run (docs/modes.md)."""
        if not (math.isfinite(self.local_loss_helper_weight) and self.local_loss_helper_weight >= 0):
            raise RunConfigError(f"config key 'local_loss_helper_weight' must be a finite number >= 0, got "
                                 f"{self.local_loss_helper_weight!r}")
        if self.local_loss_clients and self.mode != "splitfed":
            raise RunConfigError(f"config key 'local_loss_clients' names the clients that train with local loss in a "
                                 f"run whose mode is \"splitfed\"; with mode {self.mode!r} "
                                 f"{'the planner chooses' if self.mode == 'auto' else 'every client does'}")
        if len(set(self.local_loss_clients)) != len(self.local_loss_clients) or not all(self.local_loss_clients):
            raise RunConfigError(f"config key 'local_loss_clients' must list distinct client names, got "
                                 f"{list(self.local_loss_clients)}")
        if self.local_loss_helper_weight > 0 and self.mode == "auto":
            raise RunConfigError(f"config key 'local_loss_helper_weight' ({self.local_loss_helper_weight:g}) with "
                                 f"mode \"auto\": the planner chooses between SplitFed and LocSplitFed, whose "
                                 f"helper returns no cut-1 gradient (weight 0)")
        if self.local_loss_helper_weight > 0 and self.mode != "local-loss" and not self.local_loss_clients:
            raise RunConfigError(f"config key 'local_loss_helper_weight' ({self.local_loss_helper_weight:g}) weighs "
                                 f"the helper's gradient in local-loss training only; no client trains with local "
                                 f"loss (mode {self.mode!r}, no local_loss_clients)")
        if self.smashmix_pairs < 0:
            raise RunConfigError(f"config key 'smashmix_pairs' must be >= 0 (0: no SmashMix), got {self.smashmix_pairs}")
        if not (math.isfinite(self.smashmix_alpha) and self.smashmix_alpha > 0):
            raise RunConfigError(f"config key 'smashmix_alpha' must be a finite number > 0, got {self.smashmix_alpha!r}")
        if self.labels != "helper":
            for name, off in (("helper_model", self.helper_model == "per-client"), ("smashmix_pairs", not self.smashmix_pairs)):
                if not off:
                    raise RunConfigError(f"config key {name!r} ({getattr(self, name)!r}) needs labels = \"helper\" "
                                         f"(the two-part split: part-3 and the labels on the helper); labels is "
                                         f"{self.labels!r}")
        if self.smashmix_pairs and self.helper_model != "shared":
            raise RunConfigError("config key 'smashmix_pairs' needs helper_model = \"shared\": SmashMix trains one "
                                 "model on mixed pairs of its clients' smashed data (LocFedMix-SL's server)")
        if not self.splitfed_only and self.micro_batches != "1":
            raise RunConfigError(f"config key 'micro_batches' ({self.micro_batches!r}) pipelines the U-shaped SplitFed "
                                 f"only; mode {self.mode!r} with labels {self.labels!r} needs micro_batches 1")
        if not self.splitfed_only and solver(self.method).local_mode:
            raise RunConfigError(f"config key 'method' ({self.method!r}) may train clients in local mode, which runs "
                                 f"the U-shaped SplitFed only; mode {self.mode!r} with labels {self.labels!r} needs a "
                                 f"method without local mode")

        # clients planned with the local-loss chain (modes.LearningMode.planned_local_loss)
        planned_local = self.any_local_loss and not self.local_loss_helper_weight
        if planned_local and "local_loss" not in solver(self.method).option_names:
            raise RunConfigError(f"config key 'method' ({self.method!r}) does not plan the local-loss chain; mode "
                                 f"{self.mode!r} (or local_loss_clients) needs a method that does (random, "
                                 f"balanced-greedy, greedy-eft, greedy-ls or milp)")

    def round_deadline_ms(self, planned_makespan_ms: float) -> float:
        """The straggler deadline of a round: planned makespan x (1 + straggler_slack) + straggler_grace_ms."""
        return planned_makespan_ms * (1.0 + self.straggler_slack) + self.straggler_grace_ms

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a plain dict (sent in WELCOME, written to run.toml); tuples as lists."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @property
    def test_spec(self) -> str:
        """The coordinator's test data spec: `test_data`, else the IDX files at `data_dir` (their t10k split)."""
        return self.test_data or f"idx:{self.data_dir}"

    @property
    def normalisation(self) -> Normalisation:
        """The run's per-channel normalisation (mean, std, divide): of the test set, and of clients that set none."""
        return Normalisation(self.mean, self.std, self.divide)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunConfig":
        """Build a configuration from a dict; unknown keys and wrong types are RunConfigError."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise RunConfigError(f"unknown config key(s) {', '.join(unknown)}; known keys: {', '.join(fields)}")
        values = {}
        for name, value in data.items():
            if name == "micro_batches" and isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            default = getattr(cls, name)
            kind = type(default)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            item = TUPLE_ITEMS.get(name, float)
            if kind is tuple and isinstance(value, (list, tuple)) and all(
                    isinstance(v, str) if item is str else isinstance(v, (int, float)) and not isinstance(v, bool)
                    for v in value):
                value = tuple(item(v) for v in value)
            if type(value) is not kind:
                raise RunConfigError(f"config key {name!r} must be a {kind.__name__}, got {value!r}")
            values[name] = value
        return cls(**values)

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with some keys changed (validated)."""
        return self.from_dict({**self.to_dict(), **changes})

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the configuration as a flat TOML table."""
        lines = ["# edgepsl run configuration (docs/runtime.md)"]
        for name, value in self.to_dict().items():
            text = ("true" if value else "false") if isinstance(value, bool) else json.dumps(value)
            lines.append(f"{name} = {text}")
        Path(path).write_text("\n".join(lines) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "RunConfig":
        """Read a TOML configuration file (missing keys take their defaults)."""
        import tomllib

        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise RunConfigError(f"cannot read the run configuration {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise RunConfigError(f"{path} is not valid TOML: {exc}") from None
        return cls.from_dict(data)
