"""Score new files with a saved model bundle: ``fivesigma apply BUNDLE INPUT... --out FILE``.

The bundle records how features are made from branches (derived expressions, selection,
feature order, the ``data.missing`` sentinels and ``data.nan_policy``) and its own
preprocessing (with the imputation of missing values, if any), so applying it reproduces
training exactly.
Files are streamed chunk by chunk, so inputs larger than memory are fine.

Output, one row per input event, in input order (file after file, entry after entry):

``file_index``  position of the input file in the command line
``entry``       entry number inside that file
``score``       the model's signal probability (``decision_function``; a multi-class bundle: its
                discriminant, ``evaluation.discriminant`` of the signal classes); NaN where a feature is inf, and
                where one is NaN (e.g. an event with fewer leptons than a feature needs, or a
                ``data.missing`` sentinel) unless the bundle was trained with
                ``data.nan_policy: keep`` and its model takes NaN (the BDT natively, the
                logistic regression and the MLP through their imputation)
``selected``    whether the event passes the training selection

``--out scores.parquet`` writes Parquet; ``--out scores.root`` writes a TTree ``scores``
that can be a friend of a TChain of the same inputs in the same order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.data import check_file, iter_chunks, needed_columns, process_chunk
from fivesigma.data.config import DataConfig, SampleConfig
from fivesigma.errors import ModelError
from fivesigma.estimators import Estimator, load
from fivesigma.io.writers import check_output_path, ordered_inputs, write_columns

__all__ = ["apply_bundle", "score_chunks"]

_SELECTED = "fivesigma_selected"


def _data_config(
    est_features: Sequence[str], data: dict[str, Any], tree: str
) -> tuple[DataConfig, SampleConfig]:
    derived = dict(data.get("derived", {}))
    if data.get("selection"):
        # Evaluated as a derived column so that every event is kept and flagged.
        derived[_SELECTED] = data["selection"]
    sample = SampleConfig(name="input", files=["-"], tree=tree, label=0)
    cfg = DataConfig(
        samples=[sample],
        derived=derived,
        features=list(est_features),
        nan_policy="error",
        missing=data.get("missing"),
    )
    return cfg, sample


def _scores_missing(est: Estimator, data: dict[str, Any]) -> bool:
    """Whether events with NaN features are scored: the bundle was trained with
    ``nan_policy: keep`` and its model takes NaN (natively or by imputing)."""
    takes = est.handles_missing or getattr(est, "imputer_", None) is not None
    return data.get("nan_policy") == "keep" and takes


def _score(est: Estimator, data: dict[str, Any], X: np.ndarray) -> np.ndarray:
    """The signal probability, or for a multi-class bundle its stored discriminant."""
    signal = data.get("signal_classes")
    if not signal:
        return est.decision_function(X)
    from fivesigma.metrics import discriminant

    return discriminant(
        est.predict_proba(X), signal, kind=data.get("discriminant") or "probability"
    )


def score_chunks(
    est: Estimator,
    data: dict[str, Any],
    files: Sequence[Path],
    tree: str,
    chunk_size: int = 200_000,
) -> Iterator[dict[str, np.ndarray]]:
    """Yield one dict of output columns per chunk of the input files."""
    data_cfg, sample = _data_config(est.feature_names_in_, data, tree)
    extra = [_SELECTED] if _SELECTED in data_cfg.derived else []
    for file in files:  # fail before scoring anything if any file lacks a branch
        check_file(file, sample, data_cfg, extra)
    columns = sorted(needed_columns(data_cfg, sample, extra))
    keep_nan = _scores_missing(est, data)
    for index, file in enumerate(files):
        for chunk in iter_chunks(file, tree, columns, chunk_size):
            part = process_chunk(chunk, 0, sample, data_cfg, seed=0, extra_columns=extra)
            X = part.features(est.feature_names_in_, nan_policy="keep")
            good = ~np.isinf(X).any(axis=1) if keep_nan else np.isfinite(X).all(axis=1)
            score = np.full(len(X), np.nan)
            if good.any():
                score[good] = _score(est, data, X[good])
            selected = (
                np.asarray(part.columns[_SELECTED], dtype=bool)
                if extra
                else np.ones(len(X), dtype=bool)
            )
            yield {
                "file_index": np.full(len(X), index, dtype=np.int32),
                "entry": np.arange(chunk.entry_start, chunk.entry_stop, dtype=np.int64),
                "score": score,
                "selected": selected,
            }


def _empty_columns() -> dict[str, np.ndarray]:
    return {
        "file_index": np.zeros(0, np.int32),
        "entry": np.zeros(0, np.int64),
        "score": np.zeros(0, np.float64),
        "selected": np.zeros(0, np.bool_),
    }


def apply_bundle(
    bundle: str | Path,
    inputs: Sequence[str],
    out: str | Path,
    tree: str | None = None,
    chunk_size: int = 200_000,
) -> dict[str, Any]:
    """Score ``inputs`` (paths or glob patterns) with the bundle; write ``out``.

    Returns a small summary: events scored, selected, output path.
    """
    est = load(bundle)
    if est.inputs != "table":
        raise ModelError(
            f"model bundle '{bundle}' holds a {est.kind!r} model, which does not take a table "
            "of event features"
        )
    data = getattr(est, "bundle_data_", {}) or {}
    tree = tree or data.get("tree") or "Events"
    files = ordered_inputs(inputs)
    out = check_output_path(out)
    selected = [0]

    def count(cols: dict[str, np.ndarray]) -> None:
        selected[0] += int(cols["selected"].sum())

    n = write_columns(
        score_chunks(est, data, files, tree, chunk_size), out, empty=_empty_columns, on_chunk=count
    )
    return {"events": n, "selected": selected[0], "files": len(files), "out": out}
