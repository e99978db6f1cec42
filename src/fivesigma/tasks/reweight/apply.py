"""Weight files with a reweighter bundle (``fivesigma apply`` on a ``reweighter``).

Reads the bundle's input features from each file (ROOT, Parquet, HDF5, CSV) and writes
``file_index``, ``event`` and ``weight`` (``p / (1 - p)``, clipped at the bundle's cap).
A DCTR bundle needs the parameter: ``apply_reweighter(..., theta=0.12)``; without it the
weights are those at the middle of the values it was trained on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.errors import DataError, ModelError
from fivesigma.io.writers import check_apply_paths, ordered_inputs, write_columns

__all__ = ["apply_reweighter"]


def _chunks(model: Any, features: list[str], files: Sequence[Path], tree: str,
            theta: float | None) -> Iterator[dict[str, np.ndarray]]:  # fmt: skip
    from fivesigma.io.events import list_columns
    from fivesigma.tasks.reweight.data import read_user_sample

    for index, path in enumerate(files):
        missing = [f for f in features if f not in list_columns(path, tree)]
        if missing:
            raise DataError(
                f"'{path}' has no column(s) {', '.join(missing)} that the reweighter was "
                f"trained on ({', '.join(features)})"
            )
        table = read_user_sample([str(path)], tree, features, "input")
        x = np.column_stack([table[f] for f in features])
        n = len(x)
        yield {
            "file_index": np.full(n, index, dtype=np.int32),
            "event": np.arange(n, dtype=np.int64),
            "weight": model.weights(x, theta),
        }


def apply_reweighter(bundle: str | Path, inputs: Sequence[str], out: str | Path,
                     tree: str = "Events", theta: float | None = None) -> dict[str, Any]:  # fmt: skip
    """Weight the events of ``inputs`` (files or glob patterns, in the order given)."""
    from fivesigma.tasks.reweight.model import load

    out = check_apply_paths(out, inputs)
    model = load(bundle)
    record = getattr(model, "bundle_data_", None) or {}
    features = list(record.get("features") or [])
    if not features:
        raise ModelError(f"reweighter bundle '{bundle}' does not record its input features")
    if record.get("theta") and theta is None:
        values = record.get("theta_values") or []
        theta = float(np.median(values)) if values else None
    files = ordered_inputs(inputs)
    n = write_columns(_chunks(model, features, files, tree, theta), out)
    return {"events": n, "files": len(files), "out": out, "theta": theta}
