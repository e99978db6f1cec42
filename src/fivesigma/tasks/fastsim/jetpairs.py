"""Pairs of (generator-level jet, reconstructed jet) from the jet task's own simulation.

Pythia8 (the settings of :mod:`fivesigma.generate.jets`: 14 TeV, MPI and hadronisation on,
``c tau > 10 mm`` stable) generates events; the visible final state is clustered twice
with anti-kT R = 0.8 (FastJet):

- **gen jets** from the true particles;
- **reco jets** from the particles of
  :meth:`fivesigma.physics.jet_detector.JetDetectorResponse.apply` (tracking efficiency,
  smearing, calorimeter cells, impact parameters).

Each gen jet with ``pT >= pt_min`` and ``|eta| < eta_max`` is matched to the nearest reco
jet of its event (reco ``pT >= 0.3 pt_min``) within ``Delta R < match_dr``; unmatched gen
jets are counted, not kept.  Flavour labels follow the ``qcd`` sample (b, c, light,
gluon; :data:`fivesigma.physics.labels.JET_LABELS`).

The wall time of what a surrogate replaces (the detector response, reco clustering, reco
N-subjettiness and the b-tag observable) is measured per block, so the speed comparison
of the task is made in the same run on the same machine.

Columns of a :class:`JetPairs` table (float64):

==================  ===========================================================
``gen_pt`` ...      gen jet pT (GeV), eta, phi, mass (GeV), constituent count,
                    flavour label (0 light, 1 gluon, 2 c, 3 b), tau21, tau32
``reco_pt`` ...     matched reco jet pT, eta, phi, mass, tau21, tau32, constituent
                    count, ``reco_btag``: the largest |d0| / sigma(d0) of its tracks
                    (0 without tracks)
==================  ===========================================================
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.errors import DataError, GenerationError

__all__ = [
    "CONDITIONS",
    "OUTPUTS",
    "JetPairs",
    "cached_pairs",
    "reco_observables",
    "sample_pairs",
]

#: conditions of the surrogate (gen jet)
CONDITIONS = (
    "gen_pt",
    "gen_eta",
    "gen_phi",
    "gen_mass",
    "gen_nconst",
    "gen_flavour",
    "gen_tau21",
    "gen_tau32",
)
#: outputs of the surrogate (reco jet)
OUTPUTS = (
    "reco_pt",
    "reco_eta",
    "reco_phi",
    "reco_mass",
    "reco_tau21",
    "reco_tau32",
    "reco_nconst",
    "reco_btag",
)
#: bump when the content of a pair changes (invalidates the cache)
FORMAT_VERSION = 1
BLOCK_EVENTS = 200
RADIUS = 0.8


@dataclass
class JetPairs:
    """Matched jet pairs: ``columns`` name -> float64 array; ``info`` provenance and timing."""

    columns: dict[str, np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(next(iter(self.columns.values())).size) if self.columns else 0

    def matrix(self, names: tuple[str, ...] | list[str]) -> np.ndarray:
        """The columns ``names`` as an (n, len(names)) float64 matrix."""
        missing = [n for n in names if n not in self.columns]
        if missing:
            raise DataError(
                f"jet pairs have no column(s) {', '.join(missing)}; "
                f"they have {', '.join(self.columns)}"
            )
        return np.column_stack([np.asarray(self.columns[n], np.float64) for n in names])

    def take(self, index: np.ndarray) -> JetPairs:
        return JetPairs({k: v[index] for k, v in self.columns.items()}, dict(self.info))


def _jets(fastjet: Any, ak: Any, px, py, pz, e, counts, jetdef, pt_min: float) -> dict[str, Any]:
    """anti-kT jets above ``pt_min`` of flat particles grouped by ``counts``."""
    from fivesigma.physics import kinematics

    parts = ak.unflatten(ak.zip({"px": px, "py": py, "pz": pz, "E": e}), counts)
    cs = fastjet.ClusterSequence(parts, jetdef)
    jets = cs.inclusive_jets(pt_min)
    cidx = cs.constituent_index(pt_min)
    njet = ak.to_numpy(ak.num(jets)).astype(np.int64)
    jpx, jpy, jpz, je = (ak.to_numpy(ak.flatten(jets[f])) for f in ("px", "py", "pz", "E"))
    return {
        "event": np.repeat(np.arange(counts.size), njet),
        "pt": kinematics.pt(jpx, jpy),
        "eta": kinematics.pseudorapidity(jpx, jpy, jpz, zero_pt="floor", eps=1e-12),
        "phi": kinematics.phi(jpx, jpy),
        "mass": kinematics.mass(jpx, jpy, jpz, je),
        "cidx": ak.flatten(cidx, axis=1),
    }


def _constituents(ak: Any, jets: dict[str, Any], sel: np.ndarray, offsets: np.ndarray) -> tuple:
    """Global particle indices of the constituents of jets ``sel`` and their jet rows."""
    per_jet = jets["cidx"][sel]
    ncon = ak.to_numpy(ak.num(per_jet)).astype(np.int64)
    local = ak.to_numpy(ak.flatten(per_jet)).astype(np.int64)
    jet_of = np.repeat(np.arange(sel.size), ncon)
    return local + offsets[jets["event"][sel]][jet_of], jet_of, ncon


def _taus(ak: Any, px, py, pz, e, ncon) -> tuple[np.ndarray, np.ndarray]:
    from fivesigma.physics.substructure import nsubjettiness, tau_ratio

    if ncon.size == 0:
        return np.zeros(0), np.zeros(0)
    c = ak.unflatten(ak.zip({"px": px, "py": py, "pz": pz, "energy": e}), ncon)
    taus = nsubjettiness(c, n_max=3, r0=RADIUS)
    return tau_ratio(taus[:, 1], taus[:, 0]), tau_ratio(taus[:, 2], taus[:, 1])


def reco_observables(
    ak: Any, fastjet: Any, reco: dict[str, np.ndarray], nev: int, jetdef: Any, pt_min: float
) -> dict[str, np.ndarray]:
    """Reco jets of detector-response particles with their substructure and b-tag
    observable (everything a jet surrogate replaces)."""
    rcount = np.bincount(reco["event"], minlength=nev)
    roff = np.concatenate([[0], np.cumsum(rcount)])
    jets = _jets(
        fastjet, ak, reco["px"], reco["py"], reco["pz"], reco["energy"], rcount, jetdef, pt_min
    )
    sel = np.arange(jets["pt"].size)
    glob, jet_of, ncon = _constituents(ak, jets, sel, roff)
    t21, t32 = _taus(
        ak, reco["px"][glob], reco["py"][glob], reco["pz"][glob], reco["energy"][glob], ncon
    )
    err = reco["d0err"][glob]
    sig = np.where(err > 0, np.abs(reco["d0"][glob]) / np.where(err > 0, err, 1.0), 0.0)
    btag = np.zeros(sel.size)
    np.maximum.at(btag, jet_of, sig)
    return {
        "event": jets["event"],
        "pt": jets["pt"],
        "eta": jets["eta"],
        "phi": jets["phi"],
        "mass": jets["mass"],
        "tau21": t21,
        "tau32": t32,
        "nconst": ncon.astype(np.float64),
        "btag": btag,
    }


def _block(
    settings: list[str],
    pythia_seed: int,
    detector_seed: int,
    events: int,
    pt_min: float,
    eta_max: float,
    match_dr: float,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    import awkward as ak

    from fivesigma.generate import _pythia
    from fivesigma.generate import jets as genjets
    from fivesigma.physics import kinematics
    from fivesigma.physics._fastjet import import_fastjet
    from fivesigma.physics.jet_detector import JetDetectorResponse

    fastjet = import_fastjet()
    jetdef = fastjet.JetDefinition(fastjet.antikt_algorithm, RADIUS)
    pythia = _pythia.make_pythia(settings, pythia_seed)
    charges = _pythia.ParticleCharges(pythia)
    response = JetDetectorResponse()
    rng = np.random.default_rng(detector_seed)
    out: list[dict[str, np.ndarray]] = []
    stats = {"events": 0, "gen_jets": 0, "matched": 0, "detector_seconds": 0.0}
    done = 0
    while done < events:
        batch = pythia.nextBatch(min(50, events - done))
        if len(batch) == 0:
            raise GenerationError("Pythia failed to generate events for the jet pairs")
        rec, offsets = _pythia.flatten_events(batch)
        nev = offsets.size - 1
        done += nev
        event_of = np.repeat(np.arange(nev), np.diff(offsets))
        visible = (rec["status"] > 0) & ~np.isin(np.abs(rec["id"]), (12, 14, 16))
        px, py, pz, e = (rec[k][visible] for k in ("px", "py", "pz", "e"))
        pid, ev = rec["id"][visible], event_of[visible]
        gcount = np.bincount(ev, minlength=nev)
        goff = np.concatenate([[0], np.cumsum(gcount)])
        gen = _jets(fastjet, ak, px, py, pz, e, gcount, jetdef, pt_min)
        keep = np.flatnonzero(np.abs(gen["eta"]) < eta_max)
        stats["gen_jets"] += keep.size
        if keep.size == 0:
            continue
        # --- what the surrogate replaces: the response, reco jets and their observables
        t0 = time.thread_time()  # CPU time of this thread: independent of the load
        reco = response.apply(
            px,
            py,
            pz,
            e,
            pid,
            charges(pid),
            ev,
            rng,
            vertex=(rec["vx"][visible], rec["vy"][visible], rec["vz"][visible]),
        )
        rj = reco_observables(ak, fastjet, reco, nev, jetdef, 0.3 * pt_min)
        stats["detector_seconds"] += time.thread_time() - t0
        # --- match every gen jet to the nearest reco jet of its event
        best = np.full(keep.size, -1)
        for k, j in enumerate(keep.tolist()):
            cand = np.flatnonzero(rj["event"] == gen["event"][j])
            if cand.size == 0:
                continue
            dr = kinematics.delta_r(gen["eta"][j], gen["phi"][j], rj["eta"][cand], rj["phi"][cand])
            i = int(np.argmin(dr))
            if dr[i] < match_dr:
                best[k] = cand[i]
        ok = best >= 0
        keep, best = keep[ok], best[ok]
        if keep.size == 0:
            continue
        glob, _, ncon = _constituents(ak, gen, keep, goff)
        t21, t32 = _taus(ak, px[glob], py[glob], pz[glob], e[glob], ncon)
        flavour = np.empty(keep.size)
        truth: dict[int, Any] = {}
        for k, j in enumerate(keep.tolist()):
            evn = int(gen["event"][j])
            if evn not in truth:
                lo, hi = offsets[evn], offsets[evn + 1]
                truth[evn] = genjets.flavour_truth({key: v[lo:hi] for key, v in rec.items()})
            label = genjets.flavour_label(truth[evn], float(gen["eta"][j]), float(gen["phi"][j]))
            flavour[k] = 0 if label is None else label
        row = {
            "gen_pt": gen["pt"][keep],
            "gen_eta": gen["eta"][keep],
            "gen_phi": gen["phi"][keep],
            "gen_mass": gen["mass"][keep],
            "gen_nconst": ncon.astype(np.float64),
            "gen_flavour": flavour,
            "gen_tau21": t21,
            "gen_tau32": t32,
        }
        for name in ("pt", "eta", "phi", "mass", "tau21", "tau32", "nconst", "btag"):
            row[f"reco_{name}"] = np.asarray(rj[name][best], np.float64)
        out.append(row)
        stats["matched"] += keep.size
    stats["events"] = done
    if not out:
        return {n: np.zeros(0) for n in (*CONDITIONS, *OUTPUTS)}, stats
    return {k: np.concatenate([o[k] for o in out]) for k in out[0]}, stats


def _settings(process: str, pthat_min: float) -> list[str]:
    from fivesigma.generate import jets as genjets

    if process not in genjets.QCD_PROCESSES:
        raise GenerationError(
            f"unknown fastsim jet process {process!r}; accepted: {', '.join(genjets.QCD_PROCESSES)}"
        )
    return [
        *genjets.BASE_SETTINGS,
        *genjets.JET_PROCESSES[process],
        f"PhaseSpace:pTHatMin = {pthat_min:g}",
    ]


def sample_pairs(
    events: dict[str, int],
    seed: int,
    pt_min: float = 150.0,
    eta_max: float = 2.0,
    match_dr: float = 0.4,
    progress: bool = False,
) -> JetPairs:
    """Generate matched (gen, reco) jet pairs.

    Parameters
    ----------
    events
        Process (``qcd``, ``qcd_bb``, ``qcd_cc``) -> events to generate, in blocks of
        :data:`BLOCK_EVENTS` with their own seeds.
    seed
        Master seed.
    pt_min, eta_max
        Gen jets with ``pT >= pt_min`` (GeV) and ``|eta| < eta_max`` are kept; Pythia's
        ``pTHatMin`` is ``0.8 pt_min``.
    match_dr
        Largest Delta R between a gen jet and its reco jet.
    """
    from fivesigma.generate import _pythia

    parts, totals = [], {"events": 0, "gen_jets": 0, "matched": 0, "detector_seconds": 0.0}
    t0 = time.perf_counter()
    for process, n in events.items():
        settings = _settings(process, 0.8 * pt_min)
        nblocks = max(1, math.ceil(n / BLOCK_EVENTS))
        seeds = _pythia.job_seeds(int(seed), f"fastsim-{process}", nblocks)
        for b, js in enumerate(seeds):
            todo = min(BLOCK_EVENTS, n - b * BLOCK_EVENTS)
            arrays, stats = _block(
                settings, js.pythia, js.detector, todo, pt_min, eta_max, match_dr
            )
            parts.append(arrays)
            for k in totals:
                totals[k] += stats[k]
            if progress:
                print(
                    f"  jet pairs {process}: block {b + 1}/{nblocks}, {totals['matched']} pairs",
                    flush=True,
                )
    columns = {k: np.concatenate([p[k] for p in parts]) for k in (*CONDITIONS, *OUTPUTS)}
    info = {
        **totals,
        "match_efficiency": totals["matched"] / max(totals["gen_jets"], 1),
        "generation_seconds": time.perf_counter() - t0,
        "events_by_process": dict(events),
        "pt_min": pt_min,
        "eta_max": eta_max,
        "match_dr": match_dr,
    }
    return JetPairs(columns, info)


def _cache_dir() -> Path:
    from fivesigma.generate.cache import default_cache_dir

    return default_cache_dir() / "fastsim-jetpairs"


def cached_pairs(
    events: dict[str, int],
    seed: int,
    pt_min: float = 150.0,
    eta_max: float = 2.0,
    match_dr: float = 0.4,
    progress: bool = False,
    cache: bool = True,
) -> JetPairs:
    """:func:`sample_pairs`, cached under the generator cache (``fastsim-jetpairs/``) by
    a hash of every argument, the format version and the Pythia version."""
    from fivesigma.generate import _pythia

    key = {
        "events": dict(sorted(events.items())),
        "seed": int(seed),
        "pt_min": float(pt_min),
        "eta_max": float(eta_max),
        "match_dr": float(match_dr),
        "format": FORMAT_VERSION,
        "block_events": BLOCK_EVENTS,
        "pythia": _pythia.pythia_version(),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    path = _cache_dir() / f"{digest}.npz"
    if cache and path.is_file():
        with np.load(path, allow_pickle=False) as data:
            columns = {k: data[k] for k in data.files if k != "_info"}
            info = json.loads(str(data["_info"]))
        info["cached"] = True
        return JetPairs(columns, info)
    pairs = sample_pairs(events, seed, pt_min, eta_max, match_dr, progress)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{time.time_ns()}.npz")
        np.savez(tmp, _info=np.asarray(json.dumps(pairs.info)), **pairs.columns)
        tmp.replace(path)
    pairs.info["cached"] = False
    return pairs
