"""Benchmark the built-in ``jets`` generation; prints one JSON object.

For each jet process, on one core:

- ``bare_next_events_per_s``: the reference, a bare ``pythia.next()`` loop with the same
  settings (14 TeV, MPI and hadronisation on), nothing read from the event;
- ``bare_batch_events_per_s``: ``pythia.nextBatch`` (Pythia's own vectorised export of the
  event records to awkward arrays), which fivesigma uses instead of a per-particle loop;
- ``full_events_per_s`` / ``full_jets_per_s``: fivesigma's whole worker for blocks of
  events (fresh Pythia init per block included, generation, detector response, FastJet
  clustering, truth matching, constituent arrays, .npz), and the jets it keeps;
- ``python_loop_events_per_s``: for comparison, ``next()`` plus the tight per-particle
  Python loop reading (px, py, pz, e, id) of the final-state particles.

Usage: python bench/bench_generate_jets.py [blocks] [process ...]
(default 2 blocks of 200 events, processes top and qcd; ~1 minute)
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path


def _settings(process: str) -> list[str]:
    from fivesigma.generate import jets

    return jets.settings_for(jets.parse_options({"process": process}))


def _bare_next(process: str, events: int) -> float:
    from fivesigma.generate import _pythia

    p = _pythia.make_pythia(_settings(process), 4242)
    t0 = time.perf_counter()
    for _ in range(events):
        p.next()
    return events / (time.perf_counter() - t0)


def _bare_batch(process: str, events: int) -> float:
    from fivesigma.generate import _pythia

    p = _pythia.make_pythia(_settings(process), 4242)
    p.nextBatch(2)  # first call imports awkward
    t0 = time.perf_counter()
    done = 0
    while done < events:
        done += len(p.nextBatch(min(50, events - done)))
    return events / (time.perf_counter() - t0)


def _python_loop(process: str, events: int) -> float:
    from fivesigma.generate import _pythia

    p = _pythia.make_pythia(_settings(process), 4242)
    t0 = time.perf_counter()
    for _ in range(events):
        p.next()
        out = []
        for prt in p.event:
            if prt.isFinal():
                out.append((prt.px(), prt.py(), prt.pz(), prt.e(), prt.id()))
    return events / (time.perf_counter() - t0)


def _full(process: str, blocks: int, workdir: Path) -> tuple[float, float]:
    from fivesigma.generate import _pythia, jets
    from fivesigma.physics.jet_detector import JetDetectorResponse

    opts = jets.parse_options({"process": process})
    seeds = _pythia.job_seeds(1, f"jets_{process}", blocks)
    task = {
        "options": asdict(opts),
        "settings": jets.settings_for(opts),
        "detector": JetDetectorResponse().to_dict(),
        "blocks": [
            {
                "block": b,
                "pythia_seed": seeds[b].pythia,
                "detector_seed": seeds[b].detector,
                "events": jets.BLOCK_EVENTS,
                "output": str(workdir / f"{process}{b}.npz"),
            }
            for b in range(blocks)
        ],
    }
    t0 = time.perf_counter()
    res = jets._generate_blocks(task, lambda n: None)
    dt = time.perf_counter() - t0
    return sum(r["events"] for r in res) / dt, sum(r["jets"] for r in res) / dt


def main() -> None:
    blocks = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    processes = sys.argv[2:] or ["top", "qcd"]
    from fivesigma.generate import _pythia, jets

    events = blocks * jets.BLOCK_EVENTS
    result: dict = {
        "benchmark": "generate_jets",
        "events_per_process": events,
        "block_events": jets.BLOCK_EVENTS,
        "pythia8mc": _pythia.pythia_version(),
        "python": platform.python_version(),
        "processes": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for process in processes:
            n_ref = max(50, events // 2)
            full_ev, full_jets = _full(process, blocks, Path(tmp))
            result["processes"][process] = {
                "bare_next_events_per_s": round(_bare_next(process, n_ref), 1),
                "bare_batch_events_per_s": round(_bare_batch(process, n_ref), 1),
                "python_loop_events_per_s": round(_python_loop(process, n_ref), 1),
                "full_events_per_s": round(full_ev, 1),
                "full_jets_per_s": round(full_jets, 1),
            }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
