"""fivesigma.classify: event classification (logistic baseline, xgboost BDT, torch MLP).

Importing this package does not import torch or xgboost; each estimator imports its
library when it is fitted or loaded.
"""

from __future__ import annotations

from .estimators import (
    ESTIMATORS,
    BaseClassifier,
    BDTClassifier,
    LogisticClassifier,
    MLPClassifier,
    load,
    make_estimator,
)

__all__ = [
    "ESTIMATORS",
    "BDTClassifier",
    "BaseClassifier",
    "LogisticClassifier",
    "MLPClassifier",
    "load",
    "make_estimator",
]
