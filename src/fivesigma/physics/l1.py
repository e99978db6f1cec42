"""A Level-1 trigger view of events: calorimeter towers, L1 objects at hardware scales.

Coarse like the Phase-1 CMS L1 calorimeter and muon triggers, numpy only.

Calorimeter towers
------------------
72 towers in phi (2 pi / 72 = 0.087 each) by 80 in eta: 28 per side over |eta| < 3 with
the CMS trigger-tower boundaries (0.087 wide up to |eta| = 1.74, then 1.83, 1.93, 2.043,
2.172, 2.322, 2.5, 2.65, 3.0) and 12 forward (HF) towers per side to |eta| = 5.191
(:data:`ETA_EDGES`).  Visible final-state particles deposit their ET in the tower their
direction at the vertex points to (no bending): photons and electrons in the EM part,
hadrons in the hadronic part, muons a MIP of ``muon_mip`` GeV of energy (hadronic);
hadrons are seen with a non-compensating response, ``1 - (1 - h/e) (E / 1 GeV)^-0.2``
(``had_h_over_e`` = 0.6: 60% at 1 GeV, 77% at 10 GeV, 86% at 100 GeV); neutrinos leave
nothing, nor do charged particles with pT below ``barrel_curl_pt`` in
the barrel (|eta| < 1.48), which curl up before the calorimeter (0.3 B R / 2 = 0.73 GeV
for CMS's 3.8 T and 1.29 m).  Each tower's EM and hadronic ET are smeared with a
Gaussian stochastic + constant term, ``sigma(E) / E = a / sqrt(E) (+) c`` (EM: 10%, 1%;
hadronic: 100%, 5%; forward: 150%, 10%, applied to both parts), clipped at 0, summed,
and towers below ``tower_threshold`` (ET, GeV) are zeroed.  The hardware tower ET is
``floor(ET / 0.5 GeV)`` saturated at 9 bits (511).

CICADA regions
--------------
18 (phi) x 14 (eta) regions of 4 x 4 towers over |eta| < 3; a region's ET is the sum of its
16 hardware tower ETs (integer arithmetic, 0.5 GeV LSB) saturated at 10 bits (1023).

L1 objects
----------
- **jets** (up to 10): the Phase-1 9 x 9 tower sliding window on all towers
  (|eta| < ``jet_eta_max``, default 5): a seed tower with ET >= ``jet_seed_threshold``
  that is the local maximum of its 9 x 9 window (ties: the higher tower index wins), ET =
  the window's sum minus the "chunky donut" pile-up estimate (the four 3 x 9 strips around
  the window, the lowest three summed: as many towers as the window) when
  ``jet_pu_subtraction``; kept above ``jet_pt_min`` (20 GeV); at the seed tower's centre.  Not
  calibrated: the response is below 1 (neutrinos, thresholds, curling, hadronic
  resolution).
- **e/gamma** (up to 4): a tower that is the local maximum of EM ET in its 3 x 3
  neighbourhood with |eta| < ``egamma_eta_max``; ET = the EM ET of the 3 x 3 cluster,
  kept above ``egamma_pt_min`` with hadronic / EM ET of the cluster <= ``egamma_hoe_max``;
  isolation = (total ET of the 5 x 5 window - of the 3 x 3 cluster) / cluster ET; flagged
  isolated (``hw_egamma_iso`` = 1) below ``egamma_iso_max``; at the seed tower's centre.
- **muons** (up to 4): final-state muons with |eta| < ``muon_eta_max``, pT smeared by a
  Gaussian of relative width ``muon_resolution``, kept above ``muon_pt_min``.
- **MET**: minus the vector sum of the towers' ET with |eta| < 3 and of the L1 muons (the
  muons' small calorimeter deposit then counts twice).

Objects are pT-ordered; missing ones are zeros.  Hardware integer scales
(:func:`hw_pt`, :func:`hw_eta`, :func:`hw_phi`), the same for every object (the uGT's
calorimeter scales): pT LSB 0.5 GeV (``floor``, saturated: jets 11 bits, e/gamma and muons
9, MET 12), eta LSB 0.0435 (= 0.087 / 2, ``rint``, signed), phi LSB 2 pi / 144 (``floor``
of phi in [0, 2 pi), 0..143).  Physical values (float32) and hardware values (``hw_*``,
int32) are both kept; the hardware values quantise the physical ones.

Tables
------
:func:`reduce_particles` (and :func:`l1_objects`) return a table: a dict of numpy arrays
with the keys of :data:`TABLE_COLUMNS`: per object kind ``k`` in :data:`L1_OBJECTS`,
``k_pt, k_eta, k_phi`` (float32, (n, N_k)), ``hw_k_pt, hw_k_eta, hw_k_phi`` (int32) and
``n_k`` (int32); ``egamma_iso``, ``hw_egamma_iso``; ``met, met_phi, hw_met, hw_met_phi``;
``regions`` (uint16, (n, 18, 14)).  The ``l1`` generator writes the same names as
branches, so a table read back from its files works with every function here.

>>> import numpy as np
>>> table = reduce_particles(np.array([0]), np.array([40.0]), np.array([0.0]),
...                          np.array([0.0]), np.array([22]), np.array([0.0]), n_events=1,
...                          response=L1Response(smear=False))
>>> float(table["egamma_pt"][0, 0]), int(table["hw_egamma_pt"][0, 0]), float(table["met"][0])
(40.0, 80, 40.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from fivesigma.errors import ConfigError

__all__ = [
    "ETA_EDGES",
    "ETA_LSB",
    "HW_BITS",
    "L1_OBJECTS",
    "N_ETA",
    "N_PHI",
    "PHI_LSB",
    "PT_LSB",
    "REGION_SHAPE",
    "TABLE_COLUMNS",
    "ZERO_BIAS_RATE_HZ",
    "L1Response",
    "axol1tl_inputs",
    "calorimeter_towers",
    "cicada_inputs",
    "deposit_particles",
    "ht",
    "hw_eta",
    "hw_phi",
    "hw_pt",
    "l1_objects",
    "leading_egamma_pt",
    "leading_jet_pt",
    "leading_muon_pt",
    "met",
    "rate_hz",
    "reduce_particles",
    "reference_seeds",
    "regions_from_towers",
    "tower_grids",
    "tower_index",
]

#: Objects per event of each kind (AXOL1TL's inputs).
L1_OBJECTS: dict[str, int] = {"jet": 10, "egamma": 4, "muon": 4}

#: Rate of filled bunch crossings seen by a zero-bias trigger: 40 MHz x 2544 / 3564.
ZERO_BIAS_RATE_HZ = 40e6 * 2544 / 3564

# -- geometry ---------------------------------------------------------------------------

_CENTRAL = [round(0.087 * i, 3) for i in range(21)] + [
    1.83, 1.93, 2.043, 2.172, 2.322, 2.5, 2.65, 3.0,
]  # fmt: skip
_FORWARD = [3.139, 3.314, 3.489, 3.664, 3.839, 4.013, 4.191, 4.363, 4.538, 4.716, 4.889, 5.191]
_ABS_EDGES = np.array(_CENTRAL + _FORWARD)
#: Tower boundaries in eta (81 edges, 80 towers), symmetric about 0.
ETA_EDGES: np.ndarray = np.concatenate([-_ABS_EDGES[::-1], _ABS_EDGES[1:]])
N_ETA = ETA_EDGES.size - 1
N_PHI = 72
N_TOWERS = N_ETA * N_PHI
TOWER_DPHI = 2 * math.pi / N_PHI
#: Towers with |eta| < 3: eta indices [CENTRAL_START, CENTRAL_STOP).
CENTRAL_START = len(_FORWARD)
CENTRAL_STOP = N_ETA - len(_FORWARD)
ETA_CENTRES: np.ndarray = 0.5 * (ETA_EDGES[1:] + ETA_EDGES[:-1])
PHI_CENTRES: np.ndarray = (np.arange(N_PHI) + 0.5) * TOWER_DPHI
_BARREL_ETA = 1.479

#: (phi, eta) regions of 4 x 4 towers over |eta| < 3.
REGION_SHAPE = (N_PHI // 4, (CENTRAL_STOP - CENTRAL_START) // 4)

# -- hardware scales --------------------------------------------------------------------

PT_LSB = 0.5
ETA_LSB = 0.0435
PHI_LSB = 2 * math.pi / 144
#: Saturation bit widths of the hardware ET / pT words.
HW_BITS: dict[str, int] = {"tower": 9, "region": 10, "jet": 11, "egamma": 9, "muon": 9, "met": 12}

_INVISIBLE = (12, 14, 16)

#: Columns of an L1 table (see the module docstring).
TABLE_COLUMNS: tuple[str, ...] = (
    *(
        f"{pre}{kind}_{q}"
        for kind in L1_OBJECTS
        for pre in ("", "hw_")
        for q in ("pt", "eta", "phi")
    ),
    *(f"n_{kind}" for kind in L1_OBJECTS),
    "egamma_iso",
    "hw_egamma_iso",
    "met",
    "met_phi",
    "hw_met",
    "hw_met_phi",
    "regions",
)


def hw_pt(pt: Any, bits: int) -> np.ndarray:
    """Hardware pT/ET: ``floor(pt / 0.5 GeV)`` saturated at ``2**bits - 1`` (int32)."""
    q = np.floor(np.maximum(np.asarray(pt, dtype=np.float64), 0.0) / PT_LSB)
    return np.minimum(q, 2**bits - 1).astype(np.int32)


def hw_eta(eta: Any) -> np.ndarray:
    """Hardware eta: ``rint(eta / 0.0435)`` (signed int32)."""
    return np.rint(np.asarray(eta, dtype=np.float64) / ETA_LSB).astype(np.int32)


def hw_phi(phi: Any) -> np.ndarray:
    """Hardware phi: ``floor(phi / (2 pi / 144))`` of phi in [0, 2 pi), 0..143 (int32)."""
    p = np.mod(np.asarray(phi, dtype=np.float64), 2 * math.pi)
    return np.minimum(np.floor(p / PHI_LSB), 143).astype(np.int32)


def _wrap(phi: np.ndarray) -> np.ndarray:
    """phi in (-pi, pi]."""
    return np.where(phi > math.pi, phi - 2 * math.pi, phi)


def tower_index(eta: Any, phi: Any) -> tuple[np.ndarray, np.ndarray]:
    """Tower indices ``(ieta, iphi)`` of directions; ieta = -1 outside |eta| < 5.191."""
    eta = np.asarray(eta, dtype=np.float64)
    ieta = np.searchsorted(ETA_EDGES, eta, side="right") - 1
    ieta = np.where((ieta >= 0) & (ieta < N_ETA), ieta, -1)
    p = np.mod(np.asarray(phi, dtype=np.float64), 2 * math.pi)
    iphi = np.minimum((p / TOWER_DPHI).astype(np.int64), N_PHI - 1)
    return ieta.astype(np.int64), iphi


# -- the response -----------------------------------------------------------------------


#: Accepted ranges (low, high) of the numeric response parameters, both inclusive.
_RANGES: dict[str, tuple[float, float]] = {
    "tower_threshold": (0.0, 100.0),
    "em_stochastic": (0.0, 10.0),
    "em_constant": (0.0, 1.0),
    "had_stochastic": (0.0, 10.0),
    "had_constant": (0.0, 1.0),
    "hf_stochastic": (0.0, 10.0),
    "hf_constant": (0.0, 1.0),
    "barrel_curl_pt": (0.0, 10.0),
    "had_h_over_e": (0.1, 1.0),
    "muon_mip": (0.0, 10.0),
    "muon_resolution": (0.0, 1.0),
    "muon_eta_max": (0.0, 5.0),
    "muon_pt_min": (0.0, 1000.0),
    "egamma_pt_min": (0.0, 1000.0),
    "egamma_eta_max": (0.0, 3.0),
    "egamma_hoe_max": (0.0, 1e6),
    "egamma_iso_max": (0.0, 1e6),
    "jet_seed_threshold": (0.0, 1000.0),
    "jet_pt_min": (0.0, 10000.0),
    "jet_eta_max": (0.0, 5.191),
}


@dataclass(frozen=True)
class L1Response:
    """Parameters of the calorimeter, muon and object reduction (module docstring).

    Energies and thresholds in GeV (ET / pT); resolutions as fractions.  ``smear=False``
    turns every random smearing off (exact deposits, for checks).
    """

    tower_threshold: float = 1.0
    em_stochastic: float = 0.10
    em_constant: float = 0.01
    had_stochastic: float = 1.0
    had_constant: float = 0.05
    hf_stochastic: float = 1.5
    hf_constant: float = 0.10
    barrel_curl_pt: float = 0.7
    had_h_over_e: float = 0.6
    muon_mip: float = 2.0
    muon_resolution: float = 0.15
    muon_eta_max: float = 2.4
    muon_pt_min: float = 3.0
    egamma_pt_min: float = 5.0
    egamma_eta_max: float = 2.5
    egamma_hoe_max: float = 0.5
    egamma_iso_max: float = 0.3
    jet_seed_threshold: float = 4.0
    jet_pt_min: float = 20.0
    jet_eta_max: float = 5.191
    jet_pu_subtraction: bool = True
    smear: bool = True

    def __post_init__(self) -> None:
        for key, (lo, hi) in _RANGES.items():
            value = getattr(self, key)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not lo <= value <= hi
            ):
                raise ConfigError(
                    f"L1 response {key} must be a number in [{lo}, {hi}], got {value!r}"
                )
        for key in ("jet_pu_subtraction", "smear"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(
                    f"L1 response {key} must be true or false, got {getattr(self, key)!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        """The parameters as a plain dict (cache keys, provenance)."""
        return asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of the parameters."""
        return tuple(f.name for f in fields(cls))


# -- particles -> deposits -> towers ----------------------------------------------------


def deposit_particles(
    event: Any,
    px: Any,
    py: Any,
    pz: Any,
    pid: Any,
    charge: Any,
    response: L1Response | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Calorimeter deposits and muons of final-state particles.

    Parameters
    ----------
    event
        Event index of each particle (0..n-1).
    px, py, pz
        Momenta (GeV).
    pid, charge
        PDG id and electric charge (e) of each particle.

    Returns
    -------
    deposits
        One entry per (event, tower) hit: ``event``, ``tower`` (flat index
        ``ieta * N_PHI + iphi``, int32), ``em``, ``had`` (ET, GeV, float64), sorted by
        (event, tower).
    muons
        ``event``, ``pt``, ``eta``, ``phi`` of the generator-level muons (before the L1
        muon response).
    """
    response = response or L1Response()
    event = np.asarray(event, dtype=np.int64)
    px, py, pz = (np.asarray(a, dtype=np.float64) for a in (px, py, pz))
    aid = np.abs(np.asarray(pid, dtype=np.int64))
    charge = np.asarray(charge, dtype=np.float64)
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(pt > 0, np.arcsinh(pz / np.where(pt > 0, pt, 1.0)), np.sign(pz) * 99.0)
    phi = np.arctan2(py, px)
    ieta, iphi = tower_index(eta, phi)
    is_mu = aid == 13
    em_like = (aid == 22) | (aid == 11)
    curled = (charge != 0) & (np.abs(eta) < _BARREL_ETA) & (pt < response.barrel_curl_pt)
    keep = (ieta >= 0) & ~np.isin(aid, _INVISIBLE) & ~curled
    et = pt.copy()
    # non-compensating hadronic response: only the EM fraction of a hadron shower,
    # 1 - (E / 1 GeV)^-0.2, is seen in full, the rest at h/e
    energy = np.sqrt(px**2 + py**2 + pz**2)
    hadron = ~em_like & ~is_mu
    frac = np.minimum(1.0, np.maximum(energy[hadron], 1e-12) ** -0.2)
    et[hadron] *= 1.0 - (1.0 - response.had_h_over_e) * frac
    # a muon leaves a MIP: muon_mip GeV of energy (at most its own), as ET in its tower
    et[is_mu] = (
        np.minimum(energy[is_mu], response.muon_mip) * pt[is_mu] / np.maximum(energy[is_mu], 1e-12)
    )
    key = event[keep] * N_TOWERS + ieta[keep] * N_PHI + iphi[keep]
    uniq, inv = np.unique(key, return_inverse=True)
    em = np.bincount(inv, weights=np.where(em_like[keep], et[keep], 0.0), minlength=uniq.size)
    had = np.bincount(inv, weights=np.where(em_like[keep], 0.0, et[keep]), minlength=uniq.size)
    deposits = {
        "event": (uniq // N_TOWERS).astype(np.int64),
        "tower": (uniq % N_TOWERS).astype(np.int32),
        "em": em,
        "had": had,
    }
    muons = {
        "event": event[is_mu],
        "pt": pt[is_mu],
        "eta": eta[is_mu],
        "phi": phi[is_mu],
    }
    return deposits, muons


def tower_grids(
    event: Any, tower: Any, em: Any, had: Any, n_events: int
) -> tuple[np.ndarray, np.ndarray]:
    """Dense (n_events, N_ETA, N_PHI) EM and hadronic ET grids (float64) from deposits
    (entries of the same event and tower add up)."""
    flat = np.asarray(event, dtype=np.int64) * N_TOWERS + np.asarray(tower, dtype=np.int64)
    size = n_events * N_TOWERS
    grids = [
        np.bincount(flat, weights=np.asarray(w, dtype=np.float64), minlength=size).reshape(
            n_events, N_ETA, N_PHI
        )
        for w in (em, had)
    ]
    return grids[0], grids[1]


def _smear(
    et: np.ndarray, stochastic: np.ndarray, constant: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """ET smeared by sigma(E)/E = a/sqrt(E) (+) c, per tower, clipped at 0."""
    cosh = np.cosh(ETA_CENTRES)[None, :, None]
    energy = np.maximum(et * cosh, 1e-12)
    rel = np.sqrt(stochastic**2 / energy + constant**2)
    noise = rng.standard_normal(et.shape)
    return np.where(et > 0, np.maximum(et * (1.0 + rel * noise), 0.0), 0.0)


def calorimeter_towers(
    em: np.ndarray,
    had: np.ndarray,
    response: L1Response | None = None,
    rng: np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """Tower response: smearing, threshold, hardware ET.

    ``em``, ``had``: true ET grids (n, N_ETA, N_PHI).  Returns ``em``, ``had``, ``et``
    (smeared, thresholded, float64) and ``hw`` (int32, 0.5 GeV LSB, saturated at 9 bits).
    """
    response = response or L1Response()
    em = np.asarray(em, dtype=np.float64)
    had = np.asarray(had, dtype=np.float64)
    if response.smear:
        if rng is None:
            raise ConfigError("calorimeter_towers needs an rng when smearing is on")
        central = np.zeros(N_ETA, dtype=bool)
        central[CENTRAL_START:CENTRAL_STOP] = True
        shape = (1, N_ETA, 1)
        a_em = np.where(central, response.em_stochastic, response.hf_stochastic).reshape(shape)
        c_em = np.where(central, response.em_constant, response.hf_constant).reshape(shape)
        a_had = np.where(central, response.had_stochastic, response.hf_stochastic).reshape(shape)
        c_had = np.where(central, response.had_constant, response.hf_constant).reshape(shape)
        em = _smear(em, a_em, c_em, rng)
        had = _smear(had, a_had, c_had, rng)
    et = em + had
    keep = (et >= response.tower_threshold) & (et > 0)
    em, had, et = (np.where(keep, a, 0.0) for a in (em, had, et))
    return {"em": em, "had": had, "et": et, "hw": hw_pt(et, HW_BITS["tower"])}


def regions_from_towers(hw: np.ndarray) -> np.ndarray:
    """CICADA regions (n, 18, 14) uint16: sums of 4 x 4 hardware tower ETs over |eta| < 3,
    saturated at 10 bits."""
    central = np.asarray(hw, dtype=np.int64)[:, CENTRAL_START:CENTRAL_STOP, :]
    n = central.shape[0]
    n_phi, n_eta = REGION_SHAPE
    sums = central.reshape(n, n_eta, 4, n_phi, 4).sum(axis=(2, 4))  # (n, eta, phi)
    return np.minimum(sums, 2 ** HW_BITS["region"] - 1).transpose(0, 2, 1).astype(np.uint16)


# -- windows ----------------------------------------------------------------------------


class _Windows:
    """Sums of rectangular tower windows around every tower (phi periodic, zeros beyond
    the eta range), from one integral image."""

    def __init__(self, grid: np.ndarray, pad: int) -> None:
        self.pad = pad
        padded = np.pad(grid, ((0, 0), (pad, pad), (0, 0)))
        padded = np.concatenate([padded[:, :, -pad:], padded, padded[:, :, :pad]], axis=2)
        integral = np.zeros((grid.shape[0], padded.shape[1] + 1, padded.shape[2] + 1))
        integral[:, 1:, 1:] = padded.cumsum(axis=1).cumsum(axis=2)
        self.integral = integral

    def box(self, e0: int, e1: int, p0: int, p1: int) -> np.ndarray:
        """Sum over eta offsets [e0, e1] and phi offsets [p0, p1] (inclusive)."""
        s, p = self.integral, self.pad
        ne, nf = N_ETA, N_PHI

        def at(de: int, dp: int) -> np.ndarray:
            return s[:, p + de : p + de + ne, p + dp : p + dp + nf]

        return at(e1 + 1, p1 + 1) - at(e0, p1 + 1) - at(e1 + 1, p0) + at(e0, p0)


def _local_max(values: np.ndarray, half: int) -> np.ndarray:
    """Towers that are the unique maximum of their (2 half + 1)^2 window: ties go to the
    higher tower index, so exactly one tower of a plateau is a maximum."""
    # integer keys: ET in 1/1024 GeV, then the tower index, so no two keys are equal
    q = np.rint(np.maximum(values, 0.0) * 1024).astype(np.int64)
    key = q * N_TOWERS + np.arange(N_TOWERS, dtype=np.int64).reshape(1, N_ETA, N_PHI)
    low = np.iinfo(np.int64).min
    padded = np.pad(key, ((0, 0), (half, half), (0, 0)), constant_values=low)
    padded = np.concatenate([padded[:, :, -half:], padded, padded[:, :, :half]], axis=2)
    m = padded[:, :, :N_PHI].copy()
    for d in range(1, 2 * half + 1):
        np.maximum(m, padded[:, :, d : d + N_PHI], out=m)
    out = m[:, :N_ETA].copy()
    for d in range(1, 2 * half + 1):
        np.maximum(out, m[:, d : d + N_ETA], out=out)
    return key == out


def _top_k(
    event: np.ndarray, pt: np.ndarray, columns: dict[str, np.ndarray], n_events: int, k: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The ``k`` highest-pT entries per event as (n_events, k) arrays (zeros where fewer),
    and the number of entries per event (all of them, not only the first k)."""
    order = np.lexsort((-pt, event))
    ev = event[order]
    rank = np.arange(ev.size) - np.searchsorted(ev, ev, side="left")
    sel = order[rank < k]
    r = rank[rank < k]
    out = {}
    for name, col in {"pt": pt, **columns}.items():
        arr = np.zeros((n_events, k), dtype=np.float64)
        arr[event[sel], r] = col[sel]
        out[name] = arr
    return out, np.bincount(event, minlength=n_events).astype(np.int32)


def _put(
    table: dict[str, np.ndarray], kind: str, obj: dict[str, np.ndarray], count: np.ndarray
) -> None:
    bits = HW_BITS[kind]
    present = obj["pt"] > 0
    table[f"{kind}_pt"] = obj["pt"].astype(np.float32)
    table[f"{kind}_eta"] = np.where(present, obj["eta"], 0.0).astype(np.float32)
    table[f"{kind}_phi"] = np.where(present, obj["phi"], 0.0).astype(np.float32)
    table[f"hw_{kind}_pt"] = hw_pt(obj["pt"], bits)
    table[f"hw_{kind}_eta"] = np.where(present, hw_eta(obj["eta"]), 0).astype(np.int32)
    table[f"hw_{kind}_phi"] = np.where(present, hw_phi(obj["phi"]), 0).astype(np.int32)
    table[f"n_{kind}"] = count


def l1_objects(
    towers: Mapping[str, np.ndarray],
    muons: Mapping[str, np.ndarray],
    response: L1Response | None = None,
    rng: np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """The L1 table (module docstring) of events given their towers
    (:func:`calorimeter_towers`) and generator-level muons (``event, pt, eta, phi``)."""
    response = response or L1Response()
    et, em, had = (np.asarray(towers[k], dtype=np.float64) for k in ("et", "em", "had"))
    n = et.shape[0]
    eta_c = np.broadcast_to(ETA_CENTRES[None, :, None], et.shape)
    phi_c = np.broadcast_to(_wrap(PHI_CENTRES)[None, None, :], et.shape)
    table: dict[str, np.ndarray] = {}

    # jets: 9 x 9 sliding window, chunky-donut pile-up subtraction
    win = _Windows(et, 7)
    jet_et = win.box(-4, 4, -4, 4)
    if response.jet_pu_subtraction:
        strips = np.stack(
            [
                win.box(5, 7, -4, 4),
                win.box(-7, -5, -4, 4),
                win.box(-4, 4, 5, 7),
                win.box(-4, 4, -7, -5),
            ]
        )
        jet_et = jet_et - (strips.sum(axis=0) - strips.max(axis=0))
    seed = (
        _local_max(et, 4)
        & (et >= response.jet_seed_threshold)
        & (np.abs(eta_c) < response.jet_eta_max)
        & (jet_et > response.jet_pt_min)
    )
    ev, ie, ip = np.nonzero(seed)
    obj, count = _top_k(
        ev, jet_et[seed], {"eta": ETA_CENTRES[ie], "phi": phi_c[ev, ie, ip]}, n, L1_OBJECTS["jet"]
    )
    _put(table, "jet", obj, count)

    # e/gamma: 3 x 3 EM clusters around local EM maxima, H/E and isolation
    win_em, win_had = _Windows(em, 1), _Windows(had, 1)
    em3 = win_em.box(-1, 1, -1, 1)
    had3 = win_had.box(-1, 1, -1, 1)
    win_et = _Windows(et, 2)
    ring = win_et.box(-2, 2, -2, 2) - win_et.box(-1, 1, -1, 1)
    seed = (
        _local_max(em, 1)
        & (em > 0)
        & (np.abs(eta_c) < response.egamma_eta_max)
        & (em3 > response.egamma_pt_min)
        & (had3 <= response.egamma_hoe_max * em3)
    )
    ev, ie, ip = np.nonzero(seed)
    iso = ring[seed] / em3[seed]
    obj, count = _top_k(
        ev,
        em3[seed],
        {"eta": ETA_CENTRES[ie], "phi": phi_c[ev, ie, ip], "iso": iso},
        n,
        L1_OBJECTS["egamma"],
    )
    _put(table, "egamma", obj, count)
    present = obj["pt"] > 0
    table["egamma_iso"] = np.where(present, obj["iso"], 0.0).astype(np.float32)
    table["hw_egamma_iso"] = (present & (obj["iso"] < response.egamma_iso_max)).astype(np.int32)

    # muons: coarse pT resolution
    mev = np.asarray(muons["event"], dtype=np.int64)
    mpt = np.asarray(muons["pt"], dtype=np.float64)
    meta = np.asarray(muons["eta"], dtype=np.float64)
    mphi = np.asarray(muons["phi"], dtype=np.float64)
    if response.smear and mpt.size:
        if rng is None:
            raise ConfigError("l1_objects needs an rng when smearing is on")
        mpt = np.maximum(
            mpt * (1.0 + response.muon_resolution * rng.standard_normal(mpt.size)), 0.0
        )
    sel = (np.abs(meta) < response.muon_eta_max) & (mpt > response.muon_pt_min)
    obj, count = _top_k(
        mev[sel], mpt[sel], {"eta": meta[sel], "phi": mphi[sel]}, n, L1_OBJECTS["muon"]
    )
    _put(table, "muon", obj, count)

    # MET: towers with |eta| < 3 and the L1 muons
    central = et[:, CENTRAL_START:CENTRAL_STOP, :].sum(axis=1)  # (n, phi)
    sx = central @ np.cos(PHI_CENTRES) + np.bincount(
        mev[sel], weights=mpt[sel] * np.cos(mphi[sel]), minlength=n
    )
    sy = central @ np.sin(PHI_CENTRES) + np.bincount(
        mev[sel], weights=mpt[sel] * np.sin(mphi[sel]), minlength=n
    )
    met_pt = np.hypot(sx, sy)
    met_phi = np.where(met_pt > 0, np.arctan2(-sy, -sx), 0.0)
    table["met"] = met_pt.astype(np.float32)
    table["met_phi"] = met_phi.astype(np.float32)
    table["hw_met"] = hw_pt(met_pt, HW_BITS["met"])
    table["hw_met_phi"] = np.where(met_pt > 0, hw_phi(met_phi), 0).astype(np.int32)
    table["regions"] = regions_from_towers(towers["hw"])
    return {key: table[key] for key in TABLE_COLUMNS}


def reduce_particles(
    event: Any,
    px: Any,
    py: Any,
    pz: Any,
    pid: Any,
    charge: Any,
    n_events: int,
    response: L1Response | None = None,
    rng: np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """The L1 table of ``n_events`` events given their final-state particles (arguments
    as :func:`deposit_particles`): deposits, towers, objects in one call."""
    response = response or L1Response()
    deposits, muons = deposit_particles(event, px, py, pz, pid, charge, response)
    em, had = tower_grids(
        deposits["event"], deposits["tower"], deposits["em"], deposits["had"], n_events
    )
    towers = calorimeter_towers(em, had, response, rng)
    return l1_objects(towers, muons, response, rng)


# -- model inputs and reference seeds ---------------------------------------------------


def _column(table: Mapping[str, Any], key: str) -> np.ndarray:
    if key not in table:
        from fivesigma.errors import DataError

        raise DataError(
            f"the L1 table has no column {key!r}; accepted: a table with the columns of fivesigma.physics.l1.TABLE_COLUMNS"
        )
    return np.asarray(table[key])


def _objects(table: Mapping[str, Any], kind: str, hardware: bool) -> tuple[np.ndarray, ...]:
    """(pt, eta, phi) of ``kind`` as float arrays: GeV/radians, or hardware integers."""
    pre = "hw_" if hardware else ""
    return tuple(
        _column(table, f"{pre}{kind}_{q}").astype(np.float64) for q in ("pt", "eta", "phi")
    )


def axol1tl_inputs(table: Mapping[str, Any], hardware: bool = True) -> np.ndarray:
    """AXOL1TL's 57 inputs (n, 57) float32.

    Order: MET (pt, 0, phi), 4 e/gamma, 4 muons, 10 jets, each object as (pt, eta, phi),
    pT-ordered within a kind, zeros for missing objects.  ``hardware=True``: the integer
    hardware values (pT in 0.5 GeV, eta in 0.0435, phi in 2 pi / 144 units) as floats;
    else GeV and radians.
    """
    if hardware:
        met_pt, met_phi = _column(table, "hw_met"), _column(table, "hw_met_phi")
    else:
        met_pt, met_phi = _column(table, "met"), _column(table, "met_phi")
    parts = [np.stack([met_pt, np.zeros_like(met_pt), met_phi], axis=1).astype(np.float64)]
    for kind in ("egamma", "muon", "jet"):
        pt, eta, phi = _objects(table, kind, hardware)
        k = L1_OBJECTS[kind]
        if pt.ndim != 2 or pt.shape[1] != k:
            from fivesigma.errors import DataError

            raise DataError(f"L1 column {kind}_pt must have shape (n, {k}), got {pt.shape}")
        parts.append(np.stack([pt, eta, phi], axis=2).reshape(pt.shape[0], 3 * k))
    return np.concatenate(parts, axis=1).astype(np.float32)


def cicada_inputs(table: Mapping[str, Any]) -> np.ndarray:
    """CICADA's inputs: region ETs (n, 18, 14) in hardware units (0.5 GeV), float32."""
    regions = _column(table, "regions")
    return regions.reshape(regions.shape[0], *REGION_SHAPE).astype(np.float32)


def _scale(hardware: bool) -> float:
    return PT_LSB if hardware else 1.0


def ht(
    table: Mapping[str, Any], pt_min: float = 30.0, eta_max: float = 2.4, hardware: bool = True
) -> np.ndarray:
    """Scalar sum of jet pT (GeV) over jets with pT > ``pt_min`` and |eta| < ``eta_max``
    (the L1 HTT).  ``hardware=True`` sums the hardware values."""
    pt, eta, _ = _objects(table, "jet", hardware)
    pt = pt * _scale(hardware)
    eta = eta * (ETA_LSB if hardware else 1.0)
    return np.where((pt > pt_min) & (np.abs(eta) < eta_max), pt, 0.0).sum(axis=1)


def leading_jet_pt(
    table: Mapping[str, Any], eta_max: float | None = None, hardware: bool = True
) -> np.ndarray:
    """pT (GeV) of the leading jet (within |eta| < ``eta_max`` if given); 0 without one."""
    pt, eta, _ = _objects(table, "jet", hardware)
    pt = pt * _scale(hardware)
    if eta_max is not None:
        pt = np.where(np.abs(eta * (ETA_LSB if hardware else 1.0)) < eta_max, pt, 0.0)
    return pt.max(axis=1, initial=0.0)


def leading_egamma_pt(
    table: Mapping[str, Any], isolated: bool = False, hardware: bool = True
) -> np.ndarray:
    """pT (GeV) of the leading (isolated) e/gamma candidate; 0 without one."""
    pt = _objects(table, "egamma", hardware)[0] * _scale(hardware)
    if isolated:
        pt = np.where(_column(table, "hw_egamma_iso") > 0, pt, 0.0)
    return pt.max(axis=1, initial=0.0)


def leading_muon_pt(table: Mapping[str, Any], hardware: bool = True) -> np.ndarray:
    """pT (GeV) of the leading muon; 0 without one."""
    return (_objects(table, "muon", hardware)[0] * _scale(hardware)).max(axis=1, initial=0.0)


def met(table: Mapping[str, Any], hardware: bool = True) -> np.ndarray:
    """Missing transverse energy (GeV)."""
    key = "hw_met" if hardware else "met"
    return _column(table, key).astype(np.float64) * _scale(hardware)


def reference_seeds(table: Mapping[str, Any], hardware: bool = True) -> dict[str, np.ndarray]:
    """The scores (GeV) of simple L1 seeds, one threshold each: ``single_jet``, ``ht``,
    ``single_egamma``, ``single_iso_egamma``, ``single_muon``, ``met``."""
    return {
        "single_jet": leading_jet_pt(table, hardware=hardware),
        "ht": ht(table, hardware=hardware),
        "single_egamma": leading_egamma_pt(table, hardware=hardware),
        "single_iso_egamma": leading_egamma_pt(table, isolated=True, hardware=hardware),
        "single_muon": leading_muon_pt(table, hardware=hardware),
        "met": met(table, hardware=hardware),
    }


def rate_hz(passed: Any, weight: Any = None) -> float:
    """Trigger rate (Hz) of zero-bias events that pass: the (weighted) pass fraction x
    40 MHz x 2544 / 3564 filled bunches."""
    passed = np.asarray(passed, dtype=np.float64)
    if passed.size == 0:
        from fivesigma.errors import DataError

        raise DataError("rate_hz needs at least one zero-bias event; got none")
    w = np.ones_like(passed) if weight is None else np.asarray(weight, dtype=np.float64)
    return float(np.sum(w * passed) / np.sum(w) * ZERO_BIAS_RATE_HZ)
