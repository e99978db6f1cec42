"""Input checks shared by every estimator (event classifiers, jet taggers, ...).

Inputs (tables of features, padded jet constituents), labels, event weights and class
weights are validated the same way everywhere, with the same one-line errors.  numpy only
(``torch_threads`` imports torch when used).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from fivesigma.errors import DataError, ModelError

__all__ = [
    "CONSTITUENT_KEYS",
    "apply_class_weight",
    "as_constituents",
    "as_labels",
    "as_table",
    "as_weights",
    "class_count",
    "feature_names_of",
    "stratified_holdout",
    "torch_threads",
]

#: the arrays of a batch of padded jet constituents, in the order models take them
CONSTITUENT_KEYS = ("x", "v", "mask")


def feature_names_of(X: Any) -> list[str] | None:
    """Column names of a DataFrame-like ``X`` (its ``columns``), else None."""
    cols = getattr(X, "columns", None)
    return [str(c) for c in cols] if cols is not None else None


def as_table(X: Any, name: str = "X") -> np.ndarray:
    """``X`` as a finite float64 matrix ``(n_events, n_features)`` with at least one row."""
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{name} cannot be read as a numeric matrix: {err}") from None
    if arr.ndim != 2:
        hint = "; use X.reshape(-1, 1) for a single feature" if arr.ndim == 1 else ""
        raise DataError(f"{name} must be 2-D (n_events, n_features), got shape {arr.shape}{hint}")
    if arr.shape[0] == 0:
        raise DataError(f"{name} has no events")
    bad = ~np.isfinite(arr)
    if bad.any():
        cols = np.flatnonzero(bad.any(axis=0)).tolist()
        raise DataError(
            f"{name} contains {int(bad.sum())} NaN/inf values (in feature columns {cols[:10]}); "
            "remove or fill them before training or scoring"
        )
    return arr


def _to_numpy(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor
        a = a.detach().cpu().numpy()
    try:
        return np.asarray(a)
    except (TypeError, ValueError) as err:
        raise DataError(f"input cannot be read as an array: {err}") from None


def as_constituents(
    inputs: Any, name: str = "inputs", n_features: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate padded jet constituents and return ``(x, v, mask)`` (float32, float32, bool).

    ``inputs`` is a dict of arrays (numpy or torch): ``x`` (n_jets, P, F) particle
    features, ``v`` (n_jets, P, 4) four-momenta, ``mask`` (n_jets, P), True (or 1) for
    real particles.  Padded entries of ``x`` and ``v`` are set to 0 whatever they held;
    NaN/inf in a real particle raise :class:`DataError`.
    """
    if not isinstance(inputs, Mapping):
        raise DataError(
            f"{name} must be a dict with keys 'x', 'v', 'mask', got {type(inputs).__name__}"
        )
    missing = [k for k in CONSTITUENT_KEYS if k not in inputs]
    if missing:
        raise DataError(
            f"{name} lacks {', '.join(repr(m) for m in missing)}; it needs 'x' (n_jets, P, F), "
            "'v' (n_jets, P, 4) and 'mask' (n_jets, P)"
        )

    def numeric(key: str) -> np.ndarray:
        arr = _to_numpy(inputs[key])
        if arr.dtype.kind not in "fiub":
            raise DataError(f"{name}['{key}'] has dtype {arr.dtype}; expected a float array")
        return arr.astype(np.float32, copy=False)

    x, v = numeric("x"), numeric("v")
    mask = _to_numpy(inputs["mask"])
    if x.ndim != 3:
        raise DataError(f"{name}['x'] must be 3-D (n_jets, P, n_features), got shape {x.shape}")
    if x.shape[0] == 0:
        raise DataError(f"{name} has no jets")
    n, p = x.shape[:2]
    if v.shape != (n, p, 4):
        raise DataError(
            f"{name}['v'] has shape {v.shape}; expected {(n, p, 4)} (px, py, pz, E per particle, "
            "same jets and particles as 'x')"
        )
    if mask.shape != (n, p):
        raise DataError(
            f"{name}['mask'] has shape {mask.shape}; expected {(n, p)} like x's first two axes"
        )
    if mask.dtype != bool:
        if mask.dtype.kind not in "iuf" or not np.all((mask == 0) | (mask == 1)):
            raise DataError(
                f"{name}['mask'] has dtype {mask.dtype} with values other than 0/1; "
                "expected a bool array (True = real particle)"
            )
        mask = mask.astype(bool)
    if n_features is not None and x.shape[2] != n_features:
        raise DataError(
            f"{name}['x'] has {x.shape[2]} features per particle but the tagger was trained "
            f"on {n_features}"
        )
    keep = mask[..., None]
    x = np.where(keep, x, np.float32(0))
    v = np.where(keep, v, np.float32(0))
    for key, arr in (("x", x), ("v", v)):
        bad = ~np.isfinite(arr)
        if bad.any():
            raise DataError(
                f"{name}['{key}'] has {int(bad.sum())} NaN/inf values in real particles; "
                "fill or remove them first"
            )
    return np.ascontiguousarray(x), np.ascontiguousarray(v), np.ascontiguousarray(mask)


def class_count(y: np.ndarray, n_classes: int | None = None, what: str = "model") -> int:
    """The number of classes K of training labels ``y`` (0..K-1 with every class present).

    ``n_classes`` (an estimator's fixed class count, e.g. a tagger's) allows labels that
    miss some classes.
    """
    classes = np.unique(y)
    if classes.size < 2:
        raise DataError(
            f"training labels contain only class {int(classes[0])}; need both signal (1) and "
            "background (0), or classes 0..K-1"
        )
    if n_classes is None:
        if classes[-1] != classes.size - 1:
            raise DataError(
                f"training labels are {classes.tolist()}; classes must be 0..K-1 with every "
                "class present"
            )
        return int(classes.size)
    if not isinstance(n_classes, int | np.integer) or isinstance(n_classes, bool) or n_classes < 2:
        raise ModelError(f"{what} n_classes must be an integer >= 2 or None, got {n_classes!r}")
    if classes[-1] >= n_classes:
        raise DataError(f"training labels go up to {int(classes[-1])} but n_classes is {n_classes}")
    return int(n_classes)


def as_labels(y: Any, n: int, name: str, xname: str) -> np.ndarray:
    """``y`` as int64 class labels 0..K-1 for ``n`` events (``name``/``xname`` for messages)."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        arr = arr.reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr
    if arr.ndim != 1:
        raise DataError(f"{name} must be 1-D class labels, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise DataError(f"{xname} has {n} events but {name} has {arr.shape[0]}; they must match")
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    try:
        as_float = arr.astype(np.float64)
    except (TypeError, ValueError):
        raise DataError(
            f"{name} must be integer class labels 0..K-1 (0 background, 1 signal)"
        ) from None
    if (
        not np.all(np.isfinite(as_float))
        or np.any(as_float != np.round(as_float))
        or np.any(as_float < 0)
    ):
        raise DataError(f"{name} must be integer class labels 0..K-1 (0 background, 1 signal)")
    return as_float.astype(np.int64)


def as_weights(w: Any, n: int, name: str, xname: str) -> np.ndarray:
    """Finite float64 event weights for ``n`` events; ones when ``w`` is None."""
    if w is None:
        return np.ones(n)
    arr = np.asarray(w, dtype=np.float64).reshape(-1)
    if arr.shape[0] != n:
        raise DataError(f"{xname} has {n} events but {name} has {arr.shape[0]}; they must match")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise DataError(
            f"{name} contains {int(bad.sum())} NaN/inf values; event weights must be finite"
        )
    return arr


def apply_class_weight(
    y: np.ndarray, w: np.ndarray, class_weight: Any, n_classes: int, role: str
) -> np.ndarray:
    """Event weights times per-class factors.

    ``"balanced"`` gives every class the same total weight (the overall total is kept).
    """
    if class_weight is None:
        return w
    w = w.copy()
    if class_weight == "balanced":
        totals = np.array([w[y == c].sum() for c in range(n_classes)])
        for c, t in enumerate(totals):
            if np.any(y == c) and not t > 0:
                raise DataError(
                    f"{role} class {c} has total event weight {t:.4g} <= 0; "
                    "class_weight='balanced' needs a positive total per class (use class_weight=None)"
                )
        target = w.sum() / n_classes
        for c, t in enumerate(totals):
            if t > 0:
                w[y == c] *= target / t
        return w
    if isinstance(class_weight, Mapping):
        for c, f in class_weight.items():
            w[y == int(c)] *= float(f)
        return w
    raise ModelError(
        f"class_weight {class_weight!r} is not accepted; use None, 'balanced' or a dict {{class: factor}}"
    )


def stratified_holdout(y: np.ndarray, n_classes: int, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask holding out ``fraction`` of each class, chosen by ``seed``.

    At least one event of each class stays out of the hold-out (for training).

    >>> stratified_holdout(np.array([0, 0, 0, 0, 1, 1, 1, 1]), 2, 0.5, seed=0).sum()
    np.int64(4)
    """
    rng = np.random.default_rng(seed)
    is_out = np.zeros(len(y), dtype=bool)
    for c in range(n_classes):
        idx = np.flatnonzero(y == c)
        n_out = min(round(fraction * len(idx)), max(len(idx) - 1, 0))
        is_out[rng.permutation(idx)[:n_out]] = True
    return is_out


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with ``n`` torch threads (None: unchanged), restoring the old count."""
    import torch

    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
