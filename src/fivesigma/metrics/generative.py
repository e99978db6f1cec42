"""Validation metrics of generative surrogates (numpy only; scipy through extras).

What a physicist checks before trusting a fast simulation against the simulation it
replaces (Vaselli et al., arXiv:2402.13684; the CaloChallenge, arXiv:2410.21611):

- :func:`wasserstein_1` per feature, also in units of the reference's standard deviation
  (:func:`wasserstein_table`);
- :func:`correlation_difference` of the feature correlation matrices;
- :func:`histogram_ratio`: two normalised histograms and their ratio with its
  statistical uncertainty (the ratio panel);
- :func:`response_profile`: mean and spread of ``reco / gen`` in bins of a gen variable;
- :func:`oversampling_gain`: how much N draws per generator-level object shrink the
  statistical uncertainty of a histogram, by a bootstrap over the objects.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> round(wasserstein_1(rng.normal(0, 1, 20000), rng.normal(0.5, 1, 20000)), 1)
0.5
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fivesigma.errors import DataError

__all__ = [
    "correlation_difference",
    "histogram_ratio",
    "oversampling_gain",
    "response_profile",
    "wasserstein_1",
    "wasserstein_table",
]


def _vector(a: Any, what: str) -> np.ndarray:
    v = np.asarray(a, dtype=np.float64).ravel()
    if v.size == 0:
        raise DataError(f"{what} is empty; need at least one value")
    if not np.all(np.isfinite(v)):
        raise DataError(f"{what} holds {int(np.sum(~np.isfinite(v)))} non-finite value(s)")
    return v


def _matrix(a: Any, what: str) -> np.ndarray:
    m = np.asarray(a, dtype=np.float64)
    if m.ndim == 1:
        m = m[:, None]
    if m.ndim != 2 or m.shape[0] == 0:
        raise DataError(f"{what} must be a non-empty (n, features) matrix, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise DataError(f"{what} holds {int(np.sum(~np.isfinite(m)))} non-finite value(s)")
    return m


def wasserstein_1(
    reference: Any,
    other: Any,
    reference_weight: Any | None = None,
    other_weight: Any | None = None,
) -> float:
    """The 1-Wasserstein (earth mover's) distance of two 1-d samples, in their units."""
    stats = _scipy_stats()
    a, b = _vector(reference, "reference"), _vector(other, "other")
    return float(stats.wasserstein_distance(a, b, reference_weight, other_weight))


def _scipy_stats() -> Any:
    from fivesigma.core import extras

    return extras.scipy("stats")


def wasserstein_table(
    reference: Any, other: Any, names: Sequence[str], other_weight: Any | None = None
) -> dict[str, dict[str, float]]:
    """Per feature: ``w1`` and ``w1_over_std`` (W1 / the reference's standard deviation,
    comparable across features) of two (n, features) matrices."""
    a, b = _matrix(reference, "reference"), _matrix(other, "other")
    if a.shape[1] != b.shape[1] or a.shape[1] != len(names):
        raise DataError(
            f"feature counts differ: reference {a.shape[1]}, other {b.shape[1]}, "
            f"names {len(names)}; they must agree"
        )
    out = {}
    for j, name in enumerate(names):
        w1 = wasserstein_1(a[:, j], b[:, j], None, other_weight)
        sd = float(np.std(a[:, j]))
        out[str(name)] = {"w1": w1, "w1_over_std": w1 / sd if sd > 0 else float("nan")}
    return out


def correlation_difference(reference: Any, other: Any) -> dict[str, Any]:
    """Pearson correlation matrices of two (n, features) samples and their difference.

    Returns ``reference``, ``other`` and ``difference`` (matrices, constant features get
    0 correlations) and ``max_abs_difference`` over the off-diagonal entries.
    """
    a, b = _matrix(reference, "reference"), _matrix(other, "other")
    if a.shape[1] != b.shape[1]:
        raise DataError(f"feature counts differ: {a.shape[1]} and {b.shape[1]}; they must agree")

    def corr(m: np.ndarray) -> np.ndarray:
        z = m - m.mean(axis=0)
        sd = np.sqrt((z**2).mean(axis=0))
        z = z / np.where(sd > 0, sd, 1.0)
        c = z.T @ z / len(m)
        np.fill_diagonal(c, 1.0)
        return c

    ca, cb = corr(a), corr(b)
    d = cb - ca
    off = ~np.eye(len(d), dtype=bool)
    return {
        "reference": ca,
        "other": cb,
        "difference": d,
        "max_abs_difference": float(np.abs(d[off]).max()) if off.any() else 0.0,
    }


def histogram_ratio(
    reference: Any,
    other: Any,
    bins: int | Any = 40,
    range: tuple[float, float] | None = None,
    other_weight: Any | None = None,
) -> dict[str, np.ndarray]:
    """Unit-area histograms of two samples on common bins and ``other / reference``.

    Returns ``edges``, ``reference`` and ``other`` densities, their statistical errors
    (``reference_err``, ``other_err``: sqrt of the sum of squared weights), ``ratio`` and
    ``ratio_err`` (both errors propagated; nan where the reference bin is empty).
    """
    a, b = _vector(reference, "reference"), _vector(other, "other")
    wb = np.ones_like(b) if other_weight is None else np.asarray(other_weight, np.float64)
    if range is None:
        lo, hi = np.percentile(a, [0.5, 99.5])
        range = (float(lo), float(hi) if hi > lo else float(lo) + 1.0)
    edges = np.histogram_bin_edges(a, bins=bins, range=range)
    width = np.diff(edges)

    def hist(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, _ = np.histogram(x, edges, weights=w)
        e2, _ = np.histogram(x, edges, weights=w * w)
        total = w.sum()
        return h / (total * width), np.sqrt(e2) / (total * width)

    ha, ea = hist(a, np.ones_like(a))
    hb, eb = hist(b, wb)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ha > 0, hb / ha, np.nan)
        rerr = np.where(
            ha > 0,
            np.abs(ratio) * np.sqrt((eb / np.where(hb > 0, hb, 1)) ** 2 + (ea / ha) ** 2),
            np.nan,
        )
    return {
        "edges": edges,
        "reference": ha,
        "reference_err": ea,
        "other": hb,
        "other_err": eb,
        "ratio": ratio,
        "ratio_err": rerr,
    }


def response_profile(gen: Any, reco: Any, edges: Any) -> dict[str, np.ndarray]:
    """Mean, standard deviation and median of ``reco / gen`` in bins of ``gen``.

    Returns ``edges``, ``count``, ``mean``, ``mean_err`` (std / sqrt(count)), ``std`` and
    ``median`` per bin (nan where a bin is empty).
    """
    g, r = _vector(gen, "gen"), _vector(reco, "reco")
    if g.size != r.size:
        raise DataError(f"gen and reco have different lengths ({g.size}, {r.size})")
    edges = np.asarray(edges, dtype=np.float64)
    ratio = r / np.where(g != 0, g, np.nan)
    idx = np.digitize(g, edges) - 1
    nb = edges.size - 1
    out = {k: np.full(nb, np.nan) for k in ("mean", "mean_err", "std", "median")}
    count = np.zeros(nb, dtype=np.int64)
    for k in np.arange(nb):
        v = ratio[(idx == k) & np.isfinite(ratio)]
        count[k] = v.size
        if v.size:
            out["mean"][k] = v.mean()
            out["std"][k] = v.std()
            out["mean_err"][k] = v.std() / np.sqrt(v.size)
            out["median"][k] = np.median(v)
    return {"edges": edges, "count": count, **out}


def oversampling_gain(
    draws: Any,
    edges: Any,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Statistical gain of N surrogate draws per generator-level object on a histogram.

    ``draws`` is (n_objects, N): N values of an observable drawn for each object.  The
    histogram of all draws (each weighted 1/N) is compared with the histogram of one
    draw per object.  Both uncertainties come from a bootstrap over the *objects* (the
    draws of one object are correlated through it), so the gain
    ``var(one draw) / var(N draws)`` per bin is at most N and saturates where the
    generator-level statistics dominate.

    Returns ``draws_per_object``, ``gain`` per bin, ``median_gain`` and ``mean_gain``
    over bins holding at least 1 % of the objects, and ``edges``.
    """
    d = np.asarray(draws, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] < 2 or d.shape[1] < 1:
        raise DataError(f"draws must be an (objects >= 2, N >= 1) matrix, got shape {d.shape}")
    if not np.all(np.isfinite(d)):
        raise DataError("draws hold non-finite values")
    edges = np.asarray(edges, dtype=np.float64)
    n, m = d.shape
    nb = edges.size - 1
    # per-object bin counts of the N draws (n, bins) and of the first draw
    idx = np.clip(np.digitize(d, edges) - 1, -1, nb)
    inside = (idx >= 0) & (idx < nb)
    per_obj = np.zeros((n, nb))
    rows = np.repeat(np.arange(n), m).reshape(n, m)
    np.add.at(per_obj, (rows[inside], idx[inside]), 1.0 / m)
    first = np.zeros((n, nb))
    ok = inside[:, 0]
    first[np.flatnonzero(ok), idx[ok, 0]] = 1.0
    rng = np.random.default_rng(seed)
    h_all = np.empty((n_boot, nb))
    h_one = np.empty((n_boot, nb))
    for b in range(n_boot):
        counts = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        h_all[b] = counts @ per_obj
        h_one[b] = counts @ first
    v_all, v_one = h_all.var(axis=0), h_one.var(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where(v_all > 0, v_one / v_all, np.nan)
    populated = per_obj.sum(axis=0) >= 0.01 * n
    g = gain[populated & np.isfinite(gain)]
    return {
        "draws_per_object": int(m),
        "edges": edges,
        "gain": gain,
        "median_gain": float(np.median(g)) if g.size else float("nan"),
        "mean_gain": float(np.mean(g)) if g.size else float("nan"),
    }
