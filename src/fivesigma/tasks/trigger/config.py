"""The ``task: trigger`` config: Level-1 trigger networks from one YAML file.

A config names a ``preset`` (``quick`` or ``full``); every key left out (or ``null``)
keeps the preset's value, so the smallest config is ``{version: 1, task: trigger}``.

>>> from fivesigma.core.config import parse_config
>>> cfg = parse_config({"version": 1, "task": "trigger", "rate": {"budgets_khz": [2.0]}})
>>> s = cfg.settings()
>>> s.budgets_khz, s.nominal_width in s.widths
([2.0], True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field

from fivesigma.core.config import OutputConfig, StrictModel, TaskConfig
from fivesigma.errors import ConfigError

__all__ = ["MODELS", "PRESETS", "TriggerConfig", "TriggerSettings"]

#: the trigger networks the task trains, quantises, converts and judges
MODELS = ("jet_tagger", "axol1tl", "cicada")

#: LHC: 40 MHz bunch crossings of which 2544 of 3564 bunch slots collide (Run 3 fills)
BUNCH_CROSSING_MHZ = 40.0
FILLED_FRACTION = 2544 / 3564

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "zerobias_events": 100_000,
        "signal_events": 2000,
        "mu": 60,
        "pool_size": 500,
        "jets_per_class": 4000,
        "widths": [4, 6, 8, 10, 12, 16],
        "epochs": 30,
        "patience": 6,
    },
    "full": {
        "zerobias_events": 1_000_000,
        "signal_events": 20_000,
        "mu": 200,
        "pool_size": 2000,
        "jets_per_class": 20_000,
        "widths": [4, 5, 6, 7, 8, 10, 12, 14, 16],
        "epochs": 100,
        "patience": 10,
    },
}


class _Output(OutputConfig):
    dir: Annotated[str, Field(description="output directory (overridden by --out)")] = (
        "fivesigma-trigger"
    )


class TriggerStream(StrictModel):
    """The zero-bias-like stream and the signals (``fivesigma generate l1``), cached."""

    zerobias_events: Annotated[int | None, Field(ge=1000)] = None
    signal_events: Annotated[int | None, Field(ge=100, description="events per signal")] = None
    mu: Annotated[int | None, Field(ge=0, le=200, description="mean pile-up")] = None
    signals: Annotated[
        list[str], Field(description="signal processes of `fivesigma generate l1`")
    ] = Field(default_factory=lambda: ["hh4b", "haa4gamma", "zprime"])
    options: Annotated[
        dict[str, Any], Field(description="further generator options (`generate l1 -h`)")
    ] = Field(default_factory=dict)
    jobs: Annotated[int | None, Field(ge=1)] = None


class TriggerRate(StrictModel):
    """Rate = fraction of zero-bias events passing x bunch-crossing rate x filled fraction."""

    budgets_khz: Annotated[list[float], Field(description="rate budgets in kHz")] = Field(
        default_factory=lambda: [1.0, 10.0]
    )
    bunch_crossing_mhz: Annotated[float, Field(gt=0)] = BUNCH_CROSSING_MHZ
    filled_fraction: Annotated[float, Field(gt=0, le=1)] = FILLED_FRACTION


class TriggerQuantisation(StrictModel):
    """Fixed-point types ap_fixed<W, I> of the networks (quantisation-aware training)."""

    width: Annotated[int, Field(ge=2, le=32, description="the deployed width W")] = 8
    integer: Annotated[int, Field(ge=1, le=16, description="integer bits I (with sign)")] = 3
    input_width: Annotated[int | None, Field(ge=2, le=32)] = None
    input_integer: Annotated[int | None, Field(ge=1, le=20)] = None
    widths: Annotated[
        list[int] | None, Field(description="widths of the bit-width scan (jet tagger)")
    ] = None
    sparsity: Annotated[float, Field(ge=0, lt=1, description="pruned fraction")] = 0.0


class TriggerHLS(StrictModel):
    """hls4ml conversion (no vendor tools: the C++ emulation is compiled with g++)."""

    enabled: bool = True
    backend: Literal["Vitis", "Vivado"] = "Vitis"
    io_type: Literal["io_parallel"] = "io_parallel"
    strategy: Literal["Latency", "Resource"] = "Latency"
    reuse_factor: Annotated[int, Field(ge=1, le=1024)] = 1
    clock_period_ns: Annotated[float, Field(gt=0)] = 5.0
    part: str = "xcvu13p-flga2577-2-e"


class TriggerConfig(TaskConfig):
    """Level-1 trigger networks: quantisation-aware training, hls4ml firmware emulated
    bit for bit, rate against efficiency."""

    task: Literal["trigger"] = "trigger"
    seed: Annotated[int, Field(description="seed of generation, splits and training")] = 1
    output: _Output = Field(default_factory=_Output)
    preset: Annotated[
        Literal["quick", "full"], Field(description="quick: minutes; full: 1M zero-bias")
    ] = "quick"
    models: Annotated[list[str], Field(description=f"networks to build: {', '.join(MODELS)}")] = (
        Field(default_factory=lambda: list(MODELS))
    )
    stream: TriggerStream = Field(default_factory=TriggerStream)
    jets_per_class: Annotated[
        int | None, Field(ge=200, description="jet tagger: generated jets per class")
    ] = None
    jet_files: Annotated[
        list[str] | None,
        Field(
            description="jet tagger: your jet files (the jet task's ROOT layout, labels 0 "
            "light quark, 1 gluon, 4 top, 5 W, 6 Z) instead of generated jets"
        ),
    ] = None
    quantisation: TriggerQuantisation = Field(default_factory=TriggerQuantisation)
    rate: TriggerRate = Field(default_factory=TriggerRate)
    hls: TriggerHLS = Field(default_factory=TriggerHLS)
    epochs: Annotated[int | None, Field(ge=1)] = None

    def settings(self) -> TriggerSettings:
        """The preset with this config's keys applied; ConfigError for contradictions."""
        preset = PRESETS[self.preset]
        models = list(dict.fromkeys(self.models))
        unknown = [m for m in models if m not in MODELS]
        if unknown or not models:
            raise ConfigError(
                f"models: unknown or empty {unknown or models}; accepted: {', '.join(MODELS)}"
            )
        r = self.rate
        input_khz = r.bunch_crossing_mhz * 1000.0 * r.filled_fraction
        for budget in r.budgets_khz:
            if not 0 < budget < input_khz:
                raise ConfigError(
                    f"rate.budgets_khz: {budget:g} kHz is not below the input rate "
                    f"{input_khz:.0f} kHz ({r.bunch_crossing_mhz:g} MHz x filled fraction "
                    f"{r.filled_fraction:.3f}); give budgets in (0, {input_khz:.0f})"
                )
        q = self.quantisation
        if q.integer >= q.width:
            raise ConfigError(
                f"quantisation.integer ({q.integer}) must be below quantisation.width "
                f"({q.width}): ap_fixed<W, I> needs fractional bits"
            )
        widths = sorted(set(q.widths or preset["widths"]) | {q.width})
        bad = [w for w in widths if w <= q.integer]
        if bad:
            raise ConfigError(
                f"quantisation.widths {bad} are not above the integer bits {q.integer}"
            )
        s = self.stream
        return TriggerSettings(
            seed=self.seed,
            models=models,
            zerobias_events=s.zerobias_events or preset["zerobias_events"],
            signal_events=s.signal_events or preset["signal_events"],
            mu=s.mu if s.mu is not None else preset["mu"],
            signals=list(dict.fromkeys(s.signals)),
            generator_options={"pool_size": preset["pool_size"], **s.options},
            jobs=s.jobs,
            jets_per_class=self.jets_per_class or preset["jets_per_class"],
            jet_files=[str(self.resolve(p)) for p in self.jet_files] if self.jet_files else None,
            nominal_width=q.width,
            integer=q.integer,
            input_width=q.input_width or max(q.width + 4, 12),
            input_integer=q.input_integer,
            widths=widths,
            sparsity=q.sparsity,
            budgets_khz=sorted(r.budgets_khz),
            input_rate_khz=input_khz,
            epochs=self.epochs or preset["epochs"],
            patience=preset["patience"],
            hls=self.hls.model_dump(),
        )


@dataclass
class TriggerSettings:
    """Resolved sizes and settings (what the run uses, written to metrics.json)."""

    seed: int
    models: list[str]
    zerobias_events: int
    signal_events: int
    mu: int
    signals: list[str]
    generator_options: dict[str, Any]
    jobs: int | None
    jets_per_class: int
    jet_files: list[str] | None
    nominal_width: int
    integer: int
    input_width: int
    input_integer: int | None
    widths: list[int]
    sparsity: float
    budgets_khz: list[float]
    input_rate_khz: float
    epochs: int
    patience: int
    hls: dict[str, Any] = field(default_factory=dict)
