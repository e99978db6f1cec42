"""Score jet files with a saved tagger bundle (``fivesigma apply`` on a jet tagger).

The bundle records the input definition (particle features, their fixed transforms,
``max_particles``: :func:`fivesigma.tasks.jets.features.describe`), so the inputs are rebuilt
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

from fivesigma.errors import ModelError
from fivesigma.io.writers import check_output_path, ordered_inputs, write_columns

__all__ = ["apply_tagger"]


def _score_chunks(
    tagger: Any, files: Sequence[Path], chunk_jets: int
) -> Iterator[dict[str, np.ndarray]]:
    from fivesigma.errors import ConfigError
    from fivesigma.io.jets import iter_jets
    from fivesigma.tasks.jets.features import (
        check_features_available,
        constituent_inputs,
        input_options,
    )

    spec = getattr(tagger, "bundle_data_", {}) or {}
    try:
        options = input_options(spec)
    except ConfigError:
        raise ModelError(
            "this tagger bundle does not record its input features (no data.particle_features)"
        ) from None
    for index, file in enumerate(files):
        start = 0
        for chunk in iter_jets([file], chunk_jets=chunk_jets):
            check_features_available(chunk, options["features"], str(file))
            inputs = constituent_inputs(chunk, **options)
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
    from fivesigma.estimators import load

    tagger = load(bundle)
    if getattr(tagger, "inputs", None) != "constituents":
        raise ModelError(
            f"model bundle '{bundle}' holds a {tagger.kind!r} model, which does not take jet "
            "constituents"
        )
    files = ordered_inputs(inputs)
    out = check_output_path(out)
    n = write_columns(_score_chunks(tagger, files, chunk_jets), out)
    return {"jets": n, "files": len(files), "out": out}
