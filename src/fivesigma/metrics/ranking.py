"""Feature ranking: permutation importance and weighted correlation matrices."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from fivesigma.metrics._validate import MetricError, as_labels, as_weights
from fivesigma.metrics.roc import auc

__all__ = ["permutation_importance", "weighted_correlation"]


def _as_matrix(X: object) -> np.ndarray:
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2:
        raise MetricError(f"X must be a 2-d array (n_events, n_features), got shape {arr.shape}")
    return arr


def _predict_scores(predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray) -> np.ndarray:
    out = np.asarray(predict(X), dtype=np.float64)
    # Accept predict_proba-style (n, 2) output: column 1 is the signal probability.
    if out.ndim == 2 and out.shape[1] == 2:
        out = out[:, 1]
    if out.ndim != 1 or out.shape[0] != X.shape[0]:
        raise MetricError(
            f"predict returned shape {out.shape} for {X.shape[0]} events; "
            "it must return one score per event (or an (n, 2) probability array)"
        )
    return out


def permutation_importance(
    predict: Callable[[np.ndarray], np.ndarray],
    X: object,
    y: object,
    weight: object | None = None,
    feature_names: Sequence[str] | None = None,
    n_repeats: int = 5,
    seed: int = 0,
    metric: Callable[..., float] = auc,
) -> list[dict]:
    """Rank features by how much ``metric`` drops when that feature's column is shuffled.

    For each feature and repeat the column is permuted (with ``numpy.random.default_rng(seed)``),
    the model is re-evaluated and ``metric(y, score, weight)`` is compared with the unshuffled
    baseline.  A large mean drop means the model relies on the feature; about 0 means it
    does not.  The shuffle breaks the feature's link with y *and* with correlated features,
    so correlated features can share (and hide) importance.

    Returns
    -------
    list of dicts, sorted by decreasing ``importance_mean``, with keys ``feature`` (name),
    ``index`` (column), ``importance_mean``, ``importance_std`` (over repeats, ddof=0),
    ``importances`` (list, one per repeat) and ``baseline`` (unshuffled metric).

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> X = rng.normal(size=(200, 2)); y = (X[:, 0] > 0).astype(int)
    >>> ranked = permutation_importance(lambda a: a[:, 0], X, y, feature_names=["x0", "x1"])
    >>> [r["feature"] for r in ranked], ranked[1]["importance_mean"]
    (['x0', 'x1'], 0.0)
    """
    Xa = _as_matrix(X)
    n, n_feat = Xa.shape
    yy = as_labels(y, n, "y")
    w = as_weights(weight, n)
    if feature_names is None:
        names = [f"f{j}" for j in range(n_feat)]
    else:
        names = [str(f) for f in feature_names]
        if len(names) != n_feat:
            raise MetricError(f"feature_names has {len(names)} names but X has {n_feat} columns")
    if int(n_repeats) < 1:
        raise MetricError(f"n_repeats must be >= 1, got {n_repeats}")
    rng = np.random.default_rng(seed)
    baseline = float(metric(yy, _predict_scores(predict, Xa), w))
    work = Xa.copy()  # never shuffle the caller's array
    results = []
    for j in range(n_feat):
        original = work[:, j].copy()
        drops = []
        for _ in range(int(n_repeats)):
            work[:, j] = original[rng.permutation(n)]
            drops.append(baseline - float(metric(yy, _predict_scores(predict, work), w)))
        work[:, j] = original
        results.append(
            {
                "feature": names[j],
                "index": j,
                "importance_mean": float(np.mean(drops)),
                "importance_std": float(np.std(drops)),
                "importances": drops,
                "baseline": baseline,
            }
        )
    # Stable sort: equal importances keep column order.
    return sorted(results, key=lambda r: -r["importance_mean"])


def weighted_correlation(X: object, weight: object | None = None) -> np.ndarray:
    """Weighted Pearson correlation matrix of the columns of ``X`` (n_events, n_features).

    ``cov_jk = sum w (x_j - mu_j)(x_k - mu_k) / sum w`` with weighted means ``mu``, then
    ``r_jk = cov_jk / sqrt(cov_jj cov_kk)``.  Columns with variance <= 0 (constant, or made
    non-positive by negative weights) give ``nan`` rows instead of a square root of a
    negative number.  Values are not clipped: with negative weights |r| may exceed 1.
    The summed weight must be positive.

    Examples
    --------
    >>> weighted_correlation([[1.0, 2.0], [2.0, 4.0], [3.0, 7.0]]).round(3).tolist()
    [[1.0, 0.993], [0.993, 1.0]]
    """
    Xa = _as_matrix(X)
    n_nan = int(np.count_nonzero(np.isnan(Xa)))
    if n_nan:
        raise MetricError(f"X has {n_nan} NaN value(s); remove or impute them first")
    w = as_weights(weight, Xa.shape[0])
    tot = float(w.sum())
    if not tot > 0:
        raise MetricError(
            f"summed weight is {tot:g}; a weighted correlation needs a positive total"
        )
    mu = (w @ Xa) / tot
    d = Xa - mu
    cov = (d * w[:, None]).T @ d / tot
    var = np.diag(cov).copy()
    ok = var > 0
    std = np.sqrt(np.where(ok, var, 1.0))
    corr = cov / np.outer(std, std)
    corr[~ok, :] = np.nan
    corr[:, ~ok] = np.nan
    idx = np.flatnonzero(ok)
    corr[idx, idx] = 1.0
    return corr
