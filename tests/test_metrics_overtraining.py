"""KS test and TMVA separation, checked against scipy and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ks_2samp, norm

from fivesigma.metrics import MetricError, ks_test, separation


@pytest.mark.parametrize(("n1", "n2", "round_to"), [(300, 500, None), (1000, 137, 1), (64, 64, 0)])
def test_unweighted_ks_equals_scipy_asymp(n1, n2, round_to):
    rng = np.random.default_rng(n1 + n2)
    a = rng.normal(0.0, 1.0, n1)
    b = rng.normal(0.15, 1.1, n2)
    if round_to is not None:  # ties within and across samples
        a, b = np.round(a, round_to), np.round(b, round_to)
    ref = ks_2samp(a, b, method="asymp")
    d, p = ks_test(a, b)
    assert d == ref.statistic
    assert p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)


def test_unit_weights_equal_unweighted():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=400), rng.normal(0.1, 1.0, 250)
    assert ks_test(a, b, np.ones(a.size), np.ones(b.size)) == ks_test(a, b)


def test_integer_weights_equal_repeated_events_statistic():
    rng = np.random.default_rng(2)
    a, b = np.round(rng.normal(size=300), 1), np.round(rng.normal(0.2, 1, 200), 1)
    ka, kb = rng.integers(1, 5, a.size), rng.integers(1, 5, b.size)
    d_w, _ = ks_test(a, b, ka, kb)
    d_rep, _ = ks_test(np.repeat(a, ka), np.repeat(b, kb))
    assert d_w == pytest.approx(d_rep, abs=1e-12)
    assert d_rep == pytest.approx(ks_2samp(np.repeat(a, ka), np.repeat(b, kb)).statistic, abs=1e-12)


def test_identical_distributions_give_uniform_ish_pvalues_and_shifts_give_zero():
    rng = np.random.default_rng(3)
    p_same = [ks_test(rng.normal(size=400), rng.normal(size=300))[1] for _ in range(100)]
    assert 0.35 < np.mean(p_same) < 0.65  # uniform p has mean 1/2
    assert np.mean(np.asarray(p_same) < 0.05) < 0.15
    _, p_shift = ks_test(rng.normal(size=1000), rng.normal(0.5, 1.0, 800))
    assert p_shift < 1e-6


def test_weighted_pvalue_is_calibrated_with_effective_sample_size():
    # Test sample drawn from N(0, 1.5) and reweighted to N(0, 1): same distribution as the
    # training sample, so p must be uniform-ish; n_eff < n keeps it from being too small.
    rng = np.random.default_rng(4)
    pvals = []
    for _ in range(100):
        a = rng.normal(size=500)
        b = rng.normal(0.0, 1.5, 500)
        wb = norm.pdf(b) / norm.pdf(b, scale=1.5)
        pvals.append(ks_test(a, b, None, wb)[1])
    assert 0.3 < np.mean(pvals) < 0.7
    assert np.mean(np.asarray(pvals) < 0.05) < 0.15
    b = rng.normal(0.0, 1.5, 2000)
    wb = norm.pdf(b, loc=0.4) / norm.pdf(b, scale=1.5)  # reweighted to a shifted N(0.4, 1)
    assert ks_test(rng.normal(size=2000), b, None, wb)[1] < 1e-6


def test_negative_weights_do_not_crash():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=300), rng.normal(size=300)
    wa = np.where(rng.random(300) < 0.15, -1.0, 1.0)
    d, p = ks_test(a, b, wa, None)
    assert np.isfinite(d) and d >= 0 and 0.0 <= p <= 1.0


def test_ks_errors():
    with pytest.raises(MetricError, match="1 NaN"):
        ks_test([0.1, np.nan], [0.2, 0.3])
    with pytest.raises(MetricError, match="empty"):
        ks_test([], [0.2, 0.3])
    with pytest.raises(MetricError, match="positive total weight"):
        ks_test([0.1, 0.2], [0.2, 0.3], [1.0, -1.0])
    with pytest.raises(MetricError, match="one weight per event"):
        ks_test([0.1, 0.2], [0.2, 0.3], [1.0])


def test_separation_identical_is_zero_and_disjoint_is_one():
    rng = np.random.default_rng(6)
    x = rng.uniform(size=1000)
    assert separation(x, x) == 0.0
    s, b = rng.uniform(0.6, 1.0, 500), rng.uniform(0.0, 0.4, 800)
    assert separation(s, b, bins=40, range=(0.0, 1.0)) == pytest.approx(1.0, abs=1e-12)
    assert separation(s, b) == pytest.approx(1.0, abs=1e-12)  # default range


def _gauss_bin_probs(edges, mu, sigma):
    p = np.diff(norm.cdf(edges, mu, sigma))
    return p / p.sum()  # normalised inside the histogram range, as TMVA does


def test_separation_closed_form_two_gaussians_exact_via_weights():
    # Put one event per bin centre, weighted by the Gaussian bin integral: the weighted
    # histograms are then exactly the normalised bin probabilities.
    edges = np.linspace(-4.0, 5.0, 41)
    centres = 0.5 * (edges[1:] + edges[:-1])
    ps, pb = _gauss_bin_probs(edges, 1.0, 1.0), _gauss_bin_probs(edges, 0.0, 1.2)
    expected = 0.5 * np.sum((ps - pb) ** 2 / (ps + pb))
    got = separation(centres, centres, ps, pb, bins=40, range=(-4.0, 5.0))
    assert got == pytest.approx(expected, rel=1e-12)
    # Overall normalisation of the weights must not matter.
    assert separation(centres, centres, 7 * ps, 0.1 * pb, bins=40, range=(-4.0, 5.0)) == (
        pytest.approx(expected, rel=1e-12)
    )


def test_separation_closed_form_two_gaussians_sampled():
    rng = np.random.default_rng(7)
    edges = np.linspace(-4.0, 5.0, 41)
    ps, pb = _gauss_bin_probs(edges, 1.0, 1.0), _gauss_bin_probs(edges, 0.0, 1.2)
    expected = 0.5 * np.sum((ps - pb) ** 2 / (ps + pb))
    s, b = rng.normal(1.0, 1.0, 300_000), rng.normal(0.0, 1.2, 300_000)
    got = separation(s, b, bins=40, range=(-4.0, 5.0))
    assert got == pytest.approx(expected, abs=3e-3)
    assert separation(b, s, bins=40, range=(-4.0, 5.0)) == pytest.approx(got, rel=1e-12)


def test_separation_with_negative_weights_is_finite():
    rng = np.random.default_rng(8)
    s, b = rng.normal(1, 1, 500), rng.normal(0, 1, 500)
    ws = np.where(rng.random(500) < 0.2, -1.0, 1.0)
    val = separation(s, b, ws, None)
    assert np.isfinite(val) and val >= 0


def test_separation_errors():
    with pytest.raises(MetricError, match="high > low"):
        separation([0.1], [0.2], range=(1.0, 0.0))
    with pytest.raises(MetricError, match="signal histogram has total weight"):
        separation([5.0], [0.2], range=(0.0, 1.0))
    with pytest.raises(MetricError, match="NaN"):
        separation([np.nan], [0.2])
