"""fivesigma.metrics: the evaluation metrics physicists trust, on plain numpy arrays.

Imports only numpy (scipy lazily, inside :func:`ks_test` and :func:`rejection_interval`),
so it is fast to import and works on any score array.  Every function takes per-event
weights (default ones); negative weights are used with their sign and never crash.  Bad
input raises :class:`MetricError` (a :class:`fivesigma.errors.FivesigmaError`) with one
clear line.

>>> from fivesigma.metrics import auc
>>> auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
0.75
"""

from __future__ import annotations

from fivesigma.metrics._validate import MetricError
from fivesigma.metrics.anomaly import (
    AnomalyMetricError,
    max_sic,
    sic_band,
    sic_curve,
    signal_efficiency_at,
    summarise_runs,
)
from fivesigma.metrics.multiclass import (
    DISCRIMINANTS,
    accuracy,
    confusion_matrix,
    discriminant,
    multiclass_rejections,
)
from fivesigma.metrics.overtraining import ks_test, separation
from fivesigma.metrics.ranking import permutation_importance, weighted_correlation
from fivesigma.metrics.roc import (
    auc,
    eff_b_at_eff_s,
    eff_s_at_eff_b,
    multiclass_one_vs_rest,
    rejection_at_eff_s,
    rejection_interval,
    roc_curve,
)
from fivesigma.metrics.significance import CutScan, CutScanBest, asimov_z, cut_scan, sic
from fivesigma.metrics.tracking import (
    MatchResult,
    duplicate_rate,
    efficiency_vs,
    fake_rate,
    track_matching,
    tracking_efficiency,
    trackml_score,
    trackml_score_normalised,
)

__all__ = [
    "DISCRIMINANTS",
    "AnomalyMetricError",
    "CutScan",
    "CutScanBest",
    "MatchResult",
    "MetricError",
    "accuracy",
    "asimov_z",
    "auc",
    "confusion_matrix",
    "cut_scan",
    "discriminant",
    "duplicate_rate",
    "eff_b_at_eff_s",
    "eff_s_at_eff_b",
    "efficiency_vs",
    "fake_rate",
    "ks_test",
    "max_sic",
    "multiclass_one_vs_rest",
    "multiclass_rejections",
    "permutation_importance",
    "rejection_at_eff_s",
    "rejection_interval",
    "roc_curve",
    "separation",
    "sic",
    "sic_band",
    "sic_curve",
    "signal_efficiency_at",
    "summarise_runs",
    "track_matching",
    "tracking_efficiency",
    "trackml_score",
    "trackml_score_normalised",
    "weighted_correlation",
]
