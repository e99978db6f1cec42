"""fivesigma.physics: the physics shared by every task, torch-free.

- :mod:`~fivesigma.physics.kinematics`: pT, (pseudo)rapidity, phi, delta R, masses and
  ParT's pairwise features on numpy, awkward or torch arrays; sums of object collections
  (scikit-hep ``vector``).
- :mod:`~fivesigma.physics.labels`: truth-label schemas (jet label codes and the class
  groupings built on them).
- :mod:`~fivesigma.physics.particles`: PDG ids -> mass, charge, particle class.
- :mod:`~fivesigma.physics.detector`, :mod:`~fivesigma.physics.jet_detector`: detector
  responses of the generators.
"""

from fivesigma.physics.kinematics import (
    MZ,
    delta_phi,
    delta_r,
    invariant_mass,
    mass,
    mass_squared,
    p4,
    pair_features,
    phi,
    pseudorapidity,
    pt,
    pt_of_sum,
    rapidity,
    wrap_phi,
    z_pairing,
)

__all__ = [
    "MZ",
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
