"""PDG ids: masses, charges and the particle classes of jet constituents.

Particle classes (the ``part_class`` branch of jet samples, the ``cls`` constituent field):
0 charged hadron, 1 neutral hadron, 2 photon, 3 electron, 4 muon (:data:`PARTICLE_CLASSES`).

>>> m, q, c = pdg_properties(np.array([211, -11, 22, 2112]))
>>> q.tolist(), c.tolist()
([1, 1, 0, 0], [0, 3, 2, 1])
>>> particle_class(np.array([211, 22, -13]), np.array([1.0, 0.0, 1.0])).tolist()
[0, 2, 4]
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CHARGED_HADRON",
    "ELECTRON",
    "MUON",
    "NEUTRAL_HADRON",
    "PARTICLE_CLASSES",
    "PHOTON",
    "particle_class",
    "pdg_properties",
]

CHARGED_HADRON, NEUTRAL_HADRON, PHOTON, ELECTRON, MUON = 0, 1, 2, 3, 4
#: Particle class code -> name.
PARTICLE_CLASSES: dict[int, str] = {
    CHARGED_HADRON: "charged hadron",
    NEUTRAL_HADRON: "neutral hadron",
    PHOTON: "photon",
    ELECTRON: "electron",
    MUON: "muon",
}

# pdgid -> (mass GeV, charge, class) for the stable particles found in jets.
_PDG: dict[int, tuple[float, int, int]] = {
    22: (0.0, 0, PHOTON),
    11: (0.51099895e-3, -1, ELECTRON),
    13: (0.1056583755, -1, MUON),
    211: (0.13957039, 1, CHARGED_HADRON),
    321: (0.493677, 1, CHARGED_HADRON),
    2212: (0.93827208816, 1, CHARGED_HADRON),
    130: (0.497611, 0, NEUTRAL_HADRON),
    310: (0.497611, 0, NEUTRAL_HADRON),
    2112: (0.93956542052, 0, NEUTRAL_HADRON),
    3122: (1.115683, 0, NEUTRAL_HADRON),
}


def pdg_properties(pid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mass (GeV), charge and particle class of each PDG id (any shape, vectorised).

    From a table of the stable particles found in jets (photon, e, mu, pi+-, K+-, p, K0L,
    K0S, n, Lambda).  Antiparticles (negative ids) get the opposite charge.  Unknown ids
    get mass 0, charge 0 and class 1 (neutral hadron).
    """
    pid = np.asarray(pid).astype(np.int64)
    apid = np.abs(pid)
    mass = np.zeros(pid.shape, dtype=np.float64)
    charge = np.zeros(pid.shape, dtype=np.int32)
    cls = np.ones(pid.shape, dtype=np.int32)
    for code, (m, q, c) in _PDG.items():
        hit = apid == code
        mass[hit] = m
        charge[hit] = q * np.sign(pid[hit])
        cls[hit] = c
    return mass, charge, cls


def particle_class(pid: np.ndarray, charge: np.ndarray) -> np.ndarray:
    """Particle class codes (int32) from PDG ids and charges, for any particle.

    Photons, electrons and muons by id; every other particle is a charged or a neutral
    hadron by its charge (unlike :func:`pdg_properties`, which knows only its table).
    """
    aid = np.abs(np.asarray(pid))
    charged = np.asarray(charge) != 0
    out = np.where(charged, CHARGED_HADRON, NEUTRAL_HADRON)
    out = np.where(aid == 22, PHOTON, out)
    out = np.where(aid == 11, ELECTRON, out)
    out = np.where(aid == 13, MUON, out)
    return out.astype(np.int32)
