"""Reading TrackML events: hits, truth, particles, cells and the detector geometry.

A TrackML event is a set of CSV files (optionally gzipped) sharing one prefix,
``eventNNNNNNNNN-hits.csv``, ``-truth.csv``, ``-particles.csv`` and ``-cells.csv``, and a
directory usually holds a ``detectors.csv`` describing every module.  Tables are returned
as **pandas DataFrames** (one row per hit, particle or cell), with the TrackML column names.

Every problem a user can cause (missing part file, missing column, empty event, truth that
does not match the hits, hits on unknown modules) is a one-line
:class:`~fivesigma.errors.DataError` naming the file and the event.

>>> event = read_event("data/event000000001")                     # doctest: +SKIP
>>> for event in iter_events("data/", parts=("hits", "truth")):   # doctest: +SKIP
...     print(event.event_id, len(event.hits))
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fivesigma.core.files import read_head
from fivesigma.errors import DataError, describe_exception, shorten

__all__ = [
    "DETECTOR_COLUMNS",
    "PART_COLUMNS",
    "TrackMLEvent",
    "check_geometry",
    "event_ids",
    "iter_events",
    "read_detectors",
    "read_event",
]

#: Columns each event part must have (further columns, e.g. ``particle_type``, are kept).
PART_COLUMNS: dict[str, tuple[str, ...]] = {
    "hits": ("hit_id", "x", "y", "z", "volume_id", "layer_id", "module_id"),
    "truth": ("hit_id", "particle_id", "tx", "ty", "tz", "tpx", "tpy", "tpz", "weight"),
    "particles": ("particle_id", "vx", "vy", "vz", "px", "py", "pz", "q", "nhits"),
    "cells": ("hit_id", "ch0", "ch1", "value"),
}

#: Columns ``detectors.csv`` must have.
DETECTOR_COLUMNS: tuple[str, ...] = (
    "volume_id",
    "layer_id",
    "module_id",
    "cx",
    "cy",
    "cz",
    *(f"rot_{a}{b}" for a in "xyz" for b in "uvw"),
    "module_t",
    "module_minhu",
    "module_maxhu",
    "module_hv",
    "pitch_u",
    "pitch_v",
)

_MODULE_KEY = ["volume_id", "layer_id", "module_id"]
_FILE_RE = re.compile(r"^event(\d+)-(hits|truth|particles|cells)\.csv(\.gz)?$")
_SUFFIXES = (".csv", ".csv.gz")
_FIRST = 5  # how many offending ids an error message lists


@dataclass
class TrackMLEvent:
    """One TrackML event; every table is a pandas DataFrame.

    Attributes
    ----------
    event_id : int
        The number in ``eventNNNNNNNNN``.
    hits : DataFrame
        ``hit_id, x, y, z`` (mm), ``volume_id, layer_id, module_id``.
    truth : DataFrame or None
        ``hit_id, particle_id`` (0 is noise), ``tx, ty, tz`` (mm), ``tpx, tpy, tpz`` (GeV),
        ``weight``; one row per hit.  None when not read.
    particles : DataFrame or None
        ``particle_id, vx, vy, vz`` (mm), ``px, py, pz`` (GeV), ``q, nhits``.
    cells : DataFrame or None
        ``hit_id, ch0, ch1, value``.
    files : dict
        Part name -> the file it was read from (used in error messages).
    """

    event_id: int
    hits: pd.DataFrame
    truth: pd.DataFrame | None = None
    particles: pd.DataFrame | None = None
    cells: pd.DataFrame | None = None
    files: dict[str, Path] = field(default_factory=dict, repr=False)

    @property
    def r(self) -> np.ndarray:
        """Cylindrical radius ``sqrt(x² + y²)`` of each hit (mm)."""
        return np.hypot(self.hits["x"].to_numpy(float), self.hits["y"].to_numpy(float))

    @property
    def phi(self) -> np.ndarray:
        """Azimuth ``atan2(y, x)`` of each hit, in ``[-pi, pi]``."""
        return np.arctan2(self.hits["y"].to_numpy(float), self.hits["x"].to_numpy(float))

    @property
    def eta(self) -> np.ndarray:
        """Pseudorapidity ``asinh(z / r)`` of each hit seen from the origin."""
        with np.errstate(divide="ignore"):
            return np.arcsinh(self.hits["z"].to_numpy(float) / self.r)

    @property
    def pt(self) -> np.ndarray:
        """Transverse momentum ``sqrt(px² + py²)`` of each particle (GeV)."""
        if self.particles is None:
            raise DataError(f"{self._where()}: particles were not read (add 'particles' to parts)")
        return np.hypot(self.particles["px"].to_numpy(float), self.particles["py"].to_numpy(float))

    @property
    def noise(self) -> np.ndarray:
        """Boolean mask of the hits that belong to no particle (``particle_id == 0``)."""
        if self.truth is None:
            raise DataError(f"{self._where()}: truth was not read (add 'truth' to parts)")
        return self.truth["particle_id"].to_numpy() == 0

    def _where(self) -> str:
        hits = self.files.get("hits")
        return f"event {self.event_id}" + (f" ('{hits}')" if hits else "")


# --------------------------------------------------------------------------------------
# Finding files


def _event_name(event: int) -> str:
    return f"event{event:09d}"


def _parse_event(event: int | str) -> int:
    if isinstance(event, (int, np.integer)) and not isinstance(event, bool):
        return int(event)
    m = re.fullmatch(r"(?:event)?(\d+)", str(event))
    if not m:
        raise DataError(
            f"'{shorten(event)}' is not a TrackML event id (e.g. 1 or 'event000000001')"
        )
    return int(m.group(1))


def event_ids(directory: Path | str) -> list[int]:
    """The sorted ids of the events that have at least one part file in ``directory``.

    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for n in (12, 3):
    ...         _ = pathlib.Path(tmp, f"event{n:09d}-hits.csv").write_text("hit_id\\n")
    ...     event_ids(tmp)
    [3, 12]
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"TrackML directory '{directory}' does not exist or is not a directory")
    ids = set()
    for path in directory.iterdir():
        m = _FILE_RE.match(path.name)
        if m:
            ids.add(int(m.group(1)))
    return sorted(ids)


def _part_file(prefix: Path, part: str) -> Path | None:
    for suffix in _SUFFIXES:
        path = prefix.parent / f"{prefix.name}-{part}{suffix}"
        if path.is_file():
            return path
    return None


def _existing_parts(prefix: Path) -> list[str]:
    return [p for p in PART_COLUMNS if _part_file(prefix, p) is not None]


def _resolve_prefix(prefix_or_dir: Path | str, event: int | str | None) -> tuple[Path, int]:
    path = Path(prefix_or_dir)
    if path.is_dir():
        if event is None:
            ids = event_ids(path)
            if len(ids) != 1:
                found = ", ".join(map(str, ids[:10])) or "none"
                raise DataError(
                    f"'{path}' holds {len(ids)} TrackML events ({found}); give the event id"
                )
            event = ids[0]
        event_id = _parse_event(event)
        return path / _event_name(event_id), event_id
    if event is not None:
        raise DataError(f"'{path}' is not a directory; give a directory together with the event")
    m = re.fullmatch(r"event(\d+)", path.name)
    if not m:
        what = "is not a directory" if path.exists() else "does not exist"
        raise DataError(
            f"'{path}' {what}; give a TrackML directory or an event prefix like "
            "'dir/event000000001'"
        )
    if not path.parent.is_dir():
        raise DataError(f"TrackML directory '{path.parent}' does not exist")
    return path, int(m.group(1))


# --------------------------------------------------------------------------------------
# Reading


def _read_table(path: Path, required: Sequence[str], where: str) -> pd.DataFrame:
    read_head(path)  # missing / not a file / unreadable: one line
    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"'{path}'{where}: the file is empty (no header)") from None
    except Exception as err:
        raise DataError(f"'{path}'{where}: cannot read CSV ({describe_exception(err)})") from None
    missing = [c for c in required if c not in table.columns]
    if missing:
        has = ", ".join(map(str, table.columns)) or "no columns"
        raise DataError(
            f"'{path}'{where}: missing column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}; the file has: {shorten(has, 200)}"
        )
    for name in required if len(table) else ():  # a header-only file has object columns
        if not pd.api.types.is_numeric_dtype(table[name]):
            raise DataError(f"'{path}'{where}: column '{name}' is not numeric")
    return table


def _first(values: Iterable[object]) -> str:
    values = list(values)
    text = ", ".join(str(v) for v in values[:_FIRST])
    return text + (", ..." if len(values) > _FIRST else "")


def _check_event(event: TrackMLEvent) -> None:
    hits_file = event.files["hits"]
    where = f" (event {event.event_id})"
    if len(event.hits) == 0:
        raise DataError(f"'{hits_file}'{where}: the event has no hits")
    if event.truth is None:
        return
    truth_file = event.files["truth"]
    absent = ~np.isin(event.truth["hit_id"].to_numpy(), event.hits["hit_id"].to_numpy())
    if absent.any():
        ids = event.truth["hit_id"].to_numpy()[absent]
        raise DataError(
            f"'{truth_file}'{where}: {int(absent.sum())} truth hit ids are not in "
            f"'{hits_file.name}' (first: {_first(ids)})"
        )
    if len(event.truth) != len(event.hits):
        raise DataError(
            f"'{truth_file}'{where}: {len(event.truth)} truth rows but "
            f"{len(event.hits)} hits in '{hits_file.name}'"
        )


def read_event(
    prefix_or_dir: Path | str,
    event: int | str | None = None,
    parts: Sequence[str] = ("hits", "truth", "particles"),
    *,
    check: bool = True,
) -> TrackMLEvent:
    """Read one TrackML event.

    Parameters
    ----------
    prefix_or_dir : path
        An event prefix (``dir/event000000001``) or a directory; a directory needs
        ``event`` unless it holds exactly one event.
    event : int or str, optional
        The event id (``1`` or ``"event000000001"``) within the directory.
    parts : sequence of str
        Which of ``hits, truth, particles, cells`` to read; ``hits`` is always read.
        Each part is ``<prefix>-<part>.csv`` or ``.csv.gz``.
    check : bool
        Check the event: it has hits, and the truth covers exactly the hits.

    Raises
    ------
    DataError
        A part file is missing (the message lists the parts present), unreadable or lacks a
        column; the event is empty; truth and hits disagree.

    >>> import tempfile, pathlib
    >>> tmp = tempfile.TemporaryDirectory()
    >>> d = pathlib.Path(tmp.name)
    >>> _ = (d / "event000000007-hits.csv").write_text(
    ...     "hit_id,x,y,z,volume_id,layer_id,module_id\\n1,3.0,4.0,0.0,7,2,1\\n")
    >>> _ = (d / "event000000007-truth.csv").write_text(
    ...     "hit_id,particle_id,tx,ty,tz,tpx,tpy,tpz,weight\\n1,0,3,4,0,0,0,0,0\\n")
    >>> ev = read_event(d / "event000000007", parts=("hits", "truth"))
    >>> ev.event_id, len(ev.hits), ev.r.tolist(), int(ev.noise.sum())
    (7, 1, [5.0], 1)
    >>> read_event(d, 7, parts=("hits", "cells"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fivesigma.errors.DataError: event 7 in '...': no cells file ...; parts present: hits, truth
    >>> tmp.cleanup()
    """
    wanted = ["hits", *(p for p in parts if p != "hits")]
    unknown = [p for p in wanted if p not in PART_COLUMNS]
    if unknown:
        raise DataError(
            f"unknown TrackML part{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"parts: {', '.join(PART_COLUMNS)}"
        )
    prefix, event_id = _resolve_prefix(prefix_or_dir, event)
    where = f" (event {event_id})"
    files: dict[str, Path] = {}
    for part in dict.fromkeys(wanted):
        path = _part_file(prefix, part)
        if path is None:
            present = ", ".join(_existing_parts(prefix)) or "none"
            raise DataError(
                f"event {event_id} in '{prefix.parent}': no {part} file "
                f"'{prefix.name}-{part}.csv' or '.csv.gz'; parts present: {present}"
            )
        files[part] = path
    tables = {part: _read_table(path, PART_COLUMNS[part], where) for part, path in files.items()}
    result = TrackMLEvent(
        event_id=event_id,
        hits=tables["hits"],
        truth=tables.get("truth"),
        particles=tables.get("particles"),
        cells=tables.get("cells"),
        files=files,
    )
    if check:
        _check_event(result)
    return result


def iter_events(
    directory: Path | str,
    parts: Sequence[str] = ("hits", "truth", "particles"),
    events: Iterable[int | str] | None = None,
    *,
    check: bool = True,
) -> Iterator[TrackMLEvent]:
    """Stream the events of a directory in event-id order, one read per step (a generator).

    ``events`` restricts (and orders) the ids read; an id with no file is an error when
    its turn comes.  The directory is checked at once; each event when it is reached.

    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for n in (2, 1):
    ...         _ = pathlib.Path(tmp, f"event{n:09d}-hits.csv").write_text(
    ...             "hit_id,x,y,z,volume_id,layer_id,module_id\\n1,1,0,0,7,2,1\\n")
    ...     [ev.event_id for ev in iter_events(tmp, parts=("hits",))]
    [1, 2]
    """
    directory = Path(directory)
    ids = event_ids(directory)
    if events is not None:
        ids = sorted({_parse_event(e) for e in events})
    return _iter_events(directory, ids, tuple(parts), check)


def _iter_events(
    directory: Path, ids: list[int], parts: tuple[str, ...], check: bool
) -> Iterator[TrackMLEvent]:
    for event_id in ids:
        yield read_event(directory, event_id, parts, check=check)


def read_detectors(path: Path | str) -> pd.DataFrame:
    """Read the TrackML module geometry, ``detectors.csv`` or ``detectors.csv.gz``.

    ``path`` is the file or a directory holding it.  An unnamed index column is dropped.
    The file is kept in ``table.attrs["source"]`` for error messages.

    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     header = ",".join(DETECTOR_COLUMNS)
    ...     row = ",".join(["7", "2", "1"] + ["0"] * (len(DETECTOR_COLUMNS) - 3))
    ...     _ = pathlib.Path(tmp, "detectors.csv").write_text(f",{header}\\n0,{row}\\n")
    ...     det = read_detectors(tmp)
    ...     det.shape, list(det.columns[:3])
    ((1, 21), ['volume_id', 'layer_id', 'module_id'])
    """
    path = Path(path)
    if path.is_dir():
        found = [path / f"detectors{s}" for s in _SUFFIXES if (path / f"detectors{s}").is_file()]
        if not found:
            raise DataError(f"no detectors.csv or detectors.csv.gz in '{path}'")
        path = found[0]
    table = _read_table(path, DETECTOR_COLUMNS, "")
    unnamed = [c for c in table.columns if str(c).startswith("Unnamed:")]
    table = table.drop(columns=unnamed)
    table.attrs["source"] = str(path)
    return table


def check_geometry(event: TrackMLEvent, detectors: pd.DataFrame) -> None:
    """Check that every hit's ``(volume_id, layer_id, module_id)`` is in the detector table.

    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     d = pathlib.Path(tmp)
    ...     _ = (d / "event000000001-hits.csv").write_text(
    ...         "hit_id,x,y,z,volume_id,layer_id,module_id\\n1,1,0,0,7,2,1\\n2,1,0,0,7,2,9\\n")
    ...     ev = read_event(d, parts=("hits",))
    ...     det = pd.DataFrame({"volume_id": [7], "layer_id": [2], "module_id": [1]})
    ...     check_geometry(ev, det)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fivesigma.errors.DataError: ...(event 1): 1 hits on 1 modules not in the detector table...
    """
    source = detectors.attrs.get("source", "the detector table")
    missing = [c for c in _MODULE_KEY if c not in detectors.columns]
    if missing:
        raise DataError(
            f"'{source}': missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
        )
    hits_file = event.files.get("hits", "hits")
    known = pd.MultiIndex.from_frame(detectors[_MODULE_KEY].astype("int64"))
    keys = pd.MultiIndex.from_frame(event.hits[_MODULE_KEY].astype("int64"))
    unknown = ~keys.isin(known)
    if unknown.any():
        modules = keys[unknown].unique()
        raise DataError(
            f"'{hits_file}' (event {event.event_id}): {int(unknown.sum())} hits on "
            f"{len(modules)} modules not in the detector table '{source}' "
            f"(first (volume, layer, module): {_first(tuple(map(int, m)) for m in modules)})"
        )
