"""Configuration: pydantic models for every section, and :func:`load_config`.

A config is YAML with a ``version:`` key.  Validation errors become one-line
:class:`~fivesigma.errors.ConfigError` messages that name the key path and what is
accepted, e.g.::

    config.yaml: data.samples[0].tree: expected a string, got 5
    config.yaml: data.sampels: unknown key; accepted keys: samples, selection, derived, ...

Relative file paths in a config are resolved against the config file's directory, so a
config and its data can move together.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from fivesigma.errors import ConfigError

__all__ = [
    "CONFIG_VERSION",
    "DataConfig",
    "EvaluationConfig",
    "GenerateConfig",
    "ModelConfig",
    "NormalisationConfig",
    "OutputConfig",
    "RunConfig",
    "SampleConfig",
    "SplitConfig",
    "StatsConfig",
    "config_schema",
    "load_config",
    "parse_config",
]

CONFIG_VERSION = 1

#: Placeholder in sample file patterns for the directory of the built-in generated sample.
GENERATED_PLACEHOLDER = "{generated}"


def _require_unique(what: str, names: list[str]) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} names must be unique, repeated: {', '.join(dupes)}")


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


class NormalisationConfig(StrictModel):
    """Scale a sample so its weights sum to cross section x luminosity.

    The per-event weight becomes ``w * cross_section_pb * 1000 * luminosity_fb / sum_w``,
    where ``sum_w`` is ``sum_weights_generated`` if given, else the sum of the weights of
    all events read (before any selection).
    """

    cross_section_pb: Annotated[float, Field(gt=0, description="cross section in pb")]
    luminosity_fb: Annotated[float, Field(gt=0, description="integrated luminosity in fb^-1")] = (
        140.0
    )
    sum_weights_generated: Annotated[
        float | None,
        Field(
            gt=0, description="sum of weights before any filter; default: sum over the events read"
        ),
    ] = None


class SampleConfig(StrictModel):
    """One physics process: its files, the tree, its class label and event weights."""

    name: Annotated[str, Field(min_length=1, description="unique sample name")]
    files: Annotated[
        list[str],
        Field(
            min_length=1,
            description="paths or glob patterns (ROOT, Parquet, HDF5, CSV); a single string is accepted",
        ),
    ]
    tree: Annotated[
        str, Field(description="TTree name (ROOT) or group/key (HDF5); ignored for Parquet and CSV")
    ] = "Events"
    label: Annotated[
        int, Field(ge=0, description="class index: 0 background, 1 signal (or 0..K-1)")
    ]
    weight: Annotated[
        str | None, Field(description="event-weight expression; default 1 for every event")
    ] = None
    normalisation: NormalisationConfig | None = None
    selection: Annotated[
        str | None, Field(description="extra selection for this sample, ANDed with data.selection")
    ] = None

    @field_validator("files", mode="before")
    @classmethod
    def _one_file_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class SplitConfig(StrictModel):
    """Deterministic train/validation/test split.

    Each event's split comes from a hash of (seed, key), where the key is the value of the
    ``key`` branch if set (e.g. the event number), else (file name, entry number): the
    same event lands in the same split whatever the order of files or chunks.
    """

    train: Annotated[float, Field(ge=0, le=1)] = 0.6
    validation: Annotated[float, Field(ge=0, le=1)] = 0.2
    test: Annotated[float, Field(ge=0, le=1)] = 0.2
    key: Annotated[
        str | None, Field(description="branch with a unique event id (e.g. 'event')")
    ] = None

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitConfig:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + validation + test must be 1, got {total:g}")
        return self


class DataConfig(StrictModel):
    """What to read, which events to keep and which columns to derive."""

    samples: Annotated[list[SampleConfig], Field(min_length=1)]
    selection: Annotated[
        str | None, Field(description="expression that is true for events to keep")
    ] = None
    derived: Annotated[
        dict[str, str],
        Field(description="name: expression, evaluated in order; later ones may use earlier ones"),
    ] = Field(default_factory=dict)
    features: Annotated[
        list[str], Field(description="columns (branches or derived) fed to models")
    ] = Field(default_factory=list)
    nan_policy: Annotated[
        Literal["error", "drop"],
        Field(description="NaN/inf in features: stop with an error, or drop those events"),
    ] = "error"
    chunk_size: Annotated[int, Field(gt=0, description="entries read per chunk")] = 200_000
    split: SplitConfig = Field(default_factory=SplitConfig)

    @model_validator(mode="after")
    def _unique_sample_names(self) -> DataConfig:
        _require_unique("sample", [s.name for s in self.samples])
        return self


class GenerateConfig(StrictModel):
    """A built-in sample to generate (and cache) before reading; see ``fivesigma generate``."""

    process: Literal["higgs4l"] = "higgs4l"
    events: Annotated[int, Field(gt=0, description="events generated per process")] = 20_000
    seed: int = 1
    luminosity_fb: Annotated[float, Field(gt=0)] = 140.0
    jobs: Annotated[int | None, Field(ge=1, description="processes; default: all cores")] = None
    cache_dir: Annotated[
        str | None, Field(description="default: $FIVESIGMA_CACHE or ~/.cache/fivesigma")
    ] = None


class ModelConfig(StrictModel):
    """One model to train; ``params`` are the estimator's hyper-parameters."""

    name: Annotated[
        str,
        Field(
            min_length=1,
            pattern=r"^[A-Za-z0-9_.-]+$",
            description="unique name (letters, digits, _ . -)",
        ),
    ]
    kind: Annotated[Literal["logistic", "bdt", "mlp"], Field(description="estimator type")]
    params: Annotated[
        dict[str, Any], Field(description="hyper-parameters; see the estimator's docs")
    ] = Field(default_factory=dict)


def _default_models() -> list[ModelConfig]:
    return [
        ModelConfig(name="logistic", kind="logistic"),
        ModelConfig(name="bdt", kind="bdt"),
        ModelConfig(name="mlp", kind="mlp"),
    ]


class EvaluationConfig(StrictModel):
    """Working points and checks reported for every model."""

    eff_b: Annotated[
        list[Annotated[float, Field(gt=0, lt=1)]],
        Field(description="background efficiencies for eps_S"),
    ] = [
        0.01,
        0.1,
        0.3,
    ]
    eff_s: Annotated[
        list[Annotated[float, Field(gt=0, lt=1)]],
        Field(description="signal efficiencies for 1/eps_B"),
    ] = [
        0.3,
        0.5,
    ]
    ranking_repeats: Annotated[
        int, Field(ge=0, description="permutation-importance repeats (0: skip)")
    ] = 3
    rel_unc_b: Annotated[
        float, Field(ge=0, description="relative background uncertainty in the cut scan")
    ] = 0.1


class StatsConfig(StrictModel):
    """The pyhf model built from the best model's score histogram (expected results)."""

    bins: Annotated[int, Field(ge=1, le=200)] = 10
    bkg_norm_unc: Annotated[
        float, Field(ge=0, lt=1, description="relative background normalisation uncertainty")
    ] = 0.1
    min_background: Annotated[
        float | None, Field(ge=0, description="merge bins until each has this background")
    ] = 1.0
    mc_stat: Annotated[bool, Field(description="per-bin MC statistical uncertainty")] = True


class OutputConfig(StrictModel):
    dir: Annotated[str, Field(description="output directory (overridden by --out)")] = (
        "fivesigma-out"
    )


class RunConfig(StrictModel):
    """A whole analysis: data, and (from later versions) models, statistics and report."""

    version: Literal[1] = Field(description="config format version")
    seed: int = 42
    generate: GenerateConfig | None = None
    data: DataConfig
    models: Annotated[list[ModelConfig], Field(min_length=1)] = Field(
        default_factory=_default_models
    )
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    stats: StatsConfig = Field(default_factory=StatsConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @model_validator(mode="after")
    def _unique_model_names(self) -> RunConfig:
        _require_unique("model", [m.name for m in self.models])
        return self

    # Directory of the config file; relative paths are resolved against it.  Private: it
    # is not a config key, load_config() sets it.
    _base_dir: Path = PrivateAttr(default_factory=lambda: Path("."))

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    @base_dir.setter
    def base_dir(self, value: Path) -> None:
        self._base_dir = Path(value)

    def resolve(self, path: str) -> Path:
        """Resolve a path from the config relative to the config's directory."""
        p = Path(os.path.expanduser(path))
        return p if p.is_absolute() else self.base_dir / p


# --------------------------------------------------------------------------------------
# Loading and error messages


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the key at ``loc`` (for 'accepted keys' hints)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (
            isinstance(current, type) and issubclass(current, BaseModel)
        ):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """Find a BaseModel inside Optional[...] / list[...] / Annotated[...]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _unwrap(arg)
        if found is not None:
            return found
    return None


def _format_error(err: dict[str, Any], root: type[BaseModel]) -> str:
    loc = tuple(err["loc"])
    where = _key_path(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        owner = _model_at(root, loc[:-1])
        accepted = ", ".join(owner.model_fields) if owner else "?"
        return f"{where}: unknown key; accepted keys: {accepted}"
    if kind == "missing":
        return f"{where}: required key is missing"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    got = err.get("input")
    if kind not in ("value_error",) and not isinstance(got, dict | list):
        msg += f" (got {got!r})"
    return f"{where}: {msg}"


def parse_config(raw: Any, source: str = "config", base_dir: Path | None = None) -> RunConfig:
    """Validate an already-parsed YAML/JSON mapping."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: expected a mapping of keys at the top level, got {type(raw).__name__}"
        )
    if "version" not in raw:
        raise ConfigError(
            f"{source}: missing 'version:' key; this fivesigma reads version {CONFIG_VERSION}"
        )
    if raw["version"] != CONFIG_VERSION:
        raise ConfigError(
            f"{source}: version {raw['version']!r} is not supported; this fivesigma reads version {CONFIG_VERSION}"
        )
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        first = _format_error(errors[0], RunConfig)
        more = (
            f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
            if len(errors) > 1
            else ""
        )
        raise ConfigError(f"{source}: {first}{more}") from None
    cfg.base_dir = base_dir if base_dir is not None else Path(".")
    return cfg


def load_config(path: str | os.PathLike) -> RunConfig:
    """Read and validate a YAML config file.

    Raises :class:`ConfigError` with one line for a missing file, bad YAML or a schema
    violation.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"config file '{path}' does not exist"
            if not path.exists()
            else f"'{path}' is not a file"
        )
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file '{path}': {err}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}:{where}: not valid YAML: {problem}") from None
    return parse_config(raw, source=str(path), base_dir=path.resolve().parent)


def config_schema() -> str:
    """The JSON schema of a config, as pretty-printed JSON."""
    return json.dumps(RunConfig.model_json_schema(), indent=2)
