"""Draw reco-level outputs with a saved surrogate (``fivesigma apply`` on its bundle).

Inputs are event tables (ROOT, Parquet, HDF5 or CSV: :func:`fivesigma.io.events.read_events`)
holding the surrogate's conditions by name (jets: ``gen_pt, gen_eta, gen_phi, gen_mass,
gen_nconst, gen_flavour, gen_tau21, gen_tau32``; showers: ``energy, theta``).  Output
(Parquet, or a ROOT tree ``scores``): ``file_index``, ``row`` (index in the file), ``draw``
(0..draws-1), the conditions, and the surrogate's outputs (``reco_*`` or the voxels).
Every draw is checked before the file is written: a non-finite value stops with one line.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.errors import DataError
from fivesigma.io.writers import check_apply_paths, ordered_inputs, write_columns

__all__ = ["apply_surrogate"]


def _chunks(sur: Any, files: Sequence[Path], draws: int, seed: int) -> Iterator[dict]:
    from fivesigma.io.events import read_events

    names = sur.preprocessing.condition_names
    for index, path in enumerate(files):
        events = read_events([str(path)])
        missing = [n for n in names if n not in events.fields]
        if missing:
            raise DataError(
                f"'{path}' has no column(s) {', '.join(missing)} that the surrogate is "
                f"conditioned on ({', '.join(names)})"
            )
        cond = np.column_stack([np.asarray(events[n], dtype=np.float64) for n in names])
        n = len(cond)
        reps = np.repeat(cond, draws, axis=0)
        sample = sur.sample(reps, seed=seed + index)
        chunk = {
            "file_index": np.full(n * draws, index, dtype=np.int32),
            "row": np.repeat(np.arange(n, dtype=np.int64), draws),
            "draw": np.tile(np.arange(draws, dtype=np.int32), n),
        }
        for j, name in enumerate(names):
            chunk[name] = reps[:, j]
        for j, name in enumerate(sur.preprocessing.output_names):
            chunk[name] = sample[:, j]
        yield chunk


def apply_surrogate(
    bundle: str | Path,
    inputs: Sequence[str],
    out: str | Path,
    draws: int = 1,
    seed: int = 0,
    **_: Any,
) -> dict[str, Any]:
    """Draw ``draws`` outputs per input row of ``inputs`` (files or glob patterns)."""
    from fivesigma.tasks.fastsim.models import load_surrogate

    if not isinstance(draws, int) or draws < 1:
        raise DataError(f"draws must be an integer >= 1, got {draws!r}")
    out = check_apply_paths(out, inputs)
    sur = load_surrogate(bundle)
    files = ordered_inputs(inputs)
    # draw everything first: a failing draw leaves no partial output file
    chunks = list(_chunks(sur, files, draws, seed))
    n = write_columns(iter(chunks), out)
    return {"rows": n, "files": len(files), "out": out, "model": sur.model}
