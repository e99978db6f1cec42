"""The one look of every fivesigma figure: palette, mplhep style, experiment label, PNG.

Colours are defined once, here: :data:`PALETTE` (the colour-blind-safe sequence of
M. Petroff, arXiv:2107.02270, that mplhep uses) and the roles taken from it
(:data:`SIGNAL_COLOR`, :data:`BACKGROUND_COLOR`, ...).  The HTML template takes its
accent colours from :data:`HTML_COLORS`, derived from the same palette.

Figures are drawn inside :func:`hep_style`, a matplotlib ``rc_context`` holding
mplhep's CMS style scaled down to report-sized figures (:func:`rc_params`) with a neutral
font fallback and this palette as colour cycle.  ``rc_context`` restores every rcParam on
exit, so drawing a report changes no global matplotlib state; a lock serialises drawing
between threads while the context is active.

The experiment-style label (:func:`exp_label`, through ``mplhep.label.exp_label``) reads
"fivesigma" by default, never the name of a real experiment; :func:`use_label` changes it
(``ExpLabel("fivesigma", "Simulation")``) or turns it off (``None``) for the figures drawn
inside it.

This module imports no plotting library at import time: matplotlib and mplhep are
imported (through :mod:`fivesigma.core.extras`) on the first figure.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import io
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fivesigma.core import extras

__all__ = [
    "BACKGROUND_COLOR",
    "BAND_1SIGMA_COLOR",
    "BAND_2SIGMA_COLOR",
    "DEFAULT_LABEL",
    "DPI",
    "HTML_COLORS",
    "PALETTE",
    "SIGNAL_COLOR",
    "ExpLabel",
    "close_figure",
    "color",
    "current_label",
    "exp_label",
    "fig_to_data_uri",
    "hep_style",
    "rc_params",
    "use_label",
]

#: Colour-blind-safe 10-colour sequence (M. Petroff, arXiv:2107.02270), as used by mplhep.
PALETTE: tuple[str, ...] = (
    "#3f90da",
    "#ffa90e",
    "#bd1f01",
    "#94a4a2",
    "#832db6",
    "#a96b59",
    "#e76300",
    "#b9ac70",
    "#717581",
    "#92dadd",
)
#: Roles, all taken from the palette.
BACKGROUND_COLOR = PALETTE[0]
SIGNAL_COLOR = PALETTE[2]
#: The expected-limit band colours of the usual "Brazil" plot (a convention, not a role).
BAND_1SIGMA_COLOR = "#00cc00"
BAND_2SIGMA_COLOR = "#ffdf00"
#: Colours the HTML template uses (headings underline, badges).
HTML_COLORS = {"accent": PALETTE[0], "badge": PALETTE[1], "alarm": "#c00000"}

#: PNG resolution of embedded figures.
DPI = 100


def color(i: int) -> str:
    """The ``i``-th palette colour, cycling."""
    return PALETTE[i % len(PALETTE)]


# --------------------------------------------------------------------------- style

#: What changes from mplhep's CMS style: sizes for 6-10 inch report figures instead of
#: CMS's 10 inch single plots, a font fallback that has every glyph (ε, σ, ≤), and the
#: palette above as colour cycle.
_OVERRIDES: dict[str, Any] = {
    "font.size": 10.0,
    "font.sans-serif": ["TeX Gyre Heros", "DejaVu Sans"],
    "figure.figsize": (6.0, 4.2),
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "axes.linewidth": 1.0,
    "axes.titlesize": "medium",
    "lines.linewidth": 1.5,
    "legend.fontsize": "small",
    "xtick.major.size": 5.0,
    "ytick.major.size": 5.0,
    "xtick.minor.size": 2.5,
    "ytick.minor.size": 2.5,
    "xtick.major.pad": 3.5,
    "ytick.major.pad": 3.5,
    "grid.alpha": 0.5,
}

_LOCK = threading.RLock()
_RC: dict[str, Any] | None = None


def rc_params() -> dict[str, Any]:
    """The rcParams of every report figure: mplhep's CMS style with :data:`_OVERRIDES`."""
    global _RC
    if _RC is None:
        mpl = extras.matplotlib()
        mplhep = extras.mplhep()
        rc = dict(mplhep.style.CMS)
        rc.update(_OVERRIDES)
        rc["axes.prop_cycle"] = mpl.cycler(color=list(PALETTE))
        _RC = rc
    return dict(_RC)


@contextlib.contextmanager
def hep_style() -> Iterator[None]:
    """Draw inside this: the report style is active, and restored on exit (re-entrant)."""
    rc = rc_params()
    with _LOCK, extras.matplotlib().rc_context(rc):
        yield


# --------------------------------------------------------------------------- label


@dataclass(frozen=True)
class ExpLabel:
    """The label above each figure's (first) axes: ``exp`` in bold, ``text`` after it.

    ``ExpLabel()`` reads "fivesigma"; ``ExpLabel("fivesigma", "Simulation")`` adds the
    usual italic suffix.
    """

    exp: str = "fivesigma"
    text: str = ""


DEFAULT_LABEL = ExpLabel()
_LABEL: contextvars.ContextVar[ExpLabel | None] = contextvars.ContextVar(
    "fivesigma_report_label", default=DEFAULT_LABEL
)


def current_label() -> ExpLabel | None:
    """The label figures drawn now get (None: no label)."""
    return _LABEL.get()


@contextlib.contextmanager
def use_label(label: ExpLabel | None) -> Iterator[None]:
    """Figures drawn inside get ``label`` (None: no experiment label)."""
    token = _LABEL.set(label)
    try:
        yield
    finally:
        _LABEL.reset(token)


def exp_label(ax: Any, rlabel: str = "") -> Any:
    """Put the current experiment label above ``ax`` (left) and ``rlabel`` (right).

    Uses ``mplhep.label.exp_label``; with no label (see :func:`use_label`) only
    ``rlabel`` is shown, as a right-aligned title.  Returns mplhep's text objects, or
    None.
    """
    label = _LABEL.get()
    if label is None:
        if rlabel:
            ax.set_title(rlabel, loc="right", fontsize="small")
        return None
    mplhep = extras.mplhep()
    # rlabel="" (not None): mplhep would otherwise write a centre-of-mass energy there.
    # scilocator_adjust=False: it would draw the whole figure once more per label.
    return mplhep.label.exp_label(
        exp=label.exp,
        llabel=label.text,
        rlabel=rlabel,
        loc=0,
        ax=ax,
        fontsize=rc_params()["font.size"],
        scilocator_adjust=False,
    )


# --------------------------------------------------------------------------- PNG


def close_figure(fig: Any) -> None:
    """Release ``fig``: clear it, and make pyplot forget it when pyplot made it."""
    # Figures made here are not registered with pyplot; one made by a caller through
    # pyplot is, and would leak there unless pyplot forgets it too.
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close(fig)
    fig.clear()


def fig_to_data_uri(fig: Any, dpi: int = DPI) -> str:
    """Render ``fig`` as PNG and return a ``data:image/png;base64,...`` URI; closes it.

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> fig_to_data_uri(Figure(figsize=(1, 1))).startswith("data:image/png;base64,")
    True
    """
    buf = io.BytesIO()
    try:
        with hep_style():
            fig.savefig(buf, format="png", dpi=dpi)
    finally:
        close_figure(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
