"""fivesigma.data: read event files, derive columns, select, weight and split events.

>>> from fivesigma.core.config import load_config           # doctest: +SKIP
>>> ds = load_dataset(load_config("analysis.yaml"))      # doctest: +SKIP
>>> X = ds.features(["m4l", "mZ1"]); w = ds.weight       # doctest: +SKIP
"""

from __future__ import annotations

from fivesigma.data.dataset import (
    Dataset,
    check_file,
    concatenate,
    load_dataset,
    needed_columns,
    process_chunk,
)
from fivesigma.data.expressions import Expression
from fivesigma.data.jagged import nth, pad, pad_many
from fivesigma.data.split import file_identity, split_codes
from fivesigma.io.events import (
    Chunk,
    describe_file,
    detect_format,
    expand_files,
    iter_chunks,
    list_columns,
    num_entries,
)

__all__ = [
    "Chunk",
    "Dataset",
    "Expression",
    "check_file",
    "concatenate",
    "describe_file",
    "detect_format",
    "expand_files",
    "file_identity",
    "iter_chunks",
    "list_columns",
    "load_dataset",
    "needed_columns",
    "nth",
    "num_entries",
    "pad",
    "pad_many",
    "process_chunk",
    "split_codes",
]
