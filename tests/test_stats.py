"""Tests of fivesigma.stats against closed forms (Cowan et al., arXiv:1007.1727) and numpy."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

pyhf = pytest.importorskip("pyhf")

from fivesigma.errors import FivesigmaError  # noqa: E402
from fivesigma.stats import (  # noqa: E402
    StatsError,
    StatsResult,
    build_workspace,
    expected_significance,
    expected_upper_limit,
    histogram_inputs,
    merge_bins,
    optimise_binning,
    run_stats,
    save_workspace,
)


def z_asimov(s: float, b: float) -> float:
    """Median discovery significance of one Poisson bin, known b (arXiv:1007.1727 eq. 97)."""
    return math.sqrt(2.0 * ((s + b) * math.log(1.0 + s / b) - s))


def q_mu_asimov(mu: float, s: float, b: float) -> float:
    """q_mu on background-only Asimov data (n = b) for one Poisson bin, known b."""
    return 2.0 * (mu * s - b * math.log1p(mu * s / b))


def cls_quantile(n_sigma: float, alpha: float = 0.05) -> float:
    """Phi^-1(1 - alpha Phi(N)) + N: the ±Nσ expected CLs limit in units of sigma_mu."""
    return norm.ppf(1.0 - alpha * norm.cdf(n_sigma)) + n_sigma


# --- one-bin closed forms ---------------------------------------------------------------


@pytest.mark.parametrize(("s", "b"), [(5.0, 10.0), (20.0, 100.0), (3.0, 1.0), (0.5, 200.0)])
def test_one_bin_discovery_significance_equals_asimov_formula(s, b):
    spec = build_workspace([s], [b], bkg_norm_unc=0.0)
    assert expected_significance(spec) == pytest.approx(z_asimov(s, b), rel=1e-3)


def test_one_bin_expected_limit_matches_gaussian_asymptotics_for_large_b():
    s, b = 10.0, 10_000.0
    sigma = math.sqrt(b) / s
    res = expected_upper_limit(build_workspace([s], [b], bkg_norm_unc=0.0))
    # median: mu_up = sigma * Phi^-1(1 - alpha/2) ≈ 1.96 sigma
    assert res["median"] == pytest.approx(sigma * norm.ppf(1 - 0.025), rel=0.03)
    for key, n_sigma in [("-2", -2), ("-1", -1), ("+1", 1), ("+2", 2)]:
        assert res["band"][key] == pytest.approx(sigma * cls_quantile(n_sigma), rel=0.03), key


@pytest.mark.parametrize(("s", "b"), [(10.0, 10_000.0), (5.0, 20.0)])
def test_one_bin_expected_limit_matches_poisson_asimov_closed_form(s, b):
    # Exact asymptotic answer without the s << b approximation: the ±Nσ limit solves
    # sqrt(q_mu,A(mu)) = Phi^-1(1 - alpha Phi(N)) + N with the Poisson q_mu,A.
    res = expected_upper_limit(build_workspace([s], [b], bkg_norm_unc=0.0), rtol=1e-4)
    got = {"0": res["median"], **res["band"]}
    for key, n_sigma in [("-2", -2), ("-1", -1), ("0", 0), ("+1", 1), ("+2", 2)]:
        target = cls_quantile(n_sigma)
        ref = brentq(lambda mu, t=target: math.sqrt(q_mu_asimov(mu, s, b)) - t, 1e-9, 1e4)
        assert got[key] == pytest.approx(ref, rel=2e-3), key


def test_expected_limit_band_is_ordered_and_inside_the_scan():
    spec = build_workspace([5.0, 12.0], [80.0, 15.0], [4.0, 2.0], bkg_norm_unc=0.05)
    res = expected_upper_limit(spec, return_scan=True)
    values = [
        res["band"]["-2"],
        res["band"]["-1"],
        res["median"],
        res["band"]["+1"],
        res["band"]["+2"],
    ]
    assert all(np.diff(values) > 0)
    mus = res["scan"]["mu"]
    assert min(mus) < values[0] and values[-1] < max(mus)
    # CLs(median) = 0.05 by construction: the expected CLs at the scanned points straddle it.
    cls_median = np.array([row[2] for row in res["scan"]["cls_expected"]])
    assert cls_median.max() > 0.05 > cls_median.min()


def test_tiny_signal_gives_a_limit_far_above_the_default_poi_bound():
    # sigma_mu = sqrt(1e4)/0.5 = 200: the limit (~392) lies far above pyhf's default mu <= 10.
    res = expected_upper_limit(build_workspace([0.5], [10_000.0], bkg_norm_unc=0.0))
    assert res["median"] == pytest.approx(200.0 * 1.96, rel=0.03)


# --- multi-bin behaviour ----------------------------------------------------------------


def test_two_bins_combine_to_larger_significance_in_quadrature():
    s, b = [4.0, 9.0], [50.0, 20.0]
    z1 = expected_significance(build_workspace(s[:1], b[:1], bkg_norm_unc=0.0))
    z2 = expected_significance(build_workspace(s[1:], b[1:], bkg_norm_unc=0.0))
    z12 = expected_significance(build_workspace(s, b, bkg_norm_unc=0.0))
    assert z12 > max(z1, z2)
    # independent bins, on Asimov data mu_hat = 1 exactly: q0 adds bin by bin
    assert z12 == pytest.approx(math.hypot(z_asimov(4, 50), z_asimov(9, 20)), rel=1e-3)


def test_background_uncertainties_lower_significance_and_raise_limit():
    s, b, b_unc = [4.0, 9.0], [50.0, 20.0], [5.0, 4.0]
    z0 = expected_significance(build_workspace(s, b, bkg_norm_unc=0.0))
    z_norm = expected_significance(build_workspace(s, b, bkg_norm_unc=0.2))
    z_norm_mc = expected_significance(build_workspace(s, b, b_unc, bkg_norm_unc=0.2))
    assert z_norm < z0
    assert z_norm_mc < z_norm
    lim0 = expected_upper_limit(build_workspace(s, b, bkg_norm_unc=0.0), rtol=1e-2)["median"]
    lim = expected_upper_limit(build_workspace(s, b, b_unc, bkg_norm_unc=0.2), rtol=1e-2)
    assert lim["median"] > lim0


# --- workspace --------------------------------------------------------------------------


def test_workspace_validates_and_round_trips_through_pyhf(tmp_path):
    s, b = [1.0, 3.0, 6.0], [40.0, 10.0, 2.0]
    spec = build_workspace(s, b, [2.0, 1.0, 0.5], [0.1, 0.2, 0.3], bkg_norm_unc=0.1, name="demo")
    pyhf.schema.validate(spec, "workspace.json")
    ws = pyhf.Workspace(spec)
    model = ws.model()
    assert model.config.poi_name == "mu"
    assert set(model.config.parameters) == {"mu", "mc_stat", "bkg_norm"}
    assert model.config.channels == ["score"]
    assert model.config.samples == ["background", "signal"]
    # the observations are the background-only Asimov data
    np.testing.assert_allclose(ws.data(model, include_auxdata=False), b)
    pars = model.config.suggested_init()
    pars[model.config.poi_index] = 2.0
    np.testing.assert_allclose(model.expected_actualdata(pars), 2.0 * np.array(s) + b)

    path = tmp_path / "out" / "workspace.json"
    save_workspace(spec, path)
    assert json.loads(path.read_text()) == spec
    assert sorted(p.name for p in path.parent.iterdir()) == ["workspace.json"]
    assert expected_significance(json.loads(path.read_text())) == pytest.approx(
        expected_significance(spec)
    )


def test_workspace_without_uncertainties_has_only_the_poi():
    spec = build_workspace([2.0], [5.0], [0.0], bkg_norm_unc=0.0)
    assert pyhf.Workspace(spec).model().config.parameters == ["mu"]


def test_significance_accepts_model_and_workspace_objects():
    spec = build_workspace([5.0], [10.0], bkg_norm_unc=0.0)
    ws = pyhf.Workspace(spec)
    ref = z_asimov(5.0, 10.0)
    assert expected_significance(ws) == pytest.approx(ref, rel=1e-3)
    assert expected_significance(ws.model()) == pytest.approx(ref, rel=1e-3)
    with pytest.raises(StatsError, match="workspace dict"):
        expected_significance([5.0, 10.0])


# --- histograms -------------------------------------------------------------------------


def test_histogram_inputs_match_numpy_weighted_histograms():
    rng = np.random.default_rng(1)
    n = 5000
    y = rng.integers(0, 2, n)
    score = rng.uniform(0, 1, n)
    score[:3] = [1.0, 1.2, -0.1]  # out-of-range scores are clipped, not lost
    w = rng.uniform(0.5, 2.0, n)
    h = histogram_inputs(score, y, w, bins=5, scale=4.0)
    clipped = np.clip(score, 0, 1)
    edges = np.linspace(0, 1, 6)
    for mask, yields, sumw2 in [(y == 1, h.s, h.s_sumw2), (y == 0, h.b, h.b_sumw2)]:
        ref = np.zeros(5)
        ref2 = np.zeros(5)
        idx = np.minimum(np.searchsorted(edges, clipped[mask], side="right") - 1, 4)
        np.add.at(ref, idx, 4.0 * w[mask])
        np.add.at(ref2, idx, (4.0 * w[mask]) ** 2)
        np.testing.assert_allclose(yields, ref)
        np.testing.assert_allclose(sumw2, ref2)
    np.testing.assert_allclose(h.b_stat_unc, np.sqrt(h.b_sumw2))
    assert h.s.sum() == pytest.approx(4.0 * w[y == 1].sum())


def test_empty_and_negative_background_bins_are_merged_with_a_warning():
    # background only at low score; one high bin with net negative background weight
    score = np.array([0.05, 0.15, 0.25, 0.55, 0.56, 0.95, 0.96, 0.85])
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    w = np.array([1.0, 2.0, 1.0, 1.0, -3.0, 0.5, 0.5, 1.0])
    with pytest.warns(UserWarning, match="merged"):
        h = histogram_inputs(score, y, w, bins=10)
    assert np.all(h.b > 0)
    assert h.s.sum() == pytest.approx(2.0)
    assert h.b.sum() == pytest.approx(2.0)  # 1 + 2 + 1 + 1 - 3
    assert h.edges[0] == 0.0 and h.edges[-1] == 1.0
    assert h.n_bins == len(h.edges) - 1
    # the signal ends up together with background (no spurious background-free bin)
    spec = build_workspace(h.s, h.b, h.b_stat_unc, bkg_norm_unc=0.0)
    assert np.isfinite(expected_significance(spec))


def test_floor_option_keeps_binning_and_negative_signal_is_clipped():
    score = np.array([0.1, 0.1, 0.9, 0.9, 0.2])
    y = np.array([0, 1, 1, 1, 0])
    w = np.array([1.0, -2.0, 2.0, 2.0, 1.0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h = histogram_inputs(score, y, w, bins=2, empty_background="floor")
    messages = " ".join(str(c.message) for c in caught)
    assert "negative signal" in messages and "set to" in messages
    assert h.n_bins == 2
    np.testing.assert_allclose(h.s, [0.0, 4.0])
    assert h.b[0] == pytest.approx(2.0)
    assert 0 < h.b[1] < 1e-3


def test_merge_and_optimise_binning_respect_minimum_background():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 4000)
    score = np.clip(rng.normal(0.3 + 0.4 * y, 0.15), 0, 1)
    with pytest.warns(UserWarning, match="merged"):  # the tails of 40 bins are empty
        h = histogram_inputs(score, y, np.full(4000, 0.1), bins=40)
    merged = merge_bins(h, min_background=5.0)
    assert np.all(merged.b > 5.0)
    opt = optimise_binning(h, min_background=5.0, max_rel_stat_unc=0.2)
    assert np.all(opt.b >= 5.0)
    assert np.all(opt.b_stat_unc / opt.b <= 0.2)
    for out in (merged, opt):
        assert out.s.sum() == pytest.approx(h.s.sum())
        assert out.b_sumw2.sum() == pytest.approx(h.b_sumw2.sum())
        assert set(out.edges) <= set(h.edges)


# --- convenience and errors -------------------------------------------------------------


def test_run_stats_end_to_end_on_a_seeded_toy():
    rng = np.random.default_rng(3)
    n = 3000
    y = (rng.uniform(size=n) < 0.2).astype(int)
    score = np.clip(rng.normal(0.3 + 0.4 * y, 0.15), 0, 1)
    w = np.where(y == 1, 0.02, rng.uniform(0.5, 1.5, n))  # non-uniform weights
    result, spec = run_stats(score, y, w, bins=6, bkg_norm_unc=0.05, scale=2.0)
    assert isinstance(result, StatsResult)
    assert result.z_expected == pytest.approx(expected_significance(spec))
    d = json.loads(json.dumps(result.to_dict()))
    assert set(d) >= {"z_expected", "cls_upper_limit_expected", "cls_band"}
    assert set(d["cls_band"]) == {"-2", "-1", "+1", "+2"}
    assert d["cls_band"]["-1"] < d["cls_upper_limit_expected"] < d["cls_band"]["+1"]
    assert result.signal_yield == pytest.approx(2.0 * w[y == 1].sum())
    # Without MC-stat gammas the model depends on mu * s only: halving the signal weights
    # must double the limit on mu exactly, and lower Z.
    full, _ = run_stats(score, y, w, bins=6, bkg_norm_unc=0.05, scale=2.0, mc_stat=False)
    w_half = np.where(y == 1, 0.01, w)
    half, _ = run_stats(score, y, w_half, bins=6, bkg_norm_unc=0.05, scale=2.0, mc_stat=False)
    assert half.z_expected < full.z_expected
    assert half.cls_upper_limit_expected == pytest.approx(
        2.0 * full.cls_upper_limit_expected, rel=5e-3
    )
    for key in ("-2", "+2"):
        assert half.cls_band[key] == pytest.approx(2.0 * full.cls_band[key], rel=5e-3)
    # MC statistical uncertainties weaken the result
    assert result.z_expected < full.z_expected


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: histogram_inputs([], [], None), "empty"),
        (lambda: histogram_inputs([0.2, 0.7], [1, 1], None), "no background"),
        (lambda: histogram_inputs([0.2, 0.7], [0, 0], None), "no signal"),
        (lambda: histogram_inputs([0.2, 0.7], [0, 1], [1.0]), "'weight' has 1 entries"),
        (lambda: histogram_inputs([0.2, np.nan], [0, 1], None), "NaN"),
        (lambda: histogram_inputs([0.2, 0.7], [0, 1], [-1.0, 1.0]), "total background"),
        (lambda: build_workspace([1.0, 2.0], [3.0, 0.0]), "background yield must be > 0"),
        (lambda: build_workspace([], []), "'b' is empty"),
        (lambda: build_workspace([1.0], [3.0, 4.0]), "'s' has 1 bins"),
        (lambda: build_workspace([1.0], [3.0], bkg_norm_unc=1.5), "bkg_norm_unc"),
        (lambda: expected_upper_limit(build_workspace([0.0], [3.0])), "no signal"),
    ],
)
def test_bad_input_raises_one_line_stats_error(call, match):
    with pytest.raises(StatsError, match=match) as info:
        call()
    assert isinstance(info.value, FivesigmaError)
    assert "\n" not in str(info.value)


def test_significance_with_systematics_agrees_with_pyhf_hypotest_p0():
    # Cross-check of the q0 route against pyhf's own hypotest p-value on the same Asimov data.
    spec = build_workspace([3.0, 8.0], [40.0, 12.0], [3.0, 2.0], bkg_norm_unc=0.15)
    model = pyhf.Workspace(spec).model()
    pars = model.config.suggested_init()
    pars[model.config.poi_index] = 1.0
    p0 = pyhf.infer.hypotest(0.0, model.expected_data(pars), model, test_stat="q0")
    assert expected_significance(spec) == pytest.approx(norm.isf(float(p0)), rel=1e-3)


def test_a_wider_bound_on_mu_leaves_a_good_result_unchanged():
    spec = build_workspace([5.0, 12.0], [80.0, 15.0], [4.0, 2.0], bkg_norm_unc=0.05)
    assert expected_significance(spec, poi_max=1000.0) == pytest.approx(
        expected_significance(spec), rel=1e-4
    )
    wide = expected_upper_limit(spec, poi_max=1000.0)
    ref = expected_upper_limit(spec)
    assert wide["median"] == pytest.approx(ref["median"], rel=5e-3)
    for key in ("-2", "+2"):
        assert wide["band"][key] == pytest.approx(ref["band"][key], rel=5e-3)


def test_run_stats_still_raises_where_robust_stats_records():
    from fivesigma.stats import robust_stats

    with pytest.raises(StatsError, match="not above the minimum"):
        run_stats([0.2, 0.7], [1, 0], [1.0, 0.5], bins=2, min_background=1.0)
    result, _ = robust_stats([0.2, 0.7], [1, 0], [1.0, 0.5], bins=2, min_background=1.0)
    assert result.error is None and result.n_bins == 1
