"""fivesigma.estimators: scikit-learn-style estimators shared by every task.

Tabular classifiers (logistic regression, xgboost BDT, torch MLP) live in
:mod:`fivesigma.estimators.tabular`.  Importing this package imports neither torch nor
xgboost: each estimator imports its library when it is fitted or loaded.
"""

from __future__ import annotations

from fivesigma.estimators.tabular import (
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
