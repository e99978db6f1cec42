"""The event-classification job behind ``fivesigma run``.

Read the samples, train every configured model on the train split (validation split for
early stopping), judge them on the test split with weighted metrics and train-vs-test
overtraining checks, then turn the best model's score into an expected discovery
significance and CLs limit with pyhf.  Writes, into the output directory::

    report.html        self-contained report (plots embedded)
    metrics.json       machine-readable numbers (keys documented in the README)
    workspace.json     the pyhf HistFactory workspace of the best model
    models/<name>/     one model bundle per model (``fivesigma apply`` reads these)

In a notebook::

    import fivesigma as fs
    result = fs.run("analysis.yaml", out="results")
    result.metrics["models"]["bdt"]["auc_test"]
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fivesigma import metrics as M
from fivesigma.core.bundle import data_fingerprint, library_versions
from fivesigma.core.files import check_writable_dir, ensure_writable_dir
from fivesigma.core.task import Result, Task
from fivesigma.errors import ConfigError, DataError, ModelError
from fivesigma.estimators.tabular import BaseClassifier, make_estimator
from fivesigma.tasks.classify.config import ClassifyConfig

__all__ = ["ClassifyResult", "ClassifyTask", "ModelResult", "run"]

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


@dataclass
class ClassifyResult:
    """What ``run`` returns: per-model results, the best model, statistics, output paths."""

    models: list[ModelResult]
    best_model: str
    metrics: dict[str, Any]
    out_dir: Path
    stats: Any = None
    files: dict[str, Path] = field(default_factory=dict)

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per model, best first: name, AUC, rejection at eps_S=0.5, and Z for the best."""
        rows = []
        for name, m in sorted(self.metrics["models"].items(), key=lambda kv: -kv[1]["auc_test"]):
            rows.append(
                {
                    "model": name,
                    "auc_test": m["auc_test"],
                    "auc_train": m["auc_train"],
                    "rejection_0.5": m["rejection_at_eff_s"].get("0.5"),
                    "best": name == self.best_model,
                }
            )
        return rows


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


def _check_split_has_both_classes(y: np.ndarray, split: np.ndarray) -> None:
    for code, name in ((SPLIT_TRAIN, "train"), (SPLIT_TEST, "test")):
        present = set(np.unique(y[split == code]).tolist())
        if present != {0, 1}:
            raise DataError(
                f"the {name} split holds {'no events' if not present else 'only class ' + str(present.pop())}; "
                "use more events or change data.split"
            )


def _check_training_weights(dataset, y: np.ndarray, w: np.ndarray, train: np.ndarray) -> None:
    """Weights that leave nothing to learn from are named before any training."""
    for i, name in enumerate(dataset.sample_names):
        in_sample = train & (dataset.sample == i)
        if in_sample.any() and not np.any(w[in_sample] != 0):
            raise DataError(
                f"sample {name!r}: every training event has weight 0 (check its weight "
                "expression or normalisation); a model cannot learn from it"
            )
    for cls, what in ((1, "signal"), (0, "background")):
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
    return est


def _n_parameters(est: BaseClassifier) -> int | None:
    """Network weights, logistic coefficients or BDT tree nodes (``est.n_parameters()``)."""
    return est.n_parameters()


def _model_metrics(cfg: ClassifyConfig, y_tr, w_tr, s_tr, y_te, w_te, s_te) -> dict[str, Any]:
    ev = cfg.evaluation
    ks_s = M.ks_test(s_tr[y_tr == 1], s_te[y_te == 1], w_tr[y_tr == 1], w_te[y_te == 1])
    ks_b = M.ks_test(s_tr[y_tr == 0], s_te[y_te == 0], w_tr[y_tr == 0], w_te[y_te == 0])
    return {
        "auc_test": M.auc(y_te, s_te, w_te),
        "auc_train": M.auc(y_tr, s_tr, w_tr),
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


def run(
    cfg: ClassifyConfig, out: str | Path | None = None, progress: bool = True, dataset=None
) -> ClassifyResult:
    """Run the whole classification job for ``cfg``; see the module docstring.

    ``dataset`` may be given to skip reading (a :class:`fivesigma.data.Dataset` built
    from ``cfg``); otherwise it is read with :func:`fivesigma.data.prepare.prepare_data`.
    """
    from fivesigma import report as R
    from fivesigma.data.prepare import prepare_data
    from fivesigma.stats import run_stats, save_workspace

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
    y = _binary_labels(dataset.label)
    w = dataset.weight.astype(np.float64)
    split = dataset.split
    _check_split_has_both_classes(y, split)
    _check_training_weights(dataset, y, w, split == SPLIT_TRAIN)
    tr, va, te = (split == SPLIT_TRAIN), (split == SPLIT_VALID), (split == SPLIT_TEST)
    has_valid = bool(va.any()) and set(np.unique(y[va]).tolist()) == {0, 1}

    ensure_writable_dir(out_dir)
    results: list[ModelResult] = []
    for spec, est in zip(cfg.models, estimators, strict=True):
        t0 = time.perf_counter()
        if has_valid:
            est.fit(X[tr], y[tr], w[tr], valid=(X[va], y[va], w[va]), feature_names=names)
        else:
            est.fit(X[tr], y[tr], w[tr], feature_names=names)
        train_time = time.perf_counter() - t0
        s_tr, s_te = est.decision_function(X[tr]), est.decision_function(X[te])
        m = _model_metrics(cfg, y[tr], w[tr], s_tr, y[te], w[te], s_te)
        m["n_parameters"] = _n_parameters(est)
        m["train_time_s"] = train_time
        results.append(ModelResult(spec.name, spec.kind, est, s_tr, s_te, m))

    best = max(results, key=lambda r: r.metrics["auc_test"])
    y_te, w_te = y[te], w[te]

    # Variable ranking (best model, test split) and input correlations (train split).
    ranking = None
    if cfg.evaluation.ranking_repeats > 0:
        ranking = M.permutation_importance(
            best.estimator.decision_function,
            X[te],
            y_te,
            w_te,
            feature_names=names,
            n_repeats=cfg.evaluation.ranking_repeats,
            seed=cfg.seed,
        )
    corr = {
        "signal": M.weighted_correlation(X[tr & (y == 1)], w[tr & (y == 1)]),
        "background": M.weighted_correlation(X[tr & (y == 0)], w[tr & (y == 0)]),
    }

    # Test events stand for the whole selected sample: scale yields back up.
    test_fraction = float(w_te.sum() / w.sum()) if w.sum() > 0 else cfg.data.split.test
    scale = 1.0 / test_fraction if test_fraction > 0 else 1.0
    scan = M.cut_scan(y_te, best.score_test, w_te, rel_unc_b=cfg.evaluation.rel_unc_b, scale=scale)
    st = cfg.stats
    stats_result, spec = run_stats(
        best.score_test,
        y_te,
        w_te,
        bins=st.bins,
        bkg_norm_unc=st.bkg_norm_unc,
        scale=scale,
        min_background=st.min_background,
        mc_stat=st.mc_stat,
    )

    # Outputs: each file is written atomically.
    files: dict[str, Path] = {}
    for r in results:
        r.bundle = _save_bundle(r, cfg, out_dir / "models" / r.name)
        files[f"model:{r.name}"] = r.bundle
    files["workspace"] = save_workspace(spec, out_dir / "workspace.json")

    n_events = {k: int(v.sum()) for k, v in (("train", tr), ("validation", va), ("test", te))}
    config_text = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    provenance = {
        "versions": library_versions(),
        "data_fingerprint": data_fingerprint(X, y, w),
        "samples": dataset.summary()["samples"],
        "generated_sample": cfg.generate.model_dump() if cfg.generate else None,
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    metrics = {
        "models": {r.name: {"kind": r.kind, **r.metrics} for r in results},
        "best_model": best.name,
        "stats": stats_result.to_dict(),
        "cut_scan": {
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
    files["metrics"] = R.write_metrics_json(metrics, out_dir / "metrics.json")

    report_input = R.ReportInput(
        title=f"fivesigma: {' vs '.join(dataset.sample_names)}",
        features=names,
        X=X[te],
        y=y_te,
        w=w_te,
        class_names={1: "signal", 0: "background"},
        correlation=corr,
        models=[
            R.ModelReport(
                name=r.name,
                kind=r.kind,
                score_train=r.score_train,
                y_train=y[tr],
                w_train=w[tr],
                score_test=r.score_test,
                y_test=y_te,
                w_test=w_te,
                roc_test=M.roc_curve(y_te, r.score_test, w_te)[:2],
                roc_train=M.roc_curve(y[tr], r.score_train, w[tr])[:2],
                metrics=r.metrics,
                history=r.estimator.history_.to_dict()
                if hasattr(r.estimator, "history_")
                else None,
                ranking=ranking if r is best else None,
            )
            for r in results
        ],
        best_model=best.name,
        cut_scan=scan,
        stats={**stats_result.to_dict(), **_yields(spec), "workspace": "workspace.json"},
        config_text=config_text,
        provenance=provenance,
        n_events=n_events,
    )
    files["report"] = R.write_report(report_input, out_dir / "report.html")
    # Finished: the resume checkpoints have served their purpose.
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    return ClassifyResult(results, best.name, metrics, out_dir, stats_result, files)


def _yields(spec: dict) -> dict[str, list[float]]:
    """Per-bin signal and background yields of the workspace (for the report's histogram)."""
    samples = {s["name"]: s["data"] for s in spec["channels"][0]["samples"]}
    return {"s": samples.get("signal", []), "b": samples.get("background", [])}


def _save_bundle(r: ModelResult, cfg: ClassifyConfig, path: Path) -> Path:
    """The estimator's bundle plus what ``apply`` needs to rebuild features from files."""
    data = {
        "derived": dict(cfg.data.derived),
        "selection": cfg.data.selection,
        "tree": cfg.data.samples[0].tree,
        "samples": [{"name": s.name, "label": s.label, "tree": s.tree} for s in cfg.data.samples],
    }
    return r.estimator.save(path, data=data, metadata={"metrics": r.metrics, "model_name": r.name})


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

    def apply(self, bundle: Path, inputs: list[str], out: Path, **options: Any) -> dict[str, Any]:
        from fivesigma.tasks.classify.apply import apply_bundle

        info = apply_bundle(
            bundle,
            inputs,
            out,
            tree=options.get("tree"),
            chunk_size=options.get("chunk_size") or 200_000,
        )
        info["message"] = (
            f"scored {info['events']} events from {info['files']} file(s) "
            f"({info['selected']} pass the selection) -> {info['out']}"
        )
        return info

    def summary(self, result: Result) -> Any:
        from rich.console import Group
        from rich.table import Table

        m = result.metrics
        table = Table(title="Models ranked by test AUC")
        for col in ("model", "kind", "AUC test", "AUC train", "1/eB@eS=0.5", "KS p S/B", "Z exp."):
            table.add_column(
                col, justify="left" if col in ("model", "kind") else "right", no_wrap=col == "model"
            )
        z = m["stats"]["z_expected"]
        for name, row in sorted(m["models"].items(), key=lambda kv: -kv[1]["auc_test"]):
            rej = row["rejection_at_eff_s"].get("0.5")
            table.add_row(
                name + (" *" if name == m["best_model"] else ""),
                row["kind"],
                f"{row['auc_test']:.4f}",
                f"{row['auc_train']:.4f}",
                "-" if rej is None else f"{rej:.1f}",
                f"{row['ks_pvalue_signal']:.2f}/{row['ks_pvalue_background']:.2f}",
                f"{z:.2f}" if name == m["best_model"] else "",
            )
        st = m["stats"]
        band = st["cls_band"]
        return Group(
            table,
            f"best model: {m['best_model']}  expected Z = {z:.2f} sigma, expected 95% CLs limit "
            f"on mu = {st['cls_upper_limit_expected']:.3f} [-1s {band['-1']:.3f}, "
            f"+1s {band['+1']:.3f}]",
            f"report: {result.files['report']}   metrics: {result.files['metrics']}",
        )

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
