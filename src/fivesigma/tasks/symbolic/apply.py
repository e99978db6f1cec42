"""Evaluate a saved formula on table files (``fivesigma apply models/<name> FILE... --out``).

Inputs are event tables the io layer reads (ROOT, Parquet, HDF5, CSV), streamed chunk by
chunk.  An input the file lacks is made from the bundle's ``derived`` expressions when it
has one (e.g. ``m4l`` from the lepton branches of the higgs4l files).  Output (Parquet,
or a ROOT tree ``scores``), one row per input entry in input order: ``file_index``,
``entry``, the inputs, and the formula's value (column ``formula``, or the name the
bundle gives; NaN where the formula is undefined).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.errors import DataError
from fivesigma.io.writers import check_apply_paths, ordered_inputs, write_columns

__all__ = ["apply_formula"]


def _plan(model: Any, path: Path, tree: str) -> tuple[list[str], list[tuple[str, Any]]]:
    """Branches to read from ``path`` and the derived inputs to compute, in order."""
    from fivesigma.data.expressions import Expression
    from fivesigma.io.events import list_columns

    have = set(list_columns(path, tree))
    needed = set(model.inputs)
    steps: list[tuple[str, Any]] = []
    # walk the derived expressions backwards to find what the missing inputs need
    for name in reversed(list(model.derived)):
        if name in needed and name not in have:
            expr = Expression(model.derived[name], f"derived {name!r}")
            steps.insert(0, (name, expr))
            needed.discard(name)
            needed |= set(expr.names)
    missing = sorted(n for n in needed if n not in have)
    if missing:
        raise DataError(
            f"'{path}' has no column(s) {', '.join(missing)}; the formula needs "
            f"{', '.join(model.inputs)}"
            + (f" (or what derives them: {', '.join(model.derived)})" if model.derived else "")
        )
    return sorted(needed), steps


def _chunks(model: Any, files: Sequence[Path], tree: str, step: int) -> Iterator[dict]:
    from fivesigma.io.events import iter_chunks

    for index, path in enumerate(files):
        branches, steps = _plan(model, path, tree)
        for chunk in iter_chunks(path, tree, branches, step_size=step):
            cols: dict[str, Any] = dict(chunk.arrays)
            n = chunk.entry_stop - chunk.entry_start
            if n == 0:
                continue
            with np.errstate(all="ignore"):
                for name, expr in steps:
                    cols[name] = expr.evaluate(cols, n_events=n)
            out: dict[str, np.ndarray] = {
                "file_index": np.full(n, index, dtype=np.int32),
                "entry": np.arange(chunk.entry_start, chunk.entry_stop, dtype=np.int64),
            }
            for name in model.inputs:
                col = cols[name]
                try:
                    out[name] = np.asarray(col, dtype=np.float64).reshape(n)
                except (TypeError, ValueError):
                    raise DataError(
                        f"'{path}': input {name!r} is not one number per entry"
                    ) from None
            out[model.output] = model.predict({k: out[k] for k in model.inputs})
            yield out


def apply_formula(
    bundle: str | Path,
    inputs: Sequence[str],
    out: str | Path,
    tree: str | None = None,
    chunk_size: int = 200_000,
) -> dict[str, Any]:
    """Evaluate the bundle's formula on ``inputs`` (files or glob patterns) into ``out``."""
    from fivesigma.tasks.symbolic.bundle import load

    out = check_apply_paths(out, inputs)
    model = load(bundle)
    files = ordered_inputs(inputs)
    tree = tree or str(model.metadata.get("tree", "Events"))
    n = write_columns(_chunks(model, files, tree, chunk_size), out)
    return {"events": n, "files": len(files), "out": out}
