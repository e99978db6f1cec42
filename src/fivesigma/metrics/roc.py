"""Weighted ROC curves, AUC and working points (signal efficiency, background rejection).

Conventions
-----------
* ``y_true`` is 1 for signal, 0 for background; a higher score means more signal-like.
* An event passes a threshold ``t`` when ``score >= t``.
* Efficiencies are cumulative sums of *signed* weights divided by the class total, so
  negative weights (NLO generators) are used as they are.  Locally the curve may then
  step backwards or leave [0, 1]; nothing is clipped here (clip only when drawing).
  A class whose summed weight is <= 0 raises :class:`MetricError`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from fivesigma.core import extras
from fivesigma.metrics._validate import MetricError, as_labels, as_scores, as_weights, check_classes

__all__ = [
    "auc",
    "eff_b_at_eff_s",
    "eff_s_at_eff_b",
    "multiclass_one_vs_rest",
    "rejection_at_eff_s",
    "rejection_interval",
    "roc_curve",
]


def _prepare(y_true: object, score: object, weight: object | None):
    s = as_scores(score)
    y = as_labels(y_true, s.size)
    w = as_weights(weight, s.size)
    check_classes(y, w)
    return y, s, w


def _roc_from_arrays(y: np.ndarray, s: np.ndarray, w: np.ndarray):
    # Sort by decreasing score; a stable sort keeps the result independent of input order
    # within ties only through the grouping below (ties are merged, as in sklearn).
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    w_sig = np.where(y[order], w[order], 0.0)
    w_bkg = np.where(y[order], 0.0, w[order])
    # Last index of each group of equal scores: the curve moves only between groups.
    # (`!=` rather than np.diff: inf - inf is nan and would split a group of +inf scores.)
    last = np.r_[np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), s_sorted.size - 1]
    tps = np.cumsum(w_sig)[last]
    fps = np.cumsum(w_bkg)[last]
    eff_s = np.r_[0.0, tps / tps[-1]]
    eff_b = np.r_[0.0, fps / fps[-1]]
    thresholds = np.r_[np.inf, s_sorted[last]]
    return eff_b, eff_s, thresholds


def roc_curve(
    y_true: object, score: object, weight: object | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted ROC curve as background and signal efficiency per threshold.

    Equal scores are grouped into one step (as in ``sklearn.metrics.roc_curve``), the
    curve starts at (0, 0) with threshold ``+inf`` and ends at (1, 1).

    Parameters
    ----------
    y_true : array of 0/1 or bool, 1 = signal.
    score : array of float, higher = more signal-like; NaN is an error.
    weight : per-event weights (default ones); negative weights are allowed.

    Returns
    -------
    eff_b, eff_s, thresholds : arrays of equal length; thresholds decrease.

    Examples
    --------
    >>> eb, es, t = roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> es.tolist(), eb.tolist()
    ([0.0, 0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5, 1.0])
    """
    y, s, w = _prepare(y_true, score, weight)
    return _roc_from_arrays(y, s, w)


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) * 0.5))


def auc(y_true: object, score: object, weight: object | None = None) -> float:
    """Area under the weighted ROC curve (trapezoid rule; ties count one half).

    Equals ``sklearn.metrics.roc_auc_score(y, s, sample_weight=w)`` for positive weights.
    With negative weights it is the signed area under the (possibly non-monotonic) curve.

    Examples
    --------
    >>> auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    eff_b, eff_s, _ = roc_curve(y_true, score, weight)
    return _trapezoid(eff_b, eff_s)


def _targets(values: float | Iterable[float], name: str) -> list[float]:
    arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if arr.ndim != 1:
        raise MetricError(f"{name} must be a number or a 1-d list of numbers in [0, 1]")
    bad = arr[~((arr >= 0.0) & (arr <= 1.0))]
    if bad.size:
        raise MetricError(f"{name} must lie in [0, 1]; got {bad[:5].tolist()}")
    return [float(v) for v in arr]


def _interp_first_crossing(x: np.ndarray, y: np.ndarray, t: float, side: str) -> float:
    """Linear interpolation of y at x = t on the first crossing of t along the curve.

    The running maximum of ``x`` makes the search well defined even when negative weights
    make x step backwards; with positive weights it is the ordinary interpolation.
    ``side="right"`` picks the last point with x == t (e.g. the highest eff_s at a
    given eff_b), ``side="left"`` the first (the lowest eff_b at a given eff_s).
    """
    run_max = np.maximum.accumulate(x)
    i = int(np.searchsorted(run_max, t, side=side))
    if i == 0:
        return float(y[0])
    if i >= x.size:
        return float(y[-1])
    x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
    # x0 <= run_max[i-1] <= t < x1 (right) or x0 < t <= x1 (left): x1 > x0 always.
    return float(y0 + (y1 - y0) * (t - x0) / (x1 - x0))


def eff_s_at_eff_b(
    y_true: object,
    score: object,
    eff_b_targets: float | Iterable[float],
    weight: object | None = None,
) -> dict[float, float]:
    """Signal efficiency at fixed background efficiencies, interpolated linearly on the ROC.

    For each target eps_B the two ROC points bracketing it are joined by a straight line
    (the curve between two thresholds is the straight line reached by randomising between
    them); on a vertical step the highest eps_S at that eps_B is returned.

    Examples
    --------
    >>> eff_s_at_eff_b([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], [0.25, 0.5])
    {0.25: 0.5, 0.5: 1.0}
    """
    eff_b, eff_s, _ = roc_curve(y_true, score, weight)
    return {
        t: _interp_first_crossing(eff_b, eff_s, t, "right")
        for t in _targets(eff_b_targets, "eff_b_targets")
    }


def eff_b_at_eff_s(
    y_true: object,
    score: object,
    eff_s_targets: float | Iterable[float],
    weight: object | None = None,
) -> dict[float, float]:
    """Background efficiency at fixed signal efficiencies, interpolated linearly on the ROC.

    On a horizontal step (eps_S constant) the lowest eps_B reaching the target is used.

    Examples
    --------
    >>> eff_b_at_eff_s([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], [0.5, 0.75])
    {0.5: 0.0, 0.75: 0.5}
    """
    eff_b, eff_s, _ = roc_curve(y_true, score, weight)
    return {
        t: _interp_first_crossing(eff_s, eff_b, t, "left")
        for t in _targets(eff_s_targets, "eff_s_targets")
    }


def rejection_at_eff_s(
    y_true: object,
    score: object,
    eff_s_targets: float | Iterable[float],
    weight: object | None = None,
) -> dict[float, float]:
    """Background rejection 1/eps_B at fixed signal efficiencies.

    eps_B is interpolated linearly at fixed eps_S on the ROC (as in the tagging papers,
    see :func:`eff_b_at_eff_s`) and then inverted.  An interpolated eps_B <= 0 (no
    background left, or a negative-weight fluctuation) gives ``inf``.

    Examples
    --------
    >>> rejection_at_eff_s([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], [0.5, 0.75])
    {0.5: inf, 0.75: 2.0}
    """
    out = eff_b_at_eff_s(y_true, score, eff_s_targets, weight)
    return {t: (1.0 / eb if eb > 0 else float("inf")) for t, eb in out.items()}


def rejection_interval(
    rejection: float, n_background: int, cl: float = 0.6827
) -> tuple[float, float]:
    """Statistical interval of a rejection measured on ``n_background`` unweighted jets.

    A rejection R at fixed eps_S means about k = n_background / R background jets pass
    (rounded to a whole jet).  The central Clopper-Pearson interval on eps_B for k out
    of n_background at confidence ``cl``, inverted, is returned as (low, high) for
    1/eps_B; with k = 0 (R = inf) high is inf and low is the one-sided bound.  It covers
    the test sample's counting fluctuation only, not the spread between trainings.

    >>> [round(v) for v in rejection_interval(100.0, 1000)]
    [70, 145]
    """
    if not isinstance(n_background, int | np.integer) or n_background < 1:
        raise MetricError(f"n_background must be a positive integer, got {n_background!r}")
    if not 0 < cl < 1:
        raise MetricError(f"cl must be between 0 and 1, got {cl!r}")
    if not rejection > 0:
        raise MetricError(f"rejection must be > 0, got {rejection!r}")
    beta = extras.scipy("stats").beta

    n = int(n_background)
    k = min(round(float(n / rejection)), n) if np.isfinite(rejection) else 0
    alpha = 1.0 - cl
    if k == 0:
        upper = 1.0 - alpha ** (1.0 / n)  # one-sided: P(0 pass | eps_B) = alpha
        return 1.0 / upper, float("inf")
    lower = float(beta.ppf(alpha / 2, k, n - k + 1))
    upper = float(beta.ppf(1 - alpha / 2, k + 1, n - k)) if k < n else 1.0
    return 1.0 / upper, 1.0 / lower


def multiclass_one_vs_rest(
    y: object, probs: object, weight: object | None = None
) -> dict[int, float]:
    """Per-class one-vs-rest AUC for integer labels ``0..K-1`` and scores of shape (n, K).

    Class ``k`` is signal and every other class background, scored by ``probs[:, k]``.
    Matches ``sklearn.metrics.roc_auc_score(y, probs, multi_class="ovr", average=None)``
    for positive weights.

    Examples
    --------
    >>> p = [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1], [0.3, 0.3, 0.4]]
    >>> {k: round(v, 3) for k, v in multiclass_one_vs_rest([0, 1, 2, 1, 0], p).items()}
    {0: 0.833, 1: 1.0, 2: 1.0}
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise MetricError(f"probs must have shape (n_events, n_classes >= 2), got {p.shape}")
    labels = np.asarray(y)
    if labels.ndim != 1 or labels.shape[0] != p.shape[0]:
        raise MetricError(
            f"y has shape {labels.shape} but probs has {p.shape[0]} rows; give one label per row"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        if np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise MetricError(f"y must hold integer class indices 0..{p.shape[1] - 1}")
    n_classes = p.shape[1]
    bad = labels[(labels < 0) | (labels >= n_classes)]
    if bad.size:
        raise MetricError(
            f"y has class index {int(bad[0])} outside 0..{n_classes - 1} (probs has {n_classes} columns)"
        )
    n_nan = int(np.count_nonzero(np.isnan(p)))
    if n_nan:
        raise MetricError(f"probs has {n_nan} NaN value(s); remove or impute them first")
    w = as_weights(weight, p.shape[0])
    out: dict[int, float] = {}
    for k in range(n_classes):
        is_k = labels == k
        if not np.any(is_k):
            raise MetricError(f"class {k} has no events in y; one-vs-rest AUC needs every class")
        check_classes(is_k, w, name=f"y (class {k} vs rest)")
        eff_b, eff_s, _ = _roc_from_arrays(is_k, p[:, k], w)
        out[k] = _trapezoid(eff_b, eff_s)
    return out
