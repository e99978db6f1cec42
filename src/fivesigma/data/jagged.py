"""Helpers for jagged (one list per event) columns: n-th object, counts, padding.

Inputs may be jagged awkward arrays, 2-D numpy arrays ``(n_events, n_objects)`` or
1-D arrays, which are read as exactly one object per event.  Everything is vectorised
with awkward (``ak.pad_none`` / ``ak.fill_none`` / ``ak.to_numpy``); no Python loop runs
over events.

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

__all__ = ["as_jagged", "counts", "nth", "pad", "pad_many"]


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
    jag = as_jagged(x)
    # a one-wide slice is empty (not an IndexError) when the event is too short
    window = jag[:, n : n + 1] if n != -1 else jag[:, -1:]
    picked = ak.firsts(window, axis=1)
    if picked.ndim != 1:
        raise DataError("nth(): expected one list of numbers per event, got a nested list")
    return np.asarray(ak.to_numpy(ak.fill_none(picked, fill)), dtype=np.float64)


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
