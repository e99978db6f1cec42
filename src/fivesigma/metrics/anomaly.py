"""Anomaly-detection figures of merit: the significance improvement curve (SIC) and friends.

Weakly supervised and unsupervised anomaly detectors (CWoLa, CATHODE, autoencoders) are
judged by how much a cut on their score raises the significance of a small signal,
``SIC = eps_S / sqrt(eps_B)``, on a labelled test set (LHC Olympics 2020 R&D data set).

Conventions are those of :mod:`fivesigma.metrics.roc`: label 1 = signal, a higher score
is more signal-like, an event passes a threshold ``t`` when ``score >= t``, efficiencies
are sums of signed weights over the class total.  The low-eps_B end of the SIC is noisy,
so :func:`max_sic` takes the maximum only over cuts that keep enough *unweighted*
background events (25 by default: 20% relative uncertainty on eps_B, as in the CATHODE
paper, arXiv:2109.00546).  Results of several retrainings are combined by
:func:`sic_band` (curves) and :func:`summarise_runs` (numbers).

Bad input raises :class:`AnomalyMetricError`, which is both a
:class:`~fivesigma.metrics.MetricError` and a :class:`~fivesigma.errors.DataError`.

>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> labels = np.r_[np.zeros(20_000), np.ones(2_000)]
>>> scores = np.r_[rng.normal(0, 1, 20_000), rng.normal(2, 1, 2_000)]
>>> best = max_sic(scores, labels)
>>> 3.5 < best["max_sic"] < 5.5 and best["n_background_pass"] >= 25
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from fivesigma.errors import DataError
from fivesigma.metrics._validate import (
    MetricError,
    as_labels,
    as_scores,
    as_weights,
    check_classes,
)
from fivesigma.metrics.roc import _interp_first_crossing, _roc_from_arrays

__all__ = [
    "AnomalyMetricError",
    "max_sic",
    "sic_band",
    "sic_curve",
    "signal_efficiency_at",
    "summarise_runs",
]


class AnomalyMetricError(MetricError, DataError):
    """Inputs to an anomaly metric cannot be used (one class only, NaN scores, lengths)."""


def _prepare(scores: object, labels: object, weights: object | None):
    """Validated (is_signal, scores, weights), re-raising the shared checks' errors as ours."""
    try:
        s = as_scores(scores, name="scores")
        y = as_labels(labels, s.size, name="labels")
        w = as_weights(weights, s.size, name="weights")
        check_classes(y, w, name="labels")
    except MetricError as err:
        raise AnomalyMetricError(str(err)) from None
    return y, s, w


def _curves(y: np.ndarray, s: np.ndarray, w: np.ndarray):
    """Weighted ROC plus the unweighted number of background events passing each point."""
    eps_b, eps_s, thr = _roc_from_arrays(y, s, w)
    # Same sort and tie grouping as the weighted curve, so the points line up one to one.
    eps_b_unw, _, _ = _roc_from_arrays(y, s, np.ones_like(w))
    n_b = int(np.count_nonzero(~y))
    n_b_pass = np.rint(eps_b_unw * n_b).astype(np.int64)
    return eps_b, eps_s, thr, n_b_pass, n_b


def sic_curve(scores: object, labels: object, weights: object | None = None) -> dict:
    """The significance improvement curve eps_S / sqrt(eps_B) over every threshold.

    Points where eps_B <= 0 (the tightest cuts, which keep no background, and
    negative-weight fluctuations) have no SIC and are left out of *all* arrays, so the
    arrays stay aligned.

    Parameters
    ----------
    scores : anomaly score per event, higher = more signal-like; NaN is an error.
    labels : 1 = signal, 0 = background (bool or 0/1).
    weights : per-event weights (default ones); negative weights are allowed.

    Returns
    -------
    dict
        ``{"eps_s", "eps_b", "sic", "thresholds"}``: arrays of equal length, thresholds
        decreasing (eps_S and eps_B increasing for positive weights).

    Examples
    --------
    >>> c = sic_curve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    >>> [round(float(v), 4) for v in c["sic"]]
    [0.7071, 1.4142, 1.0]
    """
    y, s, w = _prepare(scores, labels, weights)
    eps_b, eps_s, thr = _roc_from_arrays(y, s, w)
    keep = eps_b > 0
    return {
        "eps_s": eps_s[keep],
        "eps_b": eps_b[keep],
        "sic": eps_s[keep] / np.sqrt(eps_b[keep]),
        "thresholds": thr[keep],
    }


def max_sic(
    scores: object,
    labels: object,
    weights: object | None = None,
    *,
    max_rel_uncertainty: float = 0.2,
) -> dict:
    """The maximum of the SIC over cuts that keep enough background to measure eps_B.

    Only cuts whose relative statistical uncertainty on eps_B, ``1/sqrt(N_B)`` with
    ``N_B`` the *unweighted* number of background events passing, is at most
    ``max_rel_uncertainty`` are considered (``N_B >= 25`` for the default 0.2).  The
    count is unweighted on purpose: it measures how many test events the estimate rests
    on, whatever their weights.

    Returns
    -------
    dict
        ``{"max_sic", "eps_s", "eps_b", "threshold", "n_background_pass"}`` at the best
        cut (the loosest one when several cuts tie).

    Raises
    ------
    AnomalyMetricError
        one class only, NaN scores, or fewer background events in the whole test set than
        the uncertainty requirement needs.

    Examples
    --------
    >>> scores = np.r_[np.linspace(0, 1, 100), np.linspace(0.5, 1.5, 100)]
    >>> labels = np.r_[np.zeros(100), np.ones(100)]
    >>> best = max_sic(scores, labels)
    >>> best["n_background_pass"], round(best["max_sic"], 3)
    (25, 1.5)
    """
    if not (isinstance(max_rel_uncertainty, int | float) and max_rel_uncertainty > 0):
        raise AnomalyMetricError(
            f"max_rel_uncertainty must be a number > 0, got {max_rel_uncertainty!r}"
        )
    y, s, w = _prepare(scores, labels, weights)
    eps_b, eps_s, thr, n_b_pass, n_b = _curves(y, s, w)
    # 1/sqrt(N) <= r  <=>  N >= 1/r^2; the tolerance keeps r = 0.2 at exactly N = 25.
    n_min = math.ceil(1.0 / max_rel_uncertainty**2 - 1e-9)
    ok = (n_b_pass >= n_min) & (eps_b > 0)
    if not np.any(ok):
        raise AnomalyMetricError(
            f"the test set has {n_b} background event(s) but max_rel_uncertainty="
            f"{max_rel_uncertainty:g} needs at least {n_min} passing a cut; "
            "use more background events or a larger max_rel_uncertainty"
        )
    sic = np.full(eps_s.shape, -np.inf)
    sic[ok] = eps_s[ok] / np.sqrt(eps_b[ok])
    # argmax on the reversed array: on ties take the loosest cut (more background, less noise).
    i = sic.size - 1 - int(np.argmax(sic[::-1]))
    return {
        "max_sic": float(sic[i]),
        "eps_s": float(eps_s[i]),
        "eps_b": float(eps_b[i]),
        "threshold": float(thr[i]),
        "n_background_pass": int(n_b_pass[i]),
    }


def signal_efficiency_at(
    scores: object,
    labels: object,
    eps_b: float | Iterable[float] = (1e-2, 1e-3, 1e-4),
    weights: object | None = None,
) -> dict[float, float]:
    """Signal efficiency at fixed background efficiencies, interpolated linearly on the ROC.

    A working point eps_B can only be measured when the test set holds at least about
    ``1/eps_B`` background events (unweighted): with fewer, not even one background event
    would pass and the value would be an extrapolation.  Such targets give ``nan``
    (``N_B * eps_B < 1``).  Elsewhere the result is that of
    :func:`fivesigma.metrics.eff_s_at_eff_b` (the highest eps_S on a vertical step).

    Parameters
    ----------
    eps_b : one target or several, each in (0, 1].

    Returns
    -------
    dict mapping each target eps_B to eps_S (``nan`` where unmeasurable).

    Examples
    --------
    >>> signal_efficiency_at([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], [0.5, 0.1])
    {0.5: 1.0, 0.1: nan}
    """
    targets = np.atleast_1d(np.asarray(eps_b, dtype=np.float64))
    if targets.ndim != 1 or targets.size == 0:
        raise AnomalyMetricError("eps_b must be a number or a 1-d list of numbers in (0, 1]")
    bad = targets[~((targets > 0) & (targets <= 1))]
    if bad.size:
        raise AnomalyMetricError(f"eps_b targets must lie in (0, 1]; got {bad[:5].tolist()}")
    y, s, w = _prepare(scores, labels, weights)
    roc_b, roc_s, _ = _roc_from_arrays(y, s, w)
    n_b = int(np.count_nonzero(~y))
    out: dict[float, float] = {}
    for t in (float(v) for v in targets):
        out[t] = float("nan") if n_b * t < 1 else _interp_first_crossing(roc_b, roc_s, t, "right")
    return out


def _default_grid() -> np.ndarray:
    return np.geomspace(0.01, 1.0, 100)


def _sic_on_grid(curve: dict, grid: np.ndarray, index: int) -> np.ndarray:
    """SIC of one curve linearly interpolated at ``grid`` eps_S values; nan off its range."""
    if not isinstance(curve, dict) or "eps_s" not in curve or "sic" not in curve:
        raise AnomalyMetricError(
            f"curve {index} must be a dict with 'eps_s' and 'sic' arrays (from sic_curve)"
        )
    es = np.asarray(curve["eps_s"], dtype=np.float64).reshape(-1)
    sic = np.asarray(curve["sic"], dtype=np.float64).reshape(-1)
    if es.size != sic.size:
        raise AnomalyMetricError(
            f"curve {index} has {es.size} eps_s but {sic.size} sic values; they must match"
        )
    finite = np.isfinite(es) & np.isfinite(sic)
    es, sic = es[finite], sic[finite]
    if es.size == 0:
        return np.full(grid.shape, np.nan)
    # Order by eps_s; on a vertical step (same eps_s, more background) keep the highest SIC,
    # which is the tightest cut reaching that eps_s, so the interpolation is single-valued.
    order = np.lexsort((-sic, es))
    es, sic = es[order], sic[order]
    first = np.r_[True, es[1:] != es[:-1]]
    es, sic = es[first], sic[first]
    out = np.interp(grid, es, sic) if es.size > 1 else np.where(grid == es[0], sic[0], np.nan)
    out[(grid < es[0]) | (grid > es[-1])] = np.nan
    return out


def sic_band(curves: Sequence[dict], eps_s_grid: object | None = None) -> dict:
    """Median and 68% band of the SIC of several retrainings on a common eps_S grid.

    Each curve (from :func:`sic_curve`) is interpolated linearly in eps_S onto the grid;
    a grid point outside a curve's eps_S range is missing for that curve.  At each grid
    point the statistics use the curves that reach it (``n``).

    Parameters
    ----------
    curves : dicts with ``"eps_s"`` and ``"sic"`` arrays.
    eps_s_grid : increasing eps_S values (default 100 log-spaced points from 0.01 to 1).

    Returns
    -------
    dict
        ``{"eps_s", "median", "lo", "hi", "mean", "std", "n"}``: arrays over the grid;
        ``lo``/``hi`` are the 16th/84th percentiles (linear interpolation between runs),
        ``std`` the sample standard deviation (ddof = 1; nan where ``n < 2``); all are nan
        where ``n == 0``.
    """
    if isinstance(curves, dict) or len(curves) == 0:
        raise AnomalyMetricError("curves must be a non-empty list of sic_curve() dicts")
    grid = _default_grid() if eps_s_grid is None else np.asarray(eps_s_grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)):
        raise AnomalyMetricError("eps_s_grid must be a non-empty 1-d array of finite numbers")
    if np.any(np.diff(grid) <= 0):
        raise AnomalyMetricError("eps_s_grid must be strictly increasing")
    table = np.vstack([_sic_on_grid(c, grid, i) for i, c in enumerate(curves)])
    n = np.count_nonzero(np.isfinite(table), axis=0)
    median = np.full(grid.shape, np.nan)
    lo, hi, mean, std = median.copy(), median.copy(), median.copy(), median.copy()
    some = n > 0
    if np.any(some):
        sub = table[:, some]
        # Columns with data but a few nan rows: nan-aware statistics over the runs present.
        median[some] = np.nanmedian(sub, axis=0)
        lo[some] = np.nanpercentile(sub, 16.0, axis=0)
        hi[some] = np.nanpercentile(sub, 84.0, axis=0)
        mean[some] = np.nanmean(sub, axis=0)
    two = n > 1
    if np.any(two):
        std[two] = np.nanstd(table[:, two], axis=0, ddof=1)
    return {
        "eps_s": grid,
        "median": median,
        "lo": lo,
        "hi": hi,
        "mean": mean,
        "std": std,
        "n": n,
    }


def summarise_runs(values: Sequence[float]) -> dict[str, Any]:
    """Mean, spread and range of one number (e.g. the max SIC) over K retrainings.

    Returns ``{"mean", "std", "median", "min", "max", "n"}``; ``std`` is the sample
    standard deviation (ddof = 1), nan for a single run.

    >>> summarise_runs([2.0, 3.0, 4.0])
    {'mean': 3.0, 'std': 1.0, 'median': 3.0, 'min': 2.0, 'max': 4.0, 'n': 3}
    """
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise AnomalyMetricError("values is empty; give one number per retraining")
    n_bad = int(np.count_nonzero(~np.isfinite(arr)))
    if n_bad:
        raise AnomalyMetricError(
            f"values has {n_bad} non-finite value(s) out of {arr.size}; drop failed runs first"
        )
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=1)) if arr.size > 1 else float("nan"),
        "median": float(np.median(arr)),
        "min": float(arr.min()),
        "max": float(arr.max()),
        "n": int(arr.size),
    }
