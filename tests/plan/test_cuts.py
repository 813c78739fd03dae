"""Cut choice: memory filter, the best common cut, per-client cuts never worse, clear errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgepsl.cli import main
from edgepsl.plan.cuts import _assemble, candidate_cuts, choose_cuts, client_memory_mb
from edgepsl.plan.errors import ProfileError
from edgepsl.plan.heuristics import solve
from edgepsl.plan.profiles import load_profile
from edgepsl.plan.scenarios import scenario_instance


def test_client_memory_counts_the_client_side_layers() -> None:
    prof = load_profile("vgg19_cifar10")
    per_layer = (prof.activation_kb + prof.weights_kb) / 1024
    assert client_memory_mb(prof, 3, 10) == pytest.approx(per_layer[:3].sum() + per_layer[10:].sum())
    fits, refused = candidate_cuts(prof, 300.0)
    assert all(client_memory_mb(prof, a, b) <= 300.0 for a, b in fits)
    assert refused and all(r["makespan_ms"] is None for r in refused)
    assert len(fits) + len(refused) == (prof.layers - 2) * (prof.layers - 1) // 2
    with pytest.raises(ProfileError, match="no cut of vgg19_cifar10 fits"):
        candidate_cuts(prof, 0.001)


def test_best_common_cut_is_the_minimum_over_candidates() -> None:
    choice = choose_cuts("vgg19_cifar10", 12, 3, 1, 0, client_memory_limit_mb=2000.0)
    planned = [c for c in choice.candidates if c["makespan_ms"] is not None]
    assert choice.makespan == min(c["makespan_ms"] for c in planned)
    (cut,) = set(choice.cuts)
    again = solve(scenario_instance("vgg19_cifar10", 12, 3, 1, 0, cuts=cut), "greedy-ls").makespan
    assert again == choice.makespan


def test_per_client_cuts_are_never_worse_and_assemble_consistently() -> None:
    common = choose_cuts("resnet101_cifar10", 10, 2, 2, 1)
    per = choose_cuts("resnet101_cifar10", 10, 2, 2, 1, per_client=True, top=4, passes=2)
    assert per.makespan <= common.makespan
    assert solve(per.instance, "greedy-ls", seed=1).makespan == per.makespan
    a, b = (3, 33), (5, 30)
    per_cut = {c: scenario_instance("resnet101_cifar10", 4, 2, 1, 0, cuts=c) for c in (a, b)}
    mixed = _assemble(per_cut, [a, b, a, b])
    np.testing.assert_array_equal(mixed.r[1], per_cut[b].r[1])
    np.testing.assert_array_equal(mixed.p_bwd[2], per_cut[a].p_bwd[2])
    assert (mixed.cap >= mixed.mem.sum()).all()
    with pytest.raises(ProfileError, match="loose memory only"):
        choose_cuts("resnet101_cifar10", 4, 2, 1, 0, per_client=True, binding_memory=True)


def test_cli_choose_cuts(tmp_path, capsys) -> None:
    out = tmp_path / "cuts"
    assert main(["plan", "--profile", "vgg19_cifar10", "-K", "8", "-H", "2", "--choose-cuts",
                 "--client-memory-mb", "1500", "--no-plot", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    doc = json.loads((out / "cuts.json").read_text())
    assert "chosen" in printed and doc["chosen"] and len(doc["chosen"]) == 8
    assert json.loads((out / "plan.json").read_text())["evaluation"]["makespan_ms"] == pytest.approx(doc["makespan_ms"])
    assert main(["plan", "--instance", str(out / "instance.json"), "--choose-cuts", "--no-plot",
                 "--out", str(tmp_path / "x")]) == 1
    assert "--choose-cuts needs --profile" in capsys.readouterr().err
