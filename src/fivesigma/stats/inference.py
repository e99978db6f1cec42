"""Expected discovery significance and expected CLs upper limits from a pyhf workspace.

All results are *expected*: computed on Asimov data in the asymptotic approximation
(Cowan, Cranmer, Gross, Vitells, arXiv:1007.1727), with nuisance parameters at their
nominal values.

* Discovery: Asimov data generated at mu = 1, the discovery test statistic q0
  (``pyhf.infer.test_statistics.q0``) evaluated on it, and Z = sqrt(q0).  Asymptotically
  this is the median significance with which the signal would exclude mu = 0; for one bin
  without uncertainties it equals Z_A = sqrt(2((s+b) ln(1+s/b) - s)).
* Limit: background-only Asimov data (mu = 0), the ``qtilde`` test statistic and CLs; the
  95% limit and its ±1σ/±2σ band come from pyhf's root finder
  (``pyhf.infer.intervals.upper_limits.toms748_scan``) started from a bracket guessed from
  the Gaussian estimate sigma_mu = 1/sqrt(sum s²/b); pyhf widens the bracket if needed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fivesigma.core import extras
from fivesigma.stats import StatsError
from fivesigma.stats.workspace import (
    build_workspace,
    histogram_inputs,
    merge_bins,
    validate_workspace,
)

__all__ = ["StatsResult", "expected_significance", "expected_upper_limit", "run_stats"]

BAND_KEYS = ("-2", "-1", "+1", "+2")


@dataclass
class StatsResult:
    """Expected statistical results of one score histogram.

    ``to_dict()`` gives the ``stats`` entries of metrics.json: ``z_expected``,
    ``cls_upper_limit_expected`` and ``cls_band`` (keys "-2", "-1", "+1", "+2"), plus the
    inputs that determine them, and how they were obtained:

    * ``method``: ``"pyhf"`` (fits of the workspace), ``"asimov-formula"`` (the closed
      forms of :mod:`fivesigma.stats.asymptotic`, approximate: at least one of Z and the
      limit could not be fitted), or None when nothing could be computed;
    * ``z_method``, ``limit_method``: the same for each result;
    * ``poi_widenings``: how many times the upper bound on mu was multiplied by 10 before
      the pyhf fits succeeded (0: the default bounds did);
    * ``failed_attempts``: one line per failed try (pyhf errors, before a retry);
    * ``pyhf_error``: the last pyhf error when the formula had to be used;
    * ``error``: one line when no result at all could be computed (the numbers are None);
    * ``note``: a caveat on the numbers (e.g. unit event weights: not physical);
    * ``notes``: what the binning did (merged bins, clipped yields).
    """

    z_expected: float | None
    cls_upper_limit_expected: float | None
    cls_band: dict[str, float] | None
    n_bins: int = 0
    signal_yield: float = 0.0
    background_yield: float = 0.0
    bkg_norm_unc: float = 0.0
    bin_edges: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    method: str | None = "pyhf"
    z_method: str | None = "pyhf"
    limit_method: str | None = "pyhf"
    poi_widenings: int = 0
    failed_attempts: list[str] = field(default_factory=list)
    pyhf_error: str | None = None
    error: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return asdict(self)


def _to_model(spec_or_model: Any) -> Any:
    """A ``pyhf.Model`` from a workspace dict, a ``pyhf.Workspace`` or a model."""
    pyhf = extras.pyhf()
    if isinstance(spec_or_model, pyhf.pdf.Model):
        return spec_or_model
    if isinstance(spec_or_model, dict):
        spec_or_model = validate_workspace(spec_or_model)
    if isinstance(spec_or_model, pyhf.Workspace):
        # Keep the default (linear) interpolation codes the spec was written for.
        return spec_or_model.model()
    raise StatsError(
        f"expected a workspace dict, pyhf.Workspace or pyhf.Model, got {type(spec_or_model).__name__}"
    )


def _pars(model: Any, mu: float) -> np.ndarray:
    """Parameters at POI ``mu`` with nuisance parameters at their nominal values."""
    pars = np.asarray(model.config.suggested_init(), dtype=np.float64)
    pars[model.config.poi_index] = mu
    return pars


def _asimov(model: Any, mu: float) -> Any:
    """Asimov data (main + auxiliary) at POI ``mu`` and nominal nuisance parameters."""
    return model.expected_data(_pars(model, mu))


def expected_significance(spec_or_model: Any, poi_max: float | None = None) -> float:
    """Expected (median) discovery significance Z of the signal in a workspace.

    Route: q0 on Asimov data generated at mu = 1 with nominal nuisance parameters;
    Z = sqrt(q0) (see the module docstring).

    Parameters
    ----------
    spec_or_model : workspace dict (from :func:`build_workspace`), ``pyhf.Workspace`` or
        ``pyhf.Model`` whose POI is the signal strength
    poi_max : upper bound on mu in the fits (None: the model's suggested bound, 10)

    Example
    -------
    >>> round(expected_significance(build_workspace([10.0], [100.0], bkg_norm_unc=0)), 3)
    0.984
    """
    pyhf = extras.pyhf()
    model = _to_model(spec_or_model)
    data = _asimov(model, 1.0)
    bounds = model.config.suggested_bounds()
    if poi_max is not None:
        bounds = [list(bd) for bd in bounds]
        bounds[model.config.poi_index] = [0.0, float(poi_max)]
    q0 = pyhf.infer.test_statistics.q0(
        0.0,
        data,
        model,
        model.config.suggested_init(),
        bounds,
        model.config.suggested_fixed(),
    )
    return math.sqrt(max(float(q0), 0.0))


def _sigma_guess(model: Any) -> float:
    """Gaussian estimate of the uncertainty on mu, 1/sqrt(sum s²/b), without systematics."""
    sb = np.asarray(model.expected_actualdata(_pars(model, 1.0)), dtype=np.float64)
    b = np.asarray(model.expected_actualdata(_pars(model, 0.0)), dtype=np.float64)
    s = sb - b
    inv = float(np.sum(s * s / np.maximum(b, 1e-12)))
    if not inv > 0:
        raise StatsError(
            "the workspace has no signal (all signal yields are 0); no limit can be set"
        )
    return 1.0 / math.sqrt(inv)


def expected_upper_limit(
    spec_or_model: Any,
    level: float = 0.05,
    rtol: float = 1e-3,
    return_scan: bool = False,
    poi_max: float | None = None,
) -> dict[str, Any]:
    """Expected CLs upper limit on the signal strength mu, with its ±1σ and ±2σ band.

    Computed on background-only Asimov data with the ``qtilde`` test statistic in the
    asymptotic approximation; the limits are roots of CLs(mu) = ``level`` found by
    pyhf's toms748 root finder to relative tolerance ``rtol``.

    ``poi_max`` is the initial upper bound on mu in the fits (None: max(10, 100 sigma_mu)
    with sigma_mu the Gaussian estimate); it is widened when the limit lands on it.

    Returns
    -------
    dict
        ``{"median": float, "band": {"-2": .., "-1": .., "+1": .., "+2": ..},
        "level": level}``; with ``return_scan`` also ``"scan": {"mu": [...],
        "cls_expected": [[-2σ, -1σ, median, +1σ, +2σ] per mu]}``, the points evaluated.
    """
    if not 0.0 < level < 1.0:
        raise StatsError(f"CLs level must be in (0, 1), got {level!r}")
    toms748_scan = extras.pyhf("infer.intervals.upper_limits").toms748_scan

    model = _to_model(spec_or_model)
    data = _asimov(model, 0.0)
    sigma = _sigma_guess(model)
    poi = model.config.poi_index
    poi_max = max(10.0, 100.0 * sigma) if poi_max is None else float(poi_max)
    for _ in range(4):
        bounds = [list(bd) for bd in model.config.suggested_bounds()]
        # qtilde needs the POI bounded below at 0; the upper bound must exceed any root.
        bounds[poi] = [0.0, poi_max]
        _obs, exp, (mus, results) = toms748_scan(
            data,
            model,
            0.5 * sigma,
            5.0 * sigma,
            level=level,
            rtol=rtol,
            from_upper_limit_fn=True,
            test_stat="qtilde",
            par_bounds=bounds,
            calctype="asymptotics",
        )
        limits = [float(x) for x in exp]
        # A root at or beyond the POI bound would be clipped by the fit: widen and redo.
        if max(mus) < poi_max:
            break
        poi_max *= 100.0
    else:  # pragma: no cover - needs an absurdly weak signal
        raise StatsError(f"expected CLs limit exceeds mu = {poi_max:g}; the signal is too small")
    if not all(np.isfinite(limits)) or any(np.diff(limits) < 0):
        raise StatsError(f"CLs limit computation did not converge (limits {limits})")
    out: dict[str, Any] = {
        "median": limits[2],
        "band": dict(zip(BAND_KEYS, limits[:2] + limits[3:], strict=True)),
        "level": level,
    }
    if return_scan:
        order = np.argsort(mus)
        out["scan"] = {
            "mu": [float(mus[i]) for i in order],
            "cls_expected": [[float(v) for v in results[i][1]] for i in order],
        }
    return out


def run_stats(
    score: Any,
    y: Any,
    weight: Any = None,
    bins: int | Any = 10,
    range: tuple[float, float] = (0.0, 1.0),
    bkg_norm_unc: float = 0.1,
    scale: float = 1.0,
    *,
    signal_label: int = 1,
    min_background: float | None = None,
    mc_stat: bool = True,
) -> tuple[StatsResult, dict]:
    """Score histograms -> workspace -> expected Z and CLs limit, in one call.

    Parameters
    ----------
    score, y, weight, bins, range, scale, signal_label : see :func:`histogram_inputs`
    bkg_norm_unc : relative background normalisation uncertainty (normsys), 0 for none
    min_background : if given, merge bins until each has at least this background yield
    mc_stat : include the MC statistical uncertainties (staterror) of both samples

    Returns
    -------
    (StatsResult, spec) where spec is the pyhf workspace dict (see :func:`save_workspace`).
    """
    inputs = histogram_inputs(
        score, y, weight, bins=bins, range=range, scale=scale, signal_label=signal_label
    )
    if min_background is not None:
        inputs = merge_bins(inputs, min_background=min_background)
    spec = build_workspace(
        inputs.s,
        inputs.b,
        inputs.b_stat_unc if mc_stat else None,
        inputs.s_stat_unc if mc_stat else None,
        bkg_norm_unc=bkg_norm_unc,
    )
    model = _to_model(spec)
    z = expected_significance(model)
    limit = expected_upper_limit(model)
    result = StatsResult(
        z_expected=z,
        cls_upper_limit_expected=limit["median"],
        cls_band=limit["band"],
        n_bins=inputs.n_bins,
        signal_yield=float(inputs.s.sum()),
        background_yield=float(inputs.b.sum()),
        bkg_norm_unc=float(bkg_norm_unc),
        bin_edges=[float(e) for e in inputs.edges],
        notes=list(inputs.notes),
    )
    return result, spec
