"""Configs: the pydantic base every task's config extends, and :func:`load_config`.

A config is YAML with ``version:`` and ``task:`` keys; ``task`` picks the task's config
model from :data:`fivesigma.core.registry.TASKS` (no key: ``classify``, the event
classification every config meant before tasks had names).  Validation errors become
one-line :class:`~fivesigma.errors.ConfigError` messages that name the key path and what
is accepted, e.g.::

    config.yaml: data.samples[0].tree: expected a string, got 5
    config.yaml: data.sampels: unknown key; accepted keys: samples, selection, derived, ...
    config.yaml: task: unknown task 'trak'; registered: classify, jets, tracking (did you mean ...)

Relative file paths in a config are resolved against the config file's directory, so a
config and its data can move together.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from fivesigma.errors import ConfigError

__all__ = [
    "CONFIG_VERSION",
    "DEFAULT_TASK",
    "ExecutionConfig",
    "ModelConfig",
    "OutputConfig",
    "StrictModel",
    "TaskConfig",
    "config_schema",
    "load_config",
    "parse_config",
    "require_unique",
]

CONFIG_VERSION = 1
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: the task of a config without a ``task:`` key
DEFAULT_TASK = "classify"


def require_unique(what: str, names: list[str]) -> None:
    """Raise ``ValueError`` (a validation error) when ``names`` repeat."""
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} names must be unique, repeated: {', '.join(dupes)}")


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


class OutputConfig(StrictModel):
    dir: Annotated[str, Field(description="output directory (overridden by --out)")] = (
        "fivesigma-out"
    )


class ExecutionConfig(StrictModel):
    """Where the work runs (``--scheduler`` overrides ``scheduler``); see docs/scale.md."""

    scheduler: Annotated[
        str,
        Field(
            description="local (in this process), threads:N, processes:N, tcp://HOST:PORT, "
            "jobqueue:htcondor, jobqueue:slurm or gateway:URL"
        ),
    ] = "local"
    timeout_s: Annotated[
        float, Field(gt=0, description="seconds to wait for the scheduler to answer")
    ] = 10.0
    workers: Annotated[
        int, Field(ge=1, description="batch jobs (jobqueue:) or workers (gateway:) to ask for")
    ] = 2
    jobqueue: Annotated[
        dict[str, Any],
        Field(
            description="arguments of the dask-jobqueue cluster (cores, memory, disk, "
            "job_extra_directives, ...)"
        ),
    ] = Field(default_factory=dict)
    gateway: Annotated[
        dict[str, Any], Field(description="cluster options of the dask-gateway server")
    ] = Field(default_factory=dict)

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        from fivesigma.core.execution import parse_scheduler

        try:
            parse_scheduler(value)
        except ConfigError as err:
            raise ValueError(str(err)) from None
        return value


class ModelConfig(StrictModel):
    """One model to train; ``params`` are the estimator's hyper-parameters."""

    name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=100,
            description="unique name, also its bundle directory: a letter or digit, then "
            "letters, digits, _ . -",
        ),
    ]
    kind: Annotated[
        str, Field(description="estimator: a registered name (fivesigma tasks --estimators)")
    ]
    params: Annotated[
        dict[str, Any], Field(description="hyper-parameters; see the estimator's docs")
    ] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _safe_directory_name(cls, value: str) -> str:
        # the name is the bundle's directory under models/: "." or ".." would be another
        # directory altogether
        if not _MODEL_NAME.fullmatch(value):
            raise ValueError(
                f"model name {value!r} must be a plain directory name: a letter or digit, "
                "then letters, digits, _ . or -"
            )
        return value

    @field_validator("kind")
    @classmethod
    def _registered(cls, value: str) -> str:
        from fivesigma.core.registry import ESTIMATORS

        try:
            ESTIMATORS.entry(value)
        except ConfigError as err:
            raise ValueError(str(err)) from None
        return value


class TaskConfig(StrictModel):
    """Keys every task's config has; a task's config model extends it.

    A subclass narrows ``task`` to its name (``task: Literal["jets"] = "jets"``) so the
    JSON schema of all configs is a union discriminated by ``task``.
    """

    version: Literal[1] = Field(description="config format version")
    task: Annotated[str, Field(description="which task runs (fivesigma tasks lists them)")] = (
        DEFAULT_TASK
    )
    seed: Annotated[int, Field(description="one seed for everything random")] = 42
    output: OutputConfig = Field(default_factory=OutputConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)

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


def task_config_model(name: Any, source: str = "config") -> type[TaskConfig]:
    """The config model of the task called ``name`` (one-line error naming the tasks)."""
    from fivesigma.core.registry import TASKS

    try:
        task = TASKS.get(name)
    except ConfigError as err:
        raise ConfigError(f"{source}: task: {err}") from None
    return task.config_model


def parse_config(raw: Any, source: str = "config", base_dir: Path | None = None) -> TaskConfig:
    """Validate an already-parsed YAML/JSON mapping; ``task:`` picks the config model."""
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
    model = task_config_model(raw.get("task", DEFAULT_TASK), source)
    try:
        cfg = model.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        first = _format_error(errors[0], model)
        more = (
            f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
            if len(errors) > 1
            else ""
        )
        raise ConfigError(f"{source}: {first}{more}") from None
    cfg.base_dir = base_dir if base_dir is not None else Path(".")
    return cfg


def load_config(path: str | os.PathLike) -> TaskConfig:
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
    """The JSON schema of every registered task's config, as pretty-printed JSON.

    A union discriminated by ``task`` (a config without it is a ``classify`` config).
    """
    from fivesigma.core.registry import TASKS

    models = tuple(TASKS.get(name).config_model for name in TASKS.names())
    union = models[0] if len(models) == 1 else Union[models]  # noqa: UP007
    adapter = TypeAdapter(Annotated[union, Field(discriminator="task")])
    schema = adapter.json_schema()
    schema["title"] = "fivesigma config"
    return json.dumps(schema, indent=2)
