"""Discovery significance: Asimov Z (with background uncertainty), cut scans and the SIC."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fivesigma.metrics._validate import MetricError, as_labels, as_scores, as_weights, check_classes
from fivesigma.metrics.roc import roc_curve

__all__ = ["CutScan", "CutScanBest", "asimov_z", "cut_scan", "sic"]


def asimov_z(s: object, b: object, rel_unc_b: object = 0.0) -> np.ndarray | float:
    """Median discovery significance from the Asimov data set (Cowan et al. 2011).

    Without uncertainty ``Z = sqrt(2((s+b) ln(1+s/b) - s))``; with a relative background
    uncertainty ``r`` (sigma = r * b) the profile-likelihood formula

    ``Z = sqrt(2((s+b) ln((s+b)(b+σ²)/(b²+(s+b)σ²)) - (b²/σ²) ln(1+σ² s/(b(b+σ²)))))``.

    Vectorised over ``s``, ``b`` and ``rel_unc_b`` (numpy broadcasting); a scalar in gives
    a float out.  ``b <= 0``, ``s + b <= 0`` or ``rel_unc_b < 0`` give ``nan`` (no test is
    defined).  A deficit ``s < 0`` gives a *negative* Z of the same magnitude formula so
    that scans stay continuous; the argument of the square root is clipped at 0 against
    rounding.  For ``s << b`` it tends to ``s / sqrt(b)``.

    Examples
    --------
    >>> round(asimov_z(10.0, 100.0), 3)
    0.984
    >>> round(asimov_z(10.0, 100.0, rel_unc_b=0.1), 3)
    0.69
    """
    s_arr, b_arr, r_arr = np.broadcast_arrays(
        np.asarray(s, dtype=np.float64),
        np.asarray(b, dtype=np.float64),
        np.asarray(rel_unc_b, dtype=np.float64),
    )
    scalar = s_arr.ndim == 0
    s_arr, b_arr, r_arr = (np.atleast_1d(x) for x in (s_arr, b_arr, r_arr))
    z = np.full(s_arr.shape, np.nan)
    valid = (b_arr > 0) & (s_arr + b_arr > 0) & (r_arr >= 0) & np.isfinite(s_arr + b_arr + r_arr)
    plain = valid & (r_arr == 0)
    unc = valid & (r_arr > 0)
    q = np.zeros(s_arr.shape)
    if np.any(plain):
        sp, bp = s_arr[plain], b_arr[plain]
        q[plain] = 2.0 * ((sp + bp) * np.log1p(sp / bp) - sp)
    if np.any(unc):
        su, bu = s_arr[unc], b_arr[unc]
        var = (r_arr[unc] * bu) ** 2  # σ² in events²
        n = su + bu
        # ln((s+b)(b+σ²)/(b²+(s+b)σ²)) written as log1p of (ratio - 1) = b s/(b²+(s+b)σ²):
        # the ratio is ~1 for s << b and a plain log would lose most digits there.
        term1 = n * np.log1p(bu * su / (bu**2 + n * var))
        term2 = (bu**2 / var) * np.log1p(var * su / (bu * (bu + var)))
        q[unc] = 2.0 * (term1 - term2)
    z[valid] = np.sign(s_arr[valid]) * np.sqrt(np.clip(q[valid], 0.0, None))
    return float(z[0]) if scalar else z


@dataclass(frozen=True)
class CutScanBest:
    """The threshold with the highest Z (``z_asimov_unc``) passing the background guard."""

    index: int
    threshold: float
    s: float
    b: float
    z: float


@dataclass(frozen=True)
class CutScan:
    """Result of :func:`cut_scan`: one entry per threshold (keep events with score >= t)."""

    thresholds: np.ndarray
    s: np.ndarray
    b: np.ndarray
    s_over_sqrt_b: np.ndarray
    z_asimov: np.ndarray
    z_asimov_unc: np.ndarray
    best: CutScanBest


def _passing_sums(scores: np.ndarray, w: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """sum(w[scores >= t]) for every t, via one sort and a reverse cumulative sum."""
    order = np.argsort(scores, kind="stable")
    s_sorted = scores[order]
    # tail[i] = sum of weights of sorted events i..end; tail[n] = 0.
    tail = np.r_[np.cumsum(w[order][::-1])[::-1], 0.0]
    return tail[np.searchsorted(s_sorted, thresholds, side="left")]


def cut_scan(
    y: object,
    score: object,
    weight: object | None = None,
    n_thresholds: int = 200,
    rel_unc_b: float = 0.0,
    scale: float = 1.0,
    min_b: float | None = None,
    thresholds: object | None = None,
) -> CutScan:
    """Scan a lower cut on the score and compute s, b and significances after each cut.

    ``s`` and ``b`` are the weighted sums of signal / background events with
    ``score >= threshold``, multiplied by ``scale`` (e.g. ``1 / test_fraction`` to scale a
    test split back to the full sample).  Negative weights enter the sums with their sign.

    Thresholds default to ``n_thresholds`` quantiles of all scores (evenly spaced in event
    count, so peaked classifier outputs are resolved where the events are), duplicates
    removed; pass ``thresholds=`` to choose them yourself.

    ``best`` maximises ``z_asimov_unc`` (= ``z_asimov`` when ``rel_unc_b`` is 0) among
    thresholds with ``b >= min_b``; ``min_b`` defaults to ``1e-3 * max(b)`` so a cut keeping
    almost no background (where Z is dominated by statistical noise) is not picked.
    ``s_over_sqrt_b`` is ``nan`` where ``b <= 0``.

    Examples
    --------
    >>> scan = cut_scan([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], thresholds=[0.1, 0.35, 0.8])
    >>> scan.s.tolist(), scan.b.tolist()
    ([2.0, 2.0, 1.0], [2.0, 1.0, 0.0])
    >>> scan.best.threshold
    0.35
    """
    sc = as_scores(score)
    is_sig = as_labels(y, sc.size, "y")
    w = as_weights(weight, sc.size)
    check_classes(is_sig, w, "y")
    if not (np.isfinite(scale) and scale > 0):
        raise MetricError(f"scale must be a positive finite number, got {scale}")
    if not rel_unc_b >= 0:
        raise MetricError(
            f"rel_unc_b must be >= 0 (relative background uncertainty), got {rel_unc_b}"
        )
    if thresholds is None:
        if int(n_thresholds) < 1:
            raise MetricError(f"n_thresholds must be >= 1, got {n_thresholds}")
        finite = sc[np.isfinite(sc)]
        if finite.size == 0:
            raise MetricError("all scores are infinite; give thresholds= explicitly")
        thr = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, int(n_thresholds))))
    else:
        thr = np.sort(as_scores(thresholds, "thresholds"))
        if thr.size == 0:
            raise MetricError("thresholds is empty; give at least one cut value")
    s_pass = scale * _passing_sums(sc[is_sig], w[is_sig], thr)
    b_pass = scale * _passing_sums(sc[~is_sig], w[~is_sig], thr)
    with np.errstate(divide="ignore", invalid="ignore"):
        s_over_sqrt_b = np.where(
            b_pass > 0, s_pass / np.sqrt(np.clip(b_pass, 1e-300, None)), np.nan
        )
    z_a = np.asarray(asimov_z(s_pass, b_pass))
    z_u = np.asarray(asimov_z(s_pass, b_pass, rel_unc_b)) if rel_unc_b > 0 else z_a.copy()
    b_max = float(np.max(b_pass))
    guard = 1e-3 * b_max if min_b is None else float(min_b)
    allowed = (b_pass >= guard) & (b_pass > 0) & np.isfinite(z_u)
    if not np.any(allowed):
        raise MetricError(
            f"no threshold keeps background b >= min_b={guard:g} with a defined Z "
            f"(largest b is {b_max:g}); lower min_b or check the weights"
        )
    idx = int(np.flatnonzero(allowed)[np.argmax(z_u[allowed])])
    best = CutScanBest(
        index=idx,
        threshold=float(thr[idx]),
        s=float(s_pass[idx]),
        b=float(b_pass[idx]),
        z=float(z_u[idx]),
    )
    return CutScan(
        thresholds=thr,
        s=s_pass,
        b=b_pass,
        s_over_sqrt_b=s_over_sqrt_b,
        z_asimov=z_a,
        z_asimov_unc=z_u,
        best=best,
    )


def sic(
    y: object, score: object, weight: object | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Significance improvement curve eps_S / sqrt(eps_B) on the points of the weighted ROC.

    Returns ``(eff_s, sic, thresholds)``; ``sic`` is ``nan`` where ``eps_B <= 0`` (the
    curve's first point, and negative-weight fluctuations) instead of taking a square
    root of a non-positive number.  The low-eps_B end is statistically noisy: apply your
    own minimum-background requirement before quoting the maximum.

    Examples
    --------
    >>> es, value, t = sic([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> [round(float(v), 4) for v in value[2:]]
    [0.7071, 1.4142, 1.0]
    """
    eff_b, eff_s, thr = roc_curve(y, score, weight)
    pos = eff_b > 0
    out = np.full(eff_s.shape, np.nan)
    out[pos] = eff_s[pos] / np.sqrt(eff_b[pos])
    return eff_s, out, thr
