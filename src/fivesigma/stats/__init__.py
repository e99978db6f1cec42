"""From a classifier score to a physics result: pyhf workspaces, expected Z and CLs limits.

The score of a trained classifier is histogrammed separately for signal and background
(:func:`histogram_inputs`), the histograms become a HistFactory workspace in pyhf's JSON
format (:func:`build_workspace`), and the workspace gives the expected discovery
significance (:func:`expected_significance`) and the expected 95% CLs upper limit on the
signal strength with its ±1σ/±2σ band (:func:`expected_upper_limit`).  Everything is
*expected*: computed on Asimov data, so no real observation is needed.

:func:`run_stats` does all of it in one call and raises on any failure;
:func:`robust_stats` (what ``fivesigma run`` uses) never raises: failed fits are retried
with a wider bound on the signal strength, then replaced by the closed-form Asimov
results of :mod:`fivesigma.stats.asymptotic` (:func:`asimov_significance`,
:func:`asimov_upper_limit`), and what still fails is recorded as an error in the result.

pyhf is imported lazily, on the first call that needs it, so importing this package stays
cheap.

Example
-------
>>> import numpy as np
>>> from fivesigma.stats import run_stats
>>> rng = np.random.default_rng(0)
>>> y = rng.integers(0, 2, 2000)
>>> score = np.clip(rng.normal(0.35 + 0.3 * y, 0.15), 0, 1)
>>> result, spec = run_stats(score, y, np.full(2000, 0.5), bins=5)
>>> result.z_expected > 0
True
"""

from __future__ import annotations

from fivesigma.errors import FivesigmaError

__all__ = [
    "SQRT_S",
    "DijetFit",
    "HistInputs",
    "StatsError",
    "StatsResult",
    "asimov_significance",
    "asimov_upper_limit",
    "build_workspace",
    "bump_hunt",
    "dijet_function",
    "expected_significance",
    "expected_upper_limit",
    "fit_dijet",
    "histogram_inputs",
    "merge_bins",
    "on_off_significance",
    "optimise_binning",
    "robust_stats",
    "run_stats",
    "save_workspace",
    "sculpting",
    "signal_event_limits",
    "validate_workspace",
]


class StatsError(FivesigmaError):
    """Inputs to the statistical analysis (histograms, workspace) cannot be used."""


# Imported after StatsError is defined: both modules raise it.
from fivesigma.stats.asymptotic import asimov_significance, asimov_upper_limit  # noqa: E402
from fivesigma.stats.bumphunt import (  # noqa: E402
    SQRT_S,
    DijetFit,
    bump_hunt,
    dijet_function,
    fit_dijet,
    on_off_significance,
    sculpting,
    signal_event_limits,
)
from fivesigma.stats.inference import (  # noqa: E402
    StatsResult,
    expected_significance,
    expected_upper_limit,
    run_stats,
)
from fivesigma.stats.robust import robust_stats  # noqa: E402
from fivesigma.stats.workspace import (  # noqa: E402
    HistInputs,
    build_workspace,
    histogram_inputs,
    merge_bins,
    optimise_binning,
    save_workspace,
    validate_workspace,
)
