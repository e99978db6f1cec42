"""Classify parameter points with a saved scan surrogate (``fivesigma apply``).

Inputs are CSV files with a header naming (at least) the scanned parameters, e.g.
``mass,g_quark``.  Output (Parquet, or a ROOT tree ``scores``): the parameters,
``file_index``, ``log_ratio`` (the surrogate's mean of ln(σ × BR / σB_lim)),
``log_ratio_std``, ``p_excluded`` (Φ(mean / std)) and ``excluded`` (mean > 0).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.errors import DataError
from fivesigma.io.writers import check_apply_paths, ordered_inputs, write_columns

__all__ = ["apply_surrogate", "read_points"]


def read_points(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The columns ``names`` of a CSV file with a header row."""
    try:
        with open(path, encoding="utf-8") as fh:
            header = [h.strip() for h in fh.readline().strip().split(",")]
            data = np.loadtxt(fh, delimiter=",", ndmin=2) if header != [""] else None
    except OSError as exc:
        raise DataError(f"cannot read '{path}': {exc.strerror or exc}") from None
    except ValueError:
        raise DataError(f"'{path}' is not a numeric CSV file with one header row") from None
    missing = [n for n in names if n not in header]
    if missing:
        raise DataError(
            f"'{path}' has no column(s) {', '.join(missing)}; its header is "
            f"{','.join(header)} and the surrogate needs {', '.join(names)}"
        )
    if data is None or data.size == 0:
        return {n: np.zeros(0) for n in names}
    if data.shape[1] != len(header):
        raise DataError(f"'{path}': rows have {data.shape[1]} values, the header {len(header)}")
    return {n: data[:, header.index(n)] for n in names}


def _chunks(model: Any, files: Sequence[Path]) -> Iterator[dict[str, np.ndarray]]:
    from scipy.special import ndtr

    for index, path in enumerate(files):
        points = read_points(path, model.features)
        n = len(next(iter(points.values())))
        if n == 0:
            continue
        mean, std = model.predict(points)
        yield {
            **{k: np.asarray(v, dtype=np.float64) for k, v in points.items()},
            "file_index": np.full(n, index, dtype=np.int32),
            "log_ratio": mean,
            "log_ratio_std": std,
            "p_excluded": ndtr(mean / std),
            "excluded": (mean > 0).astype(np.int8),
        }


def apply_surrogate(bundle: str | Path, inputs: Sequence[str], out: str | Path) -> dict[str, Any]:
    """Classify the points of ``inputs`` (CSV files or glob patterns) with the surrogate."""
    from fivesigma.tasks.scan.bundle import load

    out = check_apply_paths(out, inputs)
    model = load(bundle)
    files = ordered_inputs(inputs)
    n = write_columns(_chunks(model, files), out)
    return {"events": n, "files": len(files), "out": out}
