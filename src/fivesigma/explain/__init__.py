"""fivesigma.explain: SHAP values of the event classifiers, and their report section.

:func:`shap_values` explains a fitted ``bdt`` (exact TreeSHAP from xgboost), ``logistic``
(exact linear SHAP) or ``mlp`` (expected gradients in torch) on a table of events; the
values are in log-odds (the logit of the signal probability), so that the models of one
run compare directly.  :func:`mean_abs_shap` is the global ranking for metrics.json,
:func:`report_section` the report's section (beeswarm and bar plots, a table).  See
``docs/explain.md``.

A shared layer: it imports the estimators, the training helpers and the report builder,
never a task.  Importing it loads neither torch nor xgboost nor matplotlib.
"""

from __future__ import annotations

from fivesigma.explain.report import bar_figure, beeswarm_figure, report_section
from fivesigma.explain.values import (
    METHODS,
    SUPPORTED,
    Explanation,
    mean_abs_shap,
    shap_values,
)

__all__ = [
    "METHODS",
    "SUPPORTED",
    "Explanation",
    "bar_figure",
    "beeswarm_figure",
    "mean_abs_shap",
    "report_section",
    "shap_values",
]
