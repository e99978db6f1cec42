"""The LHC Olympics 2020 R&D feature files, read into fivesigma's dijet feature names.

The R&D data set (Kasieczka et al., arXiv:2101.08320; Zenodo 4536377) comes with a
high-level feature file, ``events_anomalydetection_v2.features.h5``: a pandas DataFrame
written with ``to_hdf(..., format="fixed")`` (key ``df``), one row per event, columns
:data:`LHCO_COLUMNS`, the two leading anti-kT R = 1 jets' momenta, masses and
N-subjettiness, and ``label`` (1 signal, 0 background).

:func:`read_lhco` returns the same names as the ``dijets`` generator
(:mod:`fivesigma.generate.dijets`): J1 is the LIGHTER jet, J2 the heavier (the
CATHODE/ANODE convention; the file's own order is not by mass), ``mjj`` is the invariant
mass of the two jets' four-vectors ``(px, py, pz, sqrt(p^2 + m^2))``, ``delta_mj = mj2 -
mj1``, ``tau21 = tau2 / tau1`` and ``tau32 = tau3 / tau2`` (0 where the denominator is
0), and jet ``pt``, ``eta``, ``phi``.  Masses and momenta in GeV.

Security: the file is read with h5py only.  In pandas' fixed layout the column names
(``blockN_items``) and values (``blockN_values``) are plain HDF5 datasets, so nothing is
unpickled; a block of Python objects (pickled) is refused.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.errors import DataError
from fivesigma.physics import kinematics
from fivesigma.physics.substructure import tau_ratio

__all__ = ["LHCO_COLUMNS", "read_lhco"]

#: Columns of the LHCO R&D feature file.
LHCO_COLUMNS = (
    "pxj1",
    "pyj1",
    "pzj1",
    "mj1",
    "tau1j1",
    "tau2j1",
    "tau3j1",
    "pxj2",
    "pyj2",
    "pzj2",
    "mj2",
    "tau1j2",
    "tau2j2",
    "tau3j2",
    "label",
)


def _text(value: Any) -> str:
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _bad(path: Path, problem: str) -> DataError:
    return DataError(
        f"'{path}': {problem}; expected an LHC Olympics feature file (pandas DataFrame, "
        f"to_hdf format='fixed', key 'df') with columns {' '.join(LHCO_COLUMNS)}"
    )


def _read_columns(path: Path, max_events: int | None) -> dict[str, np.ndarray]:
    """The numeric columns of the pandas fixed-layout frame in ``path`` (first rows only)."""
    import h5py

    try:
        h5 = h5py.File(path, "r")
    except Exception:
        raise _bad(path, "not a readable HDF5 file") from None
    with h5:
        groups = [k for k in h5 if isinstance(h5[k], h5py.Group)]
        key = "df" if "df" in groups else (groups[0] if len(groups) == 1 else None)
        if key is None:
            raise _bad(path, f"no DataFrame group (groups: {', '.join(groups) or 'none'})")
        group = h5[key]
        ptype = _text(group.attrs.get("pandas_type", b""))
        if ptype != "frame":
            raise _bad(path, f"key '{key}' has pandas_type '{ptype or 'missing'}'")
        n = int(group["axis1"].shape[0]) if "axis1" in group else 0
        stop = n if max_events is None else min(n, max_events)
        columns: dict[str, np.ndarray] = {}
        for b in range(int(group.attrs.get("nblocks", 0))):
            items, values = group.get(f"block{b}_items"), group.get(f"block{b}_values")
            if not isinstance(items, h5py.Dataset) or not isinstance(values, h5py.Dataset):
                raise _bad(path, f"pandas block {b} is incomplete")
            names = [_text(x) for x in items[()]]
            if values.dtype.kind not in "biuf" or values.ndim != 2:
                # object blocks are pickles: never loaded
                continue
            if values.shape != (n, len(names)):
                raise _bad(
                    path, f"pandas block {b} has shape {values.shape}, not ({n}, {len(names)})"
                )
            block = values[:stop]
            for j, name in enumerate(names):
                columns[name] = np.asarray(block[:, j])
    return columns


def read_lhco(path: str | PathLike, max_events: int | None = None) -> dict[str, np.ndarray]:
    """The events of an LHCO R&D feature file as fivesigma dijet features.

    Parameters
    ----------
    path
        ``events_anomalydetection_v2.features.h5`` or a file of the same layout.
    max_events
        Read only the first ``max_events`` rows (all when None).

    Returns
    -------
    dict of 1-D arrays, one entry per event: ``mjj, mj1, mj2, delta_mj, tau1_j1 ..
    tau3_j2, tau21_j1, tau21_j2, tau32_j1, tau32_j2, pt_j1, eta_j1, phi_j1, pt_j2,
    eta_j2, phi_j2`` (float64) and ``label`` (int32); J1 is the lighter jet.

    Raises
    ------
    DataError
        Not such a file, or a column missing (one line naming the file and the columns
        expected).
    """
    path = Path(path)
    if max_events is not None and (
        isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 1
    ):
        raise DataError(f"max_events must be a positive integer or None, got {max_events!r}")
    if not path.is_file():
        raise _bad(path, "no such file")
    cols = _read_columns(path, max_events)
    missing = [c for c in LHCO_COLUMNS if c not in cols]
    if missing:
        raise _bad(path, f"missing column(s) {', '.join(missing)}")
    jets = []
    for j in ("j1", "j2"):
        px, py, pz, m = (cols[f"{v}{j}"].astype(np.float64) for v in ("px", "py", "pz", "m"))
        e = np.sqrt(px**2 + py**2 + pz**2 + m**2)
        taus = [cols[f"tau{k}{j}"].astype(np.float64) for k in (1, 2, 3)]
        jets.append({"px": px, "py": py, "pz": pz, "e": e, "m": m, "tau": taus})
    a, b = jets
    mjj = kinematics.mass(a["px"] + b["px"], a["py"] + b["py"], a["pz"] + b["pz"], a["e"] + b["e"])
    # J1 = the lighter jet: where the file's jet 2 is lighter, swap.
    swap = b["m"] < a["m"]

    def pick(key: str, first: bool, k: int | None = None) -> np.ndarray:
        x, y = (a[key], b[key]) if k is None else (a[key][k], b[key][k])
        return np.where(swap, y, x) if first else np.where(swap, x, y)

    out: dict[str, np.ndarray] = {"mjj": mjj, "mj1": pick("m", True), "mj2": pick("m", False)}
    out["delta_mj"] = out["mj2"] - out["mj1"]
    for name, first in (("j1", True), ("j2", False)):
        for k in range(3):
            out[f"tau{k + 1}_{name}"] = pick("tau", first, k)
    for name in ("j1", "j2"):
        out[f"tau21_{name}"] = tau_ratio(out[f"tau2_{name}"], out[f"tau1_{name}"])
        out[f"tau32_{name}"] = tau_ratio(out[f"tau3_{name}"], out[f"tau2_{name}"])
    for name, first in (("j1", True), ("j2", False)):
        px, py, pz = pick("px", first), pick("py", first), pick("pz", first)
        out[f"pt_{name}"] = kinematics.pt(px, py)
        out[f"eta_{name}"] = kinematics.pseudorapidity(px, py, pz, zero_pt="floor", eps=1e-12)
        out[f"phi_{name}"] = kinematics.phi(px, py)
    label = cols["label"]
    if not np.all(np.isin(label, (0, 1))):
        raise _bad(path, "column label holds values other than 0 and 1")
    out["label"] = label.astype(np.int32)
    return out
