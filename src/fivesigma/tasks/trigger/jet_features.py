"""The 16 high-level jet features of the L1 jet tagger (as hls4ml's 16 -> 64 -> 32 -> 32 -> 5).

hls4ml's published tagger reads 16 substructure observables of the "hls4ml LHC jet
dataset" (mass-drop-groomed energy correlation functions, multiplicity, z log z).  These
are the same kind of quantities computed from the constituents of the generated jets:
no grooming, so the jet mass and the two-point correlations are ungroomed.

========================  =====================================================
``mass``                  jet invariant mass (GeV)
``mass_over_pt``          mass / pT
``multiplicity``          number of constituents
``n_charged``             number of charged constituents
``tau1`` ``tau2``         N-subjettiness, beta = 1, R0 = 0.8, exclusive-kT axes
``tau3``
``tau21`` ``tau32``       their ratios
``pt_d``                  sqrt(sum pT_i^2) / sum pT_i
``girth``                 sum pT_i dR_i / sum pT_i (dR to the jet axis)
``zlogz``                 sum z_i ln z_i, z_i = pT_i / sum pT
``e2_b1`` ``e2_b2``       sum_{i<j} z_i z_j dR_ij^beta, beta = 1, 2
``lead_frac``             pT of the hardest constituent / sum pT
``charged_frac``          charged pT / sum pT
========================  =====================================================
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np

from fivesigma.physics import kinematics
from fivesigma.physics.substructure import nsubjettiness, tau_ratio

__all__ = ["JET_FEATURES", "jet_features"]

JET_FEATURES = (
    "mass",
    "mass_over_pt",
    "multiplicity",
    "n_charged",
    "tau1",
    "tau2",
    "tau3",
    "tau21",
    "tau32",
    "pt_d",
    "girth",
    "zlogz",
    "e2_b1",
    "e2_b2",
    "lead_frac",
    "charged_frac",
)

#: constituents (pT-ordered) entering the two-point correlations; the rest carry < 1%
_PAIR_PARTICLES = 64
_CHUNK = 2000


def _padded(values: Any, width: int) -> np.ndarray:
    return np.asarray(
        ak.to_numpy(ak.fill_none(ak.pad_none(values, width, clip=True, axis=1), 0.0)),
        dtype=np.float64,
    )


def jet_features(constituents: Any) -> np.ndarray:
    """(N, 16) float64 features (:data:`JET_FEATURES`) of jets given as a jagged awkward
    array of constituent records ``px, py, pz, energy`` (and ``charge`` when known)."""
    c = constituents
    px, py, pz, e = (ak.values_astype(c[k], np.float64) for k in ("px", "py", "pz", "energy"))
    pt = kinematics.pt(px, py)
    rap = kinematics.rapidity(pz, e)
    phi = kinematics.phi(px, py)
    sum_pt = np.asarray(ak.to_numpy(ak.sum(pt, axis=1)), dtype=np.float64)
    safe = np.where(sum_pt > 0, sum_pt, 1.0)
    jpx, jpy, jpz, je = (np.asarray(ak.to_numpy(ak.sum(v, axis=1))) for v in (px, py, pz, e))
    jet_pt = np.hypot(jpx, jpy)
    mass = np.sqrt(np.maximum(je**2 - jpx**2 - jpy**2 - jpz**2, 0.0))
    jet_rap = kinematics.rapidity(jpz, je)
    jet_phi = np.arctan2(jpy, jpx)
    dr = kinematics.delta_r(rap, phi, jet_rap, jet_phi)
    z = pt / safe
    n = np.asarray(ak.to_numpy(ak.num(pt, axis=1)), dtype=np.float64)
    if "charge" in ak.fields(c):
        charged = c["charge"] != 0
        n_charged = np.asarray(ak.to_numpy(ak.sum(charged, axis=1)), dtype=np.float64)
        charged_pt = np.asarray(ak.to_numpy(ak.sum(pt * charged, axis=1)))
    else:
        n_charged = np.zeros_like(n)
        charged_pt = np.zeros_like(n)
    taus = nsubjettiness(constituents, n_max=3, r0=0.8, beta=1.0)
    zlogz = np.asarray(
        ak.to_numpy(ak.sum(ak.where(z > 0, z * np.log(ak.where(z > 0, z, 1)), 0), axis=1))
    )
    e2 = np.zeros((len(n), 2))
    zp, yp, fp = (_padded(v, _PAIR_PARTICLES) for v in (z, rap, phi))
    for start in range(0, len(n), _CHUNK):
        sl = slice(start, start + _CHUNK)
        dy = yp[sl, :, None] - yp[sl, None, :]
        dphi = (fp[sl, :, None] - fp[sl, None, :] + np.pi) % (2 * np.pi) - np.pi
        d2 = dy**2 + dphi**2
        zz = zp[sl, :, None] * zp[sl, None, :]
        e2[sl, 0] = 0.5 * np.sum(zz * np.sqrt(d2), axis=(1, 2))
        e2[sl, 1] = 0.5 * np.sum(zz * d2, axis=(1, 2))
    cols = [
        mass,
        mass / np.where(jet_pt > 0, jet_pt, 1.0),
        n,
        n_charged,
        taus[:, 0],
        taus[:, 1],
        taus[:, 2],
        tau_ratio(taus[:, 1], taus[:, 0]),
        tau_ratio(taus[:, 2], taus[:, 1]),
        np.sqrt(np.asarray(ak.to_numpy(ak.sum(pt**2, axis=1)))) / safe,
        np.asarray(ak.to_numpy(ak.sum(pt * dr, axis=1))) / safe,
        zlogz,
        e2[:, 0],
        e2[:, 1],
        np.asarray(ak.to_numpy(ak.fill_none(ak.max(pt, axis=1), 0.0))) / safe,
        charged_pt / safe,
    ]
    return np.stack(cols, axis=1)
