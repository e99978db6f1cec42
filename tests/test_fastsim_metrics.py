"""fivesigma.metrics.generative against closed forms and scipy/numpy references."""

from __future__ import annotations

import numpy as np
import pytest

from fivesigma.errors import DataError
from fivesigma.metrics import generative as gm


def test_w1_of_a_shift_is_the_shift() -> None:
    x = np.random.default_rng(0).normal(size=5000)
    assert gm.wasserstein_1(x, x + 0.3) == pytest.approx(0.3, abs=1e-9)


def test_w1_matches_scipy_with_weights() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    a, b, w = rng.normal(size=300), rng.exponential(size=200), rng.random(200)
    assert gm.wasserstein_1(a, b, None, w) == pytest.approx(
        stats.wasserstein_distance(a, b, None, w)
    )
    table = gm.wasserstein_table(np.c_[a[:200], b], np.c_[a[:200] + 1.0, b], ["a", "b"])
    assert table["a"]["w1"] == pytest.approx(1.0)
    assert table["a"]["w1_over_std"] == pytest.approx(1.0 / a[:200].std())
    assert table["b"]["w1"] == pytest.approx(0.0)


def test_correlation_difference_matches_numpy() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(size=(1000, 3))
    a[:, 1] += a[:, 0]
    b = rng.normal(size=(1000, 3))
    out = gm.correlation_difference(a, b)
    np.testing.assert_allclose(out["reference"], np.corrcoef(a.T), atol=1e-12)
    np.testing.assert_allclose(out["difference"], np.corrcoef(b.T) - np.corrcoef(a.T), atol=1e-12)
    off = ~np.eye(3, dtype=bool)
    assert out["max_abs_difference"] == pytest.approx(np.abs(out["difference"][off]).max())


def test_histogram_ratio() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=20000)
    h = gm.histogram_ratio(a, a, bins=10, range=(-2, 2))
    np.testing.assert_allclose(h["ratio"], 1.0)
    # unit area over all events: the area inside the range is the fraction inside it
    inside = np.mean((a >= -2) & (a <= 2))
    assert np.sum(h["reference"] * np.diff(h["edges"])) == pytest.approx(inside, rel=1e-9)
    # doubling the weights of the other sample leaves a unit-area ratio at 1
    h2 = gm.histogram_ratio(a, a, bins=10, range=(-2, 2), other_weight=np.full(a.size, 2.0))
    np.testing.assert_allclose(h2["ratio"], 1.0)


def test_response_profile() -> None:
    gen = np.array([10.0, 10.0, 30.0, 30.0])
    reco = np.array([9.0, 11.0, 27.0, 27.0])
    r = gm.response_profile(gen, reco, [0.0, 20.0, 40.0])
    np.testing.assert_allclose(r["mean"], [1.0, 0.9])
    np.testing.assert_allclose(r["std"], [0.1, 0.0])
    np.testing.assert_array_equal(r["count"], [2, 2])


def test_oversampling_gain_limits() -> None:
    rng = np.random.default_rng(4)
    edges = np.linspace(-3, 3, 13)
    # draws independent of the object: N draws are worth N objects
    free = rng.normal(size=(4000, 8))
    assert gm.oversampling_gain(free, edges, n_boot=150)["median_gain"] == pytest.approx(
        8, rel=0.25
    )
    # draws fixed by the object: no gain at all
    fixed = np.repeat(rng.normal(size=(4000, 1)), 8, axis=1)
    assert gm.oversampling_gain(fixed, edges, n_boot=150)["median_gain"] == pytest.approx(
        1.0, rel=0.05
    )


def test_bad_input() -> None:
    with pytest.raises(DataError, match="non-finite"):
        gm.wasserstein_1([1.0, np.nan], [1.0])
    with pytest.raises(DataError, match="empty"):
        gm.wasserstein_1([], [1.0])
    with pytest.raises(DataError, match="feature counts"):
        gm.correlation_difference(np.ones((5, 2)), np.ones((5, 3)))
    with pytest.raises(DataError):
        gm.oversampling_gain(np.ones(5), [0, 1])
