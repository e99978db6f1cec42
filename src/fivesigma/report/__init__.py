"""fivesigma.report: self-contained HTML reports and the metrics.json writer.

Every task's report is built with the same section-based builder
(:mod:`fivesigma.report.builder`): a :class:`Report` of :class:`Section` s holding
:class:`Text`, :class:`Table`, :class:`Figure` and :class:`KeyValues` blocks (and
:class:`Grid`, :class:`Group`, :class:`Details`, :class:`Box` to arrange them), rendered
into ONE HTML file that opens offline: no external scripts, styles or fonts, figures
embedded as base64 PNG ``data:`` URIs, no JavaScript.  Figures share one look
(:mod:`fivesigma.report.style`: mplhep style, one palette, a "fivesigma" label) and their
histograms are ``hist.Hist`` objects with Weight storage
(:mod:`fivesigma.report.histograms`).

The event-classification task fills a :class:`ReportInput` (plain data: arrays, dicts,
strings; every physics number already computed by :mod:`fivesigma.metrics` and
:mod:`fivesigma.stats`) and calls :func:`write_report`
(:mod:`fivesigma.report.classification`).  :func:`write_metrics_json` writes the numbers
as strict JSON (NaN/inf become ``null``).  Both write atomically: on any error nothing is
left at the target path.

Matplotlib, mplhep, hist and Jinja2 are imported only when a report is rendered.

Examples
--------
>>> import json, tempfile, pathlib, numpy as np
>>> out = pathlib.Path(tempfile.mkdtemp()) / "metrics.json"
>>> _ = write_metrics_json({"auc": np.float32(0.5), "z": float("nan")}, out)
>>> json.loads(out.read_text())
{'auc': 0.5, 'z': None}
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.core.files import atomic_file
from fivesigma.errors import FivesigmaError

__all__ = [
    "Box",
    "Cell",
    "Details",
    "ExpLabel",
    "Figure",
    "Grid",
    "Group",
    "Html",
    "KeyValues",
    "ModelReport",
    "Report",
    "ReportError",
    "ReportInput",
    "Row",
    "Section",
    "Table",
    "Text",
    "fmt_number",
    "markup",
    "report_metrics",
    "to_jsonable",
    "write_metrics_json",
    "write_report",
]


class ReportError(FivesigmaError):
    """The report input is inconsistent (shapes, names) or cannot be written as JSON."""


@dataclass
class ModelReport:
    """Everything the report shows about one trained classifier.

    Attributes
    ----------
    name, kind : e.g. ``"bdt"``, ``"bdt"``; ``kind`` is "logistic" | "bdt" | "mlp" | ...
    score_train, y_train, w_train : train-split scores, labels (1 signal, 0 background),
        event weights
    score_test, y_test, w_test : the same for the test split
    roc_test, roc_train : ``(eff_b, eff_s)`` arrays, from :func:`fivesigma.metrics.roc_curve`
    metrics : ``auc_test``, ``auc_train``, ``eff_s_at_eff_b`` (``{"0.01": .., "0.1": ..,
        "0.3": ..}``), ``rejection_at_eff_s`` (``{"0.3": .., "0.5": ..}``),
        ``ks_pvalue_signal``, ``ks_pvalue_background``, ``separation``, ``n_parameters``,
        ``train_time_s``, ... (missing entries show as "—")
    history : per-epoch lists (``train_loss``, ``val_loss``, optional ``best_epoch``) for
        networks; None for BDT / logistic
    ranking : ``[{"feature", "importance", "std"}, ...]`` sorted, most important first
        (``importance_mean`` / ``importance_std`` from permutation_importance also work)
    probs_train, probs_test : K > 2 classes: the (n, K) class probabilities of each split
        (the scores above are then the signal-vs-background discriminant); None otherwise
    classes_train, classes_test : K > 2 classes: the class indices 0..K-1 of each split
    """

    name: str
    kind: str
    score_train: np.ndarray
    y_train: np.ndarray
    w_train: np.ndarray
    score_test: np.ndarray
    y_test: np.ndarray
    w_test: np.ndarray
    roc_test: tuple[np.ndarray, np.ndarray]
    roc_train: tuple[np.ndarray, np.ndarray]
    metrics: dict = field(default_factory=dict)
    history: dict | None = None
    ranking: list[dict] | None = None
    probs_train: np.ndarray | None = None
    probs_test: np.ndarray | None = None
    classes_train: np.ndarray | None = None
    classes_test: np.ndarray | None = None


@dataclass
class ReportInput:
    """The whole report: inputs, models, statistics and provenance.

    Attributes
    ----------
    title : report title
    features : feature names, one per column of ``X``
    X, y, w : feature matrix (events x features), labels (1 signal, 0 background) and
        weights used for the input-distribution plots
    class_names : ``{1: "signal", 0: "background"}``
    correlation : ``{"signal": CxC, "background": CxC}`` (weighted) correlation matrices
    models : one :class:`ModelReport` per trained classifier
    best_model : name of the model the physics result uses
    best_model_reason : why that model was chosen (shown in the summary); "" for none
    ks_threshold : KS p-values at or below this are flagged as possible overtraining
    cut_scan : ``thresholds``, ``s``, ``b``, ``s_over_sqrt_b``, ``z_asimov``,
        ``z_asimov_unc`` arrays and ``best`` ``{threshold, s, b, z}``; a
        :class:`fivesigma.metrics.CutScan` is accepted too; None to leave out
    stats : ``z_expected``, ``cls_upper_limit_expected``, ``cls_band`` (``"-2"`` ..
        ``"+2"``), ``bin_edges`` (or ``binning``), per-bin yields ``s`` and ``b``,
        ``workspace`` (path) and any other scalars to list; a
        :class:`fivesigma.stats.StatsResult` is accepted too; None to leave out.
        ``method`` ("pyhf" or "asimov-formula", approximate), ``error`` (the stage
        failed: one line, shown instead of the numbers), ``pyhf_error`` and ``note`` (a
        caveat) are shown when present
    stats_off : why there is no statistical result (e.g. turned off in the config),
        shown in its place when ``stats`` is None
    weights_note : a caveat on every yield and significance (e.g. unit event weights),
        shown in the summary
    config_text : the YAML config of the run (shown verbatim, escaped)
    provenance : versions, generator provenance, data fingerprint, command, time
    n_events : ``{"train": .., "validation": .., "test": ..}``
    extra_sections : more :class:`~fivesigma.report.builder.Section` objects a task adds
        (e.g. SHAP explanations), placed before the config
    classes : K > 2 classes: the class names by index; adds the "Classes" section
        (one-vs-rest ROC curves, confusion matrix, per-class scores) from the models'
        ``probs_*`` and ``classes_*``; empty for a binary run
    signal_classes : the indices of the signal classes (K > 2)
    discriminant : how the signal-vs-background score is made from the probabilities
    """

    title: str
    features: list[str]
    X: np.ndarray
    y: np.ndarray
    w: np.ndarray
    class_names: dict[int, str]
    correlation: dict[str, np.ndarray]
    models: list[ModelReport]
    best_model: str
    cut_scan: dict | None = None
    stats: dict | None = None
    config_text: str = ""
    provenance: dict = field(default_factory=dict)
    n_events: dict = field(default_factory=dict)
    best_model_reason: str = ""
    ks_threshold: float = 0.05
    stats_off: str = ""
    weights_note: str = ""
    extra_sections: list = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    signal_classes: list[int] = field(default_factory=list)
    discriminant: str = ""


# --------------------------------------------------------------------------- JSON


def to_jsonable(obj: Any, where: str = "$") -> Any:
    """Convert ``obj`` to plain JSON types: numpy scalars/arrays to Python numbers/lists,
    NaN and ±inf to None, tuples to lists, paths to strings, dataclasses to dicts.

    Dict keys must be strings or numbers (numbers become strings, as ``json`` would do).
    Anything else raises :class:`ReportError` naming where it sits (``$.models.bdt``).
    """
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "biufc" or obj.dtype == object:
            return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj.tolist())]
        if obj.dtype.kind in "US":
            return [str(v) for v in obj.tolist()]
        raise ReportError(f"cannot write {where} (numpy array of dtype {obj.dtype}) as JSON")
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if isinstance(k, np.generic):
                k = k.item()
            if not isinstance(k, str | int | float | bool):
                raise ReportError(
                    f"cannot write {where} as JSON: key {k!r} is a {type(k).__name__}; "
                    "keys must be strings or numbers"
                )
            out[str(k)] = to_jsonable(v, f"{where}.{k}")
        return out
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}, where)
    if hasattr(obj, "to_dict"):
        return to_jsonable(obj.to_dict(), where)
    raise ReportError(
        f"cannot write {where} as JSON: {type(obj).__name__} is not a number, string, "
        "list, dict or numpy array"
    )


def write_metrics_json(data: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``data`` as strict JSON (NaN/inf -> null, numpy -> Python), atomically.

    Keys keep the order they are given in.  Returns the path written.
    """
    clean = to_jsonable(data)
    # allow_nan=False: after conversion nothing non-finite may remain; if it did, this
    # raises instead of writing the non-standard NaN token other JSON readers reject.
    text = json.dumps(clean, indent=2, allow_nan=False, ensure_ascii=False) + "\n"
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def report_metrics(report: ReportInput) -> dict[str, Any]:
    """The numbers of ``report`` as a plain dict for metrics.json (not yet JSON-cleaned).

    ``{"title", "best_model", "best_model_reason", "n_events", "models": {name: {"kind",
    **metrics}},
    "cut_scan": best point or None, "stats": scalars of stats or None}``.
    """
    models = {m.name: {"kind": m.kind, **dict(m.metrics)} for m in report.models}
    scan = _as_dict(report.cut_scan)
    stats = _as_dict(report.stats)
    if stats is not None:
        # Per-bin arrays are in the workspace; keep metrics.json to the results.
        stats = {k: v for k, v in stats.items() if k not in ("s", "b")}
    return {
        "title": report.title,
        "best_model": report.best_model,
        "best_model_reason": report.best_model_reason,
        "n_events": dict(report.n_events),
        "models": models,
        "cut_scan": None if scan is None else scan.get("best"),
        "stats": stats,
    }


def _as_dict(obj: Any) -> dict | None:
    """A cut-scan / stats result as a dict, whether given as dict, dataclass or to_dict()."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return dict(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: _as_dict(getattr(obj, f.name))
            if dataclasses.is_dataclass(getattr(obj, f.name))
            else getattr(obj, f.name)
            for f in dataclasses.fields(obj)
        }
    if hasattr(obj, "to_dict"):
        return dict(obj.to_dict())
    raise ReportError(f"expected a dict, got {type(obj).__name__}")


# The builder needs nothing above; the classification report needs the classes above.
from fivesigma.report.builder import (  # noqa: E402
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
from fivesigma.report.classification import write_report  # noqa: E402
from fivesigma.report.style import ExpLabel  # noqa: E402
