"""The small public API, re-exported by ``import fivesigma as fs``.

>>> import fivesigma as fs
>>> fs.task_names()[:2]
['classify', 'jets']
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fivesigma.core.config import TaskConfig, load_config, parse_config
from fivesigma.core.registry import TASKS
from fivesigma.core.task import Result, execute
from fivesigma.errors import ConfigError

__all__ = ["load", "make_estimator", "read_events", "read_jets", "run", "task_names"]


def task_names() -> list[str]:
    """Names of the registered tasks (what a config's ``task:`` key accepts).

    >>> "classify" in task_names()
    True
    """
    return TASKS.names()


def run(
    config: str | os.PathLike | Mapping[str, Any] | TaskConfig,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    keep_partial: bool = False,
) -> Result:
    """Run the task a config names; return its :class:`~fivesigma.core.task.Result`.

    ``config`` is a YAML path, a mapping (as the YAML would parse; relative paths are
    relative to the working directory) or a validated config.  ``out`` defaults to the
    config's ``output.dir``.  The output directory is replaced as a whole when the run
    completes; a failed run leaves the previous one untouched (``keep_partial``: its
    partial output goes to ``<out>.partial``).

    >>> import fivesigma as fs
    >>> fs.run({"version": 1, "task": "nope"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fivesigma.errors.ConfigError: config: task: unknown task 'nope'; registered: classify, jets, ...
    """
    if isinstance(config, TaskConfig):
        cfg = config
    elif isinstance(config, Mapping):
        cfg = parse_config(dict(config), base_dir=Path.cwd())
    elif isinstance(config, str | os.PathLike):
        cfg = load_config(config)
    else:
        raise ConfigError(
            f"run() takes a config path, a mapping or a TaskConfig, got {type(config).__name__}"
        )
    task = TASKS.get(cfg.task)()
    out_dir = Path(out) if out is not None else cfg.resolve(cfg.output.dir)
    return execute(task, cfg, out_dir, progress=progress, keep_partial=keep_partial)


def load(bundle: str | os.PathLike) -> Any:
    """The fitted estimator saved in a model bundle directory (any registered kind).

    >>> import numpy as np, tempfile, fivesigma as fs
    >>> X = np.random.default_rng(0).normal(size=(200, 2)); y = (X[:, 0] > 0).astype(int)
    >>> path = fs.make_estimator("logistic").fit(X, y).save(tempfile.mkdtemp() + "/m")
    >>> fs.load(path).predict(X[:4]).tolist() == (X[:4, 0] > 0).astype(int).tolist()
    True
    """
    from fivesigma.estimators import load as _load

    return _load(bundle)


def make_estimator(kind: str, **params: Any) -> Any:
    """A new, unfitted estimator of a registered ``kind`` (``fivesigma tasks --estimators``).

    >>> import fivesigma as fs
    >>> fs.make_estimator("bdt", n_estimators=50).n_estimators
    50
    """
    from fivesigma.estimators import make_estimator as _make

    return _make(kind, **params)


def read_events(*args: Any, **kwargs: Any) -> Any:
    """Events from ROOT, RNTuple, Parquet, HDF5 or CSV files as an awkward array.

    See :func:`fivesigma.io.events.read_events` for the arguments.

    >>> import pathlib, tempfile, fivesigma as fs
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "events.csv"
    >>> _ = path.write_text("met,nlep\\n31.5,2\\n12.0,0\\n")
    >>> fs.read_events([path], columns=["met"])["met"].tolist()
    [31.5, 12.0]
    """
    from fivesigma.io.events import read_events as _read

    return _read(*args, **kwargs)


def read_jets(*args: Any, **kwargs: Any) -> Any:
    """Jets with their constituents (fivesigma ROOT, Top Tagging HDF5, EnergyFlow npz).

    See :func:`fivesigma.io.jets.read_jets` for the arguments and an example.

    >>> import fivesigma as fs
    >>> fs.read_jets(["missing.h5"])
    Traceback (most recent call last):
    ...
    fivesigma.errors.DataError: no file matches 'missing.h5' (looked in '.')
    """
    from fivesigma.io.jets import read_jets as _read

    return _read(*args, **kwargs)
