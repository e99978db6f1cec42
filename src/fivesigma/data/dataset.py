"""From config to a table of events: read, derive, weight, split, select, normalise.

:func:`load_dataset` reads every sample of a :class:`~fivesigma.tasks.classify.config.ClassifyConfig` chunk by
chunk.  Each chunk goes through :func:`process_chunk`, a pure function of the chunk and
the config (so it can later run inside ``dask_awkward.map_partitions``):

1. only the needed branches are read (:func:`needed_columns`), and the values that
   ``data.missing`` declares missing (e.g. -999) become NaN in them, so every derived
   column, selection and feature computed from a branch sees NaN there;
2. derived columns are evaluated, in config order;
3. the weight expression is evaluated;
4. split codes are computed on *all* entries, so the split does not depend on the cuts;
5. the selection is applied and only the columns needed downstream are kept.

Then samples are normalised to cross section x luminosity and NaN/inf features are
handled according to ``data.nan_policy``: ``error`` refuses them, ``drop`` removes those
events, ``keep`` keeps NaN (missing values, for the models to handle) and refuses inf.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from fivesigma.core.config import TaskConfig
from fivesigma.data.config import DataConfig, SampleConfig
from fivesigma.data.expressions import Expression
from fivesigma.data.features_module import load_features_module
from fivesigma.data.split import SPLIT_NAMES, split_codes
from fivesigma.errors import DataError, ExpressionError, close_matches
from fivesigma.io.events import Chunk, expand_files, iter_chunks, list_columns, num_entries

__all__ = [
    "Dataset",
    "concatenate",
    "load_dataset",
    "needed_columns",
    "process_chunk",
    "replace_sentinels",
    "user_functions",
]

log = logging.getLogger("fivesigma.data")

Column = np.ndarray | ak.Array

#: User functions for expressions (``data.features_module``), by name.
Functions = Mapping[str, Callable[..., Any]]


@dataclass
class Dataset:
    """Events of all samples: columns, weights, labels, sample index and split code.

    Attributes
    ----------
    columns : dict
        Column name -> numpy array (flat) or awkward array (jagged), one entry per event.
    weight : numpy.ndarray of float64
        Event weights (after normalisation in :func:`load_dataset`); may be negative.
    label : numpy.ndarray of int64
        Class index of each event.
    sample : numpy.ndarray of int64
        Index into ``sample_names``.
    split : numpy.ndarray of int8
        0 train, 1 validation, 2 test.
    sample_names : list of str
        Names of all samples, in config order.
    events_read : numpy.ndarray of int64
        Per sample: events read before any selection.
    sum_weights_read : numpy.ndarray of float64
        Per sample: sum of weights of the events read before any selection, on the same
        scale as ``weight`` (so it equals cross section x luminosity after normalisation
        without ``sum_weights_generated``).
    nan_policy : {"error", "drop", "keep"}
        The ``data.nan_policy`` the events were read with: the default of
        :meth:`features` (``"keep"``: feature matrices hold NaN for missing values).
    """

    columns: dict[str, Column]
    weight: np.ndarray
    label: np.ndarray
    sample: np.ndarray
    split: np.ndarray
    sample_names: list[str]
    events_read: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    sum_weights_read: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    nan_policy: str = "error"

    def __len__(self) -> int:
        return len(self.weight)

    def subset(self, mask_or_index: np.ndarray | Sequence[int] | Sequence[bool]) -> Dataset:
        """The events selected by a boolean mask or an integer index array."""
        idx = np.asarray(mask_or_index)
        if idx.dtype == bool and idx.shape != (len(self),):
            raise ValueError(f"mask has shape {idx.shape}, expected ({len(self)},)")
        if idx.dtype != bool:
            idx = idx.astype(np.int64, copy=False)
        return replace(
            self,
            columns={k: v[idx] for k, v in self.columns.items()},
            weight=self.weight[idx],
            label=self.label[idx],
            sample=self.sample[idx],
            split=self.split[idx],
            sample_names=list(self.sample_names),
        )

    def features(
        self, names: Sequence[str], nan_policy: str | None = None, dtype: Any = np.float64
    ) -> np.ndarray:
        """Flat feature matrix of shape ``(n_events, len(names))``.

        Parameters
        ----------
        names : sequence of str
            Flat columns (branches or derived).
        nan_policy : {"error", "drop", "keep"}, optional
            Default: the dataset's own ``nan_policy`` (the one it was read with).
            ``"error"`` raises a :class:`DataError` counting NaN/inf per feature;
            ``"keep"`` returns them as they are (:func:`load_dataset` with
            ``data.nan_policy: keep`` has already refused inf).  ``"drop"`` is accepted
            for configs with ``data.nan_policy: drop``: :func:`load_dataset` has already
            removed those events, and since this method never changes the number of rows
            (weights and labels must stay aligned) any NaN/inf left is an error.
        dtype : numpy dtype
            float64 (default) or float32.
        """
        if nan_policy is None:
            nan_policy = self.nan_policy
        if nan_policy not in ("error", "drop", "keep"):
            raise ValueError(f"nan_policy must be 'error', 'drop' or 'keep', got {nan_policy!r}")
        out = np.empty((len(self), len(names)), dtype=dtype)
        for j, name in enumerate(names):
            out[:, j] = self._flat_column(name)
        if nan_policy != "keep":
            bad = ~np.isfinite(out)
            if bad.any():
                raise DataError(_nan_message(names, bad.sum(axis=0)))
        return out

    def _flat_column(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise DataError(
                f"no column '{name}' in the dataset; {close_matches(name, self.columns)} "
                "(add it to data.features or data.derived)"
            )
        col = self.columns[name]
        if _is_jagged(col):
            raise DataError(_jagged_feature_message(name))
        arr = np.asarray(col)
        if arr.dtype.kind not in "biuf":
            raise DataError(f"feature '{name}' holds {arr.dtype} values, not numbers")
        return arr

    def summary(self) -> dict[str, Any]:
        """Events and sum of weights per sample and split (JSON-serialisable)."""
        samples: dict[str, Any] = {}
        for i, name in enumerate(self.sample_names):
            in_sample = self.sample == i
            entry: dict[str, Any] = {
                "events": int(in_sample.sum()),
                "sum_weights": float(self.weight[in_sample].sum()),
            }
            if len(self.events_read) == len(self.sample_names):
                entry["events_read"] = int(self.events_read[i])
                entry["sum_weights_read"] = float(self.sum_weights_read[i])
            for code, split_name in enumerate(SPLIT_NAMES):
                sel = in_sample & (self.split == code)
                entry[split_name] = {
                    "events": int(sel.sum()),
                    "sum_weights": float(self.weight[sel].sum()),
                }
            samples[name] = entry
        splits = {
            split_name: {
                "events": int((self.split == code).sum()),
                "sum_weights": float(self.weight[self.split == code].sum()),
            }
            for code, split_name in enumerate(SPLIT_NAMES)
        }
        return {
            "events": len(self),
            "sum_weights": float(self.weight.sum()),
            "samples": samples,
            "splits": splits,
        }


# --------------------------------------------------------------------------------------
# Helpers


@functools.lru_cache(maxsize=1024)
def _parsed(
    text: str, what: str, functions: tuple[tuple[str, Callable[..., Any]], ...]
) -> Expression:
    return Expression(text, what, dict(functions) or None)


def _expr(text: str, what: str, functions: Functions | None = None) -> Expression:
    """Parse once per (text, role, user functions); chunks of a config reuse the result."""
    return _parsed(text, what, tuple(sorted(functions.items())) if functions else ())


def user_functions(cfg: TaskConfig) -> dict[str, Callable[..., Any]]:
    """The functions of ``data.features_module`` (resolved from the config's directory),
    or none; see :mod:`fivesigma.data.features_module`."""
    path = cfg.data.features_module
    return load_features_module(cfg.resolve(path)) if path else {}


def _is_jagged(col: Any) -> bool:
    if isinstance(col, ak.Array):
        return col.ndim != 1 or not isinstance(col.type.content, ak.types.NumpyType)
    return np.ndim(col) != 1


def _jagged_feature_message(name: str) -> str:
    return (
        f"feature '{name}' has a variable number of values per event; models need one number per "
        f"event: add a derived column such as '{name}_0: nth({name}, 0)' (or counts({name})) "
        "and use that as the feature"
    )


def _nan_message(names: Sequence[str], counts: np.ndarray, any_inf: bool = True) -> str:
    per = ", ".join(f"{n} ({int(c)})" for n, c in zip(names, counts, strict=True) if c)
    total = int(np.sum(counts))
    keep = "" if any_inf else ", or keep to give them to the models as missing values"
    return (
        f"{total} NaN/inf value{'s' if total != 1 else ''} in features: {per} — "
        f"set data.nan_policy: drop to remove those events{keep}"
    )


def _inf_message(names: Sequence[str], counts: np.ndarray) -> str:
    per = ", ".join(f"{n} ({int(c)})" for n, c in zip(names, counts, strict=True) if c)
    total = int(np.sum(counts))
    return (
        f"{total} inf value{'s' if total != 1 else ''} in features: {per} — "
        "data.nan_policy: keep keeps NaN (missing values) but never inf; fix the expression "
        "(e.g. a division by zero) or set data.nan_policy: drop to remove those events"
    )


# --------------------------------------------------------------------------------------
# Missing-value sentinels (data.missing)


def _is_numeric_awkward(col: ak.Array) -> bool:
    """Whether an awkward array holds numbers (at any depth of lists; not strings)."""
    t: Any = col.type.content
    while True:
        if t.parameter("__array__") in ("string", "bytestring", "char", "byte"):
            return False
        if isinstance(t, ak.types.NumpyType):
            return t.primitive not in ("bool", "datetime64", "timedelta64")
        if not hasattr(t, "content"):  # records, unions
            return False
        t = t.content


def _sentinels_to_nan(col: Column, values: tuple[float, ...]) -> Column:
    """``col`` with every value in ``values`` replaced by NaN (integers become float64
    where one matches); non-numeric columns are returned unchanged."""
    if isinstance(col, ak.Array):
        if not _is_numeric_awkward(col):
            return col
        hit = functools.reduce(lambda a, b: a | b, [col == v for v in values])
        if not ak.any(hit):
            return col
        return ak.where(hit, np.nan, col)
    arr = np.asarray(col)
    if arr.dtype.kind not in "iuf":
        return col
    hit = np.isin(arr, values)
    if not hit.any():
        return col
    out = arr.astype(np.float64 if arr.dtype.kind in "iu" else arr.dtype, copy=True)
    out[hit] = np.nan
    return out


def replace_sentinels(cols: dict[str, Column], data_cfg: DataConfig) -> dict[str, Column]:
    """The branches ``cols`` (as read) with the values ``data.missing`` declares missing
    turned into NaN: per named branch, or (a single value or list) in every numeric
    branch except ``data.split.key``."""
    per_column, everywhere = data_cfg.sentinels()
    if not per_column and not everywhere:
        return cols
    out = dict(cols)
    for name, col in cols.items():
        values = per_column.get(name, ())
        if not values and everywhere and name != data_cfg.split.key:
            values = everywhere
        if values:
            out[name] = _sentinels_to_nan(col, values)
    return out


def _to_column(value: Any, n: int, what: str) -> Column:
    """One value per event: numpy for flat results, awkward for jagged ones."""
    if isinstance(value, ak.Array):
        if value.ndim == 0:
            value = value.to_list()
        else:
            if len(value) != n:
                raise DataError(f"{what} gives {len(value)} values for {n} events")
            if value.ndim == 1:
                content = value.type.content
                if isinstance(content, ak.types.OptionType) and not isinstance(
                    content.content, ak.types.RecordType
                ):
                    # (a missing four-vector stays None: its .mass etc. become NaN later)
                    inner = content.content
                    is_bool = isinstance(inner, ak.types.NumpyType) and inner.primitive == "bool"
                    # Missing values of a flat column become NaN (or False for booleans).
                    value = ak.fill_none(value, False if is_bool else np.nan)
                if isinstance(value.type.content, ak.types.NumpyType):
                    return ak.to_numpy(value)
            return value
    arr = np.asarray(value)
    if arr.ndim == 0:
        return np.full(n, arr[()])
    if len(arr) != n:
        raise DataError(f"{what} gives {len(arr)} values for {n} events")
    return arr


def _flat_numbers(value: Any, n: int, what: str, hint: str) -> np.ndarray:
    col = _to_column(value, n, what)
    if _is_jagged(col):
        raise DataError(f"{what} gives a list per event, not one value; {hint}")
    arr = np.asarray(col)
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{what} gives {arr.dtype} values, not numbers")
    return arr


def _sample_index(data_cfg: DataConfig, sample: SampleConfig) -> int:
    for i, s in enumerate(data_cfg.samples):
        if s.name == sample.name:
            return i
    return -1


def _where(data_cfg: DataConfig, sample: SampleConfig) -> str:
    i = _sample_index(data_cfg, sample)
    return f"data.samples[{i}]" if i >= 0 else f"sample '{sample.name}'"


def _expressions(
    data_cfg: DataConfig, sample: SampleConfig, extra_columns: Iterable[str] = ()
) -> list[tuple[str, str, str | None]]:
    """(role, text, derived name or None) for every expression the sample needs, in order."""
    where = _where(data_cfg, sample)
    out: list[tuple[str, str, str | None]] = []
    for name, text in data_cfg.derived.items():
        out.append((f"data.derived.{name}", text, name))
    if data_cfg.selection:
        out.append(("data.selection", data_cfg.selection, None))
    if sample.selection:
        out.append((f"{where}.selection", sample.selection, None))
    if sample.weight:
        out.append((f"{where}.weight", sample.weight, None))
    for j, feature in enumerate(data_cfg.features):
        out.append((f"data.features[{j}]", feature, None))
    for name in extra_columns:
        out.append(("extra column", name, None))
    return out


def needed_columns(
    data_cfg: DataConfig,
    sample: SampleConfig,
    extra_columns: Iterable[str] = (),
    functions: Functions | None = None,
) -> set[str]:
    """Branches to read for ``sample``: every name used by the selections, weight, derived
    columns, features and split key, minus the derived names.

    A derived column may reuse a branch's name (``lep_pt: lep_pt / 1000``): expressions
    before its definition read the branch, so it is still needed.
    """
    needed: set[str] = set()
    defined: set[str] = set()
    for role, text, derived_name in _expressions(data_cfg, sample, extra_columns):
        needed |= set(_expr(text, role, functions).names) - defined
        if derived_name is not None:
            defined.add(derived_name)
    key = data_cfg.split.key
    if key and key not in defined:
        needed.add(key)
    return needed


def _kept_columns(data_cfg: DataConfig, extra_columns: Iterable[str]) -> list[str]:
    return list(dict.fromkeys([*data_cfg.features, *extra_columns]))


def _empty_counts(data_cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    k = len(data_cfg.samples)
    return np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.float64)


def process_chunk(
    chunk: Chunk,
    sample_index: int,
    sample: SampleConfig,
    data_cfg: DataConfig,
    seed: int,
    extra_columns: Iterable[str] = (),
    functions: Functions | None = None,
) -> Dataset:
    """Turn one chunk of raw branches into a :class:`Dataset` (no normalisation yet).

    Order: ``data.missing`` sentinels become NaN in the branches as read, then derived
    columns (in config order), weight, split codes (on all entries), then the selection.  Kept columns: ``data.features`` plus ``extra_columns``.  The result's
    ``events_read`` / ``sum_weights_read`` count the chunk's events before selection, so
    :func:`load_dataset` can normalise after concatenation.  ``functions`` are the user's
    expression functions (:func:`user_functions`).
    """
    n = len(chunk)
    where = _where(data_cfg, sample)
    cols: dict[str, Column] = replace_sentinels(dict(chunk.arrays), data_cfg)

    for name, text in data_cfg.derived.items():
        role = f"data.derived.{name}"
        cols[name] = _to_column(
            _expr(text, role, functions).evaluate(cols, n), n, f"derived column '{name}'"
        )

    if sample.weight:
        role = f"{where}.weight"
        weight = _flat_numbers(
            _expr(sample.weight, role, functions).evaluate(cols, n),
            n,
            f"{role} '{sample.weight}'",
            "an event weight must be one number per event",
        ).astype(np.float64)
        bad = ~np.isfinite(weight)
        if bad.any():
            raise DataError(
                f"sample '{sample.name}': weight '{sample.weight}' is NaN/inf for {int(bad.sum())} of "
                f"{n} events in '{chunk.file}'"
            )
    else:
        weight = np.ones(n, dtype=np.float64)

    fractions = (data_cfg.split.train, data_cfg.split.validation, data_cfg.split.test)
    key = data_cfg.split.key
    if key:
        ids = cols[key]
        if _is_jagged(ids):
            raise DataError(
                f"data.split.key '{key}' must be one integer per event, but it is jagged"
            )
        split = split_codes(np.asarray(ids), seed=seed, fractions=fractions)
    else:
        entries = np.arange(chunk.entry_start, chunk.entry_stop, dtype=np.int64)
        split = split_codes(seed=seed, fractions=fractions, file=chunk.file, entries=entries)

    mask = np.ones(n, dtype=bool)
    for role, text in (
        ("data.selection", data_cfg.selection),
        (f"{where}.selection", sample.selection),
    ):
        if not text:
            continue
        passed = _flat_numbers(
            _expr(text, role, functions).evaluate(cols, n),
            n,
            f"{role} '{text}'",
            "reduce it to one true/false per event (e.g. with nth(...) or counts(...))",
        )
        if passed.dtype != bool:
            raise DataError(
                f"{role} '{text}' gives {passed.dtype} values; a selection must be true/false"
            )
        mask &= passed

    rows = np.flatnonzero(mask)
    kept: dict[str, Column] = {}
    for j, name in enumerate(_kept_columns(data_cfg, extra_columns)):
        if name in cols:
            value = cols[name]
        else:
            # A feature may be an expression (e.g. "nth(lep_pt, 0)"), stored under its text.
            value = _to_column(
                _expr(name, f"data.features[{j}]", functions).evaluate(cols, n),
                n,
                f"feature '{name}'",
            )
        if name in data_cfg.features and _is_jagged(value):
            raise DataError(_jagged_feature_message(name))
        kept[name] = _rows(value, mask, rows)

    events_read, sum_weights_read = _empty_counts(data_cfg)
    events_read[sample_index] = n
    sum_weights_read[sample_index] = weight.sum()
    k = len(rows)
    return Dataset(
        columns=kept,
        weight=weight.take(rows),
        label=np.full(k, sample.label, dtype=np.int64),
        sample=np.full(k, sample_index, dtype=np.int64),
        split=split.take(rows),
        sample_names=[s.name for s in data_cfg.samples],
        events_read=events_read,
        sum_weights_read=sum_weights_read,
    )


def _rows(value: Column, mask: np.ndarray, rows: np.ndarray) -> Column:
    """The selected events of a column: numpy gathers the indices ``rows`` (the events
    where ``mask`` is true; much faster than a boolean mask), awkward takes the mask."""
    if isinstance(value, np.ndarray):
        return value.take(rows, axis=0)
    return value[mask]


def concatenate(parts: Sequence[Dataset]) -> Dataset:
    """Stack datasets with the same samples and columns (e.g. the chunks of a load)."""
    if not parts:
        raise ValueError("nothing to concatenate")
    first = parts[0]
    for p in parts[1:]:
        if p.sample_names != first.sample_names or set(p.columns) != set(first.columns):
            raise ValueError("datasets to concatenate must have the same samples and columns")
    columns: dict[str, Column] = {}
    for name in first.columns:
        values = [p.columns[name] for p in parts]
        if any(isinstance(v, ak.Array) for v in values):
            columns[name] = ak.concatenate(values, axis=0)
        else:
            columns[name] = np.concatenate(values)
    return Dataset(
        columns=columns,
        weight=np.concatenate([p.weight for p in parts]),
        label=np.concatenate([p.label for p in parts]),
        sample=np.concatenate([p.sample for p in parts]),
        split=np.concatenate([p.split for p in parts]),
        sample_names=list(first.sample_names),
        events_read=np.sum([p.events_read for p in parts], axis=0).astype(np.int64),
        sum_weights_read=np.sum([p.sum_weights_read for p in parts], axis=0).astype(np.float64),
        nan_policy=first.nan_policy,
    )


# --------------------------------------------------------------------------------------
# Loading


def check_file(
    file: Path,
    sample: SampleConfig,
    data_cfg: DataConfig,
    extra_columns: Sequence[str],
    functions: Functions | None = None,
) -> None:
    """Fail fast, before reading data, if an expression names a column the file lacks
    (or ``data.missing`` a branch it lacks)."""
    branches = list_columns(file, sample.tree)
    available = set(branches)
    _check_missing_columns(file, branches, data_cfg)
    for role, text, derived_name in _expressions(data_cfg, sample, extra_columns):
        try:
            _expr(text, role, functions).check_names(available)
        except ExpressionError as err:
            raise ExpressionError(f"sample '{sample.name}', '{file}': {err}") from None
        if derived_name is not None:
            available.add(derived_name)
    key = data_cfg.split.key
    if key and key not in available:
        raise DataError(
            f"'{file}': no branch '{key}' (data.split.key) in '{sample.tree}'; {close_matches(key, branches)}"
        )


def _check_missing_columns(file: Path, branches: Sequence[str], data_cfg: DataConfig) -> None:
    """Every column named in ``data.missing`` must be a branch of ``file`` (sentinels apply
    to the branches as read), and not the split key."""
    per_column, _ = data_cfg.sentinels()
    available = set(branches)
    for name in per_column:
        if name == data_cfg.split.key:
            raise DataError(
                f"data.missing names '{name}', the event key (data.split.key); an event key "
                "cannot be missing"
            )
        if name in available:
            continue
        if name in data_cfg.derived:
            raise DataError(
                f"data.missing names '{name}', a derived column; sentinels apply to branches "
                "as read (derived columns computed from them see NaN): name the branches instead"
            )
        raise DataError(
            f"data.missing names '{name}', which is not a branch of '{file}'; "
            f"{close_matches(name, branches)}"
        )


def _shows_progress(enabled: bool) -> bool:
    return enabled and sys.stderr.isatty()


def _progress_bar(enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not _shows_progress(enabled),
    )


def _resolve_patterns(
    cfg: TaskConfig, sample: SampleConfig, generated_dir: Path | None
) -> list[str]:
    from fivesigma.data.config import GENERATED_PLACEHOLDER

    out = []
    for pattern in sample.files:
        if GENERATED_PLACEHOLDER in pattern:
            if generated_dir is None:
                raise DataError(
                    f"sample '{sample.name}': '{pattern}' refers to the generated sample; "
                    "run 'fivesigma generate' (or set generate: in the config) first"
                )
            pattern = pattern.replace(GENERATED_PLACEHOLDER, str(generated_dir))
        out.append(str(cfg.resolve(pattern)))
    return out


def load_dataset(
    cfg: TaskConfig,
    progress: bool = True,
    extra_columns: Sequence[str] = (),
    generated_dir: Path | None = None,
) -> Dataset:
    """Read all samples of ``cfg`` chunk by chunk into one normalised :class:`Dataset`.

    Parameters
    ----------
    cfg : TaskConfig with a ``data`` section (e.g. ClassifyConfig)
        The run configuration (its ``data`` section and ``seed`` are used).
    progress : bool
        Show a progress bar on stderr (only when it is a terminal).
    extra_columns : sequence of str
        Columns to keep besides ``data.features`` (e.g. jagged constituents).
    generated_dir : Path, optional
        Directory substituted for ``{generated}`` in sample file patterns.

    Raises
    ------
    DataError
        Missing files, unknown trees/branches (before any data is read), a selection that
        keeps no event, NaN/inf features with ``nan_policy: error``.
    """
    data_cfg = cfg.data
    extra = list(dict.fromkeys(extra_columns))
    functions = user_functions(cfg)

    # 1. Resolve files and check every expression against every file before reading data.
    plan: list[tuple[int, SampleConfig, list[Path], list[str]]] = []
    for i, sample in enumerate(data_cfg.samples):
        files = expand_files(
            _resolve_patterns(cfg, sample, generated_dir), cfg.base_dir, sample=sample.name
        )
        for file in files:
            check_file(file, sample, data_cfg, extra, functions)
        plan.append((i, sample, files, sorted(needed_columns(data_cfg, sample, extra, functions))))

    totals = []
    for _, sample, files, _ in plan:
        for file in files:
            # Counting CSV rows means reading the file; leave the bar open-ended instead.
            # Without a bar to show, no file is opened only to be counted.
            totals.append(
                None
                if not _shows_progress(progress)
                or file.name.lower().endswith((".csv", ".csv.gz", ".txt", ".txt.gz"))
                else num_entries(file, sample.tree)
            )
    total = None if any(t is None for t in totals) else sum(totals)

    # 2. Read chunk by chunk.
    parts: list[Dataset] = []
    with _progress_bar(progress) as bar:
        task = bar.add_task("reading events", total=total)
        for i, sample, files, columns in plan:
            for file in files:
                bar.update(task, description=f"{sample.name}: {file.name}")
                for chunk in iter_chunks(file, sample.tree, columns, data_cfg.chunk_size):
                    parts.append(
                        process_chunk(chunk, i, sample, data_cfg, cfg.seed, extra, functions)
                    )
                    bar.advance(task, len(chunk))
    if not parts:
        raise DataError("the input files hold no events")
    ds = concatenate(parts)

    # 3. Every sample must keep something, then normalise to cross section x luminosity.
    weight = ds.weight.copy()
    sum_read = ds.sum_weights_read.copy()
    for i, sample, files, _ in plan:
        where = _where(data_cfg, sample)
        n_read = int(ds.events_read[i])
        if n_read == 0:
            names = ", ".join(f.name for f in files)
            raise DataError(f"sample '{sample.name}': its files hold no events ({names})")
        n_kept = int(np.count_nonzero(ds.sample == i))
        if n_kept == 0:
            cuts = " and ".join(
                f"{role} '{text}'"
                for role, text in (
                    ("data.selection", data_cfg.selection),
                    (f"{where}.selection", sample.selection),
                )
                if text
            )
            raise DataError(
                f"selection keeps 0 of {n_read} events in sample '{sample.name}'; loosen {cuts or 'the selection'}"
            )
        norm = sample.normalisation
        if norm is None:
            continue
        sum_w = (
            norm.sum_weights_generated
            if norm.sum_weights_generated is not None
            else float(sum_read[i])
        )
        if not sum_w > 0:
            raise DataError(
                f"sample '{sample.name}': the weights of the {n_read} events read sum to {sum_w:g}, so the "
                f"sample cannot be normalised; set {where}.normalisation.sum_weights_generated"
            )
        factor = norm.cross_section_pb * 1000.0 * norm.luminosity_fb / sum_w
        np.multiply(weight, factor, out=weight, where=ds.sample == i)
        sum_read[i] *= factor
    ds = replace(ds, weight=weight, sum_weights_read=sum_read)

    # 4. NaN/inf in features.
    ds = replace(ds, nan_policy=data_cfg.nan_policy)
    if data_cfg.features:
        ds = _apply_nan_policy(ds, data_cfg)
    log.info("read %d events, kept %d", int(ds.events_read.sum()), len(ds))
    return ds


def _apply_nan_policy(ds: Dataset, data_cfg: DataConfig) -> Dataset:
    names = data_cfg.features
    matrix = ds.features(names, nan_policy="keep")
    bad = ~np.isfinite(matrix)
    if not bad.any():
        return ds
    counts = bad.sum(axis=0)
    inf = np.isinf(matrix)
    if data_cfg.nan_policy == "error":
        raise DataError(_nan_message(names, counts, bool(inf.any())))
    if data_cfg.nan_policy == "keep":
        if inf.any():
            raise DataError(_inf_message(names, inf.sum(axis=0)))
        per = ", ".join(f"{n} ({int(c)})" for n, c in zip(names, counts, strict=True) if c)
        log.info(
            "kept %d of %d events with missing values (NaN) in features: %s",
            int(bad.any(axis=1).sum()),
            len(ds),
            per,
        )
        return ds
    drop = bad.any(axis=1)
    per = ", ".join(f"{n} ({int(c)})" for n, c in zip(names, counts, strict=True) if c)
    log.warning(
        "dropped %d of %d events with NaN/inf in features: %s", int(drop.sum()), len(ds), per
    )
    kept = ds.subset(~drop)
    if len(kept) == 0:
        raise DataError(
            f"every event has NaN/inf in a feature ({per}); nothing is left to train on"
        )
    for i, name in enumerate(kept.sample_names):
        if ds.events_read[i] and not np.any(kept.sample == i):
            raise DataError(
                f"every selected event of sample '{name}' has NaN/inf in a feature ({per})"
            )
    return kept
