"""Device profiles (per-layer ms and activation/weight KB) plus cuts and link bandwidths -> Instance.

A profile file (schema in docs/formats.md) gives, per device, the forward, backward and weight-update
time of every layer for one batch, and per layer the output activation and weight sizes in KB. A model
cut at layers (a, b) is part-1 = layers [0, a) and part-3 = layers [b, L) on the client, part-2 =
layers [a, b) on the helper. Transfers take KB * 8 / Mbps milliseconds (KB * 8 / 1000 / Mbps seconds);
a gradient at a cut has the size of the activation at that cut.
"""
from __future__ import annotations

import dataclasses

import math
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from edgepsl.plan.errors import ProfileError
from edgepsl.plan.instance import Instance
from edgepsl.plan.jsonfile import parse_json, read_json

PROFILE_PACKAGE = "edgepsl.data.profiles"
TIME_KEYS = ("fwd_ms", "bwd_ms", "update_ms")
MEMORY_KEYS = ("activation_kb", "weights_kb")
TRANSFER_MODEL = "ms = KB * 8 / Mbps"

Cuts = Union[tuple[int, int], Sequence[tuple[int, int]]]

# The shipped profiles' batch: their activation sizes are those of 128 CIFAR-10 images (research/paper.md 3.1).
PROFILE_BATCH = 128


@dataclass(frozen=True)
class StageCosts:
    """What micro-batching costs on top of the profile (instance format version 3): the batch B the profile was
    measured at, the default N per client, and the fixed part of every stage, which each micro-batch pays in full.

    The defaults are stated, not measured (docs/planning.md, "Micro-batch pipelining"): a compute call costs at
    least call_ms on a client and job_ms on a helper, below the smallest profiled layer times at B = 128 (18.5 ms
    on the Raspberry Pi 4 'd1', 1.1 ms on the 'VM' helper, both VGG-19 pooling layers), and a transfer pays link_ms of
    latency however small it is.
    """

    batch: int = PROFILE_BATCH
    micro: int = 1
    call_ms: float = 2.0
    job_ms: float = 0.5
    link_ms: float = 5.0

    def __post_init__(self) -> None:
        if not (isinstance(self.batch, int) and isinstance(self.micro, int) and 1 <= self.micro <= self.batch):
            raise ProfileError(f"micro-batches need whole numbers 1 <= N <= B; got N = {self.micro!r}, "
                               f"B = {self.batch!r}")
        for name in ("call_ms", "job_ms", "link_ms"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ProfileError(f"{name} must be a finite number of ms >= 0, got {value!r}")


def with_stages(instance: Instance, cut1_kb: np.ndarray, cut2_kb: np.ndarray, bandwidth_mbps: np.ndarray,
                costs: StageCosts) -> Instance:
    """The instance with its micro-batch stage fields: the upload parts of r and r' from the cut sizes and links,
    and the fixed costs, batch and N of `costs`."""
    K, H = instance.K, instance.H
    meta = dict(instance.meta, stages={"batch": costs.batch, "micro": costs.micro, "call_ms": costs.call_ms,
                                       "job_ms": costs.job_ms, "link_ms": costs.link_ms})
    return dataclasses.replace(
        instance,
        r_up=np.minimum(transfer_ms(np.asarray(cut1_kb)[:, None], bandwidth_mbps), instance.r),
        r_bwd_up=np.minimum(transfer_ms(np.asarray(cut2_kb)[:, None], bandwidth_mbps), instance.r_bwd),
        o_client=np.full(K, float(costs.call_ms)),
        o_link=np.full((K, H), float(costs.link_ms)),
        o_helper=np.full(H, float(costs.job_ms)),
        batch=np.full(K, float(costs.batch)),
        micro=np.full(K, float(costs.micro)),
        meta=meta,
    )


@dataclass(frozen=True, eq=False)
class Profile:
    """Measured per-layer costs of one (model, dataset) on a set of devices; arrays are devices x layers."""

    name: str
    model: str
    dataset: str
    devices: tuple[str, ...]
    fwd_ms: np.ndarray
    bwd_ms: np.ndarray
    update_ms: np.ndarray
    activation_kb: np.ndarray
    weights_kb: np.ndarray
    source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def layers(self) -> int:
        """Number of profiled layers L."""
        return int(self.activation_kb.shape[0])

    @property
    def profiled_devices(self) -> tuple[str, ...]:
        """Devices with at least one non-zero time (all-zero devices were not measured)."""
        measured = (self.fwd_ms + self.bwd_ms + self.update_ms).any(axis=1)
        return tuple(name for name, ok in zip(self.devices, measured) if ok)

    def device_indices(self, names: Sequence[str], role: str) -> np.ndarray:
        """Row index of each named device; an unknown or unmeasured device is a ProfileError."""
        names = np.asarray([str(n) for n in names])
        unique, inverse = np.unique(names, return_inverse=True)
        measured = self.profiled_devices
        rows = []
        for name in unique.tolist():
            if name not in self.devices:
                raise ProfileError(
                    f"unknown {role} device {name!r} in profile {self.name!r}; valid devices: {', '.join(measured)}"
                )
            if name not in measured:
                raise ProfileError(
                    f"{role} device {name!r} was not profiled in {self.name!r} (all its times are 0); "
                    f"use one of: {', '.join(measured)}"
                )
            rows.append(self.devices.index(name))
        return np.asarray(rows, dtype=np.int64)[inverse.reshape(-1)]

    def check_cut(self, a: int, b: int) -> None:
        """Raise ProfileError unless 1 <= a < b <= L-1, so that all three parts hold at least one layer."""
        if not 1 <= a < b <= self.layers - 1:
            raise ProfileError(
                f"cut ({a}, {b}) is out of range for {self.name!r} with L={self.layers} layers: "
                f"need 1 <= a < b <= {self.layers - 1} (part-1 = layers [0, a), part-2 = [a, b), part-3 = [b, {self.layers}))"
            )

    def part_fwd_ms(self, start: int, stop: int) -> np.ndarray:
        """Forward time of layers [start, stop) on every device (D,)."""
        return self.fwd_ms[:, start:stop].sum(axis=1)

    def part_bwd_ms(self, start: int, stop: int) -> np.ndarray:
        """Backward plus weight-update time of layers [start, stop) on every device (D,)."""
        return (self.bwd_ms[:, start:stop] + self.update_ms[:, start:stop]).sum(axis=1)

    def aux_head_ms(self) -> np.ndarray:
        """Estimated training step of the local-loss aux head on every device (D,): forward, backward and update of
        the model's last layer, a classifier to the output width like the head (the profiles hold no aux head)."""
        return self.part_fwd_ms(self.layers - 1, self.layers) + self.part_bwd_ms(self.layers - 1, self.layers)

    def part2_memory_mb(self, a: int, b: int) -> float:
        """Memory part-2 of a model cut at (a, b) needs on a helper: activations + weights of [a, b), KB / 1024."""
        return float((self.activation_kb[a:b] + self.weights_kb[a:b]).sum() / 1024.0)


def list_profiles() -> list[str]:
    """Names of the profiles shipped with edgepsl, e.g. 'resnet101_cifar10'."""
    folder = resources.files(PROFILE_PACKAGE)
    return sorted(entry.name[: -len(".json")] for entry in folder.iterdir() if entry.name.endswith(".json"))


def load_profile(name_or_path: str | Path) -> Profile:
    """Load a shipped profile by name or a profile JSON file by path, validating every field."""
    if isinstance(name_or_path, str) and name_or_path in list_profiles():
        text = resources.files(PROFILE_PACKAGE).joinpath(f"{name_or_path}.json").read_text()
        return parse_profile(parse_json(text, name_or_path, "profile", ProfileError), name_or_path)
    path = Path(name_or_path)
    if not path.is_file():
        raise ProfileError(
            f"no profile named {str(name_or_path)!r} and no such file; shipped profiles: {', '.join(list_profiles())}"
        )
    return parse_profile(read_json(path, "profile", ProfileError), path.stem)


def parse_profile(data: Any, name: str) -> Profile:
    """Validate the JSON form of a profile (see docs/formats.md) and build a Profile named `name`."""
    if not isinstance(data, dict):
        raise ProfileError(f"profile {name!r} must be a JSON object, got {type(data).__name__}")
    missing = [key for key in ("model", "dataset", "layers", "devices", "memory") if key not in data]
    if missing:
        raise ProfileError(f"profile {name!r} is missing key(s): {', '.join(missing)}")
    layers = data["layers"]
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 3:
        raise ProfileError(f"profile {name!r}: 'layers' must be an integer >= 3 (three non-empty parts), got {layers!r}")
    devices = data["devices"]
    if not isinstance(devices, dict) or not devices:
        raise ProfileError(f"profile {name!r}: 'devices' must be a non-empty object of device name -> times")
    times = {key: [] for key in TIME_KEYS}
    for device, entry in devices.items():
        if not isinstance(entry, dict):
            raise ProfileError(f"profile {name!r}: devices.{device} must be an object with {', '.join(TIME_KEYS)}")
        for key in TIME_KEYS:
            times[key].append(_layer_values(entry, key, f"devices.{device}.{key}", layers, name))
    memory = data["memory"]
    if not isinstance(memory, dict):
        raise ProfileError(f"profile {name!r}: 'memory' must be an object with {', '.join(MEMORY_KEYS)}")
    sizes = {key: _layer_values(memory, key, f"memory.{key}", layers, name) for key in MEMORY_KEYS}
    return Profile(
        name=name,
        model=str(data["model"]),
        dataset=str(data["dataset"]),
        devices=tuple(str(d) for d in devices),
        fwd_ms=np.asarray(times["fwd_ms"]),
        bwd_ms=np.asarray(times["bwd_ms"]),
        update_ms=np.asarray(times["update_ms"]),
        activation_kb=sizes["activation_kb"],
        weights_kb=sizes["weights_kb"],
        source=str(data.get("source", "")),
        notes=tuple(str(n) for n in data["notes"]) if isinstance(data.get("notes"), list) else (),
    )


def build_instance(
    profile: Profile | str | Path,
    client_devices: Sequence[str],
    helper_devices: Sequence[str],
    cuts: Cuts,
    bandwidth_mbps: float | np.ndarray | Sequence[Sequence[float]],
    helper_capacity_mb: float | np.ndarray | Sequence[float] | None = None,
    meta: dict[str, Any] | None = None,
    client_memory_mb: float | np.ndarray | Sequence[float] | None = None,
    stages: StageCosts | None = None,
    loss_times: bool = False,
) -> Instance:
    """Build the instance of K = len(client_devices) clients on H = len(helper_devices) helpers.

    With stages, the instance gets the micro-batch stage fields (docs/formats.md, instance version 3).

    With loss_times, the instance gets the local-loss fields (version 4) with every client on SplitFed
    (local_loss 0, a plan may choose otherwise): r_cpu is part-1's forward and aux is part-1's backward plus the
    aux head's estimated step (Profile.aux_head_ms) on the client's device.

    With client_memory_mb (a scalar or one value per client: each client device's memory for part-2), the
    instance gets the local-mode fields: part-1 fwd, part-2 fwd/bwd and part-3 bwd on the client's own device from
    the same profile rows, no network (docs/formats.md, instance version 2).

    cuts is one (a, b) for every client or one pair per client; bandwidth_mbps is a scalar or a K x H
    array of link bandwidths; helper_capacity_mb is a scalar or one value per helper, and by default
    every helper can hold all clients (the smallest whole MB above the total demand). `meta` entries are
    added to the instance's meta, which records what built it.
    """
    prof = profile if isinstance(profile, Profile) else load_profile(profile)
    K, H = len(client_devices), len(helper_devices)
    if K < 1 or H < 1:
        raise ProfileError(f"need at least one client device and one helper device; got {K} and {H}")
    cdev = prof.device_indices(client_devices, "client")
    hdev = prof.device_indices(helper_devices, "helper")
    cut_a, cut_b = _per_client_cuts(prof, cuts, K)
    bandwidth = _bandwidth_matrix(bandwidth_mbps, K, H)
    pairs, inverse = np.unique(np.stack([cut_a, cut_b], axis=1), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    part1_fwd, part1_bwd, part2_fwd, part2_bwd, part3_fwd, part3_bwd = (np.empty((len(pairs), len(prof.devices))) for _ in range(6))
    part2_mem = np.empty(len(pairs))
    for u, (a, b) in enumerate(pairs):
        part1_fwd[u], part1_bwd[u] = prof.part_fwd_ms(0, a), prof.part_bwd_ms(0, a)
        part2_fwd[u], part2_bwd[u] = prof.part_fwd_ms(a, b), prof.part_bwd_ms(a, b)
        part3_fwd[u], part3_bwd[u] = prof.part_fwd_ms(b, prof.layers), prof.part_bwd_ms(b, prof.layers)
        part2_mem[u] = prof.part2_memory_mb(a, b)
    mem = part2_mem[inverse]
    info: dict[str, Any] = {
        "built_by": "edgepsl.plan.profiles.build_instance",
        "profile": prof.name,
        "model": prof.model,
        "dataset": prof.dataset,
        "client_devices": dict(sorted(Counter(str(d) for d in client_devices).items())),
        "helper_devices": dict(sorted(Counter(str(d) for d in helper_devices).items())),
        "cuts": _cuts_summary(cut_a, cut_b),
        "bandwidth_mbps": {"min": float(bandwidth.min()), "mean": float(bandwidth.mean()), "max": float(bandwidth.max())},
        "transfer_model": TRANSFER_MODEL,
        "memory_model": "part-2 activations + weights KB / 1024 (MB), not rounded",
    }
    info.update(meta or {})
    inst = instance_from_parts(
        part1_fwd=part1_fwd[inverse, cdev],
        part1_bwd=part1_bwd[inverse, cdev],
        part3_fwd=part3_fwd[inverse, cdev],
        part3_bwd=part3_bwd[inverse, cdev],
        part2_fwd=part2_fwd[inverse[:, None], hdev[None, :]],
        part2_bwd=part2_bwd[inverse[:, None], hdev[None, :]],
        cut1_kb=prof.activation_kb[cut_a - 1],
        cut2_kb=prof.activation_kb[cut_b - 1],
        bandwidth_mbps=bandwidth,
        mem=mem,
        cap=_capacities(helper_capacity_mb, mem, H),
        client_names=tuple(f"client {j} ({d})" for j, d in enumerate(client_devices)),
        helper_names=tuple(f"helper {i} ({d})" for i, d in enumerate(helper_devices)),
        meta=info,
    )
    if stages is not None:
        inst = with_stages(inst, prof.activation_kb[cut_a - 1], prof.activation_kb[cut_b - 1], bandwidth, stages)
    if loss_times:
        inst = with_loss_times(inst, part1_fwd[inverse, cdev], part1_bwd[inverse, cdev] + prof.aux_head_ms()[cdev])
    if client_memory_mb is None:
        return inst
    cap_own = np.broadcast_to(np.asarray(client_memory_mb, dtype=np.float64), (K,))
    return dataclasses.replace(inst, r_own=part1_fwd[inverse, cdev], p_own=part2_fwd[inverse, cdev],
                               r_bwd_own=part3_bwd[inverse, cdev], p_bwd_own=part2_bwd[inverse, cdev],
                               cap_own=cap_own)


def instance_from_parts(
    *,
    part1_fwd: np.ndarray,
    part1_bwd: np.ndarray,
    part3_fwd: np.ndarray,
    part3_bwd: np.ndarray,
    part2_fwd: np.ndarray,
    part2_bwd: np.ndarray,
    cut1_kb: np.ndarray,
    cut2_kb: np.ndarray,
    bandwidth_mbps: np.ndarray,
    mem: np.ndarray,
    cap: np.ndarray,
    client_names: tuple[str, ...] = (),
    helper_names: tuple[str, ...] = (),
    meta: dict[str, Any] | None = None,
) -> Instance:
    """Assemble an Instance from per-client part times (K,), helper part-2 times (K x H), cut sizes and links.

    This is paper.md section 1.2's table: r = part-1 fwd + upload(cut-1), p = part-2 fwd, d = download(cut-2),
    l = part-3 fwd, r' = part-3 bwd + upload(cut-2 gradient), p' = part-2 bwd, d' = download(cut-1 gradient),
    l' = part-1 bwd.
    """
    up1 = transfer_ms(np.asarray(cut1_kb)[:, None], bandwidth_mbps)
    up2 = transfer_ms(np.asarray(cut2_kb)[:, None], bandwidth_mbps)
    return Instance(
        r=np.asarray(part1_fwd)[:, None] + up1,
        p=part2_fwd,
        d=up2,
        l=part3_fwd,
        r_bwd=np.asarray(part3_bwd)[:, None] + up2,
        p_bwd=part2_bwd,
        d_bwd=up1,
        l_bwd=part1_bwd,
        mem=mem,
        cap=cap,
        client_names=client_names,
        helper_names=helper_names,
        meta=dict(meta or {}),
    )


def with_loss_times(instance: Instance, part1_fwd: np.ndarray, local_step: np.ndarray) -> Instance:
    """The instance with the local-loss fields, every client on SplitFed: r_cpu = part-1 forward, aux = the local
    step (aux head forward, loss and backward plus part-1 backward and update), per client in ms."""
    K = instance.K
    return dataclasses.replace(instance, local_loss=np.zeros(K), r_cpu=np.broadcast_to(part1_fwd, (K,)),
                               aux=np.broadcast_to(local_step, (K,)))


def transfer_ms(kb: np.ndarray | float, mbps: np.ndarray | float) -> np.ndarray:
    """Time to send `kb` kilobytes over a `mbps` megabit/s link, in milliseconds: KB * 8 / Mbps."""
    return np.asarray(kb, dtype=np.float64) * 8.0 / np.asarray(mbps, dtype=np.float64)


def loose_capacity_mb(mem: np.ndarray) -> float:
    """The smallest whole number of MB strictly above the total demand: every helper can hold every client."""
    return float(math.floor(float(np.sum(mem))) + 1)


def _layer_values(container: dict, key: str, what: str, layers: int, name: str) -> np.ndarray:
    if key not in container:
        raise ProfileError(f"profile {name!r}: {what} is missing")
    values = container[key]
    if not isinstance(values, list) or len(values) != layers:
        count = len(values) if isinstance(values, list) else type(values).__name__
        raise ProfileError(f"profile {name!r}: {what} has {count} values, expected one per layer ({layers})")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ProfileError(f"profile {name!r}: {what}[{i}] = {v!r}; values must be finite numbers >= 0")
    return np.asarray(values, dtype=np.float64)


def _per_client_cuts(prof: Profile, cuts: Cuts, K: int) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(cuts)
    if arr.dtype.kind not in "iu":
        raise ProfileError(f"cuts must be integer layer indices, one (a, b) pair or one pair per client; got {cuts!r}")
    if arr.shape == (2,):
        arr = np.broadcast_to(arr, (K, 2))
    elif arr.shape != (K, 2):
        raise ProfileError(f"cuts must be one (a, b) pair or K={K} pairs (shape (K, 2)); got shape {arr.shape}")
    for a, b in np.unique(arr, axis=0):
        prof.check_cut(int(a), int(b))
    return arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64)


def _bandwidth_matrix(bandwidth_mbps: Any, K: int, H: int) -> np.ndarray:
    try:
        arr = np.asarray(bandwidth_mbps, dtype=np.float64)
    except (TypeError, ValueError):
        raise ProfileError(f"bandwidth must be a number or a K x H array of Mbps; got {bandwidth_mbps!r}") from None
    if arr.shape not in ((), (K, H)):
        raise ProfileError(f"bandwidth must be a scalar or a K x H = ({K}, {H}) array of Mbps; got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        raise ProfileError(f"bandwidth must be finite and > 0 Mbps; got {float(arr[bad].flat[0])!r}")
    return np.broadcast_to(arr, (K, H))


def _capacities(helper_capacity_mb: Any, mem: np.ndarray, H: int) -> np.ndarray:
    if helper_capacity_mb is None:
        return np.full(H, loose_capacity_mb(mem))
    try:
        cap = np.asarray(helper_capacity_mb, dtype=np.float64)
    except (TypeError, ValueError):
        raise ProfileError(f"helper capacity must be a number or one number per helper (MB); got {helper_capacity_mb!r}") from None
    if cap.shape not in ((), (H,)):
        raise ProfileError(f"helper capacity must be a scalar or {H} values (one per helper, MB); got shape {cap.shape}")
    if not (np.isfinite(cap) & (cap >= 0)).all():
        raise ProfileError("helper capacities must be finite and >= 0 MB")
    return np.broadcast_to(cap, (H,)).copy()


def _cuts_summary(cut_a: np.ndarray, cut_b: np.ndarray) -> Any:
    counts = Counter(zip(cut_a.tolist(), cut_b.tolist()))
    if len(counts) == 1:
        return list(next(iter(counts)))
    return {f"{a},{b}": n for (a, b), n in sorted(counts.items())}
