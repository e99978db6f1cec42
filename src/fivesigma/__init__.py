"""fivesigma: machine learning for particle physics, from event files to a physics result.

>>> import fivesigma as fs
>>> fs.task_names()[:2]
['classify', 'jets']

The API is small: :func:`run` a task from its config, :func:`load` a model bundle,
:func:`make_estimator`, :func:`read_events` and :func:`read_jets`, and the error classes.
Importing fivesigma imports neither torch nor xgboost; each is imported where it is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from fivesigma.errors import (
    ConfigError,
    DataError,
    ExpressionError,
    FivesigmaError,
    GenerationError,
    ModelError,
    OutputError,
)

__all__ = [
    "ConfigError",
    "DataError",
    "ExpressionError",
    "FivesigmaError",
    "GenerationError",
    "ModelError",
    "OutputError",
    "Result",
    "__version__",
    "load",
    "make_estimator",
    "read_events",
    "read_jets",
    "run",
    "task_names",
]

_LAZY = {
    "Result": "fivesigma.core.task",
    "load": "fivesigma.api",
    "make_estimator": "fivesigma.api",
    "read_events": "fivesigma.api",
    "read_jets": "fivesigma.api",
    "run": "fivesigma.api",
    "task_names": "fivesigma.api",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fivesigma' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
