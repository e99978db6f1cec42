"""The built-in ``jets`` samples: boosted jets with their constituents, for jet tagging.

Pythia8 at sqrt(s) = 14 TeV with multi-parton interactions and hadronisation ON, particles
with c*tau > 10 mm stable (``ParticleDecays:limitTau0 = on``, ``tau0Max = 10``, the usual
LHC convention), the detector response of
:class:`fivesigma.physics.jet_detector.JetDetectorResponse` applied to the visible final
state (neutrinos removed), and anti-kT R = 0.8 jets clustered with FastJet from the
reconstructed particles.  Jets with ``pt_min <= pT < pt_max`` (default 550-650 GeV) and
``|eta| < eta_max`` (default 2) are kept.  Cf. the Top Quark Tagging Reference Dataset
(arXiv:1902.09914) and JetClass (arXiv:2202.03772).

Processes (option ``process``), all with ``PhaseSpace:pTHatMin = pthat_min`` (default
0.8 x ``pt_min``):

``top``   ttbar (``Top:gg2ttbar``, ``Top:qqbar2ttbar``), W -> hadrons only, label 4
``w``     W + parton (``WeakBosonAndParton:qqbar2Wg``, ``qg2Wq``), W -> hadrons, label 5
``z``     Z + parton (``WeakBosonAndParton:qqbar2gmZg``, ``qg2gmZq``, pure Z:
          ``WeakZ0:gmZmode = 2``), Z -> quarks, label 6
``hbb``   H + parton with the full top-mass dependence of the loop
          (``HiggsSM:gg2Hg(l:t)``, ``qg2Hq(l:t)``, ``qqbar2Hg(l:t)``), H -> b bbar, label 7
``qcd``   ``HardQCD:all`` dijets, labels 0-3

Truth labels (``label``, int32): 0 light quark (u, d, s), 1 gluon, 2 c, 3 b, 4 top,
5 W, 6 Z, 7 H -> bb (:data:`LABELS`, :data:`fivesigma.physics.labels.JET_LABELS`).

Signal jets are *matched*: the last copy of the parent (t, W, Z, H) in the event record
and its decay partons (t -> b q q' through the W's last copy, W/Z -> q q', H -> b b; the
daughters of the last copies, before their showers) all lie within Delta R < 0.8 of the
jet.  Unmatched signal jets are dropped; the fraction kept is the provenance's
``matching_efficiency``.  ``qcd`` jets are labelled from generator information: b if a b
hadron (any in the record, |pid| with a 5 as its heaviest quark digit) or a b quark of
the hard process (status -23) lies within Delta R < 0.8; else c likewise; else the nearest
hard-process outgoing parton within Delta R < 0.8 decides gluon (1) or light (0).  A qcd
jet with no hard parton within 0.8 is dropped (counted like an unmatched signal jet).

``events`` counts *jets*: events are generated in fixed blocks of :data:`BLOCK_EVENTS`
events, each block with its own seeds, until enough jets pass, and the first ``events``
jets in block order are kept, so the sample depends on (seed, events, options) only, not on
``jobs``.  If fewer than one jet per :data:`MAX_EVENTS_PER_JET` events passes, generation
stops with a GenerationError (move ``pthat_min`` or the window).

File ``jets_<process>.root``, TTree ``Jets``, one entry per jet:

=====================  =========  ==================================================
branch                 type       meaning
=====================  =========  ==================================================
event                  uint64     block * BLOCK_EVENTS + event index in the block
jet_pt, jet_eta,       float32    jet four-momentum (GeV), from the reconstructed
jet_phi, jet_mass,                particles (E-scheme)
jet_energy
jet_nparticles         int32      number of constituents (may exceed ``npart``)
label                  int32      truth label, see above
truth_parent_pt        float32    pT of the matched t/W/Z/H (GeV); nan for qcd
npart                  int32      constituents stored: the ``min(jet_nparticles, 200)``
                                  hardest
part_px, part_py,      float32[]  constituent four-momenta (GeV), pT descending
part_pz, part_energy
part_charge            int32[]    electric charge (e)
part_pid               int32[]    PDG id (a calorimeter cell: its leading deposit's)
part_class             int32[]    0 charged hadron, 1 neutral hadron, 2 photon,
                                  3 electron, 4 muon
part_d0, part_dz       float32[]  track impact parameters (mm), transverse (signed) and
                                  longitudinal, w.r.t. the origin, smeared; 0 for
                                  neutral constituents (see below)
part_d0err,            float32[]  their resolutions (mm), 0 for neutral constituents
part_dzerr                        and with the detector response disabled
=====================  =========  ==================================================

plus a TObjString ``provenance`` (JSON) and ``provenance.json`` in the directory.

Impact parameters (format version 2): for each charged constituent (track), d0 and dz
with respect to the nominal primary vertex, the origin (Pythia generates no beam spot),
from the particle's production vertex (``vProd``, mm) and momentum in the straight-line
approximation (no magnetic field): ``d0 = (x py - y px) / pT``, ``dz = z - (x px + y py)
pz / pT^2`` (:func:`fivesigma.physics.jet_detector.impact_parameters`).  Decay products
of b and c hadrons (c*tau ~ 0.5 and 0.06-0.3 mm, boosted) have large |d0| / d0err;
K0S and Lambda are stable here (neutral constituents), so they add no displaced tracks.
The detector response smears d0 and dz with ``sigma(d0) = 10 um (+) 90 um GeV / pT`` and
``sigma(dz) = 30 um (+) 100 um GeV / pT`` and stores the sigma as the error.

>>> from fivesigma.generate import generate
>>> generate("jets", events=1000, out="out", options={"process": "top"})  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma import __version__
from fivesigma.errors import GenerationError, close_matches
from fivesigma.generate import _pythia
from fivesigma.physics import kinematics
from fivesigma.physics.jet_detector import JetDetectorResponse, particle_class
from fivesigma.physics.labels import JET_LABELS

__all__ = [
    "BLOCK_EVENTS",
    "FORMAT_VERSION",
    "JET_PROCESSES",
    "LABELS",
    "JetOptions",
    "content_key",
    "file_names",
    "parse_options",
    "run",
    "settings_for",
]

#: Bump when the file layout or the meaning of a branch changes (invalidates caches).
#: 2: track impact parameters part_d0, part_dz, part_d0err, part_dzerr.
FORMAT_VERSION = 2

#: Events per block of work, each block with its own seeds (part of the sample's
#: definition, hence of content_key()).
BLOCK_EVENTS = 200

#: Events asked from ``Pythia.nextBatch`` at a time (progress granularity).
_BATCH = 50

#: Generation stops with an error below one jet per this many events.
MAX_EVENTS_PER_JET = 500

MAX_CONSTITUENTS = 200
RADIUS = 0.8
MATCH_DR = 0.8

#: Label codes of the ``label`` branch (the jet label schema of :mod:`fivesigma.physics.labels`).
LABELS: dict[int, str] = JET_LABELS

BASE_SETTINGS: tuple[str, ...] = (
    "Beams:idA = 2212",
    "Beams:idB = 2212",
    "Beams:eCM = 14000.",
    "PartonLevel:MPI = on",
    "HadronLevel:all = on",
    # Particles with c*tau > 10 mm (K0S, Lambda, ...) are stable, as at the LHC.
    "ParticleDecays:limitTau0 = on",
    "ParticleDecays:tau0Max = 10.",
)

_W_HADRONIC = ("24:onMode = off", "24:onIfAny = 1 2 3 4 5")

#: Pythia settings of each jet process (besides BASE_SETTINGS and pTHatMin).
JET_PROCESSES: dict[str, tuple[str, ...]] = {
    "top": ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on", *_W_HADRONIC),
    "qcd": ("HardQCD:all = on",),
    # Heavy-flavour enriched QCD (gg, qqbar -> b bbar / c cbar), labelled like "qcd": for
    # flavour taggers, which need far more b and c jets than inclusive QCD gives.
    "qcd_bb": ("HardQCD:hardbbbar = on",),
    "qcd_cc": ("HardQCD:hardccbar = on",),
    "w": ("WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on", *_W_HADRONIC),
    "z": (
        "WeakBosonAndParton:qqbar2gmZg = on",
        "WeakBosonAndParton:qg2gmZq = on",
        "WeakZ0:gmZmode = 2",
        "23:onMode = off",
        "23:onIfAny = 1 2 3 4 5",
    ),
    "hbb": (
        "HiggsSM:gg2Hg(l:t) = on",
        "HiggsSM:qg2Hq(l:t) = on",
        "HiggsSM:qqbar2Hg(l:t) = on",
        "25:onMode = off",
        "25:onIfMatch = 5 -5",
    ),
}

#: Parent PDG id and label of the signal processes.
_PARENT = {"top": (6, 4), "w": (24, 5), "z": (23, 6), "hbb": (25, 7)}

#: Guessed jets per event, only to size the first round of blocks.
_EFFICIENCY_GUESS = {
    "top": 0.3,
    "qcd": 0.5,
    "qcd_bb": 0.5,
    "qcd_cc": 0.5,
    "w": 0.3,
    "z": 0.3,
    "hbb": 0.3,
}

#: Processes whose jets get flavour labels (b, c, light, gluon) instead of a parent match.
QCD_PROCESSES = ("qcd", "qcd_bb", "qcd_cc")


@dataclass(frozen=True)
class JetOptions:
    """Options of the ``jets`` sample.

    Parameters
    ----------
    process
        One of :data:`JET_PROCESSES`.
    pt_min, pt_max
        Jet pT window in GeV, ``pt_min <= pT < pt_max``.
    eta_max
        Jets with ``|eta| < eta_max`` are kept.
    pthat_min
        ``PhaseSpace:pTHatMin`` in GeV; None means 0.8 x ``pt_min``.
    """

    process: str = "top"
    pt_min: float = 550.0
    pt_max: float = 650.0
    eta_max: float = 2.0
    pthat_min: float | None = None

    @property
    def pthat(self) -> float:
        """The pTHatMin used (GeV)."""
        return float(self.pthat_min) if self.pthat_min is not None else 0.8 * self.pt_min


def parse_options(options: dict[str, Any] | JetOptions | None) -> JetOptions:
    """Validate ``options`` (a dict of :class:`JetOptions` fields) into JetOptions.

    Raises GenerationError naming the bad key or value and what is accepted.
    """
    if isinstance(options, JetOptions):
        options = asdict(options)
    options = dict(options or {})
    fields = JetOptions.__dataclass_fields__
    for key in options:
        if key not in fields:
            raise GenerationError(
                f"unknown jets option {key!r}; accepted: {', '.join(fields)} "
                f"({close_matches(str(key), fields)})"
            )
    # None means "the default" for every option (convenient for CLI flags left unset).
    options = {key: val for key, val in options.items() if val is not None}
    process = options.get("process", "top")
    if process not in JET_PROCESSES:
        raise GenerationError(
            f"unknown jet process {process!r}; accepted: {', '.join(JET_PROCESSES)} "
            f"({close_matches(str(process), JET_PROCESSES)})"
        )
    values: dict[str, Any] = {"process": process}
    for key in ("pt_min", "pt_max", "eta_max", "pthat_min"):
        if key not in options:
            continue
        value = options[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise GenerationError(f"jets option {key} must be a finite number, got {value!r}")
        values[key] = float(value)
    opts = JetOptions(**values)
    if not 0 < opts.pt_min < opts.pt_max:
        raise GenerationError(
            f"bad jet pT window [{opts.pt_min}, {opts.pt_max}) GeV; accepted: 0 < pt_min < pt_max"
        )
    if opts.eta_max <= 0:
        raise GenerationError(f"jets option eta_max must be > 0, got {opts.eta_max}")
    if not 0 <= opts.pthat < 7000:
        raise GenerationError(f"jets option pthat_min must be in [0, 7000) GeV, got {opts.pthat}")
    return opts


def settings_for(opts: JetOptions) -> list[str]:
    """All Pythia settings of the sample."""
    return [*BASE_SETTINGS, *JET_PROCESSES[opts.process], f"PhaseSpace:pTHatMin = {opts.pthat:g}"]


def file_names(options: dict[str, Any] | None = None) -> tuple[str, ...]:
    """Names (without ``.root``) of the files the sample writes."""
    return (f"jets_{parse_options(options).process}",)


def content_key(options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything besides the call arguments that changes the sample (for cache keys)."""
    opts = parse_options(options)
    return {
        "format_version": FORMAT_VERSION,
        "block_events": BLOCK_EVENTS,
        "options": asdict(opts),
        "settings": settings_for(opts),
        "radius": RADIUS,
        "max_constituents": MAX_CONSTITUENTS,
        "pythia8mc": _pythia.pythia_version(),
    }


# --------------------------------------------------------------------------------------
# Truth information of one event (plain numpy on the event record)


def _daughters(i: int, d1: np.ndarray, d2: np.ndarray) -> list[int]:
    """Daughter indices of entry ``i`` (Pythia's daughter1/daughter2 conventions)."""
    a, b = int(d1[i]), int(d2[i])
    if a <= 0 and b <= 0:
        return []
    if b <= 0 or b == a:
        return [a]
    if b > a:
        return list(range(a, b + 1))
    return [a, b]


def _last_copy(i: int, ids: np.ndarray, d1: np.ndarray, d2: np.ndarray) -> int:
    """Follow recoil and emission copies of entry ``i`` down to its last copy."""
    for _ in range(1000):
        same = [d for d in _daughters(i, d1, d2) if ids[d] == ids[i]]
        if not same:
            return i
        i = same[0]
    return i


def eta_phi(px: Any, py: Any, pz: Any) -> tuple[Any, Any]:
    """Pseudorapidity and azimuth of momenta (generator particles and jets)."""
    # pT floored at 1e-12 GeV: a parton along the beam gets a huge but finite eta
    eta = kinematics.pseudorapidity(px, py, pz, zero_pt="floor", eps=1e-12)
    return eta, kinematics.phi(px, py)


def _delta_r(eta1: Any, phi1: Any, eta2: Any, phi2: Any) -> Any:
    return kinematics.delta_r(eta1, phi1, eta2, phi2, hypot=True)


def _signal_parents(
    rec: dict[str, np.ndarray], parent_id: int
) -> list[tuple[float, float, float, np.ndarray, np.ndarray]]:
    """(pT, eta, phi, parton etas, parton phis) of each fully (hadronically) decayed parent."""
    ids, d1, d2 = rec["id"], rec["d1"], rec["d2"]
    aid = np.abs(ids)
    lasts = sorted({_last_copy(int(i), ids, d1, d2) for i in np.flatnonzero(aid == parent_id)})
    out = []
    for last in lasts:
        ds = _daughters(last, d1, d2)
        if parent_id == 6:
            bs = [d for d in ds if abs(ids[d]) == 5]
            ws = [d for d in ds if abs(ids[d]) == 24]
            if not bs or not ws:
                continue
            wd = _daughters(_last_copy(ws[0], ids, d1, d2), d1, d2)
            quarks = [d for d in wd if 1 <= abs(ids[d]) <= 5]
            partons = [bs[0], *quarks] if len(quarks) == 2 else []
        elif parent_id == 25:
            partons = [d for d in ds if abs(ids[d]) == 5]
            partons = partons if len(partons) == 2 else []
        else:
            partons = [d for d in ds if 1 <= abs(ids[d]) <= 5]
            partons = partons if len(partons) == 2 else []
        if not partons:
            continue
        p = np.asarray(partons)
        eta_q, phi_q = eta_phi(rec["px"][p], rec["py"][p], rec["pz"][p])
        eta_t, phi_t = eta_phi(rec["px"][last], rec["py"][last], rec["pz"][last])
        out.append(
            (
                float(kinematics.pt(rec["px"][last], rec["py"][last])),
                float(eta_t),
                float(phi_t),
                eta_q,
                phi_q,
            )
        )
    return out


def _heavy_flavour_hadrons(aid: np.ndarray, quark: int) -> np.ndarray:
    """Mask of hadrons whose heaviest quark (PDG digits n_q1 or n_q2) is ``quark``."""
    nq1 = (aid // 1000) % 10
    nq2 = (aid // 100) % 10
    nq3 = (aid // 10) % 10
    hadron = (aid > 100) & (nq3 != 0)  # excludes quarks, leptons, bosons and diquarks
    heaviest = np.where(nq1 > 0, nq1, nq2)
    return hadron & (heaviest == quark)


def flavour_truth(rec: dict[str, np.ndarray]) -> dict[str, Any]:
    """What labels the jets of one QCD event: the outgoing hard partons (status -23) and
    the directions of its b and c hadrons (and hard b, c quarks)."""
    ids, status = rec["id"], rec["status"]
    aid = np.abs(ids)
    eta, phi = eta_phi(rec["px"], rec["py"], rec["pz"])
    hard = np.flatnonzero(status == -23)
    truth: dict[str, Any] = {
        "hard_eta": eta[hard],
        "hard_phi": phi[hard],
        "hard_id": aid[hard],
    }
    for name, q in (("b", 5), ("c", 4)):
        mask = _heavy_flavour_hadrons(aid, q)
        mask[hard] |= aid[hard] == q
        truth[name] = (eta[mask], phi[mask])
    return truth


def flavour_label(truth: dict[str, Any], jeta: float, jphi: float) -> int | None:
    """The flavour code of a jet at (``jeta``, ``jphi``) from :func:`flavour_truth`: 3 (b)
    or 2 (c) when such a hadron lies within ``MATCH_DR``, else 1 (gluon) or 0 (light
    quark) from the nearest hard parton; None when no parton is that close."""
    for name, code in (("b", 3), ("c", 2)):
        heta, hphi = truth[name]
        if heta.size and np.any(_delta_r(heta, hphi, jeta, jphi) < MATCH_DR):
            return code
    if not truth["hard_id"].size:
        return None
    dr = _delta_r(truth["hard_eta"], truth["hard_phi"], jeta, jphi)
    k = int(np.argmin(dr))
    if dr[k] >= MATCH_DR:
        return None
    return 1 if truth["hard_id"][k] == 21 else 0


# --------------------------------------------------------------------------------------
# One worker: a list of blocks (each generated by its own, freshly initialised Pythia)


def _process_batch(
    batch: Any,
    opts: JetOptions,
    response: JetDetectorResponse,
    rng: np.random.Generator,
    charges: _pythia.ParticleCharges,
    jetdef: Any,
) -> tuple[dict[str, np.ndarray], int, int]:
    """Reconstruct, cluster, select and label the jets of one batch of events.

    Returns (arrays, candidates, matched): per-jet and flat constituent arrays, the number
    of jets in the window and the number of those kept after matching.
    """
    import awkward as ak

    from fivesigma.physics._fastjet import import_fastjet

    fastjet = import_fastjet()

    rec, offsets = _pythia.flatten_events(batch)
    nev = offsets.size - 1
    event_of = np.repeat(np.arange(nev), np.diff(offsets))
    aid = np.abs(rec["id"])
    visible = (rec["status"] > 0) & ~np.isin(aid, _pythia.INVISIBLE)
    pid = rec["id"][visible]
    reco = response.apply(
        rec["px"][visible],
        rec["py"][visible],
        rec["pz"][visible],
        rec["e"][visible],
        pid,
        charges(pid),
        event_of[visible],
        rng,
        vertex=(rec["vx"][visible], rec["vy"][visible], rec["vz"][visible]),
    )
    rcount = np.bincount(reco["event"], minlength=nev)
    roff = np.concatenate([[0], np.cumsum(rcount)])
    particles = ak.unflatten(
        ak.zip({"px": reco["px"], "py": reco["py"], "pz": reco["pz"], "E": reco["energy"]}),
        rcount,
    )
    cs = fastjet.ClusterSequence(particles, jetdef)
    jets = cs.inclusive_jets(opts.pt_min)
    cidx = cs.constituent_index(opts.pt_min)
    njet = ak.to_numpy(ak.num(jets)).astype(np.int64)
    jpx, jpy, jpz, je = (ak.to_numpy(ak.flatten(jets[f])) for f in ("px", "py", "pz", "E"))
    jev = np.repeat(np.arange(nev), njet)
    jpt = kinematics.pt(jpx, jpy)
    jeta, jphi = eta_phi(jpx, jpy, jpz)
    window = (jpt >= opts.pt_min) & (jpt < opts.pt_max) & (np.abs(jeta) < opts.eta_max)
    candidates = np.flatnonzero(window)

    labels = np.empty(candidates.size, dtype=np.int32)
    parent_pt = np.full(candidates.size, np.nan)
    keep = np.zeros(candidates.size, dtype=bool)
    truth_cache: dict[int, Any] = {}
    for k, j in enumerate(candidates.tolist()):
        ev = int(jev[j])
        if ev not in truth_cache:
            lo, hi = offsets[ev], offsets[ev + 1]
            evrec = {key: val[lo:hi] for key, val in rec.items()}
            if opts.process in QCD_PROCESSES:
                truth_cache[ev] = flavour_truth(evrec)
            else:
                truth_cache[ev] = _signal_parents(evrec, _PARENT[opts.process][0])
        truth = truth_cache[ev]
        if opts.process in QCD_PROCESSES:
            label = flavour_label(truth, float(jeta[j]), float(jphi[j]))
            if label is not None:
                labels[k], keep[k] = label, True
            continue
        best = None
        for ppt, peta, pphi, qeta, qphi in truth:
            dr = float(_delta_r(peta, pphi, jeta[j], jphi[j]))
            inside = dr < MATCH_DR and bool(
                np.all(_delta_r(qeta, qphi, jeta[j], jphi[j]) < MATCH_DR)
            )
            if inside and (best is None or dr < best[0]):
                best = (dr, ppt)
        if best is not None:
            labels[k], parent_pt[k], keep[k] = _PARENT[opts.process][1], best[1], True
    sel = candidates[keep]

    # Constituents of the selected jets: local indices -> indices into the reco arrays.
    per_jet = ak.flatten(cidx, axis=1)[sel]
    ncon = ak.to_numpy(ak.num(per_jet)).astype(np.int64)
    local = ak.to_numpy(ak.flatten(per_jet)).astype(np.int64)
    jet_of = np.repeat(np.arange(sel.size), ncon)
    glob = local + roff[jev[sel]][jet_of]
    cpt = kinematics.pt(reco["px"][glob], reco["py"][glob])
    order = np.lexsort((-cpt, jet_of))  # by jet, then pT descending
    start = np.concatenate([[0], np.cumsum(ncon)])[:-1]
    rank = np.arange(order.size) - start[jet_of[order]]
    order = order[rank < MAX_CONSTITUENTS]
    g = glob[order]
    out = {
        "event": jev[sel].astype(np.int64),
        "jet_pt": jpt[sel],
        "jet_eta": jeta[sel],
        "jet_phi": jphi[sel],
        "jet_mass": kinematics.mass(jpx[sel], jpy[sel], jpz[sel], je[sel]),
        "jet_energy": je[sel],
        "jet_nparticles": ncon.astype(np.int32),
        "label": labels[keep],
        "truth_parent_pt": parent_pt[keep],
        "npart": np.minimum(ncon, MAX_CONSTITUENTS).astype(np.int32),
        "part_px": reco["px"][g],
        "part_py": reco["py"][g],
        "part_pz": reco["pz"][g],
        "part_energy": reco["energy"][g],
        "part_charge": np.rint(reco["charge"][g]).astype(np.int32),
        "part_pid": reco["pid"][g].astype(np.int32),
        "part_class": particle_class(reco["pid"][g], reco["charge"][g]),
        **{f"part_{name}": reco[name][g] for name in _IP_PARTS},
    }
    return out, int(candidates.size), int(sel.size)


def _generate_blocks(task: dict[str, Any], report: Any) -> list[dict[str, Any]]:
    """Generate each block of ``task['blocks']`` and save its jets to the block's .npz."""
    from fivesigma.physics._fastjet import import_fastjet

    fastjet = import_fastjet()

    opts = JetOptions(**task["options"])
    response = JetDetectorResponse(**task["detector"])
    jetdef = fastjet.JetDefinition(fastjet.antikt_algorithm, RADIUS)
    results = []
    for block in task["blocks"]:
        # A fresh Pythia per block (init ~0.4 s): a block's content then depends on its
        # seed only, never on which worker or after which other block it ran.
        pythia = _pythia.make_pythia(task["settings"], block["pythia_seed"])
        charges = _pythia.ParticleCharges(pythia)
        rng = np.random.default_rng(block["detector_seed"])
        parts: list[dict[str, np.ndarray]] = []
        done = candidates = matched = 0
        while done < block["events"]:
            want = min(_BATCH, block["events"] - done)
            batch = pythia.nextBatch(want)
            got = len(batch)
            if got == 0:
                raise GenerationError(
                    f"Pythia failed to generate events for block {block['block']}"
                )
            arrays, ncand, nmatch = _process_batch(batch, opts, response, rng, charges, jetdef)
            arrays["event"] = arrays["event"] + block["block"] * BLOCK_EVENTS + done
            parts.append(arrays)
            done += got
            candidates += ncand
            matched += nmatch
            report(nmatch)
        info = pythia.infoPython()
        merged = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        np.savez(block["output"], **merged)
        results.append(
            {
                "block": block["block"],
                "events": done,
                "candidates": candidates,
                "jets": matched,
                "sigma_pb": info.sigmaGen() * _pythia.MB_TO_PB,
                "sigma_err_pb": info.sigmaErr() * _pythia.MB_TO_PB,
                "output": block["output"],
            }
        )
    return results


# --------------------------------------------------------------------------------------
# The whole sample


def _load_blocks(results: list[dict[str, Any]], jets: int) -> tuple[dict[str, np.ndarray], int]:
    """Concatenate block outputs in block order and keep the first ``jets`` jets.

    Returns the arrays and the number of blocks used.
    """
    parts, have, used = [], 0, 0
    for res in sorted(results, key=lambda r: r["block"]):
        if have >= jets:
            break
        with np.load(res["output"]) as data:
            parts.append({key: data[key] for key in data.files})
        have += res["jets"]
        used += 1
    arrays = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    njet = min(jets, arrays["jet_pt"].size)
    nstored = int(arrays["npart"][:njet].sum())
    out = {}
    for key, val in arrays.items():
        out[key] = val[:nstored] if key.startswith("part_") else val[:njet]
    return out, used


def _write_root(path: Path, arrays: dict[str, np.ndarray], provenance: str) -> None:
    """Write the TTree ``Jets`` and the TObjString ``provenance``."""
    import awkward as ak
    import uproot

    npart = arrays["npart"]
    part = ak.zip(
        {
            name: ak.unflatten(
                arrays[f"part_{name}"].astype(np.float32 if name in _FLOAT_PARTS else np.int32),
                npart,
            )
            for name in ("px", "py", "pz", "energy", "charge", "pid", "class", *_IP_PARTS)
        }
    )
    flat = {
        "event": np.uint64,
        **{name: np.float32 for name in ("jet_pt", "jet_eta", "jet_phi", "jet_mass", "jet_energy")},
        "jet_nparticles": np.int32,
        "label": np.int32,
        "truth_parent_pt": np.float32,
    }
    with uproot.recreate(path) as f:
        # A record of jagged arrays becomes branches part_px, ... with the counter npart.
        tree = f.mktree("Jets", {**flat, "part": part.type.content}, title="fivesigma jets")
        chunk = 50_000
        n = npart.size
        for start in range(0, max(n, 1), chunk):
            stop = min(start + chunk, n)
            data = {name: arrays[name][start:stop].astype(dt) for name, dt in flat.items()}
            tree.extend({**data, "part": part[start:stop]})
        f["provenance"] = provenance


#: Track impact parameters and their errors (mm), written as part_<name>.
_IP_PARTS = ("d0", "dz", "d0err", "dzerr")
_FLOAT_PARTS = ("px", "py", "pz", "energy", *_IP_PARTS)


def run(
    events: int,
    out: Path,
    seed: int,
    jobs: int,
    luminosity_fb: float = 140.0,
    progress: bool = True,
    detector: JetDetectorResponse | None = None,
    options: dict[str, Any] | JetOptions | None = None,
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Generate ``events`` jets into ``out``; returns (files, provenance).

    ``luminosity_fb`` is accepted for the common generator interface and unused (jets
    carry no weights; the cross sections are in the provenance).  Files are written into
    a hidden temporary directory inside ``out`` and moved into place only when complete.
    """
    _pythia.require_pythia()
    try:
        from fivesigma.physics._fastjet import import_fastjet

        import_fastjet()
    except ImportError:
        raise GenerationError(
            "jet samples need fastjet; install it with 'pip install fastjet==3.5.2.0'"
        ) from None
    opts = parse_options(options)
    detector = detector if detector is not None else JetDetectorResponse()
    if not isinstance(detector, JetDetectorResponse):
        raise GenerationError(
            f"jets need a JetDetectorResponse as detector, got {type(detector).__name__}"
        )
    name = f"jets_{opts.process}"
    settings = settings_for(opts)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    work = Path(tempfile.mkdtemp(dir=out, prefix=".fivesigma-generate-"))
    try:
        results: list[dict[str, Any]] = []
        next_block = 0
        seeds: list[_pythia.JobSeeds] = []
        t0 = time.monotonic()
        while True:
            have = sum(r["jets"] for r in results)
            nevents = sum(r["events"] for r in results)
            if have >= events:
                break
            if nevents >= MAX_EVENTS_PER_JET * max(events, 1) or (
                nevents >= 2 * BLOCK_EVENTS and have * MAX_EVENTS_PER_JET < nevents
            ):
                raise GenerationError(
                    f"jets {opts.process}: only {have} jets from {nevents} events in the window "
                    f"[{opts.pt_min:g}, {opts.pt_max:g}) GeV, |eta| < {opts.eta_max:g} "
                    f"(pTHatMin {opts.pthat:g} GeV); accepted: at least 1 jet per "
                    f"{MAX_EVENTS_PER_JET} events - widen the window or adjust pthat_min"
                )
            eff = (
                have / nevents
                if have
                else _EFFICIENCY_GUESS[opts.process] / (1 + nevents / BLOCK_EVENTS)
            )
            nblocks = max(1, math.ceil(1.1 * (events - have) / (eff * BLOCK_EVENTS)))
            nblocks = min(nblocks, math.ceil(MAX_EVENTS_PER_JET * events / BLOCK_EVENTS))
            seeds = _pythia.job_seeds(seed, name, next_block + nblocks)
            blocks = [
                {
                    "block": b,
                    "pythia_seed": seeds[b].pythia,
                    "detector_seed": seeds[b].detector,
                    "events": BLOCK_EVENTS,
                    "output": str(work / f"block{b}.npz"),
                }
                for b in range(next_block, next_block + nblocks)
            ]
            next_block += nblocks
            njobs = max(1, min(jobs, nblocks))
            tasks = []
            for j in range(njobs):
                mine = blocks[j::njobs]
                expected = max(1, round(min(events - have, eff * BLOCK_EVENTS * nblocks) / njobs))
                task = {
                    "options": asdict(opts),
                    "settings": settings,
                    "detector": detector.to_dict(),
                    "blocks": mine,
                }
                tasks.append((f"jets {opts.process}", task, expected))
            for res in _pythia.run_jobs(
                _generate_blocks, tasks, njobs, progress=progress, unit="jets"
            ):
                results.extend(res)
        elapsed = time.monotonic() - t0

        arrays, used = _load_blocks(results, events)
        used_res = sorted(results, key=lambda r: r["block"])[:used]
        sigma, err = _pythia.combine_cross_sections(
            [r["sigma_pb"] for r in used_res],
            [r["sigma_err_pb"] for r in used_res],
            [r["events"] for r in used_res],
        )
        n_events = int(sum(r["events"] for r in used_res))
        n_cand = int(sum(r["candidates"] for r in used_res))
        n_match = int(sum(r["jets"] for r in used_res))
        labels, counts = np.unique(arrays["label"], return_counts=True)
        provenance = {
            "format_version": FORMAT_VERSION,
            "fivesigma_version": __version__,
            "pythia8mc_version": _pythia.pythia_version(),
            "fastjet_version": fastjet_version(),
            "sample": "jets",
            "process": opts.process,
            "options": asdict(opts),
            "pythia_settings": settings,
            "jet_algorithm": f"anti-kt R={RADIUS} (E-scheme), reconstructed particles",
            "jet_window": {"pt_min": opts.pt_min, "pt_max": opts.pt_max, "eta_max": opts.eta_max},
            "max_constituents": MAX_CONSTITUENTS,
            "labels": {str(k): v for k, v in LABELS.items()},
            "label_counts": {str(int(k)): int(c) for k, c in zip(labels, counts, strict=True)},
            "seed": seed,
            "jobs": jobs,
            "block_events": BLOCK_EVENTS,
            "block_seeds": [
                {
                    "block": r["block"],
                    "pythia": seeds[r["block"]].pythia,
                    "detector": seeds[r["block"]].detector,
                    "events": r["events"],
                }
                for r in used_res
            ],
            "seed_derivation": (
                "one seed pair per block of block_events events, "
                "SeedSequence([seed, crc32('jets_<process>'), block]).generate_state(2): "
                "pythia = w0 % 900000000 + 1, detector = w1; blocks run in order until "
                "enough jets pass and the first `jets` jets in block order are kept"
            ),
            "detector_response": detector.to_dict(),
            "impact_parameters": (
                "part_d0, part_dz (mm): straight-line transverse and longitudinal impact "
                "parameters of tracks w.r.t. the origin from the production vertex, smeared "
                "by the detector response; part_d0err, part_dzerr: their sigmas; 0 for "
                "neutral constituents"
            ),
            "cross_section_pb": sigma,
            "cross_section_error_pb": err,
            "events_generated": n_events,
            "jets_in_window": n_cand,
            "jets_matched": n_match,
            "matching_efficiency": n_match / n_cand if n_cand else None,
            "jets_per_event": n_match / n_events if n_events else 0.0,
            "jet_cross_section_pb": sigma * n_match / n_events if n_events else 0.0,
            "jets": int(arrays["jet_pt"].size),
            "tree": "Jets",
            # Same shape as the other samples' provenance (file name -> summary).
            "processes": {
                name: {
                    "cross_section_pb": sigma,
                    "cross_section_error_pb": err,
                    "jets": int(arrays["jet_pt"].size),
                }
            },
            "created": created,
            "generation_seconds": round(elapsed, 3),
        }
        path = work / f"{name}.root"
        _write_root(path, arrays, json.dumps(provenance, indent=1, sort_keys=True))
        (work / "provenance.json").write_text(
            json.dumps(provenance, indent=1, sort_keys=True) + "\n"
        )
        final = out / path.name
        os.replace(path, final)
        os.replace(work / "provenance.json", out / "provenance.json")
        return {name: final}, provenance
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fastjet_version() -> str:
    """The installed fastjet package's version (written into sample metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fastjet")
    except PackageNotFoundError:
        return "unknown"
