"""The quality benchmark on a tiny grid: JSON structure, consistent gaps and optima, both figures written."""
from __future__ import annotations

import importlib.util
import json

import pytest

pytest.importorskip("highspy")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

from tools.bench_quality import BenchQualityError, main

TOL = 1e-9


def _methods() -> list[str]:
    methods = ["random", "balanced-greedy", "greedy-ls"]
    if importlib.util.find_spec("edgepsl.plan.admm") is not None:
        methods.insert(2, "admm")
    return methods


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("quality")
    argv = ["--quick", "--methods", ",".join(_methods()), "--models", "resnet101_cifar10,vgg19_cifar10",
            "--ks", "5,7", "--hs", "2,3", "--seeds", "1", "--milp-max-k", "5", "--workers", "1",
            "--out", str(out / "quality.json"), "--plots", str(out)]
    assert main(argv) == 0
    return json.loads((out / "quality.json").read_text()), out


def test_structure_and_figures(result):
    data, out = result
    methods = _methods()
    assert data["settings"]["methods"] == methods
    assert data["settings"]["milp_max_k"] == 5
    assert len(data["instances"]) == len(data["cells"]) == 2 * 2 * 2 * 2
    for cell in data["cells"]:
        assert cell["seeds"] == 1
        assert set(cell["methods"]) == set(methods)
        for r in cell["methods"].values():
            assert r["plans"] == 1
            assert r["optimum_seeds"] <= cell["optimum_proven"]
    for name in ("quality_fig7.png", "quality_fig8.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_optimum_and_gaps_consistent(result):
    data, _ = result
    for r in data["instances"]:
        milp = r["milp"]
        assert (milp["status"] == "not attempted") == (r["K"] > 5)
        if milp["status"] != "not attempted":
            assert milp["status"] == "optimal"  # K=5 is proven within the quick time limit
            assert r["optimum"] is not None and r["optimum_proven_by"] == "milp"
        assert r["lower_bound"] <= r["best_bound"] + TOL
        if r["optimum"] is not None:
            assert r["best_bound"] <= r["optimum"] * (1 + TOL)
        for m in data["settings"]["methods"]:
            x = r["methods"][m]
            assert x["makespan"] >= r["lower_bound"] * (1 - TOL)
            assert x["gap_lb"] == pytest.approx(x["makespan"] / r["lower_bound"] - 1)
            if r["optimum"] is None:
                assert x["gap_opt"] is None
            else:
                assert x["makespan"] >= r["optimum"]
                assert x["gap_opt"] == pytest.approx(x["makespan"] / r["optimum"] - 1)


def test_targets_computed_from_the_data(result):
    data, _ = result
    mean_gap = next(t for t in data["targets"] if "mean gap" in t["target"])
    gaps = [r["methods"]["greedy-ls"]["gap_opt"] for r in data["instances"]
            if r["methods"]["greedy-ls"]["gap_opt"] is not None]
    assert mean_gap["instances"] == len(gaps) > 0
    assert mean_gap["value"] == pytest.approx(sum(gaps) / len(gaps))
    assert mean_gap["pass"] == (mean_gap["value"] <= 0.03)
    assert len(data["targets"]) == (4 if "admm" in data["settings"]["methods"] else 2)


def test_unknown_method_is_refused(tmp_path):
    with pytest.raises(BenchQualityError, match="unknown methods"):
        main(["--quick", "--methods", "random,nope", "--out", str(tmp_path / "q.json"), "--plots", str(tmp_path)])
