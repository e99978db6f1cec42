"""Weighted histograms of the report: filled with :mod:`hist`, drawn with mplhep.

Every histogram of every report figure is made by :func:`weighted_hist`: a
``hist.Hist`` with ``hist.storage.Weight()``, so each bin keeps the sum of weights and
the sum of squared weights (its variance).  Event weights may be negative (NLO
generators); sums and variances stay exact, and a bin's error is ``sqrt(sum w^2)``.

:func:`density` normalises to unit area; :func:`histplot` draws through
``mplhep.histplot`` with symmetric ``sqrt(sum w^2)`` errors (never Poisson intervals,
which assume positive counts).

Examples
--------
>>> import numpy as np
>>> h = weighted_hist([0.5, 1.5, 1.5, 9.0], [1.0, 2.0, -0.5, 1.0], [0.0, 1.0, 2.0])
>>> h.values().tolist(), h.variances().tolist()  # 9.0 is overflow: in the last bin
([1.0, 2.5], [1.0, 5.25])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fivesigma.core import extras

__all__ = ["bin_errors", "density", "histplot", "weighted_hist"]


def weighted_hist(
    values: Any,
    weights: Any = None,
    edges: Any = None,
    *,
    fold_flow: bool = True,
    label: str = "",
) -> Any:
    """A 1-D ``hist.Hist`` with Weight storage filled with ``values`` and ``weights``.

    Parameters
    ----------
    values, weights : one entry per event; ``weights`` None means 1 for every event.
        Events whose value or weight is not finite are left out.
    edges : bin edges, increasing (at least two).
    fold_flow : add the under- and overflow into the first and last bin (what the
        report's plots show).  Without it they stay in hist's flow bins, and a value
        exactly on the last edge is overflow (hist's bins are half-open; numpy's last
        bin is closed).
    label : the axis label.
    """
    hist = extras.hist()
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.size != x.size:
        raise ValueError(f"weighted_hist: {x.size} values but {w.size} weights")
    if edges is None:
        raise ValueError("weighted_hist: give the bin edges")
    e = np.asarray(edges, dtype=np.float64).reshape(-1)
    if e.size < 2 or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
        raise ValueError(f"weighted_hist: bin edges must be finite and increasing, got {e[:6]}")
    ok = np.isfinite(x) & np.isfinite(w)
    h = hist.Hist(
        hist.axis.Variable(e, underflow=True, overflow=True, label=label),
        storage=hist.storage.Weight(),
    )
    h.fill(x[ok], weight=w[ok])
    if fold_flow:
        view = h.view(flow=True)
        for field in ("value", "variance"):
            v = getattr(view, field)
            v[1] += v[0]
            v[-2] += v[-1]
            v[0] = v[-1] = 0.0
    return h


def density(h: Any) -> tuple[Any, bool]:
    """``h`` scaled to unit area (values and errors), and whether that was possible.

    A histogram whose summed weight (flow included) is not positive cannot be
    normalised: it comes back unchanged with False, for the caller to say so.
    """
    total = float(h.sum(flow=True).value)
    if not (np.isfinite(total) and total > 0):
        return h, False
    return h / (total * h.axes[0].widths), True


def bin_errors(h: Any) -> np.ndarray:
    """``sqrt(sum w^2)`` per bin."""
    return np.sqrt(h.variances())


def histplot(
    ax: Any,
    h: Any | Sequence[Any],
    *,
    histtype: str = "step",
    errors: bool = True,
    **kwargs: Any,
) -> list[Any]:
    """Draw ``h`` (one ``hist.Hist`` or a list) on ``ax`` with ``mplhep.histplot``.

    Errors are ``sqrt(sum w^2)`` (``w2method="sqrt"``) on "step" and "errorbar"
    histograms unless ``errors`` is False; flow bins are not drawn (:func:`weighted_hist`
    folds them in).  Returns mplhep's artists (``StairsArtists`` / ``ErrorBarArtists``).
    """
    return extras.mplhep().histplot(
        h,
        ax=ax,
        histtype=histtype,
        yerr=None if errors else False,
        w2method="sqrt",
        flow="none",
        **kwargs,
    )
