"""Reading event files: ROOT (TTree or RNTuple), Parquet, HDF5 and CSV, chunk by chunk.

Every reader reads *only* the columns asked for.  :func:`iter_chunks` yields
:class:`Chunk` objects of one file whose arrays are numpy for flat columns and awkward for
jagged ones; :func:`read_events` reads one or many files (or glob patterns) into one
awkward Array.  Every problem a user can cause (missing file, unknown tree or branch,
corrupt file) is a one-line :class:`~fivesigma.errors.DataError` naming the file.

>>> events = read_events("signal_*.root", columns=["lep_pt", "nlep"])  # doctest: +SKIP
>>> for chunk in iter_chunks("signal.root", "Events", ["lep_pt"]):     # doctest: +SKIP
...     print(chunk.entry_start, chunk.entry_stop)
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import awkward as ak
import numpy as np

from fivesigma.core.files import read_head
from fivesigma.errors import DataError, close_matches, describe_exception

__all__ = [
    "Chunk",
    "Format",
    "describe_file",
    "detect_format",
    "expand_files",
    "iter_chunks",
    "list_columns",
    "num_entries",
    "read_events",
]

Format = Literal["root", "parquet", "hdf5", "csv"]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_CSV_SUFFIXES = (".csv", ".csv.gz", ".txt", ".txt.gz")
# uproot class names of objects we can read as a table of events.
_TREE_CLASSES = ("TTree", "TNtuple", "TNtupleD", "ROOT::RNTuple")


@dataclass
class Chunk:
    """A block of consecutive entries of one file.

    Attributes
    ----------
    arrays : dict
        Column name -> numpy array (flat) or awkward array (jagged), one entry per event.
    file : Path
        The file the entries come from.
    entry_start, entry_stop : int
        Global entry numbers in that file: the chunk holds entries ``[entry_start, entry_stop)``.
    """

    arrays: dict[str, np.ndarray | ak.Array]
    file: Path
    entry_start: int
    entry_stop: int

    def __len__(self) -> int:
        return self.entry_stop - self.entry_start


# --------------------------------------------------------------------------------------
# File patterns and formats


def expand_files(
    patterns: Sequence[str], base_dir: Path | str = ".", *, sample: str | None = None
) -> list[Path]:
    """Expand paths and glob patterns (``*``, ``**``, ``?``, ``[...]``) into a sorted file list.

    Relative patterns are taken relative to ``base_dir``.  Duplicates (the same file
    matched by two patterns) appear once.  A pattern that matches no file is an error.

    Parameters
    ----------
    patterns : sequence of str
        Paths or glob patterns.
    base_dir : Path
        Directory that relative patterns are resolved against (the config's directory).
    sample : str, optional
        Sample name, used only in error messages.
    """
    where = f"sample '{sample}': " if sample else ""
    base = Path(base_dir)
    found: dict[Path, Path] = {}
    for pattern in patterns:
        full = Path(os.path.expanduser(pattern))
        if not full.is_absolute():
            full = base / full
        if glob.has_magic(str(full)):
            matches = [Path(m) for m in glob.glob(str(full), recursive=True)]
            matches = [m for m in matches if m.is_file()]
        else:
            matches = [full] if full.exists() else []
        if not matches:
            raise DataError(f"{where}no file matches '{pattern}' (looked in '{base}')")
        for m in matches:
            found.setdefault(m.resolve(), m)
    return sorted(found.values(), key=str)


def detect_format(path: Path | str) -> Format:
    """Tell the format of a file from its first bytes (ROOT, Parquet, HDF5), or CSV by suffix.

    Raises
    ------
    DataError
        If the file is missing, unreadable or in none of the supported formats.

    >>> import tempfile, pathlib
    >>> tmp = tempfile.TemporaryDirectory()
    >>> csv = pathlib.Path(tmp.name, "events.csv")
    >>> _ = csv.write_text("met,nlep\\n31.5,2\\n")
    >>> detect_format(csv)
    'csv'
    >>> detect_format(pathlib.Path(tmp.name, "missing.root"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fivesigma.errors.DataError: ...missing.root...
    >>> tmp.cleanup()
    """
    path = Path(path)
    head = read_head(path)
    if head.startswith(b"root"):
        return "root"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(_HDF5_MAGIC):
        return "hdf5"
    name = path.name.lower()
    if name.endswith(_CSV_SUFFIXES):
        return "csv"
    raise DataError(f"'{path}' is not a ROOT, Parquet, HDF5 or CSV file")


# --------------------------------------------------------------------------------------
# ROOT


@contextlib.contextmanager
def _corrupt_as_data_error(path: Path) -> Iterator[None]:
    """Any failure reading a ROOT file's metadata (an RNTuple's header and footer are
    compressed, so a damaged page surfaces here) as one line naming the file."""
    try:
        yield
    except DataError:
        raise
    except Exception as err:
        raise DataError(
            f"'{path}': cannot read ROOT file, it may be truncated or corrupt "
            f"({describe_exception(err)})"
        ) from None


def _root_trees(file: Any) -> list[str]:
    names = []
    for key, cls in file.classnames(recursive=True).items():
        if cls in _TREE_CLASSES:
            names.append(key.rsplit(";", 1)[0])
    return sorted(set(names))


def _open_root_tree(path: Path, tree: str) -> tuple[Any, Any]:
    """Open ``path`` and return (file, tree object); DataError for every failure."""
    import uproot

    try:
        file = uproot.open(path)
    except Exception as err:  # uproot raises many kinds for a bad header
        raise DataError(
            f"'{path}': cannot open ROOT file, it may be truncated or corrupt ({describe_exception(err)})"
        ) from None
    try:
        trees = _root_trees(file)
        if not tree:
            if len(trees) != 1:
                file.close()
                raise DataError(
                    f"'{path}': give the tree name; trees: {', '.join(trees) or 'none'}"
                )
            tree = trees[0]
        if tree not in file:
            file.close()
            if not trees:
                raise DataError(f"no tree '{tree}' in '{path}'; the file holds no TTree or RNTuple")
            hint = close_matches(tree, trees)
            extra = f" ({hint})" if hint.startswith("did you") else ""
            raise DataError(f"no tree '{tree}' in '{path}'; trees: {', '.join(trees)}{extra}")
        obj = file[tree]
    except DataError:
        raise
    except Exception as err:
        file.close()
        raise DataError(
            f"'{path}': cannot read ROOT file, it may be truncated or corrupt ({describe_exception(err)})"
        ) from None
    classname = getattr(obj, "classname", type(obj).__name__)
    if classname not in _TREE_CLASSES and not hasattr(obj, "iterate"):
        file.close()
        raise DataError(f"'{tree}' in '{path}' is a {classname}, not a TTree or RNTuple")
    return file, obj


def _is_rntuple(obj: Any) -> bool:
    return getattr(obj, "classname", "") == "ROOT::RNTuple"


def _root_columns(obj: Any) -> list[str]:
    if _is_rntuple(obj):
        # RNTuple keys include sub-fields ("_collection0.Muon_pt"); top-level names suffice.
        return [k for k in obj.keys() if "." not in k and not k.startswith("_")]  # noqa: SIM118
    return list(obj.keys())


# --------------------------------------------------------------------------------------
# HDF5


def _open_hdf5(path: Path) -> Any:
    import h5py

    try:
        return h5py.File(path, "r")
    except Exception as err:
        raise DataError(f"'{path}': cannot open HDF5 file ({describe_exception(err)})") from None


def _hdf5_layout(path: Path, h5: Any, tree: str) -> tuple[str, Any, list[str]]:
    """Find the table ``tree`` in an open HDF5 file.

    Returns ``("datasets", group, columns)`` for a group of equal-length 1-D datasets, or
    ``("table", dataset, columns)`` for a pandas ``to_hdf(format="table")`` table.
    """
    import h5py

    if tree:
        if tree not in h5:
            keys: list[str] = []
            h5.visit(keys.append)
            groups = [k for k in keys if isinstance(h5[k], h5py.Group)]
            hint = close_matches(tree, groups) if groups else "the file holds no group"
            raise DataError(
                f"no group or key '{tree}' in '{path}'; {hint} (use tree: '' for datasets at the file root)"
            )
        group = h5[tree]
    else:
        group = h5
    if isinstance(group, h5py.Dataset):
        raise DataError(
            f"'{tree}' in '{path}' is a single dataset; expected a group with one dataset per column"
        )
    table = group.get("table")
    if isinstance(table, h5py.Dataset) and table.dtype.names:
        # pandas/PyTables table: one compound row per event.  Column names of packed
        # blocks (values_block_N) live in pickled attributes, which we never unpickle.
        names = [n for n in table.dtype.names if n != "index"]
        packed = [n for n in names if n.startswith("values_block_")]
        if packed:
            raise DataError(
                f"'{path}': key '{tree}' is a pandas table with packed columns; write it with "
                "to_hdf(..., format='table', data_columns=True) so each column is stored by name"
            )
        return "table", table, names
    columns = [k for k, v in group.items() if isinstance(v, h5py.Dataset)]
    if not columns:
        where = f"group '{tree}'" if tree else "the file root"
        raise DataError(f"'{path}': {where} holds no datasets; expected one 1-D dataset per column")
    lengths = {k: group[k].shape[0] if group[k].ndim else -1 for k in columns}
    bad = [k for k in columns if group[k].ndim != 1]
    if bad:
        raise DataError(
            f"'{path}': dataset '{bad[0]}' is not 1-D (shape {group[bad[0]].shape}); one value per event is expected"
        )
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k} ({n})" for k, n in sorted(lengths.items()))
        raise DataError(f"'{path}': datasets have different lengths: {detail}")
    return "datasets", group, columns


# --------------------------------------------------------------------------------------
# Public readers


def list_columns(path: Path | str, tree: str = "Events") -> list[str]:
    """Names of the columns (branches, fields, datasets) available in ``path``.

    ``tree`` is the TTree/RNTuple name for ROOT and the group or key for HDF5; it is
    ignored for Parquet and CSV.
    """
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "root":
        file, obj = _open_root_tree(path, tree)
        with file, _corrupt_as_data_error(path):
            return _root_columns(obj)
    if fmt == "parquet":
        return list(_parquet_file(path).schema_arrow.names)
    if fmt == "hdf5":
        with _open_hdf5(path) as h5:
            return _hdf5_layout(path, h5, tree)[2]
    return list(_csv_header(path))


def num_entries(path: Path | str, tree: str = "Events") -> int:
    """Number of events (entries, rows) in ``path``."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "root":
        file, obj = _open_root_tree(path, tree)
        with file, _corrupt_as_data_error(path):
            return int(obj.num_entries)
    if fmt == "parquet":
        return int(_parquet_file(path).metadata.num_rows)
    if fmt == "hdf5":
        with _open_hdf5(path) as h5:
            kind, node, columns = _hdf5_layout(path, h5, tree)
            return int(node.shape[0] if kind == "table" else node[columns[0]].shape[0])
    import pandas as pd

    first = _csv_header(path)[:1]
    return sum(len(df) for df in _csv_reader(path, pd, first, 1_000_000))


def iter_chunks(
    path: Path | str, tree: str, columns: Sequence[str], step_size: int = 200_000
) -> Iterator[Chunk]:
    """Read ``columns`` of ``path`` in chunks of at most ``step_size`` entries.

    Only the named columns are read.  Flat columns come back as numpy arrays, jagged ones
    as awkward arrays.  An empty ``columns`` still yields chunks (with no arrays), so the
    caller can count entries.

    Raises
    ------
    DataError
        Missing or corrupt file, unknown tree or unknown column (with a close match).

    >>> import tempfile, pathlib
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = pathlib.Path(tmp.name, "events.csv")
    >>> _ = path.write_text("met,nlep\\n31.5,2\\n12.0,0\\n8.25,1\\n")
    >>> for chunk in iter_chunks(path, "", ["nlep"], step_size=2):
    ...     print(chunk.entry_start, chunk.entry_stop, chunk.arrays["nlep"].tolist())
    0 2 [2, 0]
    2 3 [1]
    >>> tmp.cleanup()
    """
    path = Path(path)
    columns = list(dict.fromkeys(columns))
    if step_size <= 0:
        raise ValueError(f"step_size must be positive, got {step_size}")
    fmt = detect_format(path)
    if fmt == "root":
        yield from _iter_root(path, tree, columns, step_size)
    elif fmt == "parquet":
        yield from _iter_parquet(path, columns, step_size)
    elif fmt == "hdf5":
        yield from _iter_hdf5(path, tree, columns, step_size)
    else:
        yield from _iter_csv(path, columns, step_size)


def read_events(
    files: str | os.PathLike | Sequence[str | os.PathLike],
    columns: Sequence[str] | None = None,
    tree: str = "Events",
    entry_stop: int | None = None,
    *,
    step_size: int = 200_000,
    base_dir: str | os.PathLike = ".",
) -> ak.Array:
    """Read events of one or many files (paths or glob patterns) into one awkward Array.

    One record per event with one field per column: flat columns are numbers, jagged ones
    lists.  Files are read in sorted order, ``step_size`` entries at a time, and only the
    named columns are read.

    Parameters
    ----------
    files : path, glob pattern, or a sequence of them
        ROOT (TTree or RNTuple), Parquet, HDF5 or CSV files, in any mix.
    columns : sequence of str, optional
        Columns to read; None: all columns of the first file (every file must have them).
    tree : str
        TTree/RNTuple name (ROOT) or group/key (HDF5; ``""`` for datasets at the file
        root); ignored for Parquet and CSV.
    entry_stop : int, optional
        Read at most this many events in total, counted over the files in order.
    step_size : int
        Entries read per step (memory use); the result does not depend on it.
    base_dir : path
        Directory that relative paths and patterns are taken relative to.

    Raises
    ------
    DataError
        A pattern matching no file, a missing or corrupt file, an unknown tree or column
        (one line, with close matches).

    >>> import tempfile, pathlib, pyarrow as pa, pyarrow.parquet as pq
    >>> tmp = tempfile.TemporaryDirectory()
    >>> table = pa.table({"lep_pt": [[40.0, 25.0], [31.0], []], "nlep": [2, 1, 0]})
    >>> pq.write_table(table, pathlib.Path(tmp.name, "signal.parquet"))
    >>> events = read_events(f"{tmp.name}/*.parquet")
    >>> events.fields, events.nlep.tolist(), events.lep_pt.tolist()
    (['lep_pt', 'nlep'], [2, 1, 0], [[40.0, 25.0], [31.0], []])
    >>> read_events(f"{tmp.name}/signal.parquet", columns=["nlep"], entry_stop=2).nlep.tolist()
    [2, 1]
    >>> tmp.cleanup()
    """
    if isinstance(files, str | os.PathLike):
        files = [files]
    if entry_stop is not None and (isinstance(entry_stop, bool) or entry_stop < 0):
        raise DataError(f"entry_stop must be a number of events >= 0, got {entry_stop!r}")
    paths = expand_files([os.fspath(f) for f in files], base_dir)
    names = list_columns(paths[0], tree) if columns is None else list(dict.fromkeys(columns))
    pieces: dict[str, list[np.ndarray | ak.Array]] = {name: [] for name in names}
    total = 0
    left = np.inf if entry_stop is None else entry_stop
    for path in paths:
        if left <= 0:
            break
        for chunk in iter_chunks(path, tree, names, step_size):
            n = int(min(len(chunk), left))
            for name in names:
                pieces[name].append(chunk.arrays[name][:n])
            total += n
            left -= n
            if left <= 0:
                break
    if not names:
        return ak.Array(ak.contents.RecordArray([], None, length=total))
    arrays = {name: _join(parts) for name, parts in pieces.items()}
    return ak.zip(arrays, depth_limit=1)


def _join(parts: list[np.ndarray | ak.Array]) -> np.ndarray | ak.Array:
    """Concatenate the chunks of one column: numpy when they all are, else awkward.

    Object arrays (text columns of CSV files) become awkward strings.
    """
    if not parts:
        return np.zeros(0)
    parts = [
        ak.from_iter(p) if isinstance(p, np.ndarray) and p.dtype == object else p for p in parts
    ]
    if all(isinstance(p, np.ndarray) for p in parts):
        return np.concatenate(parts)
    return ak.concatenate(parts)


def _check_columns(path: Path, what: str, wanted: Sequence[str], available: Sequence[str]) -> None:
    have = set(available)
    for name in wanted:
        if name not in have:
            raise DataError(f"'{path}': no {what} '{name}'; {close_matches(name, available)}")


def _to_numpy_if_flat(array: ak.Array) -> np.ndarray | ak.Array:
    """Flat numeric awkward arrays become numpy; jagged or nested ones stay awkward."""
    if array.ndim == 1 and isinstance(array.type.content, ak.types.NumpyType):
        return ak.to_numpy(array)
    return array


def _empty_chunks(path: Path, total: int, step_size: int) -> Iterator[Chunk]:
    for start in range(0, total, step_size):
        yield Chunk({}, path, start, min(start + step_size, total))


def _root_batches(
    obj: Any, columns: list[str], step_size: int, total: int
) -> Iterator[tuple[Any, int, int]]:
    """(arrays, entry_start, entry_stop) for each step of a TTree or RNTuple."""
    if _is_rntuple(obj):
        # filter_name keeps uproot from reading unrelated fields of the RNTuple.
        for start in range(0, total, step_size):
            stop = min(start + step_size, total)
            yield obj.arrays(filter_name=columns, entry_start=start, entry_stop=stop), start, stop
        return
    # iterate() reuses baskets that straddle step boundaries, unlike repeated arrays().
    for batch, report in obj.iterate(columns, step_size=step_size, library="ak", report=True):
        yield batch, int(report.tree_entry_start), int(report.tree_entry_stop)


def _iter_root(path: Path, tree: str, columns: list[str], step_size: int) -> Iterator[Chunk]:
    file, obj = _open_root_tree(path, tree)
    with file:
        with _corrupt_as_data_error(path):
            available = _root_columns(obj)
            total = int(obj.num_entries)
        for name in columns:
            if name not in available:
                raise DataError(
                    f"'{path}': no branch '{name}' in tree '{obj.name}'; {close_matches(name, available)}"
                )
        if not columns:
            yield from _empty_chunks(path, total, step_size)
            return
        start = 0
        try:
            for batch, start, stop in _root_batches(obj, columns, step_size, total):
                arrays = {name: _to_numpy_if_flat(batch[name]) for name in columns}
                yield Chunk(arrays, path, start, stop)
                start = stop
        except Exception as err:
            raise DataError(
                f"'{path}': cannot read entries {start}-{min(start + step_size, total)} of tree "
                f"'{obj.name}', the file may be truncated or corrupt ({describe_exception(err)})"
            ) from None


def _parquet_file(path: Path) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as err:
        raise DataError(
            f"'{path}': cannot open Parquet file, it may be truncated or corrupt ({describe_exception(err)})"
        ) from None


def _arrow_to_array(column: Any) -> np.ndarray | ak.Array:
    import pyarrow as pa

    kind = column.type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        values = column.flatten()
        if column.null_count == 0 and values.null_count == 0 and pa.types.is_primitive(values.type):
            # Build the awkward array from counts: ak.from_arrow would make every level an
            # option type (Parquet fields are nullable) even when nothing is missing.
            counts = column.value_lengths().to_numpy(zero_copy_only=False)
            return ak.unflatten(values.to_numpy(zero_copy_only=False), counts)
        return ak.from_arrow(column)
    if pa.types.is_primitive(kind):
        return column.to_numpy(zero_copy_only=False)
    return _to_numpy_if_flat(ak.from_arrow(column))


def _iter_parquet(path: Path, columns: list[str], step_size: int) -> Iterator[Chunk]:
    pf = _parquet_file(path)
    _check_columns(path, "column", columns, pf.schema_arrow.names)
    total = int(pf.metadata.num_rows)
    if not columns:
        yield from _empty_chunks(path, total, step_size)
        return
    start = 0
    try:
        for batch in pf.iter_batches(batch_size=step_size, columns=columns):
            stop = start + batch.num_rows
            arrays = {name: _arrow_to_array(batch.column(name)) for name in columns}
            yield Chunk(arrays, path, start, stop)
            start = stop
    except Exception as err:
        raise DataError(
            f"'{path}': cannot read rows from {start}, the file may be corrupt ({describe_exception(err)})"
        ) from None


def _iter_hdf5(path: Path, tree: str, columns: list[str], step_size: int) -> Iterator[Chunk]:
    with _open_hdf5(path) as h5:
        kind, node, available = _hdf5_layout(path, h5, tree)
        where = f"in '{tree}'" if tree else "at the file root"
        for name in columns:
            if name not in available:
                raise DataError(
                    f"'{path}': no column '{name}' {where}; {close_matches(name, available)}"
                )
        total = int(node.shape[0] if kind == "table" else node[available[0]].shape[0])
        if not columns:
            yield from _empty_chunks(path, total, step_size)
            return
        for start in range(0, total, step_size):
            stop = min(start + step_size, total)
            try:
                if kind == "table":
                    # Read only the wanted fields of the compound rows.
                    rows = node.fields(columns)[start:stop]
                    if rows.dtype.names:
                        arrays = {n: np.ascontiguousarray(rows[n]) for n in columns}
                    else:  # some h5py versions unwrap a single field
                        arrays = {columns[0]: np.asarray(rows)}
                else:
                    arrays = {n: np.asarray(node[n][start:stop]) for n in columns}
            except Exception as err:
                raise DataError(
                    f"'{path}': cannot read rows {start}-{stop} ({describe_exception(err)})"
                ) from None
            arrays = {n: _decode_bytes(a) for n, a in arrays.items()}
            yield Chunk(arrays, path, start, stop)


def _decode_bytes(array: np.ndarray) -> np.ndarray:
    if array.dtype.kind == "S":
        return array.astype(str)
    return array


def _csv_reader(path: Path, pd: Any, columns: list[str], chunksize: int) -> Any:
    kwargs: dict[str, Any] = {"usecols": columns, "chunksize": chunksize}
    if path.name.lower().endswith((".txt", ".txt.gz")):
        # .txt files may be whitespace separated: let the python engine sniff it.
        kwargs.update(sep=None, engine="python")
    return pd.read_csv(path, **kwargs)


def _csv_header(path: Path) -> list[str]:
    import pandas as pd

    kwargs: dict[str, Any] = {"nrows": 0}
    if path.name.lower().endswith((".txt", ".txt.gz")):
        kwargs.update(sep=None, engine="python")
    try:
        return [str(c) for c in pd.read_csv(path, **kwargs).columns]
    except Exception as err:
        raise DataError(f"'{path}': cannot read CSV header ({describe_exception(err)})") from None


def _iter_csv(path: Path, columns: list[str], step_size: int) -> Iterator[Chunk]:
    import pandas as pd

    header = _csv_header(path)
    _check_columns(path, "column", columns, header)
    # With no wanted column, read the first one only to count rows.
    read = columns or header[:1]
    start = 0
    try:
        for df in _csv_reader(path, pd, read, step_size):
            stop = start + len(df)
            arrays = {name: df[name].to_numpy() for name in columns}
            yield Chunk(arrays, path, start, stop)
            start = stop
    except Exception as err:
        raise DataError(
            f"'{path}': cannot parse CSV after row {start} ({describe_exception(err)})"
        ) from None


# --------------------------------------------------------------------------------------
# Describing a file (``fivesigma inspect``)


def _column_table(title: str, items: Sequence[tuple[str, str]]) -> list[str]:
    width = max((len(n) for n, _ in items), default=0)
    return [title, *(f"  {n.ljust(width)}  {t}" for n, t in items)]


def describe_file(path: Path | str, tree: str | None = None) -> str:
    """A multi-line, human-readable description: format, trees/keys, entries, column types.

    ``tree=None`` describes every TTree/RNTuple of a ROOT file and every table of an HDF5
    file.

    >>> import tempfile, pathlib
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = pathlib.Path(tmp.name, "events.csv")
    >>> _ = path.write_text("met,nlep\\n31.5,2\\n12.0,0\\n8.25,1\\n")
    >>> print("\\n".join(describe_file(path).splitlines()[1:]))
    3 rows, 2 columns
      met   float64
      nlep  int64
    >>> tmp.cleanup()
    """
    path = Path(path)
    try:
        return _describe_file(path, tree)
    except DataError:
        raise
    except Exception as err:  # a page or header that decompresses to garbage, ...
        raise DataError(
            f"'{path}': cannot read the file, it may be truncated or corrupt "
            f"({describe_exception(err)})"
        ) from None


def _describe_file(path: Path, tree: str | None) -> str:
    path = Path(path)
    fmt = detect_format(path)
    lines = [f"{path} ({fmt})"]
    if fmt == "root":
        import uproot

        if tree is None:
            try:
                with uproot.open(path) as file:
                    names = _root_trees(file)
            except Exception as err:
                raise DataError(
                    f"'{path}': cannot open ROOT file, it may be truncated or corrupt ({describe_exception(err)})"
                ) from None
            if not names:
                return "\n".join([*lines, "no TTree or RNTuple in this file"])
        else:
            names = [tree]
        for name in names:
            file, obj = _open_root_tree(path, name)
            with file:
                columns = _root_columns(obj)
                try:
                    types = dict(obj.typenames())
                except Exception:  # RNTuple fields may not all have a C++ type name
                    types = {}
                kind = "RNTuple" if _is_rntuple(obj) else "TTree"
                lines += _column_table(
                    f"{kind} '{name}': {int(obj.num_entries)} entries, {len(columns)} columns",
                    [(c, str(types.get(c, ""))) for c in columns],
                )
    elif fmt == "parquet":
        pf = _parquet_file(path)
        schema = pf.schema_arrow
        lines += _column_table(
            f"{int(pf.metadata.num_rows)} rows, {len(schema.names)} columns",
            [(f.name, str(f.type)) for f in schema],
        )
    elif fmt == "hdf5":
        import h5py

        with _open_hdf5(path) as h5:
            if tree is None:
                candidates: list[str] = []
                if any(isinstance(v, h5py.Dataset) for v in h5.values()):
                    candidates.append("")
                h5.visit(lambda k: candidates.append(k) if isinstance(h5[k], h5py.Group) else None)
            else:
                candidates = [tree]
            for key in candidates:
                try:
                    kind, node, columns = _hdf5_layout(path, h5, key)
                except DataError as err:
                    if tree is not None:
                        raise
                    lines.append(f"'{key}': {err}")
                    continue
                n = int(node.shape[0] if kind == "table" else node[columns[0]].shape[0])
                dtypes = (
                    node.dtype.fields if kind == "table" else {c: (node[c].dtype,) for c in columns}
                )
                label = f"key '{key}'" if key else "file root"
                lines += _column_table(
                    f"{label} ({'pandas table' if kind == 'table' else 'datasets'}): {n} rows, {len(columns)} columns",
                    [(c, str(dtypes[c][0])) for c in columns],
                )
    else:
        import pandas as pd

        head = next(iter(_csv_reader(path, pd, _csv_header(path), 1000)))
        lines += _column_table(
            f"{num_entries(path)} rows, {len(head.columns)} columns",
            [(str(c), str(head[c].dtype)) for c in head.columns],
        )
    return "\n".join(lines)
