"""The paper's instance generators (scenario 1: profiled devices, scenario 2: sampled heterogeneity), seeded.

They follow the reference code (`create_scenario` of the INFOCOM 2024 release) with its defects fixed;
docs/scenarios.md explains each rule and fix:

* transfers take KB * 8 / Mbps ms (the reference's 0.8 * KB / Mbps is 10x too fast);
* the four bandwidth classes' shares 30/42/12/28 % (which sum to 112 %) are rescaled to sum to 100 %
  and apportioned exactly (largest remainder) instead of starving the 11-15 Mbps class;
* scenario 2 gives each client its sampled part-1 backward time l' (the reference left l' = 0) and
  samples each range from its own part (the reference mixed part-1 fwd into the part-3 ranges);
* memory demands are continuous MB and, with binding_memory=True, helper capacities bind (the
  reference gave every helper room for all K clients);
* devices whose profile is all zeros (the Jetsons in the MNIST files) are never used.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edgepsl.plan.errors import ProfileError
from edgepsl.plan.instance import Instance
from edgepsl.plan.profiles import (Profile, StageCosts, build_instance, instance_from_parts, load_profile,
                                   loose_capacity_mb, with_loss_times, with_stages)

DEFAULT_CUTS: dict[str, tuple[int, int]] = {"resnet101": (3, 33), "vgg19": (3, 10)}
SCENARIO1_CLIENT_DEVICES = ("d1", "d2")
HELPER_DEVICES = ("VM", "laptop")
SCENARIO2_CLIENT_DEVICES = ("d1", "d2", "jetson-gpu", "jetson-cpu")

# (lowest Mbps, highest Mbps, share as specified in the reference in %); shares are rescaled to sum to 1.
BANDWIDTH_CLASSES: tuple[tuple[int, int, float], ...] = ((1, 4, 30.0), (5, 10, 42.0), (11, 15, 12.0), (16, 20, 28.0))
BINDING_SLACK = 0.25
BINDING_WEIGHTS = (0.5, 1.5)

HYBRID_CLIENT_DEVICES = ("d1", "jetson-cpu", "jetson-gpu")
HYBRID_HELPER_DEVICES = ("laptop",)
# paper.md 4.7: links at or below SLOW_MBPS get SLOW_FACTOR times longer transfers; each client's own device holds
# part-2 with probability LOCAL_MEMORY_SHARE (the reference draws the own capacity as 1 or m_max at random).
SLOW_MBPS, SLOW_FACTOR, LOCAL_MEMORY_SHARE = 1.0, 5.0, 0.5

SCENARIOS: dict[int, str] = {
    1: "profiled devices: helpers VM or laptop, clients d1 or d2 (uniformly), times summed from the profile",
    2: "sampled heterogeneity: client and helper part times drawn uniformly within the profiled devices' ranges",
}


def scenario_instance(
    profile: str,
    K: int,
    H: int,
    scenario: int,
    seed: int,
    cuts: tuple[int, int] | None = None,
    binding_memory: bool = False,
    micro_batches: int | None = None,
    stages: StageCosts | None = None,
    loss_times: bool = False,
) -> Instance:
    """Build the paper's scenario 1 or 2 instance with K clients and H helpers, deterministic for `seed`.

    With loss_times, the instance gets the local-loss fields (version 4, every client on SplitFed; the random draws
    are those without): scenario 1 from the client's device, scenario 2 from its sampled part-1 times plus the aux
    head's estimated step averaged over the sampled client devices (Profile.aux_head_ms).

    With micro_batches (N for every client) or stages, the instance gets the micro-batch stage fields (version 3;
    the default StageCosts with N = micro_batches); the other fields and the random draws are those without."""
    if micro_batches is not None:
        stages = dataclasses.replace(stages or StageCosts(), micro=micro_batches)
    if scenario not in SCENARIOS:
        raise ProfileError(f"unknown scenario {scenario!r}; choose one of {sorted(SCENARIOS)}: {SCENARIOS}")
    if K < 1 or H < 1:
        raise ProfileError(f"a scenario needs K >= 1 clients and H >= 1 helpers; got K={K}, H={H}")
    prof = load_profile(profile)
    a, b = cuts if cuts is not None else _default_cuts(prof)
    prof.check_cut(a, b)
    rng = np.random.default_rng(seed)
    bandwidth = sample_bandwidth(rng, K, H)
    mem = np.full(K, prof.part2_memory_mb(a, b))
    cap = binding_capacities(rng, mem, H) if binding_memory else np.full(H, loose_capacity_mb(mem))
    meta: dict[str, Any] = {
        "scenario": scenario,
        "seed": seed,
        "binding_memory": binding_memory,
        "bandwidth_class_links": class_counts(K * H).tolist(),
    }
    helpers = _measured(prof, HELPER_DEVICES, "helper")
    if scenario == 1:
        clients = _measured(prof, SCENARIO1_CLIENT_DEVICES, "client")
        client_devices = np.asarray(clients)[rng.integers(0, len(clients), K)]
        helper_devices = np.asarray(helpers)[rng.integers(0, len(helpers), H)]
        meta["built_by"] = "edgepsl.plan.scenarios.scenario_instance"
        return build_instance(prof, client_devices.tolist(), helper_devices.tolist(), (a, b), bandwidth, cap, meta,
                              stages=stages, loss_times=loss_times)
    inst = _sampled_instance(prof, rng, K, H, (a, b), bandwidth, mem, cap, meta, loss_times)
    if stages is None:
        return inst
    return with_stages(inst, np.full(K, prof.activation_kb[a - 1]), np.full(K, prof.activation_kb[b - 1]), bandwidth,
                       stages)


def hybrid_instance(profile: str, K: int, H: int, seed: int, cuts: tuple[int, int] | None = None,
                    local_memory_share: float = LOCAL_MEMORY_SHARE) -> Instance:
    """The paper's hybrid scenario (paper.md 4.7): laptop helpers, clients drawn from d1, Jetson CPU and Jetson GPU,
    slow links x5, binding helper memory, each client's own memory holding part-2 with probability
    `local_memory_share`; deterministic for `seed`."""
    if K < 1 or H < 1:
        raise ProfileError(f"a scenario needs K >= 1 clients and H >= 1 helpers; got K={K}, H={H}")
    if not 0.0 <= local_memory_share <= 1.0:
        raise ProfileError(f"local_memory_share must be within [0, 1], got {local_memory_share!r}")
    prof = load_profile(profile)
    a, b = cuts if cuts is not None else _default_cuts(prof)
    prof.check_cut(a, b)
    rng = np.random.default_rng(seed)
    clients = _measured(prof, HYBRID_CLIENT_DEVICES, "client")
    helpers = _measured(prof, HYBRID_HELPER_DEVICES, "helper")
    bandwidth = sample_bandwidth(rng, K, H)
    bandwidth = np.where(bandwidth <= SLOW_MBPS, bandwidth / SLOW_FACTOR, bandwidth)
    mem = np.full(K, prof.part2_memory_mb(a, b))
    cap = binding_capacities(rng, mem, H)
    client_devices = np.asarray(clients)[rng.integers(0, len(clients), K)]
    own = np.where(rng.random(K) < local_memory_share, mem, 0.0)
    meta = {"scenario": "hybrid", "seed": seed, "binding_memory": True, "local_memory_share": local_memory_share,
            "built_by": "edgepsl.plan.scenarios.hybrid_instance"}
    return build_instance(prof, client_devices.tolist(), [helpers[i % len(helpers)] for i in range(H)], (a, b),
                          bandwidth, cap, meta, client_memory_mb=own)


def sample_bandwidth(rng: np.random.Generator, K: int, H: int) -> np.ndarray:
    """K x H integer Mbps: exact class counts (class_counts) on randomly permuted links, uniform within a class."""
    counts = class_counts(K * H)
    classes = rng.permutation(np.repeat(np.arange(len(BANDWIDTH_CLASSES)), counts))
    low = np.array([c[0] for c in BANDWIDTH_CLASSES])[classes]
    high = np.array([c[1] for c in BANDWIDTH_CLASSES])[classes]
    return rng.integers(low, high + 1).astype(np.float64).reshape(K, H)


def class_counts(links: int) -> np.ndarray:
    """Links per bandwidth class: the reference's shares rescaled to 100 %, apportioned by largest remainder."""
    shares = np.array([c[2] for c in BANDWIDTH_CLASSES])
    return _apportion(links, shares)


def binding_capacities(rng: np.random.Generator, mem: np.ndarray, H: int) -> np.ndarray:
    """Heterogeneous helper capacities (MB) whose total room only modestly exceeds the demand yet always fits.

    With m = max(mem), helper i gets s_i client slots and floor(s_i * m) + 1 MB: every helper gets one
    slot, then S - H more are apportioned by weights uniform in BINDING_WEIGHTS, where
    S = max(H, ceil((1 + BINDING_SLACK) * K)) (S = K when H = 1). With H >= 2 no helper gets more than
    max(K - 1, 1) slots, so none can hold every client. The slots still total at least K, and every
    client fits in any slot, so placing clients slot by slot is always feasible.
    """
    K = int(mem.shape[0])
    total = K if H == 1 else max(H, int(np.ceil((1.0 + BINDING_SLACK) * K)))
    weights = rng.uniform(*BINDING_WEIGHTS, size=H)
    slots = np.minimum(1 + _apportion(total - H, weights), K if H == 1 else max(K - 1, 1))
    return np.floor(slots * float(mem.max())) + 1.0


def _sampled_instance(
    prof: Profile,
    rng: np.random.Generator,
    K: int,
    H: int,
    cut: tuple[int, int],
    bandwidth: np.ndarray,
    mem: np.ndarray,
    cap: np.ndarray,
    meta: dict[str, Any],
    loss_times: bool,
) -> Instance:
    a, b, L = cut[0], cut[1], prof.layers
    rows = [prof.devices.index(d) for d in _measured(prof, SCENARIO2_CLIENT_DEVICES, "client")]
    hrows = [prof.devices.index(d) for d in _measured(prof, HELPER_DEVICES, "helper")]
    ranges = {
        "part1_fwd": prof.part_fwd_ms(0, a)[rows],
        "part3_bwd": prof.part_bwd_ms(b, L)[rows],
        "part3_fwd": prof.part_fwd_ms(b, L)[rows],
        "part1_bwd": prof.part_bwd_ms(0, a)[rows],
    }
    # One sorted sample list per quantity; a client takes the same random index in all four lists.
    sampled = {key: np.sort(rng.uniform(*_span(v), K)) for key, v in ranges.items()}
    profile_index = rng.integers(0, K, K)
    helper_fwd = np.sort(rng.uniform(*_span(prof.part_fwd_ms(a, b)[hrows]), H))
    helper_bwd = np.sort(rng.uniform(*_span(prof.part_bwd_ms(a, b)[hrows]), H))
    helper_index = rng.integers(0, H, H)
    meta.update(
        built_by="edgepsl.plan.scenarios.scenario_instance",
        profile=prof.name,
        model=prof.model,
        dataset=prof.dataset,
        cuts=[a, b],
        sampled_from={"clients": [prof.devices[r] for r in rows], "helpers": [prof.devices[r] for r in hrows]},
        bandwidth_mbps={"min": float(bandwidth.min()), "mean": float(bandwidth.mean()), "max": float(bandwidth.max())},
    )
    inst = instance_from_parts(
        part1_fwd=sampled["part1_fwd"][profile_index],
        part1_bwd=sampled["part1_bwd"][profile_index],
        part3_fwd=sampled["part3_fwd"][profile_index],
        part3_bwd=sampled["part3_bwd"][profile_index],
        part2_fwd=np.broadcast_to(helper_fwd[helper_index], (K, H)),
        part2_bwd=np.broadcast_to(helper_bwd[helper_index], (K, H)),
        cut1_kb=np.full(K, prof.activation_kb[a - 1]),
        cut2_kb=np.full(K, prof.activation_kb[b - 1]),
        bandwidth_mbps=bandwidth,
        mem=mem,
        cap=cap,
        meta=meta,
    )
    if not loss_times:
        return inst
    head = float(prof.aux_head_ms()[rows].mean())
    return with_loss_times(inst, sampled["part1_fwd"][profile_index], sampled["part1_bwd"][profile_index] + head)


def _apportion(total: int, weights: np.ndarray) -> np.ndarray:
    quota = total * weights / weights.sum()
    counts = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - counts), kind="stable")
    counts[order[: total - int(counts.sum())]] += 1
    return counts


def _span(values: np.ndarray) -> tuple[float, float]:
    return float(values.min()), float(values.max())


def _measured(prof: Profile, wanted: tuple[str, ...], role: str) -> tuple[str, ...]:
    usable = tuple(d for d in wanted if d in prof.profiled_devices)
    if not usable:
        raise ProfileError(
            f"profile {prof.name!r} has no profiled {role} device among {', '.join(wanted)}; "
            f"profiled devices: {', '.join(prof.profiled_devices)}"
        )
    return usable


def _default_cuts(prof: Profile) -> tuple[int, int]:
    if prof.model not in DEFAULT_CUTS:
        raise ProfileError(
            f"no default cuts for model {prof.model!r}; pass cuts=(a, b) with 1 <= a < b <= {prof.layers - 1}"
        )
    return DEFAULT_CUTS[prof.model]
