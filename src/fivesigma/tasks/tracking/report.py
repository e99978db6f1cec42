"""The tracking report: scores side by side, efficiency curves, event displays, timing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.report.builder import Figure, Grid, KeyValues, Report, Section, Table, Text
from fivesigma.report.style import color, exp_label
from fivesigma.tasks.tracking.hits import Hits

__all__ = ["hit_status", "write_report"]

_LABELS = {"gnn": "GNN (Interaction Network)", "baseline": "classical (combinatorial)"}


def hit_status(hits: Hits, labels: np.ndarray, min_track_hits: int = 3) -> np.ndarray:
    """Per hit: 0 noise or unused, 1 on a correct track (double majority, own particle),
    2 on a fake track, 3 missed (a particle's hit that is not on that particle's track)."""
    labels = np.asarray(labels)
    pid = hits.particle_id
    status = np.zeros(len(hits), dtype=np.int8)
    on = labels >= 0
    track_of = {}
    if on.any():
        tracks, inv, size = np.unique(labels[on], return_inverse=True, return_counts=True)
        pairs, pair_n = np.unique(np.stack([inv, pid[on]]), axis=1, return_counts=True)
        particle_total = dict(zip(*np.unique(pid, return_counts=True), strict=True))
        for (t, p), n in zip(pairs.T, pair_n, strict=True):
            good = p != 0 and 2 * n > size[t] and 2 * n > particle_total[p]
            if good and size[t] >= min_track_hits:
                track_of[int(tracks[t])] = int(p)
        majority = np.array([track_of.get(int(t), -1) for t in tracks])
        rows = np.flatnonzero(on)
        ok = majority[inv] == pid[on]
        status[rows[ok]] = 1
        fake = (majority[inv] < 0) & (size[inv] >= min_track_hits)
        status[rows[fake & ~ok]] = 2
    missed = (pid != 0) & (status != 1)
    status[missed & (status == 0)] = 3
    return status


def _display(hits: Hits, labels: np.ndarray, title: str) -> Any:
    import matplotlib.pyplot as plt

    status = hit_status(hits, labels)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    r, x, y, z = hits.r, hits.x, hits.y, hits.z
    rng = np.random.default_rng(0)
    palette = rng.random((max(int(labels.max()) + 1, 1), 3)) * 0.8
    for ax, (u, v, ul, vl) in zip(
        axes, ((x, y, "x [mm]", "y [mm]"), (z, r, "z [mm]", "r [mm]")), strict=True
    ):
        unused = status == 0
        ax.scatter(u[unused], v[unused], s=1, c="0.8", lw=0, label="noise / unused")
        good = status == 1
        ax.scatter(u[good], v[good], s=2, c=palette[labels[good]], lw=0, label="on correct track")
        for code, marker, col, name in (
            (2, "x", "red", "on fake track"),
            (3, "o", "black", "missed"),
        ):
            sel = status == code
            style = {"facecolors": "none", "edgecolors": col} if marker == "o" else {"c": col}
            ax.scatter(u[sel], v[sel], s=6, marker=marker, lw=0.6, label=name, **style)
        ax.set_xlabel(ul)
        ax.set_ylabel(vl)
        exp_label(ax, title)
    axes[0].set_aspect("equal")
    axes[0].legend(loc="upper right", fontsize=7, markerscale=3)
    fig.tight_layout()
    return fig


def _curve(curves: dict[str, Any], variable: str, xlabel: str) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for i, (name, c) in enumerate(curves.items()):
        edges = np.asarray(c[variable]["edges"])
        eff = np.asarray(c[variable]["efficiency"], dtype=float)
        low = np.asarray(c[variable]["low"], dtype=float)
        high = np.asarray(c[variable]["high"], dtype=float)
        mid = (
            0.5 * (edges[1:] + edges[:-1]) if variable == "eta" else np.sqrt(edges[1:] * edges[:-1])
        )
        ax.errorbar(
            mid,
            eff,
            yerr=[eff - low, high - eff],
            xerr=None,
            fmt="o-",
            ms=3,
            color=color(i),
            label=_LABELS.get(name, name),
        )
    if variable == "pt":
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("double-majority efficiency")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right", fontsize=8)
    exp_label(ax)
    fig.tight_layout()
    return fig


def _scores(scores: dict[str, np.ndarray], cut: float) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    bins = np.linspace(0, 1, 51)
    for i, (name, label) in enumerate((("true", "true edges"), ("false", "false edges"))):
        ax.hist(scores[name], bins=bins, histtype="step", color=color(i), label=label, density=True)
    ax.axvline(cut, color="0.4", ls="--", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("GNN edge score")
    ax.set_ylabel("density")
    ax.legend(loc="upper center", fontsize=8)
    exp_label(ax)
    fig.tight_layout()
    return fig


def _history(history: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for i, key in enumerate(("train_loss", "val_loss")):
        values = history.get(key)
        if values:
            ax.plot(
                np.arange(1, len(values) + 1),
                values,
                "o-",
                ms=3,
                color=color(i),
                label=key.replace("_", " "),
            )
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    exp_label(ax)
    fig.tight_layout()
    return fig


def write_report(path: Path, metrics: dict[str, Any], evaluated: Any, fitted: Any) -> Path:
    """Write ``report.html`` for a tracking run."""
    methods = metrics["methods"]
    settings = metrics["settings"]
    gnn = methods.get("gnn", {})
    subtitle = (
        f"fivesigma tracking · {settings['test_events']} test event(s) · GNN TrackML score "
        f"{gnn.get('score', float('nan')):.3f}"
        if "score" in gnn
        else f"fivesigma tracking · {settings['test_events']} test event(s) without truth"
    )
    report = Report("Track reconstruction", subtitle=subtitle)
    pt_min = settings["evaluation"]["pt_min"]

    results = Section("Results", anchor="results")
    header = [
        "method",
        "TrackML score",
        "normalised",
        f"DM eff. (pT>{pt_min:g})",
        "fake rate",
        "duplicates",
        f"ATLAS eff. (pT>{pt_min:g})",
        "tracks/event",
        "CPU s/event",
        "wall s/event",
    ]
    rows = []
    for name, m in methods.items():
        rows.append(
            [
                _LABELS.get(name, name),
                m.get("score"),
                m.get("score_normalised"),
                m.get("dm_efficiency"),
                m.get("dm_fake_rate"),
                m.get("dm_duplicate_rate"),
                m.get("atlas_efficiency"),
                m.get("n_tracks"),
                m.get("cpu_total"),
                m.get("wall_total"),
            ]
        )
    results.add(
        Table(header, [[("—" if v is None else v) for v in row] for row in rows]),
        Text(
            "TrackML score: the official weighted score; normalised: divided by the weight a "
            "perfect tracker can collect (all non-noise hits). DM: double-majority matching "
            "(> 50% of the track's hits from the particle and > 50% of the particle's hits "
            "on the track); ATLAS: > 50% of the track's hits from the particle. Times are "
            "per test event, reading excluded.",
            cls="note",
        ),
    )
    if evaluated.curves:
        results.add(
            Grid(
                [
                    Figure(
                        lambda: _curve(evaluated.curves, "pt", r"particle $p_T$ [GeV]"),
                        "Efficiency against pT",
                    ),
                    Figure(
                        lambda: _curve(evaluated.curves, "eta", r"particle $\eta$"),
                        f"Efficiency against eta (pT > {pt_min:g} GeV)",
                    ),
                ]
            )
        )
    report.add(results)

    graph = Section("Graph and edge classification", anchor="graph")
    stage_rows = []
    for split, g in metrics["graph"].items():
        if g:
            stage_rows.append(
                [
                    split,
                    g.get("edges"),
                    g.get("edges_per_hit"),
                    g.get("efficiency"),
                    g.get("efficiency_pt"),
                    g.get("purity"),
                    g.get("gnn_edge_efficiency", "—"),
                    g.get("gnn_edge_purity", "—"),
                    g.get("gnn_edge_auc", "—"),
                    g.get("score_with_true_edge_scores", "—"),
                ]
            )
    graph.add(
        Table(
            [
                "events",
                "edges/event",
                "edges/hit",
                "edge eff.",
                f"edge eff. (pT>{pt_min:g})",
                "purity",
                "eff. after GNN",
                "purity after GNN",
                "edge AUC",
                "score with true edge scores",
            ],
            stage_rows,
        ),
        Text(
            f"Graph: {settings['graph']}. Edge efficiency: fraction of the truth graph "
            "(consecutive hits of each particle) in the candidate graph.",
            cls="note",
        ),
    )
    figures = []
    if evaluated.edge_scores:
        cut = fitted.gnn.build["threshold"]
        figures.append(Figure(lambda: _scores(evaluated.edge_scores, cut), "GNN edge scores"))
    history = metrics["training"].get("gnn_history")
    if history:
        figures.append(Figure(lambda: _history(history), "GNN training"))
    if figures:
        graph.add(Grid(figures))
    report.add(graph)

    if evaluated.displays:
        displays = Section("Event displays", anchor="displays")
        for d in evaluated.displays:
            hits = d["hits"]
            if not hits.has_truth:
                continue
            for name in ("gnn", "baseline"):
                if name in d:
                    displays.add(
                        Figure(
                            lambda h=hits, lab=d[name], n=name: _display(
                                h, lab, f"event {h.event_id}, {_LABELS.get(n, n)}"
                            ),
                            f"Event {hits.event_id}, {_LABELS.get(name, name)}: hits on "
                            "correct tracks in track colours, hits on fake tracks as red "
                            "crosses, missed hits as black circles",
                        )
                    )
        report.add(displays)

    timing = Section("Timing and memory", anchor="timing")
    keys = sorted({k for m in methods.values() for k in m if k.startswith(("cpu_", "wall_"))})
    timing.add(
        Table(
            ["method", *keys],
            [[_LABELS.get(n, n), *[m.get(k, "—") for k in keys]] for n, m in methods.items()],
        ),
        KeyValues({k: v for k, v in metrics["training"].items() if not isinstance(v, dict)}),
    )
    report.add(timing)

    setup = Section("Setup", anchor="setup")
    setup.add(
        KeyValues(
            {
                "data": {k: v for k, v in metrics["data"].items() if k != "events"},
                "events": metrics["data"]["events"],
                "settings": settings,
            }
        )
    )
    if metrics.get("notes"):
        setup.add(Text("\n".join(metrics["notes"]), pre=True, cls="alarm"))
    report.add(setup)
    return report.write(path)
