"""Vectorised collider kinematics on per-event object collections.

Objects are given as four aligned arrays ``pt, eta, phi, mass`` (GeV, radians), one
entry per object.  Each may be

* a jagged awkward array (one list per event) -- the usual case,
* a 2-D numpy array ``(n_events, n_objects)`` (e.g. padded constituents), or
* a 1-D numpy array, read as exactly one object per event.

Four-vectors come from scikit-hep ``vector`` with its awkward behaviour, so sums and
masses are computed in compiled/vectorised code, never in a Python loop over events.
Per-event results are float64 numpy arrays with NaN where the quantity is undefined
(no objects, too few objects, no valid lepton pairing).

>>> import awkward as ak
>>> m = invariant_mass(ak.Array([[45.0, 45.0]]), ak.Array([[0.0, 0.0]]),
...                    ak.Array([[0.0, 3.141592653589793]]), ak.Array([[0.0, 0.0]]))
>>> round(float(m[0]), 6)
90.0
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np
import vector

from fivesigma.errors import DataError

__all__ = [
    "MZ",
    "delta_phi",
    "delta_r",
    "invariant_mass",
    "p4",
    "pt_of_sum",
    "z_pairing",
]

#: Z boson mass in GeV (PDG).
MZ = 91.1876

# Registering is idempotent; it gives records named "Momentum4D" their vector methods
# (``.mass``, ``+``, ``ak.sum``) everywhere awkward arrays flow.
vector.register_awkward()


def _as_jagged(x: Any, name: str = "array") -> ak.Array:
    """One list of objects per event, whatever the input layout (see module docstring)."""
    if isinstance(x, ak.Array):
        if x.ndim == 1:
            # a flat per-event value: exactly one object per event
            return ak.unflatten(x, np.ones(len(x), dtype=np.int64))
        return ak.from_regular(x, axis=1)
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(
            f"{name}: expected one value per object per event (jagged or 2-D), got shape {arr.shape}"
        )
    return ak.from_regular(ak.Array(arr), axis=1)


def _zip(pt: Any, eta: Any, phi: Any, mass: Any) -> ak.Array:
    """Jagged ``Momentum4D`` records; a clear error when the collections disagree."""
    fields = {
        "pt": _as_jagged(pt, "pt"),
        "eta": _as_jagged(eta, "eta"),
        "phi": _as_jagged(phi, "phi"),
        "mass": _as_jagged(mass, "mass"),
    }
    lengths = {k: len(v) for k, v in fields.items()}
    if len(set(lengths.values())) != 1:
        raise DataError(f"pt, eta, phi, mass have different numbers of events: {lengths}")
    try:
        return ak.zip(fields, with_name="Momentum4D")
    except ValueError as exc:  # awkward: lists of unequal length in some event
        raise DataError(
            "pt, eta, phi, mass have different numbers of objects in some events; "
            "they must come from the same collection"
        ) from exc


def _to_float_numpy(x: Any) -> np.ndarray:
    """Flat per-event awkward/numpy values -> float64 numpy, None -> NaN."""
    if isinstance(x, ak.Array):
        x = ak.to_numpy(ak.fill_none(x, np.nan), allow_missing=False)
    return np.asarray(x, dtype=np.float64)


def p4(pt: Any, eta: Any, phi: Any, mass: Any) -> Any:
    """Four-momenta from ``pt, eta, phi, mass`` (GeV).

    Returns a ``vector`` awkward array (jagged input) or a ``vector`` numpy array
    (numpy input of any shape), with ``.px, .py, .pz, .E, .mass`` and ``+``.
    """
    if any(isinstance(a, ak.Array) for a in (pt, eta, phi, mass)):
        return _zip(pt, eta, phi, mass)
    arrays = [np.asarray(a, dtype=np.float64) for a in (pt, eta, phi, mass)]
    pt_, eta_, phi_, mass_ = np.broadcast_arrays(*arrays)
    return vector.array({"pt": pt_, "eta": eta_, "phi": phi_, "mass": mass_})


def _summed(pt: Any, eta: Any, phi: Any, mass: Any, n: int | None) -> tuple[ak.Array, np.ndarray]:
    """Vector sum of all (or the first ``n``) objects per event, and a validity mask."""
    vecs = _zip(pt, eta, phi, mass)
    counts = ak.to_numpy(ak.num(vecs, axis=1))
    if n is None:
        valid = counts > 0
    else:
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise DataError(f"n must be a positive integer number of objects, got {n!r}")
        vecs = vecs[:, : int(n)]
        valid = counts >= n
    return ak.sum(vecs, axis=1), valid


def invariant_mass(pt: Any, eta: Any, phi: Any, mass: Any, n: int | None = None) -> np.ndarray:
    """Invariant mass (GeV) of the vector sum of the objects in each event.

    Parameters
    ----------
    pt, eta, phi, mass
        Object kinematics, one list per event (GeV, -, rad, GeV).
    n
        Use only the first ``n`` objects (inputs are assumed sorted, e.g. by pT).
        Events with fewer than ``n`` objects get NaN.

    Returns
    -------
    numpy.ndarray
        float64, one entry per event; NaN for events with no objects.
    """
    total, valid = _summed(pt, eta, phi, mass, n)
    out = _to_float_numpy(total.mass)
    out[~valid] = np.nan
    return out


def pt_of_sum(pt: Any, eta: Any, phi: Any, mass: Any, n: int | None = None) -> np.ndarray:
    """Transverse momentum (GeV) of the vector sum of the (first ``n``) objects per event.

    Same conventions as :func:`invariant_mass`: NaN for events with no objects, or with
    fewer than ``n`` objects when ``n`` is given.
    """
    total, valid = _summed(pt, eta, phi, mass, n)
    out = _to_float_numpy(total.pt)
    out[~valid] = np.nan
    return out


def delta_phi(phi1: Any, phi2: Any) -> Any:
    """``phi1 - phi2`` wrapped into ``[-pi, pi)``; numpy or awkward, broadcasting per event."""
    # modulo form instead of a loop of +-2pi corrections: correct for any input range
    with np.errstate(invalid="ignore"):
        return np.mod(np.subtract(phi1, phi2) + np.pi, 2 * np.pi) - np.pi


def delta_r(eta1: Any, phi1: Any, eta2: Any, phi2: Any) -> Any:
    """Angular distance ``sqrt(deta^2 + dphi^2)`` with the azimuth wrapped properly."""
    deta = np.subtract(eta1, eta2)
    dphi = delta_phi(phi1, phi2)
    return np.sqrt(deta * deta + dphi * dphi)


def z_pairing(
    pt: Any,
    eta: Any,
    phi: Any,
    mass: Any,
    pdgid: Any,
    charge: Any,
    mz: float = MZ,
) -> tuple[np.ndarray, np.ndarray]:
    """H->ZZ->4l lepton pairing: the masses of Z1 and Z2 (GeV) per event.

    Among all same-flavour opposite-charge (SFOS) lepton pairs of an event, Z1 is the
    pair whose mass is closest to ``mz``.  Z2 is chosen among the SFOS pairs made of the
    *remaining* leptons as the pair with the highest scalar sum of pT (the CMS choice;
    it avoids biasing Z2 towards on-shell).  No mass window is applied here -- cut on
    the returned masses in the selection.

    Parameters
    ----------
    pt, eta, phi, mass
        Lepton kinematics, one list per event (GeV, -, rad, GeV).
    pdgid
        PDG id per lepton (11 electrons, 13 muons); signed or absolute.
    charge
        Electric charge per lepton (+-1); used for "opposite charge".
    mz
        Reference Z mass in GeV.

    Returns
    -------
    (mZ1, mZ2)
        float64 arrays, NaN where no SFOS pair (Z1) or no second disjoint SFOS pair (Z2)
        exists.
    """
    vecs = _zip(pt, eta, phi, mass)
    flav = np.abs(_as_jagged(pdgid, "pdgid"))
    chg = _as_jagged(charge, "charge")
    try:
        # broadcasting checks that flavour/charge lists match the kinematics per event
        _ = vecs.pt + flav + chg
    except ValueError as exc:
        raise DataError(
            "pdgid and charge must have one entry per lepton, like pt/eta/phi/mass"
        ) from exc

    pairs = ak.argcombinations(vecs, 2, axis=1)
    i, j = pairs["0"], pairs["1"]
    pair_mass = (vecs[i] + vecs[j]).mass
    sfos = (flav[i] == flav[j]) & (chg[i] * chg[j] < 0)

    # Z1: SFOS pair closest to mz (non-SFOS pairs pushed to +inf distance)
    dist = ak.where(sfos, np.abs(pair_mass - mz), np.inf)
    best1 = ak.argmin(dist, axis=1, keepdims=True)
    has_z1 = ak.to_numpy(ak.any(sfos, axis=1))
    mz1 = _to_float_numpy(ak.firsts(pair_mass[best1]))
    mz1[~has_z1] = np.nan

    # Z2: among SFOS pairs sharing no lepton with Z1, the highest scalar-sum-pT one
    z1_i = ak.fill_none(ak.firsts(i[best1]), -1)
    z1_j = ak.fill_none(ak.firsts(j[best1]), -1)
    disjoint = (i != z1_i) & (i != z1_j) & (j != z1_i) & (j != z1_j)
    candidate = sfos & disjoint
    score = ak.where(candidate, vecs.pt[i] + vecs.pt[j], -np.inf)
    best2 = ak.argmax(score, axis=1, keepdims=True)
    has_z2 = ak.to_numpy(ak.any(candidate, axis=1)) & has_z1
    mz2 = _to_float_numpy(ak.firsts(pair_mass[best2]))
    mz2[~has_z2] = np.nan
    return mz1, mz2
