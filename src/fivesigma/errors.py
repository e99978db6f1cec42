"""Domain exceptions.

Every error a user can cause is a :class:`FivesigmaError` whose message is one line that
names the problem (file, branch, key) and what would be accepted.  The CLI prints that
line and exits non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ConfigError",
    "DataError",
    "ExpressionError",
    "FivesigmaError",
    "GenerationError",
    "MissingDependencyError",
    "ModelError",
    "OutputError",
    "close_matches",
    "shorten",
]


class FivesigmaError(Exception):
    """Base class of all user-facing errors; ``str(err)`` is a single line."""

    exit_code = 2


class ConfigError(FivesigmaError):
    """A config file is missing, not YAML, or does not match the schema."""


class DataError(FivesigmaError):
    """An input file, tree, branch or the data in it cannot be used."""


class ExpressionError(DataError):
    """A selection or derived-variable expression is invalid or names unknown columns."""


class GenerationError(FivesigmaError):
    """The built-in event generation failed or was asked something impossible."""


class MissingDependencyError(FivesigmaError):
    """An optional package a feature needs is not installed; the message says how to get it.

    Raised by :mod:`fivesigma.core.extras`, which imports every optional dependency.
    """


class ModelError(FivesigmaError):
    """A model bundle is missing, corrupt, or incompatible with the input."""


class OutputError(FivesigmaError):
    """An output location cannot be written."""


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to about ``limit`` characters for an error message (a 10 MB column name
    must not become a 10 MB message).

    >>> shorten("x" * 100, 20)
    'xxxxxxxxxxxxxxxxx... (100 characters)'
    """
    text = str(text)
    return text if len(text) <= limit else f"{text[: limit - 3]}... ({len(text)} characters)"


def close_matches(word: str, candidates: Iterable[str], n: int = 5) -> str:
    """A short ``did you mean ...`` hint, or the list of what exists if nothing is close.

    >>> close_matches("lep_ptt", ["lep_pt", "jet_eta", "weight"])
    "did you mean 'lep_pt'?"
    """
    candidates = sorted(set(candidates))
    # a pathological (huge) word matches nothing and would make difflib crawl
    matches = (
        difflib.get_close_matches(word, candidates, n=n, cutoff=0.6) if len(word) <= 200 else []
    )
    if matches:
        return "did you mean " + " or ".join(repr(m) for m in matches) + "?"
    shown = ", ".join(candidates[:12]) + (", ..." if len(candidates) > 12 else "")
    return f"available: {shown}" if candidates else "nothing is available"


def describe_exception(err: BaseException, limit: int = 160) -> str:
    """One line describing a third-party exception: its type and first line, shortened.

    >>> describe_exception(ValueError("bad\\nmore"))
    'ValueError: bad'
    """
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > limit:
        first = first[: limit - 3] + "..."
    return f"{type(err).__name__}: {first}" if first else type(err).__name__
