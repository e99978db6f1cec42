"""Input checks shared by every estimator (event classifiers, jet taggers, ...).

Labels, event weights and class weights are validated the same way everywhere, with the
same one-line errors.  numpy only (``torch_threads`` imports torch when used).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from fivesigma.errors import DataError, ModelError

__all__ = ["apply_class_weight", "as_labels", "as_weights", "stratified_holdout", "torch_threads"]


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
