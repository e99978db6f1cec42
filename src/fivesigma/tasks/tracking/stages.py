"""The stages of a tracking run: fit the graph builder, the edge classifier and the
baseline on training events, then reconstruct and judge the test events.

Kept apart from :mod:`fivesigma.tasks.tracking.task` (which reads events and writes
outputs) so that notebooks and ``bench/`` can run the same stages on events in memory.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.tasks.tracking.evaluate import TrackEvaluation
from fivesigma.tasks.tracking.hits import Hits
from fivesigma.tasks.tracking.pipeline import TrackingPipeline, graph_builder

__all__ = [
    "Evaluated",
    "Fitted",
    "describe_events",
    "evaluate_all",
    "fit_all",
    "mean_graph_metrics",
]

#: edge scores kept per class for the report's score histogram
_SCORE_SAMPLE = 200_000


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def describe_events(train: list[Hits], valid: list[Hits], test: list[Hits]) -> dict[str, Any]:
    """Events, mean hits and noise fraction of each split."""

    def one(events: list[Hits]) -> dict[str, Any]:
        n = [len(h) for h in events]
        noise = [float((h.particle_id == 0).mean()) for h in events if h.has_truth]
        return {
            "events": len(events),
            "hits": float(np.mean(n)) if n else 0.0,
            "noise_fraction": float(np.mean(noise)) if noise else None,
            "with_truth": sum(h.has_truth for h in events),
        }

    return {"train": one(train), "valid": one(valid), "test": one(test)}


def mean_graph_metrics(
    events: list[Hits], edges: list[np.ndarray], pt_min: float
) -> dict[str, float]:
    """Edge efficiency (all particles and pT > ``pt_min``), purity and size, averaged over
    events with truth."""
    from fivesigma.tasks.tracking.graph import graph_metrics

    rows = []
    for hits, e in zip(events, edges, strict=True):
        if not hits.has_truth:
            continue
        row = graph_metrics(hits, e)
        high = graph_metrics(hits, e, pt_min=pt_min)
        row["efficiency_pt"] = high["efficiency"]
        rows.append(row)
    if not rows:
        return {}
    return {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}


@dataclass
class Fitted:
    """The trained chains and what their training measured."""

    gnn: TrackingPipeline
    baseline: TrackingPipeline | None
    graph_metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)


def fit_all(
    config: Any, settings: Any, train: list[Hits], valid: list[Hits], progress: bool
) -> Fitted:
    """Fit the graph builder, the edge classifier and (if enabled) the baseline."""
    from fivesigma.tasks.tracking.features import to_graph
    from fivesigma.tasks.tracking.gnn import EdgeClassifier

    pt_min = config.evaluation.pt_min
    training: dict[str, Any] = {}
    method = config.graph.method
    params = dict(settings.graph_params)
    if method == "metric_learning":
        params.setdefault("epochs", settings.embedding_epochs)
        params.setdefault("seed", settings.seed)
    _say(progress, f"graph: fitting {method} on {len(train)} events ...")
    t0 = time.perf_counter()
    builder = graph_builder(method)(**params).fit(train)
    training["graph_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    train_edges = [builder.build(h) for h in train]
    valid_edges = [builder.build(h) for h in valid]
    training["graph_build_seconds_per_event"] = (time.perf_counter() - t0) / max(
        1, len(train) + len(valid)
    )
    _say(progress, f"graph: fitted in {training['graph_seconds']:.1f} s")
    graph = {"valid": mean_graph_metrics(valid, valid_edges, pt_min)}
    _say(progress, "graph (validation): " + _fmt(graph["valid"]))

    train_graphs = [to_graph(h, e) for h, e in zip(train, train_edges, strict=True)]
    valid_graphs = [to_graph(h, e) for h, e in zip(valid, valid_edges, strict=True)]
    _say(progress, f"edge classifier: training on {len(train_graphs)} graphs ...")
    t0 = time.perf_counter()
    classifier = EdgeClassifier(**settings.gnn).fit(train_graphs, valid_graphs, progress=progress)
    training["gnn_seconds"] = time.perf_counter() - t0
    _say(progress, f"edge classifier: trained in {training['gnn_seconds']:.0f} s")
    history = getattr(classifier, "history", None)
    if history is not None and hasattr(history, "to_dict"):
        training["gnn_history"] = history.to_dict()
    build = {k: v for k, v in config.build.model_dump().items() if k != "tune"}
    if config.build.tune and any(h.has_truth for h in valid):
        t0 = time.perf_counter()
        scores = [classifier.predict(g) for g in valid_graphs]
        build, table = tune_build(valid, valid_edges, scores, build)
        training["build_tuning"] = {
            "chosen": build,
            "scores": table,
            "seconds": time.perf_counter() - t0,
        }
        _say(
            progress,
            f"track building: chose {build['method']} at {build['threshold']:.2f} "
            f"(validation TrackML score {max(r['score'] for r in table):.4f})",
        )
    gnn = TrackingPipeline(builder, classifier=classifier, build=build, graph_method=method)

    baseline = None
    if config.baseline.enabled:
        from fivesigma.tasks.tracking.baseline import CombinatorialTracker

        _say(progress, "baseline: tuning the combinatorial track finder ...")
        t0 = time.perf_counter()
        tracker = CombinatorialTracker(**config.baseline.params).fit(train)
        training["baseline_seconds"] = time.perf_counter() - t0
        _say(progress, f"baseline: tuned in {training['baseline_seconds']:.0f} s")
        baseline = TrackingPipeline(None, tracker=tracker)
    return Fitted(gnn, baseline, graph, training)


#: thresholds tried by :func:`tune_build`
TUNE_THRESHOLDS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
#: the walk's ``threshold_high`` values tried (None: follow the best edge only)
TUNE_THRESHOLDS_HIGH = (None, 0.9, 0.95)


def tune_build(
    events: list[Hits], edges: list[np.ndarray], scores: list[np.ndarray], build: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The track-building method, threshold and (walk) ``threshold_high`` with the best
    mean TrackML score on ``events`` (validation events with truth; never the test
    events)."""
    from fivesigma.metrics.tracking import trackml_score
    from fivesigma.tasks.tracking import build as builders
    from fivesigma.tasks.tracking.hits import submission_track_ids

    table = []
    candidates = [("cc", t, None) for t in TUNE_THRESHOLDS] + [
        ("walk", t, high)
        for t in TUNE_THRESHOLDS
        for high in TUNE_THRESHOLDS_HIGH
        if high is None or high > t
    ]
    for method, threshold, high in candidates:
        values = []
        for hits, e, s in zip(events, edges, scores, strict=True):
            if not hits.has_truth:
                continue
            if method == "cc":
                labels = builders.connected_components(
                    len(hits), e, s, threshold, min_hits=build["min_hits"]
                )
            else:
                labels = builders.walk(len(hits), e, s, threshold, high, min_hits=build["min_hits"])
            values.append(
                trackml_score(
                    hits.hit_id,
                    submission_track_ids(labels),
                    hits.hit_id,
                    hits.particle_id,
                    hits.weight,
                )
            )
        table.append(
            {
                "method": method,
                "threshold": threshold,
                "threshold_high": high,
                "score": float(np.mean(values)),
            }
        )
    best = max(table, key=lambda r: r["score"])
    chosen = dict(
        build,
        method=best["method"],
        threshold=best["threshold"],
        threshold_high=best["threshold_high"],
    )
    return chosen, table


@dataclass
class Evaluated:
    """What the test events gave: per-method metrics, curves, and material for the report."""

    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_event: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    curves: dict[str, dict[str, Any]] = field(default_factory=dict)
    graph_metrics: dict[str, Any] = field(default_factory=dict)
    displays: list[dict[str, Any]] = field(default_factory=list)
    edge_scores: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def evaluate_all(
    config: Any, fitted: Fitted, test: list[Hits], out: Path, progress: bool
) -> Evaluated:
    """Reconstruct every test event with each chain, write submissions, collect metrics."""
    from fivesigma.tasks.tracking.evaluate import event_metrics
    from fivesigma.tasks.tracking.task import write_submission

    ev_cfg = config.evaluation
    chains = {"gnn": fitted.gnn}
    if fitted.baseline is not None:
        chains["baseline"] = fitted.baseline
    evals = {
        name: TrackEvaluation(
            name,
            pt_min=ev_cfg.pt_min,
            eta_max=ev_cfg.eta_max,
            min_particle_hits=ev_cfg.min_particle_hits,
            min_track_hits=ev_cfg.min_track_hits,
        )
        for name in chains
    }
    result = Evaluated(per_event={name: [] for name in chains})
    (out / "submissions").mkdir(parents=True, exist_ok=True)
    test_edges: list[np.ndarray] = []
    true_scores: list[np.ndarray] = []
    false_scores: list[np.ndarray] = []
    ceilings: list[float] = []
    for i, hits in enumerate(test):
        display: dict[str, Any] = {"hits": hits}
        for name, chain in chains.items():
            rec = chain.reconstruct(hits)
            write_submission(
                hits, rec.labels, out / "submissions" / f"event{hits.event_id:09d}-{name}.csv"
            )
            timing = rec.times.flat() | {"n_hits": float(len(hits))}
            if hits.has_truth:
                row = evals[name].add(hits, rec.labels, **timing)
            else:
                row = timing | {"event_id": hits.event_id}
            result.per_event[name].append(row)
            _say(progress, f"event {hits.event_id} {name}: " + _fmt(row))
            display[name] = rec.labels
            if name == "gnn":
                test_edges.append(rec.edge_index)
                if hits.has_truth and rec.scores is not None and len(rec.scores):
                    y = hits.edge_truth(rec.edge_index)
                    true_scores.append(rec.scores[y])
                    false_scores.append(rec.scores[~y])
                    # the same graph and track building with a perfect edge classifier:
                    # how much of the score the graph allows, and so what the GNN loses
                    perfect = chain._build_tracks(len(hits), rec.edge_index, y.astype(np.float32))
                    ceilings.append(event_metrics(hits, perfect, pt_min=ev_cfg.pt_min)[0]["score"])
        if i < ev_cfg.event_displays:
            result.displays.append(display)
    result.graph_metrics["test"] = mean_graph_metrics(test, test_edges, ev_cfg.pt_min)
    if true_scores:
        result.edge_scores = {
            "true": _sample(np.concatenate(true_scores)),
            "false": _sample(np.concatenate(false_scores)),
        }
        result.graph_metrics["test"].update(
            _edge_metrics(true_scores, false_scores, fitted.gnn.build["threshold"])
        )
    if ceilings:
        result.graph_metrics["test"]["score_with_true_edge_scores"] = float(np.mean(ceilings))
    for name, ev in evals.items():
        if ev.events:
            result.methods[name] = ev.summary()
            result.curves[name] = {"pt": ev.curve("pt"), "eta": ev.curve("eta")}
        else:
            rows = result.per_event[name]
            result.methods[name] = {
                k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "event_id"
            }
    return result


def _edge_metrics(
    true_scores: list[np.ndarray], false_scores: list[np.ndarray], cut: float
) -> dict[str, float]:
    """Edge efficiency and purity after the GNN's score cut (pooled over test events)."""
    t = np.concatenate(true_scores)
    f = np.concatenate(false_scores)
    kept_true, kept_false = float((t > cut).sum()), float((f > cut).sum())
    out = {
        "gnn_edge_efficiency": kept_true / max(1.0, float(t.size)),
        "gnn_edge_purity": kept_true / max(1.0, kept_true + kept_false),
    }
    if t.size and f.size:
        from fivesigma.metrics.roc import auc

        scores = np.concatenate([t, f])
        labels = np.concatenate([np.ones(t.size), np.zeros(f.size)])
        out["gnn_edge_auc"] = float(auc(labels, scores))
    return out


def _sample(values: np.ndarray) -> np.ndarray:
    if values.size <= _SCORE_SAMPLE:
        return values
    return np.random.default_rng(0).choice(values, _SCORE_SAMPLE, replace=False)


def _fmt(row: dict[str, Any]) -> str:
    keys = (
        "edges",
        "efficiency",
        "efficiency_pt",
        "purity",
        "score",
        "score_normalised",
        "dm_efficiency",
        "dm_fake_rate",
        "cpu_total",
    )
    parts = [f"{k}={row[k]:.4g}" for k in keys if k in row and row[k] is not None]
    return ", ".join(parts)
