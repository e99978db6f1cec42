"""Jet substructure observables shared by the jet and anomaly tasks and the generators.

:func:`nsubjettiness` computes N-subjettiness (Thaler, Van Tilburg, arXiv:1011.2268) with
exclusive-kT axes, vectorised over jets with FastJet's awkward interface; :func:`tau_ratio`
the ratios ``tau21 = tau2/tau1`` and ``tau32 = tau3/tau2`` (0 where the denominator is 0).
FastJet is imported inside the functions (``fivesigma.physics`` stays light).
"""

from __future__ import annotations

import warnings
from typing import Any

import awkward as ak
import numpy as np

from fivesigma.physics import kinematics

__all__ = ["nsubjettiness", "tau_ratio"]


def _rap_phi(px: Any, py: Any, pz: Any, e: Any) -> tuple[Any, Any]:
    # unguarded: a particle with E = |pz| gets an infinite rapidity (never the nearest axis)
    return kinematics.rapidity(pz, e), kinematics.phi(px, py)


def nsubjettiness(
    constituents: Any, n_max: int = 3, r0: float = 0.8, beta: float = 1.0
) -> np.ndarray:
    """N-subjettiness tau_1 .. tau_{n_max} with exclusive-kT axes, shape (N, n_max).

    ``constituents`` is a jagged awkward array (one list per jet) of records with fields
    ``px, py, pz, energy`` (GeV), or an object with such an array as ``.constituents``
    (a :class:`fivesigma.io.jets.JetSample`).

    ``tau_N = sum_i pT_i * min_k dR_ik^beta / (sum_i pT_i * r0^beta)`` with dR in
    (rapidity, phi).  The axes are the N exclusive jets of the kT algorithm run on the
    constituents with R = max_allowable_R (as fastjet-contrib's ``ExclusiveJetAxes``), so no
    particle is lost to the beam; ``r0`` only normalises.  A jet with at most N particles
    has tau_N = 0 (each particle can be its own axis); an empty jet has all tau = 0.
    """
    from fivesigma.physics._fastjet import import_fastjet

    fastjet = import_fastjet()

    c = getattr(constituents, "constituents", constituents)
    counts = np.asarray(ak.to_numpy(ak.num(c, axis=1)), dtype=np.int64)
    parts = ak.zip(
        {
            k2: ak.values_astype(c[k1], np.float64)
            for k1, k2 in (("px", "px"), ("py", "py"), ("pz", "pz"), ("energy", "E"))
        }
    )
    # Flat numpy per particle (awkward's per-call overhead dominates small jets otherwise).
    px, py, pz, e = (np.asarray(ak.to_numpy(ak.flatten(parts[f]))) for f in ("px", "py", "pz", "E"))
    jet_of = np.repeat(np.arange(counts.size), counts)
    pt = kinematics.pt(px, py)
    rap, phi = _rap_phi(px, py, pz, e)
    norm = np.bincount(jet_of, weights=pt, minlength=counts.size) * r0**beta
    taus = np.zeros((len(counts), n_max), dtype=np.float64)
    jet_def = fastjet.JetDefinition(fastjet.kt_algorithm, fastjet.JetDefinition.max_allowable_R)
    for n in range(1, n_max + 1):  # a loop over N (<= 3), not over jets
        has = counts > n
        sel = np.flatnonzero(has)
        if len(sel) == 0:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fastjet's generic "exclusive jets" caution
            axes = fastjet.ClusterSequence(parts[sel], jet_def).exclusive_jets(n)
        a_px, a_py, a_pz, a_e = (
            np.asarray(ak.to_numpy(ak.flatten(axes[f])), dtype=np.float64).reshape(sel.size, n)
            for f in ("px", "py", "pz", "E")
        )
        a_rap, a_phi = _rap_phi(a_px, a_py, a_pz, a_e)
        inside = has[jet_of]
        row = (np.cumsum(has) - 1)[jet_of[inside]]  # row in sel of each particle
        p_rap, p_phi, p_pt = rap[inside], phi[inside], pt[inside]
        best = None
        for k in range(n):
            d = kinematics.delta_r(p_rap, p_phi, a_rap[row, k], a_phi[row, k]) ** beta
            best = d if best is None else np.minimum(best, d)
        num = np.bincount(row, weights=p_pt * best, minlength=sel.size)
        taus[sel, n - 1] = num / np.where(norm[sel] > 0, norm[sel], 1.0)
    return taus


def tau_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` (e.g. tau21 = tau2 / tau1), 0 where the denominator is 0."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    safe = np.where(den != 0, den, 1.0)
    return np.where(den != 0, num / safe, 0.0)
