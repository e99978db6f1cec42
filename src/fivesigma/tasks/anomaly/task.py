"""``task: anomaly``: a model-agnostic search on dijets, judged by SIC, ending in a bump hunt.

The run (each stage's numbers go to ``metrics.json``):

1. samples: QCD dijets and a W'-like resonance signal (``fivesigma generate dijets``,
   cached), the user's generator files, or an LHC Olympics R&D feature file;
2. the search (:mod:`fivesigma.tasks.anomaly.search`): non-overlapping data, template and
   test samples; signal injected at the nominal S/B; every method trained
   ``retrainings`` times and judged on the test events of the signal region; the S/B
   scan; the background-sculpting check; the bump hunt at every S/B;
3. the autoencoder asymmetry on jet images (top against QCD, both ways);
4. outputs: ``metrics.json``, bundles ``models/<method>`` (``fivesigma apply`` scores
   new events), then ``report.html``.  A failing report never loses the earlier outputs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.core.task import Result, Task
from fivesigma.errors import DataError
from fivesigma.tasks.anomaly.config import AnomalyConfig, AnomalySettings

__all__ = ["AnomalyTask"]


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def _read_all(paths: list[Path]) -> Any:
    from fivesigma.tasks.anomaly.data import DijetTable, read_dijets

    tables = [read_dijets(p) for p in paths]
    return tables[0] if len(tables) == 1 else DijetTable.concat(tables)


class AnomalyTask(Task):
    """Anomaly detection: autoencoders to CATHODE beside their ceilings, SIC, bump hunt."""

    name = "anomaly"
    description = "anomaly detection on dijets: autoencoders, flows, CWoLa, CATHODE; SIC; bump hunt"
    config_model = AnomalyConfig
    template_file = "anomaly.yaml"

    def check(self, config: AnomalyConfig) -> None:
        config.settings()

    # ----------------------------------------------------------------------------------
    def samples(
        self, config: AnomalyConfig, s: AnomalySettings, progress: bool = True
    ) -> tuple[Any, Any, dict[str, Any]]:
        """Background and signal tables, and where they came from."""
        data = config.data
        if data.lhco:
            path = config.resolve(data.lhco)
            table = _read_all([path])
            label = np.asarray(table.label)
            if not (label == 1).any() or not (label == 0).any():
                raise DataError(
                    f"'{path}' must hold background (label 0) and signal (label 1) events; "
                    f"found labels {sorted(set(label.tolist()))}"
                )
            return table.take(label == 0), table.take(label == 1), {"lhco": str(path)}
        source: dict[str, Any] = {}
        if data.background:
            background = _read_all([config.resolve(p) for p in data.background])
            source["background"] = [str(config.resolve(p)) for p in data.background]
        else:
            background = self._generated("qcd", s.background_events, s, progress)
            source["background"] = f"generated: {s.background_events} QCD dijets"
        if data.signal:
            signal = _read_all([config.resolve(p) for p in data.signal])
            source["signal"] = [str(config.resolve(p)) for p in data.signal]
        else:
            signal = self._generated("signal", s.signal_events, s, progress)
            source["signal"] = f"generated: {s.signal_events} signal events"
        return background, signal, source

    def _generated(self, process: str, events: int, s: AnomalySettings, progress: bool) -> Any:
        from fivesigma.generate import cached_sample
        from fivesigma.tasks.anomaly.data import read_dijets

        extra = s.background_options if process == "qcd" else s.generator_options
        options = {"process": process, **extra}
        _say(progress, f"dijets: {events} {process} events (cached after the first run) ...")
        sample = cached_sample(
            "dijets",
            events=events,
            seed=s.seed + (0 if process == "qcd" else 5003),
            jobs=s.jobs,
            progress=progress,
            options=options,
        )
        return read_dijets(next(iter(sample.files.values())))

    # ----------------------------------------------------------------------------------
    def _asymmetry(self, s: AnomalySettings, progress: bool) -> dict[str, Any]:
        """The image autoencoder trained on QCD against top, and the reverse."""
        from fivesigma.generate import cached_sample
        from fivesigma.io.jets import read_jets
        from fivesigma.tasks.anomaly.images import autoencoder_asymmetry, jet_images

        images = {}
        for process in ("qcd", "top"):
            _say(progress, f"asymmetry: {s.asymmetry_jets} {process} jets (cached) ...")
            sample = cached_sample(
                "jets",
                events=s.asymmetry_jets,
                seed=s.seed,
                jobs=s.jobs,
                progress=progress,
                options={"process": process},
            )
            parts = read_jets([next(iter(sample.files.values()))]).constituents
            images[process] = jet_images(
                parts.px, parts.py, parts.pz, parts.energy, npix=40, radius=0.8
            )
        from fivesigma.tasks.anomaly.search import method_settings

        settings = method_settings(s, "autoencoder", s.seed, False)
        result = autoencoder_asymmetry(images["qcd"], images["top"], settings)
        result["jets_per_class"] = s.asymmetry_jets
        return result

    # ----------------------------------------------------------------------------------
    def run(self, config: AnomalyConfig, out: Path, progress: bool = True) -> Result:
        from fivesigma.report import write_metrics_json
        from fivesigma.tasks.anomaly import report as anomaly_report
        from fivesigma.tasks.anomaly.search import PUBLISHED_MAX_SIC, run_search

        out = Path(out)
        s = config.settings()
        wall0 = time.perf_counter()
        background, signal, source = self.samples(config, s, progress)
        for name, table in (("background", background), ("signal", signal)):
            missing = [f for f in (*s.features, "mjj") if f not in table.columns]
            if missing:
                raise DataError(
                    f"the {name} sample ({table.source}) has no column(s) "
                    f"{', '.join(missing)}; it has {', '.join(sorted(table.columns))}"
                )
        result = run_search(background, signal, s, config.bump_hunt, progress, jobs=s.jobs)

        asymmetry = None
        if config.asymmetry.enabled:
            t0 = time.perf_counter()
            asymmetry = self._asymmetry(s, progress)
            asymmetry["seconds"] = time.perf_counter() - t0

        metrics = anomaly_report.metrics(config, s, source, result, asymmetry)
        metrics["published_max_sic"] = PUBLISHED_MAX_SIC
        metrics["wall_seconds"] = time.perf_counter() - wall0

        models = out / "models"
        bundles: dict[str, Path] = {}
        for method, model in result.models.items():
            model.feature_names_ = list(s.features)
            bundles[method] = model.save(models / method)
        files = {"metrics": write_metrics_json(metrics, out / "metrics.json")}
        try:
            files["report"] = anomaly_report.write_report(
                out / "report.html", config, s, metrics, result, asymmetry
            )
        except Exception as exc:  # the report is the last stage: never lose the results
            _say(progress, f"report failed ({type(exc).__name__}: {exc}); metrics are kept")
            metrics["report_error"] = f"{type(exc).__name__}: {exc}"
            files["metrics"] = write_metrics_json(metrics, out / "metrics.json")
        return Result(self.name, out, metrics, files, bundles, details=result)

    # ----------------------------------------------------------------------------------
    def apply(self, bundle: Path, inputs: list[str], out: Path, **options: Any) -> dict[str, Any]:
        from fivesigma.tasks.anomaly.apply import apply_detector

        info = apply_detector(bundle, inputs, out)
        info["message"] = f"scored {info['events']} events from {info['files']} file(s) -> {out}"
        return info

    def summary(self, result: Result) -> str:
        m = result.metrics
        lines = [f"anomaly search at S/B {m['injection']['s_over_b_sr']:.4f} (signal region):"]
        for name, row in m["methods"].items():
            lines.append(
                f"  {name:<11} max SIC {row['max_sic_mean']:6.2f} ± {row['max_sic_std']:.2f}"
                f"  AUC {row['auc_mean']:.3f}"
            )
        for point in m.get("scan", []):
            if "bump_hunt_significance" in point:
                lines.append(
                    f"  bump hunt at S/B {point['s_over_b']:.4f}: "
                    f"{point['bump_hunt_significance']:+.2f} sigma"
                )
        lines.append(f"wrote {result.out_dir}/report.html, metrics.json, models/")
        return "\n".join(lines)
