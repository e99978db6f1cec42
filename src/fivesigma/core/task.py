"""The task contract: what every task (classify, jets, tracking, ...) provides.

A task is a :class:`Task` subclass registered by name in
:data:`fivesigma.core.registry.TASKS`.  It names its pydantic config model (a
:class:`~fivesigma.core.config.TaskConfig` whose ``task:`` key is the task's name) and
implements ``run(config, out, progress) -> Result``.  Everything else is optional: a
commented config template for ``fivesigma init --task NAME``, ``apply`` for the bundle
kinds it owns, and a terminal summary.  The CLI knows tasks only through this class, so a
new task needs no change to the CLI or the config module:

>>> from typing import Literal
>>> from fivesigma.core.config import TaskConfig
>>> from fivesigma.core.registry import TASKS
>>> class EchoConfig(TaskConfig):
...     task: Literal["echo"] = "echo"
...     message: str = "hello"
>>> class Echo(Task):
...     name = "echo"
...     description = "writes its message"
...     config_model = EchoConfig
...     def run(self, config, out, progress=True):
...         return Result(task=self.name, out_dir=out, metrics={"message": config.message})
>>> TASKS.register("echo", Echo, Echo.description)
>>> from fivesigma.core.config import parse_config
>>> cfg = parse_config({"version": 1, "task": "echo", "message": "hi"})
>>> TASKS.get(cfg.task)().run(cfg, out=Path(".")).metrics
{'message': 'hi'}
>>> TASKS.unregister("echo")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal  # noqa: F401  (Literal: the doctest)

from fivesigma.errors import ConfigError

if TYPE_CHECKING:
    from fivesigma.core.config import TaskConfig

__all__ = ["Result", "Task", "execute"]


@dataclass
class Result:
    """What a task's ``run`` returns.

    Attributes
    ----------
    task : the task's registry name.
    out_dir : the output directory.
    metrics : every number of the run (also written to ``metrics.json``).
    files : output files by role (``"metrics"``, ``"report"``, ...).
    bundles : model bundle directories by model name (``fivesigma apply`` reads them).
    details : the task's own richer result object, for notebooks.
    """

    task: str
    out_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    bundles: dict[str, Path] = field(default_factory=dict)
    details: Any = None


class Task:
    """Base of every task; subclasses set the class attributes and implement :meth:`run`."""

    #: registry name, also the value of the config's ``task:`` key
    name: ClassVar[str] = ""
    #: one line for ``fivesigma tasks``
    description: ClassVar[str] = ""
    #: the pydantic config model
    config_model: ClassVar[type[TaskConfig]]
    #: file in the ``fivesigma.configs`` package that ``fivesigma init --task`` copies
    template_file: ClassVar[str | None] = None
    #: ``apply`` writes a directory of outputs (``--out DIR``) instead of one file
    apply_writes_directory: ClassVar[bool] = False

    def run(self, config: Any, out: Path, progress: bool = True) -> Result:
        """Do the whole job for ``config``, writing into ``out``; return a :class:`Result`."""
        raise NotImplementedError

    def check(self, config: Any) -> None:
        """Checks beyond the schema that need no data (``fivesigma config --check``).

        Raise :class:`~fivesigma.errors.FivesigmaError` with one line; the default has none.
        """

    def template(self) -> str:
        """A commented config that ``fivesigma run`` accepts (``fivesigma init --task``)."""
        if self.template_file is None:
            raise ConfigError(f"task {self.name!r} ships no example config")
        return resources.files("fivesigma.configs").joinpath(self.template_file).read_text()

    def default_config(self) -> Any:
        """The config ``fivesigma run`` uses without one: the task's template."""
        from fivesigma.core.config import load_config

        with resources.as_file(
            resources.files("fivesigma.configs").joinpath(self.template_file or "")
        ) as path:
            cfg = load_config(path)
        cfg.base_dir = Path.cwd()
        return cfg

    def apply(self, bundle: Path, inputs: list[str], out: Path, **options: Any) -> dict[str, Any]:
        """Score ``inputs`` with a bundle this task wrote; returns counts for the CLI."""
        raise ConfigError(f"task {self.name!r} has no 'apply'")

    def summary(self, result: Result) -> str:
        """What the CLI prints after a run (plain text or rich markup)."""
        lines = [f"{self.name}: wrote {result.out_dir}"]
        lines += [f"  {role}: {path}" for role, path in result.files.items()]
        return "\n".join(lines)


def execute(
    task: Task, config: Any, out: Path, progress: bool = True, keep_partial: bool = False
) -> Result:
    """Run ``task`` into ``out`` transactionally (what ``fivesigma run`` and ``fs.run`` do).

    The output directory is locked against a second run, the task writes into a staging
    directory, and that is swapped in whole once ``run`` returns: ``out`` holds either the
    previous complete run or the new complete one, never a mixture
    (:func:`fivesigma.core.files.staged_output`).
    """
    from fivesigma.core.files import remap, staged_output

    out = Path(out)
    with staged_output(out, keep_partial=keep_partial) as staging:
        result = task.run(config, out=staging, progress=progress)
    result.out_dir = out
    result.files = {k: remap(v, staging, out) for k, v in result.files.items()}
    result.bundles = {k: remap(v, staging, out) for k, v in result.bundles.items()}
    return result
