"""The reweight report: closure tables and histograms with ratio panels, calibration,
weight distributions, side by side for every reweighter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.report.builder import Box, Figure, KeyValues, Report, Section, Table, Text
from fivesigma.report.style import color, exp_label

__all__ = ["write_report"]

_NAMES = {
    "none": "no weights",
    "classifier": "classifier (MLP)",
    "dctr": "DCTR (held-out alpha_s)",
    "gbreweighter": "GBReweighter",
}


def _hist_figure(samples: Any, weights: dict[str, np.ndarray], names: list[str],
                 level: str) -> Any:  # fmt: skip
    import matplotlib.pyplot as plt

    from fivesigma.metrics.reweighting import quantile_edges

    src = samples.source.test if level == "gen" else samples.source.reco_test
    tgt = samples.target.test if level == "gen" else samples.target.reco_test
    ncol = min(3, len(names))
    nrow = int(np.ceil(len(names) / ncol))
    fig = plt.figure(figsize=(4.2 * ncol, 4.4 * nrow))
    grid = fig.add_gridspec(2 * nrow, ncol, height_ratios=[3, 1] * nrow, hspace=0.08)
    for k, name in enumerate(names):
        r, c = divmod(k, ncol)
        ax = fig.add_subplot(grid[2 * r, c])
        rax = fig.add_subplot(grid[2 * r + 1, c], sharex=ax)
        t = tgt[name]
        lo, hi = np.quantile(t, [0.005, 0.995])
        edges = quantile_edges(t, 25)
        inner = edges[1:-1]
        edges = np.unique(np.clip(np.concatenate([[lo], inner, [hi]]), lo, hi))
        if edges.size < 3:
            edges = np.linspace(lo, hi + 1e-9, 11)
        centres, widths = 0.5 * (edges[1:] + edges[:-1]), np.diff(edges)
        ht, _ = np.histogram(t, edges)
        dt = ht / ht.sum() / widths
        et = np.sqrt(ht) / ht.sum() / widths
        ax.errorbar(centres, dt, et, fmt="o", ms=3, color="k", label="target")
        for i, (method, w) in enumerate([("none", None), *weights.items()]):
            hs, _ = np.histogram(src[name], edges, weights=w)
            ds = hs / max(hs.sum(), 1e-300) / widths
            ax.stairs(ds, edges, color=color(i), label=_NAMES.get(method, method))
            ratio = np.divide(ds, dt, out=np.full_like(ds, np.nan), where=dt > 0)
            rax.stairs(ratio, edges, color=color(i))
        rax.fill_between(centres, 1 - et / np.where(dt > 0, dt, 1), 1 + et / np.where(dt > 0, dt, 1),
                         color="0.85", step="mid")  # fmt: skip
        rax.axhline(1, color="k", lw=0.8)
        rax.set_ylim(0.7, 1.3)
        label = name + (" (not seen)" if name in samples.check_features else "")
        # the name inside the panel too: the ratio panel's x label is hidden by the row below
        ax.text(0.97, 0.93, label, transform=ax.transAxes, ha="right", va="top", fontsize=9)
        rax.set_xlabel(label)
        rax.set_ylabel("/ target", fontsize=8)
        ax.set_ylabel("density", fontsize=8)
        plt.setp(ax.get_xticklabels(), visible=False)
        if k == 0:
            ax.legend(fontsize=6)
            exp_label(ax, "generator level" if level == "gen" else "detector level")
    return fig


def _weights_figure(weights: dict[str, np.ndarray]) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    hi = max(float(np.max(w)) for w in weights.values())
    edges = np.logspace(-3, np.log10(max(hi, 10.0)) + 0.1, 60)
    for i, (name, w) in enumerate(weights.items()):
        ax.hist(np.clip(w, edges[0], None), edges, histtype="step", color=color(i + 1),
                label=_NAMES.get(name, name))  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("weight (normalised to mean 1)")
    ax.set_ylabel("source test events")
    ax.legend(fontsize=8)
    exp_label(ax)
    fig.tight_layout()
    return fig


def _calibration_figure(curves: dict[str, dict[str, Any]]) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.6))
    ax.plot([0, 1], [0, 1], color="0.5", ls="--", label="calibrated")
    for i, (name, c) in enumerate(curves.items()):
        pts = [(p, o) for p, o in zip(c["predicted"], c["observed"], strict=True) if p is not None]
        if pts:
            p, o = zip(*pts, strict=True)
            ax.plot(p, o, "o-", color=color(i + 1),
                    label=f"{_NAMES.get(name, name)} (ECE {c['ece']:.3f})")  # fmt: skip
    ax.set_xlabel("predicted p(target)")
    ax.set_ylabel("observed target fraction")
    ax.legend(fontsize=8)
    exp_label(ax)
    fig.tight_layout()
    return fig


def _closure_table(m: dict[str, Any], names: list[str], seen: list[str], key: str) -> Table:
    methods = [k for k in m["methods"] if key in m["methods"][k]]
    rows = []
    for name in names:
        row: list[Any] = [name + ("" if name in seen else " (not seen)")]
        for meth in methods:
            c = m["methods"][meth][key][name]
            row += [c["chi2_ndf"], c["ks"]]
        rows.append(row)
    header = ["feature"]
    for meth in methods:
        header += [f"χ²/ndf {_NAMES.get(meth, meth)}", f"KS D {_NAMES.get(meth, meth)}"]
    return Table(header, rows, digits=3, scroll=True)


def write_report(path: Path, s: Any, m: dict[str, Any], samples: Any,
                 weights: dict[str, np.ndarray]) -> Path:  # fmt: skip
    """Write ``report.html`` for a reweight run."""
    sub = (
        f"FSR alpha_s {s.source_alpha_s:g} → {s.target_alpha_s:g} (Pythia8 dijets)"
        if s.builtin
        else "user files"
    )
    report = Report("Reweighting closure", subtitle=f"fivesigma reweight · {sub}")
    names = samples.all_features
    summary = Section("Summary", anchor="summary")
    rows = []
    for meth, r in m["methods"].items():
        rows.append([
            _NAMES.get(meth, meth), r["max_chi2_ndf"], r["max_chi2_ndf_seen"],
            r.get("max_chi2_ndf_detector", "—"), r["auc"], r["ess_fraction"],
            r.get("clipping", {}).get("n_clipped", "—"),
        ])  # fmt: skip
    summary.add(
        Box([Text("criteria (χ²/ndf < 2 on every feature, two-sample AUC ≤ 0.55): "
                  + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in m["done"].items()))]),
        Table(["weights", "max χ²/ndf (all features)", "max χ²/ndf (seen)",
               "max χ²/ndf detector level", "two-sample AUC", "ESS / N", "clipped"],
              rows, digits=3),
        Text("Closure on the test halves (never trained on): the weighted source against "
             "the target. χ² over quantile bins of the target, both histograms normalised, "
             "uncertainties from Σw²; KS D the largest distance of the weighted CDFs; the "
             "two-sample AUC from a fresh BDT trained on half of the weighted source and "
             "target, evaluated on the other half, on every feature (seen and not); ESS = "
             "(Σw)²/Σw². DCTR never saw the target's alpha_s: its weights interpolate "
             f"between the training values {s.dctr_alpha_s}."),
    )  # fmt: skip
    report.add(summary)
    gen = Section("Generator level", anchor="generator")
    gen.add(
        _closure_table(m, names, samples.features, "closure"),
        Figure(lambda: _hist_figure(samples, weights, names, "gen"),
               caption="weighted source against target, ratio to the target"),
    )  # fmt: skip
    report.add(gen)
    if samples.source.reco_test is not None:
        det = Section("Detector level (the same weights)", anchor="detector")
        det.add(
            Text("The weights learned at generator level, applied to the same events after "
                 "the jet detector response (tracks and calorimeter cells, reclustered)."),
            _closure_table(m, names, samples.features, "closure_detector"),
            Figure(lambda: _hist_figure(samples, weights, names, "reco"),
                   caption="detector level: weighted source against target"),
        )  # fmt: skip
        report.add(det)
    wsec = Section("Weights and calibration", anchor="weights")
    clip_rows = [[_NAMES.get(k, k), r["clipping"]["n_clipped"], r["clipping"]["fraction_clipped"],
                  r["clipping"]["largest_before"], r["clipping"]["weight_fraction_removed"]]
                 for k, r in m["methods"].items() if "clipping" in r]  # fmt: skip
    curves = {k: r["calibration"] for k, r in m["methods"].items() if "calibration" in r}
    for k, r in m["methods"].items():
        c = r.get("clipping", {})
        if c.get("weight_fraction_removed", 0.0) > 0.01:
            wsec.add(Text(f"{_NAMES.get(k, k)}: clipping removed "
                          f"{100 * c['weight_fraction_removed']:.1f}% of the total weight "
                          f"({c['n_clipped']} weights above {c['max_weight']:.3g}, the largest "
                          f"{c['largest_before']:.3g}): the source does not cover the target "
                          "there, and the closure cannot be trusted", cls="alarm"))  # fmt: skip
    wsec.add(
        Table(["weights", "clipped", "fraction clipped", "largest before", "weight removed"],
              clip_rows, digits=3),
        Text(f"cap: {s.max_weight}" + (f", quantile {s.clip_quantile}" if s.clip_quantile else "")),
        Figure(lambda: _weights_figure(weights), caption="weight distributions"),
        Figure(lambda: _calibration_figure(curves),
               caption="reliability of the classifiers' probabilities on the test halves "
                       "(equal total weight per class, as in training)"),
    )  # fmt: skip
    report.add(wsec)
    setup = Section("Setup", anchor="setup")
    setup.add(
        KeyValues(m["samples"]),
        KeyValues({k: v for k, v in m["settings"].items() if not isinstance(v, dict)}),
    )
    report.add(setup)
    return report.write(path)
