"""fivesigma.estimators: scikit-learn-style estimators shared by every task.

Every estimator follows one contract, :class:`Estimator` (torch models:
:class:`TorchEstimator`), defined in :mod:`fivesigma.training.estimator`.  The event
classifiers (logistic regression, xgboost BDT, torch MLP) live in
:mod:`fivesigma.estimators.tabular`, the jet taggers in :mod:`fivesigma.tasks.jets.tagger`.

:func:`make_estimator` builds any estimator registered in
:data:`fivesigma.core.registry.ESTIMATORS` by name, :func:`load` reads any model bundle
through :data:`fivesigma.core.registry.BUNDLE_KINDS`.  Importing this package imports
neither torch nor xgboost: each estimator imports its library when it is fitted or loaded.
"""

from __future__ import annotations

from fivesigma.core.registry import ESTIMATORS
from fivesigma.estimators.factory import load, make_estimator
from fivesigma.estimators.tabular import (
    BaseClassifier,
    BDTClassifier,
    LogisticClassifier,
    MLPClassifier,
)
from fivesigma.training.estimator import Estimator, TorchEstimator

__all__ = [
    "ESTIMATORS",
    "BDTClassifier",
    "BaseClassifier",
    "Estimator",
    "LogisticClassifier",
    "MLPClassifier",
    "TorchEstimator",
    "load",
    "make_estimator",
]
