"""Dijet bump hunt: fit recovery, null and signal toys, closed forms, pyhf, sculpting.

References: histograms sampled (Poisson) from known dijet parameters; Cowan's closed
forms (Z0 and the asymptotic CLs limit of ``fivesigma.stats.asymptotic``, which uses the
same on/off constraint); pyhf's own ``uncorrelated_background`` model; scipy's
``chi2_contingency`` for the nested sculpting chi2.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fivesigma.errors import DataError
from fivesigma.stats import (
    DijetFit,
    asimov_upper_limit,
    bump_hunt,
    dijet_function,
    fit_dijet,
    on_off_significance,
    sculpting,
    signal_event_limits,
)

scipy_stats = pytest.importorskip("scipy.stats")

EDGES = np.linspace(2600.0, 6000.0, 35)  # 100 GeV bins, LHCO-like m_JJ range
CENTRES = 0.5 * (EDGES[1:] + EDGES[:-1])
SR = (3300.0, 3700.0)
SHAPE = (10.0, 5.0, 0.5)  # p1, p2, p3


def expected_counts(n_events: float, p1=SHAPE[0], p2=SHAPE[1], p3=SHAPE[2]):
    """Bin integrals (fine Simpson rule, independent of the fit's quadrature) scaled to n_events."""
    fine = np.linspace(EDGES[0], EDGES[-1], 34 * 200 + 1)
    dens = dijet_function(fine, 1.0, p1, p2, p3)
    h = fine[1] - fine[0]
    per = dens[:-1].reshape(34, 200)
    nxt = dens[1:].reshape(34, 200)
    mid = dijet_function(0.5 * (fine[:-1] + fine[1:]), 1.0, p1, p2, p3).reshape(34, 200)
    mu = (h / 6.0) * (per + 4.0 * mid + nxt).sum(axis=1)
    p0 = n_events / mu.sum()
    return p0 * mu, p0


def events_from_counts(counts):
    """Events at the bin centres: the histogram with EDGES is exactly ``counts``."""
    return np.repeat(CENTRES, counts)


def test_dijet_function_closed_form():
    x = np.array([0.2, 0.3])
    ref = 2.0 * (1 - x) ** 7 / x ** (4 + 0.3 * np.log(x))
    np.testing.assert_allclose(dijet_function(x * 13_000.0, 2.0, 7.0, 4.0, 0.3), ref)
    assert dijet_function(13_000.0, 1.0, 5.0, 5.0, 0.0) == 0.0  # x = 1: outside


@pytest.mark.parametrize("n_params", [3, 4])
def test_fit_recovers_known_parameters(n_params):
    p3 = SHAPE[2] if n_params == 4 else 0.0
    mu, p0 = expected_counts(50_000, p3=p3)
    truth = np.array([p0, SHAPE[0], SHAPE[1], p3])
    rng = np.random.default_rng(11)
    pulls, chi2_ndf = [], []
    for _ in range(20):
        fit = fit_dijet(rng.poisson(mu), EDGES, n_params=n_params)
        assert isinstance(fit, DijetFit) and fit.converged
        assert fit.ndf == 34 - n_params
        err = fit.errors
        # ln p0 is what the fit estimates (p0 itself is far from Gaussian): sigma(ln p0) = err/p0.
        pull = np.r_[
            (math.log(fit.params[0]) - math.log(p0)) / (err[0] / fit.params[0]),
            (fit.params[1:n_params] - truth[1:n_params]) / err[1:n_params],
        ]
        pulls.append(pull)
        chi2_ndf.append(fit.chi2 / fit.ndf)
    pulls = np.array(pulls)
    assert np.all(np.abs(pulls) < 3.5)
    # 20 fits: the mean pull has sd 0.22, the sd of the pulls ~0.16.
    assert np.all(np.abs(pulls.mean(axis=0)) < 0.7)
    assert np.all((pulls.std(axis=0) > 0.6) & (pulls.std(axis=0) < 1.5))
    assert 0.8 < np.mean(chi2_ndf) < 1.2
    if n_params == 3:
        assert fit.params[3] == 0.0 and fit.errors[3] == 0.0
    np.testing.assert_allclose(fit.expected(EDGES).sum(), 50_000, rtol=0.03)


def test_fit_expected_matches_the_integral_and_respects_the_mask():
    mu, _ = expected_counts(20_000)
    counts = np.rint(mu)
    mask = np.ones(34, dtype=bool)
    mask[7:11] = False
    counts_bumped = counts.copy()
    counts_bumped[7:11] += 500.0  # only in the masked bins: the fit must not see it
    a = fit_dijet(counts, EDGES, mask=mask)
    b = fit_dijet(counts_bumped, EDGES, mask=mask)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-6)
    assert a.n_bins_fit == 30
    # The predicted SR bins interpolate the truth (counts are the rounded truth).
    np.testing.assert_allclose(a.expected(EDGES)[7:11], mu[7:11], rtol=0.02)
    # The propagated covariance of the prediction is a proper covariance matrix.
    cov = a.expected_covariance(EDGES)
    assert cov.shape == (34, 34) and np.all(np.diag(cov) > 0)
    np.testing.assert_allclose(cov, cov.T, rtol=1e-10, atol=0)
    assert np.linalg.eigvalsh(cov).min() > -1e-8 * np.diag(cov).max()


def test_simple_poisson_z_is_cowans_closed_form():
    for s, b in [(30.0, 100.0), (5.0, 1.0), (1.0, 1000.0), (200.0, 50.0)]:
        z0 = math.sqrt(2.0 * ((s + b) * math.log(1.0 + s / b) - s))
        assert on_off_significance(s + b, b) == pytest.approx(z0, rel=1e-10)
    assert on_off_significance(80.0, 100.0) < 0  # deficits are negative
    assert on_off_significance(100.0, 100.0, 5.0) == 0.0
    # A tiny uncertainty gives the plain formula back; a larger one lowers Z.
    assert on_off_significance(130.0, 100.0, 1e-6) == pytest.approx(
        on_off_significance(130.0, 100.0), rel=1e-6
    )
    assert on_off_significance(130.0, 100.0, 10.0) < on_off_significance(130.0, 100.0)


def test_significance_with_uncertainty_matches_pyhf_q0():
    pyhf = pytest.importorskip("pyhf")
    for n, b, sigma in [(130.0, 100.0, 10.0), (6500.0, 6364.0, 60.0), (12.0, 4.0, 1.5)]:
        model = pyhf.simplemodels.uncorrelated_background(
            signal=[1.0], bkg=[b], bkg_uncertainty=[sigma]
        )
        data = np.asarray([n, *model.config.auxdata])
        bounds = model.config.suggested_bounds()
        bounds[model.config.poi_index] = [0.0, 10 * n]
        q0 = pyhf.infer.test_statistics.q0(
            0.0, data, model, model.config.suggested_init(), bounds, model.config.suggested_fixed()
        )
        assert on_off_significance(n, b, sigma) == pytest.approx(math.sqrt(float(q0)), rel=2e-3)


@pytest.mark.slow
def test_limits_match_the_closed_form_and_pyhf():
    pyhf = pytest.importorskip("pyhf")
    n, b, sigma = 130.0, 100.0, 10.0
    lim = signal_event_limits(n, b, sigma)
    # Expected: Cowan's exclusion formula with the same on/off constraint.
    ref = asimov_upper_limit([1.0], [b], rel_unc_b=sigma / b)
    assert lim["expected_limit_signal_events"] == pytest.approx(ref["median"], rel=1e-3)
    for key in ("-2", "-1", "+1", "+2"):
        assert lim["expected_limit_band"][key] == pytest.approx(ref["band"][key], rel=1e-3)
    # Observed: pyhf's own model (shapesys) built independently, POI = signal events.
    model = pyhf.simplemodels.uncorrelated_background(
        signal=[1.0], bkg=[b], bkg_uncertainty=[sigma]
    )
    bounds = model.config.suggested_bounds()
    bounds[model.config.poi_index] = [0.0, 1000.0]
    obs, _ = pyhf.infer.intervals.upper_limits.toms748_scan(
        np.asarray([n, *model.config.auxdata]), model, 1.0, 100.0, par_bounds=bounds, rtol=1e-5
    )
    assert lim["observed_limit_signal_events"] == pytest.approx(float(obs), rel=1e-3)
    # Without uncertainty: the closed form for a Poisson count with known background.
    lim0 = signal_event_limits(100.0, 100.0, 0.0)
    ref0 = asimov_upper_limit([1.0], [100.0])
    assert lim0["expected_limit_signal_events"] == pytest.approx(ref0["median"], rel=1e-3)
    assert lim0["observed_limit_signal_events"] == pytest.approx(ref0["median"], rel=1e-2)
    # A huge deficit: CLb underflows, the observed limit is None with a reason, no crash.
    lim_def = signal_event_limits(0.0, 2500.0, 50.0)
    assert lim_def["observed_limit_signal_events"] is None and lim_def["limit_error"]
    assert lim_def["expected_limit_signal_events"] > 0


@pytest.mark.slow
def test_bump_hunt_result_and_limits_on_one_histogram():
    mu, _ = expected_counts(5_000)
    counts = np.random.default_rng(5).poisson(mu)
    res = bump_hunt(events_from_counts(counts), EDGES, SR)
    in_sr = res["sr_bins"]
    assert in_sr.sum() == 4 and res["sr_range"] == (3300.0, 3700.0)
    assert res["n_observed_sr"] == counts[in_sr].sum()
    np.testing.assert_array_equal(res["counts"], counts)
    assert res["n_expected_sr"] == pytest.approx(res["expected"][in_sr].sum())
    assert res["significance"] == pytest.approx(
        on_off_significance(
            res["n_observed_sr"], res["n_expected_sr"], res["background_uncertainty_sr"]
        )
    )
    assert res["p_value"] == pytest.approx(scipy_stats.norm.sf(res["significance"]))
    assert res["fit"]["converged"] and res["fit"]["ndf"] == 30 - 4
    assert 0 < res["expected_limit_signal_events"] < res["n_expected_sr"]
    assert res["expected_limit_band"]["-1"] < res["expected_limit_signal_events"]
    assert res["expected_limit_signal_events"] < res["expected_limit_band"]["+1"]
    ref = signal_event_limits(
        res["n_observed_sr"], res["n_expected_sr"], res["background_uncertainty_sr"]
    )
    assert res["observed_limit_signal_events"] == pytest.approx(ref["observed_limit_signal_events"])


@pytest.mark.slow
def test_null_toys_give_unit_normal_significance():
    # 200 background-only pseudo-experiments (~5 s).  Tolerances: the mean of 200 unit
    # normals has sd 0.07 (|mean| < 0.25 is 3.5 sd), their sd has sd 0.05 (0.8..1.2).
    mu, _ = expected_counts(5_000)
    rng = np.random.default_rng(2024)
    z, z_plain, diff, pred_var = [], [], [], []
    for _ in range(200):
        res = bump_hunt(events_from_counts(rng.poisson(mu)), EDGES, SR, limits=False)
        z.append(res["significance"])
        z_plain.append(res["significance_no_uncertainty"])
        diff.append(res["n_observed_sr"] - res["n_expected_sr"])
        pred_var.append(res["n_expected_sr"] + res["background_uncertainty_sr"] ** 2)
    z = np.array(z)
    assert abs(z.mean()) < 0.25
    assert 0.8 < z.std() < 1.2
    # The fit uncertainty matters: without it the spread is wider than 1.
    assert np.std(z_plain) > z.std()
    # The quoted n - b uncertainty, sqrt(b + sigma_b^2), matches the toys' spread.
    assert np.std(diff) == pytest.approx(math.sqrt(np.mean(pred_var)), rel=0.15)


def test_injected_bump_raises_the_significance():
    mu, _ = expected_counts(5_000)
    rng = np.random.default_rng(8)
    background = events_from_counts(rng.poisson(mu))
    bump = rng.normal(3500.0, 80.0, 600)
    zs = []
    for size in (0, 100, 200, 400, 600):
        res = bump_hunt(np.r_[background, bump[:size]], EDGES, SR, limits=False)
        zs.append(res["significance"])
    assert np.all(np.diff(zs) > 0)
    assert zs[-1] > 5.0
    # Roughly s_SR / sqrt(b + sigma_b^2) for the biggest bump (its SR share ~98%).
    s_sr = np.count_nonzero((bump >= SR[0]) & (bump < SR[1]))
    assert zs[-1] - zs[0] == pytest.approx(
        s_sr / math.sqrt(res["n_expected_sr"] + res["background_uncertainty_sr"] ** 2), rel=0.3
    )


def test_bump_hunt_weights_act_as_counts():
    mu, _ = expected_counts(3_000)
    m = events_from_counts(np.random.default_rng(1).poisson(mu))
    weighted = bump_hunt(m, EDGES, SR, weights=np.full(m.size, 2.0), limits=False)
    doubled = bump_hunt(np.r_[m, m], EDGES, SR, limits=False)
    for key in ("n_observed_sr", "n_expected_sr", "background_uncertainty_sr", "significance"):
        assert weighted[key] == pytest.approx(doubled[key], rel=1e-6)


def test_bump_hunt_bad_inputs_are_one_line_data_errors():
    mu, _ = expected_counts(2_000)
    m = events_from_counts(np.rint(mu).astype(int))
    cases = [
        ((3700.0, 3300.0), "empty"),
        ((3300.0, 3300.0), "empty"),
        ((7000.0, 7500.0), "not inside"),
        ((2000.0, 3000.0), "not inside"),
    ]
    for sr, words in cases:
        with pytest.raises(DataError) as err:
            bump_hunt(m, EDGES, sr, limits=False)
        assert words in str(err.value) and "\n" not in str(err.value)
    few = m[(m > 3000.0) & (m < 3900.0)]  # entries in 9 bins, 4 of them in the SR
    with pytest.raises(DataError) as err:
        bump_hunt(few, EDGES, SR, limits=False)
    assert "5 bin(s) with entries" in str(err.value) and "needs at least 6" in str(err.value)
    with pytest.raises(DataError):
        bump_hunt(np.r_[m, np.nan], EDGES, SR, limits=False)
    with pytest.raises(DataError):
        bump_hunt(m, np.linspace(2600.0, 14_000.0, 20), SR, limits=False)
    with pytest.raises(DataError):
        fit_dijet(np.ones(34), EDGES, n_params=5)
    with pytest.raises(DataError):
        fit_dijet(np.ones(10), EDGES)


def _falling_mjj(rng, n):
    return 2600.0 + rng.exponential(500.0, n)


def test_sculpting_identical_shapes_give_uniform_p_values():
    rng = np.random.default_rng(3)
    edges = np.linspace(2600.0, 4600.0, 21)
    p, p_ks = [], []
    for _ in range(60):
        before = _falling_mjj(rng, 8_000)
        after = before[rng.random(before.size) < 0.3]  # a cut independent of m_JJ
        res = sculpting(before, after, edges)
        p.append(res["p_value"])
        p_ks.append(res["ks_p_value"])
    # Uniform p-values: mean 0.5 with sd 0.037 over 60 toys.
    assert abs(np.mean(p) - 0.5) < 0.12
    assert abs(np.mean(p_ks) - 0.5) < 0.12
    assert res["ndf"] == 19 and res["nested"]
    assert np.nanmean(res["ratio"]) == pytest.approx(1.0, abs=0.1)


def test_sculpting_nested_chi2_is_the_contingency_table_chi2():
    rng = np.random.default_rng(4)
    edges = np.linspace(2600.0, 4600.0, 11)
    before = _falling_mjj(rng, 5_000)
    before = before[before < edges[-1]]
    after = before[rng.random(before.size) < 0.4]
    res = sculpting(before, after, edges)
    a = np.histogram(after, edges)[0]
    b = np.histogram(before, edges)[0]
    ref = scipy_stats.chi2_contingency(np.vstack([a, b - a]), correction=False)
    assert res["chi2"] == pytest.approx(ref.statistic, rel=1e-10)
    assert res["ndf"] == ref.dof
    assert res["p_value"] == pytest.approx(ref.pvalue, rel=1e-8)
    rejected = np.sort(np.setdiff1d(before, after))
    ks = scipy_stats.ks_2samp(after, rejected)
    assert res["ks_statistic"] == pytest.approx(ks.statistic)


def test_sculpting_independent_samples():
    rng = np.random.default_rng(6)
    edges = np.linspace(2600.0, 4600.0, 21)
    p = [
        sculpting(_falling_mjj(rng, 6_000), _falling_mjj(rng, 3_000), edges, nested=False)[
            "p_value"
        ]
        for _ in range(60)
    ]
    assert abs(np.mean(p) - 0.5) < 0.12
    with pytest.raises(DataError) as err:
        sculpting(_falling_mjj(rng, 3_000), _falling_mjj(rng, 3_000), edges)
    assert "nested=False" in str(err.value) and "\n" not in str(err.value)


def test_sculpting_detects_a_cut_correlated_with_mjj():
    rng = np.random.default_rng(9)
    edges = np.linspace(2600.0, 4600.0, 21)
    before = _falling_mjj(rng, 20_000)
    # Pass probability rising with m_JJ: the after-cut spectrum is harder.
    keep = rng.random(before.size) < np.clip(0.1 + (before - 2600.0) / 4000.0, 0, 1)
    res = sculpting(
        before,
        before[keep],
        edges,
        weights_before=np.full(before.size, 0.5),
        weights_after=np.full(keep.sum(), 0.5),
    )
    assert res["p_value"] < 1e-10 and res["ks_p_value"] < 1e-10
    assert res["ratio"][-1] > 1.5 > 0.8 > res["ratio"][0]
