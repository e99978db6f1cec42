"""Overtraining checks: train-vs-test Kolmogorov–Smirnov test and TMVA's separation."""

from __future__ import annotations

import numpy as np

from fivesigma.core import extras
from fivesigma.metrics._validate import MetricError, as_scores, as_weights

__all__ = ["ks_test", "separation"]


def _sample(score: object, weight: object | None, name: str) -> tuple[np.ndarray, np.ndarray]:
    s = as_scores(score, name)
    if s.size == 0:
        raise MetricError(f"{name} is empty; the KS test needs at least one event per sample")
    w = as_weights(weight, s.size, f"weight for {name}")
    if not w.sum() > 0:
        raise MetricError(
            f"summed weight of {name} is {w.sum():g}; the KS test needs a positive total weight"
        )
    return s, w


def _ecdf_at(points: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted ECDF F(x) = sum(w[s <= x]) / sum(w) at each of ``points`` (signed weights)."""
    order = np.argsort(s, kind="stable")
    cum = np.r_[0.0, np.cumsum(w[order])]
    idx = np.searchsorted(s[order], points, side="right")
    return cum[idx] / cum[-1]


def ks_test(
    score_train: object,
    score_test: object,
    weight_train: object | None = None,
    weight_test: object | None = None,
) -> tuple[float, float]:
    """Two-sample two-sided Kolmogorov–Smirnov test, optionally with event weights.

    The statistic is ``D = max_x |F_train(x) - F_test(x)|`` over all observed values, with
    (weighted) empirical CDFs; ties are grouped, so unweighted ``D`` equals
    ``scipy.stats.ks_2samp(a, b).statistic`` exactly.

    The p-value uses the asymptotic mode of ``scipy.stats.ks_2samp(..., method="asymp")``:
    ``kstwo.sf(D, round(n1 n2 / (n1 + n2)))``.  With weights each sample size is replaced by
    its effective size ``n_eff = (sum w)^2 / sum w^2`` (Kish); negative weights enter the
    ECDFs with their sign (which may then step down locally) and only the totals must be
    positive.  ``round(...)`` is at least 1 so tiny effective samples still give a number.

    Returns
    -------
    (statistic, pvalue)

    Examples
    --------
    >>> d, p = ks_test([0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4])
    >>> d, p
    (0.0, 1.0)
    """
    a, wa = _sample(score_train, weight_train, "score_train")
    b, wb = _sample(score_test, weight_test, "score_test")
    pts = np.concatenate([a, b])
    d = float(np.max(np.abs(_ecdf_at(pts, a, wa) - _ecdf_at(pts, b, wb))))
    n1 = float(wa.sum() ** 2 / np.sum(wa**2))
    n2 = float(wb.sum() ** 2 / np.sum(wb**2))
    # Same ordering and rounding as scipy's asymp mode, so the unweighted result matches it.
    m, n = sorted([n1, n2], reverse=True)
    en = max(1.0, float(np.round(m * n / (m + n))))
    kstwo = extras.scipy("stats").kstwo  # lazy: keep `import fivesigma.metrics` light
    p = float(np.clip(kstwo.sf(d, en), 0.0, 1.0))
    return d, p


def separation(
    score_s: object,
    score_b: object,
    weight_s: object | None = None,
    weight_b: object | None = None,
    bins: int = 40,
    range: tuple[float, float] | None = None,  # name mirrors numpy.histogram
) -> float:
    """TMVA separation <S^2> = 1/2 sum_i (p_s,i - p_b,i)^2 / (p_s,i + p_b,i).

    ``p_s`` and ``p_b`` are the weighted histograms of the signal and background scores,
    each normalised to sum 1 over the bins; 0 means identical shapes, 1 no overlap.
    ``range`` defaults to (min, max) of all finite scores; events outside it are ignored
    (as in ``numpy.histogram``).  Bins with ``p_s + p_b <= 0`` (empty, or only possible
    with negative weights) are skipped rather than divided by.

    Examples
    --------
    >>> separation([0.1, 0.2], [0.8, 0.9], bins=2, range=(0.0, 1.0))
    1.0
    """
    s = as_scores(score_s, "score_s")
    b = as_scores(score_b, "score_b")
    if s.size == 0 or b.size == 0:
        raise MetricError("separation needs at least one signal and one background score")
    ws = as_weights(weight_s, s.size, "weight_s")
    wb = as_weights(weight_b, b.size, "weight_b")
    if int(bins) < 1:
        raise MetricError(f"bins must be a positive integer, got {bins}")
    if range is None:
        both = np.concatenate([s, b])
        both = both[np.isfinite(both)]
        if both.size == 0:
            raise MetricError("separation needs finite scores to choose a histogram range")
        lo, hi = float(both.min()), float(both.max())
        if hi == lo:  # all scores equal: the two shapes are identical
            lo, hi = lo - 0.5, hi + 0.5
    else:
        lo, hi = float(range[0]), float(range[1])
        if not hi > lo:
            raise MetricError(f"range must be (low, high) with high > low, got {range}")
    hs, _ = np.histogram(s, bins=int(bins), range=(lo, hi), weights=ws)
    hb, _ = np.histogram(b, bins=int(bins), range=(lo, hi), weights=wb)
    for label, h in (("signal", hs), ("background", hb)):
        if not h.sum() > 0:
            raise MetricError(
                f"{label} histogram has total weight {h.sum():g} inside range ({lo:g}, {hi:g}); "
                "it cannot be normalised"
            )
    ps, pb = hs / hs.sum(), hb / hb.sum()
    tot = ps + pb
    ok = tot > 0
    return float(0.5 * np.sum((ps[ok] - pb[ok]) ** 2 / tot[ok]))
