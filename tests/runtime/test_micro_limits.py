"""Micro-batches of a model with BatchNorm: at least 2 rows each (a fixed N that splits finer is refused at start,
`auto` is capped), found from the artifact's manifest; the planner's max_micro cap."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgepsl.plan.scenarios import scenario_instance
from edgepsl.plan.solvers import plan
from edgepsl.runtime.config import DEFAULT_ARTIFACT, RunConfig
from edgepsl.runtime.errors import RunConfigError
from edgepsl.runtime.microbatch import check_micro_batches, micro_batch_cap, micro_sizes
from edgepsl.segment import load_manifest
from edgepsl.segment.manifest import TensorSpec


def with_batch_norm(manifest):
    """The manifest with a BatchNorm's buffers in its part-2 (as the exporter names them: module path + buffer)."""
    bn = tuple(TensorSpec(f"0.1.{name}", (4,), np.dtype(np.float32)) for name in ("running_mean", "running_var"))
    segments = tuple(dataclasses.replace(seg, buffers=seg.buffers + bn) if seg.name == "part2" else seg
                     for seg in manifest.segments)
    return dataclasses.replace(manifest, segments=segments)


def test_batch_norm_models_get_micro_batches_of_two_rows_at_least():
    lenet = load_manifest(DEFAULT_ARTIFACT)
    bn = with_batch_norm(lenet)
    assert not lenet.batch_statistics and bn.batch_statistics
    assert micro_batch_cap(64, lenet) == 64 and micro_batch_cap(64, bn) == 32 and micro_batch_cap(3, bn) == 1
    assert min(micro_sizes(65, micro_batch_cap(65, bn))) >= 2
    for n in ("1", "32", "auto"):
        check_micro_batches(RunConfig(batch_size=64, micro_batches=n), bn)
    check_micro_batches(RunConfig(batch_size=64, micro_batches="64"), lenet)
    with pytest.raises(RunConfigError, match=r"micro_batches <= 32"):
        check_micro_batches(RunConfig(batch_size=64, micro_batches="33"), bn)


def test_the_planner_keeps_n_within_max_micro():
    inst = scenario_instance("vgg19_cifar10", 6, 2, 1, 1, micro_batches=1)
    free = plan(inst, "greedy-ls", budget=20_000, micro_batches="auto")
    assert free.plan.micro_batches.max() > 3  # uncapped, auto splits finer than the cap below
    for n in ("auto", "8"):
        capped = plan(inst, "greedy-ls", budget=20_000, micro_batches=n, max_micro=3)
        assert 1 <= capped.plan.micro_batches.min() and capped.plan.micro_batches.max() <= 3
