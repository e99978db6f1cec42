"""Distillation: a formula for a classifier's score, and how much of its AUC it keeps.

The classifier is a torch MLP trained here (the project's ``mlp`` estimator and its
Trainer) on a few high-level features, or a classify bundle given by the user.  Its
log-odds ``ln(p / (1 - p))`` (clipped to ``±clip``) on training events is the target of a
symbolic-regression search in the formula's inputs (e.g. m4l, mZ1, mZ2 of the higgs4l
sample).  Every member of the search's Pareto front is scored on the validation split;
the chosen formula is the simplest one that keeps ``target_kept`` of the network's
``AUC - 0.5`` there (the engine's own choice when none does), and its numbers are then
measured on the test split:

    kept = (AUC_formula - 0.5) / (AUC_network - 0.5)

AUCs are event-weighted (the physics weights) with the unweighted ones beside them;
``sklearn.metrics.roc_auc_score`` is the reference the project's ``metrics.auc`` is
checked against in the tests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.core import extras
from fivesigma.errors import ConfigError, DataError, ModelError
from fivesigma.tasks.symbolic.engine import Candidate, EngineSettings, search
from fivesigma.tasks.symbolic.units import parse_unit

__all__ = ["DistillEvents", "DistillResult", "distill", "evaluate", "load_events"]


@dataclass
class DistillEvents:
    """Events for the distillation: named flat columns, labels, weights, split codes."""

    columns: dict[str, np.ndarray]
    label: np.ndarray
    weight: np.ndarray
    split: np.ndarray  # 0 train, 1 validation, 2 test
    source: str = ""

    def matrix(self, names: list[str]) -> np.ndarray:
        missing = [n for n in names if n not in self.columns]
        if missing:
            raise DataError(
                f"the distillation events have no column(s) {', '.join(missing)}; they have "
                f"{', '.join(sorted(self.columns))}"
            )
        return np.column_stack([np.asarray(self.columns[n], dtype=float) for n in names])


@dataclass
class _View:
    """What the data layer reads from a config: a data section, generate, seed, paths."""

    data: Any
    generate: Any
    seed: int
    base_dir: Path

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p


def load_events(
    data: Any, generate: Any, seed: int, base_dir: Path, columns: list[str], progress: bool
) -> DistillEvents:
    """Read (generating the built-in sample first if asked) the events with ``columns``."""
    from fivesigma.data import load_dataset
    from fivesigma.data.prepare import generated_directory

    data = data.model_copy(update={"features": list(dict.fromkeys(columns))})
    view = _View(data, generate, seed, Path(base_dir))
    ds = load_dataset(
        view, progress=progress, generated_dir=generated_directory(view, progress=progress)
    )
    labels = set(np.unique(ds.label).tolist())
    if labels != {0, 1}:
        raise DataError(
            f"distillation needs signal (label 1) and background (label 0) events; found "
            f"labels {sorted(labels)}"
        )
    for code, name in ((0, "train"), (2, "test")):
        if not np.any(ds.split == code):
            raise DataError(f"distillation: the data split leaves no {name} events")
    X = ds.features(list(data.features))
    return DistillEvents(
        {n: X[:, j] for j, n in enumerate(data.features)},
        np.asarray(ds.label, dtype=int),
        np.asarray(ds.weight, dtype=float),
        np.asarray(ds.split, dtype=int),
        source=", ".join(ds.sample_names),
    )


def evaluate(expr: Any, names: list[str], X: np.ndarray) -> np.ndarray:
    """A SymPy expression of ``names`` on the rows of ``X`` (numpy; NaN where undefined)."""
    sp = extras.sympy()
    fn = sp.lambdify([sp.Symbol(n, real=True) for n in names], expr, "numpy")
    with np.errstate(all="ignore"):
        v = np.broadcast_to(np.asarray(fn(*X.T), dtype=float), (len(X),)).copy()
    return v


def _auc(label: np.ndarray, score: np.ndarray, weight: np.ndarray | None) -> float:
    """The (weighted) ROC AUC; a score that is not finite ranks lowest."""
    from fivesigma.metrics import auc

    s = np.where(np.isfinite(score), score, -np.inf)
    if not np.isfinite(s).all():
        lo = np.min(s[np.isfinite(s)]) if np.isfinite(s).any() else 0.0
        s = np.where(np.isfinite(s), s, lo - 1.0)
    return float(auc(label, s, weight))


def _kept(a_formula: float, a_network: float) -> float:
    return (a_formula - 0.5) / (a_network - 0.5) if a_network != 0.5 else float("nan")


@dataclass
class DistillResult:
    network: dict[str, Any]
    names: list[str]
    units: dict[str, str]
    front: list[Candidate]
    chosen: Candidate
    auc: dict[str, float]
    kept: float
    kept_unweighted: float
    front_rows: list[dict[str, Any]]
    seconds: dict[str, float]
    engine: dict[str, Any]
    curves: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "inputs": self.names,
            "units": self.units,
            "formula": str(self.chosen.expr),
            "complexity": self.chosen.complexity,
            "nmse_logit": self.chosen.nmse,
            "units_check": self.chosen.units,
            "auc": self.auc,
            "kept": self.kept,
            "kept_unweighted": self.kept_unweighted,
            "front": self.front_rows,
            "seconds": self.seconds,
            "engine": self.engine,
        }


def _network(
    events: DistillEvents,
    bundle: Path | None,
    features: list[str],
    hidden: list[int],
    epochs: int,
    lr: float,
    seed: int,
) -> tuple[Any, list[str], dict[str, Any]]:
    """The classifier: loaded from a classify bundle, or an MLP trained on the train split
    (early stopping on the validation split)."""
    if bundle is not None:
        from fivesigma.core.bundle import bundle_kind
        from fivesigma.core.registry import BUNDLE_KINDS

        kind = bundle_kind(bundle)
        if kind not in BUNDLE_KINDS.names(task="classify"):
            raise ModelError(
                f"distill.bundle '{bundle}' is a {kind!r} bundle; accepted: a classify model "
                f"({', '.join(BUNDLE_KINDS.names(task='classify'))})"
            )
        model = BUNDLE_KINDS.get(kind)(bundle)
        names = [str(n) for n in model.feature_names_in_]
        return model, names, {"source": str(bundle), "kind": kind, "features": names}
    from fivesigma.estimators.tabular import MLPClassifier

    train, valid = events.split == 0, events.split == 1
    X = events.matrix(features)
    model = MLPClassifier(
        hidden=tuple(hidden), epochs=epochs, lr=lr, seed=seed, progress=False, num_threads=1
    )
    vset = (X[valid], events.label[valid], events.weight[valid]) if valid.any() else None
    model.fit(
        X[train],
        events.label[train],
        events.weight[train],
        valid=vset,
        feature_names=list(features),
    )
    info = {
        "source": "trained here: mlp",
        "kind": "mlp",
        "features": list(features),
        "hidden": list(hidden),
        "epochs": epochs,
        "train_events": int(train.sum()),
    }
    return model, list(features), info


def distill(
    events: DistillEvents,
    *,
    inputs: list[str],
    units: dict[str, str],
    operators: str,
    engine: EngineSettings,
    seed: int,
    points: int,
    clip: float,
    target_kept: float,
    bundle: Path | None = None,
    features: list[str] | None = None,
    hidden: list[int] | None = None,
    epochs: int = 30,
    lr: float = 2e-3,
) -> DistillResult:
    """Train (or load) the classifier, fit a formula to its log-odds, measure the AUCs."""
    t0 = time.perf_counter()
    model, net_names, info = _network(
        events, bundle, list(features or inputs), list(hidden or [64, 64]), epochs, lr, seed
    )
    seconds = {"network": time.perf_counter() - t0}
    p = np.asarray(model.decision_function(events.matrix(net_names)), dtype=float)
    eps = np.exp(-clip) / (1 + np.exp(-clip))
    pc = np.clip(p, eps, 1 - eps)
    logit = np.log(pc / (1 - pc))

    bad = [n for n in inputs if n not in units]
    dims = {n: parse_unit(units.get(n, "1")) for n in inputs}
    del bad
    X = events.matrix(inputs)
    train = np.flatnonzero(events.split == 0)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(train, size=min(points, len(train)), replace=False))
    if np.ptp(logit[pick]) == 0:
        raise ModelError("the network's score is constant on the training events")
    t1 = time.perf_counter()
    res = search(X[pick], logit[pick], inputs, dims, operators, seed, engine)
    seconds["search"] = time.perf_counter() - t1

    valid = events.split == 1
    if not valid.any():
        valid = events.split == 0
    test = events.split == 2
    y, w = events.label, events.weight
    a_net_valid = _auc(y[valid], p[valid], w[valid])
    rows = []
    chosen = None
    for c in res.front:
        f = evaluate(c.expr, inputs, X)
        kept_valid = _kept(_auc(y[valid], f[valid], w[valid]), a_net_valid)
        a_test = _auc(y[test], f[test], w[test])
        rows.append(
            {
                "formula": str(c.expr),
                "complexity": c.complexity,
                "nmse_logit": c.nmse,
                "units": c.units,
                "kept_validation": kept_valid,
                "auc_test": a_test,
            }
        )
        if chosen is None and kept_valid >= target_kept:
            chosen = c
    if chosen is None:
        chosen = res.best
    f = evaluate(chosen.expr, inputs, X)
    a_net, a_f = _auc(y[test], p[test], w[test]), _auc(y[test], f[test], w[test])
    u_net, u_f = _auc(y[test], p[test], None), _auc(y[test], f[test], None)
    auc = {
        "network": a_net,
        "formula": a_f,
        "network_unweighted": u_net,
        "formula_unweighted": u_f,
        "network_validation": a_net_valid,
    }
    for r in rows:
        r["kept_test"] = _kept(r["auc_test"], a_net)
        r["chosen"] = r["formula"] == str(chosen.expr)
    info["test_events"] = int(test.sum())
    curves = _curves(y[test], p[test], f[test], w[test], logit[pick], f[pick], X[pick], inputs)
    seconds["total"] = time.perf_counter() - t0
    return DistillResult(
        network=info,
        names=list(inputs),
        units={n: units.get(n, "1") for n in inputs},
        front=res.front,
        chosen=chosen,
        auc=auc,
        kept=_kept(a_f, a_net),
        kept_unweighted=_kept(u_f, u_net),
        front_rows=rows,
        seconds=seconds,
        engine=res.engine,
        curves=curves,
    )


def _curves(
    y: np.ndarray,
    p_net: np.ndarray,
    f: np.ndarray,
    w: np.ndarray,
    logit_fit: np.ndarray,
    f_fit: np.ndarray,
    X_fit: np.ndarray,
    names: list[str],
) -> dict[str, Any]:
    """ROC curves (test) and the fitted points, for the report."""
    from fivesigma.metrics import roc_curve

    out: dict[str, Any] = {}
    for key, s in (("network", p_net), ("formula", f)):
        s = np.where(np.isfinite(s), s, np.nanmin(s[np.isfinite(s)]) - 1.0)
        fpr, tpr, _ = roc_curve(y, s, w)
        out[key] = (np.asarray(fpr), np.asarray(tpr))
    out["fit"] = {"logit": logit_fit, "formula": f_fit, "X": X_fit, "names": names}
    return out


def check_inputs(inputs: list[str], features: list[str], bundle: str | None) -> None:
    """Config checks that read no data."""
    dup = [n for n in inputs if inputs.count(n) > 1]
    if dup:
        raise ConfigError(f"distill.inputs: {dup[0]!r} is named twice")
    if bundle is None:
        extra = [n for n in inputs if n not in features]
        if extra:
            raise ConfigError(
                f"distill.inputs: {', '.join(extra)} not among distill.features "
                f"({', '.join(features)}); the formula is fitted to the network's inputs"
            )
