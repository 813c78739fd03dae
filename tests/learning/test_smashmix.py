"""SmashMix: seeded, pairs only distinct clients unless configured, lambda ~ Beta(alpha, alpha), exact mixing."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from edgepsl.learning import SmashMix, SmashMixError


def _batches(clients: int, batch: int = 4, shape: tuple[int, ...] = (3, 2, 2)) -> dict:
    """Per client: smashed data whose every value is the client's id plus the sample index / 100, and labels."""
    out = {}
    for c in range(clients):
        x = np.stack([np.full(shape, c + i / 100, np.float32) for i in range(batch)])
        out[f"c{c}"] = (x, np.arange(batch, dtype=np.int64) + 10 * c)
    return out


def test_each_mixed_sample_is_the_convex_combination_of_two_clients_samples():
    batches = _batches(4)
    mixed = SmashMix(alpha=0.4, pairs=6, seed=1).mix(batches, round_index=0)
    assert len(mixed) == 6
    assert sorted(tuple(sorted(m.clients)) for m in mixed) == sorted(itertools.combinations(batches, 2))
    for m in mixed:
        a, b = m.clients
        assert a != b and 0.0 <= m.lam <= 1.0
        (xa, ya), (xb, yb) = batches[a], batches[b]
        assert m.x.shape == (4, 3, 2, 2) and m.x.dtype == np.float32
        np.testing.assert_array_equal(m.x, np.float32(m.lam) * xa[m.index_a] + np.float32(1 - m.lam) * xb[m.index_b])
        np.testing.assert_array_equal(m.labels_a, ya[m.index_a])
        np.testing.assert_array_equal(m.labels_b, yb[m.index_b])
        assert sorted(m.index_a) == list(range(4)) and sorted(m.index_b) == list(range(4))
        soft = m.soft_labels(40)
        assert soft.shape == (4, 40) and np.allclose(soft.sum(axis=1), 1.0)
        assert np.allclose(soft[np.arange(4), m.labels_a], m.lam) and np.allclose(soft[np.arange(4), m.labels_b],
                                                                                   1 - m.lam)


def test_same_seed_and_round_mix_identically_and_rounds_differ():
    batches = _batches(3)
    first = SmashMix(alpha=1.0, pairs=3, seed=7).mix(batches, 5)
    again = SmashMix(alpha=1.0, pairs=3, seed=7).mix(batches, 5)
    other = SmashMix(alpha=1.0, pairs=3, seed=7).mix(batches, 6)
    assert [(m.clients, m.lam) for m in first] == [(m.clients, m.lam) for m in again]
    assert all(np.array_equal(a.x, b.x) for a, b in zip(first, again))
    assert [m.lam for m in first] != [m.lam for m in other]


def test_no_pair_within_one_client_unless_configured():
    batches = _batches(3)
    across = SmashMix(pairs=60, seed=2).mix(batches, 0)
    assert all(m.clients[0] != m.clients[1] for m in across)
    counts = {p: sum(tuple(m.clients) == p for m in across) for p in itertools.combinations(batches, 2)}
    assert set(counts.values()) == {20}
    within = SmashMix(pairs=60, within_client=True, seed=2).mix(batches, 0)
    assert any(m.clients[0] == m.clients[1] for m in within)
    with pytest.raises(SmashMixError, match="at least 2 clients"):
        SmashMix().mix(_batches(1), 0)
    assert len(SmashMix(pairs=2, within_client=True).mix(_batches(1), 0)) == 2


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
def test_lambda_follows_beta_alpha_alpha(alpha):
    lams = np.array([m.lam for r in range(40) for m in SmashMix(alpha=alpha, pairs=50, seed=3).mix(_batches(2, 2), r)])
    assert lams.size == 2000
    mean, var = 0.5, 1.0 / (4.0 * (2.0 * alpha + 1.0))
    assert abs(lams.mean() - mean) < 4 * np.sqrt(var / lams.size)
    assert abs(lams.var() - var) < 0.1 * var
    # Kolmogorov-Smirnov distance of the empirical CDF from the Beta(alpha, alpha) CDF
    grid = np.linspace(0.0, 1.0, 2001)
    ks = np.max(np.abs(np.searchsorted(np.sort(lams), grid, side="right") / lams.size - _beta_cdf(grid, alpha)))
    assert ks < 1.63 / np.sqrt(lams.size)  # the 1% critical value


def _beta_cdf(x: np.ndarray, a: float) -> np.ndarray:
    """CDF of Beta(a, a): the incomplete beta function's power series for x <= 1/2, symmetry above."""
    low = np.minimum(x, 1.0 - x)
    terms, coefficient = np.zeros_like(low), 1.0
    for n in range(200):
        terms += coefficient * low ** n / (a + n)
        coefficient *= (n + 1 - a) / (n + 1)
    norm = math.exp(2 * math.lgamma(a) - math.lgamma(2 * a))
    half = low ** a * terms / norm
    return np.where(x <= 0.5, half, 1.0 - half)


def test_size_option_and_unequal_batches():
    batches = {"a": (np.ones((5, 8), np.float32), np.zeros(5, np.int64)),
               "b": (np.zeros((3, 8), np.float32), np.ones(3, np.int64))}
    assert SmashMix(seed=0).mix(batches, 0)[0].x.shape == (3, 8)
    assert SmashMix(size=2, seed=0).mix(batches, 0)[0].x.shape == (2, 8)
    with pytest.raises(SmashMixError, match="exceeds"):
        SmashMix(size=4).mix(batches, 0)


@pytest.mark.parametrize("kwargs, message", [({"alpha": 0.0}, "alpha"), ({"alpha": float("nan")}, "alpha"),
                                             ({"pairs": 0}, "pairs"), ({"size": 0}, "size")])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(SmashMixError, match=message):
        SmashMix(**kwargs)


def test_inconsistent_client_batches_are_refused_and_left_unchanged():
    good = (np.ones((4, 8), np.float32), np.zeros(4, np.int64))
    cases = [({"a": good, "b": (np.ones((4, 9), np.float32), np.zeros(4, np.int64))}, "differ"),
             ({"a": good, "b": (np.ones((4, 8), np.float32), np.zeros(3, np.int64))}, "3 labels for 4"),
             ({"a": good, "b": (np.ones((4, 8), np.int64), np.zeros(4, np.int64))}, "float array"),
             ({"a": good, "b": [np.ones((4, 8), np.float32), np.zeros(4, np.int64)]}, "tuple")]
    for batches, message in cases:
        with pytest.raises(SmashMixError, match=message):
            SmashMix().mix(batches, 0)
    assert np.array_equal(good[0], np.ones((4, 8), np.float32))
