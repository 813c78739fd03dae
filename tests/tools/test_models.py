"""Per-segment gradients of every model against float64 PyTorch (few blocks of the big models, as the issue allows).

Every exported segment is verified by the exporter (forward, backward, train and eval graphs against float64);
the middle segment is then also run through the runtime's Segment at another batch size and checked again.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import models
from edgepsl.export.artifact import export_segments, segment_bounds, segment_examples, write_artifact
from edgepsl.segment import Segment, load_manifest, names
from edgepsl.segment.losses import CROSS_ENTROPY, LOSSES
from tests.tools.torch_reference import check_runtime_segment

# model -> (cuts, the segments to export): small segments that still cover every block type of the model.
CASES = {
    "vgg19": ((1, 2, 3, 16), ["part1", "part3", "part5"]),
    "resnet18": ((1, 3, 4, 9), ["part1", "part3", "part5"]),
    "resnet101": ((1, 4, 5, 34), ["part1", "part3", "part5"]),
    "mobilenetv2": ((1, 3, 5, 18), ["part1", "part3", "part5"]),
}


def test_model_registry_blocks_and_shapes():
    expected_blocks = {"mlp": 4, "lenet5": 5, "vgg11": 9, "vgg19": 17, "resnet18": 10, "resnet101": 35,
                       "mobilenetv2": 20}
    for name, spec in models.MODELS.items():
        model = models.build(name)
        assert len(model) == expected_blocks[name]
        assert 0 < spec.default_cuts[0] < spec.default_cuts[1] < len(model)
        with torch.no_grad():
            assert model.eval()(torch.zeros(2, *spec.input_shape)).shape == (2, spec.num_classes)


@pytest.mark.parametrize("name", sorted(CASES))
def test_segments_of_big_models_match_float64(name, tmp_path):
    cuts, wanted = CASES[name]
    spec = models.get_spec(name)
    model = models.build(name)
    segments = export_segments(model, spec.input_shape, cuts, LOSSES[CROSS_ENTROPY], segment_filter=wanted)
    assert [s.name for s in segments] == wanted
    roles = {s.name: s.role for s in segments}
    assert roles[wanted[0]] == names.FIRST and roles[wanted[-1]] == names.LAST
    out = write_artifact(tmp_path / name, name, cuts, len(model), spec.num_classes, segments, LOSSES[CROSS_ENTROPY])
    manifest = load_manifest(out)
    examples = segment_examples(model, spec.input_shape, segment_bounds(len(model), cuts), seed=9)
    rng = np.random.default_rng(1)
    for seg_spec in (s for s in manifest.segments if s.role == names.MIDDLE):
        index = int(seg_spec.name[len("part"):]) - 1
        x = examples[index].verify_x.numpy()
        seg = Segment(manifest, seg_spec.name, threads=1)
        errors = check_runtime_segment(seg, model[seg_spec.blocks[0]:seg_spec.blocks[1]], x, rng, spec.num_classes)
        assert errors
