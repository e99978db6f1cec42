"""The fastsim report and metrics: targets, per-feature histograms with ratio panels,
correlations, the response, the oversampling gain and the calorimeter checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.core import extras
from fivesigma.report.builder import Box, Figure, Grid, KeyValues, Report, Section, Table, Text
from fivesigma.report.style import color, exp_label

__all__ = ["metrics", "write_report"]

LABELS = {"flow": "NSF flow", "flow_matching": "flow matching", "gan": "GAN"}


def metrics(s: Any, jets: Any, calo: Any) -> dict[str, Any]:
    """Every number of the run, for metrics.json."""
    from dataclasses import asdict

    out: dict[str, Any] = {"settings": asdict(s)}
    if jets is not None:
        out["jets"] = jets.metrics
    if calo is not None:
        out["calo"] = calo.metrics
    targets: dict[str, Any] = {}
    if jets is not None:
        for name in ("flow", "flow_matching"):
            row = jets.metrics["models"].get(name)
            if row is not None:
                targets[f"jets_{name}_auc_le_{s.auc_target}"] = row["auc_target_met"]
                targets[f"jets_{name}_speedup_ge_{s.speedup_target:g}"] = row["speedup_target_met"]
    if calo is not None:
        for name, row in calo.metrics["models"].items():
            targets[f"calo_{name}_within_tolerances"] = row["all_passed"]
    out["targets"] = targets
    return out


# --------------------------------------------------------------------------------------
# figures


def _ratio_figure(name: str, truth: np.ndarray, samples: dict[str, np.ndarray]) -> Any:
    from fivesigma.metrics.generative import histogram_ratio

    def draw() -> Any:
        plt = extras.matplotlib("pyplot")
        fig, (ax, rx) = plt.subplots(
            2, 1, figsize=(4.2, 4.0), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
        )
        for k, (model, x) in enumerate(samples.items()):
            h = histogram_ratio(truth, x, bins=30)
            mid = 0.5 * (h["edges"][1:] + h["edges"][:-1])
            if k == 0:
                ax.stairs(h["reference"], h["edges"], color="black", label="simulation")
            ax.stairs(h["other"], h["edges"], color=color(k + 1), label=LABELS.get(model, model))
            rx.errorbar(mid, h["ratio"], h["ratio_err"], fmt=".", ms=3, color=color(k + 1))
        rx.axhline(1.0, color="grey", lw=0.8)
        rx.set_ylim(0.5, 1.5)
        rx.set_xlabel(name)
        rx.set_ylabel("ratio")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
        exp_label(ax)
        return fig

    return Figure(draw, caption=f"{name}: simulation and surrogates (ratio to simulation)")


def _response_figure(jets: Any) -> Any:
    def draw() -> Any:
        plt = extras.matplotlib("pyplot")

        fig, ax = plt.subplots(figsize=(4.5, 3.5))
        truth = jets.arrays["response_truth"]
        mid = 0.5 * (truth["edges"][1:] + truth["edges"][:-1])
        ax.errorbar(mid, truth["mean"], truth["std"], fmt="o", color="black", label="simulation")
        for k, (model, row) in enumerate(jets.arrays["samples"].items()):
            r = row["response"]
            ax.errorbar(
                mid * (1 + 0.01 * (k + 1)),
                r["mean"],
                r["std"],
                fmt="s",
                ms=3,
                color=color(k + 1),
                label=LABELS.get(model, model),
            )
        ax.set_xscale("log")
        ax.set_xlabel("gen jet pT [GeV]")
        ax.set_ylabel("reco pT / gen pT (mean, std)")
        ax.legend(fontsize=7)
        exp_label(ax)
        return fig

    return Figure(draw, caption="jet response against gen pT (bars: the resolution)")


def _corr_figure(jets: Any) -> Any:
    def draw() -> Any:
        plt = extras.matplotlib("pyplot")

        models = list(jets.arrays["samples"])
        fig, axes = plt.subplots(1, 1 + len(models), figsize=(3.2 * (1 + len(models)), 3.2))
        names = [n.replace("reco_", "") for n in jets.arrays["outputs"]]
        truth = jets.arrays["corr_truth"]
        panels = [("simulation", truth)] + [
            (f"{LABELS.get(m, m)} − sim.", jets.arrays["samples"][m]["corr"] - truth)
            for m in models
        ]
        for ax, (title, mat) in zip(np.atleast_1d(axes), panels, strict=True):
            im = ax.imshow(
                mat,
                vmin=-1 if title == "simulation" else -0.2,
                vmax=1 if title == "simulation" else 0.2,
                cmap="RdBu_r",
            )
            ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
            ax.set_yticks(range(len(names)), names, fontsize=6)
            ax.set_title(title, fontsize=8)
            fig.colorbar(im, ax=ax, fraction=0.046)
        return fig

    return Figure(draw, caption="correlation matrix of the reco outputs and its differences")


def _calo_figure(calo: Any, what: str) -> Any:
    def draw() -> Any:
        plt = extras.matplotlib("pyplot")

        fig, ax = plt.subplots(figsize=(4.2, 3.4))
        truth = calo.arrays["truth"]
        if what == "response":
            edges = np.linspace(*np.percentile(truth["response"], [0.5, 99.5]), 40)
            ax.hist(
                truth["response"],
                edges,
                histtype="step",
                color="black",
                density=True,
                label="simulation",
            )
            for k, (m, obs) in enumerate(calo.arrays["samples"].items()):
                ax.hist(
                    obs["response"],
                    edges,
                    histtype="step",
                    color=color(k + 1),
                    density=True,
                    label=LABELS.get(m, m),
                )
            ax.set_xlabel("visible / incident energy")
        else:
            key = "layers" if what == "profile" else "widths"
            layers = np.arange(truth[key].shape[1])
            ax.plot(layers, np.nanmean(truth[key], 0), "o-", color="black", label="simulation")
            for k, (m, obs) in enumerate(calo.arrays["samples"].items()):
                ax.plot(
                    layers,
                    np.nanmean(obs[key], 0),
                    "s--",
                    color=color(k + 1),
                    label=LABELS.get(m, m),
                )
            ax.set_xlabel("layer")
            ax.set_ylabel("mean energy fraction" if key == "layers" else "mean width [R_M]")
        ax.legend(fontsize=7)
        exp_label(ax)
        return fig

    captions = {
        "response": "total visible energy over incident energy",
        "profile": "longitudinal profile: mean energy fraction per layer",
        "width": "shower width: energy-weighted mean radius per layer",
    }
    return Figure(draw, caption=captions[what])


# --------------------------------------------------------------------------------------


def write_report(path: Path, s: Any, m: dict[str, Any], jets: Any, calo: Any) -> Path:
    """The report (one HTML file)."""
    report = Report("fivesigma fastsim", "generative surrogates of the detector")
    summary = Section("Targets")
    summary.add(
        Box(
            [
                KeyValues(
                    {k: "met" if v else "NOT met" for k, v in m["targets"].items()},
                    header=("target", "result"),
                )
            ]
        )
    )
    report.add(summary)
    if jets is not None:
        j = m["jets"]
        sec = Section("Jets")
        sec.add(
            Text(
                f"{j['pairs']} matched gen/reco jet pairs ({j['train']} training, {j['test']} "
                f"held out). Detector response (+ reco clustering, N-subjettiness, b-tag): "
                f"{j['detector_jets_per_second']:.3g} jets/s on one core, timed in this run."
            )
        )
        rows = []
        for name, row in j["models"].items():
            rows.append(
                [
                    LABELS.get(name, name),
                    row["classifier_auc"],
                    row["w1_over_std_mean"],
                    row["correlation_max_abs_difference"],
                    row["response_mean_max_abs_difference"],
                    row["jets_per_second"],
                    row["speedup"],
                    row["oversampling_gain_mass"],
                    row["fit_seconds"],
                ]
            )
        sec.add(
            Table(
                [
                    "model",
                    "two-sample AUC",
                    "mean W1/σ",
                    "max |Δ corr|",
                    "max |Δ response|",
                    "jets/s",
                    "speed-up",
                    f"gain ({s.oversampling} draws)",
                    "fit s",
                ],
                rows,
                digits=3,
            )
        )
        w1_rows = [
            [name] + [j["models"][mm]["w1"][name]["w1_over_std"] for mm in j["models"]]
            for name in jets.arrays["outputs"]
        ]
        sec.add(Table(["output (W1/σ)", *[LABELS.get(x, x) for x in j["models"]]], w1_rows))
        truth = jets.arrays["test_truth"]
        figs = [
            _ratio_figure(
                name,
                truth[:, i],
                {mm: v["sample"][:, i] for mm, v in jets.arrays["samples"].items()},
            )
            for i, name in enumerate(jets.arrays["outputs"])
        ]
        sec.add(Grid(figs))
        sec.add(Grid([_response_figure(jets), _corr_figure(jets)]))
        report.add(sec)
    if calo is not None:
        c = m["calo"]
        sec = Section("Calorimeter showers")
        sec.add(
            Text(
                f"{c['showers']} showers in {c['voxels']} voxels; the parametrised simulation "
                f"runs at {c['simulation_showers_per_second']:.3g} showers/s. Tolerances "
                f"(relative): {c['tolerances']}."
            )
        )
        rows = []
        for name, row in c["models"].items():
            rows.append(
                [
                    LABELS.get(name, name),
                    row["classifier_auc"],
                    row["total_energy_shift"],
                    row["resolution_shift"],
                    row["profile_max_shift"],
                    row["width_max_shift"],
                    "yes" if row["all_passed"] else "no",
                    row["showers_per_second"],
                    row["speedup"],
                ]
            )
        sec.add(
            Table(
                [
                    "model",
                    "two-sample AUC",
                    "Δ mean E",
                    "Δ resolution",
                    "max Δ profile",
                    "max Δ width",
                    "within tolerances",
                    "showers/s",
                    "speed-up",
                ],
                rows,
                digits=3,
            )
        )
        sec.add(Grid([_calo_figure(calo, w) for w in ("response", "profile", "width")]))
        report.add(sec)
    return report.write(path)
