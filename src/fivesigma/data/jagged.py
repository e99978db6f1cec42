"""Helpers for jagged (one list per event) columns: n-th object, counts, padding.

Inputs may be jagged awkward arrays, 2-D numpy arrays ``(n_events, n_objects)`` or
1-D arrays, which are read as exactly one object per event.  Everything is vectorised
with awkward (``ak.pad_none`` / ``ak.fill_none`` / ``ak.to_numpy``); no Python loop runs
over events.

The read path's hot spots also have flat numpy kernels that work on the buffers of a
plain jagged array (:func:`list_parts`: offsets and values, no missing values, no
records): :func:`nth` takes them when it can, and :func:`object_index`,
:func:`padded_values` and :func:`sequential_sum` give callers per-event sums that equal
awkward's bit for bit (awkward adds the objects of an event one after the other,
starting from zero).

>>> import awkward as ak
>>> values, mask = pad(ak.Array([[3.0, 2.0, 1.0], [], [5.0]]), 2)
>>> values.tolist(), mask.tolist()
([[3.0, 2.0], [0.0, 0.0], [5.0, 0.0]], [[True, True], [False, False], [True, False]])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import awkward as ak
import numpy as np

from fivesigma.errors import DataError

__all__ = [
    "as_jagged",
    "counts",
    "list_parts",
    "nth",
    "object_index",
    "pad",
    "pad_many",
    "padded_values",
    "sequential_sum",
]


def as_jagged(x: Any) -> ak.Array:
    """An awkward array with one variable-length list per event.

    1-D input (numpy or awkward) becomes one object per event; 2-D numpy input keeps its
    rows as the object lists.
    """
    if isinstance(x, ak.Array):
        if x.ndim == 1:
            return ak.unflatten(x, np.ones(len(x), dtype=np.int64))
        return ak.from_regular(x, axis=1)
    arr = np.asarray(x)
    if arr.ndim == 0:
        raise DataError("expected one value (or list of objects) per event, got a scalar")
    if arr.ndim == 1:
        arr = arr[:, None]
    return ak.from_regular(ak.Array(arr), axis=1)


def counts(x: Any) -> np.ndarray:
    """Number of objects in each event (int64); 1 per event for a flat column."""
    return np.asarray(ak.to_numpy(ak.num(as_jagged(x), axis=1)), dtype=np.int64)


def nth(x: Any, n: int, fill: float = np.nan) -> np.ndarray:
    """The ``n``-th object of each event as a flat float64 array.

    ``n`` counts from 0; negative ``n`` counts from the end (``-1`` is the last object).
    Events with too few objects get ``fill``.

    >>> import awkward as ak
    >>> nth(ak.Array([[5.0, 4.0], [1.0], []]), 1, fill=-1.0).tolist()
    [4.0, -1.0, -1.0]
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise DataError(f"nth(): the object index must be an integer constant, got {n!r}")
    n = int(n)
    parts = list_parts(x, kinds="biuf")
    if parts is not None and _plain_fill(fill) and abs(n) < 2**31:
        # the flat kernel: one gather from the values buffer
        starts, stops, values = parts
        k = starts + n if n >= 0 else stops + n
        found = k < stops if n >= 0 else k >= starts
        out = np.full(len(starts), fill, dtype=np.float64)
        if len(values):
            np.copyto(out, values.take(np.where(found, k, 0)), where=found, casting="unsafe")
        return out
    jag = as_jagged(x)
    # a one-wide slice is empty (not an IndexError) when the event is too short
    window = jag[:, n : n + 1] if n != -1 else jag[:, -1:]
    picked = ak.firsts(window, axis=1)
    if picked.ndim != 1:
        raise DataError("nth(): expected one list of numbers per event, got a nested list")
    return np.asarray(ak.to_numpy(ak.fill_none(picked, fill)), dtype=np.float64)


def _plain_fill(fill: Any) -> bool:
    """Whether ``fill`` is a number that float64 holds the way awkward's fill does."""
    if isinstance(fill, bool | float | np.floating | np.bool_):
        return True
    return isinstance(fill, int | np.integer) and -(2**63) <= int(fill) < 2**63


def list_parts(x: Any, kinds: str = "f") -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(starts, stops, values)`` of a plain jagged awkward array, else None.

    Plain means one list of numbers per event, as uproot reads a jagged branch: list
    offsets (or starts/stops) over a flat buffer whose dtype kind is in ``kinds``, with
    no missing values, records, strings or deeper nesting, in memory (not a dask type
    tracer).  Object ``j`` of event ``i`` is ``values[starts[i] + j]``.  Anything else
    gives None, and the caller takes awkward's general path.
    """
    if not isinstance(x, ak.Array) or ak.backend(x) != "cpu":
        return None
    layout = x.layout
    if isinstance(layout, ak.contents.ListOffsetArray):
        offsets = np.asarray(layout.offsets.data).astype(np.int64, copy=False)
        starts, stops = offsets[:-1], offsets[1:]
    elif isinstance(layout, ak.contents.ListArray):
        starts = np.asarray(layout.starts.data).astype(np.int64, copy=False)
        stops = np.asarray(layout.stops.data).astype(np.int64, copy=False)
    else:
        return None
    content = layout.content
    if layout.parameters or not isinstance(content, ak.contents.NumpyArray) or content.parameters:
        return None
    values = np.asarray(content.data)
    if values.ndim != 1 or values.dtype.kind not in kinds:
        return None
    return starts, stops, values


def object_index(starts: np.ndarray, take: np.ndarray) -> np.ndarray | None:
    """Where the first ``take[i]`` objects of each event sit: a ``(take.max(), n_events)``
    index into the values of :func:`list_parts`.

    Row ``j`` holds ``starts + j``, and -1 where an event has fewer than ``j + 1`` objects
    to take (:func:`padded_values` reads 0 there).  None when the padding would cost far
    more memory than the objects themselves (a few events with many more objects than
    the rest): the caller then takes awkward's path.
    """
    n_events = len(take)
    width = int(take.max()) if n_events else 0
    if width * n_events > 8 * max(int(take.sum()), 1024):
        return None
    slot = np.arange(width, dtype=np.int64)[:, None]
    return np.where(slot < take, starts + slot, -1)


def padded_values(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``values`` at ``index`` (:func:`object_index`), with 0 of their dtype where it is -1."""
    return np.append(values, values.dtype.type(0)).take(index)


def sequential_sum(rows: np.ndarray) -> np.ndarray:
    """Per-event sums of ``(width, n_events)`` values, added the way awkward does.

    ``ak.sum(x, axis=1)`` starts from zero and adds the objects of an event in order, in
    the values' dtype; so does this.  The zeros of :func:`padded_values` change nothing:
    a sum that starts from +0.0 is never -0.0, and adding +0.0 leaves any other value
    (NaN and inf included) as it is.
    """
    total = np.zeros(rows.shape[1], dtype=rows.dtype)
    with np.errstate(over="ignore", invalid="ignore"):  # awkward's kernels do not warn
        for row in rows:
            total += row
    return total


def pad(x: Any, length: int, fill: float = 0.0, clip: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Pad (and truncate) per-event lists to a fixed ``length``.

    Parameters
    ----------
    x
        Jagged values, one list per event, assumed sorted (e.g. by pT) so that
        truncation keeps the leading objects.
    length
        Number of object slots per event.
    fill
        Value written in empty slots.
    clip
        If True (default) objects beyond ``length`` are dropped.  If False, longer
        events are kept whole and every event is padded to the longest one.

    Returns
    -------
    values : numpy.ndarray
        float32, shape ``(n_events, length)``.
    mask : numpy.ndarray
        bool, same shape, True where a real object sits.
    """
    if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 1:
        raise DataError(f"pad(): length must be a positive integer, got {length!r}")
    jag = as_jagged(x)
    if len(jag) == 0:
        return np.zeros((0, int(length)), np.float32), np.zeros((0, int(length)), bool)
    padded = ak.pad_none(jag, int(length), axis=1, clip=clip)
    if not clip:
        # without clipping the list type stays variable; all lists now have the max length
        target = max(int(length), int(ak.max(ak.num(padded, axis=1))))
        padded = ak.pad_none(padded, target, axis=1, clip=True)
    # a real object is a slot that pad_none did not invent (and that was not None itself)
    mask = ak.to_numpy(~ak.is_none(padded, axis=1)).astype(bool)
    try:
        values = ak.to_numpy(ak.fill_none(padded, fill, axis=1)).astype(np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(
            "pad(): expected one list of numbers per event, got a nested or non-numeric column"
        ) from exc
    return values, mask


def pad_many(
    columns: Mapping[str, Any], length: int, fill: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Pad several jagged fields of one collection and stack them as features.

    Parameters
    ----------
    columns
        ``{name: jagged array}``; all must have the same number of objects per event
        (e.g. ``jet_pt, jet_eta, jet_phi``).  The dict order is the feature order.
    length
        Number of object slots per event.

    Returns
    -------
    values : numpy.ndarray
        float32, shape ``(n_events, length, n_features)``.
    mask : numpy.ndarray
        bool, shape ``(n_events, length)``.
    """
    if not columns:
        raise DataError("pad_many(): no columns given; pass at least one jagged field")
    names = list(columns)
    ref_counts = counts(columns[names[0]])
    stacked, mask = [], None
    for name in names:
        c = counts(columns[name])
        if c.shape != ref_counts.shape or not np.array_equal(c, ref_counts):
            raise DataError(
                f"pad_many(): column '{name}' has a different number of objects per event "
                f"than '{names[0]}'; stack only fields of the same collection"
            )
        values, m = pad(columns[name], length, fill=fill)
        stacked.append(values)
        mask = m if mask is None else mask
    return np.stack(stacked, axis=-1), mask
