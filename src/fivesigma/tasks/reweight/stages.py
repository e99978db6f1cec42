"""The reweight task's stages: samples, the reweighters, weights, closure.

- :func:`load_samples` the source, the target (generator and detector level) and the
  DCTR training samples, split into train and test halves;
- :func:`fit_classifier` the classifier (target 1 against source 0, equal total weight per
  class) whose probability gives ``w = p / (1 - p)``;
- :func:`fit_dctr` the same with alpha_s as an input, trained on several values;
- :func:`fit_gbreweighter` hep_ml's GBReweighter;
- :func:`judge` the closure of one set of weights: chi2/ndf and KS per feature at both
  levels, the two-sample AUC, the effective sample size, clipping.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fivesigma.errors import DataError, ModelError
from fivesigma.metrics import reweighting as rw
from fivesigma.tasks.reweight.config import ReweightSettings

__all__ = [
    "Samples",
    "fit_classifier",
    "fit_dctr",
    "fit_gbreweighter",
    "judge",
    "load_samples",
    "two_sample_auc",
]

THETA = "alpha_s"


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


@dataclass
class Part:
    """One sample split into train and test rows: ``{feature: array}`` per level."""

    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    reco_test: dict[str, np.ndarray] | None = None
    n: int = 0


@dataclass
class Samples:
    """Everything the reweighters are trained and judged on."""

    features: list[str]
    check_features: list[str]
    source: Part
    target: Part
    grid: dict[float, Part] = field(default_factory=dict)
    description: dict[str, Any] = field(default_factory=dict)

    @property
    def all_features(self) -> list[str]:
        return [*self.features, *self.check_features]


def matrix(table: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    """The (n, len(names)) float matrix of ``names``."""
    return np.column_stack([np.asarray(table[n], dtype=np.float64) for n in names])


def _split(table: dict[str, np.ndarray], test_fraction: float, seed: int,
           reco: dict[str, np.ndarray] | None = None) -> Part:  # fmt: skip
    n = len(next(iter(table.values())))
    order = np.random.default_rng(seed).permutation(n)
    n_test = round(test_fraction * n)
    test, train = order[:n_test], order[n_test:]
    return Part(
        train={k: v[train] for k, v in table.items()},
        test={k: v[test] for k, v in table.items()},
        reco_test={k: v[test] for k, v in reco.items()} if reco is not None else None,
        n=n,
    )


def _levels(sample: dict[str, np.ndarray]) -> tuple[dict, dict]:
    gen = {k[4:]: v for k, v in sample.items() if k.startswith("gen_")}
    reco = {k[5:]: v for k, v in sample.items() if k.startswith("reco_")}
    return gen, reco


def _check_finite(table: dict[str, np.ndarray], what: str) -> None:
    for name, col in table.items():
        bad = int(np.sum(~np.isfinite(col)))
        if bad:
            raise DataError(
                f"{what} feature {name!r} has {bad} NaN or infinite value(s) of {col.size}; "
                "the reweighters need finite numbers (select or impute them first)"
            )


def _user_samples(s: ReweightSettings) -> tuple[dict, dict, list[str]]:
    from fivesigma.io.events import expand_files, list_columns
    from fivesigma.tasks.reweight.data import read_user_sample

    f = s.files or {}
    src_files = expand_files(f["source"])
    tgt_files = expand_files(f["target"])
    src_cols = list_columns(src_files[0], f["tree"])
    tgt_cols = list_columns(tgt_files[0], f["tree"])
    if s.features is None:
        only_s = sorted(set(src_cols) - set(tgt_cols))
        only_t = sorted(set(tgt_cols) - set(src_cols))
        if only_s or only_t:
            raise DataError(
                f"source and target have different feature sets: only in source "
                f"[{', '.join(only_s[:6])}], only in target [{', '.join(only_t[:6])}]; give "
                "the same columns, or name the common ones in features:"
            )
        features = [c for c in src_cols if c not in s.check_features]
    else:
        features = list(s.features)
    names = [*features, *s.check_features]
    source = read_user_sample([str(p) for p in src_files], f["tree"], names, "source")
    target = read_user_sample([str(p) for p in tgt_files], f["tree"], names, "target")
    return source, target, features


def load_samples(s: ReweightSettings, progress: bool) -> Samples:
    """The source, target and DCTR samples, split (the test halves judge the weights)."""
    if not s.builtin:
        source, target, features = _user_samples(s)
        _check_finite(source, "source")
        _check_finite(target, "target")
        desc = {"source": s.files["source"], "target": s.files["target"]}  # type: ignore[index]
        return Samples(
            features=features,
            check_features=list(s.check_features),
            source=_split(source, s.test_fraction, s.seed),
            target=_split(target, s.test_fraction, s.seed + 1),
            description=desc,
        )
    from fivesigma.tasks.reweight.data import shower_sample

    def sample(alpha: float, events: int) -> dict[str, np.ndarray]:
        _say(progress, f"sample: FSR alpha_s {alpha:g}, {events} Pythia events (cached)")
        return shower_sample(alpha, events, s.seed, pthat_min=s.pthat_min,
                             jet_pt_min=s.jet_pt_min, jobs=s.jobs, progress=progress)  # fmt: skip

    src_gen, src_reco = _levels(sample(s.source_alpha_s, s.source_events))
    tgt_gen, tgt_reco = _levels(sample(s.target_alpha_s, s.target_events))
    for what, table in (("source", src_gen), ("target", tgt_gen)):
        if len(table["pt"]) == 0:
            raise DataError(f"the {what} sample has no event with a jet above the threshold")
    grid = {}
    for k, alpha in enumerate(s.dctr_alpha_s):
        gen, _ = _levels(sample(alpha, s.dctr_events))
        grid[alpha] = _split(gen, 0.0, s.seed + 10 + k)
    return Samples(
        features=list(s.features or []),
        check_features=list(s.check_features),
        source=_split(src_gen, s.test_fraction, s.seed, src_reco),
        target=_split(tgt_gen, s.test_fraction, s.seed + 1, tgt_reco),
        grid=grid,
        description={
            "generator": "Pythia8 HardQCD:all 13 TeV, MPI off, hadronisation on",
            "pthat_min": s.pthat_min,
            "jet": f"leading anti-kT R=0.4 jet, |eta| < 2.5, pT > {s.jet_pt_min:g} GeV",
            "source_alpha_s": s.source_alpha_s,
            "target_alpha_s": s.target_alpha_s,
            "source_jets": len(src_gen["pt"]),
            "target_jets": len(tgt_gen["pt"]),
            "dctr_jets": {f"{a:g}": p.n for a, p in grid.items()},
        },
    )


# -- the reweighters -------------------------------------------------------------------


def _mlp(s: ReweightSettings, seed: int) -> Any:
    from fivesigma.tasks.reweight.model import ReweighterMLP

    return ReweighterMLP(
        hidden=tuple(s.hidden),
        epochs=s.epochs,
        batch_size=s.batch_size,
        lr=s.lr,
        early_stopping_patience=s.patience,
        class_weight="balanced",
        valid_fraction=0.2,
        seed=seed,
        progress=False,
    )


def fit_classifier(samples: Samples, s: ReweightSettings) -> Any:
    """The MLP that tells target (1) from source (0) on the seen features."""
    f = samples.features
    x0, x1 = matrix(samples.source.train, f), matrix(samples.target.train, f)
    x = np.vstack([x0, x1])
    y = np.r_[np.zeros(len(x0), np.int64), np.ones(len(x1), np.int64)]
    return _mlp(s, s.seed).fit(x, y, feature_names=f)


def fit_dctr(samples: Samples, s: ReweightSettings) -> Any:
    """DCTR: target events at each alpha_s of the grid (1) against source events given
    the same alpha_s as an input (0); one network for all values."""
    f = samples.features
    src = matrix(samples.source.train, f)
    rng = np.random.default_rng(s.seed + 7)
    xs, ys = [], []
    for alpha, part in samples.grid.items():
        x1 = matrix(part.train, f)
        pick = rng.choice(len(src), size=min(len(src), len(x1)), replace=False)
        for x, label in ((src[pick], 0), (x1, 1)):
            xs.append(np.column_stack([x, np.full(len(x), alpha)]))
            ys.append(np.full(len(x), label, np.int64))
    return _mlp(s, s.seed + 1).fit(np.vstack(xs), np.concatenate(ys), feature_names=[*f, THETA])


def fit_gbreweighter(samples: Samples, s: ReweightSettings) -> Any:
    """hep_ml's GBReweighter from source to target on the seen features."""
    from fivesigma.core import extras

    extras.hep_ml()
    from hep_ml.reweight import GBReweighter

    f = samples.features
    gb = GBReweighter(**s.gb_params, gb_args={"subsample": 0.8, "random_state": s.seed})
    gb.fit(matrix(samples.source.train, f), matrix(samples.target.train, f))
    return gb


def predict_weights(model: Any, x: np.ndarray, alpha: float | None = None) -> np.ndarray:
    """Raw (unclipped) weights of ``model`` on ``x``: p / (1 - p) of a classifier (with
    ``alpha`` appended for DCTR), or GBReweighter's own."""
    if hasattr(model, "predict_weights"):
        w = np.asarray(model.predict_weights(x), dtype=np.float64)
    else:
        if alpha is not None:
            x = np.column_stack([x, np.full(len(x), alpha)])
        p = np.asarray(model.decision_function(x), dtype=np.float64)
        if np.any(np.isnan(p)):
            raise ModelError(f"the classifier gave {int(np.isnan(p).sum())} NaN probabilities")
        w = rw.classifier_weights(p)
    return w


# -- judging ---------------------------------------------------------------------------


def two_sample_auc(x0: np.ndarray, x1: np.ndarray, w0: np.ndarray | None, seed: int) -> float:
    """AUC of a fresh BDT that separates the (weighted) source ``x0`` from ``x1``: trained
    on one half of each, evaluated on the other half with the weights.  0.5 means the
    samples cannot be told apart."""
    from fivesigma.estimators.tabular import BDTClassifier
    from fivesigma.metrics import auc

    w0 = np.ones(len(x0)) if w0 is None else np.asarray(w0, dtype=np.float64)
    rng = np.random.default_rng(seed)
    h0 = rng.permutation(len(x0)) < len(x0) // 2
    h1 = rng.permutation(len(x1)) < len(x1) // 2
    w1 = np.ones(len(x1)) * (w0.sum() / len(x1))  # equal total weight per class
    x = np.vstack([x0[h0], x1[h1]])
    y = np.r_[np.zeros(h0.sum(), np.int64), np.ones(h1.sum(), np.int64)]
    w = np.r_[w0[h0], w1[h1]]
    bdt = BDTClassifier(n_estimators=150, max_depth=3, learning_rate=0.1,
                        early_stopping_rounds=None, n_jobs=1, seed=seed)  # fmt: skip
    bdt.fit(x, y, sample_weight=w)
    xt = np.vstack([x0[~h0], x1[~h1]])
    yt = np.r_[np.zeros((~h0).sum(), np.int64), np.ones((~h1).sum(), np.int64)]
    wt = np.r_[w0[~h0], w1[~h1]]
    return float(auc(yt, bdt.decision_function(xt), wt))


def judge(
    samples: Samples,
    weights: np.ndarray | None,
    s: ReweightSettings,
    target: Any = None,
    auc_seed: int = 0,
) -> dict[str, Any]:
    """Closure of ``weights`` on the source test rows against ``target`` (a Part; default
    the target): per-feature chi2/ndf and KS at generator level (seen and unseen
    features) and, when there, at detector level; the two-sample AUC; the ESS."""
    tgt = target or samples.target
    names = samples.all_features
    src = samples.source.test
    gen = rw.closure(src, tgt.test, weights, None, names, s.bins)
    out: dict[str, Any] = {
        "closure": gen,
        "max_chi2_ndf": max(v["chi2_ndf"] for v in gen.values()),
        "max_chi2_ndf_seen": max(gen[n]["chi2_ndf"] for n in samples.features),
        "auc": two_sample_auc(matrix(src, names), matrix(tgt.test, names), weights, auc_seed),
        "ess": rw.effective_sample_size(
            weights if weights is not None else np.ones(len(src[names[0]]))
        ),
        "n_source": len(src[names[0]]),
    }
    out["ess_fraction"] = out["ess"] / out["n_source"]
    if samples.source.reco_test is not None and tgt.reco_test is not None:
        reco = rw.closure(samples.source.reco_test, tgt.reco_test, weights, None, names, s.bins)
        out["closure_detector"] = reco
        out["max_chi2_ndf_detector"] = max(v["chi2_ndf"] for v in reco.values())
    return out


def clipped(raw: np.ndarray, s: ReweightSettings, name: str, progress: bool) -> tuple:
    """Weights capped as configured, normalised to the number of events, and the
    clipping report; a line on stderr whenever anything was clipped."""
    w, info = rw.clip_weights(raw, s.max_weight, s.clip_quantile)
    if info["n_clipped"]:
        # printed whatever the progress setting: clipping is never silent
        print(
            f"{name}: clipped {info['n_clipped']} of {w.size} weights "
            f"({100 * info['fraction_clipped']:.2f}%) at {info['max_weight']:.3g}; largest was "
            f"{info['largest_before']:.3g}, {100 * info['weight_fraction_removed']:.2f}% of the "
            "total weight removed",
            file=sys.stderr,
            flush=True,
        )
    w = w * (w.size / w.sum()) if w.sum() > 0 else w
    return w, info


def calibration(model: Any, samples: Samples, alpha: float | None = None,
                target: Any = None) -> dict[str, Any]:  # fmt: skip
    """Reliability curve of the classifier on test rows (source 0, target 1, equal total
    weight per class, as in training)."""
    tgt = target or samples.target
    f = samples.features
    x0, x1 = matrix(samples.source.test, f), matrix(tgt.test, f)
    if alpha is not None:
        x0 = np.column_stack([x0, np.full(len(x0), alpha)])
        x1 = np.column_stack([x1, np.full(len(x1), alpha)])
    p = np.asarray(model.decision_function(np.vstack([x0, x1])), dtype=np.float64)
    y = np.r_[np.zeros(len(x0)), np.ones(len(x1))]
    w = np.r_[np.full(len(x0), 0.5 / len(x0)), np.full(len(x1), 0.5 / len(x1))]
    return rw.reliability_curve(p, y, w, bins=10)
