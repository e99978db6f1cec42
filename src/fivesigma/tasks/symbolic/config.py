"""The ``task: symbolic`` config: formulas from data (symbolic regression).

A config names a ``preset`` (``quick`` or ``full``); every key left out (or ``null``)
keeps the preset's value, so the smallest config is ``{version: 1, task: symbolic}``.
Three stages, each optional: the benchmark of known physics formulas, a search on the
user's own table, and the distillation of a classifier into a formula.

>>> from fivesigma.core.config import parse_config
>>> cfg = parse_config({"version": 1, "task": "symbolic", "benchmark": {"noise": [0.0]}})
>>> s = cfg.settings()
>>> len(s.formulas), s.noise, s.engine.generations > 0
(10, (0.0,), True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from fivesigma.core.config import OutputConfig, StrictModel, TaskConfig
from fivesigma.data.config import DataConfig, GenerateConfig
from fivesigma.errors import ConfigError
from fivesigma.tasks.symbolic.benchmark import BUILTIN, Formula, Input
from fivesigma.tasks.symbolic.engine import EngineSettings
from fivesigma.tasks.symbolic.units import parse_unit

__all__ = ["OPERATORS", "PRESETS", "SymbolicConfig", "SymbolicSettings"]

#: operators the engine (pyoperon) knows
OPERATORS = (
    "add", "sub", "mul", "div", "pow", "square", "sqrt", "cbrt", "abs", "exp", "log",
    "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh",
)  # fmt: skip

#: Sizes of the presets.  ``quick`` runs the 10 formulas at 3 noise levels and the
#: distillation in under 15 minutes on 2 CPU cores (the higgs4l sample cached); ``full``
#: searches longer, with more restarts and more points.  Many small restarts find more
#: than a few big ones for the same evaluations (rapidity at 1% noise: the truth on the
#: front in 2 of 10 restarts of population 250, 3 s each, against 1 of 6 of population
#: 1000, 16 s each); ``max_seconds`` is only the safety cap of one restart.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "points": 300,
        "generations": 40,
        "population": 250,
        "restarts": 8,
        "max_seconds": 15.0,
        "distill_max_seconds": 60.0,
        "distill_population": 500,
        "distill_points": 1000,
        "distill_generations": 40,
        "distill_restarts": 2,
        "epochs": 30,
    },
    "full": {
        "points": 500,
        "generations": 100,
        "population": 1000,
        "restarts": 5,
        "max_seconds": 600.0,
        "distill_max_seconds": 600.0,
        "distill_population": 1000,
        "distill_points": 2000,
        "distill_generations": 100,
        "distill_restarts": 4,
        "epochs": 60,
    },
}

#: the high-level features of the higgs4l sample (as in configs/higgs4l.yaml)
HIGGS4L_DERIVED = {
    "m4l": "inv_mass(lep_pt, lep_eta, lep_phi, lep_mass, 4)",
    "mZ1": "mz1(lep_pt, lep_eta, lep_phi, lep_mass, lep_pdgid, lep_charge)",
    "mZ2": "mz2(lep_pt, lep_eta, lep_phi, lep_mass, lep_pdgid, lep_charge)",
    "pt4l": "pt_sum(lep_pt, lep_eta, lep_phi, lep_mass, 4)",
    **{f"lep{i + 1}_pt": f"nth(lep_pt, {i})" for i in range(4)},
    **{f"lep{i + 1}_eta": f"nth(lep_eta, {i})" for i in range(4)},
}
HIGGS4L_SELECTION = "(nlep >= 4) & (mZ1 > 40) & (mZ1 < 120) & (mZ2 > 12) & (mZ2 < 120)"


def higgs4l_data(features: list[str]) -> DataConfig:
    """The higgs4l classification sample (signal ggH, background qqZZ) as a data section."""
    samples = [
        {"name": "ggH_4l", "files": "{generated}/ggH_4l.root", "label": 1, "weight": "weight"},
        {"name": "qqZZ_4l", "files": "{generated}/qqZZ_4l.root", "label": 0, "weight": "weight"},
    ]
    return DataConfig.model_validate(
        {
            "samples": samples,
            "derived": HIGGS4L_DERIVED,
            "selection": HIGGS4L_SELECTION,
            "features": features,
            "split": {"train": 0.5, "validation": 0.2, "test": 0.3},
        }
    )


class _Output(OutputConfig):
    dir: Annotated[str, Field(description="output directory (overridden by --out)")] = (
        "fivesigma-symbolic"
    )


def _operators(value: str) -> str:
    ops = [o.strip() for o in str(value).split(",") if o.strip()]
    bad = [o for o in ops if o not in OPERATORS]
    if bad or not ops:
        raise ValueError(
            f"unknown operator(s) {', '.join(bad) or '(none given)'}; accepted: "
            f"{', '.join(OPERATORS)} (comma separated)"
        )
    return ",".join(ops)


class SymbolicInput(StrictModel):
    """One input of a custom benchmark formula: its unit and sampling range."""

    unit: Annotated[str, Field(description="e.g. GeV, GeV^2, rad, 1 (dimensionless)")] = "1"
    low: float = 0.0
    high: float = 1.0
    integer: Annotated[bool, Field(description="draw whole numbers")] = False


class SymbolicFormula(StrictModel):
    """A custom benchmark formula: the truth in its inputs' names and the operators."""

    name: Annotated[str, Field(min_length=1, description="unique name")]
    truth: Annotated[str, Field(description="SymPy expression, exact numbers (e.g. 3/8)")]
    inputs: Annotated[dict[str, SymbolicInput], Field(min_length=1)]
    operators: Annotated[str, Field(description="engine operators, comma separated")] = (
        "add,sub,mul,div,sqrt,square"
    )

    _check_operators = field_validator("operators")(lambda cls, v: _operators(v))


class SymbolicBenchmark(StrictModel):
    """Known physics formulas sampled with noise, to be found again exactly."""

    enabled: bool = True
    formulas: Annotated[
        list[str] | None,
        Field(description=f"built-in formulas to run (default all: {', '.join(BUILTIN)})"),
    ] = None
    custom: Annotated[
        list[SymbolicFormula], Field(description="your own formulas, run after the built-in ones")
    ] = Field(default_factory=list)
    noise: Annotated[
        list[Annotated[float, Field(ge=0, le=1)]],
        Field(min_length=1, description="Gaussian noise levels, as a fraction of the target RMS"),
    ] = Field(default_factory=lambda: [0.0, 0.01, 0.1])
    points: Annotated[int | None, Field(ge=10, description="sampled points per formula")] = None
    check_points: Annotated[
        int, Field(ge=50, description="fresh noise-free points of the exact-recovery check")
    ] = 400


class SymbolicEngine(StrictModel):
    """The Operon (pyoperon) search: NSGA-II on (R², length), constants fitted inside."""

    generations: Annotated[
        int | None, Field(ge=1, description="generations per restart: the budget")
    ] = None
    population: Annotated[int | None, Field(ge=10, description="individuals")] = None
    restarts: Annotated[
        int | None, Field(ge=1, description="independent runs (seeds) merged into one front")
    ] = None
    max_length: Annotated[int, Field(ge=5, le=200, description="most nodes of a formula")] = 30
    optimizer_iterations: Annotated[
        int, Field(ge=0, description="Levenberg-Marquardt steps on each offspring's constants")
    ] = 50
    max_seconds: Annotated[
        float | None,
        Field(
            gt=0,
            description="safety cap per restart (wall seconds; quick 15, 60 for the distillation; "
            "full 600); the budget "
            "is generations, a capped restart is marked time_capped",
        ),
    ] = None
    select_penalty: Annotated[
        float,
        Field(
            ge=0,
            description="the choice minimises n ln(NMSE) + select_penalty * complexity * ln(n)",
        ),
    ] = 1.0
    jobs: Annotated[int, Field(ge=1, le=64, description="searches run in parallel (processes)")] = 2


class SymbolicData(StrictModel):
    """A search on your own table: find the target as a formula of the inputs."""

    files: Annotated[
        list[str], Field(min_length=1, description="CSV, Parquet, HDF5 or ROOT files / patterns")
    ]
    tree: Annotated[str, Field(description="TTree name (ROOT) or key (HDF5)")] = "Events"
    inputs: Annotated[list[str], Field(min_length=1, description="input columns")]
    target: Annotated[
        str, Field(description="target: a column or an expression of columns (e.g. 'E**2')")
    ]
    units: Annotated[
        dict[str, str], Field(description="unit per input column (default dimensionless)")
    ] = Field(default_factory=dict)
    selection: Annotated[str | None, Field(description="rows to keep (an expression)")] = None
    operators: Annotated[str, Field(description="engine operators, comma separated")] = (
        "add,sub,mul,div,sqrt,square,exp,log"
    )
    max_rows: Annotated[
        int, Field(ge=10, description="rows used by the search (a seeded random subset)")
    ] = 2000

    _check_operators = field_validator("operators")(lambda cls, v: _operators(v))

    @field_validator("files", mode="before")
    @classmethod
    def _one_file_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class SymbolicDistill(StrictModel):
    """A formula for a classifier's score: fitted to the network's log-odds on a few
    high-level features, judged by how much of the network's AUC it keeps."""

    enabled: bool = True
    bundle: Annotated[
        str | None,
        Field(
            description="a classify model bundle (e.g. out/models/mlp) to distil; default: train "
            "an MLP here on `features`"
        ),
    ] = None
    generate: Annotated[
        GenerateConfig | None,
        Field(description="the built-in sample (default higgs4l, 20000 events per process)"),
    ] = Field(default_factory=GenerateConfig)
    data: Annotated[
        DataConfig | None,
        Field(
            description="the events, as classify's data section (default: the higgs4l sample, "
            "its derived columns and selection); its split gives train and test"
        ),
    ] = None
    features: Annotated[
        list[str], Field(min_length=1, description="the network's inputs (when trained here)")
    ] = Field(default_factory=lambda: ["m4l", "mZ1", "mZ2"])
    inputs: Annotated[
        list[str], Field(min_length=1, max_length=6, description="the formula's inputs")
    ] = Field(default_factory=lambda: ["m4l", "mZ1", "mZ2"])
    units: Annotated[dict[str, str], Field(description="unit per formula input")] = Field(
        default_factory=lambda: {"m4l": "GeV", "mZ1": "GeV", "mZ2": "GeV"}
    )
    hidden: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)] = Field(
        default_factory=lambda: [64, 64]
    )
    epochs: Annotated[int | None, Field(ge=1)] = None
    lr: Annotated[float, Field(gt=0)] = 2e-3
    points: Annotated[
        int | None, Field(ge=50, description="training events the formula is fitted on")
    ] = None
    clip: Annotated[
        float, Field(gt=0, description="the network's log-odds are clipped to +-clip first")
    ] = 8.0
    operators: Annotated[str, Field(description="engine operators, comma separated")] = (
        "add,sub,mul,div,square,exp"
    )
    generations: Annotated[int | None, Field(ge=1)] = None
    population: Annotated[int | None, Field(ge=10)] = None
    restarts: Annotated[int | None, Field(ge=1)] = None
    target_kept: Annotated[
        float, Field(gt=0, le=1, description="(AUC_formula - 0.5) / (AUC_network - 0.5) aimed at")
    ] = 0.95

    _check_operators = field_validator("operators")(lambda cls, v: _operators(v))


class SymbolicConfig(TaskConfig):
    """Symbolic regression: a benchmark of known formulas, your table, a distilled classifier."""

    task: Literal["symbolic"] = "symbolic"
    seed: Annotated[int, Field(description="seed of the samples and the searches")] = 1
    output: _Output = Field(default_factory=_Output)
    preset: Annotated[
        Literal["quick", "full"],
        Field(description="quick: under 15 minutes on 2 cores; full: longer searches"),
    ] = "quick"
    benchmark: SymbolicBenchmark = Field(default_factory=SymbolicBenchmark)
    engine: SymbolicEngine = Field(default_factory=SymbolicEngine)
    data: Annotated[
        SymbolicData | None, Field(description="a search on your own table (optional)")
    ] = None
    distill: SymbolicDistill = Field(default_factory=SymbolicDistill)

    def settings(self) -> SymbolicSettings:
        """The preset with this config's keys applied; ConfigError for contradictions."""
        preset = PRESETS[self.preset]
        b, e, d = self.benchmark, self.engine, self.distill
        formulas: list[Formula] = []
        if b.enabled:
            names = list(BUILTIN) if b.formulas is None else list(dict.fromkeys(b.formulas))
            unknown = [n for n in names if n not in BUILTIN]
            if unknown:
                raise ConfigError(
                    f"benchmark.formulas: unknown formula {unknown[0]!r}; accepted: "
                    f"{', '.join(BUILTIN)}"
                )
            formulas = [BUILTIN[n] for n in names]
            for k, c in enumerate(b.custom):
                where = f"benchmark.custom[{k}]"
                if c.name in names or any(f.name == c.name for f in formulas):
                    raise ConfigError(f"{where}: the name {c.name!r} is taken; choose another")
                for name, inp in c.inputs.items():
                    if not name.isidentifier():
                        raise ConfigError(f"{where}.inputs: {name!r} is not a valid name")
                    try:
                        parse_unit(inp.unit)
                    except ConfigError as exc:
                        raise ConfigError(f"{where}.inputs.{name}: {exc}") from None
                formulas.append(
                    Formula(
                        c.name,
                        c.name,
                        c.truth,
                        tuple(
                            Input(n, i.unit, i.low, i.high, i.integer) for n, i in c.inputs.items()
                        ),
                        c.operators,
                    )
                )
            if not formulas:
                raise ConfigError(
                    "benchmark.formulas is empty; name at least one or set benchmark.enabled: false"
                )
        if self.data is not None:
            for col, unit in self.data.units.items():
                if col not in self.data.inputs:
                    raise ConfigError(f"data.units: {col!r} is not one of data.inputs")
                try:
                    parse_unit(unit)
                except ConfigError as exc:
                    raise ConfigError(f"data.units.{col}: {exc}") from None
        if d.enabled:
            for col, unit in d.units.items():
                try:
                    parse_unit(unit)
                except ConfigError as exc:
                    raise ConfigError(f"distill.units.{col}: {exc}") from None
            if d.data is None and d.generate is None:
                raise ConfigError(
                    "distill: give data (classify's data section) or generate (a built-in "
                    "sample); both are null"
                )
        if not (formulas or self.data is not None or d.enabled):
            raise ConfigError("nothing to do: the benchmark, data and distill are all off")
        engine = EngineSettings(
            generations=e.generations or preset["generations"],
            population=e.population or preset["population"],
            max_length=e.max_length,
            restarts=e.restarts or preset["restarts"],
            optimizer_iterations=e.optimizer_iterations,
            max_seconds=e.max_seconds or preset["max_seconds"],
            select_penalty=e.select_penalty,
        )
        distill_engine = EngineSettings(
            generations=d.generations or preset["distill_generations"],
            population=d.population or preset["distill_population"],
            max_length=e.max_length,
            restarts=d.restarts or preset["distill_restarts"],
            optimizer_iterations=e.optimizer_iterations,
            max_seconds=e.max_seconds or preset["distill_max_seconds"],
            select_penalty=e.select_penalty,
        )
        return SymbolicSettings(
            seed=self.seed,
            preset=self.preset,
            formulas=tuple(formulas),
            noise=tuple(float(x) for x in dict.fromkeys(b.noise)),
            points=b.points or preset["points"],
            check_points=b.check_points,
            engine=engine,
            jobs=e.jobs,
            distill=d.enabled,
            distill_engine=distill_engine,
            distill_points=d.points or preset["distill_points"],
            epochs=d.epochs or preset["epochs"],
        )


@dataclass
class SymbolicSettings:
    """Resolved settings (what the run uses, written to metrics.json)."""

    seed: int
    preset: str
    formulas: tuple[Formula, ...]
    noise: tuple[float, ...]
    points: int
    check_points: int
    engine: EngineSettings
    jobs: int
    distill: bool
    distill_engine: EngineSettings
    distill_points: int
    epochs: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "seed": self.seed,
            "preset": self.preset,
            "formulas": [f.name for f in self.formulas],
            "noise": list(self.noise),
            "points": self.points,
            "check_points": self.check_points,
            "engine": asdict(self.engine),
            "jobs": self.jobs,
            "distill": self.distill,
            "distill_engine": asdict(self.distill_engine),
            "distill_points": self.distill_points,
            "epochs": self.epochs,
        }
