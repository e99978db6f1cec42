"""Closed-form asymptotic results for binned counting experiments (no fit, no pyhf).

The fallback of :func:`fivesigma.stats.robust_stats` when the pyhf fits fail: Cowan,
Cranmer, Gross and Vitells (arXiv:1007.1727) Asimov formulae, bin by bin, combined as
independent bins (q adds up).

* Discovery: per bin the median significance on Asimov data at mu = 1,
  ``Z_A = sqrt(2((s+b) ln(1+s/b) - s))``; with a relative background uncertainty ``r``
  (sigma_b = r b, constrained by an auxiliary measurement) Cowan's profile-likelihood
  formula.  The bins combine as ``Z = sqrt(sum Z_i^2)``.
* Limit: ``q_mu`` on background-only Asimov data (n = b), per bin
  ``2 (mu s - b ln(1 + mu s/b))`` or, with ``r``, Cowan's exclusion formula; the ±Nσ
  expected CLs limit at level alpha solves ``sqrt(q_mu) = Phi^-1(1 - alpha Phi(N)) + N``.

Treating the background uncertainty as independent per bin is an approximation (pyhf's
``normsys`` is one parameter shared by all bins), and MC statistical uncertainties are
left out: the results are marked ``"method": "asimov-formula"``.

Example
-------
>>> round(asimov_significance([10.0], [100.0]), 3)
0.984
>>> lim = asimov_upper_limit([10.0], [10_000.0])
>>> round(lim["median"] / (100 / 10), 1)   # about 1.96 sigma_mu for s << b
2.0
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np

from fivesigma.stats import StatsError

__all__ = ["asimov_q_mu", "asimov_significance", "asimov_upper_limit"]

BAND_KEYS = ("-2", "-1", "+1", "+2")


def _yields(s: Any, b: Any, rel_unc_b: float) -> tuple[np.ndarray, np.ndarray, float]:
    s_arr = np.asarray(s, dtype=np.float64).reshape(-1)
    b_arr = np.asarray(b, dtype=np.float64).reshape(-1)
    if len(s_arr) == 0 or len(s_arr) != len(b_arr):
        raise StatsError(
            f"signal and background need one yield per bin, got {len(s_arr)} and {len(b_arr)}"
        )
    if not (np.all(np.isfinite(s_arr)) and np.all(np.isfinite(b_arr))):
        raise StatsError("signal and background yields must be finite")
    if np.any(b_arr <= 0):
        raise StatsError(
            f"background yield must be > 0 in every bin, got {b_arr.tolist()}; merge empty "
            "bins first (fivesigma.stats.merge_bins)"
        )
    r = float(rel_unc_b)
    if not (math.isfinite(r) and r >= 0):
        raise StatsError(f"rel_unc_b must be a finite number >= 0, got {rel_unc_b!r}")
    return np.clip(s_arr, 0.0, None), b_arr, r


def asimov_significance(s: Any, b: Any, rel_unc_b: float = 0.0) -> float:
    """Median discovery significance of independent bins with yields ``s`` over ``b``.

    ``sqrt(sum Z_A(s_i, b_i)^2)``; with ``rel_unc_b`` > 0 each bin uses Cowan's formula
    with sigma_b = ``rel_unc_b`` * b_i (see the module docstring).
    """
    s_arr, b_arr, r = _yields(s, b, rel_unc_b)
    n = s_arr + b_arr
    if r == 0:
        q = 2.0 * (n * np.log1p(s_arr / b_arr) - s_arr)
    else:
        var = (r * b_arr) ** 2
        # ln((s+b)(b+σ²)/(b²+(s+b)σ²)) as log1p(b s/(b²+(s+b)σ²)): accurate for s << b.
        term1 = n * np.log1p(b_arr * s_arr / (b_arr**2 + n * var))
        term2 = (b_arr**2 / var) * np.log1p(var * s_arr / (b_arr * (b_arr + var)))
        q = 2.0 * (term1 - term2)
    return math.sqrt(float(np.sum(np.clip(q, 0.0, None))))


def asimov_q_mu(mu: float, s: Any, b: Any, rel_unc_b: float = 0.0) -> float:
    """``q_mu`` on background-only Asimov data (n = b), summed over independent bins.

    Without uncertainty ``2 (mu s - b ln(1 + mu s / b))`` per bin; with ``rel_unc_b`` Cowan's
    exclusion formula (sigma_b = ``rel_unc_b`` * b), written so that it stays accurate as
    the uncertainty goes to 0.
    """
    s_arr, b_arr, r = _yields(s, b, rel_unc_b)
    t = float(mu) * s_arr
    if r == 0:
        q = 2.0 * (t - b_arr * np.log1p(t / b_arr))
    else:
        var = (r * b_arr) ** 2
        x = np.sqrt((t + b_arr) ** 2 - 4.0 * t * b_arr * var / (b_arr + var))
        # (b - t + x)/(2b) - 1 and (b + t - x)(1 + b/σ²), rationalised: no cancellation.
        inner = np.log1p(-2.0 * t * var / ((b_arr + var) * (x + t + b_arr)))
        q = 2.0 * (t - b_arr * np.log((b_arr + t + x) / (2.0 * b_arr)))
        q -= 2.0 * (b_arr**2 / var) * inner
        q -= 4.0 * t * b_arr / (x + t + b_arr)
    return float(np.sum(np.clip(q, 0.0, None)))


def asimov_upper_limit(
    s: Any, b: Any, rel_unc_b: float = 0.0, level: float = 0.05
) -> dict[str, Any]:
    """Expected CLs upper limit on mu with its ±1σ/±2σ band, from :func:`asimov_q_mu`.

    Returns ``{"median": float, "band": {"-2", "-1", "+1", "+2"}, "level": level}`` like
    :func:`fivesigma.stats.expected_upper_limit`.
    """
    if not 0.0 < level < 1.0:
        raise StatsError(f"CLs level must be in (0, 1), got {level!r}")
    s_arr, b_arr, r = _yields(s, b, rel_unc_b)
    if not np.any(s_arr > 0):
        raise StatsError("all signal yields are 0; no limit can be set")
    normal = NormalDist()
    limits = {}
    for key, n_sigma in (("-2", -2), ("-1", -1), ("0", 0), ("+1", 1), ("+2", 2)):
        target = normal.inv_cdf(1.0 - level * normal.cdf(n_sigma)) + n_sigma
        limits[key] = _solve_q(target * target, s_arr, b_arr, r)
    return {
        "median": limits["0"],
        "band": {k: limits[k] for k in BAND_KEYS},
        "level": level,
    }


def _solve_q(target: float, s: np.ndarray, b: np.ndarray, r: float) -> float:
    """The mu > 0 where ``asimov_q_mu`` (increasing in mu) reaches ``target``; bisection."""
    lo, hi = 0.0, 1.0
    for _ in range(2000):
        if asimov_q_mu(hi, s, b, r) >= target:
            break
        lo, hi = hi, hi * 2.0
    else:  # pragma: no cover - q grows at least like mu for any positive signal
        raise StatsError("the approximate CLs limit did not converge")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if asimov_q_mu(mid, s, b, r) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-10 * hi:
            break
    return 0.5 * (lo + hi)
