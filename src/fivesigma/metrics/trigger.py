"""Trigger rates: thresholds that meet a rate budget and the signal efficiency they give.

A Level-1 trigger sees every filled bunch crossing.  Its output rate is the fraction of
zero-bias (unbiased) events that pass, times the bunch-crossing rate (40 MHz) and the
fraction of bunch slots that are filled (2544/3564 in Run-3 fills).  An event passes when
its score is strictly above the threshold.

>>> import numpy as np
>>> zb = np.arange(1000.0)                     # scores of 1000 zero-bias events
>>> r = threshold_for_rate(zb, budget_khz=100.0, input_rate_khz=10_000.0)
>>> r["threshold"], r["n_pass"], round(r["rate_khz"], 3)
(989.0, 10, 100.0)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fivesigma.core import extras
from fivesigma.metrics._validate import MetricError

__all__ = ["efficiency_at", "rate_curve", "threshold_for_rate"]


def _scores(values: Any, name: str) -> np.ndarray:
    s = np.asarray(values, dtype=np.float64).ravel()
    if s.size == 0:
        raise MetricError(f"{name} is empty; give one score per event")
    bad = int(np.count_nonzero(~np.isfinite(s)))
    if bad:
        raise MetricError(f"{name} has {bad} non-finite score(s); a trigger score must be finite")
    return s


def _clopper_pearson(k: int, n: int, cl: float = 0.6827) -> tuple[float, float]:
    beta = extras.scipy("stats").beta
    alpha = 1.0 - cl
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def threshold_for_rate(
    zerobias_scores: Any, budget_khz: float, input_rate_khz: float
) -> dict[str, Any]:
    """The lowest threshold whose zero-bias rate is within ``budget_khz``.

    Returns ``threshold``, ``n_pass`` (zero-bias events strictly above it), ``n_events``,
    ``rate_khz`` (the rate it gives, at most the budget) and ``rate_interval_khz`` (68%
    Clopper-Pearson interval from the zero-bias count).  A budget below one zero-bias
    event's worth of rate (``input_rate_khz / n_events``) is too fine for the sample: the
    threshold then passes no event and ``resolved`` is False.
    """
    s = _scores(zerobias_scores, "zerobias_scores")
    if not 0 < budget_khz < input_rate_khz:
        raise MetricError(
            f"budget {budget_khz:g} kHz must be between 0 and the input rate {input_rate_khz:g} kHz"
        )
    n = s.size
    allowed = int(np.floor(budget_khz / input_rate_khz * n + 1e-9))
    ordered = np.sort(s)[::-1]
    # pass = score > threshold: the threshold sits at the (allowed+1)-th highest score, so
    # ties there may pass fewer than allowed, never more
    threshold = float(ordered[-1]) - 1.0 if allowed >= n else float(ordered[allowed])
    k = int(np.count_nonzero(s > threshold))
    low, high = _clopper_pearson(k, n)
    return {
        "threshold": threshold,
        "n_pass": k,
        "n_events": n,
        "rate_khz": k / n * input_rate_khz,
        "rate_interval_khz": (low * input_rate_khz, high * input_rate_khz),
        "resolved": allowed >= 1,
        "budget_khz": float(budget_khz),
    }


def efficiency_at(scores: Any, threshold: float) -> dict[str, float]:
    """Fraction of ``scores`` strictly above ``threshold`` with its 68% interval."""
    s = _scores(scores, "scores")
    k = int(np.count_nonzero(s > threshold))
    low, high = _clopper_pearson(k, s.size)
    return {"efficiency": k / s.size, "low": low, "high": high, "n_pass": k, "n_events": s.size}


def rate_curve(
    zerobias_scores: Any,
    signal_scores: Any,
    input_rate_khz: float,
    points: int = 200,
) -> dict[str, np.ndarray]:
    """Rate (kHz) against signal efficiency over thresholds at the zero-bias quantiles.

    Thresholds are the distinct zero-bias scores (up to ``points`` of them, spaced in
    log of the pass fraction), so the curve reaches down to one zero-bias event.
    """
    zb = np.sort(_scores(zerobias_scores, "zerobias_scores"))[::-1]
    sig = np.sort(_scores(signal_scores, "signal_scores"))
    n = zb.size
    ranks = np.unique(np.round(np.geomspace(1, n, points)).astype(int)) - 1
    thresholds = zb[ranks]
    n_zb = n - np.searchsorted(zb[::-1], thresholds, side="right")
    n_sig = sig.size - np.searchsorted(sig, thresholds, side="right")
    return {
        "threshold": thresholds,
        "rate_khz": n_zb / n * input_rate_khz,
        "efficiency": n_sig / sig.size,
    }
