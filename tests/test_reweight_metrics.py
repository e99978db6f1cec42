"""Reweighting closure metrics against closed forms and scipy."""

from __future__ import annotations

import numpy as np
import pytest

from fivesigma.metrics import MetricError
from fivesigma.metrics import reweighting as rw


def test_effective_sample_size_closed_form():
    assert rw.effective_sample_size(np.ones(50)) == pytest.approx(50)
    # half the events with weight 3: (25 + 75)^2 / (25 + 225)
    w = np.r_[np.ones(25), 3 * np.ones(25)]
    assert rw.effective_sample_size(w) == pytest.approx(100**2 / 250)
    with pytest.raises(MetricError):
        rw.effective_sample_size([1.0, np.inf])


def test_chi2_equals_the_contingency_table_statistic_for_equal_sizes():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=4000), rng.normal(0.1, 1.0, size=4000)
    edges = np.r_[-np.inf, np.linspace(-2, 2, 9), np.inf]
    got = rw.chi2_ndf(a, b, edges=edges)
    ha = np.histogram(a, edges)[0]
    hb = np.histogram(b, edges)[0]
    want = stats.chi2_contingency(np.vstack([ha, hb]), correction=False)
    assert got["chi2"] == pytest.approx(want.statistic, rel=1e-10)
    assert got["ndf"] == want.dof


def test_chi2_ndf_is_about_one_under_the_null_with_weights():
    rng = np.random.default_rng(1)
    values = []
    for _ in range(30):
        a, b = rng.exponential(size=3000), rng.exponential(size=2000)
        w = rng.uniform(0.2, 1.8, size=3000)
        values.append(rw.chi2_ndf(a, b, w, None, edges=15)["chi2_ndf"])
    assert 0.8 < np.mean(values) < 1.2
    # a real difference is seen
    assert rw.chi2_ndf(rng.exponential(size=3000), rng.exponential(1.3, size=3000))["chi2_ndf"] > 3


def test_exact_likelihood_ratio_weights_close_a_gaussian_shift():
    rng = np.random.default_rng(2)
    src, tgt = rng.normal(size=20_000), rng.normal(0.5, 1.0, size=20_000)
    w = np.exp(0.5 * src - 0.125)  # N(0.5, 1) / N(0, 1)
    before = rw.closure({"x": src}, {"x": tgt})["x"]
    after = rw.closure({"x": src}, {"x": tgt}, w)["x"]
    assert before["chi2_ndf"] > 20 and after["chi2_ndf"] < 2
    assert after["ks"] < before["ks"] / 5
    # the classifier form: p = r / (1 + r) gives back r
    p = w / (1 + w)
    np.testing.assert_allclose(rw.classifier_weights(p), w, rtol=1e-6)


def test_integer_feature_gets_one_bin_per_value():
    x = np.repeat(np.arange(10.0), 100)
    edges = rw.quantile_edges(x, 50)
    assert edges.size == 11  # ten bins, one per distinct value
    assert np.all(np.isin(edges[1:-1], np.arange(9) + 0.5))


def test_clipping_is_reported():
    w, info = rw.clip_weights([1.0, 1.0, 8.0, np.inf], max_weight=4.0)
    assert w.tolist() == [1.0, 1.0, 4.0, 4.0]
    assert info["n_clipped"] == 2 and info["n_nonfinite"] == 1
    assert info["weight_fraction_removed"] == pytest.approx(4.0 / 10.0)
    w, info = rw.clip_weights(np.arange(1.0, 101.0), quantile=0.9)
    assert info["n_clipped"] == 10 and w.max() == pytest.approx(
        np.quantile(np.arange(1.0, 101.0), 0.9)
    )
    with pytest.raises(MetricError):
        rw.clip_weights([1.0, np.nan])


def test_reliability_of_calibrated_and_overconfident_probabilities():
    rng = np.random.default_rng(3)
    p = rng.uniform(size=50_000)
    y = rng.uniform(size=p.size) < p  # calibrated by construction
    good = rw.reliability_curve(p, y)
    assert good["ece"] < 0.01
    sharp = np.clip(0.5 + 2 * (p - 0.5), 0, 1)  # over-confident
    assert rw.reliability_curve(sharp, y)["ece"] > 0.1
