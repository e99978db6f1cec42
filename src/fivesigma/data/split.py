"""Deterministic train / validation / test splits from a hash of (seed, event key).

An event's split depends only on the seed and its key, never on the order of files or on
the chunk size, so the same event lands in the same split in every run, in ``apply`` on
new files, and on a cluster.  The key is either an event id (``data.split.key``, e.g. the
event number) or (file name, entry number in that file).  Only the file's *base name*
enters the hash, so moving a directory of files does not reshuffle the splits.

>>> codes = split_codes(np.arange(10), seed=1, fractions=(0.6, 0.2, 0.2))
>>> codes.dtype, set(codes.tolist()) <= {0, 1, 2}
(dtype('int8'), True)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fivesigma.errors import DataError

__all__ = ["SPLIT_NAMES", "TEST", "TRAIN", "VALIDATION", "file_identity", "split_codes"]

TRAIN, VALIDATION, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "validation", "test")

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
# Distinguishes the two key modes, so event id 5 and (file, entry 5) hash differently.
_MODE_EVENT_ID = 0x6576656E745F6964  # "event_id"
_MODE_FILE_ENTRY = 0x66696C655F656E74  # "file_ent"


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, vectorised on uint64 (wrap-around arithmetic)."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def _splitmix64_inplace(z: np.ndarray, scratch: np.ndarray) -> None:
    """:func:`_splitmix64` on ``z`` in place (``scratch``: a buffer of the same size)."""
    z += _GOLDEN
    np.right_shift(z, np.uint64(30), out=scratch)
    z ^= scratch
    z *= _M1
    np.right_shift(z, np.uint64(27), out=scratch)
    z ^= scratch
    z *= _M2
    np.right_shift(z, np.uint64(31), out=scratch)
    z ^= scratch


#: Events hashed per block: the working arrays stay in the CPU cache.
_BLOCK = 1 << 16


def _mix(a: int, b: int) -> int:
    """Combine two 64-bit integers into one hash (scalar)."""
    out = _splitmix64(np.array([(a & 0xFFFFFFFFFFFFFFFF)], dtype=np.uint64))
    out = _splitmix64(out ^ np.uint64(b & 0xFFFFFFFFFFFFFFFF))
    return int(out[0])


def file_identity(path: str | Path) -> int:
    """A stable 64-bit identity of a file from its base name (not its directory or content).

    >>> file_identity("/data/a/signal.root") == file_identity("/elsewhere/signal.root")
    True
    """
    name = Path(path).name.encode("utf-8")
    return int.from_bytes(hashlib.blake2b(name, digest_size=8).digest(), "little")


def _as_uint64_keys(keys: np.ndarray | Sequence[int], what: str) -> np.ndarray:
    arr = np.asarray(keys)
    if arr.ndim != 1:
        raise DataError(f"{what} must be one integer per event, got an array of shape {arr.shape}")
    if arr.dtype.kind in "iu":
        return (
            arr.astype(np.int64, copy=False).view(np.uint64)
            if arr.dtype.kind == "i"
            else arr.astype(np.uint64)
        )
    if arr.dtype.kind == "b":
        raise DataError(f"{what} must hold integers (an event id), got booleans")
    if arr.dtype.kind == "f":
        # CSV readers give float event ids when a column has missing values: accept
        # whole numbers, reject anything else.
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise DataError(
                f"{what} must hold whole numbers (an event id); found fractional or NaN values"
            )
        return arr.astype(np.int64).view(np.uint64)
    raise DataError(f"{what} must hold integers (an event id), got {arr.dtype}")


def _uniform(hashes: np.ndarray) -> np.ndarray:
    """Map uint64 hashes to floats uniform in [0, 1) using the top 53 bits."""
    return (hashes >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def _top53_bound(fraction: float) -> np.uint64:
    """The integer ``b`` with ``_uniform(h) < fraction`` exactly when ``h >> 11 < b``.

    ``_uniform`` is ``(h >> 11) * 2**-53``, exact in float64, and scaling ``fraction`` by
    ``2**53`` is exact too; so the comparison holds in integers with the ceiling.
    """
    return np.uint64(math.ceil(fraction * 9007199254740992.0))


def _codes(keys: np.ndarray, salt: int, train: float, train_val: float) -> np.ndarray:
    """Split codes of uint64 ``keys``: ``_uniform`` of two splitmix64 rounds of
    ``salt ^ key``, below ``train`` train, below ``train_val`` validation, else test."""
    n = len(keys)
    codes = np.empty(n, dtype=np.int8)
    bound_train, bound_val = _top53_bound(train), _top53_bound(train_val)
    width = min(n, _BLOCK)
    z, scratch, beyond = (
        np.empty(width, np.uint64),
        np.empty(width, np.uint64),
        np.empty(width, bool),
    )
    with np.errstate(over="ignore"):
        for start in range(0, n, _BLOCK):
            stop = min(start + _BLOCK, n)
            m = stop - start
            zb, sb, bb, out = z[:m], scratch[:m], beyond[:m], codes[start:stop]
            np.bitwise_xor(keys[start:stop], np.uint64(salt), out=zb)
            _splitmix64_inplace(zb, sb)
            _splitmix64_inplace(zb, sb)
            zb >>= np.uint64(11)
            # 0 below the train bound, +1 past it, +1 more past the validation bound
            np.greater_equal(zb, bound_train, out=out.view(bool))
            np.greater_equal(zb, bound_val, out=bb)
            out += bb.view(np.int8)
    return codes


def split_codes(
    event_ids: np.ndarray | Sequence[int] | None = None,
    *,
    seed: int,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    file: str | Path | None = None,
    entries: np.ndarray | Sequence[int] | None = None,
) -> np.ndarray:
    """Split code per event: 0 train, 1 validation, 2 test.

    Give either ``event_ids`` (an integer id per event, e.g. the ``event`` branch) or
    ``file`` and ``entries`` (the global entry numbers of the events in that file).

    Parameters
    ----------
    event_ids : array of int, optional
        Unique event identifiers.
    seed : int
        The run's seed; a different seed gives an independent split.
    fractions : (train, validation, test)
        Expected fractions; must sum to 1.
    file : path, optional
        The file the entries belong to; only its base name is used.
    entries : array of int, optional
        Entry numbers within ``file``.

    Returns
    -------
    numpy.ndarray of int8
    """
    train, val, test = (float(f) for f in fractions)
    if min(train, val, test) < 0 or abs(train + val + test - 1.0) > 1e-6:
        raise DataError(
            f"split fractions must be >= 0 and sum to 1, got {train:g}, {val:g}, {test:g}"
        )
    if event_ids is not None:
        if file is not None or entries is not None:
            raise ValueError("give either event_ids or (file, entries), not both")
        keys = _as_uint64_keys(event_ids, "the split key")
        salt = _mix(_MODE_EVENT_ID, int(seed))
    else:
        if file is None or entries is None:
            raise ValueError("give event_ids, or both file and entries")
        keys = _as_uint64_keys(entries, "entry numbers")
        salt = _mix(_mix(_MODE_FILE_ENTRY, int(seed)), file_identity(file))
    # Two rounds of splitmix64 on (salt xor key): consecutive keys give unrelated values;
    # uniform u = top 53 bits / 2**53: train below `train`, validation below `train + val`.
    return _codes(keys, salt, train, train + val)
