"""Render a :class:`~fivesigma.report.ReportInput` into one self-contained report.html.

All figures are rendered first, then the Jinja2 template (autoescape on: every user
string is HTML-escaped), then the text is written through
:func:`fivesigma.core.files.atomic_file`, so an error anywhere leaves no report behind.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.core.files import atomic_file
from fivesigma.errors import close_matches
from fivesigma.report import ModelReport, ReportError, ReportInput, _as_dict

__all__ = ["SECTIONS", "render_html", "write_report"]

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
    "AUC test",
    "AUC train",
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
    text = render_html(report)
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def render_html(report: ReportInput) -> str:
    """The report as one HTML string (figures embedded)."""
    _validate(report)
    import jinja2  # lazy: only report rendering needs it

    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    source = resources.files(__package__).joinpath("template.html").read_text("utf-8")
    template = env.from_string(source)
    return template.render(**_context(report))


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


# --------------------------------------------------------------------------- formatting


def _fmt(v: Any, digits: int = 4) -> str:
    """Short human form of a number; missing or NaN shows as an em dash."""
    if v is None:
        return "—"
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return f"{int(v):,}"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(f):
        return "—"
    if math.isinf(f):
        return "∞" if f > 0 else "−∞"
    return f"{f:.{digits}g}"


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


def _slug(name: str, used: set[str]) -> str:
    base = "model-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "x")
    slug, i = base, 2
    while slug in used:
        slug, i = f"{base}-{i}", i + 1
    used.add(slug)
    return slug


def _cell(text: str, cls: str = "", title: str = "") -> dict[str, str]:
    return {"text": text, "cls": cls, "title": title}


def _ks_cell(p: Any) -> dict[str, str]:
    f = _num(p)
    if math.isfinite(f) and f < KS_ALARM:
        return _cell(_fmt(f, 3), "alarm", f"KS p < {KS_ALARM}: possible overtraining")
    return _cell(_fmt(p, 3))


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dict -> [("a.b", "value")] rows for a key/value table."""
    rows: list[tuple[str, str]] = []
    if isinstance(d, Mapping):
        for k, v in d.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, Mapping) and v:
                rows.extend(_flatten(v, key))
            else:
                rows.append((key, _value(v)))
    else:
        rows.append((prefix, _value(d)))
    return rows


def _value(v: Any) -> str:
    if isinstance(v, float | np.floating | int | np.integer) and not isinstance(v, bool):
        return _fmt(v, 6)
    if isinstance(v, list | tuple | np.ndarray):
        items = list(v)
        shown = ", ".join(_value(x) for x in items[:20])
        return shown + (f", … ({len(items)} in all)" if len(items) > 20 else "")
    return "—" if v is None else str(v)


# --------------------------------------------------------------------------- context


def _summary_rows(report: ReportInput, slugs: dict[str, str]) -> list[dict[str, Any]]:
    # Rank by test AUC, best first; models without one go last in their given order.
    def key(m: ModelReport) -> float:
        a = _num(m.metrics.get("auc_test"))
        return -a if math.isfinite(a) else math.inf

    rows = []
    for rank, m in enumerate(sorted(report.models, key=key), start=1):
        mt = m.metrics
        cells = [
            _cell(str(rank)),
            _cell(m.name + (" ★" if m.name == report.best_model else ""), "name"),
            _cell(m.kind),
            _cell(_fmt(mt.get("auc_test"))),
            _cell(_fmt(mt.get("auc_train"))),
            *[_cell(_fmt(_lookup(mt, "eff_s_at_eff_b", t), 3)) for t in (0.01, 0.1, 0.3)],
            *[_cell(_fmt(_lookup(mt, "rejection_at_eff_s", t), 4)) for t in (0.3, 0.5)],
            _ks_cell(mt.get("ks_pvalue_signal")),
            _ks_cell(mt.get("ks_pvalue_background")),
            _cell(_fmt(mt.get("separation"), 3)),
            _cell(_fmt(mt.get("n_parameters"))),
            _cell(_fmt(mt.get("train_time_s"), 3)),
        ]
        rows.append(
            {
                "name": m.name,
                "slug": slugs[m.name],
                "best": m.name == report.best_model,
                "cells": cells,
            }
        )
    return rows


def _stats_context(report: ReportInput, plots: Any) -> dict[str, Any] | None:
    stats = _as_dict(report.stats)
    if stats is None:
        return None
    band = {str(k): v for k, v in (stats.get("cls_band") or {}).items()}
    edges = stats.get("bin_edges", stats.get("binning"))
    s = stats.get("s", stats.get("signal"))
    b = stats.get("b", stats.get("background"))
    note = ""
    image = None
    if isinstance(edges, Sequence | np.ndarray) and len(edges) >= 2:
        edges = np.asarray(edges, dtype=np.float64)
        if s is None or b is None:
            # Yields not handed over: show the best model's test-score histogram in the
            # same bins, unscaled, and say so.
            best = next(m for m in report.models if m.name == report.best_model)
            sc = np.asarray(best.score_test, dtype=np.float64).reshape(-1)
            yt = np.asarray(best.y_test).reshape(-1)
            wt = np.asarray(best.w_test, dtype=np.float64).reshape(-1)
            xc = np.clip(sc, edges[0], edges[-1])
            s = np.histogram(xc[yt == 1], bins=edges, weights=wt[yt == 1])[0]
            b = np.histogram(xc[yt != 1], bins=edges, weights=wt[yt != 1])[0]
            note = (
                "per-bin yields were not given: histogram of the best model's test "
                "scores (test split, not scaled to the full sample)"
            )
        fig = plots.stats_figure(
            edges, s, b, stats.get("z_expected"), stats.get("cls_upper_limit_expected"), band
        )
        image = plots.fig_to_data_uri(fig)
    skip = {"cls_band", "bin_edges", "binning", "s", "b", "signal", "background"}
    rows = [
        (k, _value(v)) for k, v in stats.items() if k not in skip and not isinstance(v, Mapping)
    ]
    return {
        "z": _fmt(stats.get("z_expected"), 3),
        "limit": _fmt(stats.get("cls_upper_limit_expected"), 3),
        "band": {k: _fmt(band.get(k), 3) for k in ("-2", "-1", "+1", "+2")},
        "has_band": bool(band),
        "rows": rows,
        "image": image,
        "note": note,
    }


def _context(report: ReportInput) -> dict[str, Any]:
    from fivesigma.report import plots  # lazy: matplotlib only when rendering

    used: set[str] = set()
    slugs = {m.name: _slug(m.name, used) for m in report.models}
    class_names = {1: "signal", 0: "background", **dict(report.class_names or {})}

    inputs_img = plots.fig_to_data_uri(
        plots.input_distributions_figure(report.X, report.y, report.w, report.features, class_names)
    )

    corr_imgs = []
    for cls, mat in (report.correlation or {}).items():
        fig = plots.correlation_figure(mat, report.features, f"correlation: {cls}")
        corr_imgs.append({"label": str(cls), "image": plots.fig_to_data_uri(fig)})

    roc_img = plots.fig_to_data_uri(
        plots.roc_figure(
            [(m.name, m.roc_test, m.roc_train) for m in report.models], report.best_model
        )
    )

    models = []
    for m in report.models:
        mt = m.metrics
        score_img = plots.fig_to_data_uri(
            plots.score_distribution_figure(
                m.name,
                m.score_train,
                m.y_train,
                m.w_train,
                m.score_test,
                m.y_test,
                m.w_test,
                mt.get("ks_pvalue_signal"),
                mt.get("ks_pvalue_background"),
                class_names,
            )
        )
        history_img = (
            plots.fig_to_data_uri(plots.training_history_figure(m.name, m.history))
            if m.history
            else None
        )
        ranking_img = (
            plots.fig_to_data_uri(plots.ranking_figure(m.name, m.ranking)) if m.ranking else None
        )
        ks = [_num(mt.get("ks_pvalue_signal")), _num(mt.get("ks_pvalue_background"))]
        models.append(
            {
                "name": m.name,
                "kind": m.kind,
                "slug": slugs[m.name],
                "best": m.name == report.best_model,
                "score_img": score_img,
                "history_img": history_img,
                "ranking_img": ranking_img,
                "overtrained": any(math.isfinite(p) and p < KS_ALARM for p in ks),
                "metrics": _flatten(mt),
            }
        )

    scan = _as_dict(report.cut_scan)
    scan_ctx = None
    if scan is not None:
        best = _as_dict(scan.get("best")) or {}
        scan_ctx = {
            "image": plots.fig_to_data_uri(plots.cut_scan_figure(scan, report.best_model)),
            "threshold": _fmt(best.get("threshold"), 4),
            "s": _fmt(best.get("s"), 4),
            "b": _fmt(best.get("b"), 4),
            "z": _fmt(best.get("z"), 3),
        }

    return {
        "title": report.title,
        "sections": SECTIONS,
        "models_toc": [(slugs[m.name], m.name) for m in report.models],
        "columns": _SUMMARY_COLUMNS,
        "summary_rows": _summary_rows(report, slugs),
        "best_model": report.best_model,
        "best_slug": slugs[report.best_model],
        "ks_alarm": KS_ALARM,
        "features": list(report.features),
        "n_events": [(str(k), _fmt(v)) for k, v in (report.n_events or {}).items()],
        "inputs_img": inputs_img,
        "corr_imgs": corr_imgs,
        "roc_img": roc_img,
        "models": models,
        "ranked_models": [m for m in models if m["ranking_img"]],
        "scan": scan_ctx,
        "stats": _stats_context(report, plots),
        "config_text": report.config_text or "",
        "provenance": _flatten(report.provenance or {}),
        "generated": str((report.provenance or {}).get("time", "")),
    }
