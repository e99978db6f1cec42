"""fivesigma.io: every reader and writer.

- :mod:`fivesigma.io.events`: event tables from ROOT (TTree and RNTuple), Parquet, HDF5
  and CSV, chunked, only the needed columns.
- :mod:`fivesigma.io.jets`: jet constituents from fivesigma's ROOT files, the Top Quark
  Tagging HDF5 files and EnergyFlow ``.npz`` files.
- :mod:`fivesigma.io.trackml`: TrackML events (hits, truth, particles, cells) and the
  detector geometry, as pandas DataFrames.
- :mod:`fivesigma.io.writers`: chunked atomic Parquet/ROOT output.

The public reading API is re-exported here and imported on first use, so ``import
fivesigma.io`` stays light (no uproot, h5py or pyarrow until a file is read):

- :func:`read_events`: one or many event files (or glob patterns) into one awkward Array;
- :func:`iter_chunks`: one event file, chunk by chunk;
- :func:`read_jets` / :func:`iter_jets`: jet files into a :class:`JetSample`, whole or
  in chunks;
- :func:`describe_file`: what a file holds (``fivesigma inspect``);
- :func:`detect_format`: ROOT, Parquet, HDF5 or CSV, from the first bytes;
- :func:`read_trackml_event` is :func:`fivesigma.io.trackml.read_event`; with
  :func:`iter_trackml_events`, :func:`read_detectors`, :func:`check_geometry` and
  :class:`TrackMLEvent`: TrackML events and detector geometry.

>>> import fivesigma.io
>>> sorted(fivesigma.io.__all__)[:3]
['JetSample', 'TrackMLEvent', 'check_geometry']
>>> events = fivesigma.io.read_events("signal_*.root", columns=["lep_pt"])  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "JetSample",
    "TrackMLEvent",
    "check_geometry",
    "describe_file",
    "detect_format",
    "iter_chunks",
    "iter_jets",
    "iter_trackml_events",
    "read_detectors",
    "read_events",
    "read_jets",
    "read_trackml_event",
]

# name -> module defining it, imported on first access (PEP 562).
_LAZY = {
    "JetSample": "fivesigma.io.jets",
    "describe_file": "fivesigma.io.events",
    "detect_format": "fivesigma.io.events",
    "iter_chunks": "fivesigma.io.events",
    "iter_jets": "fivesigma.io.jets",
    "read_events": "fivesigma.io.events",
    "read_jets": "fivesigma.io.jets",
    "TrackMLEvent": "fivesigma.io.trackml",
    "check_geometry": "fivesigma.io.trackml",
    "read_detectors": "fivesigma.io.trackml",
}
# public name -> (module, attribute) where the two differ.
_ALIASES = {
    "read_trackml_event": ("fivesigma.io.trackml", "read_event"),
    "iter_trackml_events": ("fivesigma.io.trackml", "iter_events"),
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from fivesigma.io.events import (
        describe_file,
        detect_format,
        iter_chunks,
        read_events,
    )
    from fivesigma.io.jets import JetSample, iter_jets, read_jets
    from fivesigma.io.trackml import (
        TrackMLEvent,
        check_geometry,
        read_detectors,
    )
    from fivesigma.io.trackml import iter_events as iter_trackml_events
    from fivesigma.io.trackml import read_event as read_trackml_event


def __getattr__(name: str) -> Any:
    module, attribute = _ALIASES.get(name, (_LAZY.get(name), name))
    if module is None:
        raise AttributeError(f"module 'fivesigma.io' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
