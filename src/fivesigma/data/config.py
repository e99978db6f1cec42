"""Config sections that say which events to read: samples, selection, derived columns, split.

Shared by every task that reads event tables (``data:`` and ``generate:`` keys).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from fivesigma.core.config import StrictModel, require_unique

__all__ = [
    "GENERATED_PLACEHOLDER",
    "DataConfig",
    "GenerateConfig",
    "NormalisationConfig",
    "SampleConfig",
    "SplitConfig",
    "sentinel_table",
]

#: Placeholder in sample file patterns for the directory of the built-in generated sample.
GENERATED_PLACEHOLDER = "{generated}"


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
    role: Annotated[
        Literal["signal", "background"] | None,
        Field(
            description=(
                "whether this sample's class is signal or background for the physics result "
                "(discriminant, statistics); default: label 1 is signal, the others background"
            )
        ),
    ] = None
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
        Literal["error", "drop", "keep"],
        Field(
            description=(
                "NaN/inf in features: stop with an error, drop those events, or keep NaN "
                "(missing values) for the models (inf is always an error)"
            )
        ),
    ] = "error"
    missing: Annotated[
        dict[str, float | list[float]] | float | list[float] | None,
        Field(
            description=(
                "values that mean 'missing' (e.g. -999), turned into NaN as the branches are "
                "read: {branch: value or [values]}, or one value or list for every numeric "
                "branch read (except split.key)"
            )
        ),
    ] = None
    chunk_size: Annotated[int, Field(gt=0, description="entries read per chunk")] = 200_000
    split: SplitConfig = Field(default_factory=SplitConfig)
    features_module: Annotated[
        str | None,
        Field(
            min_length=1,
            description=(
                "Python file (relative to the config file) whose public functions become "
                "expression functions; fivesigma imports it, so its code runs with your "
                "rights: name only your own code"
            ),
        ),
    ] = None

    @field_validator("missing", mode="before")
    @classmethod
    def _sentinel_numbers(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for column, values in value.items():
                if not isinstance(column, str) or not column:
                    raise ValueError(f"column name {column!r} must be a non-empty string")
                out[column] = _sentinel_values(values, column)
            return out
        return _sentinel_values(value, None)

    @model_validator(mode="after")
    def _unique_sample_names(self) -> DataConfig:
        require_unique("sample", [s.name for s in self.samples])
        return self

    def sentinels(self) -> tuple[dict[str, tuple[float, ...]], tuple[float, ...]]:
        """``missing`` as (per-branch values, values for every other numeric branch)."""
        return sentinel_table(self.missing)


def _sentinel_values(value: Any, column: str | None) -> float | list[float]:
    """One sentinel or a non-empty list of them, each a finite number (not a bool)."""
    where = f"'{column}': " if column is not None else ""
    accepted = "a number such as -999, or a list of numbers"
    items = value if isinstance(value, list | tuple) else [value]
    if not items:
        raise ValueError(f"{where}an empty list; give {accepted}")
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise ValueError(f"{where}{item!r} is not a number; give {accepted}")
        if not math.isfinite(item):
            raise ValueError(f"{where}{item!r} is not a finite number; give {accepted}")
        out.append(float(item))
    return out if isinstance(value, list | tuple) else out[0]


def sentinel_table(
    missing: Any,
) -> tuple[dict[str, tuple[float, ...]], tuple[float, ...]]:
    """A ``data.missing`` value (as in the config or a bundle) as (per-branch sentinels,
    sentinels of every other numeric branch); ``({}, ())`` for none."""
    if missing is None:
        return {}, ()
    if isinstance(missing, Mapping):
        return {
            str(k): tuple(float(x) for x in (v if isinstance(v, list | tuple) else [v]))
            for k, v in missing.items()
        }, ()
    values = missing if isinstance(missing, list | tuple) else [missing]
    return {}, tuple(float(x) for x in values)


class GenerateConfig(StrictModel):
    """A built-in sample to generate (and cache) before reading; see ``fivesigma generate``."""

    process: Annotated[
        str, Field(description="built-in sample (fivesigma generate --help lists them)")
    ] = "higgs4l"
    events: Annotated[int, Field(gt=0, description="events generated per process")] = 20_000
    seed: int = 1
    luminosity_fb: Annotated[float, Field(gt=0)] = 140.0
    jobs: Annotated[int | None, Field(ge=1, description="processes; default: all cores")] = None
    cache_dir: Annotated[
        str | None, Field(description="default: $FIVESIGMA_CACHE or ~/.cache/fivesigma")
    ] = None

    @field_validator("process")
    @classmethod
    def _known_process(cls, value: str) -> str:
        from fivesigma.core.registry import GENERATORS

        GENERATORS.entry(value)  # unknown: one line naming the registered generators
        tables = GENERATORS.names(event_table=True)
        if value not in tables:
            raise ValueError(
                f"process {value!r} does not write event tables; accepted: {', '.join(tables)}"
            )
        return value
