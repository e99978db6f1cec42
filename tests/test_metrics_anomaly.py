"""SIC, max SIC, fixed-eps_B working points and retraining bands against references.

References: two unit Gaussians N(0, 1) (background) and N(mu, 1) (signal), where a cut
``score >= t`` has eps_B = Phi(-t) and eps_S = Phi(mu - t) exactly (scipy.stats.norm);
sklearn's ROC for the curve points; numpy for the statistics of the runs.
"""

from __future__ import annotations

import numpy as np
import pytest

from fivesigma.errors import DataError
from fivesigma.metrics import (
    AnomalyMetricError,
    MetricError,
    max_sic,
    sic_band,
    sic_curve,
    signal_efficiency_at,
    summarise_runs,
)

norm = pytest.importorskip("scipy.stats").norm

MU = 1.0
N_B = 100_000
N_S = 100_000


@pytest.fixture(scope="module")
def gaussians():
    rng = np.random.default_rng(7)
    scores = np.r_[rng.normal(0.0, 1.0, N_B), rng.normal(MU, 1.0, N_S)]
    labels = np.r_[np.zeros(N_B), np.ones(N_S)]
    return scores, labels


def analytic_eps_s(eps_b):
    """eps_S at fixed eps_B for N(0,1) vs N(MU,1): the cut t = Phi^-1(1 - eps_B)."""
    return norm.sf(norm.isf(eps_b) - MU)


def analytic_max_sic(eps_b_min=0.0):
    """max over t of Phi(MU - t)/sqrt(Phi(-t)) subject to eps_B >= eps_b_min (dense grid)."""
    t = np.linspace(-3.0, norm.isf(max(eps_b_min, 1e-12)), 200_001)
    sic = norm.sf(t - MU) / np.sqrt(norm.sf(t))
    i = int(np.argmax(sic))
    return float(sic[i]), float(norm.sf(t[i]))


def test_sic_curve_follows_the_analytic_gaussian_curve(gaussians):
    c = sic_curve(*gaussians)
    assert set(c) == {"eps_s", "eps_b", "sic", "thresholds"}
    assert len({len(v) for v in c.values()}) == 1
    assert np.all(c["eps_b"] > 0)  # eps_B == 0 points are dropped from every array
    assert np.all(np.diff(c["thresholds"]) < 0)
    # Binomial noise on eps_S is <= 0.0016 (n = 1e5): 0.008 is 5 sigma.
    sel = c["eps_b"] >= 1e-2
    np.testing.assert_allclose(c["eps_s"][sel], analytic_eps_s(c["eps_b"][sel]), atol=8e-3)
    # The SIC at the measured eps_B: eps_S noise only, relative <= ~1% where eps_S >= 0.1.
    ref = analytic_eps_s(c["eps_b"][sel]) / np.sqrt(c["eps_b"][sel])
    np.testing.assert_allclose(c["sic"][sel], ref, rtol=0.05)
    np.testing.assert_allclose(c["sic"], c["eps_s"] / np.sqrt(c["eps_b"]))


def test_max_sic_matches_the_analytic_maximum(gaussians):
    best = max_sic(*gaussians)
    ref, ref_eps_b = analytic_max_sic()
    # The optimum sits at eps_B ~ 0.2 (20_000 background events): about 1% noise.
    assert best["max_sic"] == pytest.approx(ref, rel=0.03)
    assert best["eps_b"] == pytest.approx(ref_eps_b, rel=0.5)  # a flat maximum
    assert best["n_background_pass"] >= 25
    assert best["max_sic"] == pytest.approx(best["eps_s"] / np.sqrt(best["eps_b"]))
    scores, labels = gaussians
    passing = scores >= best["threshold"]
    assert best["n_background_pass"] == np.count_nonzero(passing & (labels == 0))
    assert best["eps_s"] == pytest.approx(np.mean(passing[labels == 1]))


def test_max_sic_uncertainty_guard_binds_where_it_should(gaussians):
    # 0.4% relative uncertainty needs N_B >= 62_500, i.e. eps_B >= 0.625 here: the
    # unconstrained optimum (eps_B ~ 0.2) is out of reach, so the best cut sits on the guard.
    best = max_sic(*gaussians, max_rel_uncertainty=0.004)
    assert best["n_background_pass"] == 62_500
    assert best["eps_b"] == pytest.approx(0.625)
    ref, _ = analytic_max_sic(eps_b_min=0.625)
    assert best["max_sic"] == pytest.approx(ref, rel=0.01)
    assert best["max_sic"] < max_sic(*gaussians)["max_sic"]


def test_max_sic_guard_counts_unweighted_background_events():
    # Three background events carry huge weights: eps_B is weighted, the guard is not.
    scores = np.r_[np.arange(100.0), np.arange(100.0) + 50]
    labels = np.r_[np.zeros(100), np.ones(100)]
    weights = np.ones(200)
    weights[97:100] = 1000.0
    weights[10] = -2.0  # negative weights are used in eps_B without trouble
    best = max_sic(scores, labels, weights)
    n_pass = np.count_nonzero((scores >= best["threshold"]) & (labels == 0))
    assert best["n_background_pass"] == n_pass >= 25
    w_b = weights[:100]
    eps_b = w_b[scores[:100] >= best["threshold"]].sum() / w_b.sum()
    assert best["eps_b"] == pytest.approx(eps_b)


def test_max_sic_on_a_small_known_case():
    scores = np.r_[np.linspace(0, 1, 100), np.linspace(0.5, 1.5, 100)]
    labels = np.r_[np.zeros(100), np.ones(100)]
    best = max_sic(scores, labels)
    # Exactly 25 background events pass (eps_B = 0.25) and 75 signal events (eps_S = 0.75).
    assert best == pytest.approx(
        {
            "max_sic": 1.5,
            "eps_s": 0.75,
            "eps_b": 0.25,
            "threshold": 0.5 + 25 / 99,  # the loosest cut keeping 25 background
            "n_background_pass": 25,
        }
    )


def test_signal_efficiency_at_matches_the_analytic_values(gaussians):
    out = signal_efficiency_at(*gaussians, eps_b=(1e-1, 1e-2, 1e-3, 1e-6))
    assert list(out) == [1e-1, 1e-2, 1e-3, 1e-6]
    assert out[1e-1] == pytest.approx(analytic_eps_s(1e-1), rel=0.02)
    assert out[1e-2] == pytest.approx(analytic_eps_s(1e-2), rel=0.06)
    # 100 background events pass at 1e-3: ~10% on eps_B, a few % on eps_S.
    assert out[1e-3] == pytest.approx(analytic_eps_s(1e-3), rel=0.2)
    assert np.isnan(out[1e-6])  # 1e5 background events cannot measure eps_B = 1e-6


def test_signal_efficiency_at_needs_about_one_over_eps_b_background():
    scores = np.r_[np.arange(999.0), np.arange(999.0) + 10]
    labels = np.r_[np.zeros(999), np.ones(999)]
    out = signal_efficiency_at(scores, labels, eps_b=[1e-2, 1e-3])
    assert np.isfinite(out[1e-2]) and np.isnan(out[1e-3])
    out = signal_efficiency_at(np.r_[0.0, scores], np.r_[0, labels], eps_b=1e-3)
    assert np.isfinite(out[1e-3])


def test_sic_curve_agrees_with_sklearn_including_ties_and_weights():
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 3000)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # many tied scores
    weights = rng.uniform(0.2, 2.0, 3000)
    c = sic_curve(scores, labels, weights)
    fpr, tpr, thr = skm.roc_curve(labels, scores, sample_weight=weights, drop_intermediate=False)
    keep = fpr > 0
    np.testing.assert_allclose(c["eps_b"], fpr[keep])
    np.testing.assert_allclose(c["eps_s"], tpr[keep])
    np.testing.assert_allclose(c["thresholds"], thr[keep])


def test_band_of_identical_curves_has_no_width(gaussians):
    curve = sic_curve(*gaussians)
    band = sic_band([curve, curve, curve])
    assert set(band) == {"eps_s", "median", "lo", "hi", "mean", "std", "n"}
    assert band["eps_s"].size == 100
    assert band["eps_s"][0] == pytest.approx(0.01) and band["eps_s"][-1] == pytest.approx(1.0)
    ok = np.isfinite(band["median"])
    assert ok.sum() >= 99
    np.testing.assert_array_equal(band["lo"][ok], band["median"][ok])
    np.testing.assert_array_equal(band["hi"][ok], band["median"][ok])
    np.testing.assert_allclose(band["mean"][ok], band["median"][ok])
    np.testing.assert_allclose(band["std"][ok], 0.0, atol=1e-12)
    assert np.all(band["n"][ok] == 3)
    # At eps_S = 1 the band takes the tightest cut keeping all signal: 1/sqrt(its eps_B).
    first_full = curve["eps_b"][np.argmax(curve["eps_s"] >= 1.0)]
    assert band["median"][-1] == pytest.approx(1.0 / np.sqrt(first_full))


def test_band_percentiles_over_runs_match_numpy():
    es = np.linspace(0.0, 1.0, 11)
    base = 1.0 + es
    curves = [{"eps_s": es, "sic": k * base} for k in (1.0, 2.0, 3.0, 4.0, 5.0)]
    grid = np.array([0.05, 0.5, 0.95])
    band = sic_band(curves, eps_s_grid=grid)
    ks = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    ref = np.interp(grid, es, base)
    np.testing.assert_allclose(band["median"], 3.0 * ref)
    np.testing.assert_allclose(band["lo"], np.percentile(ks, 16) * ref)
    np.testing.assert_allclose(band["hi"], np.percentile(ks, 84) * ref)
    np.testing.assert_allclose(band["std"], np.std(ks, ddof=1) * ref)
    # A curve that stops short of a grid point leaves it out there (n drops to 4).
    short = [*curves[:4], {"eps_s": es[:5], "sic": 5.0 * base[:5]}]
    band = sic_band(short, eps_s_grid=grid)
    assert band["n"].tolist() == [5, 4, 4]
    np.testing.assert_allclose(band["median"][1:], 2.5 * ref[1:])


def test_summarise_runs_matches_numpy():
    vals = [3.1, 4.2, 2.9, 5.0, 3.7]
    out = summarise_runs(vals)
    assert out == pytest.approx(
        {
            "mean": np.mean(vals),
            "std": np.std(vals, ddof=1),
            "median": np.median(vals),
            "min": 2.9,
            "max": 5.0,
            "n": 5,
        }
    )
    assert np.isnan(summarise_runs([2.0])["std"])


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    assert isinstance(err.value, DataError) and isinstance(err.value, MetricError)
    return msg


@pytest.mark.parametrize("fn", [sic_curve, max_sic, signal_efficiency_at])
def test_one_class_only_is_a_one_line_data_error(fn):
    with pytest.raises(AnomalyMetricError) as err:
        fn([0.1, 0.2, 0.3], [0, 0, 0])
    assert "only background" in _one_line(err)


@pytest.mark.parametrize("fn", [sic_curve, max_sic, signal_efficiency_at])
def test_nan_scores_are_counted_in_the_error(fn):
    with pytest.raises(AnomalyMetricError) as err:
        fn([0.1, np.nan, 0.3, np.nan], [0, 1, 0, 1])
    assert "2 NaN" in _one_line(err)


def test_other_bad_inputs_are_one_line_errors():
    scores, labels = np.arange(40.0), np.r_[np.zeros(20), np.ones(20)]
    with pytest.raises(AnomalyMetricError) as err:
        max_sic(scores, labels)  # 20 background events, 25 needed
    assert "20 background" in _one_line(err) and "25" in str(err.value)
    with pytest.raises(AnomalyMetricError) as err:
        max_sic(scores, labels, max_rel_uncertainty=0)
    _one_line(err)
    with pytest.raises(AnomalyMetricError) as err:
        signal_efficiency_at(scores, labels, eps_b=[0.0, 0.1])
    _one_line(err)
    with pytest.raises(AnomalyMetricError) as err:
        sic_curve(scores, labels[:10])
    _one_line(err)
    with pytest.raises(AnomalyMetricError) as err:
        sic_band([])
    _one_line(err)
    with pytest.raises(AnomalyMetricError) as err:
        sic_band([{"eps_s": [0.1, 0.2]}])
    _one_line(err)
    with pytest.raises(AnomalyMetricError) as err:
        summarise_runs([1.0, np.nan])
    assert "1 non-finite" in _one_line(err)
