"""Asimov significance, cut scans and SIC, checked against limits, a numerical profile
likelihood (scipy.optimize), brute-force loops and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from sklearn.metrics import roc_curve as sk_roc_curve

from fivesigma.metrics import CutScan, MetricError, asimov_z, cut_scan, sic


def _profile_likelihood_z(s: float, b: float, rel_unc: float) -> float:
    """Z from -2 ln lambda(0) on Asimov data of n ~ Pois(mu s + beta), m ~ Pois(tau beta).

    tau = b / sigma^2 encodes the background uncertainty sigma = rel_unc * b as an
    auxiliary measurement; the nuisance beta is profiled numerically under mu = 0.
    """
    tau = b / (rel_unc * b) ** 2
    n, m = s + b, tau * b  # Asimov data set

    def nll(mu: float, beta: float) -> float:
        lam = mu * s + beta
        return -(n * math.log(lam) - lam + m * math.log(tau * beta) - tau * beta)

    free = nll(1.0, b)  # global maximum for Asimov data is at mu = 1, beta = b
    res = minimize_scalar(
        lambda beta: nll(0.0, beta),
        bounds=(1e-9 * b, 10 * (s + b)),
        method="bounded",
        options={"xatol": 1e-12 * b},
    )
    return math.sqrt(max(2.0 * (res.fun - free), 0.0))


@pytest.mark.parametrize(
    ("s", "b", "rel"),
    [
        (10.0, 100.0, 0.1),
        (5.0, 20.0, 0.3),
        (50.0, 1000.0, 0.02),
        (3.0, 0.5, 0.5),
        (200.0, 50.0, 0.05),
    ],
)
def test_cowan_formula_matches_numerical_profile_likelihood(s, b, rel):
    assert asimov_z(s, b, rel_unc_b=rel) == pytest.approx(
        _profile_likelihood_z(s, b, rel), rel=1e-5
    )


@pytest.mark.parametrize(("s", "b"), [(10.0, 100.0), (3.0, 0.5), (1000.0, 10.0)])
def test_plain_asimov_matches_poisson_likelihood_ratio(s, b):
    n = s + b  # Asimov: q0 = 2 [ln Pois(n | s+b) - ln Pois(n | b)]
    q0 = 2.0 * ((n * math.log(s + b) - (s + b)) - (n * math.log(b) - b))
    assert asimov_z(s, b) == pytest.approx(math.sqrt(q0), rel=1e-12)


def test_small_signal_limit_is_s_over_sqrt_b():
    for s, b in [(1.0, 1e6), (0.5, 1e4), (10.0, 1e8)]:
        assert asimov_z(s, b) == pytest.approx(s / math.sqrt(b), rel=2e-3)


def test_zero_uncertainty_limit_equals_plain_formula():
    s = np.array([1.0, 10.0, 30.0, 200.0])
    b = np.array([5.0, 100.0, 10.0, 50.0])
    np.testing.assert_allclose(asimov_z(s, b, 1e-6), asimov_z(s, b), rtol=1e-5)
    np.testing.assert_array_equal(asimov_z(s, b, 0.0), asimov_z(s, b))


def test_uncertainty_lowers_z_and_more_signal_raises_it():
    zs = asimov_z(10.0, 100.0, np.array([0.0, 0.05, 0.1, 0.3]))
    assert np.all(np.diff(zs) < 0)
    assert np.all(np.diff(asimov_z(np.array([1.0, 5.0, 20.0]), 50.0)) > 0)


def test_vectorised_broadcasting_and_invalid_inputs():
    s = np.array([[1.0], [10.0]])
    b = np.array([5.0, 50.0, 0.0, -1.0])
    z = asimov_z(s, b, 0.2)
    assert z.shape == (2, 4)
    for i in range(2):
        for j in range(2):
            assert z[i, j] == pytest.approx(asimov_z(float(s[i, 0]), float(b[j]), 0.2), rel=1e-12)
    assert np.all(np.isnan(z[:, 2:]))  # b <= 0 -> nan, documented
    assert isinstance(asimov_z(1.0, 4.0), float)
    assert math.isnan(asimov_z(1.0, 0.0))
    assert math.isnan(asimov_z(-5.0, 4.0))  # s + b < 0
    assert asimov_z(-1.0, 100.0) == pytest.approx(-asimov_z(1.0, 100.0), rel=0.02)  # deficit < 0


def _toy(seed: int = 0, n_sig: int = 400, n_bkg: int = 3000, negative: bool = False):
    rng = np.random.default_rng(seed)
    score = np.r_[rng.beta(5, 2, n_sig), rng.beta(2, 5, n_bkg)]
    y = np.r_[np.ones(n_sig, int), np.zeros(n_bkg, int)]
    w = np.r_[rng.uniform(0.001, 0.01, n_sig), rng.uniform(0.5, 2.0, n_bkg)]
    if negative:
        w = w * np.where(rng.random(w.size) < 0.1, -1.0, 1.0)
    return y, score, w


@pytest.mark.parametrize("negative", [False, True])
def test_cut_scan_matches_brute_force_loop(negative):
    y, score, w = _toy(1, negative=negative)
    scale, rel = 1 / 0.3, 0.15
    scan = cut_scan(y, score, w, n_thresholds=50, rel_unc_b=rel, scale=scale)
    assert isinstance(scan, CutScan)
    assert scan.thresholds.size <= 50 and np.all(np.diff(scan.thresholds) > 0)
    for i, t in enumerate(scan.thresholds):
        s_ref = scale * sum(
            wi for yi, si, wi in zip(y, score, w, strict=True) if yi == 1 and si >= t
        )
        b_ref = scale * sum(
            wi for yi, si, wi in zip(y, score, w, strict=True) if yi == 0 and si >= t
        )
        assert scan.s[i] == pytest.approx(s_ref, rel=1e-9, abs=1e-12)
        assert scan.b[i] == pytest.approx(b_ref, rel=1e-9, abs=1e-12)
        if b_ref > 0:
            z_ref = math.sqrt(2 * ((s_ref + b_ref) * math.log(1 + s_ref / b_ref) - s_ref))
            assert scan.z_asimov[i] == pytest.approx(math.copysign(z_ref, s_ref), rel=1e-9)
            assert scan.s_over_sqrt_b[i] == pytest.approx(s_ref / math.sqrt(b_ref), rel=1e-9)
            assert scan.z_asimov_unc[i] == pytest.approx(asimov_z(s_ref, b_ref, rel), rel=1e-9)
    # The first threshold is the minimum score: nothing is cut away.
    assert scan.s[0] == pytest.approx(scale * w[y == 1].sum())
    assert scan.b[0] == pytest.approx(scale * w[y == 0].sum())
    ok = scan.b >= 1e-3 * scan.b.max()
    assert scan.best.index == int(np.flatnonzero(ok)[np.nanargmax(scan.z_asimov_unc[ok])])
    assert scan.best.threshold == scan.thresholds[scan.best.index]
    assert scan.best.z == scan.z_asimov_unc[scan.best.index]


def test_cut_scan_min_b_guard_skips_a_nearly_background_free_fluke():
    # One lone background event with tiny weight at the very top gives a huge Z there.
    y = np.r_[np.ones(50, int), np.zeros(1001, int)]
    score = np.r_[np.full(50, 0.95), np.linspace(0.0, 0.5, 1000), 0.99]
    w = np.r_[np.full(50, 1.0), np.full(1000, 1.0), 1e-6]
    thr = [0.0, 0.4, 0.9, 0.99]
    guarded = cut_scan(y, score, w, thresholds=thr)
    assert guarded.best.threshold == 0.4  # b at 0.9 is 1e-6 < 1e-3 * max(b)
    unguarded = cut_scan(y, score, w, thresholds=thr, min_b=0.0)
    assert unguarded.best.threshold == 0.9
    with pytest.raises(MetricError, match="min_b"):
        cut_scan(y, score, w, thresholds=thr, min_b=1e9)


def test_cut_scan_scale_multiplies_yields():
    y, score, w = _toy(2)
    a = cut_scan(y, score, w, n_thresholds=30)
    b = cut_scan(y, score, w, n_thresholds=30, scale=4.0)
    np.testing.assert_allclose(b.s, 4 * a.s)
    np.testing.assert_allclose(b.b, 4 * a.b)
    np.testing.assert_allclose(b.s_over_sqrt_b, 2 * a.s_over_sqrt_b)
    with pytest.raises(MetricError, match="scale"):
        cut_scan(y, score, w, scale=0.0)


def test_cut_scan_validation():
    with pytest.raises(MetricError, match="only signal"):
        cut_scan([1, 1], [0.2, 0.3])
    with pytest.raises(MetricError, match="NaN"):
        cut_scan([0, 1], [np.nan, 0.3])
    with pytest.raises(MetricError, match="rel_unc_b"):
        cut_scan([0, 1], [0.2, 0.3], rel_unc_b=-0.1)


def test_sic_equals_eff_s_over_sqrt_eff_b_from_sklearn():
    y, score, w = _toy(3)
    eff_s, value, _ = sic(y, score, w)
    fpr, tpr, _ = sk_roc_curve(y, score, sample_weight=w, drop_intermediate=False)
    np.testing.assert_allclose(eff_s, tpr, atol=1e-12)
    pos = fpr > 0
    np.testing.assert_allclose(value[pos], tpr[pos] / np.sqrt(fpr[pos]), rtol=1e-9)
    assert np.all(np.isnan(value[~pos]))
    assert value[-1] == pytest.approx(1.0)


def test_sic_with_negative_weights_never_takes_sqrt_of_negative():
    y, score, w = _toy(4, negative=True)
    with np.errstate(all="raise"):
        _, value, _ = sic(y, score, w)
    assert np.all(np.isnan(value) | np.isfinite(value))
