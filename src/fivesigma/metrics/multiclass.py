"""Multi-class metrics: confusion matrix, accuracy, per-class rejections, discriminants.

Labels are integer class indices ``0..K-1`` and class probabilities an ``(n, K)`` array
(rows summing to 1), as every fivesigma classifier's ``predict_proba`` returns.  Weights
are per event (default ones), used with their sign.

>>> import numpy as np
>>> confusion_matrix([0, 1, 2, 2], [0, 2, 2, 2], n_classes=3, normalize="true").tolist()
[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
>>> p = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
>>> discriminant(p, signal=[2]).tolist()
[0.1, 0.6]
>>> discriminant(p, signal=[2], background=[1], kind="likelihood_ratio").round(3).tolist()
[0.25, 0.75]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from fivesigma.metrics._validate import MetricError, as_weights, check_classes
from fivesigma.metrics.roc import _interp_first_crossing, _roc_from_arrays, _targets

__all__ = [
    "DISCRIMINANTS",
    "accuracy",
    "confusion_matrix",
    "discriminant",
    "multiclass_rejections",
]

#: The discriminants :func:`discriminant` builds from class probabilities.
DISCRIMINANTS = ("probability", "likelihood_ratio")


def _class_labels(y: object, n: int | None, n_classes: int | None, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise MetricError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise MetricError(f"{name} has {arr.shape[0]} entries, expected {n}; lengths must match")
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise MetricError(f"{name} must hold integer class indices 0..K-1, got {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise MetricError(f"{name} has class index {int(arr.min())}; indices start at 0")
    if n_classes is not None and arr.size and arr.max() >= n_classes:
        raise MetricError(
            f"{name} has class index {int(arr.max())} outside 0..{n_classes - 1} "
            f"(n_classes={n_classes})"
        )
    return arr.astype(np.int64)


def confusion_matrix(
    y_true: object,
    y_pred: object,
    weight: object | None = None,
    n_classes: int | None = None,
    normalize: str | None = None,
) -> np.ndarray:
    """Weighted confusion matrix ``C[i, j]``: summed weight of true class i predicted as j.

    ``normalize``: None (sums of weights), ``"true"`` (each row divided by its sum: the
    fraction of class i predicted as j), ``"pred"`` (columns) or ``"all"``.  A row or
    column whose sum is 0 is left at 0, as in ``sklearn.metrics.confusion_matrix`` (which
    this equals with ``labels=range(n_classes)`` and ``sample_weight``).
    """
    yt = _class_labels(y_true, None, n_classes, "y_true")
    yp = _class_labels(y_pred, yt.size, n_classes, "y_pred")
    w = as_weights(weight, yt.size)
    if n_classes is None:
        n_classes = int(max(yt.max(initial=-1), yp.max(initial=-1))) + 1
    if n_classes < 1:
        raise MetricError("confusion_matrix needs at least one event or n_classes >= 1")
    cm = np.zeros((n_classes, n_classes), dtype=np.float64)
    np.add.at(cm, (yt, yp), w)
    if normalize is None:
        return cm
    if normalize == "true":
        total = cm.sum(axis=1, keepdims=True)
    elif normalize == "pred":
        total = cm.sum(axis=0, keepdims=True)
    elif normalize == "all":
        total = cm.sum()
    else:
        raise MetricError(f"normalize must be None, 'true', 'pred' or 'all', got {normalize!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = cm / total
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def accuracy(y_true: object, y_pred: object, weight: object | None = None) -> float:
    """Weighted fraction of events whose predicted class is the true one."""
    yt = _class_labels(y_true, None, None, "y_true")
    yp = _class_labels(y_pred, yt.size, None, "y_pred")
    w = as_weights(weight, yt.size)
    total = float(w.sum())
    if not total > 0:
        raise MetricError(f"the summed weight is {total:g}; accuracy needs a positive total")
    return float(w[yt == yp].sum() / total)


def _probs(probs: object) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise MetricError(f"probs must have shape (n_events, n_classes >= 2), got {p.shape}")
    return p


def multiclass_rejections(
    y: object,
    probs: object,
    eff_s_targets: float | Iterable[float],
    weight: object | None = None,
) -> dict[int, dict[int, dict[float, float]]]:
    """Rejection 1/eps_j of every other class j when cutting on ``probs[:, k]`` at fixed
    efficiency of class k: ``{k: {j: {eff_s: rejection}}}``.

    Each (k, j) pair is the binary ROC of class k (signal) against class j alone,
    interpolated as :func:`fivesigma.metrics.rejection_at_eff_s`.
    """
    p = _probs(probs)
    labels = _class_labels(y, p.shape[0], p.shape[1], "y")
    w = as_weights(weight, p.shape[0])
    targets = _targets(eff_s_targets, "eff_s_targets")
    out: dict[int, dict[int, dict[float, float]]] = {}
    for k in range(p.shape[1]):
        out[k] = {}
        for j in range(p.shape[1]):
            if j == k:
                continue
            sel = (labels == k) | (labels == j)
            is_k = labels[sel] == k
            check_classes(is_k, w[sel], name=f"y (class {k} vs class {j})")
            eff_b, eff_s, _ = _roc_from_arrays(is_k, p[sel, k], w[sel])
            out[k][j] = {}
            for t in targets:
                eb = _interp_first_crossing(eff_s, eff_b, t, "left")
                out[k][j][t] = 1.0 / eb if eb > 0 else float("inf")
    return out


def discriminant(
    probs: object,
    signal: Sequence[int],
    background: Sequence[int] | None = None,
    kind: str = "probability",
) -> np.ndarray:
    """One signal-vs-background score per event from class probabilities.

    ``probability``: p_S = the summed probability of the ``signal`` classes.
    ``likelihood_ratio``: D = p_S / (p_S + p_B), p_B the summed probability of the
    ``background`` classes (default: every class not in ``signal``), as the b-tagging
    discriminants; classes in neither list are left out.  When every class is signal or
    background, p_S + p_B = 1 and D = p_S.  Where p_S + p_B = 0, D is 0.5.
    """
    p = _probs(probs)
    k = p.shape[1]
    sig = sorted({int(c) for c in signal})
    if not sig or sig[0] < 0 or sig[-1] >= k:
        raise MetricError(f"signal classes {list(signal)} must be a non-empty subset of 0..{k - 1}")
    p_s = p[:, sig].sum(axis=1)
    if kind == "probability":
        return p_s
    if kind != "likelihood_ratio":
        raise MetricError(f"kind must be one of {', '.join(DISCRIMINANTS)}; got {kind!r}")
    bkg = [c for c in range(k) if c not in sig] if background is None else sorted(set(background))
    if not bkg or bkg[0] < 0 or bkg[-1] >= k or set(bkg) & set(sig):
        raise MetricError(
            f"background classes {bkg} must be a non-empty subset of 0..{k - 1} without "
            f"the signal classes {sig}"
        )
    total = p_s + p[:, bkg].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = p_s / total
    return np.where(total > 0, d, 0.5)
