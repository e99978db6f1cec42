"""The anomaly search, stage by stage: samples, splits, injection, training, SIC, bump hunt.

The protocol is the LHC Olympics R&D one (as in the CATHODE paper, arXiv:2109.00546):

- the background is split three ways, never overlapping: the *data* (into which signal
  is injected, the only sample a real search has), an independent background sample in
  the signal region (the idealized detector's perfect template and the supervised
  reference's background), and a *test* sample;
- the signal likewise: the pool injected into the data, the test signal, and the
  supervised reference's training signal;
- every method trains on the data (the references on their own samples) and is judged on
  the test events of the signal region: SIC, ROC, signal efficiency at fixed background
  efficiency, with bands over retrainings of different seeds;
- the bump hunt cuts on the score of one method and fits the m_JJ spectrum of the data.
  A classifier cannot judge the events it was trained on, so the data are split in two
  halves, each half scored by the model trained on the other (two-fold cross-scoring).
"""

from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fivesigma.errors import DataError
from fivesigma.tasks.anomaly.config import AnomalySettings
from fivesigma.tasks.anomaly.data import DijetTable, Regions, check_regions, inject

__all__ = ["MethodRun", "SearchSplits", "TrainingJob", "make_splits", "run_search"]

#: published max SIC at S/B ~ 0.6% in the signal region on the LHC Olympics R&D set
#: (CATHODE paper, arXiv:2109.00546, Fig. 6; ANODE arXiv:2001.04990)
PUBLISHED_MAX_SIC = {"supervised": 18.0, "cathode": 14.0, "cwola": 11.0, "anode": 6.5}

#: fractions of the background: data, the independent signal-region template, test
BACKGROUND_SPLIT = (0.5, 0.25, 0.25)
#: fractions of the signal: injection pool, test, supervised training
SIGNAL_SPLIT = (0.3, 0.35, 0.35)


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


@dataclass
class SearchSplits:
    """The non-overlapping samples of one search (see the module docstring)."""

    data_background: DijetTable
    template: DijetTable  # independent background, signal region only
    test_background: DijetTable  # every m_JJ (the sculpting check uses it all)
    signal_pool: DijetTable
    test_signal: DijetTable  # signal region only
    train_signal: DijetTable  # signal region only
    regions: Regions

    def counts(self) -> dict[str, int]:
        sr = self.regions
        return {
            "data_background": len(self.data_background),
            "data_background_sr": int((sr.region(self.data_background.mjj) == 1).sum()),
            "template_sr": len(self.template),
            "test_background_sr": int((sr.region(self.test_background.mjj) == 1).sum()),
            "signal_pool": len(self.signal_pool),
            "test_signal_sr": len(self.test_signal),
            "train_signal_sr": len(self.train_signal),
        }


def _parts(n: int, fractions: tuple[float, ...], rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    edges = np.round(np.cumsum((0.0, *fractions)) / sum(fractions) * n).astype(int)
    return [np.sort(order[a:b]) for a, b in itertools.pairwise(edges)]


def make_splits(
    background: DijetTable, signal: DijetTable, regions: Regions, seed: int
) -> SearchSplits:
    """Split background and signal into the search's samples (deterministic in ``seed``)."""
    rng = np.random.default_rng([seed, 0xA1])
    check_regions(regions, background.mjj)
    b_data, b_template, b_test = _parts(len(background), BACKGROUND_SPLIT, rng)
    s_pool, s_test, s_train = _parts(len(signal), SIGNAL_SPLIT, rng)

    def sr_only(table: DijetTable) -> DijetTable:
        return table.take(regions.region(table.mjj) == 1)

    splits = SearchSplits(
        data_background=background.take(b_data),
        template=sr_only(background.take(b_template)),
        test_background=background.take(b_test),
        signal_pool=signal.take(s_pool),
        test_signal=sr_only(signal.take(s_test)),
        train_signal=sr_only(signal.take(s_train)),
        regions=regions,
    )
    counts = splits.counts()
    for key in ("template_sr", "test_background_sr", "test_signal_sr", "train_signal_sr"):
        if counts[key] < 50:
            raise DataError(
                f"only {counts[key]} events for {key.replace('_', ' ')} in the signal region "
                f"{list(regions.sr)} GeV; at least 50 are needed (more background or signal "
                "events, or a wider signal region)"
            )
    return splits


# --------------------------------------------------------------------------------------
# One method, one training


@dataclass
class MethodRun:
    """One training of one method at one S/B, judged on the test events."""

    method: str
    s_over_b: float
    seed: int
    max_sic: dict[str, float]
    auc: float
    eps_s_at: dict[str, float]
    curve: dict[str, np.ndarray]
    seconds: float
    history: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "max_sic": self.max_sic["max_sic"],
            "max_sic_eps_s": self.max_sic["eps_s"],
            "auc": self.auc,
            "eps_s_at_eps_b": self.eps_s_at,
            "seconds": self.seconds,
        }


def _sample(data: DijetTable, splits: SearchSplits, features: tuple[str, ...], method: str) -> Any:
    from fivesigma.tasks.anomaly.methods import AnomalySample

    region = splits.regions.region(data.mjj)
    return AnomalySample(
        x=data.features(features),
        mjj=np.asarray(data.mjj, dtype=np.float64),
        in_sr=region == 1,
        in_sb=region == 2,
        truth=np.asarray(data.label) if method == "supervised" else None,
        background_sr=splits.template.features(features),
        background_sr_mjj=np.asarray(splits.template.mjj, dtype=np.float64),
        signal=splits.train_signal.features(features),
    )


def method_settings(s: AnomalySettings, method: str, seed: int, progress: bool) -> Any:
    """The :class:`MethodSettings` of ``method`` for one training."""
    from dataclasses import fields

    from fivesigma.tasks.anomaly.methods import MethodSettings

    known = {f.name for f in fields(MethodSettings)}
    train = dict(s.training)
    flow_epochs = train.pop("flow_epochs", None)
    if method in ("flow", "cathode") and flow_epochs is not None and "flow_epochs" in known:
        train["flow_epochs"] = flow_epochs
    unknown = sorted(k for k in train if k not in known)
    if unknown:
        from fivesigma.errors import ConfigError

        raise ConfigError(
            f"training: unknown setting(s) {', '.join(unknown)}; accepted: "
            f"{', '.join(sorted(known))}"
        )
    return MethodSettings(**train, seed=seed, progress=False)


def test_set(splits: SearchSplits, features: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    """Features, m_JJ and labels (1 signal) of the signal-region test events."""
    bkg = splits.test_background.take(splits.regions.region(splits.test_background.mjj) == 1)
    x = np.concatenate([bkg.features(features), splits.test_signal.features(features)])
    mjj = np.concatenate([bkg.mjj, splits.test_signal.mjj]).astype(np.float64)
    y = np.concatenate([np.zeros(len(bkg), np.int8), np.ones(len(splits.test_signal), np.int8)])
    return x, mjj, y


def judge(scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """SIC curve, max SIC, AUC and signal efficiency at fixed background efficiency."""
    from fivesigma.metrics.anomaly import max_sic, sic_curve, signal_efficiency_at
    from fivesigma.metrics.roc import auc

    curve = sic_curve(scores, labels)
    at = signal_efficiency_at(scores, labels, eps_b=(1e-2, 1e-3, 1e-4))
    return {
        "curve": curve,
        "max_sic": max_sic(scores, labels),
        "auc": float(auc(labels, scores)),
        "eps_s_at": {f"{k:g}": float(v) for k, v in at.items()},
    }


def train_and_judge(
    method: str,
    data: DijetTable,
    splits: SearchSplits,
    s: AnomalySettings,
    s_over_b: float,
    seed: int,
    test: tuple[np.ndarray, ...],
) -> tuple[MethodRun, Any]:
    """Fit ``method`` on ``data`` with ``seed`` and judge it on the test events."""
    from fivesigma.tasks.anomaly.methods import make_method

    t0 = time.perf_counter()
    model = make_method(method, method_settings(s, method, seed, False))
    model.fit(_sample(data, splits, s.features, method))
    x, mjj, y = test
    scores = model.score(x, mjj)
    j = judge(scores, y)
    run = MethodRun(
        method=method,
        s_over_b=s_over_b,
        seed=seed,
        max_sic=j["max_sic"],
        auc=j["auc"],
        eps_s_at=j["eps_s_at"],
        curve=j["curve"],
        seconds=time.perf_counter() - t0,
        history=dict(getattr(model, "history_", {}) or {}),
    )
    return run, model


# --------------------------------------------------------------------------------------
# The bump hunt


def _folds(n: int, seed: int) -> np.ndarray:
    """The two-fold assignment (0 or 1) of ``n`` data events for cross-scoring."""
    return np.random.default_rng([seed, 0xB0]).integers(0, 2, n)


def fold_scores(
    method: str,
    data: DijetTable,
    splits: SearchSplits,
    s: AnomalySettings,
    seed: int,
    k: int,
) -> np.ndarray:
    """Scores of the data events of fold ``k`` from the model trained on the other fold."""
    from fivesigma.tasks.anomaly.methods import make_method

    fold = _folds(len(data), seed)
    train, held = data.take(fold != k), data.take(fold == k)
    model = make_method(method, method_settings(s, method, seed + 101 * (k + 1), False))
    model.fit(_sample(train, splits, s.features, method))
    return model.score(held.features(s.features), np.asarray(held.mjj, float))


def cross_scores(
    method: str,
    data: DijetTable,
    splits: SearchSplits,
    s: AnomalySettings,
    seed: int,
) -> np.ndarray:
    """Scores of every data event from the model trained on the other half (2 folds)."""
    fold = _folds(len(data), seed)
    scores = np.empty(len(data), dtype=np.float64)
    for k in (0, 1):
        scores[fold == k] = fold_scores(method, data, splits, s, seed, k)
    return scores


def cut_threshold(scores: np.ndarray, in_sr: np.ndarray, efficiency: float) -> float:
    """The score cut that keeps ``efficiency`` of the signal-region events."""
    return float(np.quantile(scores[in_sr], 1.0 - efficiency))


def bump_hunt_data(
    mjj: np.ndarray, scores: np.ndarray, regions: Regions, hunt: Any
) -> dict[str, Any]:
    """Cut on the score and hunt the bump in the data's m_JJ spectrum."""
    from fivesigma.stats.bumphunt import bump_hunt

    in_sr = regions.region(mjj) == 1
    threshold = cut_threshold(scores, in_sr, hunt.efficiency)
    edges = np.linspace(hunt.range[0], hunt.range[1], hunt.bins + 1)
    keep = (scores >= threshold) & (mjj >= edges[0]) & (mjj < edges[-1])
    result = bump_hunt(mjj[keep], edges, regions.sr, n_params=hunt.n_params)
    result["threshold"] = threshold
    result["events_after_cut"] = int(keep.sum())
    result["edges"] = edges
    return result


def sculpting_check(
    model: Any, splits: SearchSplits, s: AnomalySettings, hunt: Any
) -> dict[str, Any]:
    """The test background's m_JJ before and after the cut that keeps ``hunt.efficiency``
    of the signal-region background (the model's own threshold).

    Two measures: whether the *shape* changes at all (the pass/fail contingency χ² and
    KS: any score that uses features correlated with m_JJ changes it), and whether the
    change can fake a signal, which is what matters to the bump hunt: the hunt itself run
    on the cut background, whose significance is the *spurious signal* (zero for a smooth
    change that the dijet function absorbs).  ``not_sculpted`` is the second:
    |Z_spurious| < ``hunt.spurious_tolerance`` and a dijet fit of p ≥ ``hunt.sculpting_tolerance``.
    """
    from fivesigma.stats.bumphunt import bump_hunt, sculpting

    bkg = splits.test_background
    mjj = np.asarray(bkg.mjj, dtype=np.float64)
    inside = (mjj >= hunt.range[0]) & (mjj < hunt.range[1])
    bkg, mjj = bkg.take(inside), mjj[inside]
    scores = model.score(bkg.features(s.features), mjj)
    threshold = cut_threshold(scores, splits.regions.region(mjj) == 1, hunt.efficiency)
    edges = np.linspace(hunt.range[0], hunt.range[1], hunt.bins + 1)
    after = mjj[scores >= threshold]
    result = sculpting(mjj, after, edges)
    result["edges"] = edges
    result["counts_before"] = np.histogram(mjj, edges)[0]
    result["counts_after"] = np.histogram(after, edges)[0]
    result["shape_unchanged"] = bool(result["p_value"] >= hunt.sculpting_tolerance)
    try:
        spurious = bump_hunt(after, edges, splits.regions.sr, n_params=hunt.n_params, limits=False)
    except DataError as exc:  # the cut emptied the sidebands: sculpted beyond fitting
        result["spurious_significance"] = result["spurious_fit_p_value"] = float("nan")
        result["spurious_error"] = str(exc)
        result["not_sculpted"] = False
    else:
        result["spurious_significance"] = float(spurious["significance"])
        result["spurious_fit_p_value"] = float(spurious["fit"]["p_value"])
        result["not_sculpted"] = bool(
            abs(result["spurious_significance"]) < hunt.spurious_tolerance
            and result["spurious_fit_p_value"] >= hunt.sculpting_tolerance
        )
    result["tolerance"] = hunt.sculpting_tolerance
    result["spurious_tolerance"] = hunt.spurious_tolerance
    return result


# --------------------------------------------------------------------------------------


@dataclass
class SearchResult:
    """Everything the report and metrics.json need."""

    splits: dict[str, int]
    nominal: dict[str, Any]  # injection info of the nominal data
    runs: list[MethodRun]
    models: dict[str, Any]  # method -> the first retraining's fitted model (nominal S/B)
    scan: list[dict[str, Any]]  # per S/B: injection info, bump hunt
    sculpting: dict[str, Any] | None  # of the bump-hunt method
    seconds: dict[str, float]
    sculpting_by_method: dict[str, dict[str, Any]] = field(default_factory=dict)


def _inject(
    splits: SearchSplits, s_over_b: float | None, n_signal: int | None, seed: int
) -> tuple[DijetTable, dict[str, Any]]:
    rng = np.random.default_rng([seed, 0xC1, round((s_over_b or 0) * 1e6), n_signal or 0])
    if (s_over_b is not None and s_over_b == 0) or n_signal == 0:
        data = splits.data_background
        sr = splits.regions.region(data.mjj) == 1
        return data, {
            "n_signal": 0,
            "n_signal_sr": 0,
            "n_background_sr": int(sr.sum()),
            "s_over_b_sr": 0.0,
            "significance_sr": 0.0,
        }
    return inject(
        splits.data_background,
        splits.signal_pool,
        splits.regions,
        s_over_b=s_over_b,
        n_signal=n_signal,
        rng=rng,
    )


@dataclass(frozen=True)
class TrainingJob:
    """One training of the search: judged on the test events (``fold`` -1) or one fold of
    the bump hunt's cross-scoring.  ``point`` is the scan's S/B (None: the nominal data)."""

    method: str
    seed: int
    point: float | None = None
    fold: int = -1
    keep_model: bool = False

    def cost(self) -> int:
        """Rough relative cost, to start the longest trainings first."""
        return {"cathode": 8, "flow": 4}.get(self.method, 1)


#: the samples every training job of one worker process reads (set by _init_worker)
_WORKER: dict[str, Any] = {}


def _init_worker(splits: SearchSplits, s: AnomalySettings) -> None:
    _WORKER.clear()
    _WORKER.update(splits=splits, settings=s, test=test_set(splits, s.features), data={})


def _point_data(point: float | None) -> tuple[DijetTable, dict[str, Any]]:
    """The injected data of a scan point (None: nominal), built once per process."""
    cache = _WORKER["data"]
    if point not in cache:
        s = _WORKER["settings"]
        if point is None:
            cache[point] = _inject(_WORKER["splits"], s.s_over_b, s.n_signal, s.seed)
        else:
            cache[point] = _inject(_WORKER["splits"], point, None, s.seed)
    return cache[point]


def _run_job(job: TrainingJob) -> tuple[Any, Any]:
    splits, s = _WORKER["splits"], _WORKER["settings"]
    data, info = _point_data(job.point)
    if job.fold >= 0:
        return fold_scores(job.method, data, splits, s, job.seed, job.fold), None
    run, model = train_and_judge(
        job.method, data, splits, s, float(info["s_over_b_sr"]), job.seed, _WORKER["test"]
    )
    return run, (model if job.keep_model else None)


def run_search(
    background: DijetTable,
    signal: DijetTable,
    s: AnomalySettings,
    hunt: Any,
    progress: bool = True,
    jobs: int | None = 1,
) -> SearchResult:
    """The whole study: nominal injection with every method and its retrainings, the S/B
    scan, the sculpting check and the bump hunts.

    Every training is independent of the others, so all of them (nominal, scan and the
    bump hunts' folds) run side by side in ``jobs`` one-thread processes
    (:func:`fivesigma.core.parallel.map_processes`; None: every core); the results do
    not depend on ``jobs``."""
    from fivesigma.core.parallel import map_processes

    seconds: dict[str, float] = {}
    regions = Regions(sr=s.sr, sidebands=s.sidebands)
    splits = make_splits(background, signal, regions, s.seed)
    counts = splits.counts()
    _init_worker(splits, s)
    data, info = _point_data(None)
    _say(
        progress,
        f"data: {len(data)} events, {info['n_background_sr']} background and "
        f"{info['n_signal_sr']} signal in the signal region (S/B {info['s_over_b_sr']:.4f}, "
        f"S/sqrt(B) {info['significance_sr']:.2f}); test: {counts['test_background_sr']} "
        f"background, {counts['test_signal_sr']} signal",
    )
    nominal_sb = float(info["s_over_b_sr"])

    # every training of the study, then one pool for all of them
    work: list[TrainingJob] = [
        TrainingJob(method, s.seed + 1000 * k, keep_model=k == 0)
        for method in s.methods
        for k in range(s.retrainings)
    ]
    points = [(value, *_point_data(value)) for value in s.scan]
    for value, _, point_info in points:
        if abs(point_info["s_over_b_sr"] - nominal_sb) < 1e-12:
            continue  # the nominal runs stand for it
        for method in s.scan_methods:
            if method != "supervised":  # it never sees the data: no S/B dependence
                work.append(TrainingJob(method, s.seed, point=value))
    if hunt.enabled:
        work += [
            TrainingJob(hunt.method, s.seed, point=value, fold=k)
            for value in s.scan
            for k in (0, 1)
        ]
    order = sorted(range(len(work)), key=lambda i: -work[i].cost())

    def report(i: int, result: tuple[Any, Any]) -> None:
        job = work[order[i]]
        where = "nominal" if job.point is None else f"S/B {job.point:.4f}"
        if job.fold >= 0:
            _say(progress, f"  {job.method:<11} {where} bump-hunt fold {job.fold} done")
            return
        run = result[0]
        _say(
            progress,
            f"  {job.method:<11} {where} seed {run.seed:>5}: max SIC "
            f"{run.max_sic['max_sic']:6.2f}, AUC {run.auc:.3f} ({run.seconds:.0f} s)",
        )

    t0 = time.perf_counter()
    done = map_processes(
        _run_job,
        [work[i] for i in order],
        jobs=jobs,
        initializer=_init_worker,
        initargs=(splits, s),
        on_result=report,
    )
    seconds["training"] = time.perf_counter() - t0
    results = {order[i]: r for i, r in enumerate(done)}

    runs: list[MethodRun] = []
    models: dict[str, Any] = {}
    scan_runs: dict[tuple[float, str], MethodRun] = {}
    folds: dict[tuple[float, int], np.ndarray] = {}
    for i, job in enumerate(work):
        out, model = results[i]
        if job.fold >= 0:
            folds[(job.point, job.fold)] = out  # type: ignore[index]
        elif job.point is None:
            runs.append(out)
            if model is not None:
                models[job.method] = model
        else:
            scan_runs[(job.point, job.method)] = out

    sculpt = None
    sculpt_by_method: dict[str, dict[str, Any]] = {}
    if hunt.enabled:
        for method, model in models.items():
            sculpt_by_method[method] = sculpting_check(model, splits, s, hunt)
        sculpt = sculpt_by_method.get(hunt.method)

    scan: list[dict[str, Any]] = []
    for value, point_data, point_info in points:
        point: dict[str, Any] = {"s_over_b": value, "injection": point_info, "runs": {}}
        for method in s.scan_methods:
            if (value, method) in scan_runs:
                point["runs"][method] = [scan_runs[(value, method)]]
            else:  # the nominal S/B, or the supervised reference
                point["runs"][method] = [r for r in runs if r.method == method][:1]
        if hunt.enabled:
            fold = _folds(len(point_data), s.seed)
            scores = np.empty(len(point_data), dtype=np.float64)
            for k in (0, 1):
                scores[fold == k] = folds[(value, k)]
            mjj = np.asarray(point_data.mjj, dtype=np.float64)
            point["bump_hunt"] = bump_hunt_data(mjj, scores, regions, hunt)
            # the same hunt without the anomaly cut: the baseline a physicist compares to
            point["bump_hunt_no_cut"] = _hunt_without_cut(mjj, regions, hunt)
        scan.append(point)
        bh = point.get("bump_hunt", {})
        _say(
            progress,
            f"  S/B {value:.4f}: "
            + ", ".join(f"{m} {r[0].max_sic['max_sic']:.2f}" for m, r in point["runs"].items() if r)
            + (f"; bump hunt {bh['significance']:+.2f} sigma" if bh else ""),
        )
    return SearchResult(
        splits=counts,
        nominal=info,
        runs=runs,
        models=models,
        scan=scan,
        sculpting=sculpt,
        seconds=seconds,
        sculpting_by_method=sculpt_by_method,
    )


def _hunt_without_cut(mjj: np.ndarray, regions: Regions, hunt: Any) -> dict[str, Any]:
    from fivesigma.stats.bumphunt import bump_hunt

    edges = np.linspace(hunt.range[0], hunt.range[1], hunt.bins + 1)
    keep = (mjj >= edges[0]) & (mjj < edges[-1])
    result = bump_hunt(mjj[keep], edges, regions.sr, n_params=hunt.n_params)
    result["edges"] = edges
    return result
