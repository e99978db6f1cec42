"""``task: tracking``: simulate or read TrackML events, train the graph pipeline and the
classical baseline, reconstruct the test events, and judge both.

The run, stage by stage (each stage's numbers go to ``metrics.json``):

1. events: ``data.train``/``data.test`` TrackML directories, or simulated events
   (``fivesigma generate tracks``, cached); training, validation and test events never
   overlap (test events come from another seed);
2. graph: the candidate-edge builder is fitted on the training events; edge efficiency,
   purity and size on the validation and test events;
3. edge classifier: the Interaction Network is trained on the training graphs (early
   stopping on the validation graphs);
4. tracks: the test events are reconstructed by the GNN chain and by the baseline,
   timed per stage; TrackML score (as is and normalised), double-majority and ATLAS
   efficiency, fake and duplicate rates, and their curves against pT and eta;
5. outputs: ``report.html``, ``metrics.json``, one TrackML submission CSV per test event
   and method, and bundles ``models/gnn`` and ``models/baseline`` (``fivesigma apply``),
   plus ``models/gnn.onnx``.

A failing late stage (the report) never loses the earlier ones: metrics, submissions and
bundles are written first.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fivesigma.core.task import Result, Task
from fivesigma.errors import DataError, FivesigmaError
from fivesigma.tasks.tracking.config import TrackingConfig, TrackingSettings
from fivesigma.tasks.tracking.hits import Hits, submission_track_ids

__all__ = ["TrackingTask", "event_prefixes", "load_hits", "write_submission"]


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Events


def event_prefixes(paths: list[str | Path], limit: int | None = None) -> list[Path]:
    """Event prefixes (``dir/eventNNNNNNNNN``) of directories and prefixes, in order."""
    from fivesigma.io.trackml import event_ids

    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            ids = event_ids(path)
            if not ids:
                raise DataError(f"'{path}' holds no TrackML events (eventNNNNNNNNN-hits.csv[.gz])")
            out += [path / f"event{i:09d}" for i in ids]
        else:
            out.append(path)
    return out[:limit] if limit else out


def _has_part(prefix: Path, part: str) -> bool:
    return any((prefix.parent / f"{prefix.name}-{part}{s}").is_file() for s in (".csv", ".csv.gz"))


def _detectors_file(prefix: Path) -> Path | None:
    for name in ("detectors.csv", "detectors.csv.gz"):
        if (prefix.parent / name).is_file():
            return prefix.parent / name
    return None


def load_hits(prefix: Path, need_truth: bool = False, check_geometry: bool = True) -> Hits:
    """The :class:`Hits` of one event (truth and particles when present; required when
    ``need_truth``); hits on modules unknown to a ``detectors.csv`` beside them are an
    error.  With a cells file, the hits carry their cluster shapes, read in the frames of
    that ``detectors.csv`` (or of the packaged TrackML detector when there is none)."""
    from fivesigma.io import trackml
    from fivesigma.physics.tracker import geometry_from

    parts = ["hits"]
    if need_truth or _has_part(prefix, "truth"):
        parts += ["truth", "particles"]
    if _has_part(prefix, "cells"):
        parts.append("cells")
    event = trackml.read_event(prefix, parts=parts)
    detectors = _detectors_file(prefix)
    if check_geometry and detectors is not None:
        trackml.check_geometry(event, trackml.read_detectors(detectors))
    geometry = geometry_from(detectors) if event.cells is not None else None
    return Hits.from_event(event, geometry)


def write_submission(hits: Hits, labels: np.ndarray, path: Path) -> Path:
    """A TrackML submission CSV (``event_id, hit_id, track_id``), written atomically."""
    from fivesigma.core.files import atomic_file

    table = pd.DataFrame(
        {
            "event_id": hits.event_id,
            "hit_id": hits.hit_id,
            "track_id": submission_track_ids(labels),
        }
    )
    with atomic_file(path) as tmp:
        table.to_csv(tmp, index=False)
    return path


# --------------------------------------------------------------------------------------


class TrackingTask(Task):
    """Graph-neural-network tracking beside a classical baseline, scored like TrackML."""

    name = "tracking"
    description = (
        "track reconstruction: graph construction, Interaction Network, CC & walk, TrackML score"
    )
    config_model = TrackingConfig
    template_file = "tracking.yaml"
    apply_writes_directory = True

    def check(self, config: TrackingConfig) -> None:
        config.settings()

    # ----------------------------------------------------------------------------------
    def _generated(self, s: TrackingSettings, events: int, seed: int, progress: bool) -> Path:
        from fivesigma.generate import cached_sample

        options = {"mu": s.mu, **s.generator_options}
        sample = cached_sample(
            "tracks", events=events, seed=seed, jobs=s.jobs, progress=progress, options=options
        )
        return sample.directory

    def _events(
        self, config: TrackingConfig, s: TrackingSettings, progress: bool
    ) -> tuple[list[Hits], list[Hits], list[Hits], dict[str, Any]]:
        data = config.data
        source: dict[str, Any] = {}
        if data.train:
            prefixes = event_prefixes(
                [config.resolve(p) for p in data.train], data.max_train_events
            )
            if len(prefixes) < 2:
                raise DataError(
                    f"data.train holds {len(prefixes)} event(s); training needs at least 2 "
                    "(one is kept for validation)"
                )
            n_valid = max(1, min(s.valid_events, len(prefixes) // 5))
            train_p, valid_p = prefixes[:-n_valid], prefixes[-n_valid:]
            source["train"] = [str(p) for p in train_p]
        else:
            _say(
                progress,
                f"simulating {s.train_events + s.valid_events} training events "
                f"at pile-up {s.mu} (cached) ...",
            )
            directory = self._generated(s, s.train_events + s.valid_events, s.seed, progress)
            prefixes = event_prefixes([directory])
            train_p, valid_p = prefixes[: s.train_events], prefixes[s.train_events :]
            source["train"] = f"simulated: {len(prefixes)} events, mu={s.mu}, {directory}"
        if data.test:
            test_p = event_prefixes([config.resolve(p) for p in data.test], data.max_test_events)
            source["test"] = [str(p) for p in test_p]
        else:
            _say(progress, f"simulating {s.test_events} test events (another seed) ...")
            directory = self._generated(s, s.test_events, s.seed + 7919, progress)
            test_p = event_prefixes([directory])
            source["test"] = f"simulated: {len(test_p)} events, mu={s.mu}, {directory}"
        t0 = time.perf_counter()
        train = [load_hits(p, need_truth=True) for p in train_p]
        valid = [load_hits(p, need_truth=True) for p in valid_p]
        test = [load_hits(p) for p in test_p]
        source["read_seconds"] = time.perf_counter() - t0
        return train, valid, test, source

    # ----------------------------------------------------------------------------------
    def run(self, config: TrackingConfig, out: Path, progress: bool = True) -> Result:
        from fivesigma.tasks.tracking import stages

        out = Path(out)
        s = config.settings()
        wall0 = time.perf_counter()
        train, valid, test, source = self._events(config, s, progress)
        info = stages.describe_events(train, valid, test)
        _say(
            progress,
            f"events: {info['train']['events']} train ({info['train']['hits']:.0f} "
            f"hits/event), {info['valid']['events']} valid, "
            f"{info['test']['events']} test",
        )
        fitted = stages.fit_all(config, s, train, valid, progress)
        evaluated = stages.evaluate_all(config, fitted, test, out, progress)

        models = out / "models"
        bundles = {
            "gnn": fitted.gnn.save(models / "gnn", metadata={"settings": s.gnn}),
        }
        if fitted.baseline is not None:
            bundles["baseline"] = fitted.baseline.save(models / "baseline")
        files: dict[str, Path] = {}
        try:
            files["onnx"] = fitted.gnn.classifier.export_onnx(models / "gnn.onnx")
        except FivesigmaError as err:  # the bundle still applies without ONNX
            evaluated.notes.append(f"ONNX export failed: {err}")

        metrics = {
            "task": self.name,
            "preset": config.preset,
            "settings": {
                "train_events": len(train),
                "valid_events": len(valid),
                "test_events": len(test),
                "mu": s.mu if not config.data.train else None,
                "graph": config.graph.method,
                "gnn": s.gnn,
                "build": fitted.gnn.build,
                "evaluation": config.evaluation.model_dump(),
            },
            "data": source | {"events": info},
            "graph": fitted.graph_metrics | evaluated.graph_metrics,
            "training": fitted.training,
            "methods": evaluated.methods,
            "curves": evaluated.curves,
            "notes": evaluated.notes,
            "wall_seconds": time.perf_counter() - wall0,
        }
        metrics_path = out / "metrics.json"
        metrics_path.write_text(json.dumps(_finite(metrics), indent=1) + "\n")
        files["metrics"] = metrics_path
        files["submissions"] = out / "submissions"
        try:
            from fivesigma.tasks.tracking.report import write_report

            files["report"] = write_report(out / "report.html", metrics, evaluated, fitted)
        except Exception as err:
            note = f"report failed: {type(err).__name__}: {err}"
            metrics["notes"].append(note)
            metrics_path.write_text(json.dumps(_finite(metrics), indent=1) + "\n")
            _say(progress, note)
        return Result(self.name, out, metrics, files, bundles, details=evaluated)

    # ----------------------------------------------------------------------------------
    def apply(self, bundle: Path, inputs: list[str], out: Path, **options: Any) -> dict[str, Any]:
        from fivesigma.core.files import ensure_writable_dir
        from fivesigma.tasks.tracking.pipeline import TrackingPipeline

        prefixes = event_prefixes(list(inputs))
        for p in prefixes:  # every input is checked before anything is written
            if not _has_part(p, "hits"):
                raise DataError(f"'{p}': no hits file ({p.name}-hits.csv or .csv.gz)")
        if any(Path(out).resolve() == p.parent.resolve() for p in prefixes):
            raise DataError(
                f"--out '{out}' is an input directory; submissions go to a directory of "
                "their own: choose another --out"
            )
        pipeline = TrackingPipeline.load(bundle)
        out = ensure_writable_dir(out)
        scores = []
        for prefix in prefixes:
            hits = load_hits(prefix)
            rec = pipeline.reconstruct(hits)
            write_submission(hits, rec.labels, out / f"{prefix.name}-submission.csv")
            if hits.has_truth:
                from fivesigma.metrics.tracking import trackml_score

                scores.append(
                    trackml_score(
                        hits.hit_id,
                        submission_track_ids(rec.labels),
                        hits.hit_id,
                        hits.particle_id,
                        hits.weight,
                    )
                )
        message = f"reconstructed {len(prefixes)} event(s) -> {out}/eventNNNNNNNNN-submission.csv"
        if scores:
            message += f" (mean TrackML score {np.mean(scores):.4f})"
        return {"events": len(prefixes), "out": str(out), "message": message}

    def summary(self, result: Result) -> str:
        m = result.metrics
        lines = [f"tracking: {m['settings']['test_events']} test event(s)"]
        for name, row in m["methods"].items():
            if "score" in row:
                lines.append(
                    f"  {name:9s} TrackML score {row['score']:.4f} (normalised "
                    f"{row['score_normalised']:.4f}), DM eff {row['dm_efficiency']:.3f}, "
                    f"fake {row['dm_fake_rate']:.3f}, {row['cpu_total']:.2f} s CPU/event"
                )
            else:
                lines.append(f"  {name:9s} {row['cpu_total']:.2f} s CPU/event (no truth)")
        lines.append(
            f"wrote {result.out_dir}/report.html, metrics.json, submissions/, models/ "
            f"({m['wall_seconds']:.0f} s)"
        )
        return "\n".join(lines)


def _finite(obj: Any) -> Any:
    """JSON-safe: NaN and infinities become null."""
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
