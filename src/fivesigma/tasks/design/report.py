"""The design report: the trigger agents against the baselines on held-out fills, one
fill traced step by step, the rate model, and the detector layouts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.report.builder import Box, Figure, Grid, KeyValues, Report, Table, Text

__all__ = ["write_report"]

LABELS = {
    "fixed": "fixed (tuned at fill start)",
    "pid": "PID on total rate",
    "bo": "optuna schedule in mu",
    "ppo": "PPO agent",
    "sac": "SAC agent",
    "random": "random search",
    "ga": "genetic algorithm",
}


def _pm(entry: dict[str, float], digits: int = 4) -> str:
    return f"{entry['mean']:.{digits}f} ± {entry['std']:.{digits}f}"


def _verdict_lines(summary: dict[str, Any]) -> list[str]:
    lines = []
    tol = summary["violation_tolerance"]
    for agent, v in summary["verdict"].items():
        for base in ("fixed", "pid"):
            b = v[base]
            word = "beats" if b["wins"] else "does NOT beat"
            lines.append(
                f"{agent.upper()} {word} {LABELS[base]}: integrated efficiency "
                f"{b['efficiency_gain']:+.4f}, budget violation {b['violation_change']:+.4f} "
                f"(tolerance {tol:g}); better on {b['seeds_won']} seed(s)"
            )
    return lines


def _trace_figure(trace: dict[str, Any], budget: float) -> Any:
    def draw() -> Any:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for name, run in trace.items():
            steps = np.arange(run["mu"].size)
            axes[0].plot(steps, run["rate_khz"] / budget, label=LABELS.get(name, name))
            axes[1].plot(steps, run["efficiency"], label=LABELS.get(name, name))
        axes[0].axhline(1.0, color="k", ls="--", lw=1)
        axes[0].set_xlabel("control step")
        axes[0].set_ylabel("rate / budget")
        axes[1].set_xlabel("control step")
        axes[1].set_ylabel("mean signal efficiency")
        axes[1].legend(fontsize=8)
        return fig

    return draw


def _threshold_figure(trace: dict[str, Any], seeds: list[str]) -> Any:
    def draw() -> Any:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(seeds), figsize=(3.2 * len(seeds), 3.4))
        axes = np.atleast_1d(axes)
        for name, run in trace.items():
            for k, ax in enumerate(axes):
                ax.plot(run["mu"], run["thresholds"][:, k], label=LABELS.get(name, name))
        for k, ax in enumerate(axes):
            ax.set_xlabel("pile-up")
            ax.set_ylabel(f"{seeds[k]} threshold [GeV]")
        axes[0].legend(fontsize=7)
        return fig

    return draw


def _layout_figure(runs: dict[str, list[dict[str, Any]]], r_max: float) -> Any:
    def draw() -> Any:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.6))
        for i, rows in enumerate(runs.values()):
            r = rows[0]["radii_mm"]
            ax.scatter(r, [i] * len(r), marker="|", s=300)
        ax.set_yticks(range(len(runs)), [LABELS.get(n, n) for n in runs])
        ax.set_xlim(0, r_max * 1.05)
        ax.set_xlabel("layer radius [mm] (first seed)")
        return fig

    return draw


def write_report(
    path: Path,
    s: Any,
    metrics: dict[str, Any],
    trig: dict[str, Any] | None,
    det: dict[str, Any] | None,
) -> Path:
    rep = Report(
        "Design: reinforcement learning that runs the experiment",
        subtitle="trigger thresholds through an LHC fill; tracker layout",
    )
    if trig is not None:
        summ = trig["summary"]
        rows = []
        for name, m in summ["methods"].items():
            rows.append(
                [
                    LABELS.get(name, name),
                    _pm(m["integrated_efficiency"]),
                    _pm(m["violation"]),
                    _pm(m["violation_fraction"], 3),
                    f"{m['sim_steps']['mean']:.0f}",
                ]
            )
        sec = rep.section("Trigger agent on held-out fills")
        sec.add(
            Box([Text(line) for line in _verdict_lines(summ)]),
            Text(
                f"{s.heldout_fills} held-out fills, {s.n_seeds} seeds (mean ± std over seeds); "
                f"budget {s.budget_khz:g} kHz; {len(s.seeds)} seeds controlled "
                f"({', '.join(s.seeds)}); channels {', '.join(s.signals)}. Integrated "
                "efficiency: luminosity-weighted mean over the fill of the mean channel "
                "efficiency; violation: luminosity-weighted mean of max(0, rate/budget - 1)."
            ),
            Table(
                [
                    "method",
                    "integrated efficiency",
                    "budget violation",
                    "steps over budget",
                    "simulated steps",
                ],
                rows,
            ),
            Grid(
                [
                    Figure(
                        _trace_figure(trig["trace"], s.budget_khz),
                        caption="the first held-out fill, first seed",
                    ),
                    Figure(
                        _threshold_figure(trig["trace"], s.seeds),
                        caption="thresholds against pile-up on that fill",
                    ),
                ]
            ),
        )
        src = metrics.get("stream", {})
        rep.section("Rate model").add(
            Text(
                "Rates: zero-bias events passing any seed x 40 MHz x 2544/3564, from samples "
                "at each grid pile-up, log-linear in mu between grid points; efficiencies "
                "linear. The smallest rate step is one zero-bias event: "
                f"{src.get('smallest_rate_step_khz', float('nan')):.2f} kHz."
            ),
            KeyValues(src),
            KeyValues(metrics.get("budget_check", {}), header=("feasibility", "value")),
        )
    if det is not None:
        rows = []
        for name, m in det["summary"].items():
            rows.append(
                [
                    LABELS.get(name, name),
                    _pm(m["score"]),
                    _pm(m["efficiency"], 5),
                    _pm(m["resolution_gain"], 3),
                    _pm(m["cost"], 2),
                    _pm(m["layers"], 1),
                    f"{m['within_budget']:.2f}",
                ]
            )
        rep.section("Detector design").add(
            Text(
                f"Up to {s.detector['max_layers']} barrel layers in "
                f"[{s.detector['r_min_mm']:g}, {s.detector['r_max_mm']:g}] mm, cost budget "
                f"{s.detector['budget']:g}; {det['evaluations']} evaluated layouts per method "
                "and seed. Score: tracking efficiency x geometric-mean resolution gain over "
                "the reference (equally spaced, every layer), minus 2 x relative cost excess. "
                "A PID controller has no meaning for a static design and is left out."
            ),
            Table(
                [
                    "method",
                    "score",
                    "efficiency",
                    "resolution gain",
                    "cost",
                    "layers",
                    "within budget",
                ],
                rows,
            ),
            Figure(_layout_figure(det["runs"], s.detector["r_max_mm"])),
        )
    rep.section("Settings").add(KeyValues(metrics["settings"]))
    return rep.write(path)
