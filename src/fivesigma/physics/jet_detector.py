"""A simple, documented particle-flow style detector response for jet constituents.

:class:`JetDetectorResponse` turns the visible final-state particles of generated events
into "reconstructed" particles, vectorised over flat numpy arrays (one entry per particle,
with an event index so that many events are treated in one call), with its own seeded
:class:`numpy.random.Generator`.  It is a Delphes-card-like sketch of a particle-flow
reconstruction, every number a field of the frozen dataclass:

1. **Charged particles** (tracks), inside the tracker ``|eta| < 2.5``:

   - *tracking efficiency*, from the Delphes CMS card (``delphes_card_CMS.tcl``, charged
     hadron tracking): 0 below ``pT = 0.1 GeV``; 0.70 for ``0.1 < pT <= 1 GeV`` and 0.95
     above, for ``|eta| <= 1.5``; 0.60 and 0.85 for ``1.5 < |eta| < 2.5``.  The same
     efficiency is used for electrons and muons (a simplification; their tracking is in
     fact slightly better).
   - *momentum smearing* ``sigma_pT / pT = a (+) b * pT[GeV]`` with ``a = 0.01``,
     ``b = 1.5e-4`` (CMS: ~1-2 % at 100 GeV in the barrel, ~15 % at 1 TeV).  The whole
     four-momentum is scaled by the same factor, so the direction is unchanged.

   - *impact parameters*: the transverse ``d0`` and longitudinal ``dz`` impact parameters
     (mm) with respect to the nominal primary vertex (the origin) from the production
     vertex ``(x, y, z)`` and the momentum, a straight line (no magnetic field, see
     :func:`impact_parameters`): ``d0 = (x py - y px) / pT`` (signed as written) and
     ``dz = z - (x px + y py) pz / pT^2``.  Each is smeared with a Gaussian of
     ``sigma(d0) = a_d0 (+) b_d0 / pT[GeV]``, ``a_d0 = 0.010 mm``, ``b_d0 = 0.090 mm GeV``
     and ``sigma(dz) = a_dz (+) b_dz / pT``, ``a_dz = 0.030 mm``, ``b_dz = 0.100 mm GeV``
     (CMS-like: ~10 um at high pT, ~100 um at 1 GeV, dominated by multiple scattering
     below a few GeV), with the reconstructed pT; that sigma is stored as the error
     (``d0err``, ``dzerr``), as a track fit would estimate it.  Setting the four
     parameters to 0 switches the smearing off (true values, errors 0).

   Charged particles outside the tracker are not reconstructed (simplification: a real
   detector would see their calorimeter deposits).
2. **Photons** (ECAL): cells of ``0.025 x 0.025`` in (eta, phi) up to ``|eta| < 5``
   (ATLAS LAr middle layer granularity).  The photon energies in one cell of one event are
   summed into one deposit at the cell centre (massless), whose energy is then smeared with
   ``sigma_E / E = 0.10 / sqrt(E[GeV]) (+) 0.007`` (ATLAS LAr design, as in
   :class:`fivesigma.physics.detector.LeptonResponse`); deposits below 0.5 GeV are dropped.
3. **Neutral hadrons** (HCAL): the same with cells of ``0.1 x 0.1``,
   ``sigma_E / E = 0.50 / sqrt(E) (+) 0.03`` (ATLAS tile calorimeter: 50 %/sqrt(E),
   3 % constant) and a 1 GeV threshold.

``(+)`` is addition in quadrature.  The phi cells tile the circle exactly (``round(2 pi /
size)`` cells of equal width), the eta cells are ``[k size, (k+1) size)``.  A merged cell
has the PDG id of its most energetic contribution and charge 0.  Smeared energies below 0
are set to 0 (and then fail the threshold).  Calorimeter cells have no track: their
``d0, dz, d0err, dzerr`` are 0.  ``enabled=False`` gives truth level:
:meth:`JetDetectorResponse.apply` then returns its input unchanged, with the true impact
parameters of the charged particles (0 for neutral ones) and errors 0.

Particle classes (:func:`~fivesigma.physics.particles.particle_class`): 0 charged hadron,
1 neutral hadron, 2 photon, 3 electron, 4 muon.

Example
-------
>>> import numpy as np
>>> resp = JetDetectorResponse()
>>> float(resp.track_efficiency(np.array([0.5]), np.array([0.0]))[0])
0.7
>>> out = resp.apply(np.array([10.0]), np.array([0.0]), np.array([0.0]), np.array([10.0]),
...                  np.array([22]), np.array([0.0]), rng=np.random.default_rng(1))
>>> out["pid"].tolist(), out["charge"].tolist()
([22], [0.0])
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from fivesigma.errors import ConfigError
from fivesigma.physics import kinematics
from fivesigma.physics.particles import (
    CHARGED_HADRON,
    ELECTRON,
    MUON,
    NEUTRAL_HADRON,
    PHOTON,
    particle_class,
)

__all__ = [
    "CHARGED_HADRON",
    "ELECTRON",
    "MUON",
    "NEUTRAL_HADRON",
    "PHOTON",
    "JetDetectorResponse",
    "impact_parameters",
    "merge_cells",
    "particle_class",
]

_FIELDS = ("px", "py", "pz", "energy", "pid", "charge", "event", "d0", "dz", "d0err", "dzerr")
_IP_FIELDS = ("d0", "dz", "d0err", "dzerr")


def impact_parameters(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
    pz: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Straight-line impact parameters (d0, dz) in mm with respect to the origin.

    A particle produced at ``(x, y, z)`` (mm) with momentum ``(px, py, pz)`` (any unit:
    only the direction matters) travels on the line ``(x, y, z) + t p`` (no magnetic
    field).  Its point of closest approach to the beam line (the z axis) in the transverse
    plane is at ``t = -(x px + y py) / pT^2``, which gives

    ``d0 = (x py - y px) / pT`` (signed as written: ``L_z / pT``, positive when the track
    goes counter-clockwise around the beam line, seen from +z) and
    ``dz = z - (x px + y py) pz / pT^2``, the z of that point.

    A particle with ``pT = 0`` gets ``d0 = 0`` and ``dz = z``.

    >>> d0, dz = impact_parameters(np.array([1.0]), np.array([2.0]), np.array([3.0]),
    ...                            np.array([3.0]), np.array([4.0]), np.array([5.0]))
    >>> round(float(d0[0]), 12), round(float(dz[0]), 12)   # (4 - 6)/5, 3 - 11*5/25
    (-0.4, 0.8)
    """
    x, y, z, px, py, pz = (np.asarray(a, dtype=np.float64) for a in (x, y, z, px, py, pz))
    pt2 = px**2 + py**2
    safe = np.where(pt2 > 0, pt2, 1.0)
    d0 = np.where(pt2 > 0, (x * py - y * px) / np.sqrt(safe), 0.0)
    dz = z - np.where(pt2 > 0, (x * px + y * py) * pz / safe, 0.0)
    return d0, dz


def merge_cells(
    event: np.ndarray,
    eta: np.ndarray,
    phi: np.ndarray,
    energy: np.ndarray,
    pid: np.ndarray,
    size: float,
) -> dict[str, np.ndarray]:
    """Sum the energies of deposits that fall into the same (event, eta, phi) cell.

    Parameters
    ----------
    event, eta, phi, energy, pid
        Flat arrays, one entry per deposit (energy in GeV, phi in radians).
    size
        Cell size in eta; the phi cells are ``round(2 pi / size)`` equal slices.

    Returns
    -------
    dict
        ``event``, ``eta``, ``phi`` (cell centres), ``energy`` (summed) and ``pid`` (of the
        most energetic deposit), one entry per non-empty cell, sorted by (event, cell).
    """
    event = np.asarray(event, dtype=np.int64)
    eta = np.asarray(eta, dtype=np.float64)
    phi = np.asarray(phi, dtype=np.float64)
    energy = np.asarray(energy, dtype=np.float64)
    pid = np.asarray(pid)
    nphi = max(1, round(2.0 * math.pi / size))
    dphi = 2.0 * math.pi / nphi
    ieta = np.floor(eta / size).astype(np.int64)
    iphi = np.floor((np.mod(phi + math.pi, 2.0 * math.pi)) / dphi).astype(np.int64)
    iphi = np.clip(iphi, 0, nphi - 1)  # guards phi == pi after rounding
    # One int64 key per (event, ieta, iphi); ieta is bounded by |eta| < ~20 / size.
    span = 2 * (int(40.0 / size) + 1)
    key = (event * span + (ieta + span // 2)) * nphi + iphi
    # Most energetic deposit first inside each cell, so its pid labels the cell.
    order = np.lexsort((-energy, key))
    skey = key[order]
    start = np.flatnonzero(np.r_[True, skey[1:] != skey[:-1]]) if skey.size else skey
    summed = np.add.reduceat(energy[order], start) if skey.size else energy[:0]
    lead = order[start]
    return {
        "event": event[lead],
        "eta": (ieta[lead] + 0.5) * size,
        "phi": -math.pi + (iphi[lead] + 0.5) * dphi,
        "energy": summed,
        "pid": pid[lead],
    }


@dataclass(frozen=True)
class JetDetectorResponse:
    """Parameters of the particle-level response; units GeV (impact parameters: mm).

    See the module docstring.
    """

    enabled: bool = True
    tracker_eta_max: float = 2.5
    track_pt_min: float = 0.1
    track_pt_split: float = 1.0  # efficiency switches from *_low to *_high here
    barrel_eta_max: float = 1.5
    track_efficiency_barrel_low: float = 0.70
    track_efficiency_barrel_high: float = 0.95
    track_efficiency_endcap_low: float = 0.60
    track_efficiency_endcap_high: float = 0.85
    track_constant: float = 0.01  # a in sigma_pT/pT = a (+) b*pT
    track_linear: float = 1.5e-4  # b, per GeV
    d0_constant: float = 0.010  # a in sigma(d0) = a (+) b/pT, mm
    d0_inverse_pt: float = 0.090  # b, mm GeV
    dz_constant: float = 0.030  # a in sigma(dz) = a (+) b/pT, mm
    dz_inverse_pt: float = 0.100  # b, mm GeV
    calo_eta_max: float = 5.0
    ecal_cell: float = 0.025
    ecal_stochastic: float = 0.10  # a in sigma_E/E = a/sqrt(E) (+) c
    ecal_constant: float = 0.007  # c
    photon_energy_min: float = 0.5
    hcal_cell: float = 0.1
    hcal_stochastic: float = 0.50
    hcal_constant: float = 0.03
    neutral_hadron_energy_min: float = 1.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "enabled":
                continue
            if not np.isfinite(value) or value < 0:
                raise ConfigError(
                    f"JetDetectorResponse.{f.name}: must be finite and >= 0, got {value!r}"
                )
            if f.name.startswith("track_efficiency") and value > 1:
                raise ConfigError(f"JetDetectorResponse.{f.name}: must be in [0, 1], got {value!r}")
        for name in ("ecal_cell", "hcal_cell"):
            if getattr(self, name) <= 0:
                raise ConfigError(
                    f"JetDetectorResponse.{name}: must be > 0, got {getattr(self, name)!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        """All parameters, for provenance and cache keys."""
        return dataclasses.asdict(self)

    # ----------------------------------------------------------------------------------
    # The pieces, public so that tests and users can check them against the formulas.

    def track_efficiency(self, pt: np.ndarray, eta: np.ndarray) -> np.ndarray:
        """Tracking efficiency per charged particle (0 outside the tracker or below pT min)."""
        pt = np.asarray(pt, dtype=np.float64)
        abseta = np.abs(np.asarray(eta, dtype=np.float64))
        high = pt > self.track_pt_split
        barrel = np.where(high, self.track_efficiency_barrel_high, self.track_efficiency_barrel_low)
        endcap = np.where(high, self.track_efficiency_endcap_high, self.track_efficiency_endcap_low)
        eff = np.where(abseta <= self.barrel_eta_max, barrel, endcap)
        inside = (abseta < self.tracker_eta_max) & (pt > self.track_pt_min)
        return np.where(inside, eff, 0.0)

    def track_resolution(self, pt: np.ndarray) -> np.ndarray:
        """Relative resolution sigma_pT / pT of tracks."""
        return np.hypot(self.track_constant, self.track_linear * np.asarray(pt, dtype=np.float64))

    def impact_parameter_resolution(self, pt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Resolutions (sigma_d0, sigma_dz) in mm of tracks of transverse momentum ``pt`` (GeV).

        >>> s_d0, s_dz = JetDetectorResponse().impact_parameter_resolution(np.array([1.0]))
        >>> round(float(s_d0[0]), 4), round(float(s_dz[0]), 4)   # 10 (+) 90 um, 30 (+) 100 um
        (0.0906, 0.1044)
        """
        pt = np.asarray(pt, dtype=np.float64)
        with np.errstate(divide="ignore"):
            inv = 1.0 / pt  # pT = 0 gives an infinite sigma (never a track)
        return (
            np.hypot(self.d0_constant, self.d0_inverse_pt * inv),
            np.hypot(self.dz_constant, self.dz_inverse_pt * inv),
        )

    def ecal_resolution(self, energy: np.ndarray) -> np.ndarray:
        """Relative resolution sigma_E / E of ECAL cells (photons)."""
        return _calo_resolution(energy, self.ecal_stochastic, self.ecal_constant)

    def hcal_resolution(self, energy: np.ndarray) -> np.ndarray:
        """Relative resolution sigma_E / E of HCAL cells (neutral hadrons)."""
        return _calo_resolution(energy, self.hcal_stochastic, self.hcal_constant)

    # ----------------------------------------------------------------------------------

    def apply(
        self,
        px: np.ndarray,
        py: np.ndarray,
        pz: np.ndarray,
        energy: np.ndarray,
        pid: np.ndarray,
        charge: np.ndarray,
        event: np.ndarray | None = None,
        rng: np.random.Generator | int | None = None,
        vertex: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Reconstruct particles.

        Parameters
        ----------
        px, py, pz, energy
            Four-momenta (GeV) of the visible final-state particles, flat.
        pid, charge
            Signed PDG ids and electric charges (units of e).
        event
            Event index of each particle (default: all in event 0); cells never merge
            deposits of different events.
        rng
            A numpy Generator or a seed.  Random numbers are drawn for all particles
            and all cells whatever their type, so a seed fixes the result.
        vertex
            Production vertices ``(x, y, z)`` in mm, flat like ``px``; default the
            origin (every particle prompt, true impact parameters 0).

        Returns
        -------
        dict
            ``px, py, pz, energy`` (float64), ``pid`` (int32), ``charge`` (float64),
            ``event`` (int64) and the impact parameters ``d0, dz`` with their errors
            ``d0err, dzerr`` (float64, mm; 0 for calorimeter cells) of the reconstructed
            particles, grouped by event (stable: tracks first in input order, then ECAL
            cells, then HCAL cells).  With ``enabled=False`` the input, unchanged, with
            the true ``d0, dz`` of charged particles (0 for neutral ones) and errors 0.
        """
        px, py, pz, energy = (np.asarray(a, dtype=np.float64) for a in (px, py, pz, energy))
        pid = np.asarray(pid).astype(np.int32)
        charge = np.asarray(charge, dtype=np.float64)
        n = px.size
        event = np.zeros(n, dtype=np.int64) if event is None else np.asarray(event, dtype=np.int64)
        if vertex is None:
            vx = vy = vz = np.zeros(n)
        else:
            vx, vy, vz = (np.asarray(a, dtype=np.float64) for a in vertex)
        if not all(a.shape == (n,) for a in (py, pz, energy, pid, charge, event, vx, vy, vz)):
            raise ValueError(
                "px, py, pz, energy, pid, charge, event and vertex x, y, z must be 1-d, same length"
            )
        charged = charge != 0
        # The impact parameters of a track; a neutral particle leaves no track, so 0.
        d0, dz = impact_parameters(vx, vy, vz, px, py, pz)
        d0, dz = np.where(charged, d0, 0.0), np.where(charged, dz, 0.0)
        if not self.enabled:
            zero = np.zeros(n)
            return dict(
                zip(
                    _FIELDS,
                    (px, py, pz, energy, pid, charge, event, d0, dz, zero, zero),
                    strict=True,
                )
            )
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        u = rng.random(n)
        z = rng.standard_normal(n)
        pt = kinematics.pt(px, py)
        # a particle along the beam gets |eta| ~ 23.7: outside the tracker and calorimeters
        eta = kinematics.pseudorapidity(px, py, pz, pt=pt, zero_pt="beam")
        phi = kinematics.phi(px, py)

        # Tracks: efficiency, then pT smearing of the whole four-momentum.
        scale = 1.0 + self.track_resolution(pt) * z
        # A (very rare) non-positive smeared pT is no track.
        kept = charged & (u < self.track_efficiency(pt, eta)) & (scale > 0)
        tracks = {
            "px": px[kept] * scale[kept],
            "py": py[kept] * scale[kept],
            "pz": pz[kept] * scale[kept],
            "energy": energy[kept] * scale[kept],
            "pid": pid[kept],
            "charge": charge[kept],
            "event": event[kept],
        }
        in_calo = np.abs(eta) < self.calo_eta_max
        photons = ~charged & (pid == 22) & in_calo
        hadrons = ~charged & (pid != 22) & in_calo
        ecal = self._calorimeter(
            event,
            eta,
            phi,
            energy,
            pid,
            photons,
            self.ecal_cell,
            self.ecal_stochastic,
            self.ecal_constant,
            self.photon_energy_min,
            rng,
        )
        hcal = self._calorimeter(
            event,
            eta,
            phi,
            energy,
            pid,
            hadrons,
            self.hcal_cell,
            self.hcal_stochastic,
            self.hcal_constant,
            self.neutral_hadron_energy_min,
            rng,
        )
        # Impact-parameter smearing draws last, for every particle: the kinematics of a
        # seed are then those the response gave before impact parameters existed.
        z_d0 = rng.standard_normal(n)
        z_dz = rng.standard_normal(n)
        # The error is the sigma at the measured pT, what a track fit would report.
        sigma_d0, sigma_dz = self.impact_parameter_resolution(pt[kept] * scale[kept])
        tracks["d0"] = d0[kept] + sigma_d0 * z_d0[kept]
        tracks["dz"] = dz[kept] + sigma_dz * z_dz[kept]
        tracks["d0err"], tracks["dzerr"] = sigma_d0, sigma_dz
        out = {k: np.concatenate([tracks[k], ecal[k], hcal[k]]) for k in _FIELDS}
        order = np.argsort(out["event"], kind="stable")
        return {k: v[order] for k, v in out.items()}

    @staticmethod
    def _calorimeter(
        event: np.ndarray,
        eta: np.ndarray,
        phi: np.ndarray,
        energy: np.ndarray,
        pid: np.ndarray,
        mask: np.ndarray,
        size: float,
        stochastic: float,
        constant: float,
        threshold: float,
        rng: np.random.Generator,
    ) -> dict[str, np.ndarray]:
        """Merge the selected deposits into cells, smear cell energies, apply a threshold."""
        cells = merge_cells(event[mask], eta[mask], phi[mask], energy[mask], pid[mask], size)
        e = cells["energy"]
        z = rng.standard_normal(e.size)
        e = np.maximum(e * (1.0 + _calo_resolution(e, stochastic, constant) * z), 0.0)
        keep = e >= threshold
        e = e[keep]
        pt = e / np.cosh(cells["eta"][keep])  # massless deposit at the cell centre
        return {
            "px": pt * np.cos(cells["phi"][keep]),
            "py": pt * np.sin(cells["phi"][keep]),
            "pz": pt * np.sinh(cells["eta"][keep]),
            "energy": e,
            "pid": cells["pid"][keep].astype(np.int32),
            "charge": np.zeros(e.size),
            "event": cells["event"][keep],
            **{name: np.zeros(e.size) for name in _IP_FIELDS},
        }


def _calo_resolution(energy: np.ndarray, stochastic: float, constant: float) -> np.ndarray:
    energy = np.asarray(energy, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        stoch = np.where(energy > 0, stochastic / np.sqrt(np.where(energy > 0, energy, 1.0)), 0.0)
    return np.hypot(stoch, constant)
