"""The reweighter bundle: the classifier whose p / (1 - p) is the weight.

A ``reweighter`` bundle is the MLP's own bundle (weights in safetensors, the
standardisation, the network) under its own kind, with what the weights need in its
``data`` record: the input features, the clipping cap, and for DCTR the parameter's name
and the values it was trained on.
"""

from __future__ import annotations

import os

import numpy as np

from fivesigma.errors import ModelError
from fivesigma.estimators.tabular import MLPClassifier

__all__ = ["KIND", "ReweighterMLP", "load"]

KIND = "reweighter"


class ReweighterMLP(MLPClassifier):
    """An :class:`~fivesigma.estimators.tabular.MLPClassifier` saved as a reweighter."""

    kind = KIND

    def weights(self, x: np.ndarray, theta: float | None = None) -> np.ndarray:
        """``p / (1 - p)`` on ``x`` (DCTR: with ``theta`` as the last input), clipped at
        the bundle's cap when it has one."""
        from fivesigma.metrics.reweighting import classifier_weights

        record = getattr(self, "bundle_data_", None) or {}
        if record.get("theta") is not None:
            if theta is None:
                raise ModelError(
                    f"this DCTR reweighter needs a value of {record['theta']} "
                    f"(trained on {record.get('theta_values')})"
                )
            x = np.column_stack([x, np.full(len(x), float(theta))])
        w = classifier_weights(np.asarray(self.decision_function(x), dtype=np.float64))
        cap = record.get("max_weight")
        return np.minimum(w, cap) if cap is not None else w


def load(path: str | os.PathLike) -> ReweighterMLP:
    """Read a ``reweighter`` bundle."""
    return ReweighterMLP.load(path)  # type: ignore[return-value]
