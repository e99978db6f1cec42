"""Thresholds from a saved trigger policy (``fivesigma apply`` on a ``design_policy``
bundle): inputs are tables (CSV, Parquet, ROOT) with a column ``mu`` (pile-up) and
optionally ``phase`` (fill phase in [0, 1), default 0); the output has ``file_index``,
``row``, ``mu``, ``phase`` and one column ``threshold_<seed>`` (GeV) per seed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.errors import DataError
from fivesigma.io.writers import check_apply_paths, ordered_inputs, write_columns

__all__ = ["apply_policy"]


def _read(path: Path) -> dict[str, np.ndarray]:
    from fivesigma.io.events import read_events

    events = read_events(path)
    return {f: np.asarray(events[f]) for f in events.fields if f in ("mu", "phase")}


def _chunks(policy: Any, files: Sequence[Path]) -> Iterator[dict[str, np.ndarray]]:
    for index, path in enumerate(files):
        table = _read(path)
        if "mu" not in table:
            raise DataError(f"'{path}' has no column 'mu' (the pile-up the policy reads)")
        mu = np.asarray(table["mu"], dtype=np.float64)
        phase = np.asarray(table.get("phase", np.zeros_like(mu)), dtype=np.float64)
        if not np.all(np.isfinite(mu)) or np.any(mu < 0):
            raise DataError(f"'{path}': column 'mu' must hold finite values >= 0")
        t = policy.thresholds(mu, phase)
        out = {
            "file_index": np.full(mu.size, index, dtype=np.int32),
            "row": np.arange(mu.size, dtype=np.int64),
            "mu": mu,
            "phase": phase,
        }
        for k, name in enumerate(policy.seeds):
            out[f"threshold_{name}"] = t[:, k]
        yield out


def apply_policy(bundle: str | Path, inputs: Sequence[str], out: str | Path) -> dict[str, Any]:
    """Thresholds for every row of ``inputs``."""
    from fivesigma.tasks.design.bundle import load

    out = check_apply_paths(out, inputs)
    policy = load(bundle)
    files = ordered_inputs(inputs)
    n = write_columns(_chunks(policy, files), out)
    return {"rows": n, "files": len(files), "out": out}
