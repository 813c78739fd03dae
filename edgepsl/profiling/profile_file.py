"""Write measured costs as a profile file in the shipped schema (docs/formats.md), or add a device to one."""
from __future__ import annotations

from typing import Any

import numpy as np

from edgepsl.plan.profiles import parse_profile
from edgepsl.profiling.errors import ProfilingError
from edgepsl.profiling.measure import PHASES, LayerCosts

UNITS = {
    "fwd_ms": "ms per batch, median of the repetitions",
    "bwd_ms": "ms per batch, median of the repetitions",
    "update_ms": "ms per batch (SGD with momentum), median of the repetitions",
    "activation_kb": "KB (1024 bytes) of the layer's output for one batch",
    "weights_kb": "KB (1024 bytes) of the layer's parameters",
}


def profile_dict(costs: LayerCosts, model: str, dataset: str, device: str, info: dict[str, Any]) -> dict[str, Any]:
    """A profile with one device; per-layer 10th/90th percentiles go in 'spread', the machine in 'device_info'."""
    data = {
        "model": model,
        "dataset": dataset,
        "layers": len(costs.names),
        "units": UNITS,
        "devices": {device: {key: costs.median[key] for key in PHASES}},
        "memory": {"activation_kb": costs.activation_kb, "weights_kb": costs.weights_kb},
        "layer_names": costs.names,
        "spread": {device: {f"{key}_p{q}": getattr(costs, f"p{q}")[key] for key in PHASES for q in (10, 90)}},
        "device_info": {device: info},
        "notes": [f"measured by edgepsl profile on {device}"],
        "source": "edgepsl profile",
    }
    parse_profile(data, f"{model} on {device}")
    return data


def merge_device(existing: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Add the single device of `new` to `existing`; the model, layers and sizes must agree."""
    parse_profile(existing, "the profile to extend")
    (device,) = new["devices"]
    for key in ("model", "layers"):
        if existing.get(key) != new[key]:
            raise ProfilingError(f"cannot add {device}: the existing profile has {key}={existing.get(key)!r}, "
                                 f"this measurement {key}={new[key]!r}")
    for key in ("activation_kb", "weights_kb"):
        if not np.allclose(existing["memory"][key], new["memory"][key], rtol=1e-9):
            raise ProfilingError(f"cannot add {device}: memory.{key} differs (was the batch size different?)")
    merged = dict(existing)
    merged["devices"] = {**existing["devices"], **new["devices"]}
    merged["spread"] = {**existing.get("spread", {}), **new["spread"]}
    merged["device_info"] = {**existing.get("device_info", {}), **new["device_info"]}
    merged["notes"] = [*existing.get("notes", []), *new["notes"]]
    return merged
