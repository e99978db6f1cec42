"""A trained reconstruction chain, timed stage by stage, saved as one model bundle.

Two chains share this class:

- ``method="gnn"``: candidate graph -> Interaction Network edge scores -> tracks
  (connected components, or CC & walk);
- ``method="baseline"``: candidate graph -> the classical seeded combinatorial finder.

``reconstruct(hits)`` returns track labels (``-1`` = no track) and a
:class:`StageTimes` record of CPU and wall seconds per stage.  ``save``/``load`` write one
bundle (kind ``tracking_pipeline``) holding every stage's files, checksummed, so ``fivesigma
apply`` can reconstruct new events with it.
"""

from __future__ import annotations

import importlib
import resource
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.core.bundle import Bundle, load_bundle, save_bundle
from fivesigma.errors import ConfigError, ModelError
from fivesigma.tasks.tracking.hits import Hits

__all__ = [
    "BUNDLE_KIND",
    "GRAPH_BUILDERS",
    "StageTimes",
    "TrackingPipeline",
    "graph_builder",
    "peak_memory_mb",
]

BUNDLE_KIND = "tracking_pipeline"

#: graph construction methods -> "module:class" (imported on use)
GRAPH_BUILDERS: dict[str, str] = {
    "layer_pairs": "fivesigma.tasks.tracking.graph:LayerPairGraph",
    "module_map": "fivesigma.tasks.tracking.graph:ModuleMapGraph",
    "metric_learning": "fivesigma.tasks.tracking.embedding:MetricLearningGraph",
}
_CLASSIFIER = "fivesigma.tasks.tracking.gnn:EdgeClassifier"
_TRACKER = "fivesigma.tasks.tracking.baseline:CombinatorialTracker"


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _flat(stage: str, name: str) -> str:
    """The bundle file name of a stage's file (bundles hold plain names only)."""
    return f"{stage}__{name.replace('/', '__')}"


def graph_builder(method: str) -> type:
    """The graph-builder class of ``method`` (one of :data:`GRAPH_BUILDERS`)."""
    if method not in GRAPH_BUILDERS:
        raise ConfigError(f"unknown graph method {method!r}; accepted: {', '.join(GRAPH_BUILDERS)}")
    return _import(GRAPH_BUILDERS[method])


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class StageTimes:
    """CPU and wall seconds per stage of one reconstruction, and the peak memory after it."""

    cpu: dict[str, float] = field(default_factory=dict)
    wall: dict[str, float] = field(default_factory=dict)
    peak_mb: dict[str, float] = field(default_factory=dict)

    def run(self, stage: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        c0, w0 = time.process_time(), time.perf_counter()
        out = fn(*args, **kwargs)
        self.cpu[stage] = self.cpu.get(stage, 0.0) + time.process_time() - c0
        self.wall[stage] = self.wall.get(stage, 0.0) + time.perf_counter() - w0
        self.peak_mb[stage] = peak_memory_mb()
        return out

    @property
    def total_cpu(self) -> float:
        return float(sum(self.cpu.values()))

    @property
    def total_wall(self) -> float:
        return float(sum(self.wall.values()))

    def flat(self) -> dict[str, float]:
        out = {f"cpu_{k}": v for k, v in self.cpu.items()}
        out.update({f"wall_{k}": v for k, v in self.wall.items()})
        out["cpu_total"] = self.total_cpu
        out["wall_total"] = self.total_wall
        return out


@dataclass
class Reconstruction:
    """What one reconstruction produced (the graph and scores are kept for the report)."""

    labels: np.ndarray
    times: StageTimes
    edge_index: np.ndarray | None = None
    scores: np.ndarray | None = None


class TrackingPipeline:
    """A graph builder and either an edge classifier + track building, or the baseline.

    Parameters
    ----------
    graph : a fitted graph builder (``build(hits) -> edge_index``).
    classifier : a fitted ``EdgeClassifier`` (``method="gnn"``).
    tracker : a fitted ``CombinatorialTracker`` (``method="baseline"``).
    build : track building settings: ``method`` ("walk" or "cc"), ``threshold``,
        ``threshold_high``, ``min_hits``.
    """

    def __init__(
        self,
        graph: Any,
        classifier: Any = None,
        tracker: Any = None,
        build: dict[str, Any] | None = None,
        graph_method: str = "layer_pairs",
    ) -> None:
        if (classifier is None) == (tracker is None):
            raise ModelError("a tracking pipeline needs exactly one of classifier and tracker")
        if classifier is not None and graph is None:
            raise ModelError("the GNN tracking pipeline needs a graph builder")
        self.graph = graph
        self.classifier = classifier
        self.tracker = tracker
        self.graph_method = graph_method
        self.build = {"method": "walk", "threshold": 0.5, "threshold_high": None, "min_hits": 3}
        self.build.update(build or {})

    @property
    def method(self) -> str:
        return "gnn" if self.classifier is not None else "baseline"

    # ----------------------------------------------------------------------------------
    def reconstruct(self, hits: Hits) -> Reconstruction:
        """Track labels of one event, with the time each stage took."""
        times = StageTimes()
        if self.tracker is not None:
            labels = times.run("tracking", self.tracker.reconstruct, hits)
            return Reconstruction(np.asarray(labels, dtype=np.int64), times)
        edges = times.run("graph", self.graph.build, hits)
        scores = times.run("edge_classifier", self._scores, hits, edges)
        labels = times.run("track_building", self._build_tracks, len(hits), edges, scores)
        return Reconstruction(np.asarray(labels, dtype=np.int64), times, edges, scores)

    def _scores(self, hits: Hits, edges: np.ndarray) -> np.ndarray:
        from fivesigma.tasks.tracking.features import to_graph

        if edges.shape[1] == 0:
            return np.zeros(0, dtype=np.float32)
        return np.asarray(self.classifier.predict(to_graph(hits, edges, with_truth=False)))

    def _build_tracks(self, n_hits: int, edges: np.ndarray, scores: np.ndarray) -> np.ndarray:
        from fivesigma.tasks.tracking import build

        b = self.build
        if b["method"] == "cc":
            return build.connected_components(
                n_hits, edges, scores, b["threshold"], min_hits=b["min_hits"]
            )
        # exactly the settings tune_build scored (None: the walk follows the best edge only)
        return build.walk(
            n_hits, edges, scores, b["threshold"], b["threshold_high"], min_hits=b["min_hits"]
        )

    # ----------------------------------------------------------------------------------
    def save(self, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write the pipeline as one bundle directory (atomically)."""
        files: dict[str, bytes] = {}
        stages = {"graph": self.graph} if self.graph is not None else {}
        if self.classifier is not None:
            stages["classifier"] = self.classifier
        if self.tracker is not None:
            stages["tracker"] = self.tracker
        listing: dict[str, list[str]] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for stage, obj in stages.items():
                directory = Path(tmp) / stage
                obj.save(directory)
                # stages may save sub-directories (the baseline keeps its own graph)
                names = sorted(
                    p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()
                )
                listing[stage] = names
                for name in names:
                    files[_flat(stage, name)] = (directory / name).read_bytes()
        bundle = Bundle(
            kind=BUNDLE_KIND,
            params={
                "method": self.method,
                "graph_method": self.graph_method,
                "build": self.build,
                "stages": listing,
            },
            files=files,
            metadata=metadata or {},
        )
        return save_bundle(bundle, path)

    @classmethod
    def load(cls, path: str | Path) -> TrackingPipeline:
        """Read a bundle written by :meth:`save` (checksums verified)."""
        bundle = load_bundle(path)
        if bundle.kind != BUNDLE_KIND:
            raise ModelError(
                f"'{path}' is a {bundle.kind!r} bundle, not a tracking pipeline ({BUNDLE_KIND!r})"
            )
        params = bundle.params
        loaded: dict[str, Any] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for stage, names in params["stages"].items():
                directory = Path(tmp) / stage
                for name in names:
                    if name.startswith("/") or ".." in name.split("/"):
                        raise ModelError(f"bundle '{path}': bad stage file name {name!r}")
                    target = directory / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(bundle.files[_flat(stage, name)])
                if stage == "graph":
                    loaded[stage] = graph_builder(params["graph_method"]).load(directory)
                elif stage == "classifier":
                    loaded[stage] = _import(_CLASSIFIER).load(directory)
                else:
                    loaded[stage] = _import(_TRACKER).load(directory)
        return cls(
            loaded.get("graph"),
            classifier=loaded.get("classifier"),
            tracker=loaded.get("tracker"),
            build=params["build"],
            graph_method=params["graph_method"],
        )
