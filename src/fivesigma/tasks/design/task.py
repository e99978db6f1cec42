"""``task: design``: reinforcement learning that runs the experiment.

The run (numbers to ``metrics.json``):

1. the rate model: zero-bias and signal L1 samples (``fivesigma generate l1``, cached) at
   a grid of pile-up values, reduced to the controlled seeds' scores; a budget that no
   thresholds within the bounds can meet is refused here (one line, no output);
2. the trigger study: PPO and SAC agents set K thresholds every step of an LHC fill;
   fixed thresholds tuned at the start of the fill, a PID controller on the total rate
   and an optuna schedule are the baselines; all judged on the same held-out fills over
   several seeds (:mod:`fivesigma.tasks.design.stages`);
3. the detector study: tracker layouts under a cost budget (analytic Gluckstern +
   multiple-scattering model) from the agents, optuna, a genetic algorithm, random
   search and the hand design;
4. outputs: ``metrics.json``, bundles ``models/trigger_<agent>`` (the first seed's policy,
   for ``fivesigma apply``), then ``report.html``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.core.task import Result, Task
from fivesigma.tasks.design.config import DesignConfig

__all__ = ["DesignTask"]


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


class DesignTask(Task):
    """RL agents that run the trigger through a fill and lay out a tracker."""

    name = "design"
    description = (
        "RL runs the experiment: trigger thresholds through a fill, tracker layout; vs baselines"
    )
    config_model = DesignConfig
    template_file = "design.yaml"

    def check(self, config: DesignConfig) -> None:
        config.settings()

    def run(self, config: DesignConfig, out: Path, progress: bool = True) -> Result:
        from fivesigma.report import write_metrics_json
        from fivesigma.tasks.design import bundle as design_bundle
        from fivesigma.tasks.design import stages
        from fivesigma.tasks.design.env import ThresholdMap
        from fivesigma.tasks.design.fill import load_rate_model
        from fivesigma.tasks.design.report import write_report

        out = Path(out)
        s = config.settings()
        wall0 = time.perf_counter()
        seconds: dict[str, float] = {}
        t0 = time.perf_counter()
        model, source = load_rate_model(s, progress)
        budget = stages.check_budget(model, s, ThresholdMap(s.bounds))
        seconds["stream"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        trig = stages.trigger_study(model, s, progress)
        seconds["trigger"] = time.perf_counter() - t0
        det = None
        if s.detector["enabled"]:
            t0 = time.perf_counter()
            det = stages.detector_study(s.detector, s.agents, s.n_seeds, s.seed, progress)
            seconds["detector"] = time.perf_counter() - t0
        metrics: dict[str, Any] = {
            "task": "design",
            "settings": _jsonable(vars(s)),
            "stream": source,
            "budget_check": budget,
            "trigger": {
                "summary": trig["summary"],
                "runs": _jsonable(trig["runs"]),
                "heldout_fills": trig["heldout"],
            },
            "seconds": seconds,
        }
        if det is not None:
            metrics["detector"] = _jsonable(det)
        bundles: dict[str, Path] = {}
        for kind, policies in trig["policies"].items():
            name = f"trigger_{kind}"
            bundles[name] = design_bundle.save(
                policies[0],
                trig["map"],
                trig["mu_scale"],
                out / "models" / name,
                {"heldout": trig["summary"]["methods"][kind], "seed": s.seed},
            )
        metrics["wall_seconds"] = time.perf_counter() - wall0
        files = {"metrics": write_metrics_json(metrics, out / "metrics.json")}
        try:
            files["report"] = write_report(out / "report.html", s, metrics, trig, det)
        except Exception as exc:  # the last stage: never lose the results
            _say(progress, f"report failed ({type(exc).__name__}: {exc}); metrics are kept")
            metrics["report_error"] = f"{type(exc).__name__}: {exc}"
            files["metrics"] = write_metrics_json(metrics, out / "metrics.json")
        return Result(
            self.name, out, metrics, files, bundles, details={"trigger": trig, "detector": det}
        )

    def apply(self, bundle: Path, inputs: list[str], out: Path, **options: Any) -> dict[str, Any]:
        from fivesigma.tasks.design.apply import apply_policy

        info = apply_policy(bundle, inputs, out)
        info["message"] = f"thresholds for {info['rows']} rows of {info['files']} file(s) -> {out}"
        return info

    def summary(self, result: Result) -> str:
        m = result.metrics
        lines = []
        methods = m["trigger"]["summary"]["methods"]
        for name, row in methods.items():
            e, v = row["integrated_efficiency"], row["violation"]
            lines.append(
                f"{name:6s} efficiency {e['mean']:.4f} ± {e['std']:.4f}, "
                f"violation {v['mean']:.4f} ± {v['std']:.4f}"
            )
        for agent, v in m["trigger"]["summary"]["verdict"].items():
            lines.append(
                f"{agent}: {'beats' if v['beats_fixed_and_pid'] else 'does NOT beat'} "
                "fixed and PID on held-out fills"
            )
        if "detector" in m:
            best = max(m["detector"]["summary"].items(), key=lambda kv: kv[1]["score"]["mean"])
            lines.append(
                f"detector: best layout score from {best[0]} ({best[1]['score']['mean']:.3f})"
            )
        lines.append(f"wrote {result.out_dir}/report.html, metrics.json, models/")
        return "\n".join(lines)
