"""The symbolic report: the benchmark table (truth, found formula, exact, NMSE, time,
units), the Pareto fronts, the user's search and the distillation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.report.builder import (
    Box,
    Cell,
    Details,
    Figure,
    Group,
    KeyValues,
    Report,
    Section,
    Table,
    Text,
)
from fivesigma.report.style import color, exp_label

__all__ = ["summarise_benchmark", "write_report"]


def summarise_benchmark(cells: list[dict[str, Any]], s: Any) -> dict[str, Any]:
    """Counts per noise level, and the issue's criterion: >= 8 of the 10 built-in
    formulas exact at 0% and at 1% noise."""
    from fivesigma.tasks.symbolic.benchmark import BUILTIN

    rows = []
    for noise in s.noise:
        at = [c for c in cells if c["noise"] == noise]
        rows.append(
            {
                "noise": noise,
                "formulas": len(at),
                "exact": sum(c["exact"] for c in at),
                "numeric": sum(c["numeric"] for c in at),
                "seconds": float(sum(c["seconds"] for c in at)),
                "cpu_seconds": float(sum(c["cpu_seconds"] for c in at)),
            }
        )
    out: dict[str, Any] = {"by_noise": rows}
    builtin = [c for c in cells if c["formula"] in BUILTIN]
    names = {c["formula"] for c in builtin}
    if len(names) == len(BUILTIN) and {0.0, 0.01} <= set(s.noise):
        exact = {n: sum(c["exact"] for c in builtin if c["noise"] == n) for n in (0.0, 0.01)}
        out["criterion"] = ">= 8 of the 10 built-in formulas exact at 0% and at 1% noise"
        out["exact_at_0"] = exact[0.0]
        out["exact_at_1pc"] = exact[0.01]
        out["done"] = bool(exact[0.0] >= 8 and exact[0.01] >= 8)
    return out


def _front_figure(cells: list[dict[str, Any]], name: str) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    at = sorted((c for c in cells if c["formula"] == name), key=lambda c: c["noise"])
    for i, c in enumerate(at):
        cx = [r["complexity"] for r in c["front"]]
        err = [max(r["nmse"], 1e-32) for r in c["front"]]
        ax.step(cx, err, where="post", color=color(i), label=f"noise {c['noise']:g}")
        ax.plot(cx, err, "o", color=color(i), ms=3)
        ax.plot(
            [c["complexity"]],
            [max(c["nmse"], 1e-32)],
            "*",
            color=color(i),
            ms=11,
            markeredgecolor="k",
            label="chosen" if i == 0 else None,
        )
    ax.set_yscale("log")
    ax.set_xlabel("complexity (SymPy nodes)")
    ax.set_ylabel("NMSE on the data")
    ax.legend(fontsize=7)
    exp_label(ax, name)
    fig.tight_layout()
    return fig


def _formulas_figure(rows: list[tuple[str, str, str]]) -> Any:
    """Truth and chosen formula rendered by matplotlib's mathtext (a LaTeX subset)."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(9.0, 0.55 * (len(rows) + 1)))
    for k, (name, truth, found) in enumerate(rows):
        y = 1 - (k + 0.7) / (len(rows) + 0.5)
        fig.text(0.01, y, name, fontsize=9, va="center")
        for x, tex in ((0.2, truth), (0.55, found)):
            try:
                fig.text(x, y, f"${tex}$", fontsize=10, va="center")
            except Exception:  # mathtext knows a subset of LaTeX: the source then
                fig.text(x, y, tex[:60], fontsize=7, va="center", family="monospace")
    fig.text(0.2, 0.995, "truth", fontsize=9, va="top", weight="bold")
    fig.text(0.55, 0.995, "found (constants snapped)", fontsize=9, va="top", weight="bold")
    return fig


def _roc_figure(curves: dict[str, Any], auc: dict[str, float]) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    for i, key in enumerate(("network", "formula")):
        eb, es = curves[key]
        ax.plot(es, eb, color=color(i), label=f"{key} (AUC {auc[key]:.4f})")
    ax.set_yscale("log")
    ax.set_xlabel("signal efficiency")
    ax.set_ylabel("background efficiency")
    ax.legend(fontsize=8)
    exp_label(ax, "test split, weighted")
    fig.tight_layout()
    return fig


def _fit_figure(fit: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    x, y = np.asarray(fit["logit"]), np.asarray(fit["formula"])
    ax.plot(x, y, ".", ms=2, alpha=0.5, color=color(0))
    lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel("network log-odds (clipped)")
    ax.set_ylabel("formula")
    exp_label(ax, "fitted events")
    fig.tight_layout()
    return fig


def _yes(v: bool) -> Cell:
    return Cell("yes" if v else "no", cls="good" if v else "bad")


def write_report(
    path: Path, s: Any, m: dict[str, Any], cells: list[dict[str, Any]], distilled: Any
) -> Path:
    """Write ``report.html`` for a symbolic run."""
    report = Report(
        "Symbolic regression",
        subtitle=f"fivesigma symbolic · Operon (pyoperon) + SymPy · preset {s.preset} · "
        f"{s.engine.restarts} restarts × {s.engine.generations} generations, population "
        f"{s.engine.population}",
    )
    bench = m.get("benchmark")
    if bench:
        sm = bench["summary"]
        sec = Section("Benchmark: known formulas found again", anchor="benchmark")
        lines = [
            f"noise {r['noise']:g}: exact {r['exact']} of {r['formulas']}, numeric "
            f"{r['numeric']}, search time {r['seconds']:.0f} s (CPU {r['cpu_seconds']:.0f} s)"
            for r in sm["by_noise"]
        ]
        if "done" in sm:
            lines.append(
                f"{sm['criterion']}: {sm['exact_at_0']} and {sm['exact_at_1pc']} — "
                f"{'met' if sm['done'] else 'not met'}"
            )
        sec.add(Box([Text(x) for x in lines]))
        header = [
            "formula",
            "noise",
            "exact",
            "numeric",
            "found (snapped), LaTeX",
            "NMSE",
            "complexity",
            "seconds",
            "CPU s",
            "units",
        ]
        rows = []
        for c in cells:
            rows.append(
                [
                    c["formula"],
                    c["noise"],
                    _yes(c["exact"]),
                    _yes(c["numeric"]),
                    Cell(
                        c["snapped_latex"] if c["numeric"] else c["found_latex"], title=c["found"]
                    ),
                    c["nmse"],
                    c["complexity"],
                    c["seconds"],
                    c["cpu_seconds"],
                    c["units"] or "consistent",
                ]
            )
        sec.add(Table(header, rows, digits=3, left=(0, 4, 9), scroll=True))
        truths = {c["formula"]: (c["title"], c["truth_latex"]) for c in cells}
        sec.add(
            Table(
                ["formula", "what", "truth, LaTeX"],
                [[k, t, tex] for k, (t, tex) in truths.items()],
                left=(0, 1, 2),
            )
        )
        lowest = {}
        for c in cells:
            if c["formula"] not in lowest or c["noise"] < lowest[c["formula"]]["noise"]:
                lowest[c["formula"]] = c
        rendered = [
            (k, truths[k][1], c["snapped_latex"] if c["numeric"] else c["found_latex"])
            for k, c in lowest.items()
        ]
        sec.add(
            Figure(
                lambda: _formulas_figure(rendered),
                caption="truth and the chosen formula at the lowest noise level (mathtext)",
            ),
            Text(
                "Exact: SymPy proves the chosen formula equal to the truth up to fitted "
                "constants (its constants re-fitted to noise-free points, snapped to 0, ±1 "
                "or simple rationals where the fit allows, then the difference or the ratio "
                "simplified to a constant). Numeric: the re-fit matches the truth to 1e-8 but "
                "SymPy could not prove it. NMSE: mean squared error over the target's "
                "variance on the noisy data. Seconds: wall time of the search; CPU s: its "
                "CPU time (load-independent)."
            ),
        )
        grp = []
        for name in truths:
            grp.append(
                Figure(lambda n=name: _front_figure(cells, n), caption=f"Pareto front: {name}")
            )
        sec.add(Group("Pareto fronts", grp, anchor="fronts"))
        missed = [c for c in cells if not c["exact"]]
        if missed:
            sec.add(
                Details(
                    f"not recovered exactly ({len(missed)}): chosen formula and whether the "
                    "truth was on the front",
                    [
                        Table(
                            ["formula", "noise", "chosen", "truth elsewhere on the front"],
                            [
                                [
                                    c["formula"],
                                    c["noise"],
                                    c["found"],
                                    "; ".join(c["truth_on_front"] or []) or "no",
                                ]
                                for c in missed
                            ],
                            left=(0, 2, 3),
                            scroll=True,
                        )
                    ],
                )
            )
        report.add(sec)
    dr = m.get("data")
    if dr:
        sec = Section("Your data", anchor="data")
        sec.add(
            Box(
                [
                    Text(f"{dr['target']} = {dr['formula']}"),
                    Text(
                        f"NMSE {dr['nmse']:.4g} on {dr['rows_searched']} rows searched, "
                        f"{dr['nmse_all_rows']:.4g} on all {dr['rows']} rows; units: "
                        f"{dr['units_check'] or 'consistent'}"
                    ),
                ]
            ),
            Text(f"LaTeX: {dr['latex']}", pre=True),
            Table(
                ["formula", "complexity", "NMSE", "units"],
                [
                    [r["formula"], r["complexity"], r["nmse"], r["units"] or "consistent"]
                    for r in dr["front"]
                ],
                left=(0, 3),
                scroll=True,
            ),
        )
        report.add(sec)
    di = m.get("distill")
    if di:
        sec = Section("Distillation: a formula for the classifier", anchor="distill")
        if "error" in di:
            sec.add(Text(f"the distillation failed: {di['error']}", cls="alarm"))
        else:
            a = di["auc"]
            sec.add(
                Box(
                    [
                        Text(f"score = {di['formula']}"),
                        Text(
                            f"test AUC (weighted): network {a['network']:.4f}, formula "
                            f"{a['formula']:.4f}; kept (AUC_f - 0.5)/(AUC_nn - 0.5) = "
                            f"{di['kept']:.3f} (target {di['target_kept']:.2f}: "
                            f"{'met' if di['done'] else 'not met'}); unweighted "
                            f"{a['network_unweighted']:.4f} / {a['formula_unweighted']:.4f}, "
                            f"kept {di['kept_unweighted']:.3f}"
                        ),
                    ]
                ),
                Table(
                    [
                        "formula",
                        "complexity",
                        "NMSE (log-odds)",
                        "kept (validation)",
                        "kept (test)",
                        "chosen",
                    ],
                    [
                        [
                            r["formula"],
                            r["complexity"],
                            r["nmse_logit"],
                            r["kept_validation"],
                            r["kept_test"],
                            "yes" if r["chosen"] else "",
                        ]
                        for r in di["front"]
                    ],
                    left=(0,),
                    scroll=True,
                ),
                Text(
                    "The formula is fitted to the network's log-odds on training events; the "
                    "chosen one is the simplest front member that keeps the target fraction "
                    "on the validation split; the numbers above are on the test split."
                ),
            )
            if distilled is not None and distilled.curves:
                sec.add(
                    Figure(lambda: _roc_figure(distilled.curves, a), caption="ROC, test split"),
                    Figure(
                        lambda: _fit_figure(distilled.curves["fit"]),
                        caption="formula against the network's log-odds",
                    ),
                )
            sec.add(KeyValues({"network": di["network"], "seconds": di["seconds"]}))
        report.add(sec)
    osec = Section("Settings", anchor="settings")
    osec.add(KeyValues({k: v for k, v in m["settings"].items()}))
    osec.add(KeyValues({"seconds": m.get("seconds", {}), "wall_seconds": m.get("wall_seconds")}))
    report.add(osec)
    return report.write(path)
