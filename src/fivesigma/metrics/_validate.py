"""Input checks shared by the metrics: one clear line per problem, numpy only."""

from __future__ import annotations

import numpy as np

from fivesigma.errors import FivesigmaError

__all__ = ["MetricError", "as_labels", "as_scores", "as_weights", "check_classes"]


class MetricError(FivesigmaError, ValueError):
    """Inputs to a metric cannot be used (lengths, labels, NaN scores, weights).

    Also a ``ValueError`` so code written against numpy/sklearn conventions catches it.
    """


def as_scores(score: object, name: str = "score") -> np.ndarray:
    """Return ``score`` as a 1-d float64 array; NaN is rejected with a count.

    Infinite scores are allowed: they sort correctly and act as "always/never pass".
    """
    arr = np.asarray(score, dtype=np.float64)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise MetricError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    n_nan = int(np.count_nonzero(np.isnan(arr)))
    if n_nan:
        raise MetricError(
            f"{name} has {n_nan} NaN value(s) out of {arr.size}; "
            "remove or impute them before computing metrics"
        )
    return arr


def as_weights(weight: object | None, n: int, name: str = "weight") -> np.ndarray:
    """Per-event weights as float64 of length ``n`` (ones when ``None``).

    Negative weights are allowed (NLO generators); NaN/inf are not.
    """
    if weight is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim == 0:
        w = np.full(n, float(w))
    if w.ndim != 1 or w.shape[0] != n:
        raise MetricError(
            f"{name} has shape {w.shape} but there are {n} events; give one weight per event"
        )
    n_bad = int(np.count_nonzero(~np.isfinite(w)))
    if n_bad:
        raise MetricError(
            f"{name} has {n_bad} non-finite value(s) (NaN/inf); weights must be finite"
        )
    return w


def as_labels(y: object, n: int | None = None, name: str = "y_true") -> np.ndarray:
    """Binary truth labels as a bool array (True = signal); accepts bool or 0/1 values."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise MetricError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise MetricError(
            f"{name} has {arr.shape[0]} entries but score has {n}; lengths must match"
        )
    if arr.dtype == bool:
        return arr
    if not np.issubdtype(arr.dtype, np.number):
        raise MetricError(f"{name} must be 0/1 or bool labels, got dtype {arr.dtype}")
    bad = ~np.isin(arr, (0, 1))
    if np.any(bad):
        examples = ", ".join(str(v) for v in np.unique(arr[bad])[:5])
        raise MetricError(
            f"{name} must contain only 0 (background) and 1 (signal); found {examples}"
        )
    return arr.astype(bool)


def check_classes(is_sig: np.ndarray, w: np.ndarray, name: str = "y_true") -> tuple[float, float]:
    """Total signal and background weight; both classes must be present with positive sum.

    A class whose summed weight is <= 0 (possible with negative weights) cannot be
    normalised to an efficiency, so it is rejected like a missing class.
    """
    n_sig = int(np.count_nonzero(is_sig))
    n_bkg = is_sig.size - n_sig
    if n_sig == 0 or n_bkg == 0:
        only = "background" if n_sig == 0 else "signal"
        raise MetricError(
            f"{name} contains only {only} events ({is_sig.size}); "
            "metrics need both signal (1) and background (0)"
        )
    w_sig = float(w[is_sig].sum())
    w_bkg = float(w[~is_sig].sum())
    for label, tot in (("signal", w_sig), ("background", w_bkg)):
        if not tot > 0:
            raise MetricError(
                f"total {label} weight is {tot:g}; efficiencies need a positive summed weight per class"
            )
    return w_sig, w_bkg
