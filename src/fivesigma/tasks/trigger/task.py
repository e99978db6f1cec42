"""``task: trigger``: Level-1 trigger networks, quantised, converted, emulated and judged
by rate against efficiency.

The run (each stage's numbers go to ``metrics.json``):

1. the jet tagger (16 high-level features -> 64 -> 32 -> 32 -> 5): float training, QAT at
   every width of the scan (accuracy from the numpy fixed-point reference, resources and
   latency), hls4ml firmware at the deployed width, its C++ emulation checked bit for bit
   against the reference on every test jet;
2. the L1 stream (``fivesigma generate l1``, cached): zero-bias events and the signals;
3. the AXOL1TL-like VAE encoder and the CICADA-like CNN: float and QAT models, firmware,
   scores of the zero-bias rate events and of each signal for the float, QAT and
   emulated models;
4. the trigger view: thresholds meeting each rate budget, signal efficiencies there,
   rate-efficiency curves, and the simple L1 seeds at the same budgets;
5. outputs: ``metrics.json``, bundles ``models/<network>`` (weights, thresholds, the HLS
   project and its emulation library), then ``report.html``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from fivesigma.core.task import Result, Task
from fivesigma.tasks.trigger.config import TriggerConfig

__all__ = ["TriggerTask"]


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def _jsonable(view: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in view.items() if k != "curves"}


class TriggerTask(Task):
    """QAT, hls4ml firmware emulated bit for bit, rate against efficiency."""

    name = "trigger"
    description = (
        "L1 trigger networks: quantisation-aware training, hls4ml emulation, rate vs efficiency"
    )
    config_model = TriggerConfig
    template_file = "trigger.yaml"

    def check(self, config: TriggerConfig) -> None:
        config.settings()
        if config.hls.enabled:
            from fivesigma.export.hls import require_compiler

            require_compiler()

    def run(self, config: TriggerConfig, out: Path, progress: bool = True) -> Result:
        from fivesigma.report import write_metrics_json
        from fivesigma.tasks.trigger import bundle as trigger_bundle
        from fivesigma.tasks.trigger import stages
        from fivesigma.tasks.trigger.report import write_report

        out = Path(out)
        s = config.settings()
        self.check(config)
        wall0 = time.perf_counter()
        built: dict[str, Any] = {}
        views: dict[str, Any] = {}
        seconds: dict[str, float] = {}
        if "jet_tagger" in s.models:
            t0 = time.perf_counter()
            built["jet_tagger"] = stages.build_jet_tagger(s, progress)
            seconds["jet_tagger"] = time.perf_counter() - t0
        stream = None
        if {"axol1tl", "cicada"} & set(s.models):
            t0 = time.perf_counter()
            stream = stages.load_stream(s, progress)
            seconds["stream"] = time.perf_counter() - t0
            for name, build in (("axol1tl", stages.build_axol1tl), ("cicada", stages.build_cicada)):
                if name in s.models:
                    t0 = time.perf_counter()
                    built[name] = build(s, stream, progress)
                    views[name] = stages.trigger_view(built[name], s)
                    seconds[name] = time.perf_counter() - t0
                    self._say_view(progress, name, views[name], s.budgets_khz)
        metrics: dict[str, Any] = {
            "task": "trigger",
            "settings": {k: v for k, v in vars(s).items()},
            "networks": {},
            "seconds": seconds,
        }
        for name, b in built.items():
            entry = dict(b.metrics)
            if b.scan:
                entry["width_scan"] = b.scan
            if name in views:
                entry["trigger"] = _jsonable(views[name])
            metrics["networks"][name] = entry
        if stream is not None:
            metrics["stream"] = stream.source
            metrics["reference_seeds"] = stages.reference_view(stream, s)
        metrics["wall_seconds"] = time.perf_counter() - wall0

        bundles: dict[str, Path] = {}
        for name, b in built.items():
            thresholds = {}
            if name in views:
                variant = "emulated" if "emulated" in b.scores else "qat"
                thresholds = {
                    budget: rows[variant]["threshold"]
                    for budget, rows in views[name]["budgets"].items()
                }
            bundles[name] = trigger_bundle.save(b, out / "models" / name, thresholds)
        files = {"metrics": write_metrics_json(metrics, out / "metrics.json")}
        try:
            files["report"] = write_report(out / "report.html", s, metrics, built, views)
        except Exception as exc:  # the last stage: never lose the results
            _say(progress, f"report failed ({type(exc).__name__}: {exc}); metrics are kept")
            metrics["report_error"] = f"{type(exc).__name__}: {exc}"
            files["metrics"] = write_metrics_json(metrics, out / "metrics.json")
        return Result(self.name, out, metrics, files, bundles, details=built)

    @staticmethod
    def _say_view(progress: bool, name: str, view: dict[str, Any], budgets: list[float]) -> None:
        for budget in budgets:
            rows = view["budgets"][f"{budget:g}"]
            parts = []
            for variant, row in rows.items():
                eff = ", ".join(f"{k} {v:.3f}" for k, v in row["efficiency"].items())
                parts.append(f"{variant}: {eff}")
            _say(progress, f"{name} at {budget:g} kHz: " + " | ".join(parts))

    # ----------------------------------------------------------------------------------
    def apply(self, bundle: Path, inputs: list[str], out: Path, **options: Any) -> dict[str, Any]:
        from fivesigma.tasks.trigger.apply import apply_trigger

        info = apply_trigger(bundle, inputs, out)
        info["message"] = f"scored {info['events']} events from {info['files']} file(s) -> {out}"
        return info

    def summary(self, result: Result) -> str:
        m = result.metrics
        lines = []
        tagger = m["networks"].get("jet_tagger")
        if tagger:
            lines.append(
                f"jet tagger: accuracy float {tagger['accuracy_float']:.4f}, "
                f"QAT {tagger['width']} bits {tagger['accuracy_qat']:.4f}"
                + (
                    f", emulated {tagger['accuracy_emulated']:.4f} (bit exact: "
                    f"{tagger['emulation']['bit_exact']})"
                    if "emulation" in tagger
                    else ""
                )
            )
        for name in ("axol1tl", "cicada"):
            net = m["networks"].get(name)
            if not net:
                continue
            for budget, rows in net["trigger"]["budgets"].items():
                best = rows.get("emulated") or rows.get("qat")
                eff = ", ".join(f"{k} {v:.3f}" for k, v in best["efficiency"].items())
                lines.append(f"{name} at {budget} kHz: {eff}")
        lines.append(f"wrote {result.out_dir}/report.html, metrics.json, models/")
        return "\n".join(lines)
