"""Collider kinematics: one set of array formulas, and per-event sums of object collections.

Array functions
---------------
:func:`pt`, :func:`phi`, :func:`pseudorapidity`, :func:`rapidity`, :func:`wrap_phi`,
:func:`delta_phi`, :func:`delta_r`, :func:`mass_squared`, :func:`mass` and
:func:`pair_features` (ParT's pairwise ``ln kT, ln z, ln dR, ln m^2``) work elementwise
on numpy arrays (and scalars), awkward arrays (jagged or not, broadcasting per event) and
torch tensors alike: :func:`_xp` picks the functions for the argument's type.  torch is
imported only when a tensor is passed, so this module (and ``fivesigma.physics``) stays
torch-free otherwise.  Each formula is written once; the few places where the torch path
is written differently (the networks' path: exportable to ONNX and never NaN) say so.

Where callers need different guards (the pseudorapidity of a particle without transverse
momentum, the rapidity at ``E = |pz|``), a parameter selects them, so that every caller
keeps the exact floating-point results it had: generated samples are cached by content
and benchmarks must reproduce their numbers.

Collections
-----------
:func:`invariant_mass`, :func:`pt_of_sum`, :func:`p4` and :func:`z_pairing` take objects
as four aligned arrays ``pt, eta, phi, mass`` (GeV, radians), one entry per object.
Each may be

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
>>> round(float(mass(0.0, 0.0, 0.0, 90.0)), 6), float(delta_phi(3.0, -3.0)) < 0
(90.0, True)
"""

from __future__ import annotations

import contextlib
import functools
import math
from types import SimpleNamespace
from typing import Any

import awkward as ak
import numpy as np
import vector

from fivesigma.errors import DataError

__all__ = [
    "MZ",
    "PAIR_FEATURES",
    "ZERO_PT",
    "delta_phi",
    "delta_r",
    "invariant_mass",
    "mass",
    "mass_squared",
    "p4",
    "pair_features",
    "phi",
    "pseudorapidity",
    "pt",
    "pt_of_sum",
    "rapidity",
    "wrap_phi",
    "z_pairing",
]

#: Z boson mass in GeV (PDG).
MZ = 91.1876

#: Names of the columns of :func:`pair_features`.
PAIR_FEATURES = ("ln_kT", "ln_z", "ln_deltaR", "ln_m2")

#: Accepted ``zero_pt`` of :func:`pseudorapidity`.
ZERO_PT = ("floor", "beam", "zero")

#: Floor of ``E - pz`` (and of ``1 + x``) in the guarded rapidity, as in ParT.
_RAPIDITY_EPS = 1e-20

# Registering is idempotent; it gives records named "Momentum4D" their vector methods
# (``.mass``, ``+``, ``ak.sum``) everywhere awkward arrays flow.
vector.register_awkward()


# --------------------------------------------------------------------------------------
# Array namespaces: numpy (also for awkward) and torch


def _unstack_numpy(v: Any) -> tuple[Any, ...]:
    return tuple(v[..., k] for k in range(v.shape[-1]))


#: numpy's functions under the names used below.  Awkward arrays take this path too: they
#: dispatch numpy's ufuncs and ``np.where`` to their contents, jagged or not.
_NUMPY = SimpleNamespace(
    is_torch=False,
    arcsinh=np.arcsinh,
    arctan2=np.arctan2,
    hypot=np.hypot,
    log=np.log,
    log1p=np.log1p,
    maximum=np.maximum,  # (x, scalar floor)
    minimum=np.minimum,
    mod=np.mod,
    sign=np.sign,
    sqrt=np.sqrt,
    subtract=np.subtract,
    where=np.where,
    stack=lambda xs: np.stack(xs, axis=-1),
    unstack=_unstack_numpy,  # (..., n) -> n arrays (...)
)


@functools.cache
def _torch_namespace() -> SimpleNamespace:
    import torch  # only here: physics is torch-free unless a tensor comes in

    return SimpleNamespace(
        is_torch=True,
        arcsinh=torch.asinh,
        arctan2=torch.atan2,
        hypot=torch.hypot,
        log=torch.log,
        log1p=torch.log1p,
        maximum=lambda x, floor: x.clamp(min=floor),
        minimum=torch.minimum,
        mod=torch.remainder,  # the sign of the divisor, as np.mod
        sign=torch.sign,
        sqrt=torch.sqrt,
        subtract=torch.subtract,
        where=torch.where,
        stack=lambda xs: torch.stack(xs, dim=-1),
        unstack=lambda v: v.unbind(dim=-1),
    )


def _is_torch(x: Any) -> bool:
    # by the type's module, so that no torch import is needed to tell
    return type(x).__module__.partition(".")[0] == "torch"


def _xp(*arrays: Any) -> SimpleNamespace:
    """The functions for ``arrays``: torch's if any is a torch tensor, else numpy's."""
    return _torch_namespace() if any(_is_torch(a) for a in arrays) else _NUMPY


def _float64(x: Any) -> Any:
    """A Python number as numpy float64 (whose division by 0 is inf, not an exception)."""
    return np.float64(x) if isinstance(x, int | float) else x


def _quiet(xp: SimpleNamespace) -> Any:
    """numpy's floating-point warnings off (inf/NaN are the documented results)."""
    return contextlib.nullcontext() if xp.is_torch else np.errstate(all="ignore")


# --------------------------------------------------------------------------------------
# Array functions


def pt(px: Any, py: Any) -> Any:
    """Transverse momentum ``sqrt(px^2 + py^2)``.

    numpy/awkward: ``hypot`` (no overflow); torch: ``sqrt(px*px + py*py)``, as ONNX has no
    hypot operator.
    """
    xp = _xp(px, py)
    if xp.is_torch:
        return xp.sqrt(px * px + py * py)
    return xp.hypot(px, py)


_pt = pt  # for functions whose ``pt`` argument hides it


def phi(px: Any, py: Any) -> Any:
    """Azimuth ``atan2(py, px)`` in [-pi, pi]."""
    return _xp(px, py).arctan2(py, px)


def pseudorapidity(
    px: Any,
    py: Any,
    pz: Any,
    *,
    pt: Any = None,
    zero_pt: str = "floor",
    eps: float = 1e-12,
) -> Any:
    """Pseudorapidity ``asinh(pz / pT)``.

    ``pt`` may pass :func:`pt` of ``(px, py)`` when the caller has it already.
    ``zero_pt`` says what a particle without transverse momentum gets:

    ``"floor"``  ``asinh(pz / max(pT, eps))`` everywhere: finite, huge for pT -> 0
    ``"beam"``   ``asinh(sign(pz) * 1e10)``, |eta| ~ 23.7 along the beam (0 if pz = 0)
    ``"zero"``   0 (e.g. a jet whose constituents sum to no transverse momentum)

    >>> [round(float(pseudorapidity(0.0, 0.0, 1.0, zero_pt=z)), 3) for z in ZERO_PT]
    [28.324, 23.719, 0.0]
    """
    xp = _xp(px, py, pz)
    pz = _float64(pz)
    pt_ = _float64(_pt(px, py) if pt is None else pt)
    with _quiet(xp):
        if zero_pt == "floor":
            return xp.arcsinh(pz / xp.maximum(pt_, eps))
        if zero_pt == "beam":
            return xp.arcsinh(xp.where(pt_ > 0, pz / pt_, xp.sign(pz) * 1e10))
        if zero_pt == "zero":
            return xp.where(pt_ > 0, xp.arcsinh(pz / xp.where(pt_ > 0, pt_, 1.0)), 0.0)
    raise ValueError(f"zero_pt must be one of {', '.join(ZERO_PT)}, got {zero_pt!r}")


def rapidity(pz: Any, e: Any, *, guarded: bool = False) -> Any:
    """Rapidity ``y = 0.5 ln((E + pz) / (E - pz))``.

    ``guarded`` False: written as is, so ``E = |pz|`` gives +-inf and ``E < |pz|`` NaN.
    ``guarded`` True (ParT's form): ``0.5 ln(1 + 2 pz / max(E - pz, 1e-20))``, finite at
    ``E = pz``; numpy/awkward take ``log1p``, torch ``ln(max(1 + x, 1e-20))``, which is
    finite also for ``E < |pz|`` from rounding (the networks must never see NaN).
    """
    xp = _xp(pz, e)
    pz, e = _float64(pz), _float64(e)
    with _quiet(xp):
        if not guarded:
            return 0.5 * xp.log((e + pz) / (e - pz))
        x = 2 * pz / xp.maximum(e - pz, _RAPIDITY_EPS)
        if xp.is_torch:
            return 0.5 * xp.log(xp.maximum(1 + x, _RAPIDITY_EPS))
        return 0.5 * xp.log1p(x)


def wrap_phi(dphi: Any) -> Any:
    """An angle (difference) wrapped into ``[-pi, pi)``: ``(dphi + pi) mod 2 pi - pi``."""
    xp = _xp(dphi)
    # the modulo form instead of +-2 pi corrections: correct for any input range
    with _quiet(xp):
        return xp.mod(dphi + math.pi, 2 * math.pi) - math.pi


def delta_phi(phi1: Any, phi2: Any) -> Any:
    """``phi1 - phi2`` wrapped into ``[-pi, pi)``; broadcasting (per event on jagged arrays)."""
    xp = _xp(phi1, phi2)
    with _quiet(xp):
        return wrap_phi(xp.subtract(phi1, phi2))


def delta_r(eta1: Any, phi1: Any, eta2: Any, phi2: Any, *, hypot: bool = False) -> Any:
    """Angular distance ``sqrt(deta^2 + dphi^2)`` with the azimuth wrapped properly.

    Pass rapidities for the (y, phi) distance.  ``hypot`` True takes ``hypot(deta, dphi)``
    (the generator's truth matching), which can differ from the plain form in the last bit.
    """
    xp = _xp(eta1, phi1, eta2, phi2)
    with _quiet(xp):
        deta = xp.subtract(eta1, eta2)
        dphi = delta_phi(phi1, phi2)
        if hypot:
            return xp.hypot(deta, dphi)
        return xp.sqrt(deta * deta + dphi * dphi)


def mass_squared(px: Any, py: Any, pz: Any, e: Any) -> Any:
    """``E^2 - |p|^2`` of a four-momentum (negative from rounding for massless ones)."""
    return e**2 - px**2 - py**2 - pz**2


def mass(px: Any, py: Any, pz: Any, e: Any) -> Any:
    """Invariant mass ``sqrt(max(E^2 - |p|^2, 0))``; pass summed components for a system."""
    xp = _xp(px, py, pz, e)
    return xp.sqrt(xp.maximum(mass_squared(px, py, pz, e), 0.0))


def _pair_delta_phi(px_a: Any, py_a: Any, px_b: Any, py_b: Any) -> Any:
    """Azimuthal angle between two transverse momenta, up to its sign."""
    xp = _xp(px_a, py_a, px_b, py_b)
    if not xp.is_torch:
        return wrap_phi(phi(px_a, py_a) - phi(px_b, py_b))
    # torch: atan2(p_a x p_b, p_a . p_b), one ONNX-friendly atan2 and no modulo (the angle
    # from b to a's opposite: the same up to its sign, and only its square is used).
    dot = px_a * px_b + py_a * py_b
    cross = px_a * py_b - py_a * px_b
    # atan2(0, 0) is 0 in torch but 0/0 = NaN in an exported ONNX graph: a particle of zero
    # momentum would poison its pairs there, so such pairs get atan2(0, 1) = 0 explicitly
    both_zero = (dot == 0) & (cross == 0)
    return xp.arctan2(cross, xp.where(both_zero, 1.0, dot))


def pair_features(va: Any, vb: Any, eps: float = 1e-8) -> Any:
    """ParT's pairwise features ``(ln kT, ln z, ln dR, ln m^2)`` of particle pairs.

    As ``pairwise_lv_fts`` of the Particle Transformer (arXiv:2202.03772, eq. 3)::

        dR    = sqrt((y_a - y_b)^2 + dphi_ab^2)        (y: rapidity, guarded)
        kT    = min(pT_a, pT_b) * dR
        z     = min(pT_a, pT_b) / max(pT_a + pT_b, eps)
        m^2   = (E_a + E_b)^2 - |p_a + p_b|^2
        each clamped to >= eps before the log.

    ``va`` and ``vb`` (..., 4) are four-momenta (px, py, pz, E), numpy arrays or torch
    tensors, broadcast against each other: ``v[:, :, None]`` and ``v[:, None, :]`` give
    every pair of a padded batch, ``v[jet, i]`` and ``v[jet, j]`` a list of pairs.  Returns
    (..., 4) in the dtype of the inputs, columns :data:`PAIR_FEATURES`, symmetric in a
    and b.  Padding is not masked here; degenerate inputs may give -inf or NaN in numpy.

    >>> import numpy as np
    >>> f = pair_features(np.array([30.0, 0, 0, 30]), np.array([0.0, 10, 0, 10]))
    >>> np.round(np.exp(f), 4).tolist()   # dR = pi/2, kT = 10 dR, z = 1/4, m^2 = 600
    [15.708, 0.25, 1.5708, 600.0]
    """
    xp = _xp(va, vb)
    px_a, py_a, pz_a, e_a = xp.unstack(va)
    px_b, py_b, pz_b, e_b = xp.unstack(vb)
    with _quiet(xp):
        pt_a, pt_b = pt(px_a, py_a), pt(px_b, py_b)
        drap = rapidity(pz_a, e_a, guarded=True) - rapidity(pz_b, e_b, guarded=True)
        dphi = _pair_delta_phi(px_a, py_a, px_b, py_b)
        delta = xp.sqrt(drap * drap + dphi * dphi)
        ptmin = xp.minimum(pt_a, pt_b)
        lndelta = xp.log(xp.maximum(delta, eps))
        lnkt = xp.log(xp.maximum(ptmin * delta, eps))
        lnz = xp.log(xp.maximum(ptmin / xp.maximum(pt_a + pt_b, eps), eps))
        lnm2 = xp.log(xp.maximum(mass_squared(*xp.unstack(va + vb)), eps))
        return xp.stack([lnkt, lnz, lndelta, lnm2])


# --------------------------------------------------------------------------------------
# Object collections (scikit-hep vector)


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
