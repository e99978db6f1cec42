"""The event-classification report: a :class:`~fivesigma.report.ReportInput` as sections.

:func:`classification_report` checks the input and assembles a
:class:`~fivesigma.report.builder.Report` with the sections of :data:`SECTIONS`, every
one always present (a note says when a run has nothing for it); :func:`write_report`
renders it into one self-contained ``report.html``, atomically.  Figures are handed to
the builder as callables, so a figure that fails shows an error note in its place and
the rest of the report is still written.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.errors import close_matches
from fivesigma.report import ModelReport, ReportError, ReportInput, _as_dict
from fivesigma.report.builder import (
    Box,
    Cell,
    Details,
    Figure,
    Grid,
    Group,
    Html,
    KeyValues,
    Report,
    Row,
    Section,
    Table,
    Text,
    fmt_number,
    markup,
)

__all__ = ["KS_ALARM", "SECTIONS", "classification_report", "render_html", "write_report"]

#: (anchor id, heading) of the report's sections, in order; every one is always present.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("summary", "Summary"),
    ("inputs", "Input distributions"),
    ("correlations", "Correlation matrices"),
    ("roc", "ROC curves"),
    ("models", "Models"),
    ("ranking", "Variable ranking"),
    ("cut-scan", "Significance scan"),
    ("stats", "Statistical result"),
    ("config", "Configuration"),
    ("provenance", "Provenance"),
)

#: KS p-values below this are flagged as possible overtraining.
KS_ALARM = 0.05

_SUMMARY_COLUMNS = (
    "#",
    "model",
    "kind",
    "AUC test (weighted)",
    "AUC test (unweighted)",
    "AUC train (weighted)",
    "εS @ εB=1%",
    "εS @ εB=10%",
    "εS @ εB=30%",
    "1/εB @ εS=30%",
    "1/εB @ εS=50%",
    "KS p (S)",
    "KS p (B)",
    "separation",
    "parameters",
    "train time [s]",
)


def write_report(report: ReportInput, path: str | os.PathLike) -> Path:
    """Render ``report`` and write it to ``path`` (usually ``report.html``) atomically.

    Returns the path written.  Raises :class:`~fivesigma.report.ReportError` when the
    input is inconsistent (array shapes, unknown ``best_model``).
    """
    return classification_report(report).write(path)


def render_html(report: ReportInput) -> str:
    """The report as one HTML string (figures embedded)."""
    return classification_report(report).render()


def classification_report(report: ReportInput) -> Report:
    """Check ``report`` and assemble its sections (figures are drawn when rendered)."""
    _validate(report)
    slugs = _slugs(report.models)
    class_names = {1: "signal", 0: "background", **dict(report.class_names or {})}
    stats = _stats(report)
    scan = _as_dict(report.cut_scan)
    generated = str((report.provenance or {}).get("time", ""))
    subtitle = markup(
        "fivesigma event-classification report{} · best model: <strong>{}</strong>",
        f" · {generated}" if generated else "",
        report.best_model,
    )
    rep = Report(report.title, subtitle=subtitle)
    builders = {
        "summary": lambda: _summary(report, slugs, stats, scan),
        "inputs": lambda: _inputs(report, class_names),
        "correlations": lambda: _correlations(report),
        "roc": lambda: _roc(report),
        "models": lambda: _models(report, slugs, class_names),
        "ranking": lambda: _ranking(report),
        "cut-scan": lambda: _cut_scan(report, scan),
        "stats": lambda: _stats_blocks(stats, report.stats_off),
        "config": lambda: [Text(report.config_text or "", pre=True)],
        "provenance": lambda: [KeyValues(report.provenance or {})],
    }
    for anchor, heading in SECTIONS:
        if anchor == "config":  # the task's own sections (e.g. SHAP) before config/provenance
            rep.add(*report.extra_sections)
        rep.add(Section(heading, list(builders[anchor]()), anchor=anchor))
        if anchor == "roc" and len(report.classes) > 2:
            rep.add(Section("Classes", _classes(report, slugs), anchor="classes"))
    return rep


# --------------------------------------------------------------------------- validation


def _validate(report: ReportInput) -> None:
    X = np.asarray(report.X)
    if X.ndim != 2 or X.shape[1] != len(report.features):
        raise ReportError(
            f"report X has shape {X.shape}, expected (n_events, {len(report.features)}) "
            f"for features {list(report.features)[:6]}"
        )
    for name in ("y", "w"):
        n = np.asarray(getattr(report, name)).reshape(-1).size
        if n != X.shape[0]:
            raise ReportError(f"report {name} has {n} entries, X has {X.shape[0]} events")
    if not report.models:
        raise ReportError("report has no models; give at least one ModelReport")
    names = [m.name for m in report.models]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ReportError(f"model names must be unique, repeated: {', '.join(dupes)}")
    if report.best_model not in names:
        raise ReportError(
            f"best_model '{report.best_model}' is not a model of the report; "
            f"{close_matches(report.best_model, names)}"
        )
    nf = len(report.features)
    for cls, mat in (report.correlation or {}).items():
        if np.asarray(mat).shape != (nf, nf):
            raise ReportError(
                f"correlation['{cls}'] has shape {np.asarray(mat).shape}, expected ({nf}, {nf})"
            )
    for m in report.models:
        for split in ("train", "test"):
            sizes = {
                k: np.asarray(getattr(m, f"{k}_{split}")).reshape(-1).size
                for k in ("score", "y", "w")
            }
            if len(set(sizes.values())) != 1:
                raise ReportError(
                    f"model '{m.name}': score/y/w of the {split} split differ in length {sizes}"
                )


# --------------------------------------------------------------------------- helpers


def _lookup(d: Any, key: str, target: float) -> Any:
    """``d[key][target]`` where the inner keys are numbers or strings like "0.01" / "1%"."""
    sub = d.get(key) if isinstance(d, Mapping) else None
    if not isinstance(sub, Mapping):
        return None
    for k, v in sub.items():
        try:
            x = float(str(k).rstrip("%")) / (100.0 if str(k).endswith("%") else 1.0)
        except ValueError:
            continue
        if math.isclose(x, target, rel_tol=1e-9, abs_tol=1e-12):
            return v
    return None


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _slugs(models: Sequence[ModelReport]) -> dict[str, str]:
    """``model-<name>`` ids, unique."""
    used: set[str] = set()
    out = {}
    for m in models:
        base = "model-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", m.name).strip("-") or "x")
        slug, i = base, 2
        while slug in used:
            slug, i = f"{base}-{i}", i + 1
        used.add(slug)
        out[m.name] = slug
    return out


def _ks_cell(p: Any, threshold: float = KS_ALARM) -> Cell:
    f = _num(p)
    if math.isfinite(f) and f <= threshold and threshold > 0:
        return Cell(f, "alarm", f"KS p ≤ {threshold:g}: possible overtraining", digits=3)
    return Cell(p, digits=3)


def _overtrained(m: ModelReport, threshold: float = KS_ALARM) -> bool:
    ks = [_num(m.metrics.get("ks_pvalue_signal")), _num(m.metrics.get("ks_pvalue_background"))]
    return threshold > 0 and any(math.isfinite(p) and p <= threshold for p in ks)


def _note(text: str) -> Text:
    return Text(text, cls="note")


# --------------------------------------------------------------------------- sections


def _summary(
    report: ReportInput, slugs: dict[str, str], stats: dict | None, scan: dict | None
) -> list[Any]:
    blocks: list[Any] = []
    if report.n_events:
        parts = Html(
            " · ".join(
                markup("{} <strong>{}</strong>", k, fmt_number(v))
                for k, v in report.n_events.items()
            )
        )
        blocks.append(Text(markup("Events: {} · {} features.", parts, len(report.features))))
    result: list[Any] = [
        Text(
            markup(
                'Best model: <strong>{}</strong> <span class="badge">best</span>{}',
                report.best_model,
                f" — {report.best_model_reason}." if report.best_model_reason else "",
            )
        )
    ]
    if stats and stats["has_numbers"]:
        band = ""
        if stats["has_band"]:
            b = stats["band"]
            band = markup("(±1σ: {} – {}, ±2σ: {} – {}) ", b["-1"], b["+1"], b["-2"], b["+2"])
        result.append(
            Text(
                markup(
                    "Expected discovery significance <strong>Z = {}σ</strong>; expected 95% "
                    "CL upper limit on the signal strength <strong>μ &lt; {}</strong> {}"
                    "({}).",
                    stats["z"],
                    stats["limit"],
                    band,
                    stats["how"],
                )
            )
        )
    if stats and stats["error"]:
        result.append(
            Text(f"The statistics stage failed: {stats['error']}.", cls="alarm"),
        )
    elif stats and stats["fallback"]:
        result.append(_note(stats["fallback"]))
    if not stats and report.stats_off:
        result.append(_note(report.stats_off))
    if report.weights_note:
        result.append(Text(f"Caveat: {report.weights_note}.", cls="alarm"))
    if scan is not None:
        best = _as_dict(scan.get("best")) or {}
        result.append(
            Text(
                markup(
                    "Best cut on the {} score: score ≥ {} keeps s = {}, b = {}, "
                    "Z<sub>A</sub> = {}.",
                    report.best_model,
                    fmt_number(best.get("threshold"), 4),
                    fmt_number(best.get("s"), 4),
                    fmt_number(best.get("b"), 4),
                    fmt_number(best.get("z"), 3),
                )
            )
        )
    if not stats and scan is None and not report.stats_off:
        result.append(_note("No statistical result in this run."))
    blocks.append(Box(result))
    blocks.append(_summary_table(report, slugs))
    blocks.append(
        Text(
            markup(
                "Ranked by weighted test AUC; ★ marks the best model (used for the physics "
                "result). AUC (weighted): with the event weights; (unweighted): every event "
                "counts 1. εS @ εB: signal efficiency at the given background efficiency; "
                "1/εB @ εS: background rejection at the given signal efficiency. KS p: "
                "Kolmogorov–Smirnov p-value of train vs test score distributions; "
                '<span class="alarm">red</span> when at or below {} (possible overtraining).',
                report.ks_threshold,
            ),
            cls="note",
        )
    )
    return blocks


def _summary_table(report: ReportInput, slugs: dict[str, str]) -> Table:
    # Rank by test AUC, best first; models without one go last in their given order.
    def key(m: ModelReport) -> float:
        a = _num(m.metrics.get("auc_test"))
        return -a if math.isfinite(a) else math.inf

    rows = []
    for rank, m in enumerate(sorted(report.models, key=key), start=1):
        mt = m.metrics
        best = m.name == report.best_model
        cells = [
            Cell(str(rank)),
            Cell(m.name + (" ★" if best else ""), "name", href=f"#{slugs[m.name]}"),
            Cell(m.kind),
            Cell(mt.get("auc_test_weighted", mt.get("auc_test"))),
            Cell(mt.get("auc_test_unweighted")),
            Cell(mt.get("auc_train")),
            *[Cell(_lookup(mt, "eff_s_at_eff_b", t), digits=3) for t in (0.01, 0.1, 0.3)],
            *[Cell(_lookup(mt, "rejection_at_eff_s", t)) for t in (0.3, 0.5)],
            _ks_cell(mt.get("ks_pvalue_signal"), report.ks_threshold),
            _ks_cell(mt.get("ks_pvalue_background"), report.ks_threshold),
            Cell(mt.get("separation"), digits=3),
            Cell(mt.get("n_parameters")),
            Cell(mt.get("train_time_s"), digits=3),
        ]
        rows.append(Row(cells, id=f"summary-{slugs[m.name]}", cls="best" if best else ""))
    return Table(list(_SUMMARY_COLUMNS), rows, left=(1,), scroll=True)


def _inputs(report: ReportInput, class_names: dict[int, str]) -> list[Any]:
    from fivesigma.report import plots

    return [
        Figure(
            lambda: plots.input_distributions_figure(
                report.X, report.y, report.w, report.features, class_names
            ),
            caption="Weighted, normalised distributions per class (error bars: √Σw²); "
            "under- and overflow are in the edge bins.",
            alt="input feature distributions, signal vs background",
        )
    ]


def _correlations(report: ReportInput) -> list[Any]:
    from fivesigma.report import plots

    if not report.correlation:
        return [_note("No correlation matrices in this run.")]
    figures = [
        Figure(
            lambda mat=mat, cls=cls: plots.correlation_figure(
                mat, report.features, f"correlation: {cls}"
            ),
            caption=f"{cls}: linear correlation coefficients in %.",
            alt=f"correlation matrix: {cls}",
        )
        for cls, mat in report.correlation.items()
    ]
    return [Grid(figures)]


def _roc(report: ReportInput) -> list[Any]:
    from fivesigma.report import plots

    curves = [(m.name, m.roc_test, m.roc_train) for m in report.models]
    return [
        Figure(
            lambda: plots.roc_figure(curves, report.best_model),
            caption="Left: signal efficiency vs background efficiency (test solid, train "
            "dashed). Right: background rejection 1/εB vs signal efficiency, log scale.",
            alt="ROC curves of all models",
        )
    ]


# --------------------------------------------------------------------------- K classes


def _classes(report: ReportInput, slugs: dict[str, str]) -> list[Any]:
    """K > 2 classes: per-class AUCs and accuracy of every model, then per model the
    one-vs-rest ROC curves, the confusion matrix and the per-class score distributions."""
    names = list(report.classes)
    signal = {names[k] for k in report.signal_classes if 0 <= k < len(names)}
    blocks: list[Any] = [
        Text(
            markup(
                "{} classes; signal for the physics result: <strong>{}</strong>. The ROC "
                "curves, score distributions, cut scan and statistics above use the "
                "signal-vs-background discriminant ({}); this section shows the {} classes "
                "one against the rest.",
                len(names),
                ", ".join(sorted(signal)) or "-",
                report.discriminant or "probability",
                len(names),
            )
        )
    ]
    columns = [
        "model",
        "mean AUC (weighted)",
        "mean AUC (unweighted)",
        *[f"AUC {n} vs rest" for n in names],
        "accuracy (weighted)",
        "accuracy (unweighted)",
        *[f"KS p ({n})" for n in names],
    ]
    rows = []
    for m in report.models:
        mt = m.metrics
        auc_w = mt.get("auc_ovr_weighted") or {}
        ks = mt.get("ks_pvalue_class") or {}
        best = m.name == report.best_model
        rows.append(
            Row(
                [
                    Cell(m.name + (" ★" if best else ""), "name", href=f"#{slugs[m.name]}"),
                    Cell(mt.get("auc_ovr_mean_weighted")),
                    Cell(mt.get("auc_ovr_mean_unweighted")),
                    *[Cell(auc_w.get(n)) for n in names],
                    Cell(mt.get("accuracy_weighted"), digits=3),
                    Cell(mt.get("accuracy_unweighted"), digits=3),
                    *[_ks_cell(ks.get(n), report.ks_threshold) for n in names],
                ],
                cls="best" if best else "",
            )
        )
    blocks.append(Table(columns, rows, left=(0,), scroll=True))
    blocks.append(
        _note(
            "AUC k vs rest: class k's probability separating class k from every other class "
            "(weighted test split). Accuracy: the most probable class is the true one. KS p: "
            "train vs test distribution of each class's own probability."
        )
    )
    for m in report.models:
        if m.probs_test is None or m.classes_test is None:
            continue
        figures = [
            Figure(
                lambda m=m: _ovr_roc_figure(m, names),
                caption="One-vs-rest ROC curves of each class's probability (test), as "
                "rejection of the other classes vs the class's efficiency.",
                alt=f"{m.name}: one-vs-rest ROC curves",
            ),
            Figure(
                lambda m=m: _confusion_figure(m, names),
                caption="Confusion matrix (weighted test events, each row normalised to 1: "
                "the fraction of a true class predicted as each class).",
                alt=f"{m.name}: confusion matrix",
            ),
            Figure(
                lambda m=m: _class_scores_figure(m, names),
                caption="Each class's probability for the events of every true class "
                "(test, weighted, normalised).",
                alt=f"{m.name}: per-class score distributions",
            ),
        ]
        blocks.append(
            Group(
                m.name,
                [Grid(figures)],
                anchor=f"classes-{slugs[m.name]}",
                note=f"({m.kind})",
                badge="best" if m.name == report.best_model else "",
            )
        )
    return blocks


def _ovr_roc_figure(m: ModelReport, names: list[str]) -> Any:
    from fivesigma import metrics as M
    from fivesigma.report import plots
    from fivesigma.report.style import color, exp_label

    @plots._styled
    def draw() -> Any:
        p = np.asarray(m.probs_test, dtype=np.float64)
        y = np.asarray(m.classes_test).reshape(-1)
        w = plots._weights(m.w_test, y.size)
        fig = plots._new_figure(5.5, 4.4)
        plots._margins(fig)
        ax = fig.subplots()
        for k, name in enumerate(names):
            is_k = (y == k).astype(np.int64)
            try:
                eb, es, _ = M.roc_curve(is_k, p[:, k], w)
            except M.MetricError:
                continue
            eb, es = plots._thin(eb, es)
            keep = (eb > 0) & (es > 0)
            auc = M.auc(is_k, p[:, k], w)
            ax.plot(es[keep], 1.0 / eb[keep], color=color(k), label=f"{name} (AUC {auc:.3f})")
        ax.set_yscale("log")
        ax.set_xlim(0, 1)
        ax.set_xlabel("class efficiency $\\varepsilon$")
        ax.set_ylabel("rejection of the other classes")
        ax.legend(fontsize=8, loc="upper right")
        plots._grid(ax)
        exp_label(ax, rlabel=m.name)
        return fig

    return draw()


def _confusion_figure(m: ModelReport, names: list[str]) -> Any:
    from fivesigma import metrics as M
    from fivesigma.core import extras
    from fivesigma.report import plots
    from fivesigma.report.style import exp_label

    @plots._styled
    def draw() -> Any:
        p = np.asarray(m.probs_test, dtype=np.float64)
        y = np.asarray(m.classes_test).reshape(-1)
        w = plots._weights(m.w_test, y.size)
        n = len(names)
        cm = M.confusion_matrix(y, p.argmax(axis=1), w, n, normalize="true")
        label = plots._label_inches(names)
        size = max(3.5, 0.7 * n + 1.5)
        fig = plots._new_figure(size + label + 1.2, size + label * 0.75)
        plots._margins(fig, left=label + 0.3, bottom=0.85 * label + 0.4, right=1.3, top=0.4)
        ax = fig.subplots()
        cmap = extras.matplotlib().colormaps["Blues"]
        im = ax.imshow(cm, cmap=cmap, vmin=0.0, vmax=1.0)
        ax.set_xticks(range(n), labels=names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(n), labels=names, fontsize=8)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.minorticks_off()
        ax.tick_params(which="both", top=False, right=False)
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    f"{cm[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if cm[i, j] > 0.6 else "black",
                )
        exp_label(ax, rlabel=m.name)
        w_in = fig.get_size_inches()[0]
        cax = fig.add_axes((1 - 1.1 / w_in, 0.2, 0.18 / w_in, 0.6))
        fig.colorbar(im, cax=cax, label="fraction of the true class")
        cax.minorticks_off()
        return fig

    return draw()


def _class_scores_figure(m: ModelReport, names: list[str]) -> Any:
    from fivesigma.report import plots
    from fivesigma.report.histograms import histplot
    from fivesigma.report.style import color, exp_label

    @plots._styled
    def draw() -> Any:
        p = np.asarray(m.probs_test, dtype=np.float64)
        y = np.asarray(m.classes_test).reshape(-1)
        w = plots._weights(m.w_test, y.size)
        n = len(names)
        ncols = min(n, 3)
        nrows = int(np.ceil(n / ncols))
        fig = plots._new_figure(3.4 * ncols, 2.8 * nrows + 0.3)
        plots._margins(fig, left=0.6, right=0.15, bottom=0.55, top=0.4, wspace=0.3, hspace=0.5)
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        edges = np.linspace(0.0, 1.0, 26)
        for k, name in enumerate(names):
            ax = axes[k]
            for j, true in enumerate(names):
                sel = y == j
                if not sel.any():
                    continue
                h, label = plots._class_hist(p[sel, k], w[sel], edges, true)
                histplot(
                    ax, h, histtype="step", color=color(j), linewidth=1.2, label=label, errors=False
                )
            ax.set_xlabel(f"p({name})", fontsize=9)
            ax.set_ylabel("normalised", fontsize=8)
            ax.set_yscale("log")
            ax.tick_params(labelsize=7)
            ax.minorticks_off()
        for ax in axes[n:]:
            ax.set_visible(False)
        axes[0].legend(fontsize=7, title="true class", title_fontsize=7)
        exp_label(axes[0], rlabel=m.name)
        return fig

    return draw()


def _models(report: ReportInput, slugs: dict[str, str], class_names: dict[int, str]) -> list[Any]:
    from fivesigma.report import plots

    groups = []
    for m in report.models:
        mt = m.metrics
        blocks: list[Any] = []
        if _overtrained(m, report.ks_threshold):
            blocks.append(
                Text(
                    f"KS p-value at or below {report.ks_threshold:g}: train and test scores "
                    "differ, possible overtraining.",
                    cls="alarm",
                )
            )
        figures = [
            Figure(
                lambda m=m: plots.score_distribution_figure(
                    m.name,
                    m.score_train,
                    m.y_train,
                    m.w_train,
                    m.score_test,
                    m.y_test,
                    m.w_test,
                    m.metrics.get("ks_pvalue_signal"),
                    m.metrics.get("ks_pvalue_background"),
                    class_names,
                ),
                caption="Score distributions: test (filled) vs train (points, √Σw² errors), "
                "per class.",
                alt=f"{m.name}: score distributions, train vs test",
            )
        ]
        if m.history:
            figures.append(
                Figure(
                    lambda m=m: plots.training_history_figure(m.name, m.history),
                    caption="Loss per epoch.",
                    alt=f"{m.name}: training history",
                )
            )
        blocks.append(Grid(figures))
        blocks.append(Details(f"All metrics of {m.name}", [KeyValues(mt, header=None, mono=False)]))
        groups.append(
            Group(
                m.name,
                blocks,
                anchor=slugs[m.name],
                note=f"({m.kind})",
                badge="best" if m.name == report.best_model else "",
            )
        )
    return groups


def _ranking(report: ReportInput) -> list[Any]:
    from fivesigma.report import plots

    figures = [
        Figure(
            lambda m=m: plots.ranking_figure(m.name, m.ranking),
            caption=f"{m.name}: feature importance (error bar: spread over repeats).",
            alt=f"{m.name}: variable ranking",
        )
        for m in report.models
        if m.ranking
    ]
    return [Grid(figures)] if figures else [_note("No variable ranking in this run.")]


def _cut_scan(report: ReportInput, scan: dict | None) -> list[Any]:
    from fivesigma.report import plots

    if scan is None:
        return [_note("No significance scan in this run.")]
    best = _as_dict(scan.get("best")) or {}
    return [
        Figure(
            lambda: plots.cut_scan_figure(scan, report.best_model),
            caption=markup(
                "Significance after keeping events with score ≥ threshold ({}); the "
                "dash-dotted line marks the optimal cut (threshold {}, Z<sub>A</sub> = {}).",
                report.best_model,
                fmt_number(best.get("threshold"), 4),
                fmt_number(best.get("z"), 3),
            ),
            alt="significance vs cut on the score",
        )
    ]


def _stats(report: ReportInput) -> dict[str, Any] | None:
    """The numbers and per-bin yields of the statistical result, or None."""
    from fivesigma.report.histograms import weighted_hist

    stats = _as_dict(report.stats)
    if stats is None:
        return None
    band = {str(k): v for k, v in (stats.get("cls_band") or {}).items()}
    edges = stats.get("bin_edges", stats.get("binning"))
    s = stats.get("s", stats.get("signal"))
    b = stats.get("b", stats.get("background"))
    note = ""
    if isinstance(edges, Sequence | np.ndarray) and len(edges) >= 2:
        edges = np.asarray(edges, dtype=np.float64)
        if s is None or b is None:
            # Yields not handed over: show the best model's test-score histogram in the
            # same bins, unscaled, and say so.
            best = next(m for m in report.models if m.name == report.best_model)
            sc = np.asarray(best.score_test, dtype=np.float64).reshape(-1)
            yt = np.asarray(best.y_test).reshape(-1)
            wt = np.asarray(best.w_test, dtype=np.float64).reshape(-1)
            s = weighted_hist(sc[yt == 1], wt[yt == 1], edges).values()
            b = weighted_hist(sc[yt != 1], wt[yt != 1], edges).values()
            note = (
                "per-bin yields were not given: histogram of the best model's test "
                "scores (test split, not scaled to the full sample)"
            )
    else:
        edges = None
    skip = {
        "cls_band",
        "bin_edges",
        "binning",
        "s",
        "b",
        "signal",
        "background",
        "error",
        "pyhf_error",
        "note",
    }
    z_value, limit_value = stats.get("z_expected"), stats.get("cls_upper_limit_expected")
    method = stats.get("method")
    formula = method == "asimov-formula"
    fallback = ""
    if formula:
        fallback = (
            "pyhf could not fit the statistical model"
            + (f" ({stats['pyhf_error']})" if stats.get("pyhf_error") else "")
            + "; the numbers come from the closed-form Asimov formulae (Cowan et al., "
            "arXiv:1007.1727), bin by bin: an approximation"
        )
    return {
        "has_numbers": z_value is not None or limit_value is not None,
        "error": stats.get("error") or "",
        "fallback": fallback,
        "caveat": stats.get("note") or "",
        "how": "Asimov formula, approximate" if formula else "CLs, asymptotic",
        "z": fmt_number(stats.get("z_expected"), 3),
        "limit": fmt_number(stats.get("cls_upper_limit_expected"), 3),
        "z_value": stats.get("z_expected"),
        "limit_value": stats.get("cls_upper_limit_expected"),
        "band": {k: fmt_number(band.get(k), 3) for k in ("-2", "-1", "+1", "+2")},
        "band_values": band,
        "has_band": bool(band),
        "edges": edges,
        "s": s,
        "b": b,
        "rows": [(k, v) for k, v in stats.items() if k not in skip and not isinstance(v, Mapping)],
        "note": note,
    }


def _stats_blocks(stats: dict[str, Any] | None, off: str = "") -> list[Any]:
    from fivesigma.report import plots

    if stats is None:
        return [_note(off or "No statistical analysis in this run.")]
    blocks: list[Any] = []
    if stats["error"]:
        blocks.append(
            Text(
                f"The statistics stage failed: {stats['error']}. The machine-learning results "
                "(models, metrics, this report) are complete.",
                cls="alarm",
            )
        )
    if stats["has_numbers"]:
        blocks.append(
            Text(
                markup(
                    "Expected discovery significance <strong>Z = {}σ</strong>; expected 95% CL "
                    "upper limit <strong>μ &lt; {}</strong> ({}).",
                    stats["z"],
                    stats["limit"],
                    "Asimov formula, approximate"
                    if stats["fallback"]
                    else "pyhf, CLs, asymptotic, Asimov data",
                )
            )
        )
    if stats["fallback"]:
        blocks.append(Text(stats["fallback"] + ".", cls="alarm"))
    if stats["caveat"]:
        blocks.append(Text(f"Caveat: {stats['caveat']}.", cls="alarm"))
    if stats["has_band"]:
        b = stats["band"]
        blocks.append(
            Table(
                ["−2σ", "−1σ", "median", "+1σ", "+2σ"],
                [[b["-2"], b["-1"], stats["limit"], b["+1"], b["+2"]]],
                left=(),
            )
        )
    if stats["edges"] is not None:
        blocks.append(
            Figure(
                lambda: plots.stats_figure(
                    stats["edges"],
                    stats["s"],
                    stats["b"],
                    stats["z_value"],
                    stats["limit_value"],
                    stats["band_values"],
                ),
                caption="Score histogram of the statistical model: signal (μ = 1) stacked on "
                "background, bins as fitted; below, the expected limit with its ±1σ/±2σ band.",
                alt="score histogram used in the statistical model, and expected limit",
            )
        )
    if stats["note"]:
        blocks.append(_note(stats["note"]))
    if stats["rows"]:
        blocks.append(KeyValues(stats["rows"], header=None))
    return blocks
