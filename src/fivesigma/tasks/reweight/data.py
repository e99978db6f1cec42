"""Source and target samples of the reweight task.

The built-in samples are QCD dijet events from Pythia8 (13 TeV, ``HardQCD:all``,
``PhaseSpace:pTHatMin``, hadronisation on, MPI off for speed) with one parton-shower
parameter changed: ``TimeShower:alphaSvalue``, the final-state shower's alpha_s(mZ)
(Pythia's default 0.1365).  For every event the leading anti-kT R = 0.4 jet with
|eta| < 2.5 is described twice:

- at generator level (``gen_*``), from the visible stable particles;
- at detector level (``reco_*``), from the same particles after the jet task's detector
  response (:class:`fivesigma.physics.jet_detector.JetDetectorResponse`: tracks,
  calorimeter cells), clustered again.

Observables (:data:`OBSERVABLES`): ``pt``, ``eta``, ``mass`` (GeV), ``nconst`` (number of
constituents), ``ncharged`` (charged constituents, tracks at detector level), ``width``
(sum pT_i dR_i / pT), ``ptd`` (sqrt(sum pT_i^2) / sum pT_i), ``lead_frac`` (hardest
constituent's pT / jet pT) and ``tau21`` (N-subjettiness, R0 = 0.4).  Events without a
jet above ``jet_pt_min`` at either level are dropped.

Samples are made in fixed blocks, each with its own seeds, and cached as ``.npz`` under
``<cache>/reweight-<hash>/`` (the hash covers every setting), so they depend on (seed,
alpha_s, events) only, not on the number of jobs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.errors import DataError, GenerationError

__all__ = [
    "OBSERVABLES",
    "SampleSpec",
    "read_user_sample",
    "shower_sample",
]

#: Per-jet observables of the built-in samples (each as ``gen_<name>`` and ``reco_<name>``).
OBSERVABLES: tuple[str, ...] = (
    "pt",
    "eta",
    "mass",
    "nconst",
    "ncharged",
    "width",
    "ptd",
    "lead_frac",
    "tau21",
)

#: Events per block of work (part of the sample's definition).
BLOCK_EVENTS = 1000
_BATCH = 250
FORMAT_VERSION = 1
RADIUS = 0.4
ETA_MAX = 2.5


class SampleSpec(dict):
    """The definition of one built-in sample (a plain dict, JSON-serialisable)."""


def settings_for(alpha_s: float, pthat_min: float) -> list[str]:
    """Pythia settings of a sample with FSR alpha_s(mZ) = ``alpha_s``."""
    return [
        "Beams:idA = 2212",
        "Beams:idB = 2212",
        "Beams:eCM = 13000.",
        "PartonLevel:MPI = off",
        "HadronLevel:all = on",
        "HardQCD:all = on",
        f"PhaseSpace:pTHatMin = {pthat_min:g}",
        f"TimeShower:alphaSvalue = {alpha_s:.6g}",
    ]


def _leading_jets(
    px: np.ndarray,
    py: np.ndarray,
    pz: np.ndarray,
    e: np.ndarray,
    charge: np.ndarray,
    event: np.ndarray,
    nev: int,
    jet_pt_min: float,
) -> dict[str, np.ndarray]:
    """Observables of each event's leading jet (NaN rows for events without one)."""
    import awkward as ak

    from fivesigma.physics import kinematics
    from fivesigma.physics._fastjet import import_fastjet
    from fivesigma.physics.substructure import nsubjettiness, tau_ratio

    fastjet = import_fastjet()
    counts = np.bincount(event, minlength=nev)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    parts = ak.unflatten(ak.zip({"px": px, "py": py, "pz": pz, "E": e}), counts)
    cs = fastjet.ClusterSequence(parts, fastjet.JetDefinition(fastjet.antikt_algorithm, RADIUS))
    jets = cs.inclusive_jets(jet_pt_min)
    cidx = cs.constituent_index(jet_pt_min)
    njet = ak.to_numpy(ak.num(jets)).astype(np.int64)
    jpx, jpy, jpz, je = (np.asarray(ak.to_numpy(ak.flatten(jets[f])), float)
                         for f in ("px", "py", "pz", "E"))  # fmt: skip
    jev = np.repeat(np.arange(nev), njet)
    jpt = kinematics.pt(jpx, jpy)
    jeta = kinematics.pseudorapidity(jpx, jpy, jpz, zero_pt="floor", eps=1e-12)
    ok = (np.abs(jeta) < ETA_MAX) & (jpt >= jet_pt_min)
    cand = np.flatnonzero(ok)
    order = cand[np.lexsort((-jpt[cand], jev[cand]))]
    first = np.ones(order.size, dtype=bool)
    first[1:] = jev[order][1:] != jev[order][:-1]
    lead = order[first]  # index of each event's leading jet
    ev = jev[lead]
    out = {name: np.full(nev, np.nan) for name in OBSERVABLES}
    if lead.size == 0:
        return out
    per_jet = ak.flatten(cidx, axis=1)[lead]
    ncon = ak.to_numpy(ak.num(per_jet)).astype(np.int64)
    glob = ak.to_numpy(ak.flatten(per_jet)).astype(np.int64) + np.repeat(offsets[ev], ncon)
    jet_of = np.repeat(np.arange(lead.size), ncon)
    cpt = kinematics.pt(px[glob], py[glob])
    ceta = kinematics.pseudorapidity(px[glob], py[glob], pz[glob], zero_pt="floor", eps=1e-12)
    cphi = kinematics.phi(px[glob], py[glob])
    lphi = kinematics.phi(jpx[lead], jpy[lead])
    dr = kinematics.delta_r(ceta, cphi, jeta[lead][jet_of], lphi[jet_of])
    sum_pt = np.bincount(jet_of, weights=cpt, minlength=lead.size)
    lead_pt = np.zeros(lead.size)
    np.maximum.at(lead_pt, jet_of, cpt)
    con = ak.unflatten(
        ak.zip({"px": px[glob], "py": py[glob], "pz": pz[glob], "energy": e[glob]}), ncon
    )
    taus = nsubjettiness(con, n_max=2, r0=RADIUS)
    values = {
        "pt": jpt[lead],
        "eta": jeta[lead],
        "mass": kinematics.mass(jpx[lead], jpy[lead], jpz[lead], je[lead]),
        "nconst": ncon.astype(float),
        "ncharged": np.bincount(jet_of, weights=(charge[glob] != 0), minlength=lead.size),
        "width": np.bincount(jet_of, weights=cpt * dr, minlength=lead.size) / jpt[lead],
        "ptd": np.sqrt(np.bincount(jet_of, weights=cpt**2, minlength=lead.size)) / sum_pt,
        "lead_frac": lead_pt / jpt[lead],
        "tau21": tau_ratio(taus[:, 1], taus[:, 0]),
    }
    for name, val in values.items():
        out[name][ev] = val
    return out


def _process_batch(batch: Any, response: Any, rng: np.random.Generator, charges: Any,
                   jet_pt_min: float) -> dict[str, np.ndarray]:  # fmt: skip
    from fivesigma.generate._pythia import flatten_events

    rec, offsets = flatten_events(batch)
    nev = offsets.size - 1
    event_of = np.repeat(np.arange(nev), np.diff(offsets))
    visible = (rec["status"] > 0) & ~np.isin(np.abs(rec["id"]), (12, 14, 16))
    pid = rec["id"][visible]
    q = charges(pid)
    ev = event_of[visible]
    gen = _leading_jets(rec["px"][visible], rec["py"][visible], rec["pz"][visible],
                        rec["e"][visible], q, ev, nev, jet_pt_min)  # fmt: skip
    reco = response.apply(rec["px"][visible], rec["py"][visible], rec["pz"][visible],
                          rec["e"][visible], pid, q, ev, rng)  # fmt: skip
    det = _leading_jets(reco["px"], reco["py"], reco["pz"], reco["energy"], reco["charge"],
                        reco["event"], nev, jet_pt_min)  # fmt: skip
    keep = np.isfinite(gen["pt"]) & np.isfinite(det["pt"])
    out = {f"gen_{k}": v[keep] for k, v in gen.items()}
    out.update({f"reco_{k}": v[keep] for k, v in det.items()})
    return out


def _worker(task: dict[str, Any], report: Any) -> list[dict[str, np.ndarray]]:
    """Generate the blocks of one job (module level: run in a spawned process)."""
    from fivesigma.generate import _pythia
    from fivesigma.generate._pythia import ParticleCharges
    from fivesigma.physics.jet_detector import JetDetectorResponse

    response = JetDetectorResponse()
    results = []
    for block in task["blocks"]:
        pythia = _pythia.make_pythia(task["settings"], block["pythia_seed"])
        charges = ParticleCharges(pythia)
        rng = np.random.default_rng(block["detector_seed"])
        parts, done = [], 0
        while done < block["events"]:
            want = min(_BATCH, block["events"] - done)
            batch = pythia.nextBatch(want)
            if len(batch) == 0:
                raise GenerationError(f"Pythia failed to generate block {block['block']}")
            parts.append(_process_batch(batch, response, rng, charges, task["jet_pt_min"]))
            done += len(batch)
            report(len(batch))
        results.append({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
    return results


def _key(alpha_s: float, events: int, seed: int, pthat_min: float, jet_pt_min: float) -> dict:
    from fivesigma.generate import _pythia
    from fivesigma.physics.jet_detector import JetDetectorResponse

    return {
        "format_version": FORMAT_VERSION,
        "block_events": BLOCK_EVENTS,
        "events": int(events),
        "seed": int(seed),
        "settings": settings_for(alpha_s, pthat_min),
        "jet_pt_min": float(jet_pt_min),
        "radius": RADIUS,
        "detector": JetDetectorResponse().to_dict(),
        "pythia8mc": _pythia.pythia_version(),
    }


def shower_sample(
    alpha_s: float,
    events: int,
    seed: int,
    *,
    pthat_min: float = 200.0,
    jet_pt_min: float = 150.0,
    jobs: int | None = None,
    progress: bool = True,
    cache_dir: str | Path | None = None,
) -> dict[str, np.ndarray]:
    """The built-in sample with FSR alpha_s = ``alpha_s``: ``gen_*`` and ``reco_*`` arrays.

    ``events`` Pythia events are generated (fewer rows come back: events without a jet
    above ``jet_pt_min`` at either level are dropped).  Cached (see the module docstring).
    """
    from fivesigma.core.files import atomic_dir
    from fivesigma.generate import _pythia
    from fivesigma.generate.cache import default_cache_dir

    if not 0.05 <= alpha_s <= 0.3:
        raise GenerationError(f"alpha_s {alpha_s:g} is outside [0.05, 0.3]")
    key = _key(alpha_s, events, seed, pthat_min, jet_pt_min)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    directory = Path(cache_dir or default_cache_dir()) / f"reweight-{digest}"
    path = directory / "sample.npz"
    if not path.is_file():
        sizes = _pythia.split_blocks(int(events), BLOCK_EVENTS)
        seeds = _pythia.job_seeds(int(seed), f"reweight-{alpha_s:.6g}", len(sizes))
        blocks = [{"block": b, "events": n, "pythia_seed": s.pythia, "detector_seed": s.detector}
                  for b, (n, s) in enumerate(zip(sizes, seeds, strict=True))]  # fmt: skip
        njobs = min(_pythia.default_jobs(jobs), len(blocks))
        label = f"alpha_s {alpha_s:g}"
        tasks = [(label, {"settings": key["settings"], "jet_pt_min": jet_pt_min,
                          "blocks": blocks[j::njobs]}, sum(b["events"] for b in blocks[j::njobs]))
                 for j in range(njobs)]  # fmt: skip
        results = _pythia.run_jobs(_worker, tasks, njobs, progress=progress)
        by_block: dict[int, dict[str, np.ndarray]] = {}
        for j, res in enumerate(results):
            for b, arrays in zip(blocks[j::njobs], res, strict=True):
                by_block[b["block"]] = arrays
        merged = {k: np.concatenate([by_block[b][k] for b in sorted(by_block)])
                  for k in by_block[0]}  # fmt: skip
        with atomic_dir(directory, overwrite=True) as tmp:
            np.savez(tmp / "sample.npz", **merged)
            (tmp / "cache_key.json").write_text(json.dumps(key, indent=1, sort_keys=True))
    with np.load(path, allow_pickle=False) as f:
        return {k: np.asarray(f[k]) for k in f.files}


def read_user_sample(
    files: Sequence[str], tree: str, features: Sequence[str], what: str
) -> dict[str, np.ndarray]:
    """The ``features`` columns of a user's files (ROOT, Parquet, HDF5, CSV) as float arrays.

    DataError (one line) for a missing column, a jagged column or no events.
    """
    import awkward as ak

    from fivesigma.io.events import expand_files, list_columns, read_events

    paths = expand_files(list(files))
    for p in paths:
        have = list_columns(p, tree)
        missing = [f for f in features if f not in have]
        if missing:
            raise DataError(
                f"{what} file '{p}' has no column(s) {', '.join(missing)}; it has "
                f"{', '.join(have[:12])}{' ...' if len(have) > 12 else ''} (source and "
                f"target need the same feature set)"
            )
    events = read_events([str(p) for p in paths], tree=tree, columns=list(features))
    out = {}
    for f in features:
        col = events[f]
        if col.ndim != 1 or not isinstance(ak.to_numpy(col, allow_missing=False), np.ndarray):
            raise DataError(f"{what} column {f!r} is not one number per event")
        out[f] = np.asarray(ak.to_numpy(col), dtype=np.float64)
    n = len(next(iter(out.values()))) if out else 0
    if n == 0:
        raise DataError(f"{what} files {', '.join(map(str, paths))} hold zero events")
    return out
