"""The event-classification job behind ``fivesigma run``.

Read the samples, train every configured model on the train split (validation split for
early stopping), judge them on the test split with weighted and unweighted metrics and
train-vs-test overtraining checks, choose the model for the physics result among those
that pass the overtraining check (:func:`choose_best_model`), then turn its score into an
expected discovery significance and CLs limit with pyhf.  Writes, into the output
directory::

    report.html        self-contained report (plots embedded)
    metrics.json       machine-readable numbers (keys documented in docs/classify.md)
    workspace.json     the pyhf HistFactory workspace of the best model
    models/<name>/     one model bundle per model (``fivesigma apply`` reads these)

The model bundles and metrics.json are written before the statistics stage, and that
stage cannot fail the run (:func:`fivesigma.stats.robust_stats`: retries, then the
Asimov formula, then an ``error`` entry), so a failing fit never loses the training.

In a notebook::

    import fivesigma as fs
    result = fs.run("analysis.yaml", out="results")
    result.metrics["models"]["bdt"]["auc_test"]
"""

from __future__ import annotations

import math
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fivesigma import metrics as M
from fivesigma.core.bundle import data_fingerprint, library_versions
from fivesigma.core.files import check_writable_dir, ensure_writable_dir
from fivesigma.core.task import Result, Task
from fivesigma.errors import ConfigError, DataError, FivesigmaError, ModelError, describe_exception
from fivesigma.estimators.tabular import BaseClassifier, make_estimator
from fivesigma.tasks.classify.config import (
    ClassifyConfig,
    ClassInfo,
    EvaluationConfig,
    class_info,
)

__all__ = ["ClassifyResult", "ClassifyTask", "ModelResult", "choose_best_model", "run"]

SPLIT_TRAIN, SPLIT_VALID, SPLIT_TEST = 0, 1, 2


@dataclass
class ModelResult:
    """One trained model with its scores and metrics."""

    name: str
    kind: str
    estimator: BaseClassifier
    score_train: np.ndarray
    score_test: np.ndarray
    metrics: dict[str, Any]
    bundle: Path | None = None
    probs_train: np.ndarray | None = None
    probs_test: np.ndarray | None = None


@dataclass
class ClassifyResult:
    """What ``run`` returns: per-model results, the best model, statistics, output paths.

    ``stats`` is the :class:`fivesigma.stats.StatsResult` of the best model, or None when
    the statistics stage is off.
    """

    models: list[ModelResult]
    best_model: str
    metrics: dict[str, Any]
    out_dir: Path
    stats: Any = None
    files: dict[str, Path] = field(default_factory=dict)

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per model, best first: name, AUC, rejection at eps_S=0.5, and Z for the best."""
        rows = []
        for name, m in sorted(self.metrics["models"].items(), key=lambda kv: -_rank_auc(kv[1])):
            rows.append(
                {
                    "model": name,
                    "auc_test": m["auc_test"],
                    "auc_test_unweighted": m.get("auc_test_unweighted"),
                    "auc_train": m["auc_train"],
                    "rejection_0.5": m["rejection_at_eff_s"].get("0.5"),
                    "best": name == self.best_model,
                }
            )
        return rows


def _rank_auc(m: dict[str, Any]) -> float:
    """The AUC models are ranked by: the mean one-vs-rest AUC for K > 2 classes, else the
    weighted test AUC."""
    v = m.get("auc_ovr_mean_weighted", m.get("auc_test"))
    return float(v) if v is not None and math.isfinite(float(v)) else -math.inf


def _key(x: float) -> str:
    """Working-point keys as the README documents them: 0.1 -> "0.1", 0.01 -> "0.01"."""
    return f"{x:g}"


def _binary_labels(label: np.ndarray) -> np.ndarray:
    classes = np.unique(label)
    if not set(classes.tolist()) <= {0, 1}:
        raise ConfigError(
            f"data.samples labels are {sorted(classes.tolist())}; event classification needs 0 "
            "(background) and 1 (signal)"
        )
    if len(classes) < 2:
        only = "signal (1)" if classes[0] == 1 else "background (0)"
        raise DataError(
            f"all selected events are {only}; the samples need both signal (label 1) and background (label 0)"
        )
    return label.astype(np.int64)


def _class_labels(label: np.ndarray, info: ClassInfo) -> np.ndarray:
    """K > 2 classes: every class must have selected events (labels are 0..K-1)."""
    present = set(np.unique(label).tolist())
    for k, name in enumerate(info.names):
        if k not in present:
            raise DataError(
                f"class {k} ({name}) has no events after the selection; every class of "
                f"0..{info.n_classes - 1} needs events"
            )
    return label.astype(np.int64)


def _check_split_has_every_class(y: np.ndarray, split: np.ndarray, info: ClassInfo) -> None:
    """K > 2 classes: train and test (and validation, when it has events) hold every class."""
    for code, name in ((SPLIT_TRAIN, "train"), (SPLIT_TEST, "test"), (SPLIT_VALID, "validation")):
        inside = split == code
        if code == SPLIT_VALID and not inside.any():
            continue  # no validation split: the estimators hold out their own
        present = set(np.unique(y[inside]).tolist())
        missing = [k for k in range(info.n_classes) if k not in present]
        if missing:
            which = ", ".join(f"{k} ({info.names[k]})" for k in missing)
            raise DataError(
                f"the {name} split holds no events of class {which}; every class needs "
                "events in every split: use more events or change data.split"
            )


def _check_split_has_both_classes(y: np.ndarray, split: np.ndarray) -> None:
    for code, name in ((SPLIT_TRAIN, "train"), (SPLIT_TEST, "test")):
        present = set(np.unique(y[split == code]).tolist())
        if present != {0, 1}:
            raise DataError(
                f"the {name} split holds {'no events' if not present else 'only class ' + str(present.pop())}; "
                "use more events or change data.split"
            )


def _check_training_weights(
    dataset, y: np.ndarray, w: np.ndarray, train: np.ndarray, info: ClassInfo | None = None
) -> None:
    """Weights that leave nothing to learn from are named before any training."""
    for i, name in enumerate(dataset.sample_names):
        in_sample = train & (dataset.sample == i)
        if in_sample.any() and not np.any(w[in_sample] != 0):
            raise DataError(
                f"sample {name!r}: every training event has weight 0 (check its weight "
                "expression or normalisation); a model cannot learn from it"
            )
    if info is not None and info.multiclass:
        classes = [(k, f"class {k} ({n})") for k, n in enumerate(info.names)]
    else:
        classes = [(1, "signal"), (0, "background")]
    for cls, what in classes:
        total = float(w[train & (y == cls)].sum())
        if not total > 0:
            raise DataError(
                f"the {what} training events' weights sum to {total:g}; the models need a "
                f"positive total weight for each class (check the {what} samples' weights)"
            )


def _make_model(spec, index: int, cfg: ClassifyConfig, out: Path, progress: bool) -> BaseClassifier:
    params = dict(spec.params)
    try:
        est = make_estimator(spec.kind, **params)
    except ModelError as err:
        raise ConfigError(f"models[{index}] ({spec.name}).params: {err}") from None
    accepted = est.get_params()
    # Defaults from the run: one seed for everything, progress as the CLI asks, and a
    # checkpoint directory so an interrupted network training resumes where it stopped.
    if "seed" in accepted and "seed" not in params:
        est.set_params(seed=cfg.seed)
    if "progress" in accepted and "progress" not in params:
        est.set_params(progress=progress)
    if "checkpoint_dir" in accepted and "checkpoint_dir" not in params:
        est.set_params(checkpoint_dir=str(out / "checkpoints" / spec.name))
    try:  # the run's defaults too (e.g. a seed out of the model's range), before any data
        type(est).check_params(est.get_params(), what=spec.kind)
    except ModelError as err:
        raise ConfigError(f"models[{index}] ({spec.name}).params: {err}") from None
    return est


def _n_parameters(est: BaseClassifier) -> int | None:
    """Network weights, logistic coefficients or BDT tree nodes (``est.n_parameters()``)."""
    return est.n_parameters()


def _model_metrics(cfg: ClassifyConfig, y_tr, w_tr, s_tr, y_te, w_te, s_te) -> dict[str, Any]:
    ev = cfg.evaluation
    ks_s = M.ks_test(s_tr[y_tr == 1], s_te[y_te == 1], w_tr[y_tr == 1], w_te[y_te == 1])
    ks_b = M.ks_test(s_tr[y_tr == 0], s_te[y_te == 0], w_tr[y_tr == 0], w_te[y_te == 0])
    auc_test, auc_train = M.auc(y_te, s_te, w_te), M.auc(y_tr, s_tr, w_tr)
    return {
        # auc_test / auc_train are the weighted ones (the keys predate the unweighted AUC).
        "auc_test": auc_test,
        "auc_train": auc_train,
        "auc_test_weighted": auc_test,
        "auc_test_unweighted": M.auc(y_te, s_te),
        "auc_train_unweighted": M.auc(y_tr, s_tr),
        "eff_s_at_eff_b": {
            _key(k): v for k, v in M.eff_s_at_eff_b(y_te, s_te, ev.eff_b, w_te).items()
        },
        "eff_s_at_eff_b_train": {
            _key(k): v for k, v in M.eff_s_at_eff_b(y_tr, s_tr, ev.eff_b, w_tr).items()
        },
        "rejection_at_eff_s": {
            _key(k): v for k, v in M.rejection_at_eff_s(y_te, s_te, ev.eff_s, w_te).items()
        },
        "rejection_at_eff_s_train": {
            _key(k): v for k, v in M.rejection_at_eff_s(y_tr, s_tr, ev.eff_s, w_tr).items()
        },
        "ks_pvalue_signal": ks_s[1],
        "ks_pvalue_background": ks_b[1],
        "separation": M.separation(
            s_te[y_te == 1], s_te[y_te == 0], w_te[y_te == 1], w_te[y_te == 0], range=(0.0, 1.0)
        ),
    }


def _multiclass_metrics(
    cfg: ClassifyConfig, info: ClassInfo, y_tr, w_tr, p_tr, y_te, w_te, p_te
) -> dict[str, Any]:
    """Per-class metrics of a K-class model (K > 2), keyed by class name."""
    names = info.names
    ovr_w = M.multiclass_one_vs_rest(y_te, p_te, w_te)
    ovr_u = M.multiclass_one_vs_rest(y_te, p_te)
    ovr_train = M.multiclass_one_vs_rest(y_tr, p_tr, w_tr)
    pred_te, pred_tr = p_te.argmax(axis=1), p_tr.argmax(axis=1)
    rejections = M.multiclass_rejections(y_te, p_te, cfg.evaluation.eff_s, w_te)
    ks = {}
    for k, name in enumerate(names):
        a, b = y_tr == k, y_te == k
        ks[name] = M.ks_test(p_tr[a, k], p_te[b, k], w_tr[a], w_te[b])[1]
    return {
        "n_classes": info.n_classes,
        "auc_ovr_mean_weighted": float(np.mean(list(ovr_w.values()))),
        "auc_ovr_mean_unweighted": float(np.mean(list(ovr_u.values()))),
        "auc_ovr_mean_train_weighted": float(np.mean(list(ovr_train.values()))),
        "auc_ovr_weighted": {names[k]: v for k, v in ovr_w.items()},
        "auc_ovr_unweighted": {names[k]: v for k, v in ovr_u.items()},
        "auc_ovr_train_weighted": {names[k]: v for k, v in ovr_train.items()},
        "rejection_ovr_at_eff_s": {
            names[k]: {
                names[j]: {_key(t): r for t, r in by_eff.items()} for j, by_eff in other.items()
            }
            for k, other in rejections.items()
        },
        "accuracy_weighted": M.accuracy(y_te, pred_te, w_te),
        "accuracy_unweighted": M.accuracy(y_te, pred_te),
        "accuracy_train_weighted": M.accuracy(y_tr, pred_tr, w_tr),
        "confusion_matrix": M.confusion_matrix(
            y_te, pred_te, w_te, info.n_classes, normalize="true"
        ).tolist(),
        "confusion_matrix_unweighted": M.confusion_matrix(
            y_te, pred_te, None, info.n_classes, normalize="true"
        ).tolist(),
        "ks_pvalue_class": ks,
    }


#: What each ``evaluation.best`` criterion ranks by ({eff_s}: the first working point).
CRITERIA = {
    "auc": "highest weighted test AUC",
    "auc_ovr": "highest mean one-vs-rest weighted test AUC",
    "z": "highest cut-scan significance Z",
    "rejection": "highest background rejection 1/eps_B at eps_S = {eff_s} (test)",
}


def _finite_or_inf(v: Any) -> bool:
    return v is not None and not math.isnan(float(v))


def _ks_pass(m: dict[str, Any], threshold: float) -> bool:
    """Both KS p-values above ``threshold`` (K > 2 classes: every class's); a p-value that
    could not be computed is no alarm."""
    if isinstance(m.get("ks_pvalue_class"), dict):
        pvalues = tuple(m["ks_pvalue_class"].values())
    else:
        pvalues = (m.get("ks_pvalue_signal"), m.get("ks_pvalue_background"))
    return all(p is None or not math.isfinite(p) or p > threshold for p in pvalues)


def _ks_text(name: str, m: dict[str, Any]) -> str:
    def fmt(p: Any) -> str:
        return "-" if p is None or not math.isfinite(p) else f"{p:.2g}"

    if isinstance(m.get("ks_pvalue_class"), dict):
        per = ", ".join(f"{c} {fmt(p)}" for c, p in m["ks_pvalue_class"].items())
        return f"{name} (KS p {per})"
    return (
        f"{name} (KS p signal {fmt(m.get('ks_pvalue_signal'))}, "
        f"background {fmt(m.get('ks_pvalue_background'))})"
    )


def choose_best_model(
    models: dict[str, dict[str, Any]], evaluation: EvaluationConfig
) -> tuple[str, str]:
    """The model for the physics result and why: ``(name, reason)``.

    ``models`` maps model names (in config order) to their metrics (``auc_test``, for
    K > 2 classes ``auc_ovr_mean_weighted``, which the ``auc`` criterion then uses,
    ``cut_scan_z``, ``rejection_at_eff_s``, ``ks_pvalue_signal``,
    ``ks_pvalue_background``).  Candidates are the models that pass the overtraining check
    (both KS p-values above ``evaluation.ks_threshold``); if none does, every model is a
    candidate and the reason says so.  Among the candidates the one with the highest
    ``evaluation.best`` value wins (the first in config order on a tie); when that value
    is undefined for every candidate (e.g. no rejection), the weighted test AUC decides.

    >>> ev = EvaluationConfig()
    >>> ok = {"auc_test": 0.90, "ks_pvalue_signal": 0.4, "ks_pvalue_background": 0.7}
    >>> bad = {"auc_test": 0.95, "ks_pvalue_signal": 0.001, "ks_pvalue_background": 0.5}
    >>> choose_best_model({"logistic": ok, "bdt": bad}, ev)[0]
    'logistic'
    """
    threshold = evaluation.ks_threshold
    criterion = evaluation.best
    first_eff_s = _key(evaluation.eff_s[0]) if evaluation.eff_s else ""
    multiclass = any("auc_ovr_mean_weighted" in m for m in models.values())
    auc_text = CRITERIA["auc_ovr" if multiclass else "auc"]
    what = auc_text if criterion == "auc" else CRITERIA[criterion].format(eff_s=first_eff_s)

    def value(m: dict[str, Any], crit: str) -> Any:
        if crit == "z":
            return m.get("cut_scan_z")
        if crit == "rejection":
            return (m.get("rejection_at_eff_s") or {}).get(first_eff_s)
        return m.get("auc_ovr_mean_weighted", m.get("auc_test"))

    names = list(models)
    if not names:
        raise DataError("no trained model to choose from")
    passing = [n for n in names if threshold <= 0 or _ks_pass(models[n], threshold)]
    failing = [n for n in names if n not in passing]
    pool = passing or names
    ranked = [n for n in pool if _finite_or_inf(value(models[n], criterion))]
    undefined = ""
    crit = criterion
    if not ranked:
        undefined = f" ({what} is undefined for every candidate)"
        crit, what = "auc", auc_text
        ranked = [n for n in pool if _finite_or_inf(value(models[n], "auc"))] or pool[:1]

    def rank(n: str) -> float:
        v = value(models[n], crit)
        return -math.inf if v is None else float(v)

    best = max(ranked, key=rank)

    whose = "every class" if multiclass else "signal and background"
    check = f"the overtraining check (KS p-values of {whose} above {threshold:g})"
    if threshold <= 0:
        reason = f"{what} of {len(names)} model(s); overtraining check off (ks_threshold 0)"
    elif len(names) == 1:
        verdict = "passes" if passing else "fails"
        reason = f"the only model; it {verdict} {check}"
        if failing:
            reason += ": " + _ks_text(best, models[best]) + "; treat its result with care"
    elif not failing:
        reason = f"{what} of {len(names)} models, all passing {check}"
    elif passing:
        reason = (
            f"{what} among the {len(passing)} of {len(names)} models passing {check}; "
            "not considered: " + ", ".join(_ks_text(n, models[n]) for n in failing)
        )
    else:
        reason = (
            f"every model fails {check}: "
            + ", ".join(_ks_text(n, models[n]) for n in failing)
            + f"; chosen by {what} anyway, so treat its result with care"
        )
    return best, reason + undefined


def _unit_weights(cfg: ClassifyConfig) -> bool:
    """No sample has a weight expression (other than 1) or a normalisation."""
    return all(
        s.normalisation is None and (s.weight is None or s.weight.strip() in ("1", "1.0"))
        for s in cfg.data.samples
    )


#: stats.note (and the report's caveat) when every event weight is 1.
UNIT_WEIGHTS_NOTE = (
    "every event weight is 1 (no sample has a weight or normalisation): yields are counts "
    "of simulated events, so the significances and the limit are not physical; give the "
    "samples a weight expression or a normalisation (cross section x luminosity)"
)

#: What metrics.json says about the statistics while that stage runs (a run stopped there
#: leaves it so).
STATS_PENDING = {"error": "the statistics stage did not finish (the run stopped during it)"}


def _title(cfg: ClassifyConfig) -> str:
    """``signal: wz — background: zz, ww`` from the samples' labels and roles."""
    signal = class_info(cfg).signal
    sig = [s.name for s in cfg.data.samples if s.label in signal]
    bkg = [s.name for s in cfg.data.samples if s.label not in signal]
    return f"fivesigma: signal: {', '.join(sig) or '-'} — background: {', '.join(bkg) or '-'}"


def _stats_stage(cfg: ClassifyConfig, score, y, w, scale: float, note: str | None):
    """The best model's expected Z and limit: ``(StatsResult, spec)``, ``(None, None)``
    when the stage is off.  Never raises: failures end in the result's ``error``."""
    if not cfg.stats_enabled:
        return None, None
    from fivesigma.stats import StatsResult, robust_stats

    st = cfg.stats
    try:
        result, spec = robust_stats(
            score,
            y,
            w,
            bins=st.bins,
            bkg_norm_unc=st.bkg_norm_unc,
            scale=scale,
            min_background=st.min_background,
            mc_stat=st.mc_stat,
        )
    except Exception as err:  # robust_stats records its failures; this is the last guard
        result = StatsResult(None, None, None, method=None, z_method=None, limit_method=None)
        result.error, spec = " ".join(describe_exception(err, limit=240).split()), None
    result.note = note
    if result.error:
        warnings.warn(
            f"the statistics stage failed ({result.error}); the models, metrics.json and the "
            "report are written without it",
            UserWarning,
            stacklevel=3,
        )
    elif result.method != "pyhf":
        warnings.warn(
            f"pyhf could not fit the statistical model ({result.pyhf_error}); the expected Z "
            "and limit come from the Asimov formula (approximate)",
            UserWarning,
            stacklevel=3,
        )
    return result, spec


def run(
    cfg: ClassifyConfig, out: str | Path | None = None, progress: bool = True, dataset=None
) -> ClassifyResult:
    """Run the whole classification job for ``cfg``; see the module docstring.

    ``dataset`` may be given to skip reading (a :class:`fivesigma.data.Dataset` built
    from ``cfg``); otherwise it is read with :func:`fivesigma.data.prepare.prepare_data`.
    """
    from fivesigma import report as R
    from fivesigma.data.prepare import prepare_data
    from fivesigma.stats import save_workspace

    out_dir = check_writable_dir(out if out is not None else cfg.resolve(cfg.output.dir))
    if not cfg.data.features:
        raise ConfigError("data.features is empty; list the columns the models should use")
    # Models are built (their parameters checked) before any data is read, and the output
    # directory is created only once the data are known to be usable.
    estimators = [_make_model(spec, i, cfg, out_dir, progress) for i, spec in enumerate(cfg.models)]
    if dataset is None:
        dataset = prepare_data(cfg, progress=progress)

    names = list(cfg.data.features)
    X = dataset.features(names)
    info = class_info(cfg)
    multi = info.multiclass
    # Two classes with label 1 as signal: the binary run as it always was.
    standard = not multi and info.signal == (1,)
    y = _class_labels(dataset.label, info) if multi else _binary_labels(dataset.label)
    w = dataset.weight.astype(np.float64)
    split = dataset.split
    if multi:
        _check_split_has_every_class(y, split, info)
    else:
        _check_split_has_both_classes(y, split)
    _check_training_weights(dataset, y, w, split == SPLIT_TRAIN, info)
    tr, va, te = (split == SPLIT_TRAIN), (split == SPLIT_VALID), (split == SPLIT_TEST)
    if multi:
        has_valid = bool(va.any())
        # Each class gets the same total weight in the loss unless the config says otherwise.
        for spec, est in zip(cfg.models, estimators, strict=True):
            if "class_weight" in est.get_params() and "class_weight" not in spec.params:
                est.set_params(class_weight="balanced")
    else:
        has_valid = bool(va.any()) and set(np.unique(y[va]).tolist()) == {0, 1}
    # The physics result is binary: the signal classes against the rest.
    y_bin = y if standard else np.isin(y, info.signal).astype(np.int64)
    disc_kind = cfg.evaluation.discriminant

    def score_of(est: BaseClassifier, X_part: np.ndarray) -> np.ndarray:
        if standard:
            return est.decision_function(X_part)
        return M.discriminant(est.predict_proba(X_part), info.signal, kind=disc_kind)

    ensure_writable_dir(out_dir)
    results: list[ModelResult] = []
    for spec, est in zip(cfg.models, estimators, strict=True):
        t0 = time.perf_counter()
        if has_valid:
            est.fit(X[tr], y[tr], w[tr], valid=(X[va], y[va], w[va]), feature_names=names)
        else:
            est.fit(X[tr], y[tr], w[tr], feature_names=names)
        train_time = time.perf_counter() - t0
        p_tr = p_te = None
        if standard:
            s_tr, s_te = est.decision_function(X[tr]), est.decision_function(X[te])
        else:
            p_tr, p_te = est.predict_proba(X[tr]), est.predict_proba(X[te])
            s_tr = M.discriminant(p_tr, info.signal, kind=disc_kind)
            s_te = M.discriminant(p_te, info.signal, kind=disc_kind)
        m = _model_metrics(cfg, y_bin[tr], w[tr], s_tr, y_bin[te], w[te], s_te)
        if multi:
            m.update(_multiclass_metrics(cfg, info, y[tr], w[tr], p_tr, y[te], w[te], p_te))
        m["n_parameters"] = _n_parameters(est)
        m["train_time_s"] = train_time
        results.append(ModelResult(spec.name, spec.kind, est, s_tr, s_te, m, None, p_tr, p_te))

    y_te, w_te = y_bin[te], w[te]
    # Test events stand for the whole selected sample: scale yields back up.
    test_fraction = float(w_te.sum() / w.sum()) if w.sum() > 0 else cfg.data.split.test
    scale = 1.0 / test_fraction if test_fraction > 0 else 1.0
    scans: dict[str, Any] = {}
    for r in results:
        try:
            scans[r.name] = M.cut_scan(
                y_te, r.score_test, w_te, rel_unc_b=cfg.evaluation.rel_unc_b, scale=scale
            )
        except M.MetricError:
            scans[r.name] = None
        r.metrics["cut_scan_z"] = scans[r.name].best.z if scans[r.name] else float("nan")
    for r in results:
        r.metrics["overtraining_check_passed"] = bool(
            cfg.evaluation.ks_threshold <= 0 or _ks_pass(r.metrics, cfg.evaluation.ks_threshold)
        )
    best_name, best_reason = choose_best_model({r.name: r.metrics for r in results}, cfg.evaluation)
    best = next(r for r in results if r.name == best_name)
    scan = scans[best.name]

    # Variable ranking (best model, test split) and input correlations (train split).
    ranking = None
    if cfg.evaluation.ranking_repeats > 0:
        ranking = M.permutation_importance(
            lambda X_part: score_of(best.estimator, X_part),
            X[te],
            y_te,
            w_te,
            feature_names=names,
            n_repeats=cfg.evaluation.ranking_repeats,
            seed=cfg.seed,
        )
    # correlations of the events with every feature present (nan_policy: keep)
    complete = ~np.isnan(X).any(axis=1)
    corr = {}
    for cls, what in ((1, "signal"), (0, "background")):
        rows = tr & (y_bin == cls) & complete
        try:
            corr[what] = M.weighted_correlation(X[rows], w[rows])
        except M.MetricError:  # e.g. a feature missing for every event of the class
            continue
    explanations, shap_section = _explain(
        cfg, results, X[te], class_index=1 if standard else info.signal[0]
    )
    for r in results:
        if r.name in explanations:
            r.metrics["mean_abs_shap"] = explanations[r.name]

    # The machine-learning results go to disk first: every bundle, then metrics.json.
    files: dict[str, Path] = {}
    for r in results:
        r.bundle = _save_bundle(r, cfg, out_dir / "models" / r.name, None if standard else info)
        files[f"model:{r.name}"] = r.bundle

    n_events = {k: int(v.sum()) for k, v in (("train", tr), ("validation", va), ("test", te))}
    config_text = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    provenance = {
        "versions": library_versions(),
        "data_fingerprint": data_fingerprint(X, y, w),
        "samples": dataset.summary()["samples"],
        "generated_sample": cfg.generate.model_dump() if cfg.generate else None,
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    metrics: dict[str, Any] = {
        "models": {r.name: {"kind": r.kind, **r.metrics} for r in results},
        "best_model": best.name,
        "best_model_criterion": cfg.evaluation.best,
        "best_model_reason": best_reason,
        "stats": dict(STATS_PENDING) if cfg.stats_enabled else None,
        "cut_scan": None
        if scan is None
        else {
            "threshold": scan.best.threshold,
            "s": scan.best.s,
            "b": scan.best.b,
            "z": scan.best.z,
            "rel_unc_b": cfg.evaluation.rel_unc_b,
        },
        "ranking": ranking,
        "n_events": n_events,
        "provenance": provenance,
    }
    if not standard:
        metrics["classes"] = [
            {"label": k, "name": n, "role": "signal" if k in info.signal else "background"}
            for k, n in enumerate(info.names)
        ]
        metrics["signal_classes"] = [info.names[k] for k in info.signal]
        metrics["discriminant"] = disc_kind
    files["metrics"] = R.write_metrics_json(metrics, out_dir / "metrics.json")

    # The statistics stage cannot raise: failures are recorded in its result.
    weights_note = UNIT_WEIGHTS_NOTE if _unit_weights(cfg) else None
    stats_result, spec = _stats_stage(cfg, best.score_test, y_te, w_te, scale, weights_note)
    stats_report = None
    if stats_result is not None:
        stats_report = stats_result.to_dict()
        if spec is not None:
            try:
                files["workspace"] = save_workspace(spec, out_dir / "workspace.json")
                stats_report.update(_yields(spec), workspace="workspace.json")
            except OSError as err:
                stats_result.notes.append(f"workspace.json not written: {describe_exception(err)}")
                stats_report["notes"] = list(stats_result.notes)
        metrics["stats"] = stats_result.to_dict()
        files["metrics"] = R.write_metrics_json(metrics, out_dir / "metrics.json")

    report_input = R.ReportInput(
        title=_title(cfg),
        features=names,
        X=X[te],
        y=y_te,
        w=w_te,
        class_names={1: "signal", 0: "background"}
        if standard
        else {
            1: "signal (" + ", ".join(info.names[k] for k in info.signal) + ")",
            0: "background (" + ", ".join(info.names[k] for k in info.background) + ")",
        },
        classes=list(info.names) if multi else [],
        signal_classes=list(info.signal) if multi else [],
        discriminant=disc_kind if multi else "",
        correlation=corr,
        models=[
            R.ModelReport(
                name=r.name,
                kind=r.kind,
                score_train=r.score_train,
                y_train=y_bin[tr],
                w_train=w[tr],
                score_test=r.score_test,
                y_test=y_te,
                w_test=w_te,
                roc_test=M.roc_curve(y_te, r.score_test, w_te)[:2],
                roc_train=M.roc_curve(y_bin[tr], r.score_train, w[tr])[:2],
                metrics=r.metrics,
                history=r.estimator.history_.to_dict()
                if hasattr(r.estimator, "history_")
                else None,
                ranking=ranking if r is best else None,
                probs_train=r.probs_train if multi else None,
                probs_test=r.probs_test if multi else None,
                classes_train=y[tr] if multi else None,
                classes_test=y[te] if multi else None,
            )
            for r in results
        ],
        best_model=best.name,
        best_model_reason=best_reason,
        ks_threshold=cfg.evaluation.ks_threshold,
        cut_scan=scan,
        stats=stats_report,
        stats_off=""
        if cfg.stats_enabled
        else "The statistics stage is turned off in the config (stats: null or "
        "stats.enabled: false).",
        weights_note=weights_note or "",
        extra_sections=[shap_section] if shap_section is not None else [],
        config_text=config_text,
        provenance=provenance,
        n_events=n_events,
    )
    files["report"] = R.write_report(report_input, out_dir / "report.html")
    # Finished: the resume checkpoints have served their purpose.
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    return ClassifyResult(results, best.name, metrics, out_dir, stats_result, files)


def _explain(
    cfg: ClassifyConfig, results: list[ModelResult], X_test: np.ndarray, class_index: int = 1
) -> tuple:
    """Mean |SHAP| per feature of every model (for metrics.json) and the report section.

    Explaining is a late, optional stage: a model it cannot explain gets a note, never a
    failed run.
    """
    from fivesigma.explain import mean_abs_shap, report_section, shap_values

    if cfg.evaluation.shap_events == 0:
        return {}, None
    means: dict[str, dict[str, float]] = {}
    shown = {}
    for r in results:
        try:
            expl = shap_values(
                r.estimator,
                X_test,
                max_events=cfg.evaluation.shap_events,
                seed=cfg.seed,
                class_index=class_index,
            )
        except FivesigmaError as err:
            warnings.warn(f"no SHAP values for model {r.name!r}: {err}", stacklevel=2)
            continue
        means[r.name] = mean_abs_shap(expl)
        shown[r.name] = expl
    return means, (report_section(shown) if shown else None)


def _yields(spec: dict) -> dict[str, list[float]]:
    """Per-bin signal and background yields of the workspace (for the report's histogram)."""
    samples = {s["name"]: s["data"] for s in spec["channels"][0]["samples"]}
    return {"s": samples.get("signal", []), "b": samples.get("background", [])}


def _save_bundle(
    r: ModelResult, cfg: ClassifyConfig, path: Path, info: ClassInfo | None = None
) -> Path:
    """The estimator's bundle plus what ``apply`` needs to rebuild features from files
    (and, when ``info`` is given, the signal classes and discriminant ``apply`` scores)."""
    data = {
        "derived": dict(cfg.data.derived),
        "selection": cfg.data.selection,
        "tree": cfg.data.samples[0].tree,
        "samples": [{"name": s.name, "label": s.label, "tree": s.tree} for s in cfg.data.samples],
        "nan_policy": cfg.data.nan_policy,
        "missing": cfg.data.missing,
    }
    if info is not None:
        data["classes"] = list(info.names)
        data["signal_classes"] = list(info.signal)
        data["discriminant"] = cfg.evaluation.discriminant
    return r.estimator.save(path, data=data, metadata={"metrics": r.metrics, "model_name": r.name})


def _fits(table: Any, cells: list[str]) -> bool:
    """Whether ``table`` shows every header line and value of ``cells`` uncut in a console of
    the terminal's width (rich folds or crops columns that do not fit)."""
    import io
    from collections import Counter

    from rich.console import Console

    console = Console(width=Console().width, file=io.StringIO(), record=True)
    console.print(table)
    text = console.export_text()
    needed = Counter(line for c in cells for line in c.split("\n") if line)
    return all(text.count(s) >= n for s, n in needed.items())


# --------------------------------------------------------------------------------------
# The task contract


class ClassifyTask(Task):
    """``task: classify``: event classification (the default of ``fivesigma run``)."""

    name = "classify"
    description = "event classification: train and compare classifiers, weighted metrics, pyhf"
    config_model = ClassifyConfig
    template_file = "higgs4l.yaml"

    def check(self, config: ClassifyConfig) -> None:
        for index, spec in enumerate(config.models):
            _make_model(spec, index, config, Path("."), progress=False)

    def run(self, config: ClassifyConfig, out: Path, progress: bool = True) -> Result:
        res = run(config, out=out, progress=progress)
        files = {k: v for k, v in res.files.items() if not k.startswith("model:")}
        bundles = {r.name: r.bundle for r in res.models if r.bundle is not None}
        return Result(self.name, res.out_dir, res.metrics, files, bundles, details=res)

    #: ``fivesigma apply --scheduler`` scores this task's bundles on dask (``client=``)
    apply_on_dask = True

    def apply(self, bundle: Path, inputs: list[str], out: Path, **options: Any) -> dict[str, Any]:
        from fivesigma.tasks.classify.apply import apply_bundle

        info = apply_bundle(
            bundle,
            inputs,
            out,
            tree=options.get("tree"),
            chunk_size=options.get("chunk_size") or 200_000,
            client=options.get("client"),
            progress=bool(options.get("progress")),
        )
        where = info["out"]
        if "outputs" in info:
            where = f"{len(info['outputs'])} file(s) beside {info['out']} (report {info['report']})"
        info["message"] = (
            f"scored {info['events']} events from {info['files']} file(s) "
            f"({info['selected']} pass the selection) -> {where}"
        )
        return info

    def summary(self, result: Result) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        m = result.metrics
        models = m.get("models") or {}
        best = m.get("best_model")
        st = m.get("stats")
        z = st.get("z_expected") if isinstance(st, dict) else None
        first = next(iter(models.values()), {})
        rej_keys = list(first.get("rejection_at_eff_s") or {})
        rej_key = "0.5" if "0.5" in rej_keys else (rej_keys[0] if rej_keys else "0.5")

        def num(v: Any, fmt: str) -> str:
            if v is None or math.isnan(v):
                return "-"
            return format(v, fmt) if math.isfinite(v) else "inf"

        headers = (
            "model",
            "AUC test\nweighted",
            "AUC test\nunweighted",
            "AUC train\nweighted",
            f"1/eB at\neS={rej_key}",
            "KS p\nS / B",
            "Z exp.",
        )
        multi = any("auc_ovr_mean_weighted" in row for row in models.values())
        if multi:
            headers = (
                "model",
                "mean AUC\n1-vs-rest w.",
                "mean AUC\nunweighted",
                "accuracy\nweighted",
                "AUC signal\nvs bkg w.",
                f"1/eB at\neS={rej_key}",
                "min KS p\nclasses",
                "Z exp.",
            )
        rows = []
        for name, row in sorted(models.items(), key=lambda kv: -_rank_auc(kv[1])):
            kind = row.get("kind", "")
            label = (
                name
                + (f" ({kind})" if kind and kind != name else "")
                + (" *" if name == best else "")
            )
            if multi:
                ks = [p for p in (row.get("ks_pvalue_class") or {}).values() if p is not None]
                rows.append(
                    (
                        label,
                        num(row.get("auc_ovr_mean_weighted"), ".4f"),
                        num(row.get("auc_ovr_mean_unweighted"), ".4f"),
                        num(row.get("accuracy_weighted"), ".3f"),
                        num(row.get("auc_test"), ".4f"),
                        num((row.get("rejection_at_eff_s") or {}).get(rej_key), ".1f"),
                        num(min(ks) if ks else None, ".2f"),
                        num(z, ".2f") if name == best else "",
                    )
                )
                continue
            rows.append(
                (
                    label,
                    num(row.get("auc_test"), ".4f"),
                    num(row.get("auc_test_unweighted"), ".4f"),
                    num(row.get("auc_train"), ".4f"),
                    num((row.get("rejection_at_eff_s") or {}).get(rej_key), ".1f"),
                    f"{num(row.get('ks_pvalue_signal'), '.2f')}/"
                    f"{num(row.get('ks_pvalue_background'), '.2f')}",
                    num(z, ".2f") if name == best else "",
                )
            )
        title = "Models ranked by test AUC (weighted)"
        if multi:
            signal = ", ".join(m.get("signal_classes") or [])
            title = (
                f"Models ranked by mean one-vs-rest test AUC (weighted); signal: {signal} "
                f"({m.get('discriminant')})"
            )
        # Every header line and value at full width (names fold), else one line per model:
        # nothing is ever cut off.
        table: Any = Table(title=title, show_edge=False, pad_edge=False)
        for i, header in enumerate(headers):
            table.add_column(header, justify="left" if i == 0 else "right", overflow="fold")
        for cells in rows:
            table.add_row(*cells)
        if not _fits(table, [*headers[1:], *(c for cells in rows for c in cells[1:])]):
            labels = [h.replace("\n", " ") for h in headers]
            table = Text(
                title
                + "\n"
                + "\n".join(
                    cells[0]
                    + ": "
                    + ", ".join(f"{k} {v}" for k, v in zip(labels[1:], cells[1:], strict=True) if v)
                    for cells in rows
                )
            )
        lines: list[Any] = [table]
        reason = m.get("best_model_reason")
        lines.append(Text(f"best model: {best}" + (f" ({reason})" if reason else "")))
        if not isinstance(st, dict):
            lines.append(Text("statistics: off (stats: null or stats.enabled: false)"))
        else:
            limit, band = st.get("cls_upper_limit_expected"), st.get("cls_band") or {}
            if z is not None or limit is not None:
                how = (
                    " (Asimov formula, approximate)" if st.get("method") == "asimov-formula" else ""
                )
                text = f"expected Z = {num(z, '.2f')} sigma, expected 95% CLs limit on mu = "
                text += num(limit, ".3f")
                if band:
                    text += f" [-1s {num(band.get('-1'), '.3f')}, +1s {num(band.get('+1'), '.3f')}]"
                lines.append(Text(text + how))
            if st.get("error"):
                lines.append(
                    Text(
                        f"warning: the statistics stage failed: {st['error']} (the models, "
                        "metrics.json and the report are complete)",
                        style="yellow",
                    )
                )
            elif st.get("method") == "asimov-formula":
                lines.append(
                    Text(
                        f"warning: pyhf failed ({st.get('pyhf_error')}); Z and the limit come "
                        "from the Asimov formula",
                        style="yellow",
                    )
                )
            if st.get("note"):
                lines.append(Text(f"warning: {st['note']}", style="yellow"))
        files = result.files
        lines.append(Text(f"report: {files.get('report')}   metrics: {files.get('metrics')}"))
        return Group(*lines)

    def data_summary(self, config: ClassifyConfig, progress: bool = True) -> Any:
        """``fivesigma run --data-only``: read and select, then a table of event counts."""
        from rich.table import Table

        from fivesigma.data.prepare import prepare_data

        summary = prepare_data(config, progress=progress).summary()
        table = Table(title=f"{summary['events']} events after selection")
        table.add_column("sample")
        for col in ("read", "selected", "train", "validation", "test", "sum of weights"):
            table.add_column(col, justify="right")
        for name, row in summary["samples"].items():
            table.add_row(
                name,
                str(row.get("events_read", "")),
                str(row["events"]),
                str(row["train"]["events"]),
                str(row["validation"]["events"]),
                str(row["test"]["events"]),
                f"{row['sum_weights']:.4g}",
            )
        return table
