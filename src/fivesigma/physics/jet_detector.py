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
are set to 0 (and then fail the threshold).  ``enabled=False`` gives truth level:
:meth:`JetDetectorResponse.apply` then returns its input unchanged.

Particle classes (:func:`particle_class`): 0 charged hadron, 1 neutral hadron, 2 photon,
3 electron, 4 muon.

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

from ..errors import ConfigError

__all__ = [
    "CHARGED_HADRON",
    "ELECTRON",
    "MUON",
    "NEUTRAL_HADRON",
    "PHOTON",
    "JetDetectorResponse",
    "merge_cells",
    "particle_class",
]

CHARGED_HADRON, NEUTRAL_HADRON, PHOTON, ELECTRON, MUON = 0, 1, 2, 3, 4

_FIELDS = ("px", "py", "pz", "energy", "pid", "charge", "event")


def particle_class(pid: np.ndarray, charge: np.ndarray) -> np.ndarray:
    """Particle class codes (int32): 0 charged hadron, 1 neutral hadron, 2 photon,
    3 electron, 4 muon."""
    aid = np.abs(np.asarray(pid))
    charged = np.asarray(charge) != 0
    out = np.where(charged, CHARGED_HADRON, NEUTRAL_HADRON)
    out = np.where(aid == 22, PHOTON, out)
    out = np.where(aid == 11, ELECTRON, out)
    out = np.where(aid == 13, MUON, out)
    return out.astype(np.int32)


def _eta_phi(px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(np.where(pt > 0, pz / pt, np.sign(pz) * 1e10))
    return eta, np.arctan2(py, px)


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
    """Parameters of the particle-level response; units GeV.  See the module docstring."""

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

        Returns
        -------
        dict
            ``px, py, pz, energy`` (float64), ``pid`` (int32), ``charge`` (float64) and
            ``event`` (int64) of the reconstructed particles, grouped by event (stable:
            tracks first in input order, then ECAL cells, then HCAL cells).  With
            ``enabled=False`` the input, unchanged.
        """
        px, py, pz, energy = (np.asarray(a, dtype=np.float64) for a in (px, py, pz, energy))
        pid = np.asarray(pid).astype(np.int32)
        charge = np.asarray(charge, dtype=np.float64)
        n = px.size
        event = np.zeros(n, dtype=np.int64) if event is None else np.asarray(event, dtype=np.int64)
        if not all(a.shape == (n,) for a in (py, pz, energy, pid, charge, event)):
            raise ValueError("px, py, pz, energy, pid, charge and event must be 1-d, same length")
        if not self.enabled:
            return dict(zip(_FIELDS, (px, py, pz, energy, pid, charge, event), strict=True))
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        u = rng.random(n)
        z = rng.standard_normal(n)
        eta, phi = _eta_phi(px, py, pz)
        pt = np.hypot(px, py)

        # Tracks: efficiency, then pT smearing of the whole four-momentum.
        charged = charge != 0
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
        }


def _calo_resolution(energy: np.ndarray, stochastic: float, constant: float) -> np.ndarray:
    energy = np.asarray(energy, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        stoch = np.where(energy > 0, stochastic / np.sqrt(np.where(energy > 0, energy, 1.0)), 0.0)
    return np.hypot(stoch, constant)
