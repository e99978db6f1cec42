"""The scan report: the excluded region and its boundary, and the oracle-call comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.report.builder import Box, Figure, KeyValues, Report, Section, Table, Text
from fivesigma.report.style import color, exp_label

__all__ = ["write_report"]

_LABELS = {"mass": "m(Z') [GeV]", "g_quark": "g_q / g_q(SSM)", "g_lepton": "g_l / g_l(SSM)"}


def _region_figure(space: Any, run: Any, calls: int, gp: Any, nodes: Any, truth: Any) -> Any:
    import matplotlib.pyplot as plt

    from fivesigma.tasks.scan.search import dense_grid

    n = 121
    probe, _ = dense_grid(n)
    mean, _ = gp.predict(probe)
    phys = space.to_physical(probe)
    gx, gy = phys[:, 0].reshape(n, n), phys[:, 1].reshape(n, n)
    fig, ax = plt.subplots(figsize=(6.4, 5.0))
    ax.contourf(gx, gy, mean.reshape(n, n), levels=[0, np.inf], colors=[color(0)], alpha=0.25)
    ax.contour(gx, gy, mean.reshape(n, n), levels=[0], colors=[color(0)], linewidths=2)
    if truth is not None:
        k = round(np.sqrt(len(truth)))
        ref = space.to_physical(nodes)
        ax.contour(
            ref[:, 0].reshape(k, k),
            ref[:, 1].reshape(k, k),
            truth.reshape(k, k),
            levels=[0],
            colors=["k"],
            linestyles="--",
            linewidths=1.2,
        )
    pts = space.to_physical(run.x[:calls])
    exc = run.y[:calls] > 0
    ax.scatter(pts[exc, 0], pts[exc, 1], marker="x", color=color(1), s=28, label="oracle: excluded")
    ax.scatter(
        pts[~exc, 0],
        pts[~exc, 1],
        marker="o",
        facecolors="none",
        edgecolors=color(2),
        s=24,
        label="oracle: allowed",
    )
    ax.plot([], [], color=color(0), lw=2, label="surrogate boundary (excluded: shaded)")
    if truth is not None:
        ax.plot([], [], "k--", lw=1.2, label="dense reference grid")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(_LABELS.get(space.names[0], space.names[0]))
    ax.set_ylabel(_LABELS.get(space.names[1], space.names[1]))
    ax.legend(fontsize=7, loc="lower right")
    exp_label(ax, f"{calls} oracle calls")
    fig.tight_layout()
    return fig


def _accuracy_figure(bench: dict[str, Any], target: float) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for i, r in enumerate(bench["active"]):
        ax.plot(
            r["calls"],
            1 - np.asarray(r["accuracy"]),
            "-",
            color=color(0),
            alpha=0.9,
            label="surrogate-guided GA" if i == 0 else None,
        )
    for i, r in enumerate(bench["random"]):
        ax.plot(
            r["calls"],
            1 - np.asarray(r["accuracy_interpolation"]),
            ":",
            color=color(1),
            label="random, interpolation" if i == 0 else None,
        )
        ax.plot(
            r["calls"],
            1 - np.asarray(r["accuracy_surrogate"]),
            "--",
            color=color(3),
            label="random, same surrogate" if i == 0 else None,
        )
    rows = bench["grid"]["rows"]
    ax.plot(
        [r["calls"] for r in rows],
        [1 - r["accuracy"] for r in rows],
        "s-",
        color=color(2),
        label="uniform grid, interpolation",
    )
    ax.axhline(1 - target, color="0.4", lw=1, label=f"target ({target:.1%} agreement)")
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_ylim(0, 0.5)
    ax.set_xlabel("oracle calls")
    ax.set_ylabel("fraction of reference nodes misclassified")
    ax.legend(fontsize=7)
    exp_label(ax)
    fig.tight_layout()
    return fig


def _show(v: Any) -> Any:
    return "not reached" if v is None else v


def write_report(
    path: Path,
    s: Any,
    m: dict[str, Any],
    space: Any,
    run: Any,
    calls: int,
    gp: Any,
    nodes: Any,
    truth: Any,
) -> Path:
    """Write ``report.html`` for a scan run."""
    fixed = ", ".join(f"{k} = {v:g}" for k, v in s.fixed.items())
    report = Report(
        "Surrogate-guided scan of a Z' model",
        subtitle=f"fivesigma scan · σ × BR(Z' → ee), Pythia8, 13 TeV · {fixed} · "
        f"limit {s.limit.describe()}",
    )
    ans = m["answer"]
    sec = Section("Excluded region", anchor="region")
    lines = [
        f"excluded fraction of the scanned region (log-uniform): {ans['excluded_fraction']:.3f}",
        f"oracle calls: {ans['oracle_calls']} (seed {ans['seed']}; {ans['stop_reason']}); the "
        f"search's own accuracy estimate {ans['estimated_accuracy']:.4f}",
    ]
    if "accuracy" in ans:
        lines.append(
            f"agreement with the {s.grid}×{s.grid} dense reference grid: {ans['accuracy']:.4f}"
        )
    sec.add(
        Box([Text(x) for x in lines]),
        Figure(
            lambda: _region_figure(space, run, calls, gp, nodes, truth),
            caption="excluded (shaded) where the surrogate's mean of ln(σ × BR / σB_lim) > 0; "
            "points: the oracle calls of the search",
        ),
        Text(
            "A point is excluded when σ × BR(Z' → ee) from Pythia8 exceeds the expected limit "
            f"σB_lim(m) = {s.limit.describe()} (ATLAS-like, not a digitised curve). Couplings "
            "are multiples of the SSM ones; both axes are logarithmic, as is the search's "
            "unit square."
        ),
    )
    report.add(sec)
    bench = m.get("benchmark")
    if bench:
        sm = bench["summary"]
        bsec = Section("Oracle calls against grid and random scans", anchor="benchmark")
        verdict = (
            f"to classify {sm['target_accuracy']:.1%} of the reference nodes as the reference "
            f"does, the surrogate-guided search needs {_show(sm['active_calls_mean'])} calls "
            f"(mean of {len(bench['active'])} seeds), the uniform grid "
            f"{_show(sm['grid_calls'])}, random scans {_show(sm['random_calls_mean'])} "
            f"(budget {s.random_max_calls}) "
            f"(with the same surrogate: {_show(sm['random_surrogate_calls_mean'])}); "
            f"≥ 5× fewer than grid and random: {'yes' if sm['done_5x'] else 'no'}"
        )
        bsec.add(
            Box([Text(verdict)]),
            Table(
                [
                    "target",
                    "surrogate-guided",
                    "uniform grid",
                    "random",
                    "random + surrogate",
                    "gain vs grid",
                    "gain vs random",
                    "gain vs random + surrogate",
                ],
                [
                    [
                        f"{r['target']:.1%}",
                        _show(r["active"]),
                        _show(r["grid"]),
                        _show(r["random"]),
                        _show(r["random_surrogate"]),
                        _show(r["gain_vs_grid"]),
                        _show(r["gain_vs_random"]),
                        _show(r["gain_vs_random_surrogate"]),
                    ]
                    for r in sm["by_target"]
                ],
                digits=3,
            ),
            Text(
                "Calls to a target: the fewest oracle calls after which the accuracy stays at "
                "or above it (means over seeds; 'not reached' within the budget). The grid "
                "baseline uses the k×k sub-grids of the reference grid and the random scans "
                "its nodes (no extra Pythia runs); both classify the reference nodes by linear "
                "interpolation of ln(σ × BR / σB_lim); a grid node classifies itself, which "
                "favours the grid. 'random + surrogate' fits the search's Gaussian process to "
                "the random points: it isolates what the genetic search adds."
            ),
            Figure(
                lambda: _accuracy_figure(bench, sm["target_accuracy"]),
                caption="misclassified fraction against oracle calls",
            ),
            Table(
                [
                    "seed",
                    "calls to target",
                    "stopping rule at",
                    "accuracy there",
                    "seconds",
                    "GA seconds",
                ],
                [
                    [
                        r["seed"],
                        _show(r["calls_to_target"]),
                        _show(r["rule_stop"]),
                        _show(r["accuracy_at_rule_stop"]),
                        r["seconds"],
                        r["ga_seconds"],
                    ]
                    for r in bench["active"]
                ],
            ),
        )
        report.add(bsec)
    osec = Section("Oracle", anchor="oracle")
    osec.add(KeyValues({**m["oracle"], **m.get("reference_grid", {})}))
    osec.add(KeyValues({k: v for k, v in m["settings"].items() if not isinstance(v, dict)}))
    report.add(osec)
    return report.write(path)
