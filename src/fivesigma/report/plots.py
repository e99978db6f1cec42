"""Report plots: every function returns a :class:`matplotlib.figure.Figure`.

Figures are built with ``matplotlib.figure.Figure`` directly, never through pyplot, inside
:func:`fivesigma.report.style.hep_style` (mplhep's CMS look, the report palette, restored
on exit: no global rcParams change), and carry the experiment-style label of
:func:`fivesigma.report.style.exp_label`.  Histograms are ``hist.Hist`` objects with
Weight storage from :func:`fivesigma.report.histograms.weighted_hist`, drawn with
``mplhep.histplot``; errors are ``sqrt(sum w^2)``.  :func:`fig_to_data_uri` turns a
figure into an embeddable PNG.

Histograms take per-event weights; negative weights are allowed.  A class whose summed
weight is not positive cannot be normalised: it is drawn unnormalised and the legend
says so, instead of failing.

matplotlib, mplhep and hist are imported (through :mod:`fivesigma.core.extras`, which
names the install command when one is missing) only when a figure is drawn.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from fivesigma.core import extras
from fivesigma.report.histograms import density, histplot, weighted_hist
from fivesigma.report.style import (
    BACKGROUND_COLOR,
    BAND_1SIGMA_COLOR,
    BAND_2SIGMA_COLOR,
    PALETTE,
    SIGNAL_COLOR,
    color,
    exp_label,
    fig_to_data_uri,
    hep_style,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "correlation_figure",
    "cut_scan_figure",
    "fig_to_data_uri",
    "input_distributions_figure",
    "ranking_figure",
    "roc_figure",
    "score_distribution_figure",
    "stats_figure",
    "training_history_figure",
]

#: Events used to choose a feature's binning (range quantiles, integer detection); the
#: histograms themselves always use every event.
MAX_POINTS_FOR_BINNING = 200_000
#: ROC curves are drawn through at most this many points per curve.
MAX_ROC_POINTS = 2_000

_F = TypeVar("_F", bound=Callable[..., Any])


def _styled(func: _F) -> _F:
    """Build the figure inside the report style (rcParams are read as artists are made)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Figure:
        with hep_style():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# --------------------------------------------------------------------------- helpers


def _new_figure(width: float, height: float, constrained: bool = False) -> Figure:
    # Constrained layout costs about one extra draw per figure; only figures whose label
    # sizes are not known in advance (heatmap, ranking) could use it, the rest fixed margins.
    figure = extras.matplotlib("figure").Figure
    return figure(figsize=(width, height), layout="constrained" if constrained else None)


def _margins(
    fig: Figure,
    left: float = 0.8,
    right: float = 0.2,
    bottom: float = 0.55,
    top: float = 0.4,
    wspace: float = 0.25,
    hspace: float = 0.3,
) -> None:
    """Fixed margins given in inches (spacing as fractions of the axes size)."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(
        left=left / w,
        right=1 - right / w,
        bottom=bottom / h,
        top=1 - top / h,
        wspace=wspace,
        hspace=hspace,
    )


def _grid(ax: Any) -> None:
    ax.grid(True, which="major", alpha=0.3, linewidth=0.6, linestyle="-")


def _label_inches(labels: Sequence[str], fontsize: float = 8) -> float:
    """Rough width in inches of the longest tick label (about 0.6 em per character)."""
    longest = max((len(str(x)) for x in labels), default=1)
    return 0.25 + 0.6 * fontsize / 72 * longest


def _as_float(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).reshape(-1)


def _weights(w: Any, n: int) -> np.ndarray:
    if w is None:
        return np.ones(n)
    w = _as_float(w)
    return w if w.size == n else np.ones(n)


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _subsample(x: np.ndarray, cap: int = MAX_POINTS_FOR_BINNING) -> np.ndarray:
    # Deterministic stride: no RNG, same result every run.
    if x.size <= cap:
        return x
    return x[:: int(np.ceil(x.size / cap))]


def _feature_edges(x: np.ndarray, bins: int = 40) -> np.ndarray:
    """Bin edges for one feature: integer bins for small counts, else a robust range."""
    finite = _subsample(x[np.isfinite(x)])
    if finite.size == 0:
        return np.linspace(0.0, 1.0, bins + 1)
    uniq = np.unique(finite)
    if uniq.size <= 30 and np.all(uniq == np.round(uniq)):
        # Discrete feature (multiplicities, charges): one bin per integer value.
        return np.arange(uniq[0] - 0.5, uniq[-1] + 1.5, 1.0)
    lo, hi = np.quantile(finite, [0.005, 0.995])
    if not hi > lo:
        lo, hi = float(uniq[0]), float(uniq[-1])
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1)


def _score_edges(*scores: np.ndarray, bins: int = 40) -> np.ndarray:
    finite = [s[np.isfinite(s)] for s in scores if s.size]
    allv = np.concatenate(finite) if finite else np.array([0.0, 1.0])
    if allv.size == 0:
        return np.linspace(0.0, 1.0, bins + 1)
    lo, hi = float(allv.min()), float(allv.max())
    if lo >= 0.0 and hi <= 1.0:
        lo, hi = 0.0, 1.0  # probabilities: show the full range
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1)


def _thin(x: np.ndarray, y: np.ndarray, cap: int = MAX_ROC_POINTS) -> tuple[np.ndarray, np.ndarray]:
    if x.size <= cap:
        return x, y
    idx = np.unique(np.r_[np.linspace(0, x.size - 1, cap).astype(int), x.size - 1])
    return x[idx], y[idx]


def _class_hist(
    x: np.ndarray, w: np.ndarray, edges: np.ndarray, label: str, what: str = ""
) -> tuple[Any, str]:
    """Normalised weighted histogram of one class and its legend label."""
    h, normed = density(weighted_hist(x, w, edges))
    if normed:
        return h, f"{label} ({what})" if what else label
    return h, f"{label} ({what + ', ' if what else ''}Σw≤0, unnormalised)"


# --------------------------------------------------------------------------- figures


@_styled
def input_distributions_figure(
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray | None,
    features: Sequence[str],
    class_names: Mapping[int, str] | None = None,
    ncols: int = 4,
) -> Figure:
    """Normalised weighted distribution of each feature, signal vs background.

    One small panel per feature; under/overflow are folded into the edge bins; error
    bars are ``sqrt(sum w^2)`` after normalisation.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).reshape(-1)
    w = _weights(w, y.size)
    names = {1: "signal", 0: "background", **dict(class_names or {})}
    nf = len(features)
    ncols = max(1, min(ncols, nf))
    nrows = int(np.ceil(nf / ncols))
    fig = _new_figure(3.0 * ncols, 2.4 * nrows + 0.2)
    _margins(fig, left=0.6, right=0.15, bottom=0.5, top=0.4, wspace=0.35, hspace=0.45)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    is_sig = y == 1
    for i, name in enumerate(features):
        ax = axes[i]
        col = X[:, i]
        edges = _feature_edges(col)
        h, label = _class_hist(col[~is_sig], w[~is_sig], edges, names[0])
        histplot(ax, h, histtype="fill", color=BACKGROUND_COLOR, alpha=0.35, label=label)
        histplot(ax, h, histtype="step", color=BACKGROUND_COLOR, linewidth=1.0)
        h, label = _class_hist(col[is_sig], w[is_sig], edges, names[1])
        histplot(ax, h, histtype="step", color=SIGNAL_COLOR, linewidth=1.2, label=label)
        ax.set_xlabel(name, fontsize=9)
        ax.set_ylabel("normalised", fontsize=8)
        ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
        ax.tick_params(labelsize=7)
        # Minor ticks on a dozen small panels double the drawing time for little gain.
        ax.minorticks_off()
    for ax in axes[nf:]:
        ax.set_visible(False)
    exp_label(axes[0])
    # One legend for the whole grid, on the first panel, unless a panel needs its own note.
    for i, ax in enumerate(axes[:nf]):
        labels = ax.get_legend_handles_labels()[1]
        if i == 0 or any("unnormalised" in lab for lab in labels):
            ax.legend(fontsize=7)
    return fig


@_styled
def correlation_figure(corr: np.ndarray, features: Sequence[str], title: str) -> Figure:
    """Annotated heatmap of one correlation matrix (values in percent, as TMVA shows)."""
    c = np.asarray(corr, dtype=np.float64)
    n = len(features)
    size = max(3.5, 0.55 * n + 1.8)
    label = _label_inches(features)
    fig = _new_figure(size + 1.2 + label, size + label * 0.75)
    # Room for the rotated (60°) x labels below and the y labels on the left.
    _margins(fig, left=label, bottom=0.85 * label + 0.1, right=1.3, top=0.4)
    ax = fig.subplots()
    cmap = (
        extras.matplotlib().colormaps["RdBu_r"].with_extremes(bad="#cccccc")
    )  # NaN: constant feature
    im = ax.imshow(np.ma.masked_invalid(c), cmap=cmap, vmin=-1.0, vmax=1.0)
    ax.set_xticks(range(n), labels=list(features), rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels=list(features), fontsize=8)
    ax.minorticks_off()
    ax.tick_params(which="both", top=False, right=False)
    fontsize = 8 if n <= 8 else 7
    for i in range(c.shape[0]):
        for j in range(c.shape[1]):
            v = c[i, j]
            # round() + 0: no "-0" for tiny negative correlations.
            text = "—" if not np.isfinite(v) else str(round(100 * v) + 0)
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if np.isfinite(v) and abs(v) > 0.6 else "black",
            )
    exp_label(ax, rlabel=title)
    w = fig.get_size_inches()[0]
    cax = fig.add_axes((1 - 1.1 / w, 0.2, 0.18 / w, 0.6))
    fig.colorbar(im, cax=cax, label="correlation")
    cax.minorticks_off()
    return fig


@_styled
def roc_figure(
    curves: Sequence[tuple[str, tuple[Any, Any], tuple[Any, Any] | None]],
    best: str | None = None,
    title: str = "",
) -> Figure:
    """ROC curves of all models: eff_S vs eff_B, and 1/eff_B vs eff_S (log scale).

    ``curves`` holds ``(name, (eff_b, eff_s) test, (eff_b, eff_s) train or None)``; test
    curves are solid, train curves thin dashed in the same colour.  ``title`` is written
    above the right panel.
    """
    fig = _new_figure(10.0, 4.4)
    _margins(fig, left=0.7, wspace=0.22)
    ax_roc, ax_rej = fig.subplots(1, 2)
    ax_roc.plot([0, 1], [0, 1], color=PALETTE[8], linestyle=":", linewidth=1, label="random")
    any_train = False
    for k, (name, test, train) in enumerate(curves):
        lw = 2.2 if name == best else 1.4
        for roc, style, label, alpha in ((test, "-", name, 1.0), (train, "--", None, 0.6)):
            if roc is None:
                continue
            any_train |= style == "--"
            eb, es = _thin(_as_float(roc[0]), _as_float(roc[1]))
            kw = {
                "color": color(k),
                "linewidth": lw if style == "-" else 1.0,
                "label": label,
                "alpha": alpha,
            }
            ax_roc.plot(eb, es, style, **kw)
            keep = (eb > 0) & (es > 0)
            ax_rej.plot(es[keep], 1.0 / eb[keep], style, **kw)
    ax_roc.set_xlabel("background efficiency $\\varepsilon_B$")
    ax_roc.set_ylabel("signal efficiency $\\varepsilon_S$")
    ax_roc.set_xlim(0, 1)
    ax_roc.set_ylim(0, 1.02)
    ax_roc.legend(
        fontsize=8,
        loc="lower right",
        title="test (train dashed)" if any_train else "test",
        title_fontsize=8,
    )
    ax_rej.set_yscale("log")
    ax_rej.set_xlim(0, 1)
    ax_rej.set_xlabel("signal efficiency $\\varepsilon_S$")
    ax_rej.set_ylabel("background rejection $1/\\varepsilon_B$")
    ax_rej.legend(fontsize=8, loc="upper right")
    _grid(ax_roc)
    _grid(ax_rej)
    exp_label(ax_roc)
    if title:
        ax_rej.set_title(title, loc="right", fontsize="small")
    return fig


@_styled
def score_distribution_figure(
    name: str,
    score_train: Any,
    y_train: Any,
    w_train: Any,
    score_test: Any,
    y_test: Any,
    w_test: Any,
    ks_pvalue_signal: float | None = None,
    ks_pvalue_background: float | None = None,
    class_names: Mapping[int, str] | None = None,
) -> Figure:
    """TMVA's overtraining plot: test as filled histograms, train as points with errors.

    ``score_train`` None draws the test split alone (filled, with its errors).
    """
    names = {1: "signal", 0: "background", **dict(class_names or {})}
    s_te = _as_float(score_test)
    y_te = np.asarray(y_test).reshape(-1)
    w_te = _weights(w_test, s_te.size)
    has_train = score_train is not None
    if has_train:
        s_tr = _as_float(score_train)
        y_tr = np.asarray(y_train).reshape(-1)
        w_tr = _weights(w_train, s_tr.size)
        edges = _score_edges(s_tr, s_te)
    else:
        edges = _score_edges(s_te)
    fig = _new_figure(6.0, 4.4)
    _margins(fig)
    ax = fig.subplots()
    for cls, colour, pval in (
        (1, SIGNAL_COLOR, ks_pvalue_signal),
        (0, BACKGROUND_COLOR, ks_pvalue_background),
    ):
        te = y_te == cls
        h, label = _class_hist(s_te[te], w_te[te], edges, names[cls], "test")
        histplot(ax, h, histtype="fill", color=colour, alpha=0.35, label=label)
        histplot(ax, h, histtype="step", color=colour, linewidth=1.2, errors=not has_train)
        if not has_train:
            continue
        tr = y_tr == cls
        ks = "" if pval is None or not np.isfinite(_num(pval)) else f", KS p = {_num(pval):.3g}"
        h, label = _class_hist(s_tr[tr], w_tr[tr], edges, names[cls], "train")
        histplot(
            ax,
            h,
            histtype="errorbar",
            color=colour,
            marker="o",
            markersize=3,
            label=label + ks,
        )
    ax.set_xlabel(f"{name} score")
    ax.set_ylabel("normalised")
    ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]), top=ax.get_ylim()[1] * 1.3)
    ax.legend(fontsize=8, loc="upper center", ncols=2)
    exp_label(ax, rlabel=name)
    return fig


@_styled
def training_history_figure(name: str, history: Mapping[str, Any]) -> Figure:
    """Loss per epoch: every list in ``history`` whose key contains "loss"."""
    fig = _new_figure(6.0, 3.8)
    _margins(fig)
    ax = fig.subplots()
    styles = {"train": ("-", PALETTE[0]), "val": ("--", PALETTE[2])}
    n_drawn = 0
    for key, values in history.items():
        if "loss" not in str(key) or isinstance(values, str | bytes):
            continue
        try:
            v = _as_float(values)
        except (TypeError, ValueError):
            continue
        if v.size == 0:
            continue
        style, colour = next(
            (s for k, s in styles.items() if str(key).startswith(k)),
            (":", color(n_drawn + 3)),
        )
        ax.plot(
            np.arange(1, v.size + 1),
            v,
            style,
            color=colour,
            marker="o",
            markersize=2.5,
            label=str(key),
        )
        n_drawn += 1
    best = history.get("best_epoch")
    if isinstance(best, int | np.integer):
        ax.axvline(int(best), color=PALETTE[8], linestyle=":", label=f"best epoch {int(best)}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.xaxis.set_major_locator(extras.matplotlib("ticker").MaxNLocator(integer=True))
    if n_drawn:
        ax.legend(fontsize=8)
    _grid(ax)
    exp_label(ax, rlabel=f"{name}: training history")
    return fig


@_styled
def ranking_figure(name: str, ranking: Sequence[Mapping[str, Any]]) -> Figure:
    """Horizontal bars of feature importance (most important on top), with std as error."""
    feats = [str(r.get("feature", "?")) for r in ranking]
    imp = np.array([_num(r.get("importance", r.get("importance_mean"))) for r in ranking])
    std = np.array([_num(r.get("std", r.get("importance_std"))) for r in ranking])
    n = len(feats)
    fig = _new_figure(6.0, max(2.2, 0.32 * n + 1.1))
    _margins(fig, left=_label_inches(feats), bottom=0.5)
    ax = fig.subplots()
    pos = np.arange(n)[::-1]
    ax.barh(
        pos,
        np.nan_to_num(imp),
        xerr=np.where(np.isfinite(std), std, 0.0),
        color=PALETTE[0],
        alpha=0.8,
        error_kw={"linewidth": 1},
    )
    ax.set_yticks(pos, labels=feats, fontsize=8)
    ax.tick_params(axis="y", which="minor", left=False, right=False)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("importance")
    exp_label(ax, rlabel=f"{name}: variable ranking")
    return fig


@_styled
def cut_scan_figure(scan: Mapping[str, Any], name: str | None = None) -> Figure:
    """Significance vs score threshold (s/sqrt(b), Z_A) with the optimal cut; yields below."""
    thr = _as_float(scan["thresholds"])
    fig = _new_figure(6.5, 5.4)
    _margins(fig, hspace=0.08)
    ax_z, ax_y = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    curves = (
        # √ as text: the style's math font has no radical glyph.
        ("s_over_sqrt_b", "s/√b", ":", PALETTE[3]),
        ("z_asimov", "$Z_A$", "-", PALETTE[0]),
        ("z_asimov_unc", "$Z_A$ with $\\sigma_b$", "--", PALETTE[2]),
    )
    za = _as_float(scan["z_asimov"]) if "z_asimov" in scan else None
    for key, label, style, colour in curves:
        if key not in scan or scan[key] is None:
            continue
        v = _as_float(scan[key])
        if key == "z_asimov_unc" and za is not None and np.allclose(v, za, equal_nan=True):
            continue  # no background uncertainty: identical to Z_A
        ax_z.plot(thr, v, style, color=colour, label=label)
    best = scan.get("best") or {}
    if "threshold" in best:
        t = float(best["threshold"])
        label = f"best cut {t:.3g}"
        if "z" in best:
            label += f", Z = {float(best['z']):.3g}"
        for ax in (ax_z, ax_y):
            ax.axvline(
                t, color="black", linestyle="-.", linewidth=1, label=label if ax is ax_z else None
            )
    ax_z.set_ylabel("significance")
    ax_z.legend(fontsize=8)
    for key, label, colour in (
        ("s", "$s$ (signal)", SIGNAL_COLOR),
        ("b", "$b$ (background)", BACKGROUND_COLOR),
    ):
        if key in scan:
            ax_y.plot(thr, _as_float(scan[key]), color=colour, label=label)
    ys = np.concatenate([_as_float(scan[k]) for k in ("s", "b") if k in scan] or [np.ones(1)])
    if np.any(ys > 0):
        ax_y.set_yscale("log")
    ax_y.set_xlabel("score threshold (keep score ≥ threshold)")
    ax_y.set_ylabel("yield after cut")
    ax_y.legend(fontsize=8)
    _grid(ax_z)
    _grid(ax_y)
    exp_label(ax_z, rlabel=f"cut on {name} score" if name else "cut scan")
    return fig


@_styled
def stats_figure(
    edges: Any,
    s: Any,
    b: Any,
    z_expected: float | None = None,
    limit_median: float | None = None,
    band: Mapping[str, Any] | None = None,
) -> Figure:
    """The fitted score histogram (signal stacked on background) and a Brazil bar.

    The per-bin yields ``s`` and ``b`` fill one weighted entry per bin (at its centre).
    The lower panel shows the expected 95% CL upper limit on the signal strength μ with
    its ±1σ (green) and ±2σ (yellow) band.
    """
    edges, s, b = _as_float(edges), _as_float(s), _as_float(b)
    centres = 0.5 * (edges[1:] + edges[:-1])
    h_b = weighted_hist(centres, b, edges)
    h_s = weighted_hist(centres, s, edges)
    fig = _new_figure(6.5, 5.2)
    _margins(fig, bottom=0.6, hspace=0.55)
    has_limit = limit_median is not None and np.isfinite(_num(limit_median))
    if has_limit:
        ax_h, ax_l = fig.subplots(2, 1, height_ratios=[5, 1])
    else:
        ax_h, ax_l = fig.subplots(), None
    histplot(
        ax_h,
        [h_b, h_s],
        histtype="fill",
        stack=True,
        color=[BACKGROUND_COLOR, SIGNAL_COLOR],
        alpha=0.6,
        label=["background", "signal (μ = 1)"],
    )
    histplot(ax_h, h_b + h_s, histtype="step", color="black", linewidth=0.8, errors=False)
    for e in edges:
        ax_h.axvline(e, color=PALETTE[8], linewidth=0.4, alpha=0.5)
    total = h_b.values() + h_s.values()
    if np.any(total > 0) and np.all(total >= 0) and np.all(b >= 0):
        ax_h.set_yscale("log")
    ax_h.set_xlabel("score (bins of the statistical model)")
    ax_h.set_ylabel("events per bin")
    title = "expected result"
    if z_expected is not None and np.isfinite(_num(z_expected)):
        title += f": Z = {float(z_expected):.3g}σ"
    ax_h.legend(fontsize=8)
    exp_label(ax_h, rlabel=title)
    if ax_l is not None:
        band = {k: _num(v) for k, v in (band or {}).items()}
        med = float(limit_median)
        lo2, lo1 = band.get("-2", np.nan), band.get("-1", np.nan)
        hi1, hi2 = band.get("+1", np.nan), band.get("+2", np.nan)
        if np.isfinite(lo2) and np.isfinite(hi2):
            ax_l.barh(0, hi2 - lo2, left=lo2, height=0.8, color=BAND_2SIGMA_COLOR, label="±2σ")
        if np.isfinite(lo1) and np.isfinite(hi1):
            ax_l.barh(0, hi1 - lo1, left=lo1, height=0.8, color=BAND_1SIGMA_COLOR, label="±1σ")
        ax_l.axvline(med, color="black", linestyle="--", linewidth=1.5)
        ax_l.set_yticks([])
        ax_l.set_xlabel(
            f"expected 95% CL limit on μ (CLs): median {med:.3g} (dashed), ±1σ green, ±2σ yellow",
            fontsize=8,
        )
        ax_l.tick_params(axis="y", which="both", left=False, right=False)
    return fig
