"""``task: fastsim``: generative surrogates of the detector, validated against it.

The run (each stage's numbers go to ``metrics.json``):

1. jets (:func:`fivesigma.tasks.fastsim.stages.run_jets`): (gen jet, reco jet) pairs
   from Pythia8 and the jet task's detector response (cached); a conditional neural
   spline flow, conditional flow matching and a conditional GAN learn p(reco | gen);
   validation on held-out gen jets (W1, correlations, response, classifier AUC,
   oversampling gain, speed against the response timed in this run);
2. calorimeter (:func:`fivesigma.tasks.fastsim.stages.run_calorimeter`): showers of
   :class:`fivesigma.physics.calorimeter.ShowerSimulator`, surrogates conditioned on
   incident energy and angle, CaloChallenge-style checks against stated tolerances;
3. outputs: ``metrics.json``, bundles ``models/jets_<model>``, ``models/calo_<model>``
   (``fivesigma apply`` draws reco jets for gen-jet files), then ``report.html``.  A
   failing report never loses the earlier outputs.

Every surrogate's samples are checked before anything is written: a non-finite value
stops the run with one line (:class:`fivesigma.errors.ModelError`) and no output.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from fivesigma.core.task import Result, Task
from fivesigma.tasks.fastsim.config import FastsimConfig

__all__ = ["FastsimTask"]


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


class FastsimTask(Task):
    """Fast simulation: flow, flow-matching and GAN surrogates of jets and showers."""

    name = "fastsim"
    description = "fast simulation: flows, flow matching and GANs for jets and calorimeter showers"
    config_model = FastsimConfig
    template_file = "fastsim.yaml"

    def check(self, config: FastsimConfig) -> None:
        config.settings()

    def run(self, config: FastsimConfig, out: Path, progress: bool = True) -> Result:
        from fivesigma.report import write_metrics_json
        from fivesigma.tasks.fastsim import report as fs_report
        from fivesigma.tasks.fastsim.stages import run_calorimeter, run_jets

        out = Path(out)
        s = config.settings()
        wall0 = time.perf_counter()
        jets = run_jets(s, progress) if s.jets else None
        calo = run_calorimeter(s, progress) if s.calorimeter else None
        metrics = fs_report.metrics(s, jets, calo)
        metrics["wall_seconds"] = time.perf_counter() - wall0

        bundles: dict[str, Path] = {}
        for prefix, stage in (("jets", jets), ("calo", calo)):
            if stage is None:
                continue
            for model, sur in stage.surrogates.items():
                bundles[f"{prefix}_{model}"] = sur.save(
                    out / "models" / f"{prefix}_{model}",
                    {"target": prefix, "metrics": metrics[prefix]["models"][model]},
                )
        files = {"metrics": write_metrics_json(metrics, out / "metrics.json")}
        try:
            files["report"] = fs_report.write_report(out / "report.html", s, metrics, jets, calo)
        except Exception as exc:  # the report is the last stage: never lose the results
            _say(progress, f"report failed ({type(exc).__name__}: {exc}); metrics are kept")
            metrics["report_error"] = f"{type(exc).__name__}: {exc}"
            files["metrics"] = write_metrics_json(metrics, out / "metrics.json")
        return Result(self.name, out, metrics, files, bundles, details={"jets": jets, "calo": calo})

    def apply(self, bundle: Path, inputs: list[str], out: Path, **options: Any) -> dict[str, Any]:
        from fivesigma.tasks.fastsim.apply import apply_surrogate

        info = apply_surrogate(bundle, inputs, out, **options)
        info["message"] = (
            f"drew {info['rows']} rows for {info['files']} file(s) with the "
            f"{info['model']} surrogate -> {out}"
        )
        return info

    def summary(self, result: Result) -> str:
        m = result.metrics
        lines = []
        if "jets" in m:
            j = m["jets"]
            lines.append(
                f"jets: {j['pairs']} gen/reco pairs; detector response "
                f"{j['detector_jets_per_second']:.3g} jets/s"
            )
            for name, row in j["models"].items():
                lines.append(
                    f"  {name:<14} AUC {row['classifier_auc']:.3f}  W1/std "
                    f"{row['w1_over_std_mean']:.3f}  {row['jets_per_second']:.3g} jets/s "
                    f"({row['speedup']:.0f}x)  oversampling gain {row['oversampling_gain_mass']:.1f}"
                )
        if "calo" in m:
            c = m["calo"]
            lines.append(f"calorimeter: {c['showers']} showers, {c['voxels']} voxels")
            for name, row in c["models"].items():
                ok = "within" if row["all_passed"] else "OUTSIDE"
                lines.append(
                    f"  {name:<14} AUC {row['classifier_auc']:.3f}  {ok} tolerances  "
                    f"{row['speedup']:.0f}x the simulation"
                )
        lines.append(f"wrote {result.out_dir}/report.html, metrics.json, models/")
        return "\n".join(lines)
