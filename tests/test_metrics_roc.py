"""Weighted ROC, AUC and working points, checked against scikit-learn and closed forms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from fivesigma.errors import FivesigmaError
from fivesigma.metrics import (
    MetricError,
    auc,
    eff_b_at_eff_s,
    eff_s_at_eff_b,
    multiclass_one_vs_rest,
    rejection_at_eff_s,
    roc_curve,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _toy(
    seed: int, n_sig: int = 300, n_bkg: int = 1700, ties: bool = True, weights: str = "random"
):
    rng = np.random.default_rng(seed)
    s = np.r_[rng.normal(1.0, 1.0, n_sig), rng.normal(0.0, 1.0, n_bkg)]
    if ties:  # coarse scores: many exact ties inside and across classes
        s = np.round(s, 1)
    y = np.r_[np.ones(n_sig, int), np.zeros(n_bkg, int)]
    perm = rng.permutation(y.size)
    w = {"random": rng.uniform(0.1, 3.0, y.size), "ones": np.ones(y.size)}[weights]
    return y[perm], s[perm], w[perm]


def _pairwise_auc(y, s, w):
    """Independent definition: weighted P(score_sig > score_bkg) + 1/2 P(equal)."""
    sig, bkg = y == 1, y == 0
    ss, ws = s[sig][:, None], w[sig][:, None]
    sb, wb = s[bkg][None, :], w[bkg][None, :]
    wins = ws * wb * ((ss > sb) + 0.5 * (ss == sb))
    return wins.sum() / (w[sig].sum() * w[bkg].sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("weights", ["ones", "random"])
@pytest.mark.parametrize("ties", [True, False])
def test_auc_matches_sklearn_with_ties_unequal_classes_and_weights(seed, weights, ties):
    y, s, w = _toy(seed, ties=ties, weights=weights)
    expected = roc_auc_score(y, s, sample_weight=w)
    assert auc(y, s, w) == pytest.approx(expected, rel=1e-12)


def test_roc_curve_matches_sklearn_points_and_endpoints():
    y, s, w = _toy(3)
    eb, es, thr = roc_curve(y, s, w)
    fpr, tpr, sk_thr = sk_roc_curve(y, s, sample_weight=w, drop_intermediate=False)
    np.testing.assert_allclose(eb, fpr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(es, tpr, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(thr[1:], sk_thr[1:])
    assert (eb[0], es[0]) == (0.0, 0.0)
    assert eb[-1] == pytest.approx(1.0) and es[-1] == pytest.approx(1.0)
    assert thr[0] == np.inf and np.all(np.diff(thr) < 0)


def test_ties_are_grouped_into_one_step():
    # Two signal and two background events share one score: a single diagonal step.
    eb, es, _ = roc_curve([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5])
    assert eb.tolist() == [0.0, 1.0] and es.tolist() == [0.0, 1.0]
    assert auc([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_infinite_scores_are_allowed_and_grouped():
    y = [1, 1, 0, 0, 1]
    s = [np.inf, np.inf, -np.inf, 0.3, 0.2]
    eb, es, _ = roc_curve(y, s)
    assert es.tolist()[:2] == [0.0, 2 / 3] and eb.tolist()[:2] == [0.0, 0.0]
    assert auc(y, s) == pytest.approx(roc_auc_score(y, np.clip(s, -1e9, 1e9)))


def test_auc_is_independent_of_event_order():
    y, s, w = _toy(4)
    perm = np.random.default_rng(9).permutation(y.size)
    assert auc(y[perm], s[perm], w[perm]) == pytest.approx(auc(y, s, w), rel=1e-12)


def test_negative_weights_give_the_pairwise_auc_without_crashing():
    y, s, w = _toy(5, n_sig=150, n_bkg=400)
    rng = np.random.default_rng(5)
    w = w * np.where(rng.random(w.size) < 0.2, -1.0, 1.0)  # 20 % negative, as at NLO
    assert w[y == 1].sum() > 0 and w[y == 0].sum() > 0
    eb, es, _ = roc_curve(y, s, w)
    assert np.all(np.isfinite(eb)) and np.all(np.isfinite(es))
    assert eb[-1] == pytest.approx(1.0) and es[-1] == pytest.approx(1.0)
    assert auc(y, s, w) == pytest.approx(_pairwise_auc(y, s, w), rel=1e-10)
    for v in rejection_at_eff_s(y, s, [0.3, 0.5, 0.9], w).values():
        assert v > 0
    for v in eff_s_at_eff_b(y, s, [0.01, 0.1, 0.5], w).values():
        assert np.isfinite(v)


def test_integer_weights_equal_repeated_events():
    y, s, _ = _toy(6, n_sig=80, n_bkg=200, ties=True)
    k = np.random.default_rng(6).integers(1, 4, y.size)
    yr, sr = np.repeat(y, k), np.repeat(s, k)
    assert auc(y, s, k) == pytest.approx(auc(yr, sr), rel=1e-12)
    targets = [0.2, 0.5, 0.8]
    for a, b in zip(
        rejection_at_eff_s(y, s, targets, k).values(),
        rejection_at_eff_s(yr, sr, targets).values(),
        strict=True,
    ):
        assert a == pytest.approx(b, rel=1e-12)


def test_working_points_match_gaussian_closed_form():
    # Signal N(1,1) vs background N(0,1): eps_S(eps_B) = Phi_bar(Phi_bar^-1(eps_B) - 1).
    rng = np.random.default_rng(7)
    n = 200_000
    y = np.r_[np.ones(n, int), np.zeros(n, int)]
    s = np.r_[rng.normal(1.0, 1.0, n), rng.normal(0.0, 1.0, n)]
    eps_b = [0.01, 0.1, 0.3]
    got = eff_s_at_eff_b(y, s, eps_b)
    for t in eps_b:
        assert got[t] == pytest.approx(norm.sf(norm.isf(t) - 1.0), abs=0.006)
    eps_s = [0.3, 0.5, 0.7]
    rej = rejection_at_eff_s(y, s, eps_s)
    eb = eff_b_at_eff_s(y, s, eps_s)
    for t in eps_s:
        expected_eb = norm.sf(norm.isf(t) + 1.0)
        assert eb[t] == pytest.approx(expected_eb, rel=0.03)
        assert rej[t] == pytest.approx(1.0 / expected_eb, rel=0.03)
        assert rej[t] == pytest.approx(1.0 / eb[t], rel=1e-12)


def test_working_point_interpolation_on_a_hand_computed_curve():
    # Sorted: 0.8 S, 0.4 B, 0.35 S, 0.1 B -> points (eb, es): (0,0) (0,.5) (.5,.5) (.5,1) (1,1)
    y, s = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    assert eff_s_at_eff_b(y, s, [0.0, 0.25, 0.5, 0.75, 1.0]) == {
        0.0: 0.5,  # vertical step at eb=0: the best eps_S there
        0.25: 0.5,
        0.5: 1.0,
        0.75: 1.0,
        1.0: 1.0,
    }
    got = eff_b_at_eff_s(y, s, [0.25, 0.5, 0.75, 1.0])
    assert got == {0.25: 0.0, 0.5: 0.0, 0.75: 0.5, 1.0: 0.5}
    rej = rejection_at_eff_s(y, s, [0.5, 0.75])
    assert rej == {0.5: float("inf"), 0.75: 2.0}
    # Linear interpolation between two distinct points of the curve.
    y2, s2 = [1, 0, 1, 0], [0.9, 0.7, 0.5, 0.1]  # (0,0) (0,.5) (.5,.5) (.5,1) (1,1)
    y3, s3 = [1, 0, 0, 1, 0], [0.9, 0.8, 0.7, 0.6, 0.1]  # (0,.5) (1/3,.5) (2/3,.5) (2/3,1)
    assert eff_b_at_eff_s(y2, s2, [0.75])[0.75] == pytest.approx(0.5)
    assert eff_b_at_eff_s(y3, s3, [0.75])[0.75] == pytest.approx(2 / 3)
    assert eff_s_at_eff_b(y3, s3, [0.5])[0.5] == pytest.approx(0.5)
    assert eff_s_at_eff_b(y3, s3, [5 / 6])[5 / 6] == pytest.approx(1.0)


def test_perfect_separation_gives_infinite_rejection():
    y = [0, 0, 0, 1, 1]
    s = [0.1, 0.2, 0.3, 0.8, 0.9]
    assert auc(y, s) == 1.0
    assert rejection_at_eff_s(y, s, 0.5) == {0.5: float("inf")}


def test_multiclass_one_vs_rest_matches_sklearn_with_weights():
    rng = np.random.default_rng(8)
    n, k = 900, 4
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    w = rng.uniform(0.2, 2.0, n)
    got = multiclass_one_vs_rest(y, probs, w)
    expected = roc_auc_score(y, probs, multi_class="ovr", average=None, sample_weight=w)
    assert list(got) == list(range(k))
    np.testing.assert_allclose([got[i] for i in range(k)], expected, rtol=1e-12)


def test_multiclass_errors_name_the_problem():
    probs = np.full((4, 3), 1 / 3)
    with pytest.raises(MetricError, match="class 2 has no events"):
        multiclass_one_vs_rest([0, 1, 0, 1], probs)
    with pytest.raises(MetricError, match="outside 0..2"):
        multiclass_one_vs_rest([0, 1, 2, 3], probs)
    with pytest.raises(MetricError, match="one label per row"):
        multiclass_one_vs_rest([0, 1, 2], probs)


def test_input_validation_errors_are_one_line_fivesigma_errors():
    with pytest.raises(MetricError, match="lengths must match") as err:
        auc([0, 1, 1], [0.1, 0.2])
    assert isinstance(err.value, FivesigmaError) and isinstance(err.value, ValueError)
    assert "\n" not in str(err.value)
    with pytest.raises(MetricError, match="only signal"):
        auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(MetricError, match="only background"):
        roc_curve([0, 0], [0.1, 0.2])
    with pytest.raises(MetricError, match="2 NaN value"):
        auc([0, 1, 0, 1], [0.1, np.nan, np.nan, 0.4])
    with pytest.raises(MetricError, match="only 0 .background. and 1"):
        auc([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(MetricError, match="one weight per event"):
        auc([0, 1], [0.1, 0.2], [1.0])
    with pytest.raises(MetricError, match="total background weight"):
        auc([0, 0, 1], [0.1, 0.2, 0.3], [1.0, -2.0, 1.0])
    with pytest.raises(MetricError, match=r"\[0, 1\]"):
        rejection_at_eff_s([0, 1], [0.1, 0.2], [1.5])


def test_atlas_higgs_subset_auc_matches_sklearn():
    folder = DATA / "atlas_higgs_ml_challenge_subset"
    if not (folder / "train_sml_sig.csv").exists():
        pytest.skip("ATLAS Higgs ML subset not present in ../shared/data")
    pd = pytest.importorskip("pandas")
    cols = ["DER_mass_transverse_met_lep", "Weight"]
    sig = pd.read_csv(folder / "train_sml_sig.csv", usecols=cols)
    bkg = pd.read_csv(folder / "train_sml_bg.csv", usecols=cols)
    # Low transverse mass is signal-like: use minus it as the score.
    score = -np.r_[sig.iloc[:, 0].to_numpy(), bkg.iloc[:, 0].to_numpy()]
    w = np.r_[sig["Weight"].to_numpy(), bkg["Weight"].to_numpy()]
    y = np.r_[np.ones(len(sig), int), np.zeros(len(bkg), int)]
    got = auc(y, score, w)
    assert got == pytest.approx(roc_auc_score(y, score, sample_weight=w), rel=1e-12)
    assert got > 0.6  # a real discriminant


# --------------------------------------------------------------------------------------
# Statistical interval of a rejection


@pytest.mark.parametrize("n, k", [(1000, 10), (1646, 3), (590, 1), (200, 150), (50, 50)])
def test_rejection_interval_is_the_clopper_pearson_interval_inverted(n, k):
    from scipy.stats import binomtest

    from fivesigma.metrics import rejection_interval

    ci = binomtest(k, n).proportion_ci(confidence_level=0.6827, method="exact")
    low, high = rejection_interval(n / k, n)
    assert low == pytest.approx(1 / ci.high, rel=1e-9)
    assert high == pytest.approx(1 / ci.low, rel=1e-9)
    assert low <= n / k < high


def test_rejection_interval_when_no_background_passes():
    from fivesigma.metrics import rejection_interval

    low, high = rejection_interval(float("inf"), 590, cl=0.9)
    assert high == float("inf")
    # the one-sided bound: eps_B = 1/low leaves zero of 590 jets with probability 10%
    assert (1 - 1 / low) ** 590 == pytest.approx(0.1, rel=1e-9)


def test_rejection_interval_bad_input():
    from fivesigma.metrics import MetricError, rejection_interval

    with pytest.raises(MetricError, match="n_background must be a positive integer"):
        rejection_interval(10.0, 0)
    with pytest.raises(MetricError, match="cl must be between 0 and 1"):
        rejection_interval(10.0, 100, cl=1.5)
    with pytest.raises(MetricError, match="rejection must be > 0"):
        rejection_interval(float("nan"), 100)
