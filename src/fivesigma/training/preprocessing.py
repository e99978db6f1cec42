"""Input preprocessing whose parameters travel in the model bundle (numpy only).

>>> import numpy as np
>>> s = Standardiser().fit(np.array([[1.0, 5.0], [3.0, 5.0]]))
>>> s.transform(np.array([[2.0, 5.0]])).tolist()
[[0.0, 0.0]]
>>> Standardiser.from_dict(s.to_dict()).mean_.tolist()
[2.0, 5.0]
>>> imp = Imputer().fit(np.array([[1.0, 2.0], [np.nan, 4.0], [3.0, 6.0]]))
>>> imp.values_.tolist(), imp.flags_.tolist()
([2.0, 4.0], [0])
>>> imp.transform(np.array([[np.nan, np.nan]])).tolist()   # filled, then one flag column
[[2.0, 4.0, 1.0]]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fivesigma.errors import DataError, ModelError

__all__ = ["Imputer", "Standardiser", "weighted_median"]


def _fit_inputs(X: Any, sample_weight: Any, who: str) -> tuple[np.ndarray, np.ndarray]:
    """``X`` as a non-empty 2-D float64 array and ``|sample_weight|`` (default 1) per row."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise DataError(f"{who}.fit needs a non-empty 2-D array, got shape {X.shape}")
    if sample_weight is None:
        return X, np.ones(X.shape[0])
    w = np.abs(np.asarray(sample_weight, dtype=np.float64).reshape(-1))
    if w.shape[0] != X.shape[0]:
        raise DataError(f"{who}.fit: {w.shape[0]} weights for {X.shape[0]} rows")
    return X, w


class Standardiser:
    """Weighted standardisation ``(x - mean) / std`` per column, like sklearn's StandardScaler.

    The mean and standard deviation are weighted by ``|w|``: they only condition the
    inputs numerically, and absolute weights keep the variance non-negative when some
    event weights are negative.  Constant columns get scale 1 (they are only centred).

    Attributes (after ``fit``)
    --------------------------
    mean_ : (n_features,) float64 weighted mean.
    scale_ : (n_features,) float64 weighted standard deviation (1 where it is 0).
    """

    kind = "standard"

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    def fit(self, X: Any, sample_weight: Any = None) -> Standardiser:
        """Compute the weighted mean and standard deviation of each column of ``X``."""
        X, w = _fit_inputs(X, sample_weight, "Standardiser")
        if not w.sum() > 0:
            w = np.ones(X.shape[0])  # all weights zero: fall back to unweighted statistics
        mean = np.average(X, axis=0, weights=w)
        var = np.average((X - mean) ** 2, axis=0, weights=w)
        std = np.sqrt(var)
        # a (numerically) constant column: dividing by ~0 would blow it up to noise
        tiny = np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0) * 16
        self.mean_ = mean
        self.scale_ = np.where(std > tiny, std, 1.0)
        return self

    def _check(self) -> tuple[np.ndarray, np.ndarray]:
        if self.mean_ is None or self.scale_ is None:
            raise ModelError("Standardiser is not fitted yet; call fit(X) first")
        return self.mean_, self.scale_

    def transform(self, X: Any) -> np.ndarray:
        """Standardised copy of ``X`` (float64)."""
        mean, scale = self._check()
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != mean.shape[0]:
            raise DataError(
                f"Standardiser.transform: X has shape {X.shape}; expected (n, {mean.shape[0]})"
            )
        return (X - mean) / scale

    def fit_transform(self, X: Any, sample_weight: Any = None) -> np.ndarray:
        """``fit`` then ``transform``."""
        return self.fit(X, sample_weight).transform(X)

    def inverse_transform(self, Z: Any) -> np.ndarray:
        """Undo :meth:`transform`."""
        mean, scale = self._check()
        return np.asarray(Z, dtype=np.float64) * scale + mean

    # -- storage ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable parameters (python floats round-trip float64 exactly)."""
        mean, scale = self._check()
        return {"type": self.kind, "mean": mean.tolist(), "scale": scale.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Standardiser:
        """Inverse of :meth:`to_dict`."""
        if d.get("type") != cls.kind or "mean" not in d or "scale" not in d:
            raise ModelError(
                f"preprocessing entry {dict(d)!r:.80} is not a standardiser "
                "(needs type 'standard', mean, scale)"
            )
        return cls.from_arrays({"mean": np.asarray(d["mean"]), "scale": np.asarray(d["scale"])})

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Parameters as named arrays (for ``Bundle.arrays``)."""
        mean, scale = self._check()
        return {f"{prefix}mean": mean.copy(), f"{prefix}scale": scale.copy()}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str = "") -> Standardiser:
        """Inverse of :meth:`to_arrays`."""
        out = cls()
        try:
            out.mean_ = np.asarray(arrays[f"{prefix}mean"], dtype=np.float64).reshape(-1)
            out.scale_ = np.asarray(arrays[f"{prefix}scale"], dtype=np.float64).reshape(-1)
        except KeyError as err:
            raise ModelError(f"standardiser parameters lack {err.args[0]!r}") from None
        if out.mean_.shape != out.scale_.shape or np.any(out.scale_ <= 0):
            raise ModelError(
                "standardiser parameters are inconsistent (shapes differ or scale <= 0)"
            )
        return out


def weighted_median(values: Any, weights: Any = None) -> float:
    """The weighted median of ``values``: the smallest value at which the cumulative
    weight (values sorted) reaches half the total; where it lands exactly on half, the
    mean of that value and the next one (so unit weights give :func:`numpy.median`).

    Weights are absolute values (negative event weights count by their size); all zero
    (or none given) means unit weights.  NaN if ``values`` is empty.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        return float("nan")
    w = np.ones(v.size) if weights is None else np.abs(np.asarray(weights, np.float64)).ravel()
    if w.shape != v.shape:
        raise DataError(f"weighted_median: {w.size} weights for {v.size} values")
    if not w.sum() > 0:
        w = np.ones(v.size)
    order = np.argsort(v, kind="stable")
    v, cw = v[order], np.cumsum(w[order])
    half = 0.5 * cw[-1]
    i = int(np.searchsorted(cw, half, side="left"))
    i = min(i, v.size - 1)
    if abs(cw[i] - half) <= 1e-12 * cw[-1] and i + 1 < v.size:
        return float(0.5 * (v[i] + v[i + 1]))
    return float(v[i])


class Imputer:
    """Fill in missing values (NaN) per feature and flag them, for models that cannot
    take NaN (the logistic regression, the MLP).

    ``fit`` records, for every feature, the **weighted median** (by ``|w|``, see
    :func:`weighted_median`) of the training events where the feature is present (0 where
    it is never present), and which features had missing values in training.
    ``transform`` replaces NaN by the recorded value and appends one 0/1 "is missing"
    column per feature that had missing values in training, in feature order: the
    output has ``n_features + len(flags_)`` columns.  A feature without missing values in
    training gets no flag column; NaN in it at prediction time is filled in all the same.
    The median (rather than the mean) keeps a filled-in value inside the bulk of a
    feature with long tails; the flag column lets the model learn what missingness itself
    says.  inf is not a missing value: :meth:`transform` refuses it.

    Attributes (after ``fit``)
    --------------------------
    values_ : (n_features,) float64 fill-in values.
    flags_ : (n_flags,) int64 indices of the features that get an is-missing column.
    """

    kind = "impute_median_flags"

    def __init__(self) -> None:
        self.values_: np.ndarray | None = None
        self.flags_: np.ndarray | None = None

    def fit(self, X: Any, sample_weight: Any = None) -> Imputer:
        """Record the weighted median of each column over its present values."""
        X, w = _fit_inputs(X, sample_weight, "Imputer")
        missing = np.isnan(X)
        values = np.zeros(X.shape[1])
        for j in range(X.shape[1]):
            present = ~missing[:, j]
            if present.any():
                values[j] = weighted_median(X[present, j], w[present])
        self.values_ = values
        self.flags_ = np.flatnonzero(missing.any(axis=0)).astype(np.int64)
        return self

    def _check(self) -> tuple[np.ndarray, np.ndarray]:
        if self.values_ is None or self.flags_ is None:
            raise ModelError("Imputer is not fitted yet; call fit(X) first")
        return self.values_, self.flags_

    @property
    def n_features_out(self) -> int:
        """Columns of :meth:`transform`'s output: the features plus the flags."""
        values, flags = self._check()
        return int(values.size + flags.size)

    def transform(self, X: Any) -> np.ndarray:
        """``X`` with NaN filled in and the is-missing columns appended (float64)."""
        values, flags = self._check()
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != values.shape[0]:
            raise DataError(
                f"Imputer.transform: X has shape {X.shape}; expected (n, {values.shape[0]})"
            )
        if np.isinf(X).any():
            raise DataError(
                f"Imputer.transform: X holds {int(np.isinf(X).sum())} inf values; only NaN "
                "means missing"
            )
        missing = np.isnan(X)
        filled = np.where(missing, values, X)
        if flags.size == 0:
            return filled
        return np.concatenate([filled, missing[:, flags].astype(np.float64)], axis=1)

    def fit_transform(self, X: Any, sample_weight: Any = None) -> np.ndarray:
        """``fit`` then ``transform``."""
        return self.fit(X, sample_weight).transform(X)

    def torch_module(self) -> Any:
        """The same transformation as a torch module (float32), for ONNX graphs:
        ``torch.where(isnan(x), value, x)`` and the flag columns."""
        import torch
        from torch import nn

        values, flags = self._check()

        class Impute(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.register_buffer(
                    "values", torch.as_tensor(values, dtype=torch.float32).reshape(1, -1)
                )
                self.register_buffer("flags", torch.as_tensor(flags, dtype=torch.int64))
                self.n_flags = int(flags.size)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                missing = torch.isnan(x)
                filled = torch.where(missing, self.values.to(x.dtype), x)
                if self.n_flags == 0:
                    return filled
                flag = torch.index_select(missing, 1, self.flags).to(x.dtype)
                return torch.cat([filled, flag], dim=1)

        return Impute().eval()

    # -- storage ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable parameters (python floats round-trip float64 exactly)."""
        values, flags = self._check()
        return {"type": self.kind, "values": values.tolist(), "flags": flags.tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], n_features: int | None = None) -> Imputer:
        """Inverse of :meth:`to_dict`; ``n_features`` checks the number of values."""
        if not isinstance(d, Mapping) or d.get("type") != cls.kind:
            raise ModelError(
                f"preprocessing entry {d!r:.80} is not an imputer "
                f"(needs type '{cls.kind}', values, flags)"
            )
        try:
            values = np.asarray(d["values"], dtype=np.float64).reshape(-1)
            flags = np.asarray(d["flags"], dtype=np.int64).reshape(-1)
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"imputer parameters are unreadable ({err!s:.80})") from None
        n = values.size if n_features is None else n_features
        if (
            values.size != n
            or not np.all(np.isfinite(values))
            or np.any((flags < 0) | (flags >= n))
            or np.unique(flags).size != flags.size
        ):
            raise ModelError(
                f"imputer parameters are inconsistent ({values.size} values for {n} features, "
                f"flags {flags.tolist()[:10]})"
            )
        out = cls()
        out.values_, out.flags_ = values, flags
        return out
