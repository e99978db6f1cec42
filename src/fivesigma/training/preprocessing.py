"""Input preprocessing whose parameters travel in the model bundle (numpy only).

>>> import numpy as np
>>> s = Standardiser().fit(np.array([[1.0, 5.0], [3.0, 5.0]]))
>>> s.transform(np.array([[2.0, 5.0]])).tolist()
[[0.0, 0.0]]
>>> Standardiser.from_dict(s.to_dict()).mean_.tolist()
[2.0, 5.0]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fivesigma.errors import DataError, ModelError

__all__ = ["Standardiser"]


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
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] == 0:
            raise DataError(f"Standardiser.fit needs a non-empty 2-D array, got shape {X.shape}")
        if sample_weight is None:
            w = np.ones(X.shape[0])
        else:
            w = np.abs(np.asarray(sample_weight, dtype=np.float64).reshape(-1))
            if w.shape[0] != X.shape[0]:
                raise DataError(f"Standardiser.fit: {w.shape[0]} weights for {X.shape[0]} rows")
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
