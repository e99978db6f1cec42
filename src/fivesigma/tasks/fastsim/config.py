"""The ``task: fastsim`` config: generative surrogates of the detector from one YAML file.

A config names a ``preset`` (``quick`` or ``full``); every size left out (or ``null``)
keeps the preset's value, so the smallest config is ``{version: 1, task: fastsim}``.

>>> from fivesigma.core.config import parse_config
>>> s = parse_config({"version": 1, "task": "fastsim"}).settings()
>>> s.jet_models, s.oversampling >= 2
(['flow', 'flow_matching', 'gan'], True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field

from fivesigma.core.config import OutputConfig, StrictModel, TaskConfig
from fivesigma.errors import ConfigError

__all__ = ["PRESETS", "FastsimConfig", "FastsimSettings"]

MODEL_NAMES = ("flow", "flow_matching", "gan")
JET_PROCESSES = ("qcd", "qcd_bb", "qcd_cc")

#: ``quick`` runs in under 15 minutes on 2 CPU cores including the first generation of
#: the jet pairs (cached afterwards); ``full`` is for a real study.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "jet_events": {"qcd": 12000, "qcd_bb": 4000},
        "showers": 12000,
        "training": {
            "epochs": 25,
            "batch_size": 512,
            "patience": 5,
            "gan_epochs": 40,
            "flow_passes": 2,
            "flow_transforms": 3,
            "flow_hidden": [64, 64],
            "ode_solver": "midpoint",
            "ode_steps": 3,
            "fm_epochs": 150,
            "fm_batch_size": 256,
            "fm_learning_rate": 3e-3,
            "fm_patience": 25,
        },
        "classifier_trees": 200,
    },
    "full": {
        "jet_events": {"qcd": 80000, "qcd_bb": 25000, "qcd_cc": 10000},
        "showers": 60000,
        "training": {
            "epochs": 100,
            "batch_size": 1024,
            "patience": 10,
            "gan_epochs": 150,
            "flow_passes": 2,
            "flow_transforms": 4,
            "flow_hidden": [96, 96],
            "ode_solver": "midpoint",
            "ode_steps": 4,
            "fm_epochs": 400,
            "fm_batch_size": 512,
            "fm_learning_rate": 3e-3,
            "fm_patience": 40,
        },
        "classifier_trees": 400,
    },
}


class _Output(OutputConfig):
    dir: Annotated[str, Field(description="output directory (overridden by --out)")] = (
        "fivesigma-fastsim"
    )


class FastsimJets(StrictModel):
    """Surrogates of the jet task's detector response p(reco jet | gen jet)."""

    enabled: bool = True
    events: Annotated[
        dict[str, int] | None,
        Field(description=f"Pythia events per process ({', '.join(JET_PROCESSES)})"),
    ] = None
    pt_min: Annotated[float, Field(gt=0, description="gen jet pT threshold (GeV)")] = 150.0
    eta_max: Annotated[float, Field(gt=0, le=2.5, description="gen jets with |eta| below")] = 2.0
    match_dr: Annotated[float, Field(gt=0, le=0.8, description="gen-reco matching Delta R")] = 0.4
    models: Annotated[
        list[str], Field(description=f"surrogates to train: {', '.join(MODEL_NAMES)}")
    ] = Field(default_factory=lambda: list(MODEL_NAMES))
    oversampling: Annotated[
        int, Field(ge=2, le=1000, description="draws per gen jet for the oversampling study")
    ] = 10
    test_fraction: Annotated[
        float, Field(gt=0.05, lt=0.8, description="held-out gen jets for validation")
    ] = 0.3
    timing_events: Annotated[
        int,
        Field(ge=20, description="fresh Pythia events on which the detector response is timed"),
    ] = 400


class FastsimCalorimeter(StrictModel):
    """Surrogates of fivesigma's parametrised calorimeter showers
    (:mod:`fivesigma.physics.calorimeter`), conditioned on incident energy and angle."""

    enabled: bool = True
    showers: Annotated[int | None, Field(ge=500, description="showers simulated")] = None
    energy: Annotated[
        tuple[float, float], Field(description="incident energy range (GeV), log-uniform")
    ] = (5.0, 50.0)
    theta: Annotated[
        tuple[float, float], Field(description="incident angle range (radians), uniform")
    ] = (0.0, 0.25)
    models: Annotated[
        list[str], Field(description=f"surrogates to train: {', '.join(MODEL_NAMES)}")
    ] = Field(default_factory=lambda: ["gan", "flow_matching"])
    test_fraction: Annotated[float, Field(gt=0.05, lt=0.8)] = 0.3
    tolerance_total_energy: Annotated[
        float, Field(gt=0, description="largest relative shift of the mean visible energy")
    ] = 0.02
    tolerance_resolution: Annotated[
        float, Field(gt=0, description="largest relative shift of the energy resolution")
    ] = 0.15
    tolerance_profile: Annotated[
        float,
        Field(gt=0, description="largest relative shift of a layer's mean energy fraction"),
    ] = 0.10
    tolerance_width: Annotated[
        float, Field(gt=0, description="largest relative shift of a layer's mean shower width")
    ] = 0.10


class FastsimTraining(StrictModel):
    """Training of the generators (flows and flow matching: the shared Trainer)."""

    epochs: Annotated[int | None, Field(ge=1)] = None
    gan_epochs: Annotated[int | None, Field(ge=1, description="epochs of the GAN")] = None
    fm_epochs: Annotated[
        int | None, Field(ge=1, description="epochs of flow matching (it needs many)")
    ] = None
    fm_batch_size: Annotated[int | None, Field(ge=16, description="flow matching")] = None
    fm_learning_rate: Annotated[float | None, Field(gt=0, description="flow matching")] = None
    fm_patience: Annotated[int | None, Field(ge=1, description="flow matching")] = None
    flow_passes: Annotated[
        int | None,
        Field(
            ge=0,
            description="passes of the spline flow's inverse: 2 (coupling, fast sampling) "
            "or 0 (fully autoregressive: one pass per output, slower)",
        ),
    ] = None
    batch_size: Annotated[int | None, Field(ge=16)] = None
    learning_rate: Annotated[float | None, Field(gt=0)] = None
    patience: Annotated[int | None, Field(ge=1, description="early-stopping patience")] = None
    hidden: Annotated[list[int] | None, Field(description="hidden layer widths")] = None
    ode_steps: Annotated[int | None, Field(ge=1, le=1000, description="flow-matching steps")] = None
    ode_solver: Annotated[Literal["euler", "midpoint", "rk4"] | None, Field()] = None
    flow_transforms: Annotated[
        int | None, Field(ge=1, description="spline transforms of the flow")
    ] = None
    flow_hidden: Annotated[
        list[int] | None, Field(description="hidden widths of the flow (default: hidden)")
    ] = None
    threads: Annotated[int | None, Field(ge=1, description="torch threads")] = None


class FastsimValidation(StrictModel):
    """Targets and the classifier two-sample test."""

    auc_target: Annotated[float, Field(gt=0.5, le=1)] = 0.55
    speedup_target: Annotated[float, Field(gt=0)] = 100.0
    classifier_trees: Annotated[int | None, Field(ge=10, description="BDT trees")] = None


class FastsimConfig(TaskConfig):
    """Fast simulation: flows, flow matching and GANs that replace the jet detector
    response and a calorimeter shower simulation, validated against them."""

    task: Literal["fastsim"] = "fastsim"
    output: _Output = Field(default_factory=_Output)
    preset: Annotated[
        Literal["quick", "full"],
        Field(description="quick: under 15 minutes on 2 cores; full: larger samples"),
    ] = "quick"
    jets: FastsimJets = Field(default_factory=FastsimJets)
    calorimeter: FastsimCalorimeter = Field(default_factory=FastsimCalorimeter)
    training: FastsimTraining = Field(default_factory=FastsimTraining)
    validation: FastsimValidation = Field(default_factory=FastsimValidation)

    def settings(self) -> FastsimSettings:
        """The preset with this config's keys applied; ConfigError for contradictions."""
        preset = PRESETS[self.preset]
        j, c = self.jets, self.calorimeter
        if not j.enabled and not c.enabled:
            raise ConfigError("jets and calorimeter are both disabled; enable at least one")
        for where, models in (("jets.models", j.models), ("calorimeter.models", c.models)):
            bad = [m for m in models if m not in MODEL_NAMES]
            if bad:
                raise ConfigError(
                    f"{where}: unknown model {bad[0]!r}; accepted: {', '.join(MODEL_NAMES)}"
                )
        if j.enabled and not j.models:
            raise ConfigError(f"jets.models is empty; name one of {', '.join(MODEL_NAMES)}")
        if c.enabled and not c.models:
            raise ConfigError(f"calorimeter.models is empty; name one of {', '.join(MODEL_NAMES)}")
        events = dict(preset["jet_events"] if j.events is None else j.events)
        for process, n in events.items():
            if process not in JET_PROCESSES:
                raise ConfigError(
                    f"jets.events: unknown process {process!r}; accepted: "
                    f"{', '.join(JET_PROCESSES)}"
                )
            if not isinstance(n, int) or n < 50:
                raise ConfigError(f"jets.events.{process} must be an integer >= 50, got {n!r}")
        if j.enabled and not events:
            raise ConfigError("jets.events is empty; e.g. {qcd: 12000}")
        e_lo, e_hi = c.energy
        if not 0 < e_lo <= e_hi:
            raise ConfigError(
                f"calorimeter.energy must be [low, high] with 0 < low <= high, got {[e_lo, e_hi]}"
            )
        t_lo, t_hi = c.theta
        if not 0 <= t_lo <= t_hi < 1.2:
            raise ConfigError(
                f"calorimeter.theta must be [low, high] radians with 0 <= low <= high < 1.2, "
                f"got {[t_lo, t_hi]}"
            )
        train = dict(preset["training"])
        t = self.training
        for key in ("epochs", "gan_epochs", "batch_size", "learning_rate", "patience",
                    "fm_epochs", "fm_batch_size", "fm_learning_rate", "fm_patience"):  # fmt: skip
            if getattr(t, key) is not None:
                train[key] = getattr(t, key)
        if t.hidden is not None:
            if not t.hidden or any(h < 1 for h in t.hidden):
                raise ConfigError(f"training.hidden must be positive widths, got {t.hidden}")
            train["hidden"] = list(t.hidden)
        for key in ("ode_steps", "ode_solver"):
            if getattr(t, key) is not None:
                train[key] = getattr(t, key)
        if t.flow_transforms is not None:
            train["flow_transforms"] = t.flow_transforms
        if t.flow_hidden is not None:
            if not t.flow_hidden or any(h < 1 for h in t.flow_hidden):
                raise ConfigError(
                    f"training.flow_hidden must be positive widths, got {t.flow_hidden}"
                )
            train["flow_hidden"] = list(t.flow_hidden)
        if t.flow_passes is not None:
            train["flow_passes"] = t.flow_passes or None  # 0: autoregressive
        if t.threads is not None:
            train["num_threads"] = t.threads
        return FastsimSettings(
            seed=self.seed,
            jets=j.enabled,
            jet_events=events,
            pt_min=j.pt_min,
            eta_max=j.eta_max,
            match_dr=j.match_dr,
            jet_models=list(dict.fromkeys(j.models)),
            oversampling=j.oversampling,
            jet_test_fraction=j.test_fraction,
            timing_events=j.timing_events,
            calorimeter=c.enabled,
            showers=c.showers or preset["showers"],
            energy=(float(e_lo), float(e_hi)),
            theta=(float(t_lo), float(t_hi)),
            calo_models=list(dict.fromkeys(c.models)),
            calo_test_fraction=c.test_fraction,
            tolerances={
                "total_energy": c.tolerance_total_energy,
                "resolution": c.tolerance_resolution,
                "profile": c.tolerance_profile,
                "width": c.tolerance_width,
            },
            training=train,
            auc_target=self.validation.auc_target,
            speedup_target=self.validation.speedup_target,
            classifier_trees=self.validation.classifier_trees or preset["classifier_trees"],
        )


@dataclass
class FastsimSettings:
    """Resolved sizes and settings (what the run uses, written to metrics.json)."""

    seed: int
    jets: bool
    jet_events: dict[str, int]
    pt_min: float
    eta_max: float
    match_dr: float
    jet_models: list[str]
    oversampling: int
    jet_test_fraction: float
    timing_events: int
    calorimeter: bool
    showers: int
    energy: tuple[float, float]
    theta: tuple[float, float]
    calo_models: list[str]
    calo_test_fraction: float
    tolerances: dict[str, float]
    training: dict[str, Any] = field(default_factory=dict)
    auc_target: float = 0.55
    speedup_target: float = 100.0
    classifier_trees: int = 200
