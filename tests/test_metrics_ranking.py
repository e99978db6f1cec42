"""Permutation importance and weighted correlation, checked against scikit-learn and numpy."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.inspection import permutation_importance as sk_permutation_importance
from sklearn.linear_model import LogisticRegression

from fivesigma.metrics import MetricError, auc, permutation_importance, weighted_correlation


def _toy(seed: int, n: int = 3000, coefs=(3.0, 0.0, 0.0, 0.0)):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(coefs)))
    logit = X @ np.asarray(coefs)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def test_only_informative_feature_matters():
    X, y = _toy(0)
    model = LogisticRegression().fit(X, y)
    X_before = X.copy()
    ranked = permutation_importance(
        model.predict_proba, X, y, feature_names=["x0", "x1", "x2", "x3"], n_repeats=5, seed=1
    )
    np.testing.assert_array_equal(X, X_before)  # caller's array untouched
    assert ranked[0]["feature"] == "x0" and ranked[0]["index"] == 0
    assert ranked[0]["importance_mean"] > 0.2
    for r in ranked[1:]:
        assert abs(r["importance_mean"]) < 0.01
    assert ranked[0]["baseline"] == pytest.approx(auc(y, model.predict_proba(X)[:, 1]))
    assert all(len(r["importances"]) == 5 for r in ranked)
    assert ranked[0]["importance_std"] == pytest.approx(np.std(ranked[0]["importances"]))


def test_ordering_agrees_with_sklearn_permutation_importance():
    X, y = _toy(2, coefs=(2.5, 1.2, 0.5, 0.0))
    model = LogisticRegression().fit(X, y)
    ours = permutation_importance(lambda a: model.predict_proba(a)[:, 1], X, y, n_repeats=8, seed=3)
    ref = sk_permutation_importance(model, X, y, scoring="roc_auc", n_repeats=8, random_state=3)
    sk_order = list(np.argsort(-ref.importances_mean))
    assert [r["index"] for r in ours] == sk_order
    for r in ours:  # same quantity, different shuffles: means agree closely
        assert r["importance_mean"] == pytest.approx(ref.importances_mean[r["index"]], abs=0.01)


def test_seed_makes_it_reproducible_and_weights_are_used():
    X, y = _toy(4, n=800, coefs=(2.0, 1.0))
    model = LogisticRegression().fit(X, y)
    a = permutation_importance(model.predict_proba, X, y, seed=7)
    b = permutation_importance(model.predict_proba, X, y, seed=7)
    assert a == b
    # Zero weight on half the events: the baseline equals the AUC on the other half.
    w = np.r_[np.ones(400), np.zeros(400)]
    c = permutation_importance(model.predict_proba, X, y, weight=w, seed=7)
    assert c[0]["baseline"] == pytest.approx(auc(y[:400], model.predict_proba(X[:400])[:, 1]))


def test_permutation_importance_errors():
    X, y = _toy(5, n=50, coefs=(1.0, 1.0))
    with pytest.raises(MetricError, match="feature_names has 3 names"):
        permutation_importance(lambda a: a[:, 0], X, y, feature_names=["a", "b", "c"])
    with pytest.raises(MetricError, match="one score per event"):
        permutation_importance(lambda a: a, np.c_[X, X[:, :1]], y)
    with pytest.raises(MetricError, match="2-d array"):
        permutation_importance(lambda a: a, X[:, 0], y)


def test_weighted_correlation_unit_weights_equals_corrcoef():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(500, 4))
    X[:, 1] += 0.8 * X[:, 0]
    X[:, 3] -= 0.5 * X[:, 2]
    np.testing.assert_allclose(weighted_correlation(X), np.corrcoef(X, rowvar=False), atol=1e-12)
    np.testing.assert_allclose(
        weighted_correlation(X, np.ones(500)), np.corrcoef(X, rowvar=False), atol=1e-12
    )


def test_weighted_correlation_integer_weights_equal_repeated_rows():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 3))
    X[:, 2] += X[:, 1]
    k = rng.integers(1, 5, 300)
    np.testing.assert_allclose(
        weighted_correlation(X, k), np.corrcoef(np.repeat(X, k, axis=0), rowvar=False), atol=1e-12
    )


def test_weighted_correlation_real_weights_match_numpy_cov_aweights():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(400, 3))
    X[:, 0] += X[:, 2]
    w = rng.uniform(0.1, 5.0, 400)
    cov = np.cov(X, rowvar=False, aweights=w)
    d = np.sqrt(np.diag(cov))
    np.testing.assert_allclose(weighted_correlation(X, w), cov / np.outer(d, d), atol=1e-12)


def test_weighted_correlation_constant_column_and_negative_weights():
    rng = np.random.default_rng(9)
    X = np.c_[rng.normal(size=100), np.full(100, 3.0), rng.normal(size=100)]
    corr = weighted_correlation(X)
    assert np.all(np.isnan(corr[1])) and np.all(np.isnan(corr[:, 1]))
    assert corr[0, 0] == 1.0 and np.isfinite(corr[0, 2])
    w = np.where(rng.random(100) < 0.2, -1.0, 1.0)
    with np.errstate(all="raise"):  # no sqrt of a negative variance
        corr_neg = weighted_correlation(X, w)
    assert corr_neg.shape == (3, 3)
    with pytest.raises(MetricError, match="summed weight"):
        weighted_correlation(X, -np.ones(100))
    with pytest.raises(MetricError, match="NaN"):
        weighted_correlation([[1.0, np.nan], [2.0, 3.0]])
