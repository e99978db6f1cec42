"""Jet samples: one in-memory representation read from three kinds of files.

Sources
-------
``fivesigma``
    The built-in Pythia8+FastJet generator's ROOT files: TTree ``Jets`` with flat
    ``jet_pt, jet_eta, jet_phi, jet_mass, jet_energy, jet_nparticles, label`` and jagged
    ``part_px, part_py, part_pz, part_energy`` (float32) and ``part_charge, part_pid,
    part_class`` (int32), and since format version 2 the track impact parameters
    ``part_d0, part_dz, part_d0err, part_dzerr`` (float32, mm; ``has_tracks`` True).
    Older files without them read with zeros and ``has_tracks`` False.
``toptagging``
    The Top Quark Tagging Reference Dataset (Kasieczka et al., arXiv:1902.09914): HDF5
    written by pandas (key ``table``, ``format="fixed"`` or ``"table"``) with columns
    ``E_i, PX_i, PY_i, PZ_i`` (zero-padded; ``E == 0`` is padding) and ``is_signal_new``.
    Top jets get label 4 (``top``); the QCD jets get 0 (``light``), although the dataset's
    QCD background is *not* split by flavour (it holds light-quark and gluon jets).  No
    particle ID (``has_pid`` False) and no impact parameters (``has_tracks`` False).
    ``ttv`` is kept as metadata in ``JetSample.meta``; :func:`read_jets_with_split` turns
    the published ``train``/``val``/``test`` files (or ``ttv``) into split codes, see
    :data:`SPLIT_FILE_NAMES`.
``energyflow``
    EnergyFlow quark/gluon ``.npz`` files: ``X`` (N, M, 4) with (pT, rapidity, phi, pdgid),
    zero-padded (pT == 0 is padding), ``y`` 1 quark / 0 gluon -> labels 0 (light) / 1
    (gluon).  Four-vectors use the PDG mass of the pdgid: ``E = mT cosh y``,
    ``pz = mT sinh y``.  Files with ``X`` of 3 columns (no pdgid) are read with
    ``has_pid`` False and massless particles.  No impact parameters (``has_tracks`` False).

Security: nothing is ever unpickled.  HDF5 files are read with h5py, never PyTables
(which unpickles attributes); pandas' column-name attributes, written as pickles, are
decoded with an unpickler that refuses every class or function, so it can only build
lists, tuples, dicts, strings and numbers.  ``.npz`` files are opened with
``allow_pickle=False``.

Streaming: ``iter_jets`` yields chunks of at most ``chunk_jets`` jets and reads only
those rows (h5py slices for both pandas layouts, uproot entry ranges for ROOT).  An
``.npz`` member stored uncompressed (``np.savez``) is memory-mapped, so only the rows of
a chunk are read; a compressed member (``np.savez_compressed``) cannot be sliced and is
read whole once per file.

>>> sample = read_jets(["jets_*.root"], max_jets=1000)    # doctest: +SKIP
>>> sample.constituents.px[0], sample.label[:5], sample.jet["pt"]   # doctest: +SKIP
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from fivesigma.core.files import read_head
from fivesigma.errors import DataError, close_matches, describe_exception
from fivesigma.physics import kinematics
from fivesigma.physics.labels import JET_LABELS
from fivesigma.physics.particles import pdg_properties

__all__ = [
    "CLASS_NAMES",
    "FORMATS",
    "PARTICLE_CLASSES",
    "SPLIT_FILE_NAMES",
    "TTV_SPLITS",
    "JetSample",
    "concatenate",
    "detect_jet_format",
    "iter_jets",
    "pdg_properties",
    "read_jets",
    "read_jets_with_split",
    "split_from_name",
]

#: Jet class codes, shared with the generator's ``label`` branch (one definition:
#: :data:`fivesigma.physics.labels.JET_LABELS`).
CLASS_NAMES: dict[int, str] = JET_LABELS
#: Particle class codes of ``part_class`` / the ``cls`` field.
PARTICLE_CLASSES: dict[int, str] = {
    0: "charged hadron",
    1: "neutral hadron",
    2: "photon",
    3: "electron",
    4: "muon",
}
FORMATS = ("fivesigma", "toptagging", "energyflow")

_TREE = "Jets"
_KIN = ("px", "py", "pz", "energy")
#: Track impact parameters and their errors (mm): the ``part_<name>`` branches.
_TRACK = ("d0", "dz", "d0err", "dzerr")
_JET_KEYS = ("pt", "eta", "phi", "mass", "energy")
_ROOT_REQUIRED = ("part_px", "part_py", "part_pz", "part_energy", "label")
_ZIP_MAGIC = b"PK\x03\x04"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


# --------------------------------------------------------------------------------------
# The in-memory representation


@dataclass
class JetSample:
    """Jets with their constituents, labels and jet-level kinematics.

    Attributes
    ----------
    constituents : ak.Array
        Per jet a list of records ``{px, py, pz, energy}`` (float32, GeV),
        ``{charge, pid, cls}`` (int32; 0 when unknown) and the track impact parameters
        ``{d0, dz, d0err, dzerr}`` (float32, mm; 0 for neutral particles and when
        unknown), sorted by pT, highest first.
    label : np.ndarray
        int64 class codes, see :data:`CLASS_NAMES`.
    jet : dict
        float64 arrays ``pt, eta, phi, mass, energy`` (GeV); taken from the file when it
        has them, otherwise the sum of the constituents.
    source : str
        The reader (``fivesigma``, ``toptagging``, ``energyflow``, ``arrays``).
    has_pid : bool
        Whether ``charge, pid, cls`` carry information.
    meta : dict
        Optional per-jet metadata arrays (e.g. ``ttv`` of the top-tagging files).
    has_tracks : bool
        Whether ``d0, dz, d0err, dzerr`` carry information (False: they are zeros, the
        file had no impact parameters).

    >>> s = JetSample.from_arrays(
    ...     [[1.0], [2.0, 1.0]], [[0.0], [0.0, 0.5]], [[0.0], [0.0, 0.0]], [[1.0], [2.0, 1.2]], [0, 4]
    ... )
    >>> len(s), s.n_constituents.tolist(), s.subset([1]).label.tolist()
    (2, [1, 2], [4])
    """

    constituents: ak.Array
    label: np.ndarray
    jet: dict[str, np.ndarray]
    source: str
    has_pid: bool
    meta: dict[str, np.ndarray] = field(default_factory=dict)
    has_tracks: bool = False

    def __len__(self) -> int:
        return len(self.label)

    def subset(self, idx: np.ndarray | Sequence[int] | Sequence[bool] | slice) -> JetSample:
        """The jets selected by an index array, a boolean mask or a slice."""
        if not isinstance(idx, slice):
            idx = np.asarray(idx)
            if idx.dtype == bool and idx.shape != (len(self),):
                raise DataError(
                    f"boolean mask has length {idx.shape[0]}, sample has {len(self)} jets"
                )
        return JetSample(
            constituents=self.constituents[idx],
            label=self.label[idx],
            jet={k: v[idx] for k, v in self.jet.items()},
            source=self.source,
            has_pid=self.has_pid,
            meta={k: v[idx] for k, v in self.meta.items()},
            has_tracks=self.has_tracks,
        )

    @property
    def n_constituents(self) -> np.ndarray:
        """Number of constituents of each jet (int64)."""
        return np.asarray(ak.to_numpy(ak.num(self.constituents, axis=1)), dtype=np.int64)

    @classmethod
    def from_arrays(
        cls,
        px: Any,
        py: Any,
        pz: Any,
        energy: Any,
        label: Any,
        *,
        charge: Any = None,
        pid: Any = None,
        part_class: Any = None,
        jet: dict[str, Any] | None = None,
        source: str = "arrays",
        has_pid: bool | None = None,
        meta: dict[str, Any] | None = None,
        d0: Any = None,
        dz: Any = None,
        d0err: Any = None,
        dzerr: Any = None,
        has_tracks: bool | None = None,
    ) -> JetSample:
        """Build a sample from jagged (or nested list) constituent arrays.

        Constituents are sorted by pT (highest first).  ``charge`` and ``part_class`` are
        derived from ``pid`` when only ``pid`` is given.  ``jet`` kinematics missing from
        ``jet`` are computed from the constituent sum.  ``has_pid`` defaults to whether
        ``pid`` or ``part_class`` was given.  The impact parameters ``d0, dz`` and their
        errors ``d0err, dzerr`` (mm) not given are zeros; ``has_tracks`` defaults to
        whether ``d0`` or ``dz`` was given.

        >>> s = JetSample.from_arrays([[1.0, 3.0]], [[0.0, 0.0]], [[0.0, 0.0]], [[1.0, 3.0]], [4])
        >>> s.constituents.px.tolist(), float(s.jet["pt"][0]), s.label.tolist()
        ([[3.0, 1.0]], 4.0, [4])
        """
        kin = {
            k: ak.values_astype(ak.Array(v), np.float32)
            for k, v in zip(_KIN, (px, py, pz, energy), strict=True)
        }
        counts = ak.num(kin["px"], axis=1)
        for name, arr in kin.items():
            if arr.ndim != 2 or not ak.all(ak.num(arr, axis=1) == counts):
                raise DataError(
                    f"constituent array '{name}' does not have one list per jet like 'px'"
                )
        if has_pid is None:
            has_pid = pid is not None or part_class is not None
        if has_tracks is None:
            has_tracks = d0 is not None or dz is not None
        if pid is not None and (charge is None or part_class is None):
            flat_pid = ak.to_numpy(ak.flatten(ak.Array(pid)))
            _, q, c = pdg_properties(flat_pid)
            if charge is None:
                charge = ak.unflatten(q, counts)
            if part_class is None:
                part_class = ak.unflatten(c, counts)
        ints = {}
        for name, arr in (("charge", charge), ("pid", pid), ("cls", part_class)):
            ints[name] = (
                ak.values_astype(ak.Array(arr), np.int32)
                if arr is not None
                else ak.values_astype(kin["px"] * 0, np.int32)
            )
        track = {}
        for name, arr in zip(_TRACK, (d0, dz, d0err, dzerr), strict=True):
            if arr is None:
                track[name] = ak.zeros_like(kin["px"])  # unknown: zeros (has_tracks says so)
                continue
            track[name] = ak.values_astype(ak.Array(arr), np.float32)
            if (
                track[name].ndim != 2
                or len(track[name]) != len(counts)
                or not ak.all(ak.num(track[name], axis=1) == counts)
            ):
                raise DataError(
                    f"constituent array '{name}' does not have one list per jet like 'px'"
                )
        parts = ak.zip({**kin, **ints, **track})
        # Sort by pT, highest first; stable so equal-pT particles keep their file order.
        pt = np.hypot(parts.px, parts.py)
        parts = parts[ak.argsort(pt, axis=1, ascending=False, stable=True)]
        labels = np.asarray(label, dtype=np.int64).reshape(-1)
        if len(labels) != len(parts):
            raise DataError(f"{len(labels)} labels for {len(parts)} jets")
        jet_kin = _jet_kinematics(parts, jet or {})
        return cls(
            constituents=parts,
            label=labels,
            jet=jet_kin,
            source=source,
            has_pid=bool(has_pid),
            meta={k: np.asarray(v) for k, v in (meta or {}).items()},
            has_tracks=bool(has_tracks),
        )


def _jet_kinematics(parts: ak.Array, given: dict[str, Any]) -> dict[str, np.ndarray]:
    """pt, eta, phi, mass, energy: from ``given`` where present, else the constituent sum."""
    out = {k: np.asarray(given[k], dtype=np.float64) for k in _JET_KEYS if given.get(k) is not None}
    if len(out) < len(_JET_KEYS):
        px, py, pz, e = (
            np.asarray(ak.to_numpy(ak.sum(ak.values_astype(parts[k], np.float64), axis=1)))
            for k in _KIN
        )
        pt = kinematics.pt(px, py)
        derived = {
            "pt": pt,
            # a jet without transverse momentum (e.g. no constituents) gets eta 0
            "eta": kinematics.pseudorapidity(px, py, pz, pt=pt, zero_pt="zero"),
            "phi": kinematics.phi(px, py),
            "mass": kinematics.mass(px, py, pz, e),
            "energy": e,
        }
        for k in _JET_KEYS:
            out.setdefault(k, derived[k])
    return {k: out[k] for k in _JET_KEYS}


def concatenate(parts: Sequence[JetSample]) -> JetSample:
    """Concatenate samples of the same source (jets in order)."""
    if not parts:
        raise DataError("no jets to concatenate")
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    meta_keys = set(first.meta)
    return JetSample(
        constituents=ak.concatenate([p.constituents for p in parts], axis=0),
        label=np.concatenate([p.label for p in parts]),
        jet={k: np.concatenate([p.jet[k] for p in parts]) for k in _JET_KEYS},
        source=first.source,
        has_pid=all(p.has_pid for p in parts),
        meta={
            k: np.concatenate([p.meta[k] for p in parts])
            for k in meta_keys
            if all(k in p.meta for p in parts)
        },
        has_tracks=all(p.has_tracks for p in parts),
    )


# --------------------------------------------------------------------------------------
# Formats


def detect_jet_format(path: Path | str) -> str:
    """``fivesigma`` for ROOT, ``toptagging`` for HDF5, ``energyflow`` for ``.npz``/zip files."""
    path = Path(path)
    head = read_head(path)
    if head.startswith(b"root"):
        return "fivesigma"
    if head.startswith(_HDF5_MAGIC):
        return "toptagging"
    if head.startswith(_ZIP_MAGIC) or path.suffix.lower() == ".npz":
        return "energyflow"
    raise DataError(
        f"'{path}' is not a ROOT (fivesigma), HDF5 (toptagging) or .npz (energyflow) jet file"
    )


def _check_format(fmt: str) -> None:
    if fmt != "auto" and fmt not in FORMATS:
        raise DataError(
            f"unknown jet file format '{fmt}'; use 'auto', {', '.join(repr(f) for f in FORMATS)} "
            f"({close_matches(fmt, FORMATS)})"
        )


class _Reader:
    """One open file: ``n`` jets, ``read(start, stop)`` -> JetSample."""

    n: int

    def read(self, start: int, stop: int) -> JetSample:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


# ---- fivesigma ROOT ------------------------------------------------------------------


class _RootReader(_Reader):
    def __init__(self, path: Path) -> None:
        import uproot

        self.path = path
        try:
            self.file = uproot.open(path)
        except Exception as err:
            raise DataError(
                f"'{path}': cannot open ROOT file, it may be truncated or corrupt ({describe_exception(err)})"
            ) from None
        if _TREE not in self.file:
            keys = sorted({k.rsplit(";", 1)[0] for k in self.file})
            self.file.close()
            raise DataError(
                f"'{path}': no TTree '{_TREE}' (the jet generator's layout); {close_matches(_TREE, keys)}"
            )
        self.tree = self.file[_TREE]
        self.columns = set(self.tree.keys())
        missing = [b for b in _ROOT_REQUIRED if b not in self.columns]
        if missing:
            self.file.close()
            raise DataError(
                f"'{path}': tree '{_TREE}' has no branch '{missing[0]}'; expected "
                f"{', '.join(_ROOT_REQUIRED)} ({close_matches(missing[0], self.columns)})"
            )
        self.branches = [
            b
            for b in (
                *_ROOT_REQUIRED,
                "part_charge",
                "part_pid",
                "part_class",
                *(f"part_{k}" for k in _TRACK),
                *(f"jet_{k}" for k in _JET_KEYS),
            )
            if b in self.columns
        ]
        self.n = int(self.tree.num_entries)

    def read(self, start: int, stop: int) -> JetSample:
        try:
            arr = self.tree.arrays(self.branches, entry_start=start, entry_stop=stop, library="ak")
        except Exception as err:
            raise DataError(
                f"'{self.path}': cannot read entries {start}-{stop} of tree '{_TREE}' ({describe_exception(err)})"
            ) from None
        get = {b: arr[b] for b in self.branches}
        return JetSample.from_arrays(
            get["part_px"],
            get["part_py"],
            get["part_pz"],
            get["part_energy"],
            ak.to_numpy(get["label"]),
            charge=get.get("part_charge"),
            pid=get.get("part_pid"),
            part_class=get.get("part_class"),
            jet={k: ak.to_numpy(get[f"jet_{k}"]) for k in _JET_KEYS if f"jet_{k}" in get},
            source="fivesigma",
            has_pid="part_pid" in get or "part_class" in get,
            **{k: get.get(f"part_{k}") for k in _TRACK},
            # Files before format version 2 have no impact parameters (zeros then).
            has_tracks="part_d0" in get or "part_dz" in get,
        )

    def close(self) -> None:
        self.file.close()


# ---- Top tagging HDF5 (pandas layouts, read with h5py) -------------------------------


class _NoGlobals(pickle.Unpickler):
    """Decodes pandas' pickled attributes (lists of column names) but refuses every class
    or function, so no code can run: only builtin containers, strings and numbers."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _attr_text(value: Any) -> str:
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _safe_unpickle(path: Path, value: Any, what: str) -> Any:
    try:
        return _NoGlobals(io.BytesIO(bytes(value))).load()
    except Exception:
        raise DataError(
            f"'{path}': attribute '{what}' holds a pickled object; refusing to unpickle it "
            "(only plain pandas column-name lists are accepted)"
        ) from None


class _TopTaggingReader(_Reader):
    def __init__(self, path: Path) -> None:
        import h5py

        self.path = path
        try:
            self.h5 = h5py.File(path, "r")
        except Exception as err:
            raise DataError(
                f"'{path}': cannot open HDF5 file ({describe_exception(err)})"
            ) from None
        try:
            self._layout(h5py)
        except BaseException:
            self.h5.close()
            raise

    def _layout(self, h5py: Any) -> None:
        path, h5 = self.path, self.h5
        keys = [k for k in h5 if isinstance(h5[k], h5py.Group)]
        key = "table" if "table" in keys else (keys[0] if len(keys) == 1 else None)
        if key is None:
            raise DataError(
                f"'{path}': no pandas key 'table' (to_hdf(..., key='table')); groups: {', '.join(keys) or 'none'}"
            )
        group = h5[key]
        ptype = _attr_text(group.attrs.get("pandas_type", b""))
        # column name -> (reader of rows [a, b) giving a 2-D block, column index in the block)
        self.columns: dict[str, tuple[Any, int]] = {}
        if ptype == "frame":
            self._fixed(group, h5py)
        elif ptype == "frame_table":
            self._table(group, h5py)
        else:
            raise DataError(
                f"'{path}': key '{key}' is not a pandas DataFrame (pandas_type '{ptype or 'missing'}'); "
                "expected a frame written by DataFrame.to_hdf"
            )
        names = list(self.columns)
        self.n_const = 0
        while f"E_{self.n_const}" in self.columns:
            self.n_const += 1
        if self.n_const == 0:
            raise DataError(
                f"'{path}': no constituent columns E_0, PX_0, PY_0, PZ_0 (Top Quark Tagging layout "
                f"E_i, PX_i, PY_i, PZ_i, is_signal_new); found {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}"
            )
        for prefix in ("PX", "PY", "PZ"):
            for i in range(self.n_const):
                if f"{prefix}_{i}" not in self.columns:
                    raise DataError(
                        f"'{path}': column '{prefix}_{i}' is missing; E_0..E_{self.n_const - 1} need PX_i, PY_i, PZ_i too"
                    )
        if "is_signal_new" not in self.columns:
            raise DataError(
                f"'{path}': no label column 'is_signal_new' (1 top, 0 QCD); {close_matches('is_signal_new', names)}"
            )

    def _fixed(self, group: Any, h5py: Any) -> None:
        nblocks = int(group.attrs.get("nblocks", 0))
        self.n = int(group["axis1"].shape[0]) if "axis1" in group else 0
        for b in range(nblocks):
            items, values = group.get(f"block{b}_items"), group.get(f"block{b}_values")
            if not isinstance(values, h5py.Dataset) or not isinstance(items, h5py.Dataset):
                raise DataError(
                    f"'{self.path}': pandas block {b} is incomplete; the file may be corrupt"
                )
            if (
                values.dtype.kind not in "biuf"
                or _attr_text(values.attrs.get("CLASS", b"ARRAY")) != "ARRAY"
            ):
                raise DataError(
                    f"'{self.path}': pandas block {b} holds pickled objects (dtype {values.dtype}); "
                    "refusing to unpickle, only numeric columns are accepted"
                )
            names = [_attr_text(x) for x in items[()]]
            if values.ndim != 2 or values.shape != (self.n, len(names)):
                raise DataError(
                    f"'{self.path}': pandas block {b} has shape {values.shape}, expected ({self.n}, {len(names)})"
                )
            for j, name in enumerate(names):
                self.columns[name] = (values, j)

    def _table(self, group: Any, h5py: Any) -> None:
        table = group.get("table")
        if not isinstance(table, h5py.Dataset) or not table.dtype.names:
            raise DataError(
                f"'{self.path}': pandas table without its 'table' dataset; the file may be corrupt"
            )
        self.n = int(table.shape[0])
        for fname in table.dtype.names:
            if fname == "index":
                continue
            sub = table.dtype[fname]
            base = sub.base if sub.shape else sub
            if base.kind not in "biuf":
                raise DataError(
                    f"'{self.path}': column block '{fname}' has dtype {sub}; only numeric columns are accepted"
                )
            kind = table.attrs.get(f"{fname}_kind")
            if fname.startswith("values_block_") and kind is not None:
                names = [str(x) for x in _safe_unpickle(self.path, kind, f"{fname}_kind")]
                width = sub.shape[0] if sub.shape else 1
                if len(names) != width:
                    raise DataError(
                        f"'{self.path}': block '{fname}' names {len(names)} columns but holds {width}"
                    )
                reader = _Field(table, fname)  # one per block, so a block is read once per chunk
                for j, name in enumerate(names):
                    self.columns[name] = (reader, j)
            else:  # data_columns=True: one field per column, named after it
                self.columns[fname] = (_Field(table, fname), -1)

    def _get(self, names: Sequence[str], start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of ``names`` as (rows, len(names)) float64, reading each block once."""
        out = np.empty((stop - start, len(names)), dtype=np.float64)
        by_block: dict[int, tuple[Any, list[tuple[int, int]]]] = {}
        for i, name in enumerate(names):
            block, j = self.columns[name]
            by_block.setdefault(id(block), (block, []))[1].append((i, j))
        for block, pairs in by_block.values():
            rows = np.asarray(block[start:stop])
            if rows.ndim == 1:
                rows = rows[:, None]
            for i, j in pairs:
                out[:, i] = rows[:, max(j, 0)]
        return out

    def read(self, start: int, stop: int) -> JetSample:
        m = self.n_const
        names = [f"{p}_{i}" for p in ("E", "PX", "PY", "PZ") for i in range(m)] + ["is_signal_new"]
        has_ttv = "ttv" in self.columns
        if has_ttv:
            names.append("ttv")
        try:
            block = self._get(names, start, stop)
        except DataError:
            raise
        except Exception as err:
            raise DataError(
                f"'{self.path}': cannot read rows {start}-{stop} ({describe_exception(err)})"
            ) from None
        e, px, py, pz = (block[:, k * m : (k + 1) * m] for k in range(4))
        real = e != 0  # the dataset marks padding by E == 0
        counts = real.sum(axis=1)
        sig = block[:, 4 * m]
        meta = {"ttv": block[:, 4 * m + 1].astype(np.int64)} if has_ttv else {}
        return JetSample.from_arrays(
            *(ak.unflatten(a[real], counts) for a in (px, py, pz, e)),
            np.where(sig > 0.5, 4, 0),
            source="toptagging",
            has_pid=False,
            meta=meta,
        )

    def close(self) -> None:
        self.h5.close()


class _Field:
    """Slicing one field of a compound h5py dataset: ``_Field(ds, name)[a:b]``."""

    def __init__(self, table: Any, name: str) -> None:
        self.table, self.name = table, name

    def __getitem__(self, sl: slice) -> np.ndarray:
        rows = self.table.fields([self.name])[sl]
        return rows[self.name] if rows.dtype.names else rows


# ---- EnergyFlow .npz -----------------------------------------------------------------


def _npz_member(path: Path, zf: zipfile.ZipFile, name: str) -> np.ndarray:
    """An array of an .npz: memory-mapped when stored uncompressed, else read whole."""
    info = zf.getinfo(name)
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        header_len = f.tell()
    if dtype.hasobject:
        raise DataError(
            f"'{path}': array '{name[:-4]}' holds pickled Python objects; refusing to unpickle, "
            "a numeric array is expected"
        )
    if info.compress_type == zipfile.ZIP_STORED and not fortran:
        # Local file header: 30 fixed bytes + file name + extra field, then the data.
        with open(path, "rb") as raw:
            raw.seek(info.header_offset)
            local = raw.read(30)
            n_name = int.from_bytes(local[26:28], "little")
            n_extra = int.from_bytes(local[28:30], "little")
        offset = info.header_offset + 30 + n_name + n_extra + header_len
        if int(np.prod(shape)) == 0:
            return np.zeros(shape, dtype=dtype)
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    with zf.open(info) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


class _EnergyFlowReader(_Reader):
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            zf = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            # np.save'd or pickled files are not npz archives; never unpickle them.
            raise DataError(
                f"'{path}' is not an .npz archive (numpy.savez with arrays X and y); "
                "pickled files are refused"
            ) from None
        except OSError as err:
            raise DataError(f"cannot read '{path}': {err.strerror or err}") from None
        with zf:
            members = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}
            for key in ("X", "y"):
                if key not in members:
                    raise DataError(
                        f"'{path}': no array '{key}' in the .npz; expected X (jets, particles, 4: pt, y, phi, pdgid) "
                        f"and y (1 quark, 0 gluon); found {', '.join(sorted(members)) or 'nothing'}"
                    )
            try:
                self.X = _npz_member(path, zf, members["X"])
                self.y = _npz_member(path, zf, members["y"])
            except DataError:
                raise
            except Exception as err:
                raise DataError(
                    f"'{path}': cannot read the .npz arrays ({describe_exception(err)})"
                ) from None
        if self.X.ndim != 3 or self.X.shape[2] not in (3, 4):
            raise DataError(
                f"'{path}': X has shape {self.X.shape}; expected (jets, particles, 4) with pt, y, phi, pdgid"
            )
        if self.y.ndim != 1 or self.y.shape[0] != self.X.shape[0]:
            raise DataError(
                f"'{path}': y has shape {self.y.shape}; expected ({self.X.shape[0]},), one label per jet"
            )
        if self.X.dtype.kind not in "biuf" or self.y.dtype.kind not in "biuf":
            raise DataError(
                f"'{path}': X and y must be numeric, got {self.X.dtype} and {self.y.dtype}"
            )
        self.n = int(self.X.shape[0])

    def read(self, start: int, stop: int) -> JetSample:
        x = np.asarray(self.X[start:stop], dtype=np.float64)
        y = np.asarray(self.y[start:stop])
        pt, rap, phi = x[..., 0], x[..., 1], x[..., 2]
        real = pt > 0
        has_pid = x.shape[2] == 4
        pid = np.rint(x[..., 3]).astype(np.int64) if has_pid else np.zeros(pt.shape, dtype=np.int64)
        mass, _, _ = pdg_properties(pid)
        mt = np.sqrt(pt**2 + mass**2)
        comps = (pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(rap), mt * np.cosh(rap))
        counts = real.sum(axis=1)
        jag = [ak.unflatten(c[real], counts) for c in comps]
        return JetSample.from_arrays(
            *jag,
            np.where(y > 0.5, 0, 1),  # quark (1) -> light (0), gluon (0) -> gluon (1)
            pid=ak.unflatten(pid[real].astype(np.int32), counts) if has_pid else None,
            source="energyflow",
            has_pid=has_pid,
        )


_READERS = {
    "fivesigma": _RootReader,
    "toptagging": _TopTaggingReader,
    "energyflow": _EnergyFlowReader,
}


def _open(path: Path, fmt: str) -> _Reader:
    actual = detect_jet_format(path)  # also checks existence
    return _READERS[actual if fmt == "auto" else fmt](path)


def _files(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    from fivesigma.io.events import expand_files

    if isinstance(paths, str | Path):
        paths = [paths]
    return expand_files([str(p) for p in paths])


# --------------------------------------------------------------------------------------
# Published splits

# fivesigma's split codes, as in fivesigma.data.split (not imported: it pulls in fivesigma.data).
_TRAIN, _VALIDATION, _TEST = 0, 1, 2
_SPLIT_NAMES = {_TRAIN: "train", _VALIDATION: "validation", _TEST: "test"}

#: The published splits of the Top Quark Tagging Reference Dataset, the one place that
#: says how its files become fivesigma's split codes (0 train, 1 validation, 2 test).
#: Source: the dataset's README (Zenodo record 2603256, https://zenodo.org/record/2603256;
#: Kasieczka et al., arXiv:1902.09914) distributes the sets as the files ``train.h5``,
#: ``val.h5`` and ``test.h5`` and asks for train to be used for training, val for
#: validation during the training and test for the final results.  Its per-jet column
#: ``ttv`` (test/train/validation) names the set a jet belongs to and is, per the README,
#: redundant with the files; the README gives no numeric values for it.  Hence:
#:
#: - a file *named* ``train``, ``val`` (or ``validation``) or ``test``, whatever its
#:   suffix, is that split (``SPLIT_FILE_NAMES``), and its ``ttv`` must take one value;
#: - files not named so that carry ``ttv`` (e.g. one file merging the sets) are read with
#:   ``TTV_SPLITS``: ttv taken as fivesigma's split code.  That is fivesigma's convention
#:   for such files, not something the dataset documents.
SPLIT_FILE_NAMES: dict[str, int] = {
    "train": _TRAIN,
    "val": _VALIDATION,
    "validation": _VALIDATION,
    "test": _TEST,
}
#: ``ttv`` value -> split code, for files that carry ``ttv`` but have no split name.
TTV_SPLITS: dict[int, int] = {0: _TRAIN, 1: _VALIDATION, 2: _TEST}


def split_from_name(path: str | Path) -> int | None:
    """The split code a file's name gives (see :data:`SPLIT_FILE_NAMES`), or None.

    Only the whole name before the first dot counts, in any case.

    >>> split_from_name("data/train.h5"), split_from_name("VAL.h5"), split_from_name("test.npz")
    (0, 1, 2)
    >>> split_from_name("jets_test.h5") is None
    True
    """
    return SPLIT_FILE_NAMES.get(Path(path).name.split(".", 1)[0].lower())


def read_jets_with_split(
    paths: str | Path | Sequence[str | Path],
    *,
    format: str = "auto",
    chunk_jets: int = 100_000,
) -> tuple[JetSample, np.ndarray | None]:
    """The jets of ``paths`` and the split the files give: int8 codes 0 train, 1 validation,
    2 test, or None when they give none (the caller then draws its own split).

    Files named train/val/test are those splits; otherwise the ``ttv`` column, read with
    :data:`TTV_SPLITS`; see :data:`SPLIT_FILE_NAMES` for the dataset's convention.

    Raises
    ------
    DataError
        What :func:`read_jets` raises, and files that disagree about the split: some
        named train/val/test and others not, a named file whose ``ttv`` takes several
        values, ``ttv`` in some files only, ``ttv`` values other than 0, 1, 2.

    >>> import tempfile, pathlib
    >>> tmp = tempfile.TemporaryDirectory()
    >>> X = np.zeros((3, 2, 4))
    >>> X[:, 0] = [100.0, 0.1, 0.2, 211]
    >>> for name, n in (("train", 3), ("val", 1), ("test", 2)):
    ...     np.savez(pathlib.Path(tmp.name, f"{name}.npz"), X=X[:n], y=np.ones(n))
    >>> sample, split = read_jets_with_split(f"{tmp.name}/*.npz")  # sorted: test, train, val
    >>> len(sample), split.tolist()
    (6, [2, 2, 0, 0, 0, 1])
    >>> tmp.cleanup()
    """
    _check_format(format)
    files = _files(paths)
    parts = [read_jets(path, format=format, chunk_jets=chunk_jets) for path in files]
    sample = concatenate(parts)
    named = [split_from_name(path) for path in files]
    if any(code is not None for code in named):
        return sample, _split_from_names(files, parts, named)
    with_ttv = [path for path, part in zip(files, parts, strict=True) if "ttv" in part.meta]
    if not with_ttv:
        return sample, None
    if len(with_ttv) < len(files):
        without = next(
            path for path, part in zip(files, parts, strict=True) if "ttv" not in part.meta
        )
        raise DataError(
            f"'{without}' has no ttv column but '{with_ttv[0]}' has one, so only some jets "
            "say their split; pass files that all carry ttv, or none"
        )
    ttv = np.asarray(sample.meta["ttv"], dtype=np.int64)
    unknown = sorted(set(np.unique(ttv).tolist()) - set(TTV_SPLITS))
    if unknown:
        raise DataError(
            f"ttv value {unknown[0]} in '{with_ttv[0]}'{' (or another file)' if len(files) > 1 else ''}; "
            f"accepted: 0 (train), 1 (validation), 2 (test)"
        )
    lookup = np.array([TTV_SPLITS[k] for k in range(len(TTV_SPLITS))], dtype=np.int8)
    return sample, lookup[ttv]


def _split_from_names(
    files: list[Path], parts: list[JetSample], named: list[int | None]
) -> np.ndarray:
    codes = []
    for path, part, code in zip(files, parts, named, strict=True):
        if code is None:
            others = ", ".join(
                f"'{f.name}'" for f, c in zip(files, named, strict=True) if c is not None
            )
            raise DataError(
                f"'{path}' is not named train, val or test like {others}; with the published "
                "split files pass only them (or rename the files so none is named so)"
            )
        ttv = part.meta.get("ttv")
        values = np.unique(ttv).tolist() if ttv is not None else []
        if len(values) > 1:
            raise DataError(
                f"'{path}' is named as the {_SPLIT_NAMES[code]} split but its ttv column holds "
                f"several values ({', '.join(map(str, values))}); a published split file has one"
            )
        codes.append(np.full(len(part), code, dtype=np.int8))
    return np.concatenate(codes)


# --------------------------------------------------------------------------------------
# Public readers


def iter_jets(
    paths: str | Path | Sequence[str | Path], *, format: str = "auto", chunk_jets: int = 100_000
) -> Iterator[JetSample]:
    """Yield the jets of ``paths`` (files or glob patterns) in chunks of at most ``chunk_jets``.

    Chunks never span two files; concatenated they equal :func:`read_jets` of the same
    paths.

    Raises
    ------
    DataError
        Missing file, unknown format, a file not in the format's layout, pickled content.

    >>> import tempfile, pathlib
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = pathlib.Path(tmp.name, "qg.npz")
    >>> X = np.zeros((5, 2, 4))
    >>> X[:, 0] = [100.0, 0.1, 0.2, 211]
    >>> np.savez(path, X=X, y=np.array([1, 0, 1, 1, 0]))
    >>> [len(chunk) for chunk in iter_jets(path, chunk_jets=2)]
    [2, 2, 1]
    >>> tmp.cleanup()
    """
    _check_format(format)
    if chunk_jets <= 0:
        raise DataError(f"chunk_jets must be positive, got {chunk_jets}")
    for path in _files(paths):
        reader = _open(path, format)
        try:
            for start in range(0, reader.n, chunk_jets):
                yield reader.read(start, min(start + chunk_jets, reader.n))
        finally:
            reader.close()


def read_jets(
    paths: str | Path | Sequence[str | Path],
    *,
    format: str = "auto",
    max_jets: int | None = None,
    start: int = 0,
    chunk_jets: int = 100_000,
) -> JetSample:
    """Read jets ``[start, start + max_jets)`` of ``paths`` (counted over all files in order).

    Only the needed rows are read, ``chunk_jets`` at a time.

    >>> import tempfile, pathlib
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = pathlib.Path(tmp.name, "QG_jets.npz")   # EnergyFlow layout: X (pt, y, phi, pid), y
    >>> X = np.zeros((3, 2, 4))
    >>> X[:, 0] = [100.0, 0.1, 0.2, 211]
    >>> X[0, 1] = [20.0, 0.3, 0.1, 22]
    >>> np.savez(path, X=X, y=np.array([1, 0, 1]))
    >>> sample = read_jets(path, max_jets=2)
    >>> sample.source, sample.label.tolist(), sample.n_constituents.tolist()
    ('energyflow', [0, 1], [2, 1])
    >>> tmp.cleanup()
    """
    _check_format(format)
    if start < 0 or (max_jets is not None and max_jets < 0):
        raise DataError(f"start and max_jets must be non-negative, got {start} and {max_jets}")
    if chunk_jets <= 0:
        raise DataError(f"chunk_jets must be positive, got {chunk_jets}")
    files = _files(paths)
    parts: list[JetSample] = []
    skip = start
    left = np.inf if max_jets is None else max_jets
    first: JetSample | None = None
    for path in files:
        reader = _open(path, format)
        try:
            if first is None:
                first = reader.read(0, 0)  # an empty sample of the right source
            lo = min(skip, reader.n)
            skip -= lo
            hi = int(min(reader.n, lo + left))
            left -= hi - lo
            for a in range(lo, hi, chunk_jets):
                parts.append(reader.read(a, min(a + chunk_jets, hi)))
        finally:
            reader.close()
        if left <= 0:
            break
    if not parts:
        assert first is not None
        return first
    return concatenate(parts)
