"""IID and Dirichlet splits: every sample exactly once, seeded, and Dirichlet skew grows as alpha shrinks."""
from __future__ import annotations

import numpy as np
import pytest

from edgepsl.data.partition import PartitionError, dirichlet_split, iid_split, partition


def _covers(parts: list[np.ndarray], n: int) -> bool:
    return np.array_equal(np.sort(np.concatenate(parts)), np.arange(n))


def test_iid_split_is_an_even_seeded_partition():
    parts = iid_split(1003, 6, seed=1)
    assert _covers(parts, 1003)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert all(np.array_equal(a, b) for a, b in zip(parts, iid_split(1003, 6, seed=1)))
    assert not all(np.array_equal(a, b) for a, b in zip(parts, iid_split(1003, 6, seed=2)))


def test_dirichlet_split_covers_and_skews():
    labels = np.random.default_rng(0).integers(0, 10, 5000)
    skewed = dirichlet_split(labels, 5, alpha=0.1, seed=3, min_size=32)
    mild = dirichlet_split(labels, 5, alpha=100.0, seed=3, min_size=32)
    for parts in (skewed, mild):
        assert _covers(parts, 5000)
        assert min(map(len, parts)) >= 32

    def largest_class_share(parts):
        return np.mean([np.bincount(labels[p], minlength=10).max() / len(p) for p in parts])

    assert largest_class_share(skewed) > 2 * largest_class_share(mild)
    again = partition(labels, 5, "dirichlet", seed=3, alpha=0.1, min_size=32)
    assert all(np.array_equal(a, b) for a, b in zip(skewed, again))


@pytest.mark.parametrize("call", [
    lambda: iid_split(3, 4, 0),
    lambda: dirichlet_split(np.zeros(10, np.int64), 2, alpha=0.0, seed=0),
    lambda: partition(np.zeros(10, np.int64), 2, "shards", seed=0),
])
def test_impossible_partitions_are_refused(call):
    with pytest.raises(PartitionError):
        call()
