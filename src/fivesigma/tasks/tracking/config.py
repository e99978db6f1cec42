"""The ``task: tracking`` config: graph-based track reconstruction from one YAML file.

A config names a ``preset`` (``quick`` or ``full``); every key left out (or ``null``)
keeps the preset's value, so the smallest config is ``{version: 1, task: tracking}``.

>>> from fivesigma.core.config import parse_config
>>> cfg = parse_config({"version": 1, "task": "tracking", "preset": "quick",
...                     "generate": {"mu": 10}})
>>> s = cfg.settings()
>>> s.mu, s.train_events > 0, s.gnn["hidden"] > 0
(10, True, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field

from fivesigma.core.config import OutputConfig, StrictModel, TaskConfig
from fivesigma.errors import ConfigError

__all__ = ["PRESETS", "TrackingConfig", "TrackingSettings"]


#: Sizes of the two presets.  ``quick`` is sized to finish (simulation, training of every
#: stage, evaluation) in under 10 minutes on 2 CPU cores from an empty cache.
PRESETS: dict[str, dict[str, Any]] = {
    # quick: events as dense as the 5% subsets of TrackML events that test sets such as
    # gnn_tracking's use (about 6k hits: pile-up 10, no hard process)
    # (80 events for 12 epochs score higher on the real event than 40 for 24, at the
    # same cost: 0.905 and 0.918 on two seeds against 0.894 and 0.895)
    "quick": {
        "train_events": 80,
        "valid_events": 8,
        "test_events": 2,
        "mu": 10,
        "hard_process": "none",
        "gnn": {"hidden": 48, "iterations": 6, "epochs": 12},
        "graph": {"layer_pairs": {"pt_min": 0.5}},
        "embedding_epochs": 10,
    },
    "full": {
        "train_events": 100,
        "valid_events": 10,
        "test_events": 10,
        "mu": 200,
        "hard_process": "ttbar",
        "gnn": {"hidden": 64, "iterations": 6, "epochs": 30},
        "graph": {"layer_pairs": {"pt_min": 0.5}},
        "embedding_epochs": 30,
    },
}


class _Output(OutputConfig):
    dir: Annotated[str, Field(description="output directory (overridden by --out)")] = (
        "fivesigma-tracking"
    )


class TrackingData(StrictModel):
    """Your TrackML events, instead of (or besides) generated ones."""

    train: Annotated[
        list[str] | None,
        Field(
            description="directories or event prefixes with truth to train on; default: generate"
        ),
    ] = None
    test: Annotated[
        list[str] | None,
        Field(
            description="directories or event prefixes to reconstruct and score (with "
            "truth) or only reconstruct; default: generate"
        ),
    ] = None
    max_train_events: Annotated[int | None, Field(ge=1)] = None
    max_test_events: Annotated[int | None, Field(ge=1)] = None


class TrackingGenerate(StrictModel):
    """Simulated events (``fivesigma generate tracks``), cached between runs."""

    train_events: Annotated[int | None, Field(ge=1, description="events to train on")] = None
    valid_events: Annotated[int | None, Field(ge=1, description="events for early stopping")] = None
    test_events: Annotated[
        int | None, Field(ge=1, description="events to evaluate on when data.test is unset")
    ] = None
    mu: Annotated[int | None, Field(ge=0, le=300, description="mean pile-up interactions")] = None
    hard_process: Annotated[
        Literal["ttbar", "none"] | None,
        Field(description="hard scatter (quick preset: none, full: ttbar)"),
    ] = None
    options: Annotated[
        dict[str, Any],
        Field(description="further simulator options (see `fivesigma generate tracks -h`)"),
    ] = Field(default_factory=dict)
    jobs: Annotated[int | None, Field(ge=1, description="generation processes")] = None


class TrackingGraph(StrictModel):
    """Stage 1: candidate edges between hits."""

    method: Annotated[
        Literal["layer_pairs", "module_map", "metric_learning"],
        Field(
            description="layer_pairs: learnt layer pairs with phi-slope and z0 cuts; "
            "module_map: learnt module pairs; metric_learning: embedding + radius graph"
        ),
    ] = "metric_learning"
    params: Annotated[dict[str, Any], Field(description="the builder's own settings")] = Field(
        default_factory=dict
    )


class TrackingGNN(StrictModel):
    """Stage 2: the Interaction Network edge classifier (and its optional filter)."""

    hidden: Annotated[int | None, Field(ge=4)] = None
    iterations: Annotated[int | None, Field(ge=1, le=16, description="message passing steps")] = (
        None
    )
    aggr: Annotated[
        str | list[str] | None, Field(description="sum, mean, max, or a list of them")
    ] = None
    filter: Annotated[bool, Field(description="an edge-filter MLP before the GNN")] = False
    epochs: Annotated[int | None, Field(ge=1)] = None
    lr: Annotated[float | None, Field(gt=0)] = None
    device: Annotated[str | None, Field(description="cpu, cuda, cuda:N or auto")] = None
    params: Annotated[dict[str, Any], Field(description="further EdgeClassifier settings")] = Field(
        default_factory=dict
    )


class TrackingBuild(StrictModel):
    """Stage 3: tracks from scored edges."""

    method: Annotated[
        Literal["walk", "cc"],
        Field(
            description="walk: connected components, then a walk through branchings "
            "(acorn's CC & walk); cc: connected components only"
        ),
    ] = "walk"
    threshold: Annotated[float, Field(gt=0, lt=1, description="edge score cut")] = 0.5
    threshold_high: Annotated[
        float | None,
        Field(
            gt=0,
            lt=1,
            description="walk: also explore branches whose edges score above it, keeping "
            "the longest road (null: follow the best edge only)",
        ),
    ] = None
    min_hits: Annotated[int, Field(ge=1, description="shortest track kept")] = 3
    tune: Annotated[
        bool,
        Field(
            description="choose method and threshold by the TrackML score on the "
            "validation events (method/threshold above are then only the fallback)"
        ),
    ] = True


class TrackingBaseline(StrictModel):
    """The classical seeded combinatorial track finder, run on the same events."""

    enabled: bool = True
    params: Annotated[dict[str, Any], Field(description="CombinatorialTracker settings")] = Field(
        default_factory=dict
    )


class TrackingEvaluation(StrictModel):
    """How reconstructed tracks are judged."""

    pt_min: Annotated[
        float, Field(ge=0, description="GeV; particles counted in efficiency and graph metrics")
    ] = 1.0
    eta_max: Annotated[float, Field(gt=0)] = 4.0
    min_particle_hits: Annotated[int, Field(ge=1)] = 3
    min_track_hits: Annotated[int, Field(ge=1)] = 3
    event_displays: Annotated[int, Field(ge=0, le=10, description="events drawn")] = 1


class TrackingConfig(TaskConfig):
    """Track reconstruction: simulate or read TrackML events, build graphs, classify edges,
    build tracks, and score them beside a classical baseline."""

    task: Literal["tracking"] = "tracking"
    seed: Annotated[int, Field(description="seed of simulation, splits and training")] = 1
    output: _Output = Field(default_factory=_Output)
    preset: Annotated[
        Literal["quick", "full"],
        Field(description="quick: minutes on a laptop; full: pile-up 200, longer training"),
    ] = "quick"
    data: TrackingData = Field(default_factory=TrackingData)
    generate: TrackingGenerate = Field(default_factory=TrackingGenerate)
    graph: TrackingGraph = Field(default_factory=TrackingGraph)
    gnn: TrackingGNN = Field(default_factory=TrackingGNN)
    build: TrackingBuild = Field(default_factory=TrackingBuild)
    baseline: TrackingBaseline = Field(default_factory=TrackingBaseline)
    evaluation: TrackingEvaluation = Field(default_factory=TrackingEvaluation)

    def settings(self) -> TrackingSettings:
        """The preset with this config's keys applied."""
        preset = PRESETS[self.preset]
        gen = self.generate
        gnn = dict(preset["gnn"])
        for key in ("hidden", "iterations", "aggr", "epochs", "lr", "device"):
            value = getattr(self.gnn, key)
            if value is not None:
                gnn[key] = value
        gnn.update(self.gnn.params)
        gnn["filter"] = self.gnn.filter
        gnn.setdefault("seed", self.seed)
        build = self.build
        if build.threshold_high is not None and build.threshold_high < build.threshold:
            raise ConfigError(
                f"build.threshold_high ({build.threshold_high}) must be at least "
                f"build.threshold ({build.threshold})"
            )
        return TrackingSettings(
            seed=self.seed,
            train_events=gen.train_events or preset["train_events"],
            valid_events=gen.valid_events or preset["valid_events"],
            test_events=gen.test_events or preset["test_events"],
            mu=gen.mu if gen.mu is not None else preset["mu"],
            generator_options={
                "hard_process": gen.hard_process or preset["hard_process"],
                **gen.options,
            },
            jobs=gen.jobs,
            gnn=gnn,
            embedding_epochs=preset["embedding_epochs"],
            graph_params={**preset["graph"].get(self.graph.method, {}), **self.graph.params},
        )


@dataclass
class TrackingSettings:
    """Resolved sizes and stage settings (what the run uses, written to metrics.json)."""

    seed: int
    train_events: int
    valid_events: int
    test_events: int
    mu: int
    generator_options: dict[str, Any] = field(default_factory=dict)
    jobs: int | None = None
    gnn: dict[str, Any] = field(default_factory=dict)
    embedding_epochs: int = 10
    graph_params: dict[str, Any] = field(default_factory=dict)
