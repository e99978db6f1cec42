"""Write per-event (or per-jet) output columns, chunk by chunk, to Parquet or ROOT.

Used by ``fivesigma apply`` for every kind of model: scores stream out as they are
computed, so inputs larger than memory are fine, and the file appears only when complete
(:func:`fivesigma.core.files.atomic_file`).
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from fivesigma.core.files import atomic_file
from fivesigma.errors import OutputError
from fivesigma.io.events import expand_files

__all__ = [
    "OUTPUT_SUFFIXES",
    "check_apply_paths",
    "check_output_path",
    "ordered_inputs",
    "write_columns",
]

OUTPUT_SUFFIXES = (".parquet", ".root")

Columns = dict[str, np.ndarray]


def check_output_path(out: str | Path) -> Path:
    """``out`` as a Path, if its suffix names a format :func:`write_columns` writes."""
    out = Path(out)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise OutputError(f"output '{out}' must end in .parquet or .root")
    return out


def check_apply_paths(out: str | Path, patterns: Sequence[str]) -> Path:
    """Refuse an output that would destroy an input or that cannot be a file.

    ``out`` may not be one of the input files (symlinks and relative paths resolved:
    writing the scores there would replace the data), nor an existing directory.
    """
    out = check_output_path(out)
    if out.is_dir():
        raise OutputError(f"output '{out}' is an existing directory; give a file name")
    target = out.resolve()
    for pattern in patterns:
        # missing inputs are the reader's to report: look only at what exists
        for path in [pattern, *glob.glob(pattern)]:
            if Path(path).resolve() == target:
                raise OutputError(
                    f"output '{out}' is one of the input files; writing there would replace "
                    "the data: choose another --out"
                )
    return out


def ordered_inputs(patterns: Sequence[str], base_dir: Path | None = None) -> list[Path]:
    """Files in the order given (a glob's matches sorted), without repeats.

    Keeping the command-line order makes row order and ``file_index`` match a TChain
    built from the same arguments.
    """
    base = base_dir or Path.cwd()
    return list(dict.fromkeys(f for p in patterns for f in expand_files([p], base)))


def write_columns(
    chunks: Iterable[Columns],
    out: str | Path,
    tree: str = "scores",
    empty: Callable[[], Columns] | None = None,
    on_chunk: Callable[[Columns], None] | None = None,
) -> int:
    """Write column chunks to ``out`` (``.parquet``, or a TTree ``tree`` in ``.root``).

    ``empty()`` gives zero-length columns for a valid file when there are no chunks at
    all; ``on_chunk`` sees each chunk (for counting).  Returns the number of rows.
    """
    out = check_output_path(out)
    rows = 0
    with atomic_file(out) as tmp:
        if out.suffix.lower() == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            writer = None
            try:
                for cols in chunks:
                    table = pa.table(cols)
                    writer = writer or pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table)
                    rows += table.num_rows
                    if on_chunk:
                        on_chunk(cols)
                if writer is None and empty is not None:
                    writer = pq.ParquetWriter(tmp, pa.table(empty()).schema)
            finally:
                if writer is not None:
                    writer.close()
        else:
            import uproot

            with uproot.recreate(tmp) as f:
                ttree = None
                for cols in chunks:
                    if ttree is None:
                        ttree = f.mktree(tree, {k: v.dtype for k, v in cols.items()})
                    ttree.extend(cols)
                    rows += len(next(iter(cols.values())))
                    if on_chunk:
                        on_chunk(cols)
                if ttree is None and empty is not None:
                    f.mktree(tree, {k: v.dtype for k, v in empty().items()})
    return rows
