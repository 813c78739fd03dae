"""Exporter tests on the small models (MLP, LeNet-5): verification, artifact format, CLI errors, failing exports."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import models
from edgepsl.export import trace
from edgepsl.export.artifact import export_segments, write_artifact
from edgepsl.export.errors import ExportError, VerificationError
from edgepsl.export.verify import INPUT_ROUNDINGS, _roundings
from edgepsl.segment import Segment, load_manifest, names
from edgepsl.segment.losses import CROSS_ENTROPY, LOSSES
from tests.tools.torch_reference import check_runtime_segment
from tools import export as export_cli


@pytest.fixture(scope="module", params=["mlp", "lenet5"])
def artifact(request, tmp_path_factory):
    """A verified 3-segment export of a small model, written to a temporary directory."""
    name = request.param
    spec = models.get_spec(name)
    model = models.build(name)
    segments = export_segments(model, spec.input_shape, spec.default_cuts, LOSSES[CROSS_ENTROPY])
    out = write_artifact(tmp_path_factory.mktemp(name) / "art", name, spec.default_cuts, len(model),
                         spec.num_classes, segments, LOSSES[CROSS_ENTROPY])
    return name, model, segments, out


def test_every_graph_verified_within_tolerance(artifact):
    _, model, segments, _ = artifact
    assert [s.role for s in segments] == [names.FIRST, names.MIDDLE, names.LAST]
    for seg in segments:
        params = [n for n, _ in model[seg.blocks[0]:seg.blocks[1]].named_parameters()]
        graphs = (names.TRAIN, names.EVAL) if seg.role == names.LAST else (names.FORWARD, names.BACKWARD, names.EVAL)
        checked = {k.split(":", 1)[0] for k in seg.errors}
        assert checked == set(graphs)
        assert {f"{names.GRAD}{p}" for p in params} <= {k.split(":", 1)[1] for k in seg.errors}
        assert max(seg.errors.values()) <= 1e-5


def test_manifest_lists_hashed_files_and_dynamic_batch(artifact):
    name, model, _, out = artifact
    manifest = load_manifest(out)
    assert manifest.model == name and manifest.opset == 18 and manifest.num_blocks == len(model)
    assert set(manifest.exporter) >= {"torch", "onnx", "onnxscript", "onnxruntime"}
    files = {p.name for p in out.iterdir()} - {names.MANIFEST_FILE}
    assert files == set(manifest.files)
    for seg in manifest.segments:
        assert seg.input.shape[0] is None and seg.output.shape[0] is None
        for graph in seg.graphs.values():
            assert all(t.shape[0] is None for t in graph.inputs if t.name in (names.X, names.GRAD_OUT))


def test_graphs_use_standard_opset_18_ops_only(artifact):
    _, _, _, out = artifact
    for path in out.glob("*.onnx"):
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        assert [(o.domain, o.version) for o in model.opset_import] == [("", 18)]
        assert not model.functions
        assert {n.domain for n in model.graph.node} <= {""}


def test_runtime_segments_match_float64_torch_at_another_batch_size(artifact):
    _, model, _, out = artifact
    manifest = load_manifest(out)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, *models.get_spec(manifest.model).input_shape)).astype(np.float32)
    for spec in manifest.segments:
        seg = Segment(manifest, spec.name, threads=1)
        torch_segment = model[spec.blocks[0]:spec.blocks[1]]
        errors = check_runtime_segment(seg, torch_segment, x, rng, manifest.num_classes)
        assert max(errors.values()) <= 1e-5
        with torch.no_grad():
            x = torch_segment.train()(torch.from_numpy(x)).numpy()


def test_cli_per_layer_export_writes_one_segment_per_block(tmp_path, capsys):
    out = tmp_path / "mlp"
    assert export_cli.main(["--model", "mlp", "--per-layer", "--out", str(out)]) == 0
    manifest = json.loads((out / names.MANIFEST_FILE).read_text())
    assert manifest["cuts"] == [1, 2, 3]
    assert [s["blocks"] for s in manifest["segments"]] == [[0, 1], [1, 2], [2, 3], [3, 4]]
    assert [s["role"] for s in manifest["segments"]] == [names.FIRST, names.MIDDLE, names.MIDDLE, names.LAST]
    assert "part4" in capsys.readouterr().out
    assert export_cli.main(["--model", "mlp", "--cut", "2,3", "--out", str(out)]) == 1
    assert "--force" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--model", "nosuch"], "unknown model 'nosuch'"),
    (["--model", "lenet5", "--cut", "3,1"], "strictly increasing"),
    (["--model", "lenet5", "--cut", "0,2"], "strictly increasing"),
    (["--model", "lenet5", "--cut", "1,x"], "comma-separated"),
    (["--model", "lenet5", "--cut", ","], "at least one cut"),
    (["--model", "lenet5", "--num-classes", "1"], "--num-classes must be at least 2"),
])
def test_cli_rejects_bad_model_or_cuts_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "never"
    assert export_cli.main([*argv, "--out", str(out)]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_cli_rejects_an_unknown_winograd_tile_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as exit_info:
        export_cli.main(["--model", "vgg11", "--winograd-tile", "3", "--out", str(out)])
    assert exit_info.value.code == 2
    assert "--winograd-tile" in capsys.readouterr().err
    assert not out.exists()


def test_export_without_our_decompositions_fails_verification_and_writes_nothing(tmp_path, capsys, monkeypatch):
    """The stock translation scales the cross-entropy gradient by the batch size: verification must catch it."""
    monkeypatch.setattr(trace, "decomposition_table", lambda winograd_tile: {})
    out = tmp_path / "bad"
    assert export_cli.main(["--model", "mlp", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "segment part3, train graph: tensor" in err and "relative L2 error" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_stock_batchnorm_translation_is_caught(monkeypatch):
    """Without the BatchNorm decompositions training BN is exported as inference BN; verification names it."""
    from edgepsl.export import decompositions
    table = decompositions.decomposition_table()
    for op in decompositions._BATCH_NORM_OPS:
        table.pop(op, None)
    monkeypatch.setattr(trace, "decomposition_table", lambda winograd_tile: table)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()),
                          nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                                        nn.Linear(4 * 4 * 4, 3)))
    with pytest.raises(VerificationError, match=r"segment part2, train graph: tensor '[^']+' has relative L2 error"):
        export_segments(model, (1, 8, 8), [1], LOSSES[CROSS_ENTROPY])


def test_unsupported_op_is_an_export_error():
    model = nn.Sequential(nn.Sequential(nn.ConvTranspose2d(1, 2, 3), nn.ReLU()),
                          nn.Sequential(nn.Flatten(), nn.Linear(2 * 10 * 10, 3)))
    with pytest.raises(ExportError, match="segment part1 .*non-transposed convolutions"):
        export_segments(model, (1, 8, 8), [1], LOSSES[CROSS_ENTROPY])


def test_batchnorm_backward_reads_the_forward_centred_input():
    """Training BatchNorm centres its input once: the backward reuses the forward's centred tensor (saved in
    place of the raw input) instead of subtracting the mean from a saved tensor again."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()),
                          nn.Sequential(nn.Conv2d(4, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU()),
                          nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, 3)))
    (part2,) = export_segments(model, (1, 8, 8), [1, 2], LOSSES[CROSS_ENTROPY], segment_filter=["part2"])
    backward = part2.graphs[names.BACKWARD].graph
    forward_tensors = {i.name for i in backward.input if i.name != names.GRAD_OUT}
    subs = [n for n in backward.node if n.op_type == "Sub"]
    assert subs and not [n.name for n in subs if n.input[0] in forward_tensors]
    assert max(part2.errors.values()) <= 1e-5


def test_float32_noise_runs_see_the_input_rounded_one_ulp_either_way():
    """The float32 noise estimate's inputs: the input itself, then seeded copies whose nonzero elements stay or move
    exactly one float32 ulp (both ways occur); zeros stay zero; an integer input is used as it is."""
    x = torch.from_numpy(np.random.default_rng(3).standard_normal((4, 3, 8, 8)).astype(np.float32))
    x[0] = 0.0
    copies = _roundings(x)
    assert len(copies) == INPUT_ROUNDINGS + 1 and copies[0] is x
    values = x.numpy()
    ulp = np.spacing(np.abs(values))
    for moved in copies[1:]:
        step = (moved.numpy().astype(np.float64) - values) / np.where(values == 0, 1, ulp)
        assert set(np.unique(np.round(step, 6))) <= {-1.0, 0.0, 1.0} and (step == 1).any() and (step == -1).any()
        assert not moved.numpy()[0].any()
    assert all(torch.equal(a, b) for a, b in zip(copies[1:], _roundings(x)[1:]))
    labels = torch.arange(4)
    assert _roundings(labels) == [labels]
