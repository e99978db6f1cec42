"""fivesigma: machine learning for particle physics, from event files to a physics result.

The public API is small and explicit; heavy dependencies (torch, xgboost, pythia8mc, pyhf)
are imported lazily by the modules that need them.
"""

from __future__ import annotations

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
    "__version__",
]
