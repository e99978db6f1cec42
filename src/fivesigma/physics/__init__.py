"""fivesigma.physics: kinematics (scikit-hep ``vector``), later jet clustering and detector response."""

from fivesigma.physics.kinematics import (
    MZ,
    delta_phi,
    delta_r,
    invariant_mass,
    p4,
    pt_of_sum,
    z_pairing,
)

__all__ = [
    "MZ",
    "delta_phi",
    "delta_r",
    "invariant_mass",
    "p4",
    "pt_of_sum",
    "z_pairing",
]
