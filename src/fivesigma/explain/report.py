"""SHAP in the report: beeswarm and bar figures, and a section for the shared report builder.

Figures are drawn with matplotlib (``matplotlib.figure.Figure``, no pyplot, no ``shap``
plotting) inside the report style :func:`fivesigma.report.style.hep_style`, with the
report palette and the experiment label.  A beeswarm draws at most
:data:`MAX_POINTS` events (a fixed random subset), so figures stay cheap whatever was
explained; both figures show the :data:`MAX_DISPLAY` most important features.

>>> from fivesigma.report import Report
>>> # Report("SHAP").add(report_section({"bdt": expl})).write("report.html")
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fivesigma.core import extras
from fivesigma.explain.values import Explanation, mean_abs_shap
from fivesigma.report.builder import Figure, Grid, Group, Section, Table, Text, slugify
from fivesigma.report.style import (
    BACKGROUND_COLOR,
    PALETTE,
    SIGNAL_COLOR,
    exp_label,
    hep_style,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure

__all__ = ["MAX_DISPLAY", "MAX_POINTS", "bar_figure", "beeswarm_figure", "report_section"]

#: events drawn in a beeswarm (a fixed random subset of the explained events)
MAX_POINTS = 2000
#: features shown in a figure (the rest are summed into one bar / left out)
MAX_DISPLAY = 20

_METHOD_TEXT = {
    "tree": "exact TreeSHAP (xgboost)",
    "linear": "exact linear SHAP",
    "gradient": "expected gradients",
    "kernel": "kernel SHAP",
}


def _order(expl: Explanation) -> np.ndarray:
    """Feature indices, most important (mean |SHAP|) first."""
    means = np.abs(expl.values).mean(axis=0) if expl.n_events else np.zeros(expl.n_features)
    return np.array(sorted(range(expl.n_features), key=lambda j: (-means[j], j)), dtype=int)


def _label_inches(labels: Sequence[str], fontsize: float = 8) -> float:
    longest = max((len(str(x)) for x in labels), default=1)
    return 0.3 + 0.6 * fontsize / 72 * longest


def _new_figure(width: float, height: float, left: float, right: float = 0.25) -> MplFigure:
    fig = extras.matplotlib("figure").Figure(figsize=(width, height))
    fig.subplots_adjust(
        left=left / width, right=1 - right / width, bottom=0.6 / height, top=1 - 0.4 / height
    )
    return fig


def _swarm(x: np.ndarray, rng: np.random.Generator, nbins: int = 80) -> np.ndarray:
    """Vertical offsets in [-0.4, 0.4] that spread points of similar ``x`` apart (beeswarm):
    within each of ``nbins`` bins of x the points alternate above and below the row, so a
    row is as thick as the density of its values."""
    n = x.size
    if n == 0:
        return np.zeros(0)
    lo, hi = float(x.min()), float(x.max())
    q = np.zeros(n, dtype=int) if not hi > lo else ((x - lo) / (hi - lo) * (nbins - 1)).astype(int)
    order = np.lexsort((rng.random(n), q))  # by bin, random within a bin
    qs = q[order]
    first = np.searchsorted(qs, qs, side="left")  # index of each point's bin start
    layer = np.arange(n) - first  # 0, 1, 2, ... within a bin
    offset = np.empty(n)
    offset[order] = np.ceil(layer / 2.0) * np.where(layer % 2 == 1, 1.0, -1.0)
    peak = float(np.max(np.abs(offset))) or 1.0
    return 0.4 * offset / peak


def _colormap() -> Any:
    colors = extras.matplotlib("colors")
    return colors.LinearSegmentedColormap.from_list(
        "fivesigma_shap", [BACKGROUND_COLOR, PALETTE[4], SIGNAL_COLOR]
    )


def beeswarm_figure(
    expl: Explanation,
    name: str = "",
    *,
    max_display: int = MAX_DISPLAY,
    max_points: int = MAX_POINTS,
    seed: int = 0,
) -> MplFigure:
    """SHAP value of each event (x) per feature (rows, most important on top), coloured by
    the feature's value (low blue, high red; 5-95% range per feature)."""
    with hep_style():
        rng = np.random.default_rng(seed)
        idx = np.arange(expl.n_events)
        if idx.size > max_points:
            idx = np.sort(rng.choice(idx.size, size=max_points, replace=False))
        values, data = expl.values[idx], expl.data[idx]
        feats = _order(expl)[:max_display]
        labels = [expl.feature_names[j] for j in feats]
        n = len(feats)
        fig = _new_figure(7.0, max(2.6, 0.34 * n + 1.3), left=_label_inches(labels), right=1.2)
        ax = fig.subplots()
        cmap = _colormap()
        for row, j in enumerate(feats):
            y = n - 1 - row
            v = data[:, j]
            lo, hi = np.quantile(v, [0.05, 0.95]) if v.size else (0.0, 1.0)
            if not hi > lo:
                lo, hi = float(v.min(initial=0.0)), float(v.max(initial=1.0))
            c = np.clip((v - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.full(v.size, 0.5)
            ax.scatter(
                values[:, j],
                y + _swarm(values[:, j], rng),
                c=c,
                cmap=cmap,
                vmin=0.0,
                vmax=1.0,
                s=6,
                linewidths=0,
                alpha=0.8,
                rasterized=True,
            )
        ax.axvline(0.0, color=PALETTE[8], linewidth=0.8)
        ax.set_yticks(np.arange(n)[::-1], labels=labels, fontsize=8)
        ax.tick_params(axis="y", which="minor", left=False, right=False)
        ax.set_ylim(-0.7, n - 0.3)
        ax.set_xlabel(f"SHAP value ({expl.units})")
        w = fig.get_size_inches()[0]
        cax = fig.add_axes((1 - 1.0 / w, 0.2, 0.15 / w, 0.6))
        mpl = extras.matplotlib()
        bar = fig.colorbar(
            mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(0.0, 1.0), cmap=cmap), cax=cax
        )
        bar.set_ticks([0.0, 1.0], labels=["low", "high"])
        bar.ax.set_ylabel("feature value", loc="center", labelpad=-4)
        cax.minorticks_off()
        exp_label(ax, rlabel=f"{name}: SHAP" if name else "SHAP")
        return fig


def bar_figure(expl: Explanation, name: str = "", *, max_display: int = MAX_DISPLAY) -> MplFigure:
    """Mean |SHAP value| per feature, most important on top; features beyond
    ``max_display`` are summed into one last bar."""
    with hep_style():
        ranking = list(mean_abs_shap(expl).items())
        shown = ranking[:max_display]
        labels = [f for f, _ in shown]
        heights = [v for _, v in shown]
        if len(ranking) > max_display:
            rest = ranking[max_display:]
            labels.append(f"sum of {len(rest)} other features")
            heights.append(float(sum(v for _, v in rest)))
        n = len(labels)
        fig = _new_figure(6.0, max(2.2, 0.32 * n + 1.2), left=_label_inches(labels))
        ax = fig.subplots()
        pos = np.arange(n)[::-1]
        colours = [PALETTE[0]] * len(shown) + [PALETTE[3]] * (n - len(shown))
        ax.barh(pos, heights, color=colours, alpha=0.85)
        ax.set_yticks(pos, labels=labels, fontsize=8)
        ax.tick_params(axis="y", which="minor", left=False, right=False)
        ax.set_xlabel(f"mean |SHAP value| ({expl.units})")
        ax.set_xlim(0.0, max(heights, default=0.0) * 1.08 or 1.0)
        exp_label(ax, rlabel=f"{name}: mean |SHAP|" if name else "mean |SHAP|")
        return fig


def _table(expl: Explanation) -> Table:
    ranking = mean_abs_shap(expl)
    total = sum(ranking.values())
    rows = [
        [i + 1, f, v, 100.0 * v / total if total > 0 else float("nan")]
        for i, (f, v) in enumerate(ranking.items())
    ]
    return Table(["rank", "feature", f"mean |SHAP| ({expl.units})", "share (%)"], rows, left=(1,))


def report_section(
    explanations: Mapping[str, Explanation],
    title: str = "Interpretability (SHAP)",
    anchor: str = "shap",
    *,
    max_display: int = MAX_DISPLAY,
    max_points: int = MAX_POINTS,
) -> Section:
    """A report section with, per model, a beeswarm and a bar figure of its SHAP values and
    a table of mean |SHAP| per feature.  Figures are callables, drawn when the report
    renders (a figure that fails shows a note; the rest of the report is kept)."""
    sec = Section(title, anchor=anchor)
    if not explanations:
        return sec.add(Text("No model was explained.", cls="note"))
    kinds = sorted({e.units for e in explanations.values()})
    units = (
        f"{kinds[0]} (the logit of the signal probability)"
        if kinds == ["log-odds of signal"]
        else " / ".join(kinds)
    )
    sec.add(
        Text(
            "SHAP values: each feature's contribution to each event's classifier output, "
            f"in {units}, relative to the expected output over the background events "
            "(the base value); per event they sum to the output minus the base value. "
            "Mean |SHAP| ranks the features by their average effect."
        )
    )
    for model, expl in explanations.items():
        method = _METHOD_TEXT.get(expl.method, expl.method)
        note = (
            f"{method}; {expl.n_events:,} events; base value {expl.base_value:.4g} "
            f"({expl.units}); largest additivity error {expl.additivity_error():.2g}"
        )
        bee = functools.partial(
            beeswarm_figure, expl, model, max_display=max_display, max_points=max_points
        )
        bar = functools.partial(bar_figure, expl, model, max_display=max_display)
        sec.add(
            Group(
                model,
                [
                    Grid(
                        [
                            Figure(bee, alt=f"{model} SHAP beeswarm"),
                            Figure(bar, alt=f"{model} mean |SHAP|"),
                        ]
                    ),
                    _table(expl),
                ],
                anchor=f"{anchor}-{slugify(model)}",
                note=note,
                badge=expl.method,
            )
        )
    return sec
