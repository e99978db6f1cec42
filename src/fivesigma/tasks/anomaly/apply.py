"""Score dijet files with a saved anomaly detector (``fivesigma apply`` on its bundle).

The bundle records the features it was trained on, so the inputs are rebuilt by name
from each file (generator ROOT files or LHC Olympics R&D feature files).  Output
(Parquet, or a ROOT tree ``scores``): ``file_index``, ``event`` (index in the file),
``mjj``, ``label`` (the file's truth label, else -1) and ``score`` (higher is more
anomalous).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.errors import DataError, ModelError
from fivesigma.io.writers import check_apply_paths, ordered_inputs, write_columns

__all__ = ["apply_detector"]


def _chunks(detector: Any, features: list[str], files: Sequence[Path]) -> Iterator[dict]:
    from fivesigma.tasks.anomaly.data import read_dijets

    for index, path in enumerate(files):
        table = read_dijets(path)
        missing = [f for f in features if f not in table.columns]
        if missing:
            raise DataError(
                f"'{path}' has no column(s) {', '.join(missing)} that the detector was "
                f"trained on ({', '.join(features)})"
            )
        mjj = np.asarray(table.mjj, dtype=np.float64)
        n = len(table)
        label = table.columns.get("label")
        yield {
            "file_index": np.full(n, index, dtype=np.int32),
            "event": np.arange(n, dtype=np.int64),
            "mjj": mjj,
            "label": np.asarray(label, dtype=np.int64) if label is not None else np.full(n, -1),
            "score": np.asarray(detector.score(table.features(features), mjj), np.float64),
        }


def apply_detector(bundle: str | Path, inputs: Sequence[str], out: str | Path) -> dict[str, Any]:
    """Score the events of ``inputs`` (files or glob patterns, in the order given)."""
    from fivesigma.tasks.anomaly.methods import load

    out = check_apply_paths(out, inputs)
    detector = load(bundle)
    features = list(getattr(detector, "feature_names_", None) or [])
    if not features:
        raise ModelError(f"anomaly bundle '{bundle}' does not record its input features")
    files = ordered_inputs(inputs)
    n = write_columns(_chunks(detector, features, files), out)
    return {"events": n, "files": len(files), "out": out}
