"""The built-in ``dijets`` samples: an LHC Olympics 2020 R&D-like dijet anomaly sample.

Pythia8 at sqrt(s) = 13 TeV (the LHCO energy) with hadronisation ON, multi-parton
interactions OFF by default (option ``mpi``, see "Cost"), particles with c*tau > 10 mm
stable, the detector response of :class:`fivesigma.physics.jet_detector.JetDetectorResponse`
(the jet task's) applied to the visible final state (neutrinos removed), and anti-kT jets
of radius ``radius`` (default R = 1.0, as LHCO) clustered with FastJet from the
reconstructed particles.  An event is kept when its two leading jets (pT > 20 GeV) exist,
the leading one has pT > ``leading_pt_min`` (default 1200 GeV, the LHCO cut) and both have
``|eta| < eta_max`` (default 2.5).  Cf. Kasieczka et al., "The LHC Olympics 2020",
arXiv:2101.08320, and the R&D data set (Zenodo 4536377).

Processes (option ``process``):

``qcd``     ``HardQCD:all`` with ``PhaseSpace:pTHatMin = pthat_min`` (default 900 GeV);
            ``label`` 0.
``signal``  a heavy charged resonance W' (PDG 34, ``NewGaugeBoson:ffbar2Wprime``,
            sequential-SM couplings) of mass ``m_resonance`` (3500 GeV) decaying to
            X Y, X = the charged Higgs slot (PDG 37) of mass ``m_x`` (500 GeV) and Y = the
            A0 slot (PDG 36) of mass ``m_y`` (100 GeV); X -> u dbar, Y -> u ubar, d dbar,
            s sbar (1/3 each): two two-prong jets, as LHCO's W' -> X(qq) Y(qq).  Each of
            the three decay tables is replaced by these channels with ``meMode = 100``
            (branching ratios as given, partial width = BR x mWidth), the widths are 1 % of
            the masses and the masses are generated within +-10 % of them (``mMin``,
            ``mMax``; without that window the parton luminosity pulls the W' Breit-Wigner
            far below its peak).  X is charged so that W' -> X Y conserves charge.
            (A neutral Z' does not work this way: Pythia's Z' cross section sums only the
            decay channels it knows, so a Z' -> X Y channel gives a vanishing cross
            section.)  ``label`` 1.

Checked with pythia8mc 8.317.2 (1000 kept signal events, seed 7): mjj median 3426 GeV,
mode 3475 GeV, 89 % within 350 GeV of 3500 (the reconstructed peak lies a little below
m_resonance: FSR out of the jets and the detector response); the lighter jet's mass
(Y) has its mode at 105 GeV (median 103 without MPI, 122 with), the heavier one's (X) at
495 GeV (median 486); median tau21 0.21 for the X jet.  The signal cross section is about
0.038 pb before the selection, of which about 70 % pass.

Per event (TTree ``Events``), J1 = the LIGHTER of the two leading jets and J2 the heavier
one (the CATHODE/ANODE convention), masses in GeV:

=========================  =========  =================================================
branch                     type       meaning
=========================  =========  =================================================
event                      uint64     block * BLOCK_EVENTS + event index in the block
mjj                        float64    invariant mass of J1 + J2 (E-scheme four-vectors)
mj1, mj2                   float64    jet masses, ``mj1 <= mj2``
delta_mj                   float64    ``mj2 - mj1`` (>= 0)
tau1_j1 .. tau3_j2         float64    N-subjettiness (beta = 1, R0 = radius,
                                      exclusive-kT axes, all constituents)
tau21_j1, tau21_j2,        float64    ratios tau2/tau1, tau3/tau2 (0 where the
tau32_j1, tau32_j2                    denominator is 0)
pt_j1, eta_j1, phi_j1,     float64    jet kinematics (GeV, rad)
pt_j2, eta_j2, phi_j2
nconst_j1, nconst_j2       int32      number of constituents of the jet
pthat                      float64    the hard process's pT-hat (GeV; 0 for a 2 -> 1)
label                      int32      0 QCD, 1 signal
weight                     float64    cross-section weight, see below
nj1, nj2                   int32      constituents stored: the ``max_constituents``
                                      hardest of each jet
j1_px, j1_py, j1_pz,       float32[]  their four-momenta (GeV), pT descending
j1_energy, j2_...
=========================  =========  =================================================

plus a TObjString ``provenance`` (JSON) and ``provenance.json`` in the directory.

``weight`` is the same for every event of a file: ``sigma_pb * 1000 * luminosity_fb *
efficiency / events``, where efficiency is the fraction of generated events kept, so
``sum(weight)`` is the expected number of selected events at that luminosity and QCD and
signal files mix at physical rates.  Leading order, no K-factors.

``events`` counts *kept* events: events are generated in fixed blocks of
:data:`BLOCK_EVENTS`, each with its own seeds, until enough pass, and the first
``events`` kept events in block order are written, so the sample depends on (seed,
events, options) only, not on ``jobs``.

pT-hat cut
----------
An event whose reconstructed leading jet has pT > 1200 GeV can come from a hard process of
lower pT-hat (ISR, the large R = 1 jets, MPI, the detector response).  Measured with a
lower cut (pythia8mc 8.317.2; MPI off, pthat_min 600, 300 kept events; MPI on, pthat_min
800, 500 kept events), the fraction of kept events with pT-hat below a cut, which that cut
would lose:

=============  ===================  ==================================================
pT-hat below   all kept events      kept events with 3000 < mjj < 4100 GeV (the
                                    default sidebands and signal region)
=============  ===================  ==================================================
800 GeV        3.3 % (MPI off)      0 of 92 (MPI off)
900 GeV        8.3 % / 6.6 % (on)   2 of 92 / 3 of 165 (on): about 2 %
1000 GeV       12.7 % / 13.2 % (on) 2 of 92 / 10 of 165 (on): 2-6 %
=============  ===================  ==================================================

The lost events sit mostly at low mjj, below the default anomaly-search window.  The
default 900 GeV therefore loses about 7-8 % of all events passing the selection and
about 2 % of those in the 3.0-4.1 TeV window, while keeping 21 % of the generated events
(1000 GeV: 35 %, for 13 % loss; 800 GeV: 8 %, 2.4 times the cost of 900 GeV).

Cost
----
Measured on one core, in CPU time (``python bench/bench_generate_dijets.py 2``; 800
events per case, pythia8mc 8.317.2, default options besides ``mpi``):

==========  ===  ===========  ===========  =============  ========  ===================
process     MPI  bare ms/ev   full ms/ev   kept fraction  kept/s    100k kept, 2 cores
==========  ===  ===========  ===========  =============  ========  ===================
qcd         on   10.9         14.6         0.20           14        60 min
qcd         off  3.4          5.0          0.21           43        19 min
signal      on   6.7          10.2         0.74           73        11 min
signal      off  1.5          3.4          0.71           209       4 min
==========  ===  ===========  ===========  =============  ========  ===================

("bare": ``pythia.next()`` alone; "full": the whole worker: Pythia, detector response,
FastJet, N-subjettiness, constituent arrays.)  The last column is 100k events passing the
selection on two cores (two jobs).  MPI roughly triples the cost of a QCD event.  Without
it (the default) 100k QCD plus 10k signal events passing the selection take about 20
minutes on two cores, 150k plus 10k about 30; with MPI on, 100k plus 10k take about an
hour.  With MPI on (Pythia's own default, closer to a real collision) the soft particles
it adds move the jet masses and tau21 up a little (signal, 1000 events: the lighter jet's
median mass 122 instead of 103 GeV, its median tau21 0.42 instead of 0.39).

>>> from fivesigma.generate import generate
>>> generate("dijets", 1000, "out", options={"process": "signal"})  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma import __version__
from fivesigma.errors import GenerationError, close_matches
from fivesigma.generate import _pythia
from fivesigma.generate._pythia import INVISIBLE, ParticleCharges, flatten_events
from fivesigma.generate.jets import eta_phi, fastjet_version
from fivesigma.physics import kinematics
from fivesigma.physics.jet_detector import JetDetectorResponse
from fivesigma.physics.substructure import nsubjettiness, tau_ratio

__all__ = [
    "BLOCK_EVENTS",
    "EVENT_BRANCHES",
    "FORMAT_VERSION",
    "PROCESSES",
    "DijetOptions",
    "content_key",
    "file_names",
    "parse_options",
    "run",
    "settings_for",
]

#: Bump when the file layout or the meaning of a branch changes (invalidates caches).
FORMAT_VERSION = 1

#: Events per block of work, each block with its own seeds (part of the sample's
#: definition, hence of content_key()).
BLOCK_EVENTS = 400

#: Events asked from ``Pythia.nextBatch`` at a time (progress granularity).
_BATCH = 100

#: Generation stops with an error below one kept event per this many events.
MAX_EVENTS_PER_KEPT = 1000

#: Jets below this pT (GeV) are not clustered into the jet list (the second jet of a kept
#: event recoils against one above leading_pt_min, so this loses nothing).
JET_PT_MIN = 20.0

#: Width / mass of the W', X and Y, and the half-width of their mass windows / mass.
WIDTH_FRACTION = 0.01
WINDOW_FRACTION = 0.1

PROCESSES = ("qcd", "signal")
LABELS = {0: "qcd", 1: "signal"}

#: Per-event (flat) branches and their types, in file order.
EVENT_BRANCHES: dict[str, Any] = {
    "event": np.uint64,
    "mjj": np.float64,
    "mj1": np.float64,
    "mj2": np.float64,
    "delta_mj": np.float64,
    **{f"tau{n}_j{j}": np.float64 for j in (1, 2) for n in (1, 2, 3)},
    "tau21_j1": np.float64,
    "tau21_j2": np.float64,
    "tau32_j1": np.float64,
    "tau32_j2": np.float64,
    **{f"{v}_j{j}": np.float64 for j in (1, 2) for v in ("pt", "eta", "phi")},
    "nconst_j1": np.int32,
    "nconst_j2": np.int32,
    "pthat": np.float64,
    "label": np.int32,
}
_PARTS = ("px", "py", "pz", "energy")

#: Guessed kept fraction of generated events, only to size the first round of blocks.
_EFFICIENCY_GUESS = {"qcd": 0.3, "signal": 0.5}


@dataclass(frozen=True)
class DijetOptions:
    """Options of the ``dijets`` sample (GeV for masses and momenta).

    Parameters
    ----------
    process
        ``"qcd"`` or ``"signal"``.
    m_resonance, m_x, m_y
        Signal masses: W' -> X Y (unused for qcd).
    pthat_min
        ``PhaseSpace:pTHatMin`` of qcd (unused for signal).
    mhat_min, mhat_max
        ``PhaseSpace:mHatMin/mHatMax`` of qcd: generate only hard scatters whose
        invariant mass lies in a window around the search (0 and None: no cut).  Keep
        the window wider than the m_JJ range studied (radiation moves m_JJ below the
        hard scatter's mass by a few percent), or its edges sculpt the spectrum.
    leading_pt_min
        The leading jet's pT must exceed this.
    eta_max
        Both leading jets need ``|eta| < eta_max``.
    radius
        Anti-kT radius.
    mpi
        Multi-parton interactions on (True) or off (about twice as fast).
    max_constituents
        Constituents stored per jet (the hardest); the observables use all.
    """

    process: str = "qcd"
    m_resonance: float = 3500.0
    m_x: float = 500.0
    m_y: float = 100.0
    pthat_min: float = 900.0
    mhat_min: float = 0.0
    mhat_max: float | None = None
    leading_pt_min: float = 1200.0
    eta_max: float = 2.5
    radius: float = 1.0
    mpi: bool = False
    max_constituents: int = 100


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise GenerationError(f"dijets option {key} must be a finite number, got {value!r}")
    return float(value)


def parse_options(options: dict[str, Any] | DijetOptions | None) -> DijetOptions:
    """Validate ``options`` (a dict of :class:`DijetOptions` fields) into DijetOptions.

    Raises GenerationError naming the bad key or value and what is accepted.
    """
    if isinstance(options, DijetOptions):
        options = asdict(options)
    options = dict(options or {})
    names = [f.name for f in fields(DijetOptions)]
    for key in options:
        if key not in names:
            raise GenerationError(
                f"unknown dijets option {key!r}; accepted: {', '.join(names)} "
                f"({close_matches(str(key), names)})"
            )
    # None means "the default" for every option (convenient for CLI flags left unset).
    options = {key: val for key, val in options.items() if val is not None}
    values: dict[str, Any] = {}
    process = options.get("process", "qcd")
    if process not in PROCESSES:
        raise GenerationError(
            f"unknown dijets process {process!r}; accepted: {', '.join(PROCESSES)} "
            f"({close_matches(str(process), PROCESSES)})"
        )
    values["process"] = process
    for key in (
        "m_resonance",
        "m_x",
        "m_y",
        "pthat_min",
        "mhat_min",
        "mhat_max",
        "leading_pt_min",
        "eta_max",
        "radius",
    ):
        if key in options:
            values[key] = _number(key, options[key])
    if "mpi" in options:
        if not isinstance(options["mpi"], bool | np.bool_):
            raise GenerationError(
                f"dijets option mpi must be true or false, got {options['mpi']!r}"
            )
        values["mpi"] = bool(options["mpi"])
    if "max_constituents" in options:
        value = options["max_constituents"]
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise GenerationError(
                f"dijets option max_constituents must be a positive integer, got {value!r}"
            )
        values["max_constituents"] = int(value)
    opts = DijetOptions(**values)
    lo, hi = 1 - WINDOW_FRACTION, 1 + WINDOW_FRACTION
    if not 0 < opts.m_resonance < 12000:
        raise GenerationError(
            f"dijets option m_resonance must be in (0, 12000) GeV, got {opts.m_resonance:g}"
        )
    if min(opts.m_x, opts.m_y) < 10 or hi * (opts.m_x + opts.m_y) >= lo * opts.m_resonance:
        raise GenerationError(
            f"dijets masses m_x = {opts.m_x:g}, m_y = {opts.m_y:g} GeV do not fit in "
            f"m_resonance = {opts.m_resonance:g} GeV; accepted: m_x, m_y >= 10 and "
            f"{hi:g} (m_x + m_y) < {lo:g} m_resonance"
        )
    if not 0 <= opts.pthat_min < 6500:
        raise GenerationError(
            f"dijets option pthat_min must be in [0, 6500) GeV, got {opts.pthat_min:g}"
        )
    if not 0 <= opts.mhat_min < 13000 or (
        opts.mhat_max is not None and not opts.mhat_min < opts.mhat_max <= 13000
    ):
        raise GenerationError(
            f"dijets options mhat_min = {opts.mhat_min:g}, mhat_max = {opts.mhat_max} GeV "
            "must satisfy 0 <= mhat_min < mhat_max <= 13000"
        )
    if not 0 < opts.leading_pt_min < 6500:
        raise GenerationError(
            f"dijets option leading_pt_min must be in (0, 6500) GeV, got {opts.leading_pt_min:g}"
        )
    if opts.eta_max <= 0:
        raise GenerationError(f"dijets option eta_max must be > 0, got {opts.eta_max:g}")
    if not 0 < opts.radius <= 2:
        raise GenerationError(f"dijets option radius must be in (0, 2], got {opts.radius:g}")
    return opts


def _resonance(pdg: int, mass: float) -> list[str]:
    width = WIDTH_FRACTION * mass
    return [
        f"{pdg}:m0 = {mass:g}",
        f"{pdg}:mWidth = {width:g}",
        f"{pdg}:mMin = {(1 - WINDOW_FRACTION) * mass:g}",
        f"{pdg}:mMax = {(1 + WINDOW_FRACTION) * mass:g}",
    ]


def settings_for(opts: DijetOptions) -> list[str]:
    """All Pythia settings of the sample."""
    base = [
        "Beams:idA = 2212",
        "Beams:idB = 2212",
        "Beams:eCM = 13000.",
        f"PartonLevel:MPI = {'on' if opts.mpi else 'off'}",
        "HadronLevel:all = on",
        # Particles with c*tau > 10 mm (K0S, Lambda, ...) are stable, as at the LHC.
        "ParticleDecays:limitTau0 = on",
        "ParticleDecays:tau0Max = 10.",
    ]
    if opts.process == "qcd":
        window = [f"PhaseSpace:mHatMin = {opts.mhat_min:g}"]
        if opts.mhat_max is not None:
            window.append(f"PhaseSpace:mHatMax = {opts.mhat_max:g}")
        return [
            *base,
            "HardQCD:all = on",
            f"PhaseSpace:pTHatMin = {opts.pthat_min:g}",
            *window,
        ]
    return [
        *base,
        "NewGaugeBoson:ffbar2Wprime = on",
        *_resonance(34, opts.m_resonance),
        # meMode 100: the branching ratio as given, partial width = BR * mWidth.
        "34:oneChannel = 1 1.0 100 37 36",
        *_resonance(37, opts.m_x),
        "37:oneChannel = 1 1.0 100 2 -1",
        *_resonance(36, opts.m_y),
        "36:oneChannel = 1 0.333333 100 1 -1",
        "36:addChannel = 1 0.333333 100 2 -2",
        "36:addChannel = 1 0.333334 100 3 -3",
    ]


def file_names(options: dict[str, Any] | None = None) -> tuple[str, ...]:
    """Names (without ``.root``) of the files the sample writes."""
    return (f"dijets_{parse_options(options).process}",)


def content_key(options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything besides the call arguments that changes the sample (for cache keys)."""
    opts = parse_options(options)
    return {
        "format_version": FORMAT_VERSION,
        "block_events": BLOCK_EVENTS,
        "options": asdict(opts),
        "settings": settings_for(opts),
        "jet_pt_min": JET_PT_MIN,
        "pythia8mc": _pythia.pythia_version(),
    }


# --------------------------------------------------------------------------------------
# One batch of events


def _process_batch(
    batch: Any,
    opts: DijetOptions,
    response: JetDetectorResponse,
    rng: np.random.Generator,
    charges: ParticleCharges,
    jetdef: Any,
) -> dict[str, np.ndarray]:
    """Reconstruct, cluster and select the events of one batch; per-event and flat
    constituent arrays of the kept ones (``event`` is the index in the batch)."""
    import awkward as ak

    from fivesigma.physics._fastjet import import_fastjet

    fastjet = import_fastjet()

    rec, offsets = flatten_events(batch)
    nev = offsets.size - 1
    event_of = np.repeat(np.arange(nev), np.diff(offsets))
    visible = (rec["status"] > 0) & ~np.isin(np.abs(rec["id"]), INVISIBLE)
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
    )
    rcount = np.bincount(reco["event"], minlength=nev)
    roff = np.concatenate([[0], np.cumsum(rcount)])
    particles = ak.unflatten(
        ak.zip({"px": reco["px"], "py": reco["py"], "pz": reco["pz"], "E": reco["energy"]}),
        rcount,
    )
    cs = fastjet.ClusterSequence(particles, jetdef)
    jets = cs.inclusive_jets(JET_PT_MIN)
    cidx = cs.constituent_index(JET_PT_MIN)
    order = ak.argsort(jets.px**2 + jets.py**2, axis=1, ascending=False)
    jets, cidx = jets[order][:, :2], cidx[order][:, :2]
    two = np.flatnonzero(ak.to_numpy(ak.num(jets)) == 2)
    jets, cidx = jets[two], cidx[two]
    p = {f: ak.to_numpy(jets[f]).astype(np.float64) for f in ("px", "py", "pz", "E")}  # (n, 2)
    pt = kinematics.pt(p["px"], p["py"])
    eta, phi = eta_phi(p["px"], p["py"], p["pz"])
    keep = (pt[:, 0] > opts.leading_pt_min) & np.all(np.abs(eta) < opts.eta_max, axis=1)
    ev = two[keep]
    p = {f: v[keep] for f, v in p.items()}
    pt, eta, phi, cidx = pt[keep], eta[keep], phi[keep], cidx[keep]
    mass = kinematics.mass(p["px"], p["py"], p["pz"], p["E"])
    n = ev.size

    # Constituents of both jets, one list per jet (jet-major: event 0 lead, event 0 sub, ...)
    per_jet = ak.flatten(cidx, axis=1)
    ncon = ak.to_numpy(ak.num(per_jet)).astype(np.int64)
    glob = ak.to_numpy(ak.flatten(per_jet)).astype(np.int64) + np.repeat(
        roff[np.repeat(ev, 2)], ncon
    )
    cons = ak.unflatten(ak.zip({f: reco[f][glob] for f in _PARTS}), ncon)
    taus = nsubjettiness(cons, 3, r0=opts.radius, beta=1.0).reshape(n, 2, 3)
    # Hardest max_constituents of each jet, pT descending.
    cpt = kinematics.pt(cons.px, cons.py)
    cons = cons[ak.argsort(cpt, axis=1, ascending=False)][:, : opts.max_constituents]
    nstore = ak.to_numpy(ak.num(cons)).astype(np.int64).reshape(n, 2)

    # J1 = the lighter jet: column index of J1 and J2 per event.
    j1 = (mass[:, 1] < mass[:, 0]).astype(np.int64)
    j2 = 1 - j1
    rows = np.arange(n)
    tot = {f: p[f].sum(axis=1) for f in p}
    out: dict[str, np.ndarray] = {
        "event": ev.astype(np.int64),
        "mjj": kinematics.mass(tot["px"], tot["py"], tot["pz"], tot["E"]),
        "mj1": mass[rows, j1],
        "mj2": mass[rows, j2],
    }
    out["delta_mj"] = out["mj2"] - out["mj1"]
    for name, col in (("j1", j1), ("j2", j2)):
        t = taus[rows, col]
        for k in range(3):
            out[f"tau{k + 1}_{name}"] = t[:, k]
    for name in ("j1", "j2"):
        out[f"tau21_{name}"] = tau_ratio(out[f"tau2_{name}"], out[f"tau1_{name}"])
        out[f"tau32_{name}"] = tau_ratio(out[f"tau3_{name}"], out[f"tau2_{name}"])
    for name, col in (("j1", j1), ("j2", j2)):
        out[f"pt_{name}"] = pt[rows, col]
        out[f"eta_{name}"] = eta[rows, col]
        out[f"phi_{name}"] = phi[rows, col]
        out[f"nconst_{name}"] = ncon.reshape(n, 2)[rows, col].astype(np.int32)
    pthat = np.sqrt(np.maximum(ak.to_numpy(batch["info"]["pT2Hat"]).astype(np.float64), 0.0))
    out["pthat"] = pthat[ev]
    out["label"] = np.full(n, 1 if opts.process == "signal" else 0, dtype=np.int32)
    # Constituent arrays of J1 and J2 (flat, with their counts).
    flat_idx = 2 * rows
    for name, col in (("j1", j1), ("j2", j2)):
        sel = cons[flat_idx + col]
        out[f"n{name}"] = nstore[rows, col].astype(np.int32)
        for f in _PARTS:
            out[f"{name}_{f}"] = ak.to_numpy(ak.flatten(sel[f])).astype(np.float32)
    return out


def _generate_blocks(task: dict[str, Any], report: Any) -> list[dict[str, Any]]:
    """Generate each block of ``task['blocks']`` and save its kept events to the block's .npz."""
    from fivesigma.physics._fastjet import import_fastjet

    fastjet = import_fastjet()

    opts = DijetOptions(**task["options"])
    response = JetDetectorResponse(**task["detector"])
    jetdef = fastjet.JetDefinition(fastjet.antikt_algorithm, opts.radius)
    results = []
    for block in task["blocks"]:
        # A fresh Pythia per block: a block's content depends on its seed only.
        pythia = _pythia.make_pythia(task["settings"], block["pythia_seed"])
        charges = ParticleCharges(pythia)
        rng = np.random.default_rng(block["detector_seed"])
        parts: list[dict[str, np.ndarray]] = []
        done = kept = 0
        while done < block["events"]:
            batch = pythia.nextBatch(min(_BATCH, block["events"] - done))
            got = len(batch)
            if got == 0:
                raise GenerationError(
                    f"Pythia failed to generate events for block {block['block']}"
                )
            arrays = _process_batch(batch, opts, response, rng, charges, jetdef)
            arrays["event"] = arrays["event"] + block["block"] * BLOCK_EVENTS + done
            parts.append(arrays)
            done += got
            kept += arrays["mjj"].size
            report(arrays["mjj"].size)
        info = pythia.infoPython()
        merged = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        np.savez(block["output"], **merged)
        results.append(
            {
                "block": block["block"],
                "events": done,
                "kept": kept,
                "sigma_pb": info.sigmaGen() * _pythia.MB_TO_PB,
                "sigma_err_pb": info.sigmaErr() * _pythia.MB_TO_PB,
                "output": block["output"],
            }
        )
    return results


# --------------------------------------------------------------------------------------
# The whole sample


def _load_blocks(results: list[dict[str, Any]], events: int) -> tuple[dict[str, np.ndarray], int]:
    """Concatenate block outputs in block order and keep the first ``events`` events.

    Returns the arrays and the number of blocks used.
    """
    parts, have, used = [], 0, 0
    for res in sorted(results, key=lambda r: r["block"]):
        if have >= events:
            break
        with np.load(res["output"]) as data:
            parts.append({key: data[key] for key in data.files})
        have += res["kept"]
        used += 1
    arrays = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    n = min(events, arrays["mjj"].size)
    out = {}
    for key, val in arrays.items():
        jet = key[:2]
        if key[3:] in _PARTS and jet in ("j1", "j2"):
            out[key] = val[: int(arrays[f"n{jet}"][:n].sum())]
        else:
            out[key] = val[:n]
    return out, used


def _write_root(path: Path, arrays: dict[str, np.ndarray], weight: float, provenance: str) -> None:
    """Write the TTree ``Events`` and the TObjString ``provenance``."""
    import awkward as ak
    import uproot

    jets = {
        name: ak.zip({f: ak.unflatten(arrays[f"{name}_{f}"], arrays[f"n{name}"]) for f in _PARTS})
        for name in ("j1", "j2")
    }
    flat = {**EVENT_BRANCHES, "weight": np.float64}
    n = arrays["mjj"].size
    with uproot.recreate(path) as f:
        # A record of jagged arrays becomes branches j1_px, ... with the counter nj1.
        tree = f.mktree(
            "Events",
            {**flat, **{name: jets[name].type.content for name in jets}},
            title="fivesigma dijets",
        )
        chunk = 50_000
        for start in range(0, max(n, 1), chunk):
            stop = min(start + chunk, n)
            data = {
                name: arrays[name][start:stop].astype(dt)
                for name, dt in flat.items()
                if name != "weight"
            }
            data["weight"] = np.full(stop - start, weight, dtype=np.float64)
            tree.extend({**data, **{name: jets[name][start:stop] for name in jets}})
        f["provenance"] = provenance


def run(
    events: int,
    out: Path,
    seed: int,
    jobs: int,
    luminosity_fb: float = 140.0,
    progress: bool = True,
    detector: JetDetectorResponse | None = None,
    options: dict[str, Any] | DijetOptions | None = None,
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Generate ``events`` kept dijet events into ``out``; returns (files, provenance).

    Files are written into a hidden temporary directory inside ``out`` and moved into
    place only when complete.
    """
    _pythia.require_pythia()
    try:
        from fivesigma.physics._fastjet import import_fastjet

        import_fastjet()
    except ImportError:
        raise GenerationError(
            "dijet samples need fastjet; install it with 'pip install fastjet==3.5.2.0'"
        ) from None
    opts = parse_options(options)
    detector = detector if detector is not None else JetDetectorResponse()
    if not isinstance(detector, JetDetectorResponse):
        raise GenerationError(
            f"dijets need a JetDetectorResponse as detector, got {type(detector).__name__}"
        )
    name = f"dijets_{opts.process}"
    settings = settings_for(opts)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    work = Path(tempfile.mkdtemp(dir=out, prefix=".fivesigma-generate-"))
    try:
        results: list[dict[str, Any]] = []
        next_block = 0
        seeds: list[_pythia.JobSeeds] = []
        t0 = time.monotonic()
        while True:
            have = sum(r["kept"] for r in results)
            nevents = sum(r["events"] for r in results)
            if have >= events:
                break
            if nevents >= MAX_EVENTS_PER_KEPT * max(events, 1) or (
                nevents >= 2 * BLOCK_EVENTS and have * MAX_EVENTS_PER_KEPT < nevents
            ):
                raise GenerationError(
                    f"dijets {opts.process}: only {have} of {nevents} events pass leading jet "
                    f"pT > {opts.leading_pt_min:g} GeV, |eta| < {opts.eta_max:g} "
                    f"(pTHatMin {opts.pthat_min:g} GeV); accepted: at least 1 per "
                    f"{MAX_EVENTS_PER_KEPT} events - lower leading_pt_min or raise pthat_min"
                )
            eff = (
                have / nevents
                if have
                else _EFFICIENCY_GUESS[opts.process] / (1 + nevents / BLOCK_EVENTS)
            )
            nblocks = max(1, math.ceil(1.1 * (events - have) / (eff * BLOCK_EVENTS)))
            nblocks = min(nblocks, math.ceil(MAX_EVENTS_PER_KEPT * events / BLOCK_EVENTS))
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
                expected = max(1, round(min(events - have, eff * BLOCK_EVENTS * nblocks) / njobs))
                task = {
                    "options": asdict(opts),
                    "settings": settings,
                    "detector": detector.to_dict(),
                    "blocks": blocks[j::njobs],
                }
                tasks.append((f"dijets {opts.process}", task, expected))
            for res in _pythia.run_jobs(
                _generate_blocks, tasks, njobs, progress=progress, unit="events"
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
        n_kept = int(sum(r["kept"] for r in used_res))
        efficiency = n_kept / n_events
        n_out = int(arrays["mjj"].size)
        weight = sigma * 1000.0 * luminosity_fb * efficiency / n_out
        provenance = {
            "format_version": FORMAT_VERSION,
            "fivesigma_version": __version__,
            "pythia8mc_version": _pythia.pythia_version(),
            "fastjet_version": fastjet_version(),
            "sample": "dijets",
            "process": opts.process,
            "options": asdict(opts),
            "pythia_settings": settings,
            "signal_model": (
                f"W' ({opts.m_resonance:g} GeV, PDG 34) -> X Y, X = PDG 37 "
                f"({opts.m_x:g} GeV) -> u dbar, Y = PDG 36 ({opts.m_y:g} GeV) -> q qbar "
                f"(q = u, d, s); widths {WIDTH_FRACTION:g} x mass, masses within "
                f"+-{WINDOW_FRACTION:g} x mass"
                if opts.process == "signal"
                else None
            ),
            "jet_algorithm": (
                f"anti-kt R={opts.radius:g} (E-scheme), reconstructed particles, "
                f"jets with pT > {JET_PT_MIN:g} GeV"
            ),
            "selection": (
                f"two leading jets, leading pT > {opts.leading_pt_min:g} GeV, "
                f"both |eta| < {opts.eta_max:g}"
            ),
            "jet_order": "J1 = the lighter of the two leading jets, J2 the heavier",
            "labels": {str(k): v for k, v in LABELS.items()},
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
                "SeedSequence([seed, crc32('dijets_<process>'), block]).generate_state(2): "
                "pythia = w0 % 900000000 + 1, detector = w1; blocks run in order until "
                "enough events pass and the first `events` kept events in block order are kept"
            ),
            "detector_response": detector.to_dict(),
            "cross_section_pb": sigma,
            "cross_section_error_pb": err,
            "events_generated": n_events,
            "events_kept_in_used_blocks": n_kept,
            "efficiency": efficiency,
            "luminosity_fb": luminosity_fb,
            "weight": weight,
            "sum_weights": weight * n_out,
            "events": n_out,
            "tree": "Events",
            "processes": {
                name: {"cross_section_pb": sigma, "cross_section_error_pb": err, "events": n_out}
            },
            "created": created,
            "generation_seconds": round(elapsed, 3),
        }
        text = json.dumps(provenance, indent=1, sort_keys=True)
        path = work / f"{name}.root"
        _write_root(path, arrays, weight, text)
        (work / "provenance.json").write_text(text + "\n")
        final = out / path.name
        os.replace(path, final)
        os.replace(work / "provenance.json", out / "provenance.json")
        return {name: final}, provenance
    finally:
        shutil.rmtree(work, ignore_errors=True)
