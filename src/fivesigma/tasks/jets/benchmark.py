"""``fivesigma benchmark top``: every tagger on the same jets, the table the papers print.

For the top-tagging task the signal is top jets and the background QCD jets. Data come
from the built-in Pythia8 + FastJet generator (cached) or, with ``data=``, from the Top
Quark Tagging Reference Dataset (``train.h5``/``val.h5``/``test.h5`` in pandas HDF5
format) or any file :func:`fivesigma.io.jets.read_jets` reads.

Each tagger is trained ``seeds`` times (different seeds) on the train split, early-stopped
on the validation split and evaluated on the test split:

- accuracy (argmax of the class probabilities),
- AUC,
- background rejection 1/eps_B at eps_S = 0.5 and 0.3, where eps_B is read off the test
  ROC curve by linear interpolation between the two points that bracket eps_S
  (:func:`fivesigma.metrics.rejection_at_eff_s`) -- the papers' definition,
- the number of trainable parameters and the inference time per jet on this machine
  (batched, single process, timed on the scored test predictions after a warm-up).

Numbers are reported as mean +- std over the seeds (std is 0 for one seed).  The
classical baseline is a BDT (xgboost) on jet observables: mass, pT, number of
constituents and the N-subjettiness ratios tau21 and tau32 (with tau1..3).

Outputs in ``out``: ``benchmark.md`` (the table), ``metrics.json`` (everything) and
``report.html`` (table, ROC curves as rejection vs efficiency on a log scale, score
distributions), each written atomically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma import metrics as M
from fivesigma.core.files import atomic_file, check_writable_dir, ensure_writable_dir
from fivesigma.errors import ConfigError, DataError, close_matches
from fivesigma.physics.labels import FLAVOUR, TOP_VS_QCD

__all__ = ["TAGGER_ORDER", "BenchmarkSettings", "run_benchmark"]

TAGGER_ORDER = ("bdt", "cnn1d", "pfn", "particlenet", "part")


@dataclass(frozen=True)
class Task:
    """A benchmark task: which generated processes, and how generator labels map to classes.

    ``classes`` maps a class index to its name; ``codes`` maps generator label codes
    (:data:`fivesigma.io.jets.CLASS_NAMES`) to class indices; jets with other codes
    are not used.  ``background`` is the generated process of a binary task's class 0
    (what ``test_background`` adds), None for multi-class tasks.
    """

    classes: tuple[str, ...]
    codes: dict[int, int]
    processes: tuple[str, ...]
    description: str
    background: str | None = None


TASKS: dict[str, Task] = {
    "top": Task(*TOP_VS_QCD, ("top", "qcd"), "top vs QCD jets", "qcd"),
    "flavour": Task(
        *FLAVOUR,
        ("qcd", "qcd_bb", "qcd_cc", "top"),
        "5 classes: b, c, light-quark, gluon and top jets (one-vs-rest numbers per class)",
    ),
}


#: epochs of each tagger in the quick presets (all early-stopped on the validation split).
#: Top: chosen on its jets, 4 to 8 seeds per setting (GPU scan, bench/scan_quick_epochs.py
#: repeats it), mean 1/eps_B at eps_S = 0.3: ParticleNet 8 epochs 451 +- 105, 15 (which
#: early stopping ends after 12-15) 516 +- 87; ParT 10 epochs 370 +- 117, 20 (ended after
#: 11-18) 349 +- 23, and 10 epochs 340 +- 65 (8 seeds) once its pair batch norms counted
#: each pair once; CNN 15 epochs 174, 30: 170.  The PFN, the baseline the others must
#: beat, keeps 30: with 15 it drops from 199 to 154.  Flavour: not scanned.
_QUICK_EPOCHS = {
    "top": {"cnn1d": 15, "pfn": 30, "particlenet": 8, "part": 10},
    "flavour": {"cnn1d": 30, "pfn": 30, "particlenet": 15, "part": 20},
}


@dataclass
class BenchmarkSettings:
    """What to run; :meth:`quick` and :meth:`full` give the two documented presets."""

    task: str = "top"
    data: list[str] | None = None
    seeds: int = 1
    taggers: tuple[str, ...] = TAGGER_ORDER
    jets_per_class: int = 20_000
    max_particles: int = 100
    frame: str = "principal"
    #: particle features of the networks; None: the richest set the data carry
    #: (:func:`fivesigma.tasks.jets.features.default_features`)
    features: tuple[str, ...] | None = None
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    max_train_jets: int | None = None
    #: train, validation and test fractions of data without its own split (generated jets)
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    #: extra generated background jets (seed ``seed + 1``) added to the test split only: a
    #: rejection R at fixed eps_S counts n_bkg/R test background jets, so measuring R of
    #: several hundred needs thousands of them, and background is the cheaper process
    test_background: int = 0
    seed: int = 1
    jobs: int | None = None
    #: where the networks train and predict: cpu, cuda, cuda:N or auto (the BDT: CPU)
    device: str = "cpu"
    progress: bool = True
    tagger_params: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def quick(cls, **kw: Any) -> BenchmarkSettings:
        """Top: about 12 minutes on 2 CPU cores (6 generating jets), 6 per seed once cached; flavour 7.

        4000 jets per class split 50/10/40, so the test split that every number rests on
        is twice the default's share, plus 6000 generated QCD jets in the test split only
        (``test_background``: about 7600 test background jets, so a rejection of 400 at
        eps_S = 0.3 counts 19 of them rather than 4), up to 100 constituents and
        ParticleNet with k=16; the flavour task: 3000 per class, 60/20/20, 48
        constituents.  Epochs (``_QUICK_EPOCHS``, all early-stopped on the validation
        split): top 8 for ParticleNet, 10 for ParT, 15 for the CNN and 30 for the PFN;
        flavour 15 for ParticleNet, 20 for ParT and 30 for the CNN and PFN.

        Small batches and a higher learning rate give the networks enough optimiser steps
        on so few jets.  An explicit ``epochs`` applies to every tagger.
        """
        flavour = kw.get("task") == "flavour"
        params: dict[str, dict[str, Any]] = {}
        if "epochs" not in kw:
            budgets = _QUICK_EPOCHS["flavour" if flavour else "top"]
            params = {name: {"epochs": n} for name, n in budgets.items()}
        if not flavour:
            # The full ParticleNet's k=16 neighbours rather than the Lite default's 7:
            # on this preset's sample cut to 48 constituents (2 seeds) 1/eps_B at
            # eps_S = 0.3 went from 313 to 402; with 100 constituents k=16 gives 467 +- 42.
            pn = params.setdefault("particlenet", {})
            pn["model_params"] = {"k": 16}
        for name, extra in kw.pop("tagger_params", {}).items():
            params[name] = {**params.get(name, {}), **extra}
        # Binary rejections need test background jets most, and all of each jet's
        # constituents: cut to 48, 80% of the top and 47% of the QCD jets lose some, and
        # the PFN then leads ParticleNet and ParT at eps_S = 0.3 (494 against 313 and
        # 222); with 100 (as the full preset and the papers) the order is the papers'.
        # The 5-class flavour task (four generated processes) keeps 3000 per class, the
        # default split and 48 constituents, so its quick run stays near 7 minutes.
        sizes = (
            {"jets_per_class": 3000, "max_particles": 48}
            if flavour
            else {
                "jets_per_class": 4000,
                "split": (0.5, 0.1, 0.4),
                "test_background": 6000,
                "max_particles": 100,
            }
        )
        if kw.get("data"):
            # the files' own jets and split: extra generated test jets do not belong there
            sizes.pop("test_background", None)
        return cls(
            **{
                **sizes,
                "epochs": 8,
                "batch_size": 64,
                "lr": 2e-3,
                "tagger_params": params,
                **kw,
            }
        )

    @property
    def trains_networks(self) -> bool:
        """Whether any tagger besides the BDT (which always runs on the CPU) is asked for."""
        return any(t != "bdt" for t in self.taggers)

    @classmethod
    def full(cls, **kw: Any) -> BenchmarkSettings:
        return cls(**kw)

    def check(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(
                f"unknown benchmark task {self.task!r}; accepted: {', '.join(TASKS)} "
                f"({close_matches(self.task, TASKS)})"
            )
        unknown = [t for t in self.taggers if t not in TAGGER_ORDER]
        if unknown:
            raise ConfigError(
                f"unknown tagger {unknown[0]!r}; accepted: {', '.join(TAGGER_ORDER)} "
                f"({close_matches(unknown[0], TAGGER_ORDER)})"
            )
        from fivesigma.tasks.jets.features import FRAMES

        if self.frame not in FRAMES:
            raise ConfigError(
                f"unknown jet frame {self.frame!r}; accepted: {', '.join(FRAMES)} "
                f"({close_matches(str(self.frame), FRAMES)})"
            )
        if self.seeds < 1:
            raise ConfigError(f"--seeds must be at least 1, got {self.seeds}")
        split = tuple(self.split)
        if len(split) != 3 or min(split) <= 0 or abs(sum(split) - 1.0) > 1e-9:
            raise ConfigError(
                f"benchmark split must be three positive fractions (train, validation, "
                f"test) summing to 1, got {self.split!r}"
            )
        if (
            not isinstance(self.max_particles, int)
            or isinstance(self.max_particles, bool)
            or self.max_particles < 1
        ):
            raise ConfigError(
                f"max_particles must be a number of constituents >= 1 (the quick top preset "
                f"uses 100), got {self.max_particles!r}"
            )
        if not isinstance(self.test_background, int) or self.test_background < 0:
            raise ConfigError(
                f"test_background must be a number of jets >= 0, got {self.test_background!r}"
            )
        if self.test_background and self.data:
            raise ConfigError(
                "test_background adds generated jets to a generated sample; with --data the "
                "test split is the files' own (drop --test-background)"
            )
        if self.test_background and TASKS[self.task].background is None:
            raise ConfigError(
                f"test_background needs a binary task with one background process; "
                f"{self.task!r} has classes {', '.join(TASKS[self.task].classes)} (use task top)"
            )
        if self.device != "cpu" and self.trains_networks:
            from fivesigma.training.trainer import resolve_device

            resolve_device(self.device)  # a missing GPU fails here, before any generation
        # every tagger's parameters, built as the training will build them, before any
        # generation: a bad value is one line naming tagger_params.<tagger>.<parameter>
        from fivesigma.errors import ModelError
        from fivesigma.estimators import make_estimator

        unknown = [t for t in self.tagger_params if t not in TAGGER_ORDER]
        if unknown:
            raise ConfigError(
                f"tagger_params: unknown tagger {str(unknown[0])[:60]!r}; accepted: "
                f"{', '.join(TAGGER_ORDER)} ({close_matches(str(unknown[0])[:100], TAGGER_ORDER)})"
            )
        seed = self.seed + 1000 * (self.seeds - 1)  # the largest seed a run uses
        for name in dict.fromkeys([*self.taggers, *self.tagger_params]):
            given = self.tagger_params.get(name, {})
            if not isinstance(given, dict):
                raise ConfigError(
                    f"tagger_params.{name} must be a mapping of parameters, got "
                    f"{type(given).__name__}"
                )
            if name == "bdt":
                base: dict[str, Any] = {"n_estimators": 400, "max_depth": 4, "seed": seed}
            else:
                base = {
                    "epochs": self.epochs,
                    "batch_size": self.batch_size,
                    "lr": self.lr,
                    "seed": seed,
                    "progress": self.progress,
                    "device": self.device,
                }
            try:
                make_estimator(name, **{**base, **given})
            except ModelError as err:
                where = f"tagger_params.{name}" if name in self.tagger_params else "benchmark"
                raise ConfigError(f"{where}: {err}") from None


# --------------------------------------------------------------------------------------
# Data


def _split_codes(n: int, seed: int, fractions: tuple[float, float, float]) -> np.ndarray:
    """0 train, 1 validation, 2 test in ``fractions`` from a hash of the jet index."""
    from fivesigma.data.split import split_codes

    return split_codes(np.arange(n, dtype=np.int64), seed=seed, fractions=tuple(fractions))


def load_task_jets(settings: BenchmarkSettings):
    """(JetSample, class indices, split codes) for the task's classes.

    With ``data``, the split the files give is used as it is (the published
    ``train``/``val``/``test`` files of the Top Quark Tagging Reference Dataset, or their
    ``ttv`` column; :func:`fivesigma.io.jets.read_jets_with_split`): train for training,
    validation for early stopping, test for every number.  Only files that give no split
    get the seeded random one (``settings.split``).
    """
    from fivesigma.io.jets import concatenate, read_jets, read_jets_with_split

    task = TASKS[settings.task]
    if settings.data:
        sample, split = read_jets_with_split(settings.data)
        if split is None:
            split = _split_codes(len(sample), settings.seed, settings.split)
        elif not np.any(split == 1):
            raise DataError(
                "the files give a train/validation/test split but no validation jets (val.h5 "
                f"of the published dataset) to stop the training on: add them to {settings.data}"
            )
    else:
        from fivesigma.generate import cached_sample

        def generated(process: str, events: int, seed: int):
            gen = cached_sample(
                "jets",
                events=events,
                seed=seed,
                jobs=settings.jobs,
                progress=settings.progress,
                options={"process": process},
            )
            return read_jets(list(map(str, gen.files.values())))

        parts = [generated(p, settings.jets_per_class, settings.seed) for p in task.processes]
        split = _split_codes(sum(len(p) for p in parts), settings.seed, settings.split)
        if settings.test_background:
            # another seed, so none of these events is in the training sample
            parts.append(generated(task.background, settings.test_background, settings.seed + 1))
            split = np.concatenate([split, np.full(len(parts[-1]), 2, dtype=split.dtype)])
        sample = concatenate(parts)
    codes = np.asarray(sample.label)
    y = np.full(len(codes), -1, dtype=np.int64)
    for code, cls in task.codes.items():
        y[codes == code] = cls
    if np.any(y < 0):  # jets of other kinds (e.g. W, Z) are not part of this task
        keep = np.flatnonzero(y >= 0)
        sample, y, split = sample.subset(keep), y[keep], split[keep]
    wanted = set(range(len(task.classes)))
    for code, name in ((0, "train"), (2, "test")):
        present = set(np.unique(y[split == code]).tolist())
        if present != wanted:
            missing = ", ".join(task.classes[c] for c in sorted(wanted - present))
            raise DataError(
                f"the {name} split has no {missing} jets; the {settings.task} benchmark needs "
                f"{', '.join(task.classes)} jets in every split"
            )
    if settings.max_train_jets is not None:
        # a seeded random subset: the jets are stored class by class, so the first N
        # training jets could all be of one class
        train = np.random.default_rng(settings.seed).permutation(np.flatnonzero(split == 0))
        drop = train[settings.max_train_jets :]
        split = split.copy()
        split[drop] = -1
    return sample, y, split


# --------------------------------------------------------------------------------------
# Running


def _take(inputs: dict[str, np.ndarray], idx: np.ndarray | slice) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in inputs.items()}


def _evaluate(y: np.ndarray, prob: np.ndarray, classes: tuple[str, ...]) -> dict[str, Any]:
    """Accuracy, AUC and rejections; multi-class: one-vs-rest per class, plus their mean.

    A rejection of inf means no test background jet passed: the true value is above the
    number of test background jets, which the table shows as "> N".
    """
    out: dict[str, Any] = {"accuracy": float(np.mean(np.argmax(prob, axis=1) == y))}
    if len(classes) == 2:
        score = prob[:, 1]
        rej = M.rejection_at_eff_s(y, score, [0.5, 0.3])
        n_bkg = int(np.sum(y == 0))
        out.update(n_background_test=n_bkg, auc=M.auc(y, score))
        for eff in (0.5, 0.3):
            out[f"rejection_at_eff_s_{eff}"] = rej[eff]
            # the test sample's counting uncertainty (68% Clopper-Pearson)
            out[f"rejection_at_eff_s_{eff}_interval"] = list(M.rejection_interval(rej[eff], n_bkg))
        return out
    aucs = []
    for c, name in enumerate(classes):
        is_c = (y == c).astype(np.int64)
        rej = M.rejection_at_eff_s(is_c, prob[:, c], [0.5, 0.3])
        auc_c = M.auc(is_c, prob[:, c])
        aucs.append(auc_c)
        out[f"auc_{name}"] = auc_c
        out[f"rejection_at_eff_s_0.5_{name}"] = rej[0.5]
        out[f"rejection_at_eff_s_0.3_{name}"] = rej[0.3]
    out["auc"] = float(np.mean(aucs))
    return out


_WARM_UP_JETS = 256


def _predict_timed(predict, inputs: Any, n: int) -> tuple[np.ndarray, float]:
    """``predict(inputs)`` and its time in ms per jet, after a warm-up on a few jets.

    The timed call is the one whose predictions are scored, so the test split is
    processed once rather than once more for timing (ParT's share of the quick run).
    """
    head = slice(None, _WARM_UP_JETS)
    predict(_take(inputs, head) if isinstance(inputs, dict) else inputs[head])  # threads, allocator
    t0 = time.perf_counter()
    prob = predict(inputs)
    return prob, 1000.0 * (time.perf_counter() - t0) / max(n, 1)


def _train_bdt(sample, y, split, seed: int, params: dict[str, Any]):
    from fivesigma.estimators import make_estimator
    from fivesigma.tasks.jets.features import jet_observables

    obs, names = jet_observables(sample)
    keep = [
        i for i, name in enumerate(names) if name != "jet_eta"
    ]  # eta carries no label information
    X, names = obs[:, keep], [names[i] for i in keep]
    tr, va, te = split == 0, split == 1, split == 2
    est = make_estimator(
        "bdt", **{"n_estimators": 400, "max_depth": 4, "learning_rate": 0.1, "seed": seed, **params}
    )
    est.fit(X[tr], y[tr], valid=(X[va], y[va]), feature_names=names)
    prob, t = _predict_timed(est.predict_proba, X[te], int(te.sum()))
    return est, prob, _bdt_nodes(est), t


def _bdt_nodes(est) -> int | None:
    """The BDT's size: its tree nodes, splits and leaves (``est.n_parameters()``)."""
    return est.n_parameters()


def _train_tagger(
    name: str, inputs, y, split, seed: int, settings: BenchmarkSettings, feature_names
):
    from fivesigma.tasks.jets.tagger import JetTagger

    tr, va, te = (np.flatnonzero(split == c) for c in (0, 1, 2))
    params = {
        "epochs": settings.epochs,
        "batch_size": settings.batch_size,
        "lr": settings.lr,
        "seed": seed,
        "progress": settings.progress,
        "device": settings.device,
        **settings.tagger_params.get(name, {}),
    }
    est = JetTagger(model=name, **params)
    est.fit(_take(inputs, tr), y[tr], valid=(_take(inputs, va), y[va]), feature_names=feature_names)
    prob, t = _predict_timed(est.predict_proba, _take(inputs, te), len(te))
    return est, prob, est.n_parameters(), t


def run_benchmark(settings: BenchmarkSettings, out: str | Path) -> dict[str, Any]:
    """Train and evaluate every tagger; write benchmark.{md,json,html} into ``out``."""
    from fivesigma.report import write_metrics_json
    from fivesigma.tasks.jets.features import (
        check_features_available,
        constituent_inputs,
        default_features,
        describe,
    )

    settings.check()
    out = check_writable_dir(out)
    t_start = time.perf_counter()
    sample, y, split = load_task_jets(settings)
    if settings.features is None:
        features = default_features(sample)
    else:
        features = list(settings.features)
        check_features_available(sample, features, "the benchmark data")
    inputs = None
    if settings.trains_networks:
        inputs = constituent_inputs(
            sample, max_particles=settings.max_particles, features=features, frame=settings.frame
        )
    te = split == 2
    y_test = y[te]

    runs: dict[str, list[dict[str, Any]]] = {}
    probs: dict[str, np.ndarray] = {}
    models: dict[str, Any] = {}
    for name in settings.taggers:
        runs[name] = []
        for k in range(settings.seeds):
            seed = settings.seed + 1000 * k
            t0 = time.perf_counter()
            if name == "bdt":
                est, prob, n_par, t_jet = _train_bdt(
                    sample, y, split, seed, settings.tagger_params.get("bdt", {})
                )
            else:
                est, prob, n_par, t_jet = _train_tagger(
                    name, inputs, y, split, seed, settings, list(features)
                )
            row = _evaluate(y_test, prob, TASKS[settings.task].classes)
            row.update(
                seed=seed,
                parameters=n_par,
                inference_ms_per_jet=t_jet,
                train_seconds=time.perf_counter() - t0,
            )
            runs[name].append(row)
            if k == 0:
                probs[name] = prob
                models[name] = est

    summary = {name: _aggregate(rows) for name, rows in runs.items()}
    device = "CPU"  # the BDT always runs on the CPU
    if settings.trains_networks:
        from fivesigma.training.trainer import device_name

        device = device_name(settings.device)
    result = {
        "task": settings.task,
        "classes": list(TASKS[settings.task].classes),
        "data": settings.data
        or "generated: Pythia8 + FastJet, 14 TeV, anti-kT R=0.8, 550 < pT < 650 GeV, |eta| < 2",
        "n_jets": {
            "train": int((split == 0).sum()),
            "validation": int((split == 1).sum()),
            "test": int(te.sum()),
            "extra_test_background": settings.test_background,
        },
        "settings": {k: v for k, v in settings.__dict__.items() if k != "progress"},
        "device": device,
        "particle_features": list(features),
        "taggers": summary,
        "runs": runs,
        "definitions": {
            "rejection": "1/eps_B at fixed eps_S on the test ROC curve, linear interpolation between bracketing points",
            "accuracy": "argmax of the class probabilities",
            "inference_ms_per_jet": "predict_proba on the whole test split (the scored predictions), batched, one process, after a warm-up on 256 jets; the networks on the benchmark's device, the BDT on the CPU",
        },
        "wall_seconds": time.perf_counter() - t_start,
    }
    ensure_writable_dir(out)
    # The first training of each tagger, as a bundle `fivesigma apply` can use.
    spec = describe(list(features), max_particles=settings.max_particles, frame=settings.frame)
    for name, est in models.items():
        if name == "bdt":
            est.save(out / "models" / name, data={"jet_observables": True})
        else:
            est.save(
                out / "models" / name, data=spec, metadata={"benchmark": result["taggers"][name]}
            )
    write_metrics_json(result, out / "metrics.json")
    classes = TASKS[settings.task].classes
    table = markdown_table(summary, classes, device=result["device"])
    with atomic_file(out / "benchmark.md") as tmp:
        tmp.write_text(table + "\n")
    _write_html(out / "report.html", classes, summary, y_test, probs, result)
    result["table"] = table
    return result


_NOT_AVERAGED = ("seed", "parameters", "n_background_test")


def _aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std over the trainings of one tagger, for every number in its rows."""
    out: dict[str, Any] = {"runs": len(rows)}
    for key in rows[0]:
        if key in _NOT_AVERAGED:
            continue
        if key.endswith("_interval"):  # a counting interval: the first training's
            out[key] = rows[0][key]
            continue
        vals = np.array([r[key] for r in rows], dtype=float)
        if not np.all(np.isfinite(vals)):
            # e.g. rejection = inf when no test background passes: no meaningful spread
            out[key], out[key + "_std"] = float(np.mean(vals)), float("nan")
            continue
        out[key] = float(np.mean(vals))
        out[key + "_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    out["parameters"] = rows[0]["parameters"]
    if "n_background_test" in rows[0]:
        out["n_background_test"] = rows[0]["n_background_test"]
    return out


def _pm(mean: float, std: float, fmt: str, bound: int | None = None) -> str:
    if not np.isfinite(mean):
        return f"> {bound}" if bound is not None and mean > 0 else str(mean)
    return f"{mean:{fmt}}" + (f" ± {std:{fmt}}" if np.isfinite(std) and std > 0 else "")


def table_header(classes: tuple[str, ...], device: str = "CPU") -> list[str]:
    timing = f"ms/jet ({device})"
    if len(classes) == 2:
        return [
            "tagger",
            "accuracy",
            "AUC",
            "1/eps_B @ eps_S=0.5",
            "1/eps_B @ eps_S=0.3",
            "parameters",
            timing,
        ]
    return [
        "tagger",
        "accuracy",
        "mean AUC",
        *(f"AUC {c} vs rest" for c in classes),
        "parameters",
        timing,
    ]


def table_rows(summary: dict[str, dict[str, Any]], classes: tuple[str, ...]) -> list[list[str]]:
    rows = []
    for name in sorted(summary, key=lambda n: TAGGER_ORDER.index(n)):
        s = summary[name]
        row = [
            name,
            _pm(s["accuracy"], s["accuracy_std"], ".3f"),
            _pm(s["auc"], s["auc_std"], ".4f"),
        ]
        if len(classes) == 2:
            for eff in ("0.5", "0.3"):
                key = f"rejection_at_eff_s_{eff}"
                cell = _pm(s[key], s[key + "_std"], ".1f", s["n_background_test"])
                interval = s.get(key + "_interval")
                if s.get("runs", 1) == 1 and interval is not None and np.isfinite(s[key]):
                    cell += f" [{interval[0]:.0f}, {interval[1]:.0f}]"
                row.append(cell)
        else:
            row += [_pm(s[f"auc_{c}"], s[f"auc_{c}_std"], ".4f") for c in classes]
        row.append("-" if s["parameters"] is None else f"{s['parameters']:,}")
        row.append(_pm(s["inference_ms_per_jet"], s["inference_ms_per_jet_std"], ".3f"))
        rows.append(row)
    return rows


def markdown_table(
    summary: dict[str, dict[str, Any]],
    classes: tuple[str, ...] = ("QCD", "top"),
    device: str = "CPU",
) -> str:
    header = table_header(classes, device)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(summary, classes)]
    note = statistics_note(summary, classes)
    if note:
        lines += ["", note]
    return "\n".join(lines)


def statistics_note(summary: dict[str, dict[str, Any]], classes: tuple[str, ...]) -> str | None:
    """How many test background jets the rejections rest on (binary tasks), else None.

    A rejection R at fixed eps_S counts n/R of the n test background jets, so its relative
    statistical error is about sqrt(R/n); above n/10 it rests on fewer than 10 jets.
    """
    n_bkg = [v["n_background_test"] for v in summary.values() if "n_background_test" in v]
    if len(classes) != 2 or not n_bkg:
        return None
    runs = max(v.get("runs", 1) for v in summary.values())
    interval = (
        "[brackets]: 68% interval from that count (Clopper-Pearson)"
        if runs == 1
        else "68% intervals from that count are in metrics.json"
    )
    return (
        f"{n_bkg[0]} test background jets: a rejection R rests on {n_bkg[0]}/R of them, so "
        f"values above {n_bkg[0] / 10:.0f} rest on fewer than 10 jets (relative error "
        f"> 30%); rank taggers on such values only with a larger test sample. {interval}."
    )


def _write_html(
    path: Path,
    classes: tuple[str, ...],
    summary: dict[str, dict[str, Any]],
    y_test: np.ndarray,
    probs: dict[str, np.ndarray],
    result: dict,
) -> None:
    """The benchmark's HTML report, built with :class:`fivesigma.report.Report`.

    Sections: the results table (as in benchmark.md) with its statistics note; the test
    ROC curves (efficiency, and rejection 1/eps_B vs eps_S on a log scale; multi-class:
    one figure per class against the rest); the test score distributions per class
    (binary tasks); the settings and the provenance of the run.
    """
    from fivesigma.core.bundle import library_versions
    from fivesigma.report import Figure, Grid, KeyValues, Report, Table, Text, fmt_number
    from fivesigma.report import plots as P

    best = max(result["taggers"], key=lambda n: result["taggers"][n]["auc"])
    device = result.get("device", "CPU")
    n = result["n_jets"]
    jets = {k: fmt_number(v) for k, v in n.items()}
    n_extra = n.get("extra_test_background", 0)
    extra = f" (of which {fmt_number(n_extra)} extra generated background jets)"
    report = Report(
        f"Jet tagging benchmark: {result['task']} ({', '.join(classes)})",
        subtitle=f"fivesigma jet-tagging benchmark · {device} · best AUC: {best}",
    )
    results = report.section("Results", "results").add(
        Text(
            f"Data: {result['data']}. Jets: train {jets['train']}, validation "
            f"{jets['validation']}, test {jets['test']}{extra if n_extra else ''}. Mean ± std "
            f"over {result['settings']['seeds']} training(s). Rejection: "
            f"{result['definitions']['rejection']}."
        ),
        Table(table_header(classes, device), table_rows(summary, classes), scroll=True),
    )
    note = statistics_note(summary, classes)
    if note:
        results.add(Text(note, cls="note"))

    roc = report.section("ROC curves", "roc")
    # Binary: the signal class; multi-class: each class against the rest.
    for c in range(1, 2) if len(classes) == 2 else range(len(classes)):
        is_c = (y_test == c).astype(np.int64)
        curves = [(name, tuple(M.roc_curve(is_c, p[:, c])[:2]), None) for name, p in probs.items()]
        label = classes[c] if len(classes) == 2 else f"{classes[c]} vs rest"
        roc.add(
            Figure(
                lambda curves=curves, label=label: P.roc_figure(
                    curves, best=best, title=f"test, {label}"
                ),
                caption=f"ROC curves (test, {label}): signal vs background efficiency, and "
                "background rejection 1/εB vs signal efficiency εS on a log scale.",
                alt=f"ROC curves (test, {label})",
            )
        )
    if len(classes) == 2:
        names = {1: classes[1], 0: classes[0]}
        figures = [
            Figure(
                lambda name=name, p=p: P.score_distribution_figure(
                    name, None, None, None, p[:, 1], y_test, None, class_names=names
                ),
                caption=f"{name}: test score distributions per class, normalised "
                "(error bars: √Σw²).",
                alt=f"{name}: test score distributions",
            )
            for name, p in probs.items()
        ]
        report.section("Score distributions", "scores").add(Grid(figures))

    report.section("Settings", "settings").add(KeyValues(result["settings"]))
    provenance = {
        "data": result["data"],
        "jets": n,
        "device": device,
        "particle_features": result.get("particle_features"),
        "definitions": result.get("definitions", {}),
        "wall_seconds": result.get("wall_seconds"),
        "versions": library_versions(),
    }
    report.section("Provenance", "provenance").add(KeyValues(provenance))
    report.write(path)
