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

import hashlib
import json
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.data import Chunk, check_file, iter_chunks, needed_columns, process_chunk
from fivesigma.data.config import DataConfig, SampleConfig
from fivesigma.errors import DataError, ExpressionError, FivesigmaError, ModelError, OutputError
from fivesigma.estimators import Estimator, load
from fivesigma.io.writers import check_output_path, ordered_inputs, write_columns

__all__ = [
    "HIST_BINS",
    "apply_bundle",
    "dask_output_paths",
    "score_chunks",
    "score_histogram",
]

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


def _score_chunk(
    est: Estimator,
    data: dict[str, Any],
    data_cfg: DataConfig,
    sample: SampleConfig,
    chunk: Chunk,
) -> tuple[np.ndarray, np.ndarray]:
    """(score, selected) of one chunk: the pure per-chunk step of both the eager and the
    dask path."""
    extra = [_SELECTED] if _SELECTED in data_cfg.derived else []
    part = process_chunk(chunk, 0, sample, data_cfg, seed=0, extra_columns=extra)
    X = part.features(est.feature_names_in_, nan_policy="keep")
    keep_nan = _scores_missing(est, data)
    good = ~np.isinf(X).any(axis=1) if keep_nan else np.isfinite(X).all(axis=1)
    score = np.full(len(X), np.nan)
    if good.any():
        score[good] = _score(est, data, X[good])
    selected = (
        np.asarray(part.columns[_SELECTED], dtype=bool) if extra else np.ones(len(X), dtype=bool)
    )
    return score, selected


def _input_columns(est: Estimator, data: dict[str, Any], tree: str) -> list[str]:
    """The branches scoring reads: what the bundle's expressions and features name."""
    data_cfg, sample = _data_config(est.feature_names_in_, data, tree)
    extra = [_SELECTED] if _SELECTED in data_cfg.derived else []
    return sorted(needed_columns(data_cfg, sample, extra))


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
    columns = _input_columns(est, data, tree)
    for index, file in enumerate(files):
        for chunk in iter_chunks(file, tree, columns, chunk_size):
            score, selected = _score_chunk(est, data, data_cfg, sample, chunk)
            yield {
                "file_index": np.full(len(score), index, dtype=np.int32),
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
    client: Any = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Score ``inputs`` (paths or glob patterns) with the bundle; write ``out``.

    Without ``client`` the files are scored here, chunk after chunk, into ``out``.  With a
    ``distributed.Client`` (``fivesigma apply --scheduler ...``) they are scored on its
    workers: one output per input file (:func:`dask_output_paths`), the merged score
    histogram and a report beside ``out``; a file that cannot be read is reported by name
    (``failed``) while the others complete.

    Returns a small summary: events scored, selected, output path(s), failed files.
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
    if client is not None:
        return _apply_dask(client, Path(bundle), est, data, files, tree, out, chunk_size, progress)
    selected = [0]

    def count(cols: dict[str, np.ndarray]) -> None:
        selected[0] += int(cols["selected"].sum())

    n = write_columns(
        score_chunks(est, data, files, tree, chunk_size), out, empty=_empty_columns, on_chunk=count
    )
    return {"events": n, "selected": selected[0], "files": len(files), "out": out, "failed": []}


# --------------------------------------------------------------------------------------
# On a dask cluster
#
# The graph: uproot.dask partitions (one per chunk_size entries of each file, the same
# chunks as the eager path, so every model sees the same batches) -> map_partitions with
# _Scorer (the same _score_chunk) -> per input file, one task writing its output -> the
# score histogram filled with dask-histogram from those same partitions.

#: the merged score histogram: bins over [0, 1] (flow bins keep anything outside)
HIST_BINS = 100

# Worker-side model cache: (bundle path, manifest digest) -> estimator.  A worker process
# keeps it between tasks, so each worker loads a bundle once, not once per partition.
_MODELS: dict[tuple[str, str], Estimator] = {}
_MODELS_LOCK = threading.Lock()
_LOADS = [0]


def _bundle_digest(bundle: str | Path) -> str:
    """SHA-256 of the bundle's manifest (which holds the checksum of every other file)."""
    try:
        return hashlib.sha256((Path(bundle) / "manifest.json").read_bytes()).hexdigest()
    except OSError as err:
        raise ModelError(f"model bundle '{bundle}': cannot read manifest.json ({err})") from None


def _worker_model(bundle: str, digest: str) -> Estimator:
    """The bundle's estimator, loaded once per process and checked against the client's."""
    key = (bundle, digest)
    with _MODELS_LOCK:
        est = _MODELS.get(key)
        if est is None:
            here = _bundle_digest(bundle)
            if here != digest:
                raise ModelError(
                    f"model bundle '{bundle}' on this worker differs from the client's "
                    "(manifest digests differ); give the workers the same bundle"
                )
            est = load(bundle)
            _MODELS[key] = est
            _LOADS[0] += 1
    return est


def _to_column(array: Any) -> Any:
    """Flat numeric columns as numpy (as the eager reader gives them), others awkward."""
    import awkward as ak

    if array.ndim == 1 and isinstance(array.type.content, ak.types.NumpyType):
        return ak.to_numpy(array)
    return array


def _typetracer_output() -> Any:
    import awkward as ak

    empty = ak.Array({"score": np.zeros(0), "selected": np.zeros(0, dtype=bool)})
    return ak.Array(empty.layout.to_typetracer(forget_length=True))


@dataclass(frozen=True)
class _Scorer:
    """Scores one partition (picklable, sent to the workers with the graph)."""

    bundle: str
    digest: str
    tree: str
    columns: tuple[str, ...]

    def __call__(self, events: Any) -> Any:
        import awkward as ak

        if ak.backend(events) == "typetracer":
            # dask-awkward traces the graph to find the branches to read: exactly those
            # touched here.
            for name in self.columns:
                ak.typetracer.touch_data(events[name])
            return _typetracer_output()
        est = _worker_model(self.bundle, self.digest)
        data = getattr(est, "bundle_data_", {}) or {}
        data_cfg, sample = _data_config(est.feature_names_in_, data, self.tree)
        n = len(events)
        if n == 0:  # a partition uproot could not read (reported by the writer)
            return ak.Array({"score": np.zeros(0), "selected": np.zeros(0, dtype=bool)})
        chunk = Chunk({c: _to_column(events[c]) for c in self.columns}, Path(self.bundle), 0, n)
        score, selected = _score_chunk(est, data, data_cfg, sample, chunk)
        return ak.Array({"score": score, "selected": selected})


def _selected_scores(part: Any) -> np.ndarray:
    import awkward as ak

    score = ak.to_numpy(part["score"])
    return score[ak.to_numpy(part["selected"]) & np.isfinite(score)]


def _read_error(path: str, tree: str, columns: Sequence[str], start: int, stop: int) -> str:
    """Why entries ``[start, stop)`` of ``path`` could not be read, in one line."""
    try:
        for _ in iter_chunks(Path(path), tree, columns, stop):
            break
    except FivesigmaError as err:
        return str(err).splitlines()[0]
    except Exception as err:
        return f"'{path}': {type(err).__name__}: {err}".splitlines()[0]
    return f"'{path}': entries {start}-{stop} could not be read"


def _write_file(
    out: str,
    index: int,
    path: str,
    tree: str,
    columns: Sequence[str],
    parts: Sequence[Any],
    ranges: Sequence[tuple[int, int]],
) -> dict[str, Any]:
    """Write the scores of one input file (a dask task on a worker)."""
    import awkward as ak

    for part, (start, stop) in zip(parts, ranges, strict=True):
        if len(part) != stop - start:
            return {"file": path, "error": _read_error(path, tree, columns, start, stop)}

    def chunks() -> Iterator[dict[str, np.ndarray]]:
        for part, (start, stop) in zip(parts, ranges, strict=True):
            yield {
                "file_index": np.full(stop - start, index, dtype=np.int32),
                "entry": np.arange(start, stop, dtype=np.int64),
                "score": ak.to_numpy(part["score"]),
                "selected": ak.to_numpy(part["selected"]),
            }

    selected = [0]

    def count(cols: dict[str, np.ndarray]) -> None:
        selected[0] += int(cols["selected"].sum())

    n = write_columns(chunks(), out, empty=_empty_columns, on_chunk=count)
    return {"file": path, "out": out, "events": n, "selected": selected[0]}


def dask_output_paths(out: str | Path, n_files: int) -> dict[str, Any]:
    """Where ``apply`` on dask writes, for ``--out DIR/NAME.SUFFIX``: ``files`` (one per
    input, ``NAME.00000.SUFFIX``, ...), ``histogram`` (``NAME.hist.json``) and ``report``
    (``NAME.report.json``)."""
    out = Path(out)
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return {
        "files": [out.with_name(f"{stem}.{i:05d}{out.suffix}") for i in range(n_files)],
        "histogram": out.with_name(f"{stem}.hist.json"),
        "report": out.with_name(f"{stem}.report.json"),
    }


def score_histogram(scores: np.ndarray | None = None) -> Any:
    """The score histogram of ``apply`` (``HIST_BINS`` bins over [0, 1]), filled with
    ``scores`` if given; the eager twin of the one filled on dask."""
    from fivesigma.core import extras

    h = extras.hist().Hist.new.Reg(HIST_BINS, 0.0, 1.0, name="score").Double()
    if scores is not None:
        h.fill(np.asarray(scores, dtype=np.float64))
    return h


def _histogram_json(h: Any) -> dict[str, Any]:
    return {
        "axis": "score",
        "edges": [float(x) for x in h.axes[0].edges],
        "counts": [float(x) for x in h.values()],
        "underflow": float(h.values(flow=True)[0]),
        "overflow": float(h.values(flow=True)[-1]),
        "what": "events passing the training selection with a finite score",
    }


@dataclass
class _Plan:
    """The inputs of a dask apply after the client-side checks."""

    files: list[Path]
    entries: dict[int, int] = field(default_factory=dict)  # readable files: index -> entries
    failed: dict[int, str] = field(default_factory=dict)  # index -> one-line reason


def _plan(est: Estimator, data: dict[str, Any], files: Sequence[Path], tree: str) -> _Plan:
    from fivesigma.io.events import detect_format, num_entries

    data_cfg, sample = _data_config(est.feature_names_in_, data, tree)
    extra = [_SELECTED] if _SELECTED in data_cfg.derived else []
    plan = _Plan(list(files))
    for i, file in enumerate(files):
        try:
            fmt = detect_format(file)
            if fmt != "root":
                raise DataError(
                    f"'{file}' is a {fmt} file; --scheduler reads ROOT files (TTree or "
                    "RNTuple): score it with --scheduler local"
                )
            check_file(file, sample, data_cfg, extra)
            plan.entries[i] = num_entries(file, tree)
        except ExpressionError:
            raise  # a branch the model needs is missing: the bundle does not fit the data
        except DataError as err:
            if "--scheduler" in str(err):
                raise
            plan.failed[i] = str(err).splitlines()[0]
    return plan


def _scored_partitions(scorer: _Scorer, steps: dict[Path, list[tuple[int, int]]], tree: str) -> Any:
    """The dask-awkward collection of (score, selected): one partition per step of each
    file, in file order; uproot reads only the branches ``scorer`` touches."""
    from fivesigma.core import extras

    dak = extras.dask_awkward()
    import uproot

    events = uproot.dask(
        {
            str(Path(file).resolve()): {"object_path": tree, "steps": [list(s) for s in ranges]}
            for file, ranges in steps.items()
        },
        open_files=False,
        # a file that vanishes or breaks while the graph runs gives empty partitions
        # instead of stopping every other file; the writer names it
        allow_read_errors_with_report=(Exception,),
    )[0]
    return dak.map_partitions(scorer, events, label="fivesigma-score", meta=_typetracer_output())


def _apply_dask(
    client: Any,
    bundle: Path,
    est: Estimator,
    data: dict[str, Any],
    files: Sequence[Path],
    tree: str,
    out: Path,
    chunk_size: int,
    progress: bool,
) -> dict[str, Any]:
    from fivesigma.core import extras
    from fivesigma.core.files import atomic_file

    extras.dask()  # a missing dask names itself before distributed or dask-awkward
    delayed = extras.dask("delayed").delayed
    dak = extras.dask_awkward()
    extras.dask_histogram()
    hist_dask = extras.hist("dask")
    import awkward as ak

    plan = _plan(est, data, files, tree)
    paths = dask_output_paths(out, len(files))
    bundle_path = str(Path(bundle).resolve())
    columns = _input_columns(est, data, tree)
    scorer = _Scorer(bundle_path, _bundle_digest(bundle_path), tree, tuple(columns))

    steps = {
        i: [(a, min(a + chunk_size, n)) for a in range(0, n, chunk_size)]
        for i, n in plan.entries.items()
    }
    readable = [i for i in plan.entries if steps[i]]
    parts: list[Any] = []
    if readable:
        scored = _scored_partitions(scorer, {files[i]: steps[i] for i in readable}, tree)
        parts = list(scored.to_delayed(optimize_graph=True))
    writes = []
    first = 0
    for i in plan.entries:
        mine = parts[first : first + len(steps[i])] if steps[i] else []
        first += len(steps[i])
        writes.append(
            delayed(_write_file, pure=True)(
                str(paths["files"][i]), i, str(files[i]), tree, columns, mine, steps[i]
            )
        )
    meta = ak.Array(ak.Array(np.zeros(0)).layout.to_typetracer(forget_length=True))
    selected_scores = (
        dak.from_delayed([delayed(_selected_scores)(p) for p in parts], meta=meta)
        if parts
        else None
    )
    h_lazy = hist_dask.Hist.new.Reg(HIST_BINS, 0.0, 1.0, name="score").Double()
    if selected_scores is not None:
        h_lazy.fill(selected_scores)
    futures = client.compute([*writes, h_lazy] if parts else writes, retries=2)
    if progress and sys.stdout.isatty():
        extras.distributed().progress(futures, multi=False, scheduler=client.scheduler.address)
    results: list[dict[str, Any]] = []
    for future in futures[: len(writes)]:
        try:
            results.append(future.result())
        except FivesigmaError:
            raise
        except Exception as err:
            raise OutputError(
                f"writing the scores failed on a worker: {type(err).__name__}: {err}"
            ) from None
    h = futures[-1].result() if parts else score_histogram()

    failed = {**plan.failed}
    written = []
    for i, res in zip(plan.entries, results, strict=True):
        if "error" in res:
            failed[i] = res["error"]
        else:
            written.append(res)
    with atomic_file(paths["histogram"]) as tmp:
        tmp.write_text(json.dumps(_histogram_json(h), indent=1) + "\n")
    report = {
        "bundle": bundle_path,
        "inputs": [
            {"index": i, "file": str(f), "out": str(paths["files"][i])}
            | (
                {"error": failed[i]}
                if i in failed
                else {"events": results[list(plan.entries).index(i)]["events"]}
            )
            for i, f in enumerate(files)
        ],
        "failed": [str(files[i]) for i in sorted(failed)],
        "histogram": str(paths["histogram"]),
    }
    with atomic_file(paths["report"]) as tmp:
        tmp.write_text(json.dumps(report, indent=1) + "\n")
    return {
        "events": sum(r["events"] for r in written),
        "selected": sum(r["selected"] for r in written),
        "files": len(files),
        "out": out,
        "outputs": [Path(r["out"]) for r in written],
        "histogram": paths["histogram"],
        "histogram_counts": h,
        "report": paths["report"],
        "failed": [(str(files[i]), failed[i]) for i in sorted(failed)],
    }
