"""The ``task: reweight`` config: classifier weights that move a source onto a target.

A config names a ``preset`` (``quick`` or ``full``); every key left out (or ``null``)
keeps the preset's value, so the smallest config is ``{version: 1, task: reweight}``.

>>> from fivesigma.core.config import parse_config
>>> cfg = parse_config({"version": 1, "task": "reweight", "preset": "quick"})
>>> s = cfg.settings()
>>> s.target_alpha_s in s.dctr_alpha_s, s.features[:3]
(False, ['pt', 'eta', 'mass'])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field

from fivesigma.core.config import OutputConfig, StrictModel, TaskConfig
from fivesigma.errors import ConfigError

__all__ = ["PRESETS", "ReweightConfig", "ReweightSettings"]

#: Pythia's default FSR alpha_s(mZ) (``TimeShower:alphaSvalue``)
PYTHIA_ALPHA_S = 0.1365

#: What the reweighters see and what only the closure checks, by default
DEFAULT_FEATURES = ["pt", "eta", "mass", "nconst", "ncharged", "width", "ptd", "tau21"]
DEFAULT_CHECK_FEATURES = ["lead_frac"]

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "source_events": 30_000,
        "target_events": 15_000,
        "dctr_events": 8_000,
        "epochs": 60,
        "patience": 10,
        "gb_estimators": 60,
    },
    "full": {
        "source_events": 200_000,
        "target_events": 100_000,
        "dctr_events": 50_000,
        "epochs": 100,
        "patience": 10,
        "gb_estimators": 200,
    },
}


class _Output(OutputConfig):
    dir: Annotated[str, Field(description="output directory (overridden by --out)")] = (
        "fivesigma-reweight"
    )


class ReweightSamples(StrictModel):
    """The built-in samples: Pythia8 QCD dijets with two final-state shower alpha_s."""

    source_alpha_s: Annotated[
        float, Field(ge=0.05, le=0.3, description="FSR alpha_s(mZ) of the source")
    ] = PYTHIA_ALPHA_S
    target_alpha_s: Annotated[
        float, Field(ge=0.05, le=0.3, description="FSR alpha_s(mZ) of the target")
    ] = 0.115
    source_events: Annotated[int | None, Field(ge=1000, description="Pythia events")] = None
    target_events: Annotated[int | None, Field(ge=1000, description="Pythia events")] = None
    pthat_min: Annotated[float, Field(gt=0, description="PhaseSpace:pTHatMin (GeV)")] = 200.0
    jet_pt_min: Annotated[float, Field(gt=0, description="leading jet pT threshold (GeV)")] = 150.0
    jobs: Annotated[int | None, Field(ge=1, description="generation processes")] = None


class ReweightFiles(StrictModel):
    """Two user samples instead of the built-in ones (ROOT, Parquet, HDF5, CSV)."""

    source: Annotated[list[str], Field(min_length=1, description="source files or globs")]
    target: Annotated[list[str], Field(min_length=1, description="target files or globs")]
    tree: Annotated[str, Field(description="tree (ROOT) or table name")] = "Events"


class ReweightParametrised(StrictModel):
    """DCTR: one classifier with alpha_s as an input, trained on several values and
    evaluated at the target's value, which it never saw."""

    enabled: bool = True
    alpha_s: Annotated[
        list[float], Field(min_length=2, description="training values of alpha_s (FSR)")
    ] = Field(default_factory=lambda: [0.10, 0.125, 0.15, 0.17])
    events: Annotated[int | None, Field(ge=1000, description="Pythia events per value")] = None


class ReweightClassifier(StrictModel):
    """The classifier whose probability p gives w = p / (1 - p) (an MLP, shared Trainer)."""

    hidden: Annotated[list[int], Field(min_length=1)] = Field(default_factory=lambda: [64, 64, 64])
    epochs: Annotated[int | None, Field(ge=1)] = None
    batch_size: Annotated[int, Field(ge=16)] = 512
    lr: Annotated[float, Field(gt=0)] = 1e-3


class ReweightGB(StrictModel):
    """hep_ml's GBReweighter, the baseline."""

    enabled: bool = True
    n_estimators: Annotated[int | None, Field(ge=1)] = None
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.1
    max_depth: Annotated[int, Field(ge=1, le=10)] = 3
    min_samples_leaf: Annotated[int, Field(ge=1)] = 200


class ReweightClip(StrictModel):
    """Weight clipping: weights above the cap are set to it, and the report says how many."""

    max_weight: Annotated[float | None, Field(gt=1, description="cap on a weight")] = 30.0
    quantile: Annotated[
        float | None, Field(gt=0.5, lt=1, description="also cap at this quantile of weights")
    ] = None


class ReweightConfig(TaskConfig):
    """Classifier reweighting of one simulation onto another, DCTR, GBReweighter baseline,
    closure on every feature at generator and detector level."""

    task: Literal["reweight"] = "reweight"
    seed: Annotated[int, Field(description="seed of generation, splits and training")] = 1
    output: _Output = Field(default_factory=_Output)
    preset: Annotated[
        Literal["quick", "full"], Field(description="quick: minutes; full: 200k events")
    ] = "quick"
    samples: ReweightSamples = Field(default_factory=ReweightSamples)
    files: Annotated[
        ReweightFiles | None, Field(description="your source and target files instead")
    ] = None
    features: Annotated[
        list[str] | None,
        Field(description="what the reweighters see (built-in: " + ", ".join(DEFAULT_FEATURES)
              + "; files: default all numeric columns)"),
    ] = None  # fmt: skip
    check_features: Annotated[
        list[str] | None,
        Field(description="checked in the closure only, never seen by the reweighters"),
    ] = None
    parametrised: ReweightParametrised = Field(default_factory=ReweightParametrised)
    classifier: ReweightClassifier = Field(default_factory=ReweightClassifier)
    gbreweighter: ReweightGB = Field(default_factory=ReweightGB)
    clip: ReweightClip = Field(default_factory=ReweightClip)
    bins: Annotated[int, Field(ge=3, le=200, description="quantile bins of the chi2")] = 20
    test_fraction: Annotated[float, Field(gt=0.1, lt=0.9)] = 0.5

    def settings(self) -> ReweightSettings:
        """The preset with this config's keys applied; ConfigError for contradictions."""
        from fivesigma.tasks.reweight.data import OBSERVABLES

        preset = PRESETS[self.preset]
        sm = self.samples
        builtin = self.files is None
        features = list(dict.fromkeys(self.features)) if self.features else None
        check = list(dict.fromkeys(self.check_features or []))
        if builtin:
            features = features or list(DEFAULT_FEATURES)
            if self.check_features is None:
                check = [f for f in DEFAULT_CHECK_FEATURES if f not in features]
            bad = [f for f in features + check if f not in OBSERVABLES]
            if bad:
                raise ConfigError(
                    f"features: unknown {', '.join(bad)}; the built-in samples have "
                    f"{', '.join(OBSERVABLES)}"
                )
            if abs(sm.source_alpha_s - sm.target_alpha_s) < 1e-9:
                raise ConfigError(
                    f"samples: source_alpha_s and target_alpha_s are both {sm.source_alpha_s:g}; "
                    "give two different values"
                )
        overlap = [f for f in check if features and f in features]
        if overlap:
            raise ConfigError(
                f"check_features {overlap} are also in features; check_features are the "
                "ones the reweighters do not see"
            )
        p = self.parametrised
        dctr = builtin and p.enabled
        values = sorted(set(p.alpha_s))
        if dctr:
            if len(values) < 2:
                raise ConfigError("parametrised.alpha_s needs at least two distinct values")
            if any(abs(v - sm.target_alpha_s) < 1e-9 for v in values):
                raise ConfigError(
                    f"parametrised.alpha_s contains the target's {sm.target_alpha_s:g}; it must "
                    "be held out (the test is the interpolation to it)"
                )
            if any(abs(v - sm.source_alpha_s) < 1e-9 for v in values):
                raise ConfigError(
                    f"parametrised.alpha_s contains the source's {sm.source_alpha_s:g}; give "
                    "values other than the source"
                )
            if not values[0] < sm.target_alpha_s < values[-1]:
                raise ConfigError(
                    f"samples.target_alpha_s {sm.target_alpha_s:g} is outside the parametrised "
                    f"range [{values[0]:g}, {values[-1]:g}]; DCTR interpolates, it does not "
                    "extrapolate"
                )
            bad_v = [v for v in values if not 0.05 <= v <= 0.3]
            if bad_v:
                raise ConfigError(f"parametrised.alpha_s {bad_v} outside [0.05, 0.3]")
        c = self.clip
        return ReweightSettings(
            seed=self.seed,
            builtin=builtin,
            source_alpha_s=sm.source_alpha_s,
            target_alpha_s=sm.target_alpha_s,
            source_events=sm.source_events or preset["source_events"],
            target_events=sm.target_events or preset["target_events"],
            pthat_min=sm.pthat_min,
            jet_pt_min=sm.jet_pt_min,
            jobs=sm.jobs,
            files=(
                {
                    "source": [str(self.resolve(x)) for x in self.files.source],
                    "target": [str(self.resolve(x)) for x in self.files.target],
                    "tree": self.files.tree,
                }
                if self.files
                else None
            ),
            features=features,
            check_features=check,
            dctr=dctr,
            dctr_alpha_s=values if dctr else [],
            dctr_events=p.events or preset["dctr_events"],
            hidden=list(self.classifier.hidden),
            epochs=self.classifier.epochs or preset["epochs"],
            patience=preset["patience"],
            batch_size=self.classifier.batch_size,
            lr=self.classifier.lr,
            gb=self.gbreweighter.enabled,
            gb_params={
                "n_estimators": self.gbreweighter.n_estimators or preset["gb_estimators"],
                "learning_rate": self.gbreweighter.learning_rate,
                "max_depth": self.gbreweighter.max_depth,
                "min_samples_leaf": self.gbreweighter.min_samples_leaf,
            },
            max_weight=c.max_weight,
            clip_quantile=c.quantile,
            bins=self.bins,
            test_fraction=self.test_fraction,
        )


@dataclass
class ReweightSettings:
    """Resolved sizes and settings (what the run uses, written to metrics.json)."""

    seed: int
    builtin: bool
    source_alpha_s: float
    target_alpha_s: float
    source_events: int
    target_events: int
    pthat_min: float
    jet_pt_min: float
    jobs: int | None
    files: dict[str, Any] | None
    features: list[str] | None
    check_features: list[str]
    dctr: bool
    dctr_alpha_s: list[float]
    dctr_events: int
    hidden: list[int]
    epochs: int
    patience: int
    batch_size: int
    lr: float
    gb: bool
    gb_params: dict[str, Any] = field(default_factory=dict)
    max_weight: float | None = 30.0
    clip_quantile: float | None = None
    bins: int = 20
    test_fraction: float = 0.5
