"""The ``task: anomaly`` config: a model-agnostic search from one YAML file.

A config names a ``preset`` (``quick`` or ``full``); every key left out (or ``null``)
keeps the preset's value, so the smallest config is ``{version: 1, task: anomaly}``.

>>> from fivesigma.core.config import parse_config
>>> cfg = parse_config({"version": 1, "task": "anomaly", "injection": {"s_over_b": 0.01}})
>>> s = cfg.settings()
>>> s.s_over_b, "cathode" in s.methods, s.retrainings >= 1
(0.01, True, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field

from fivesigma.core.config import OutputConfig, StrictModel, TaskConfig
from fivesigma.errors import ConfigError

__all__ = ["METHOD_NAMES", "PRESETS", "AnomalyConfig", "AnomalySettings"]

#: every method the task runs, in report order (``tasks.anomaly.methods.METHODS``)
METHOD_NAMES = (
    "supervised",
    "iad",
    "cathode",
    "cwola",
    "flow",
    "autoencoder",
    "vae",
    "deep_svdd",
)

#: methods that need the conditional variable (m_JJ) and the sidebands
CONDITIONAL_METHODS = ("cathode", "cwola")

#: Sizes of the presets.  ``quick`` is sized to run in under 15 minutes on 2 CPU cores
#: once its sample is cached; ``full`` approaches the LHC Olympics R&D statistics.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "background_events": 150_000,
        "signal_events": 20_000,
        "retrainings": 3,
        "scan": [0.0, 0.006, 0.01, 0.02, 0.04],
        "scan_methods": ["cathode", "cwola", "iad"],
        # CATHODE's protocol at a smaller scale: no early stopping (patience = epochs),
        # the classifiers averaged over their 10 epochs of lowest validation loss
        "training": {
            "epochs": 40,
            "patience": 40,
            "batch_size": 256,
            "flow_epochs": 40,
            "ensemble": 10,
        },
        "asymmetry_jets": 4000,
    },
    "full": {
        "background_events": 1_100_000,
        "signal_events": 100_000,
        "retrainings": 5,
        "scan": [0.0, 0.002, 0.004, 0.006, 0.01, 0.02],
        "scan_methods": ["cathode", "cwola", "iad", "supervised"],
        "training": {
            "epochs": 100,
            "patience": 100,
            "batch_size": 256,
            "flow_epochs": 100,
            "ensemble": 10,
        },
        "asymmetry_jets": 20_000,
    },
}


class _Output(OutputConfig):
    dir: Annotated[str, Field(description="output directory (overridden by --out)")] = (
        "fivesigma-anomaly"
    )


class AnomalyData(StrictModel):
    """Your dijet files instead of generated ones (generator ROOT files or LHC Olympics
    R&D feature files ``events_anomalydetection*.h5``)."""

    background: Annotated[
        list[str] | None, Field(description="background (QCD) files; default: generate")
    ] = None
    signal: Annotated[
        list[str] | None, Field(description="signal files to inject; default: generate")
    ] = None
    lhco: Annotated[
        str | None,
        Field(
            description="one LHC Olympics R&D file holding background and signal with its "
            "'label' column (replaces background and signal)"
        ),
    ] = None


class AnomalyGenerate(StrictModel):
    """Generated dijets (``fivesigma generate dijets``), cached between runs."""

    background_events: Annotated[int | None, Field(ge=1000, description="QCD events kept")] = None
    signal_events: Annotated[int | None, Field(ge=100, description="signal events kept")] = None
    m_resonance: Annotated[float, Field(gt=0, description="GeV")] = 3500.0
    m_x: Annotated[float, Field(gt=0, description="GeV")] = 500.0
    m_y: Annotated[float, Field(gt=0, description="GeV")] = 100.0
    mhat_window: Annotated[
        tuple[float, float] | None,
        Field(
            description="QCD: generate only hard scatters of invariant mass in this window "
            "(GeV); wider than the sidebands, so no m_JJ studied is sculpted; null: all"
        ),
    ] = (2900.0, 4500.0)
    pthat_min: Annotated[float, Field(ge=0, description="QCD: minimum hard-scatter pT (GeV)")] = (
        800.0
    )
    options: Annotated[
        dict[str, Any],
        Field(description="further generator options (see `fivesigma generate dijets -h`)"),
    ] = Field(default_factory=dict)
    jobs: Annotated[
        int | None,
        Field(
            ge=1,
            description="processes for the generation and for the trainings; default: every core",
        ),
    ] = None


class AnomalyRegions(StrictModel):
    """Signal region and sidebands in m_JJ (GeV)."""

    sr: Annotated[tuple[float, float], Field(description="signal region [low, high) in GeV")] = (
        3300.0,
        3700.0,
    )
    sidebands: Annotated[
        tuple[float, float],
        Field(description="outer edges of the sidebands, [low, sr_low) and [sr_high, high)"),
    ] = (3000.0, 4200.0)


class AnomalyInjection(StrictModel):
    """How much signal the pseudo-data holds."""

    s_over_b: Annotated[
        float | None,
        Field(ge=0, le=1, description="S/B in the signal region of the nominal data"),
    ] = 0.006
    n_signal: Annotated[
        int | None,
        Field(ge=0, description="signal events injected instead of an S/B (all m_JJ)"),
    ] = None
    scan: Annotated[
        list[float] | None,
        Field(description="S/B values (signal region) of the scan; [] for none"),
    ] = None
    scan_methods: Annotated[
        list[str] | None, Field(description="methods retrained at every S/B of the scan")
    ] = None


class AnomalyTraining(StrictModel):
    """Training of every method (the shared Trainer)."""

    epochs: Annotated[int | None, Field(ge=1)] = None
    flow_epochs: Annotated[int | None, Field(ge=1, description="epochs of the flows")] = None
    patience: Annotated[int | None, Field(ge=1, description="early-stopping patience")] = None
    batch_size: Annotated[int | None, Field(ge=8)] = None
    learning_rate: Annotated[float | None, Field(gt=0)] = None
    hidden: Annotated[list[int] | None, Field(description="hidden layer widths")] = None
    params: Annotated[
        dict[str, Any], Field(description="further method settings (MethodSettings fields)")
    ] = Field(default_factory=dict)


class AnomalyBumpHunt(StrictModel):
    """The physics result: a dijet-function fit of m_JJ after the anomaly cut."""

    enabled: bool = True
    method: Annotated[
        str,
        Field(
            description="the method whose score is cut on (cwola: CWoLa hunting, cheap; "
            "cathode: stronger, a flow per fold)"
        ),
    ] = "cwola"
    efficiency: Annotated[
        float,
        Field(gt=0, le=1, description="fraction of signal-region data kept by the cut"),
    ] = 0.1
    range: Annotated[tuple[float, float], Field(description="m_JJ range of the fit in GeV")] = (
        3000.0,
        4200.0,
    )
    bins: Annotated[int, Field(ge=8, le=500, description="m_JJ bins in the fit range")] = 24
    n_params: Annotated[Literal[3, 4], Field(description="dijet-function parameters")] = 4
    sculpting_tolerance: Annotated[
        float,
        Field(
            gt=0,
            lt=1,
            description="smallest p-value called a good fit (dijet function on the cut "
            "background) or an unchanged shape",
        ),
    ] = 0.01
    spurious_tolerance: Annotated[
        float,
        Field(
            gt=0,
            description="largest |Z| of the spurious signal (the bump hunt on the cut test "
            "background) called 'not sculpted'",
        ),
    ] = 2.0


class AnomalyAsymmetry(StrictModel):
    """Autoencoder on jet images: trained on QCD it should tag tops, not the reverse."""

    enabled: bool = True
    jets_per_class: Annotated[int | None, Field(ge=200)] = None


class AnomalyConfig(TaskConfig):
    """Anomaly detection on dijets: inject signal, train unsupervised, density-based and
    weakly supervised methods beside their ceilings, judge them by SIC, hunt the bump."""

    task: Literal["anomaly"] = "anomaly"
    seed: Annotated[int, Field(description="seed of generation, splits and training")] = 1
    output: _Output = Field(default_factory=_Output)
    preset: Annotated[
        Literal["quick", "full"],
        Field(description="quick: under 15 minutes once cached; full: LHCO-like statistics"),
    ] = "quick"
    data: AnomalyData = Field(default_factory=AnomalyData)
    generate: AnomalyGenerate = Field(default_factory=AnomalyGenerate)
    features: Annotated[
        list[str],
        Field(description="per-event features the methods see (m_JJ is the conditional variable)"),
    ] = Field(default_factory=lambda: ["mj1", "delta_mj", "tau21_j1", "tau21_j2"])
    condition: Annotated[
        str | None,
        Field(
            description="the conditional variable of the search (the resonance mass); "
            "null for none, which only the unsupervised methods accept"
        ),
    ] = "mjj"
    regions: AnomalyRegions = Field(default_factory=AnomalyRegions)
    injection: AnomalyInjection = Field(default_factory=AnomalyInjection)
    methods: Annotated[
        list[str], Field(description=f"methods to run: {', '.join(METHOD_NAMES)}")
    ] = Field(default_factory=lambda: list(METHOD_NAMES))
    retrainings: Annotated[
        int | None, Field(ge=1, le=20, description="trainings per method (bands)")
    ] = None
    training: AnomalyTraining = Field(default_factory=AnomalyTraining)
    bump_hunt: AnomalyBumpHunt = Field(default_factory=AnomalyBumpHunt)
    asymmetry: AnomalyAsymmetry = Field(default_factory=AnomalyAsymmetry)

    def settings(self) -> AnomalySettings:
        """The preset with this config's keys applied; ConfigError for contradictions."""
        preset = PRESETS[self.preset]
        methods = list(dict.fromkeys(self.methods))
        for name in methods:
            if name not in METHOD_NAMES:
                raise ConfigError(
                    f"methods: unknown method {name!r}; accepted: {', '.join(METHOD_NAMES)}"
                )
        if not methods:
            raise ConfigError(f"methods is empty; name at least one of {', '.join(METHOD_NAMES)}")
        if self.condition is None:
            needs = [m for m in methods if m in CONDITIONAL_METHODS]
            if needs:
                raise ConfigError(
                    f"method(s) {', '.join(needs)} need a conditional variable (the "
                    "signal region is defined in it); set condition: mjj or drop them"
                )
        elif self.condition != "mjj":
            raise ConfigError(
                f"condition {self.condition!r} is not supported; accepted: mjj (or null)"
            )
        if "mjj" in self.features:
            raise ConfigError(
                "features: 'mjj' is the conditional variable of the search and cannot be a "
                "feature (a classifier would learn the signal region itself)"
            )
        if not self.features:
            raise ConfigError("features is empty; e.g. [mj1, delta_mj, tau21_j1, tau21_j2]")
        inj = self.injection
        if inj.s_over_b is not None and inj.n_signal is not None:
            raise ConfigError("injection: give s_over_b or n_signal, not both")
        if inj.s_over_b is None and inj.n_signal is None:
            raise ConfigError("injection: give s_over_b (signal region S/B) or n_signal")
        sr, sb = self.regions.sr, self.regions.sidebands
        if not sr[0] < sr[1]:
            raise ConfigError(f"regions.sr must be [low, high) with low < high, got {list(sr)}")
        if not (sb[0] < sr[0] and sr[1] < sb[1]):
            raise ConfigError(
                f"regions.sidebands {list(sb)} must enclose the signal region {list(sr)} "
                "with room on both sides"
            )
        lo, hi = self.bump_hunt.range
        if self.bump_hunt.enabled and not (lo < sr[0] and sr[1] < hi):
            raise ConfigError(
                f"bump_hunt.range {[lo, hi]} must enclose the signal region {list(sr)}"
            )
        if self.bump_hunt.enabled and self.bump_hunt.method not in methods:
            raise ConfigError(
                f"bump_hunt.method {self.bump_hunt.method!r} is not among the methods run "
                f"({', '.join(methods)})"
            )
        scan = list(preset["scan"] if inj.scan is None else inj.scan)
        if any(not 0 <= v <= 1 for v in scan):
            raise ConfigError(f"injection.scan values are S/B in [0, 1], got {scan}")
        scan_methods = [m for m in (inj.scan_methods or preset["scan_methods"]) if m in methods]
        t = self.training
        train = dict(preset["training"])
        for key in ("epochs", "flow_epochs", "patience", "batch_size", "learning_rate"):
            if getattr(t, key) is not None:
                train[key] = getattr(t, key)
        if t.hidden is not None:
            train["hidden"] = tuple(t.hidden)
        gen = self.generate
        return AnomalySettings(
            seed=self.seed,
            background_events=gen.background_events or preset["background_events"],
            signal_events=gen.signal_events or preset["signal_events"],
            generator_options={
                "m_resonance": gen.m_resonance,
                "m_x": gen.m_x,
                "m_y": gen.m_y,
                **gen.options,
            },
            background_options={
                "pthat_min": gen.pthat_min,
                **(
                    {"mhat_min": gen.mhat_window[0], "mhat_max": gen.mhat_window[1]}
                    if gen.mhat_window
                    else {}
                ),
                **{k: v for k, v in gen.options.items() if k not in ("m_resonance", "m_x", "m_y")},
            },
            jobs=gen.jobs,
            features=tuple(self.features),
            sr=(float(sr[0]), float(sr[1])),
            sidebands=(float(sb[0]), float(sb[1])),
            s_over_b=inj.s_over_b,
            n_signal=inj.n_signal,
            scan=sorted(set(scan)),
            scan_methods=scan_methods,
            methods=methods,
            retrainings=self.retrainings or preset["retrainings"],
            training={**train, **t.params},
            asymmetry_jets=self.asymmetry.jets_per_class or preset["asymmetry_jets"],
        )


@dataclass
class AnomalySettings:
    """Resolved sizes and settings (what the run uses, written to metrics.json)."""

    seed: int
    background_events: int
    signal_events: int
    generator_options: dict[str, Any]
    background_options: dict[str, Any]
    jobs: int | None
    features: tuple[str, ...]
    sr: tuple[float, float]
    sidebands: tuple[float, float]
    s_over_b: float | None
    n_signal: int | None
    scan: list[float]
    scan_methods: list[str]
    methods: list[str]
    retrainings: int
    training: dict[str, Any] = field(default_factory=dict)
    asymmetry_jets: int = 3000
