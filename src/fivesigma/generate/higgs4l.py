"""The built-in ``higgs4l`` sample: H -> ZZ* -> 4l signal and qq -> ZZ -> 4l background.

Two Pythia8 processes at sqrt(s) = 13 TeV, l = e, mu:

``ggH_4l`` (signal)
    gg -> H (m_H = 125 GeV), H -> ZZ*, Z -> ee/mumu.
``qqZZ_4l`` (background)
    qqbar -> (gamma*/Z)(gamma*/Z) with full gamma*/Z interference (``WeakZ0:gmZmode = 0``)
    and each gamma*/Z mass above 12 GeV (``23:mMin = 12.``; the gamma* propagator needs a
    lower cut, and 12 GeV is the ATLAS H->4l m34 threshold), Z -> ee/mumu.

Multi-parton interactions and hadronisation are off (``PartonLevel:MPI = off``,
``HadronLevel:all = off``) for speed; ISR and FSR (including QED FSR off the leptons) stay
on.  This is recorded in the provenance.  The lepton kinematics, which is all this sample
stores, barely depends on either.

Cross sections: Pythia's ``sigmaGen`` already includes the branching ratios of the closed
decay channels.  Checked with pythia8mc 8.317.2 (20k events, parton level): sigma(gg -> H,
all decays open) = 26.0 pb, with H -> ZZ -> 4l only 3.07e-3 pb; ratio 1.181e-4 against the
product of Pythia's branching ratios BR(H->ZZ) x BR(Z->ee,mumu)^2 = 0.02618 x 0.06710^2 =
1.178e-4.  Typical values: signal ~3 fb, background ~60 fb (leading order, no K-factors).

Per event the files hold the final-state electrons and muons after the detector response
of :class:`fivesigma.physics.detector.LeptonResponse`, sorted by pT descending, and
``true_m4l``, the invariant mass of the four leptons of the hard process (before FSR;
nan if the hard process does not have exactly four).  All generated events are kept, so
``sum(weight) = sigma_pb * 1000 * luminosity_fb``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma import __version__
from fivesigma.core import extras
from fivesigma.errors import GenerationError
from fivesigma.generate import _pythia
from fivesigma.physics.detector import LeptonResponse

__all__ = ["FORMAT_VERSION", "PROCESS_SETTINGS", "content_key", "run"]

#: Bump when the file layout or the meaning of a branch changes (invalidates caches).
FORMAT_VERSION = 1

#: Events per block of work.  Each block has its own seeds, so this is part of the
#: sample's definition (changing it changes the sample, hence it is in content_key()).
BLOCK_EVENTS = 2500

_Z_TO_EE_MUMU = ("23:onMode = off", "23:onIfAny = 11 13")

#: Pythia settings of each physics process (on top of ``_pythia.COMMON_SETTINGS``).
PROCESS_SETTINGS: dict[str, tuple[str, ...]] = {
    "ggH_4l": (
        "HiggsSM:gg2H = on",
        "25:m0 = 125.",
        "25:onMode = off",
        "25:onIfMatch = 23 23",
        *_Z_TO_EE_MUMU,
    ),
    "qqZZ_4l": (
        "WeakDoubleBoson:ffbar2gmZgmZ = on",
        "WeakZ0:gmZmode = 0",
        "23:mMin = 12.",
        *_Z_TO_EE_MUMU,
    ),
}

NOTES = (
    "PartonLevel:MPI = off and HadronLevel:all = off for speed; ISR/FSR showers on. "
    "sigmaGen includes the branching ratios of the closed decay channels. "
    "qqZZ_4l: each gamma*/Z mass > 12 GeV (23:mMin)."
)

_LEPTONS = (11, 13)
_REPORT_EVERY = 200


def settings_for(process: str) -> list[str]:
    """All Pythia settings of ``process`` (common ones first)."""
    return [*_pythia.COMMON_SETTINGS, *PROCESS_SETTINGS[process]]


def content_key() -> dict[str, Any]:
    """Everything besides the call arguments that changes the sample (for cache keys)."""
    return {
        "format_version": FORMAT_VERSION,
        "block_events": BLOCK_EVENTS,
        "settings": {name: settings_for(name) for name in PROCESS_SETTINGS},
        "pythia8mc": _pythia.pythia_version(),
    }


# --------------------------------------------------------------------------------------
# One job (runs in a worker process)


def _generate_job(task: dict[str, Any], report: Any) -> dict[str, Any]:
    """Generate ``task['events']`` events, apply the response, save arrays to an .npz."""
    pythia = _pythia.make_pythia(task["settings"], task["pythia_seed"])
    n = task["events"]
    pt: list[float] = []
    eta: list[float] = []
    phi: list[float] = []
    mass: list[float] = []
    pid: list[int] = []
    counts = np.zeros(n, dtype=np.int64)
    true_m4l = np.full(n, np.nan)
    failures = 0
    i = 0
    pending = 0
    while i < n:
        if not pythia.next():
            failures += 1
            if failures > max(100, n // 10):
                raise GenerationError(
                    f"Pythia failed to generate {failures} events of {task['name']}"
                )
            continue
        # Per-particle loop: with MPI and hadronisation off the record has ~100-200
        # entries, and this is cheap next to pythia.next().
        k = 0
        for prt in pythia.event:
            if prt.isFinal():
                aid = prt.idAbs()
                if aid == 11 or aid == 13:
                    pt.append(prt.pT())
                    eta.append(prt.eta())
                    phi.append(prt.phi())
                    mass.append(prt.m())
                    pid.append(prt.id())
                    k += 1
        counts[i] = k
        # Hard-process leptons (before showers) from the short process record.
        e = px = py = pz = 0.0
        nl = 0
        for prt in pythia.process:
            if prt.isFinal() and prt.idAbs() in _LEPTONS:
                e += prt.e()
                px += prt.px()
                py += prt.py()
                pz += prt.pz()
                nl += 1
        if nl == 4:
            true_m4l[i] = math.sqrt(max(e * e - px * px - py * py - pz * pz, 0.0))
        i += 1
        pending += 1
        if pending == _REPORT_EVERY:
            report(pending)
            pending = 0
    if pending:
        report(pending)
    info = pythia.infoPython()
    sigma_pb = info.sigmaGen() * _pythia.MB_TO_PB
    err_pb = info.sigmaErr() * _pythia.MB_TO_PB

    # Detector response, vectorised over all leptons of the job.
    response = LeptonResponse(**task["detector"])
    pt_a = np.asarray(pt, dtype=np.float64)
    pid_a = np.asarray(pid, dtype=np.int32)
    eta_a = np.asarray(eta, dtype=np.float64)
    pt_reco, keep = response.apply(pt_a, eta_a, pid_a, np.random.default_rng(task["detector_seed"]))
    event_of = np.repeat(np.arange(n), counts)[keep]
    pt_reco = pt_reco[keep]
    # Sort by event, then by pT descending within the event.
    order = np.lexsort((-pt_reco, event_of))
    sel = np.flatnonzero(keep)[order]
    np.savez(
        task["output"],
        nlep=np.bincount(event_of, minlength=n).astype(np.int32),
        lep_pt=pt_reco[order].astype(np.float32),
        lep_eta=eta_a[sel].astype(np.float32),
        lep_phi=np.asarray(phi, dtype=np.float64)[sel].astype(np.float32),
        lep_mass=np.asarray(mass, dtype=np.float64)[sel].astype(np.float32),
        lep_pdgid=pid_a[sel],
        true_m4l=true_m4l,
    )
    return {"sigma_pb": sigma_pb, "sigma_err_pb": err_pb, "events": n, "failures": failures}


# --------------------------------------------------------------------------------------
# The whole sample


def _write_root(
    path: Path, arrays: dict[str, np.ndarray], event0: int, weight: float, provenance: str
) -> None:
    """Write one process's TTree ``Events`` and TObjString ``provenance``."""
    import awkward as ak
    import uproot

    nlep = arrays["nlep"]
    n = nlep.size
    pdgid = arrays["lep_pdgid"]
    lep = ak.zip(
        {
            "pt": ak.unflatten(arrays["lep_pt"], nlep),
            "eta": ak.unflatten(arrays["lep_eta"], nlep),
            "phi": ak.unflatten(arrays["lep_phi"], nlep),
            "mass": ak.unflatten(arrays["lep_mass"], nlep),
            "pdgid": ak.unflatten(pdgid, nlep),
            # PDG convention: a positive id is a negatively charged lepton.
            "charge": ak.unflatten((-np.sign(pdgid)).astype(np.int32), nlep),
        }
    )
    with uproot.recreate(path) as f:
        # A record of jagged arrays becomes branches lep_pt, ... sharing the counter nlep.
        tree = f.mktree(
            "Events",
            {
                "event": np.uint64,
                "weight": np.float64,
                "lep": lep.type.content,
                "true_m4l": np.float64,
            },
            title="fivesigma higgs4l events",
        )
        chunk = 100_000
        for start in range(0, max(n, 1), chunk):
            stop = min(start + chunk, n)
            tree.extend(
                {
                    "event": np.arange(event0 + start, event0 + stop, dtype=np.uint64),
                    "weight": np.full(stop - start, weight, dtype=np.float64),
                    "lep": lep[start:stop],
                    "true_m4l": arrays["true_m4l"][start:stop],
                }
            )
        f["provenance"] = provenance


def run(
    events: int,
    out: Path,
    seed: int,
    jobs: int,
    luminosity_fb: float,
    progress: bool = True,
    detector: LeptonResponse | None = None,
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Generate both processes into ``out``; returns (files, provenance).

    Arguments are already validated by :func:`fivesigma.generate.generate`.  Files are
    written into a hidden temporary directory inside ``out`` and moved into place only
    when everything succeeded.
    """
    extras.pythia8mc()  # a missing generator fails here, before any work
    detector = detector if detector is not None else LeptonResponse()
    # Fixed-size blocks with their own seeds: the same (seed, events) gives the same
    # sample whatever the number of jobs.
    shares = _pythia.split_blocks(events, BLOCK_EVENTS)
    nblocks = len(shares)
    njobs = max(1, min(jobs, nblocks * len(PROCESS_SETTINGS)))
    created = datetime.now(UTC).isoformat(timespec="seconds")
    work = Path(tempfile.mkdtemp(dir=out, prefix=".fivesigma-generate-"))
    try:
        tasks = []
        seeds: dict[str, list[_pythia.JobSeeds]] = {}
        for name in PROCESS_SETTINGS:
            seeds[name] = _pythia.job_seeds(seed, name, nblocks)
            for j, (n_j, s) in enumerate(zip(shares, seeds[name], strict=True)):
                task = {
                    "name": name,
                    "job": j,
                    "settings": settings_for(name),
                    "pythia_seed": s.pythia,
                    "detector_seed": s.detector,
                    "detector": detector.to_dict(),
                    "events": n_j,
                    "output": str(work / f"{name}.job{j}.npz"),
                }
                tasks.append((name, task, n_j))
        t0 = time.monotonic()
        results = _pythia.run_jobs(_generate_job, tasks, njobs, progress=progress)
        elapsed = time.monotonic() - t0

        common = {
            "format_version": FORMAT_VERSION,
            "fivesigma_version": __version__,
            "pythia8mc_version": _pythia.pythia_version(),
            "sample": "higgs4l",
            "seed": seed,
            "jobs": njobs,
            "block_events": BLOCK_EVENTS,
            "seed_derivation": (
                "one seed pair per block of block_events events, "
                "SeedSequence([seed, crc32(process), block]).generate_state(2): "
                "pythia = w0 % 900000000 + 1, detector = w1"
            ),
            "luminosity_fb": luminosity_fb,
            "detector_response": detector.to_dict(),
            "notes": NOTES,
            "created": created,
            "generation_seconds": round(elapsed, 3),
        }
        files: dict[str, Path] = {}
        per_process: dict[str, Any] = {}
        for name in PROCESS_SETTINGS:
            idx = [k for k, t in enumerate(tasks) if t[0] == name]
            res = [results[k] for k in idx]
            sigma, err = _pythia.combine_cross_sections(
                [r["sigma_pb"] for r in res],
                [r["sigma_err_pb"] for r in res],
                [r["events"] for r in res],
            )
            parts = [np.load(tasks[k][1]["output"]) for k in idx]
            arrays = {key: np.concatenate([p[key] for p in parts]) for key in parts[0].files}
            n_total = int(arrays["nlep"].size)
            weight = sigma * 1000.0 * luminosity_fb / n_total
            prov = {
                **common,
                "process": name,
                "pythia_settings": settings_for(name),
                "block_seeds": [
                    {"block": j, "pythia": s.pythia, "detector": s.detector, "events": n_j}
                    for j, (s, n_j) in enumerate(zip(seeds[name], shares, strict=True))
                ],
                "cross_section_pb": sigma,
                "cross_section_error_pb": err,
                "events_generated": n_total,
                "failed_next_calls": int(sum(r["failures"] for r in res)),
                "weight": weight,
                "sum_weights": weight * n_total,
                "tree": "Events",
            }
            path = work / f"{name}.root"
            _write_root(path, arrays, 0, weight, json.dumps(prov, indent=1, sort_keys=True))
            files[name] = path
            per_process[name] = prov
        provenance = {**common, "processes": per_process}
        (work / "provenance.json").write_text(
            json.dumps(provenance, indent=1, sort_keys=True) + "\n"
        )
        # Everything is complete: move the finished files into place.
        final = {}
        for name, path in files.items():
            final[name] = out / path.name
            os.replace(path, final[name])
        os.replace(work / "provenance.json", out / "provenance.json")
        return final, provenance
    finally:
        shutil.rmtree(work, ignore_errors=True)
