"""The statistics stage of an analysis: a physics result that degrades, never crashes.

:func:`robust_stats` does what :func:`fivesigma.stats.run_stats` does (score histograms ->
workspace -> expected Z and CLs limit with pyhf) but never raises an ``Exception``; every
problem is recorded in the returned :class:`~fivesigma.stats.StatsResult`, level by level:

1. **Binning.**  Bins without positive background (a perfectly separated score puts all
   signal there) are merged into their neighbours; with ``min_background``, bins are
   merged until each holds more background than that, and if the whole background is not
   above it (small normalised yields) everything is merged into one bin, with a note.
2. **pyhf.**  Z and the limit are fitted with pyhf's default bounds on mu first (the same
   numbers as :func:`run_stats`).  A failed fit (a root-finder bracket beyond the bound
   on mu, "a and b are not an interval", a failed minimisation, a NaN) is retried with the
   upper bound on mu multiplied by ``widen_factor``, up to ``max_widenings`` times.
3. **Formula.**  What pyhf could not give comes from the closed-form Asimov results of
   :mod:`fivesigma.stats.asymptotic` (``"method": "asimov-formula"``, approximate), and the
   last pyhf error is kept in ``pyhf_error``.
4. **Nothing.**  When even that fails (no signal or no background in the histograms, ...)
   the numbers are None and ``error`` holds one line.

>>> import numpy as np
>>> y = np.r_[np.ones(50), np.zeros(50)]
>>> score = np.r_[np.full(50, 0.99), np.full(50, 0.01)]   # perfectly separated
>>> result, spec = robust_stats(score, y, bins=5, bkg_norm_unc=0.0, min_background=None)
>>> result.error is None and result.z_expected > 0
True
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from fivesigma.errors import describe_exception
from fivesigma.stats.asymptotic import asimov_significance, asimov_upper_limit
from fivesigma.stats.inference import (
    StatsResult,
    _sigma_guess,
    _to_model,
    expected_significance,
    expected_upper_limit,
)
from fivesigma.stats.workspace import HistInputs, build_workspace, histogram_inputs, merge_bins

__all__ = ["ERROR_CHARS", "robust_stats"]

#: Longest error text kept (one line).
ERROR_CHARS = 240

PYHF, FORMULA = "pyhf", "asimov-formula"


def _line(err: BaseException) -> str:
    return " ".join(describe_exception(err, limit=ERROR_CHARS).split())


@contextlib.contextmanager
def _quiet_pyhf() -> Iterator[None]:
    """Failed fits make pyhf log whole scipy results with tracebacks, and numpy warn about
    divisions by zero; the failures are recorded in the result instead."""
    logger = logging.getLogger("pyhf")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            yield
    finally:
        logger.setLevel(level)


def _one_bin(inputs: HistInputs) -> HistInputs:
    return HistInputs(
        edges=np.array([inputs.edges[0], inputs.edges[-1]]),
        s=np.array([inputs.s.sum()]),
        b=np.array([inputs.b.sum()]),
        s_sumw2=np.array([inputs.s_sumw2.sum()]),
        b_sumw2=np.array([inputs.b_sumw2.sum()]),
        notes=list(inputs.notes),
    )


def _binned(
    score: Any,
    y: Any,
    weight: Any,
    bins: Any,
    range: tuple[float, float],
    scale: float,
    signal_label: int,
    min_background: float | None,
) -> HistInputs:
    inputs = histogram_inputs(
        score, y, weight, bins=bins, range=range, scale=scale, signal_label=signal_label
    )
    if min_background is None:
        return inputs
    total = float(inputs.b.sum())
    if total <= min_background:
        out = _one_bin(inputs)
        out.notes.append(
            f"total background {total:.4g} is not above min_background {min_background:g}: "
            "all bins merged into one"
        )
        return out
    n_before = inputs.n_bins
    out = merge_bins(inputs, min_background=min_background)
    if out.n_bins < n_before:
        out.notes.append(
            f"{n_before} bins merged into {out.n_bins} so that each holds background above "
            f"{min_background:g}"
        )
    return out


def _with_widening(
    compute: Callable[[float | None], float | dict],
    first_bound: Callable[[], float],
    widen_factor: float,
    max_widenings: int,
    what: str,
    attempts: list[str],
) -> tuple[Any, int, str | None]:
    """``compute(None)``, then ``compute(bound * widen_factor**k)``; (value, k, last error)."""
    last = None
    bound: float | None = None
    for k in range(max_widenings + 1):
        try:
            if k > 0:
                bound = (first_bound() if bound is None else bound) * widen_factor
            return compute(bound), k, None
        except Exception as err:  # any pyhf/scipy failure: recorded, then retried
            last = _line(err)
            shown = "default bounds" if bound is None else f"mu <= {bound:g}"
            attempts.append(f"{what} ({shown}): {last}")
    return None, max_widenings, last


def _finite_z(z: float) -> float:
    if not math.isfinite(z):
        raise ValueError(f"Z is not finite ({z})")
    return z


def robust_stats(
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
    widen_factor: float = 10.0,
    max_widenings: int = 3,
) -> tuple[StatsResult, dict | None]:
    """Expected Z and CLs limit like :func:`fivesigma.stats.run_stats`, never raising.

    Same parameters as ``run_stats``, plus ``widen_factor`` and ``max_widenings`` (the
    retries of failed pyhf fits with a wider bound on mu).  Returns ``(StatsResult,
    spec)``; ``spec`` (the workspace) is None when it could not be built.  See the module
    docstring for what happens when a step fails; the result says which route gave each
    number (``method``, ``z_method``, ``limit_method``) and why (``failed_attempts``,
    ``pyhf_error``, ``error``).
    """
    try:
        inputs = _binned(score, y, weight, bins, range, scale, signal_label, min_background)
    except Exception as err:  # nothing to compute from
        return (
            StatsResult(
                z_expected=None,
                cls_upper_limit_expected=None,
                cls_band=None,
                bkg_norm_unc=float(bkg_norm_unc),
                method=None,
                z_method=None,
                limit_method=None,
                error=_line(err),
            ),
            None,
        )

    attempts: list[str] = []
    spec = model = None
    z = limit = None
    widenings = 0
    pyhf_error = None
    with _quiet_pyhf():
        try:
            spec = build_workspace(
                inputs.s,
                inputs.b,
                inputs.b_stat_unc if mc_stat else None,
                inputs.s_stat_unc if mc_stat else None,
                bkg_norm_unc=bkg_norm_unc,
            )
            model = _to_model(spec)
        except Exception as err:
            pyhf_error = _line(err)
            attempts.append(f"workspace: {pyhf_error}")
        if model is not None:
            z, k_z, err_z = _with_widening(
                lambda bound: _finite_z(expected_significance(model, poi_max=bound)),
                lambda: 10.0,  # pyhf's suggested bound on a normfactor
                widen_factor,
                max_widenings,
                "Z",
                attempts,
            )
            limit, k_l, err_l = _with_widening(
                lambda bound: expected_upper_limit(model, poi_max=bound),
                lambda: max(10.0, 100.0 * _sigma_guess(model)),
                widen_factor,
                max_widenings,
                "limit",
                attempts,
            )
            widenings = max(k_z if z is not None else 0, k_l if limit is not None else 0)
            pyhf_error = err_l or err_z

    z_method = limit_method = PYHF
    errors = []
    if z is None:
        z_method = FORMULA
        try:
            z = asimov_significance(inputs.s, inputs.b, bkg_norm_unc)
        except Exception as err:
            z, z_method = None, None
            errors.append(f"Z: {_line(err)}")
    if limit is None:
        limit_method = FORMULA
        try:
            limit = asimov_upper_limit(inputs.s, inputs.b, bkg_norm_unc)
        except Exception as err:
            limit, limit_method = None, None
            errors.append(f"limit: {_line(err)}")
    methods = {m for m in (z_method, limit_method) if m is not None}
    method = None if not methods else FORMULA if FORMULA in methods else PYHF
    if errors and pyhf_error:
        errors.append(f"pyhf: {pyhf_error}")
    result = StatsResult(
        z_expected=z,
        cls_upper_limit_expected=None if limit is None else limit["median"],
        cls_band=None if limit is None else limit["band"],
        n_bins=inputs.n_bins,
        signal_yield=float(inputs.s.sum()),
        background_yield=float(inputs.b.sum()),
        bkg_norm_unc=float(bkg_norm_unc),
        bin_edges=[float(e) for e in inputs.edges],
        notes=list(inputs.notes),
        method=method,
        z_method=z_method,
        limit_method=limit_method,
        poi_widenings=widenings,
        failed_attempts=attempts,
        pyhf_error=pyhf_error if method == FORMULA or errors else None,
        error="; ".join(errors)[: 2 * ERROR_CHARS] if errors else None,
    )
    return result, spec
