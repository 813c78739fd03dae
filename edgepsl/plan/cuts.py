"""Choose cut layers: the (a, b) for all clients, or one per client, that minimises the planned makespan.

Candidates are all cuts 1 <= a < b <= L-1 whose client side (layers [0, a) and [b, L): activations and
weights) fits the client memory limit. Each candidate's instance (same fleet: the scenario's devices
and links depend on the seed only) is planned with the chosen method. Per-client cuts start from the
best common cut and improve one client at a time over the best common candidates (coordinate descent),
accepting only strictly shorter makespans, for a bounded number of passes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgepsl.plan.errors import ProfileError
from edgepsl.plan.heuristics import DEFAULT_BUDGET, solve
from edgepsl.plan.instance import FIELDS, Instance
from edgepsl.plan.profiles import Profile, load_profile, loose_capacity_mb
from edgepsl.plan.scenarios import scenario_instance

Cut = tuple[int, int]


@dataclass(frozen=True)
class CutChoice:
    """The chosen cut of every client, its instance and planned makespan, and every candidate tried."""

    cuts: tuple[Cut, ...]
    instance: Instance
    makespan: float
    candidates: list[dict[str, Any]] = field(default_factory=list)


def client_memory_mb(profile: Profile, a: int, b: int) -> float:
    """MB a client needs for its layers [0, a) and [b, L): activations plus weights."""
    per_layer = (profile.activation_kb + profile.weights_kb) / 1024
    return float(per_layer[:a].sum() + per_layer[b:].sum())


def candidate_cuts(profile: Profile, client_memory_limit_mb: float | None) -> tuple[list[Cut], list[dict]]:
    """Cuts whose client side fits the limit, and a record of the ones that do not."""
    L = profile.layers
    fits, refused = [], []
    for a in range(1, L - 1):
        for b in range(a + 1, L):
            need = client_memory_mb(profile, a, b)
            if client_memory_limit_mb is not None and need > client_memory_limit_mb:
                refused.append({"cuts": [a, b], "makespan_ms": None,
                                "reason": f"client needs {need:.1f} MB > {client_memory_limit_mb:g} MB"})
            else:
                fits.append((a, b))
    if not fits:
        raise ProfileError(f"no cut of {profile.name} fits {client_memory_limit_mb:g} MB on the client; the smallest "
                           f"client side needs {min(client_memory_mb(profile, a, b) for a, b in _all(L)):.1f} MB")
    return fits, refused


def _all(L: int) -> list[Cut]:
    return [(a, b) for a in range(1, L - 1) for b in range(a + 1, L)]


def _assemble(per_cut: dict[Cut, Instance], cuts: list[Cut]) -> Instance:
    """Client j's rows from the instance built with cut cuts[j]; capacities loose for the resulting demand."""
    rows = {name: np.stack([getattr(per_cut[c], name)[j] for j, c in enumerate(cuts)])
            for name, kind, _ in FIELDS if kind != "H"}
    first = per_cut[cuts[0]]
    meta = {**first.meta, "cuts": [list(c) for c in cuts]}
    return Instance(**rows, cap=np.full(first.H, loose_capacity_mb(rows["mem"])), client_names=first.client_names,
                    helper_names=first.helper_names, meta=meta)


def choose_cuts(profile_name: str, K: int, H: int, scenario: int, seed: int, per_client: bool = False,
                client_memory_limit_mb: float | None = None, binding_memory: bool = False,
                method: str = "greedy-ls", budget: int = DEFAULT_BUDGET, top: int = 8, passes: int = 3) -> CutChoice:
    """Plan every candidate cut and return the best (per client: coordinate descent over the top candidates)."""
    if per_client and binding_memory:
        raise ProfileError("per-client cuts change every helper's demand; combine them with loose memory only")
    profile = load_profile(profile_name)
    cands, records = candidate_cuts(profile, client_memory_limit_mb)
    per_cut: dict[Cut, Instance] = {}
    value: dict[Cut, float] = {}
    for cut in cands:
        per_cut[cut] = scenario_instance(profile_name, K, H, scenario, seed, cuts=cut, binding_memory=binding_memory)
        value[cut] = solve(per_cut[cut], method, seed=seed, budget=budget).makespan
        records.append({"cuts": list(cut), "makespan_ms": value[cut], "reason": "common cut"})
    best = min(cands, key=lambda c: (value[c], c))
    cuts = [best] * K
    makespan = value[best]
    if per_client:
        shortlist = sorted(cands, key=lambda c: (value[c], c))[:top]
        for _ in range(passes):
            improved = False
            for j in range(K):
                for cut in shortlist:
                    if cut == cuts[j]:
                        continue
                    trial = cuts.copy()
                    trial[j] = cut
                    ms = solve(_assemble(per_cut, trial), method, seed=seed, budget=budget).makespan
                    if ms < makespan:
                        cuts, makespan, improved = trial, ms, True
                        records.append({"cuts": [list(c) for c in trial], "makespan_ms": ms,
                                        "reason": f"client {j} moved to cut {list(cut)}"})
            if not improved:
                break
    instance = per_cut[best] if all(c == best for c in cuts) else _assemble(per_cut, cuts)
    return CutChoice(tuple(cuts), instance, makespan, records)
