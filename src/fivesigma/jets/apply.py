"""Score jet files with a saved tagger bundle (``fivesigma apply`` on a jet tagger).

The bundle records the input definition (particle features, their fixed transforms,
``max_particles``: :func:`fivesigma.jets.features.describe`), so the inputs are rebuilt
exactly as in training.  Files stream chunk by chunk.  Output (Parquet, or a ROOT tree
``scores``): ``file_index``, ``jet`` (index in the file), ``label`` (the file's truth label
when it has one, else -1) and ``prob_<class>`` for each class (binary taggers:
``prob_0`` background, ``prob_1`` signal).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_file
from ..data import expand_files
from ..errors import ModelError, OutputError

__all__ = ["apply_tagger"]


def _score_chunks(
    tagger: Any, files: Sequence[Path], chunk_jets: int
) -> Iterator[dict[str, np.ndarray]]:
    from .data import iter_jets
    from .features import constituent_inputs

    spec = getattr(tagger, "bundle_data_", {}) or {}
    try:
        features = [f["name"] for f in spec["particle_features"]]
        max_particles = int(spec["max_particles"])
    except (KeyError, TypeError):
        raise ModelError(
            "this tagger bundle does not record its input features (no data.particle_features)"
        ) from None
    standardize = bool(spec.get("standardize", True))
    for index, file in enumerate(files):
        start = 0
        for chunk in iter_jets([file], chunk_jets=chunk_jets):
            inputs = constituent_inputs(
                chunk, max_particles=max_particles, features=features, standardize=standardize
            )
            prob = tagger.predict_proba(inputs)
            n = len(chunk)
            cols = {
                "file_index": np.full(n, index, dtype=np.int32),
                "jet": np.arange(start, start + n, dtype=np.int64),
                "label": np.asarray(chunk.label, dtype=np.int64)
                if chunk.label is not None
                else np.full(n, -1),
            }
            for k in range(prob.shape[1]):
                cols[f"prob_{k}"] = prob[:, k].astype(np.float64)
            start += n
            yield cols


def apply_tagger(
    bundle: str | Path, inputs: Sequence[str], out: str | Path, chunk_jets: int = 100_000
) -> dict[str, Any]:
    """Score the jets in ``inputs`` (files or glob patterns, in the order given)."""
    from .tagger import load

    tagger = load(bundle)
    files = list(
        dict.fromkeys(f for pattern in inputs for f in expand_files([pattern], Path.cwd()))
    )
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".root"):
        raise OutputError(f"output '{out}' must end in .parquet or .root")
    n = 0
    chunks = _score_chunks(tagger, files, chunk_jets)
    with atomic_file(out) as tmp:
        if suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            writer = None
            try:
                for cols in chunks:
                    table = pa.table(cols)
                    writer = writer or pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table)
                    n += len(cols["jet"])
            finally:
                if writer is not None:
                    writer.close()
        else:
            import uproot

            with uproot.recreate(tmp) as f:
                tree = None
                for cols in chunks:
                    if tree is None:
                        tree = f.mktree("scores", {k: v.dtype for k, v in cols.items()})
                    tree.extend(cols)
                    n += len(cols["jet"])
    return {"jets": n, "files": len(files), "out": out}
