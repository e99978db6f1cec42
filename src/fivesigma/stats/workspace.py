"""Score histograms and the HistFactory workspace (pyhf JSON) built from them.

Binning policy
--------------
pyhf needs a strictly positive expectation in every bin.  A bin whose background yield is
not positive (empty, or net negative from negative event weights) is by default *merged*
with its neighbour (towards lower score) rather than floored: a floored background under
real signal would give a significance set by the arbitrary floor value.  The alternative
``empty_background="floor"`` keeps the binning and sets such bins to a small positive
floor.  Negative signal yields are clipped to zero (a zero signal is valid in pyhf).  Both
corrections emit a :class:`UserWarning`.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fivesigma.core import extras
from fivesigma.core.files import atomic_file
from fivesigma.stats import StatsError

__all__ = [
    "HistInputs",
    "build_workspace",
    "histogram_inputs",
    "merge_bins",
    "optimise_binning",
    "save_workspace",
    "validate_workspace",
]

#: Background yield given to non-positive bins with ``empty_background="floor"``.
BACKGROUND_FLOOR = 1e-6


@dataclass
class HistInputs:
    """Per-bin signal and background yields of a score histogram.

    Attributes
    ----------
    edges : bin edges in score, shape (n_bins + 1,)
    s, b : signal and background yields per bin (weighted, scaled)
    s_sumw2, b_sumw2 : sum of squared (scaled) weights per bin
    """

    edges: np.ndarray
    s: np.ndarray
    b: np.ndarray
    s_sumw2: np.ndarray
    b_sumw2: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def n_bins(self) -> int:
        """Number of bins."""
        return len(self.s)

    @property
    def s_stat_unc(self) -> np.ndarray:
        """MC statistical uncertainty on the signal yields, sqrt(sum w²)."""
        return np.sqrt(self.s_sumw2)

    @property
    def b_stat_unc(self) -> np.ndarray:
        """MC statistical uncertainty on the background yields, sqrt(sum w²)."""
        return np.sqrt(self.b_sumw2)


def _as_1d(name: str, values: Any, n: int | None = None) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if n is not None and len(arr) != n:
        raise StatsError(f"'{name}' has {len(arr)} entries but 'score' has {n}; give one per event")
    if not np.all(np.isfinite(arr)):
        raise StatsError(
            f"'{name}' contains NaN or infinite values; only finite numbers are accepted"
        )
    return arr


def histogram_inputs(
    score: Any,
    y: Any,
    weight: Any = None,
    bins: int | Any = 10,
    range: tuple[float, float] = (0.0, 1.0),
    scale: float = 1.0,
    *,
    signal_label: int = 1,
    empty_background: Literal["merge", "floor"] = "merge",
) -> HistInputs:
    """Weighted signal and background histograms of a classifier score.

    Parameters
    ----------
    score : classifier output per event
    y : class label per event; ``y == signal_label`` is signal, every other class background
    weight : event weights (None: all 1); negative weights are allowed
    bins : number of equal-width bins in ``range``, or explicit increasing edges
    range : score range; scores outside it are clipped into the first/last bin so that no
        event is lost
    scale : multiplies yields and their uncertainties (e.g. ``1/test_fraction`` or
        luminosity / generated luminosity)
    empty_background : ``"merge"`` (default) non-positive background bins into their
        neighbour, or ``"floor"`` them at :data:`BACKGROUND_FLOOR`

    Returns
    -------
    HistInputs
    """
    score = _as_1d("score", score)
    n = len(score)
    if n == 0:
        raise StatsError(
            "no events to histogram: 'score' is empty; give at least one signal and one background event"
        )
    y = _as_1d("y", y, n)
    weight = np.ones(n) if weight is None else _as_1d("weight", weight, n)
    if not (np.isfinite(scale) and scale > 0):
        raise StatsError(f"'scale' must be a positive finite number, got {scale!r}")
    if empty_background not in ("merge", "floor"):
        raise StatsError(
            f"empty_background={empty_background!r} is not known; use 'merge' or 'floor'"
        )

    if np.ndim(bins) == 0:
        if int(bins) < 1:
            raise StatsError(f"'bins' must be at least 1, got {bins!r}")
        lo, hi = float(range[0]), float(range[1])
        if not hi > lo:
            raise StatsError(f"score range {range!r} is empty; give (low, high) with low < high")
        edges = np.linspace(lo, hi, int(bins) + 1)
    else:
        edges = np.asarray(bins, dtype=np.float64)
        if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
            raise StatsError(
                "'bins' edges must be a 1-d strictly increasing sequence of at least 2 values"
            )
    # Clip instead of dropping: a score of exactly 1.0 or a regressor overshooting the
    # range must still count (np.histogram silently drops out-of-range entries).
    score = np.clip(score, edges[0], edges[-1])

    is_sig = y == signal_label
    if not np.any(is_sig):
        raise StatsError(
            f"no signal events (label {signal_label}) in 'y'; the score histogram needs signal"
        )
    if np.all(is_sig):
        raise StatsError(
            f"no background events (label != {signal_label}) in 'y'; the score histogram needs background"
        )

    w = weight * scale

    def hist(mask: np.ndarray, ww: np.ndarray) -> np.ndarray:
        return np.histogram(score[mask], bins=edges, weights=ww[mask])[0]

    s, s_sumw2 = hist(is_sig, w), hist(is_sig, w * w)
    b, b_sumw2 = hist(~is_sig, w), hist(~is_sig, w * w)
    if b.sum() <= 0:
        raise StatsError(
            f"total background yield is {b.sum():.4g} (<= 0); a limit or significance needs positive background"
        )
    if s.sum() <= 0:
        raise StatsError(
            f"total signal yield is {s.sum():.4g} (<= 0); a limit or significance needs positive signal"
        )

    out = HistInputs(edges=edges, s=s, b=b, s_sumw2=s_sumw2, b_sumw2=b_sumw2)
    if np.any(s < 0):
        msg = f"{int(np.sum(s < 0))} bin(s) with negative signal yield (negative weights) clipped to 0"
        warnings.warn(msg, UserWarning, stacklevel=2)
        out.notes.append(msg)
        out.s = np.clip(s, 0.0, None)
    bad = b <= 0
    if np.any(bad):
        if empty_background == "merge":
            msg = (
                f"{int(bad.sum())} bin(s) with no positive background yield merged into neighbours"
            )
            out = merge_bins(out, min_background=0.0)
        else:
            msg = f"{int(bad.sum())} bin(s) with no positive background yield set to {BACKGROUND_FLOOR:g}"
            out.b = np.where(bad, BACKGROUND_FLOOR, b)
        warnings.warn(msg, UserWarning, stacklevel=2)
        out.notes.append(msg)
    return out


def merge_bins(inputs: HistInputs, min_background: float = 0.0) -> HistInputs:
    """Merge adjacent bins so that every bin has background yield > ``min_background``.

    Bins are accumulated from the highest score downwards (the signal-rich end keeps the
    finest binning that the background allows); a remainder at the low end that never
    reaches the minimum is merged into the bin above it.  Signal, background and their
    sum of squared weights are added; edges are kept where bins are closed.
    """
    if inputs.b.sum() <= min_background:
        raise StatsError(
            f"total background yield {inputs.b.sum():.4g} is not above the minimum "
            f"{min_background:g} per bin; lower the minimum or add background events"
        )
    groups: list[list[int]] = []
    current: list[int] = []
    acc = 0.0
    for i in np.arange(inputs.n_bins)[::-1]:
        current.append(int(i))
        acc += inputs.b[i]
        if acc > min_background:
            groups.append(current)
            current, acc = [], 0.0
    if current:  # leftover at the low-score end
        if groups:
            groups[-1].extend(current)
        else:
            groups.append(current)
    groups = [sorted(g) for g in groups[::-1]]  # increasing score order

    def summed(a: np.ndarray) -> np.ndarray:
        return np.array([a[g].sum() for g in groups])

    edges = np.array([inputs.edges[g[0]] for g in groups] + [inputs.edges[-1]])
    return HistInputs(
        edges=edges,
        s=summed(inputs.s),
        b=summed(inputs.b),
        s_sumw2=summed(inputs.s_sumw2),
        b_sumw2=summed(inputs.b_sumw2),
        notes=list(inputs.notes),
    )


def optimise_binning(
    inputs: HistInputs, min_background: float = 1.0, max_rel_stat_unc: float | None = 0.5
) -> HistInputs:
    """A simple binning optimisation: merge bins until each is statistically usable.

    Every bin ends with background yield >= ``min_background`` and (if given) a relative
    MC statistical uncertainty on the background <= ``max_rel_stat_unc``; bins are merged
    from the high-score end downwards (see :func:`merge_bins`).  This guards the expected
    significance against a few high-score MC events with tiny background.
    """
    out = merge_bins(inputs, min_background=max(min_background, 0.0))
    if max_rel_stat_unc is None:
        return out
    while out.n_bins > 1:
        rel = out.b_stat_unc / np.maximum(out.b, 1e-300)
        worst = np.flatnonzero(rel > max_rel_stat_unc)
        if len(worst) == 0:
            break
        i = int(worst[-1])  # highest-score offender
        j = i - 1 if i > 0 else i + 1  # merge towards lower score
        lo, hi = min(i, j), max(i, j)
        keep = [k for k in np.arange(out.n_bins) if k != hi]

        def merged(a: np.ndarray, lo: int = lo, hi: int = hi, keep: list = keep) -> np.ndarray:
            a = a.copy()
            a[lo] += a[hi]
            return a[keep]

        out = HistInputs(
            edges=np.delete(out.edges, hi),
            s=merged(out.s),
            b=merged(out.b),
            s_sumw2=merged(out.s_sumw2),
            b_sumw2=merged(out.b_sumw2),
            notes=out.notes,
        )
    return out


def _check_yields(name: str, values: Any, n: int | None = None) -> list[float]:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(arr) == 0:
        raise StatsError(f"'{name}' is empty; give one yield per bin")
    if n is not None and len(arr) != n:
        raise StatsError(f"'{name}' has {len(arr)} bins but 'b' has {n}; give one value per bin")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise StatsError(f"'{name}' must be finite and >= 0 in every bin, got {arr.tolist()}")
    return arr.tolist()


def build_workspace(
    s: Any,
    b: Any,
    b_stat_unc: Any = None,
    s_stat_unc: Any = None,
    bkg_norm_unc: float = 0.1,
    name: str = "fivesigma",
) -> dict:
    """A HistFactory workspace (pyhf JSON) for a one-channel signal + background fit.

    Channel ``score`` holds sample ``signal`` (normfactor ``mu``, the POI) and sample
    ``background`` with a shared MC-statistics ``staterror`` ``mc_stat`` (if ``b_stat_unc``
    or ``s_stat_unc`` is given and not all zero) and a ``normsys`` ``bkg_norm`` with
    hi/lo = 1 ± ``bkg_norm_unc`` (if > 0).

    The *observations* are the background-only Asimov data (the nominal background
    yields), so the workspace is self-contained and every result from it is *expected*.

    Raises
    ------
    StatsError
        empty or negative yields, a bin with no background, mismatched lengths, or an
        uncertainty outside [0, 1); also if pyhf's schema rejects the result.

    Example
    -------
    >>> spec = build_workspace([5.0, 10.0], [100.0, 20.0], [3.0, 2.0])
    >>> spec["channels"][0]["samples"][0]["name"]
    'signal'
    """
    b_list = _check_yields("b", b)
    n = len(b_list)
    if min(b_list) <= 0:
        raise StatsError(
            f"background yield must be > 0 in every bin, got {b_list}; merge empty bins "
            "first (fivesigma.stats.merge_bins)"
        )
    s_list = _check_yields("s", s, n)
    if not 0.0 <= float(bkg_norm_unc) < 1.0:
        raise StatsError(
            f"bkg_norm_unc must be in [0, 1) (a relative uncertainty), got {bkg_norm_unc!r}"
        )

    def staterror(unc: Any, label: str) -> list[dict]:
        if unc is None:
            return []
        vals = _check_yields(label, unc, n)
        if not any(vals):
            return []
        return [{"name": "mc_stat", "type": "staterror", "data": vals}]

    signal_mods: list[dict] = [{"name": "mu", "type": "normfactor", "data": None}]
    signal_mods += staterror(s_stat_unc, "s_stat_unc")
    bkg_mods: list[dict] = staterror(b_stat_unc, "b_stat_unc")
    if bkg_norm_unc > 0:
        bkg_mods.append(
            {
                "name": "bkg_norm",
                "type": "normsys",
                "data": {"hi": 1.0 + float(bkg_norm_unc), "lo": 1.0 - float(bkg_norm_unc)},
            }
        )
    spec = {
        "channels": [
            {
                "name": "score",
                "samples": [
                    {"name": "signal", "data": s_list, "modifiers": signal_mods},
                    {"name": "background", "data": b_list, "modifiers": bkg_mods},
                ],
            }
        ],
        # Background-only Asimov data: results from this workspace are expected ones.
        "observations": [{"name": "score", "data": list(b_list)}],
        "measurements": [{"name": name, "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }
    validate_workspace(spec)
    return spec


def validate_workspace(spec: dict) -> Any:
    """Check ``spec`` against pyhf's workspace schema; return the ``pyhf.Workspace``."""
    pyhf = extras.pyhf()
    try:
        return pyhf.Workspace(spec)
    except pyhf.exceptions.InvalidSpecification as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise StatsError(f"workspace does not match pyhf's schema: {first}") from None


def save_workspace(spec: dict, path: str | os.PathLike) -> Path:
    """Write ``spec`` as JSON to ``path`` atomically (never a half-written file); the path."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(spec, indent=2) + "\n")
    return Path(path)
