"""Reweighting closure: effective sample size, weighted chi2 and KS, clipping, calibration.

numpy only (scipy lazily, through :func:`fivesigma.metrics.overtraining.ks_test`).

- :func:`effective_sample_size` Kish's ``(sum w)^2 / sum w^2``;
- :func:`chi2_ndf` the chi2 between a weighted source histogram and a weighted target
  histogram (both normalised to unit area, bin uncertainties from ``sum w^2``);
- :func:`closure` chi2/ndf and KS of every feature of a weighted source against a target;
- :func:`clip_weights` caps weights and reports what it did (never silently);
- :func:`classifier_weights` ``w = p / (1 - p)`` from classifier probabilities;
- :func:`reliability_curve` the calibration of a classifier's probabilities.

>>> import numpy as np
>>> effective_sample_size(np.ones(10))
10.0
>>> w, info = clip_weights(np.array([1.0, 2.0, 100.0]), 10.0)
>>> w.tolist(), info["n_clipped"]
([1.0, 2.0, 10.0], 1)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fivesigma.metrics._validate import MetricError, as_scores, as_weights
from fivesigma.metrics.overtraining import ks_test

__all__ = [
    "chi2_ndf",
    "classifier_weights",
    "clip_weights",
    "closure",
    "effective_sample_size",
    "quantile_edges",
    "reliability_curve",
]


def effective_sample_size(weight: object) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` (0 for no weight)."""
    w = np.asarray(weight, dtype=np.float64).ravel()
    if w.size and not np.all(np.isfinite(w)):
        raise MetricError(f"weights hold {int(np.sum(~np.isfinite(w)))} non-finite value(s)")
    s2 = float(np.sum(w**2))
    return float(np.sum(w) ** 2 / s2) if s2 > 0 else 0.0


def quantile_edges(values: object, bins: int = 20, weight: object | None = None) -> np.ndarray:
    """Bin edges at the (weighted) quantiles of ``values``; outer edges are -inf, +inf.

    Repeated quantiles (a discrete feature such as a multiplicity) collapse into one edge,
    and the inner edges sit half way between neighbouring distinct values, so every
    integer lands in the middle of a bin rather than on an edge.
    """
    x = as_scores(values, "values")
    if x.size == 0:
        raise MetricError("values are empty; binning needs at least one event")
    w = as_weights(weight, x.size, "weight")
    order = np.argsort(x, kind="stable")
    xs, cw = x[order], np.cumsum(w[order])
    probs = np.linspace(0, 1, bins + 1)[1:-1] * cw[-1]
    cuts = xs[np.clip(np.searchsorted(cw, probs), 0, xs.size - 1)]
    distinct = np.unique(xs)
    inner = []
    for c in np.unique(cuts):
        k = np.searchsorted(distinct, c, side="right")  # first distinct value above c
        if k < distinct.size:
            inner.append(0.5 * (c + distinct[k]))
    return np.concatenate([[-np.inf], np.unique(inner), [np.inf]])


def _hist(x: np.ndarray, w: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, edges.size - 2)
    n = edges.size - 1
    return np.bincount(idx, weights=w, minlength=n), np.bincount(idx, weights=w**2, minlength=n)


def chi2_ndf(
    source: object,
    target: object,
    source_weight: object | None = None,
    target_weight: object | None = None,
    edges: object | int = 20,
) -> dict[str, float]:
    """Chi2 between the normalised weighted histograms of ``source`` and ``target``.

    ``chi2 = sum_i (p_i - q_i)^2 / (s_i^2 + t_i^2)`` with ``p_i = sum_{bin i} w / sum w``
    and ``s_i^2 = sum_{bin i} w^2 / (sum w)^2`` (likewise ``q_i, t_i`` of the target),
    over the bins where either sample has events; ``ndf`` is that number of bins minus one
    (the normalisation).  ``edges``: an array, or a bin count for quantile bins of the
    target (:func:`quantile_edges`).  Unweighted and with equal sizes this is the usual
    two-sample chi2 of histograms; under the null hypothesis chi2/ndf is about 1.

    Returns ``{"chi2", "ndf", "chi2_ndf", "p_value"}`` (p from the chi2 distribution, via
    scipy).
    """
    a = as_scores(source, "source")
    b = as_scores(target, "target")
    if a.size == 0 or b.size == 0:
        raise MetricError(
            f"chi2 needs events in both samples, got {a.size} source and {b.size} target"
        )
    wa = as_weights(source_weight, a.size, "source weight")
    wb = as_weights(target_weight, b.size, "target weight")
    if not (wa.sum() > 0 and wb.sum() > 0):
        raise MetricError("chi2 needs a positive total weight in both samples")
    e = (quantile_edges(b, int(edges), wb) if np.ndim(edges) == 0
         else np.asarray(edges, dtype=np.float64))  # fmt: skip
    ha, va = _hist(a, wa, e)
    hb, vb = _hist(b, wb, e)
    sa, sb = wa.sum(), wb.sum()
    var = va / sa**2 + vb / sb**2
    used = var > 0
    chi2 = float(np.sum((ha[used] / sa - hb[used] / sb) ** 2 / var[used]))
    ndf = max(int(used.sum()) - 1, 1)
    from fivesigma.core import extras

    p = float(extras.scipy("stats").chi2.sf(chi2, ndf))
    return {"chi2": chi2, "ndf": float(ndf), "chi2_ndf": chi2 / ndf, "p_value": p}


def closure(
    source: Mapping[str, object],
    target: Mapping[str, object],
    source_weight: object | None = None,
    target_weight: object | None = None,
    features: Sequence[str] | None = None,
    bins: int = 20,
) -> dict[str, dict[str, float]]:
    """Per feature: chi2/ndf (:func:`chi2_ndf`, quantile bins of the target) and the
    weighted KS statistic and p-value (:func:`fivesigma.metrics.ks_test`)."""
    names = list(features) if features is not None else list(target)
    out: dict[str, dict[str, float]] = {}
    for name in names:
        if name not in source or name not in target:
            raise MetricError(f"feature {name!r} is missing from the source or the target")
        c = chi2_ndf(source[name], target[name], source_weight, target_weight, bins)
        d, p = ks_test(source[name], target[name], source_weight, target_weight)
        out[name] = {**c, "ks": d, "ks_p_value": p}
    return out


def classifier_weights(probability: object, eps: float = 1e-7) -> np.ndarray:
    """``w = p / (1 - p)``: the likelihood ratio from a classifier of target (1) against
    source (0) trained with equal total weight per class.  ``p`` is kept inside
    ``[eps, 1 - eps]`` so that a saturated output gives a large finite weight (which
    :func:`clip_weights` then caps and reports) rather than infinity."""
    p = as_scores(probability, "probability")
    if np.any((p < 0) | (p > 1)):
        raise MetricError("probabilities must lie in [0, 1]")
    p = np.clip(p, eps, 1.0 - eps)
    return p / (1.0 - p)


def clip_weights(
    weight: object, max_weight: float | None = None, quantile: float | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Cap weights at ``max_weight`` (or at the ``quantile`` of the weights, whichever is
    lower) and report it: ``n_clipped``, ``fraction_clipped``, the cap, the largest weight
    before, and ``weight_fraction_removed`` (the share of the total weight cut off).
    Non-finite weights are capped as well and counted in ``n_nonfinite``."""
    w = np.asarray(weight, dtype=np.float64).ravel().copy()
    nonfinite = ~np.isfinite(w)
    if np.any(np.isnan(w)):
        raise MetricError(f"weights hold {int(np.isnan(w).sum())} NaN value(s)")
    cap = np.inf if max_weight is None else float(max_weight)
    finite = w[~nonfinite]
    if quantile is not None and finite.size:
        cap = min(cap, float(np.quantile(finite, quantile)))
    before = float(np.max(w)) if w.size else 0.0
    over = w > cap
    total = float(np.sum(np.where(nonfinite, 0.0, w)))
    removed = float(np.sum(w[over & ~nonfinite] - cap)) if np.isfinite(cap) else 0.0
    w[over] = cap
    info = {
        "max_weight": cap if np.isfinite(cap) else None,
        "n_clipped": int(over.sum()),
        "n_nonfinite": int(nonfinite.sum()),
        "fraction_clipped": float(over.mean()) if w.size else 0.0,
        "largest_before": before,
        "weight_fraction_removed": removed / total if total > 0 else 0.0,
    }
    return w, info


def reliability_curve(
    probability: object, label: object, weight: object | None = None, bins: int = 10
) -> dict[str, Any]:
    """Calibration of probabilities: per bin of ``p`` (equal width in [0, 1]) the mean
    predicted ``p`` and the observed (weighted) fraction of label 1, and the expected
    calibration error ``ECE = sum_bins W_bin |observed - predicted| / W``."""
    p = as_scores(probability, "probability")
    y = np.asarray(label).ravel()
    if y.size != p.size:
        raise MetricError(f"label has {y.size} entries, probability {p.size}")
    w = as_weights(weight, p.size, "weight")
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    wsum = np.bincount(idx, weights=w, minlength=bins)
    pred = np.bincount(idx, weights=w * p, minlength=bins)
    obs = np.bincount(idx, weights=w * (y == 1), minlength=bins)
    used = wsum > 0
    safe = np.where(used, wsum, 1.0)
    predicted, observed = pred / safe, obs / safe
    ece = float(np.sum(wsum[used] * np.abs(observed[used] - predicted[used])) / wsum.sum())
    return {
        "bin_edges": np.linspace(0, 1, bins + 1).tolist(),
        "predicted": [float(v) if u else None for v, u in zip(predicted, used, strict=True)],
        "observed": [float(v) if u else None for v, u in zip(observed, used, strict=True)],
        "weight": wsum.tolist(),
        "ece": ece,
    }
