"""The trigger report: accuracy against bits, emulation check, resources, rate curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.report.builder import Box, Figure, KeyValues, Report, Section, Table, Text
from fivesigma.report.style import color, exp_label

__all__ = ["write_report"]

_VARIANT_STYLE = {"float": "-", "qat": "--", "emulated": ":"}


def _scan_figure(scan: list[dict[str, Any]], acc_float: float) -> Any:
    import matplotlib.pyplot as plt

    fig, (ax, rax) = plt.subplots(1, 2, figsize=(11, 4.2))
    w = [r["width"] for r in scan]
    ax.plot(w, [r["accuracy"] for r in scan], "o-", color=color(0), label="QAT (fixed point)")
    ax.axhline(acc_float, color="0.4", ls="--", label="float")
    ax.axhspan(0.99 * acc_float, acc_float, color="0.9", zorder=0, label="within 1% of float")
    ax.set_xlabel("bits W of ap_fixed<W, I>")
    ax.set_ylabel("test accuracy (5 classes)")
    ax.legend(fontsize=8)
    exp_label(ax)
    rax.plot(w, [r["resources"].get("lut", np.nan) for r in scan], "o-", color=color(1),
             label="LUT (estimate)")  # fmt: skip
    rax.plot(w, [r["resources"].get("dsp", np.nan) for r in scan], "s-", color=color(2),
             label="DSP (estimate)")  # fmt: skip
    rax.set_yscale("symlog")
    rax.set_xlabel("bits W")
    rax.set_ylabel("resources (stated model, no synthesis)")
    rax.legend(fontsize=8)
    exp_label(rax)
    fig.tight_layout()
    return fig


def _rate_figure(view: dict[str, Any], budgets: list[float], title: str) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.2, 4.6))
    signals = list(next(iter(view["curves"].values())))
    for i, sig in enumerate(signals):
        for variant, curves in view["curves"].items():
            c = curves[sig]
            ax.plot(c["efficiency"], c["rate_khz"], _VARIANT_STYLE.get(variant, "-"),
                    color=color(i), label=f"{sig} ({variant})")  # fmt: skip
    for b in budgets:
        ax.axhline(b, color="0.5", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("signal efficiency")
    ax.set_ylabel("zero-bias rate [kHz]")
    ax.legend(fontsize=6, ncol=2)
    exp_label(ax, title)
    fig.tight_layout()
    return fig


def _history_figure(histories: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    for i, (net, hist) in enumerate(histories.items()):
        for variant, h in hist.items():
            v = h.get("val_loss") or []
            if v:
                v = np.asarray(v, dtype=float)
                ax.plot(np.arange(1, len(v) + 1), v / abs(v[0]) if v[0] else v,
                        _VARIANT_STYLE.get(variant, "-"), color=color(i),
                        label=f"{net} {variant}")  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation loss / first epoch")
    ax.legend(fontsize=7)
    exp_label(ax)
    fig.tight_layout()
    return fig


def _resource_rows(res: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, layer in res.get("layers", {}).items():
        rows.append([name, layer.get("multiplications"), layer.get("nonzero_weights"),
                     layer.get("dsp"), layer.get("lut"), layer.get("latency_cycles")])  # fmt: skip
    total = res.get("total", {})
    rows.append(["total", total.get("multiplications"), total.get("nonzero_weights"),
                 total.get("dsp"), total.get("lut"), total.get("latency_cycles")])  # fmt: skip
    return [[("—" if v is None else v) for v in r] for r in rows]


def write_report(
    path: Path, s: Any, m: dict[str, Any], built: dict[str, Any], views: dict[str, Any]
) -> Path:
    """Write ``report.html`` for a trigger run."""
    nets = m["networks"]
    report = Report(
        "Level-1 trigger networks",
        subtitle=f"fivesigma trigger · ap_fixed<{s.nominal_width},{s.integer}> · "
        f"budgets {', '.join(f'{b:g}' for b in s.budgets_khz)} kHz · pile-up {s.mu}",
    )
    if "jet_tagger" in nets:
        t = nets["jet_tagger"]
        sec = Section("Jet tagger (16 → 64 → 32 → 32 → 5)", anchor="tagger")
        lines = [
            f"float accuracy {t['accuracy_float']:.4f}; QAT at {t['width']} bits "
            f"{t['accuracy_qat']:.4f} ({t['accuracy_qat'] / t['accuracy_float']:.4f} of float)"
        ]
        if "emulation" in t:
            e = t["emulation"]
            lines.append(
                f"hls4ml C++ emulation: accuracy {t['accuracy_emulated']:.4f}; "
                f"{'bit exact' if e['bit_exact'] else 'NOT bit exact'} against the numpy "
                f"fixed-point reference on all {e['events']} test jets "
                f"({e['events_differing']} differ)"
            )
        sec.add(Box([Text(x) for x in lines]))
        sec.add(
            Figure(
                lambda: _scan_figure(t["width_scan"], t["accuracy_float"]),
                caption="accuracy and estimated resources against the bit width",
            ),
            Table(
                [
                    "bits",
                    "accuracy",
                    "/ float",
                    "non-zero weights",
                    "DSP",
                    "LUT",
                    "cycles",
                    "overflows (input)",
                ],
                [
                    [
                        r["width"],
                        r["accuracy"],
                        r["accuracy_ratio"],
                        r["nonzero_weights"],
                        r["resources"].get("dsp"),
                        r["resources"].get("lut"),
                        r["resources"].get("latency_cycles"),
                        r["overflows"].get("input", 0),
                    ]
                    for r in t["width_scan"]
                ],
                digits=4,
            ),
        )
        report.add(sec)
    for name, title in (
        ("axol1tl", "AXOL1TL-like anomaly trigger (57 → 28 → 15 → 8, |μ|²)"),
        ("cicada", "CICADA-like calorimeter trigger (CNN on 18 × 14 regions)"),
    ):
        if name not in nets:
            continue
        net, view = nets[name], views[name]
        sec = Section(title, anchor=name)
        rows = []
        for budget, variants in net["trigger"]["budgets"].items():
            for variant, row in variants.items():
                rows.append([budget, variant, row["threshold"], row["n_pass"], row["rate_khz"],
                             "yes" if row["resolved"] else "no",
                             *row["efficiency"].values()])  # fmt: skip
        signals = list(next(iter(next(iter(net["trigger"]["budgets"].values())).values()))
                       ["efficiency"])  # fmt: skip
        sec.add(
            Table(
                [
                    "budget [kHz]",
                    "model",
                    "threshold",
                    "zero-bias passing",
                    "rate [kHz]",
                    "resolved",
                    *[f"ε({x})" for x in signals],
                ],
                rows,
                digits=4,
            ),
            Text(
                "Rate = zero-bias pass fraction × 40 MHz × filled fraction; the zero-bias "
                "events that measure it were never trained on. 'resolved' is no when the "
                "budget is below one zero-bias event's worth of rate. float: the same network "
                "in floating point; qat: the fixed-point network (numpy reference = torch QAT "
                "forward); emulated: hls4ml's compiled C++."
            ),
            Figure(
                lambda view=view, name=name: _rate_figure(view, s.budgets_khz, name),
                caption="rate against signal efficiency",
            ),
        )
        if "emulation" in net:
            e = net["emulation"]
            sec.add(
                Text(
                    f"emulation against the reference: {e['events']} zero-bias events, "
                    f"{e['events_differing']} differ (bit exact: {e['bit_exact']})"
                )
            )
        report.add(sec)
    if "reference_seeds" in m:
        sec = Section("Simple L1 seeds at the same budgets", anchor="seeds")
        rows = []
        for budget, seeds in m["reference_seeds"].items():
            for seed, row in seeds.items():
                rows.append([budget, seed, row["threshold"], *row["efficiency"].values()])
        signals = list(s.signals)
        sec.add(Table(["budget [kHz]", "seed", "threshold [GeV]",
                       *[f"ε({x})" for x in signals]], rows, digits=4))  # fmt: skip
        report.add(sec)
    res = Section("Resources and latency (no vendor tools)", anchor="resources")
    for name, net in nets.items():
        if "resources" in net:
            res.add(
                Text(name),
                Table(
                    ["layer", "multiplications", "non-zero weights", "DSP", "LUT", "cycles"],
                    _resource_rows(net["resources"]),
                ),
            )
    res.add(
        Text(
            "Estimates by the stated model of fivesigma.export.hls.resources: a product maps to "
            "DSPs when both operands exceed 9 bits, else shift-and-add LUTs; latency from the "
            "reuse factor and the adder-tree depth. Synthesis (Vivado/Vitis HLS) is needed for "
            "timing closure and exact LUT, FF, BRAM and DSP counts."
        )
    )
    report.add(res)
    hist = Section("Training", anchor="training")
    hist.add(
        Figure(
            lambda: _history_figure({k: b.history for k, b in built.items()}),
            caption="validation loss",
        ),
        KeyValues({k: v for k, v in m["settings"].items() if not isinstance(v, dict)}),
    )
    report.add(hist)
    return report.write(path)
