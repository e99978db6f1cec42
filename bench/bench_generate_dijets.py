"""Benchmark the built-in ``dijets`` generation; prints one JSON object.

For each process (qcd, signal) and MPI on/off, on one core, in CPU time of this process
(``time.process_time``: the machine may be shared, and wall time would count the others):

- ``bare_ms_per_event``: the reference, a bare ``pythia.next()`` loop with the same
  settings, nothing read from the event;
- ``full_ms_per_event``: fivesigma's whole worker for blocks of events (fresh Pythia per
  block, generation, detector response, FastJet clustering, selection, N-subjettiness,
  constituent arrays, .npz);
- ``kept_fraction`` and ``kept_per_s``: the events passing the selection, and their rate;
- ``minutes_100k_on_2_cores``: the wall time this rate implies for 100k kept events on two
  cores (two jobs).

Usage: python bench/bench_generate_dijets.py [blocks] [pthat_min]
(default 2 blocks of 200 events per case and the default pthat_min; a few minutes)
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path


def _bare(opts, events: int) -> float:
    from fivesigma.generate import _pythia, dijets

    p = _pythia.make_pythia(dijets.settings_for(opts), 4242)
    t0 = time.process_time()
    for _ in range(events):
        p.next()
    return 1000 * (time.process_time() - t0) / events


def _full(opts, blocks: int, workdir: Path) -> tuple[float, float]:
    from fivesigma.generate import _pythia, dijets
    from fivesigma.physics.jet_detector import JetDetectorResponse

    seeds = _pythia.job_seeds(1, f"dijets_{opts.process}", blocks)
    task = {
        "options": asdict(opts),
        "settings": dijets.settings_for(opts),
        "detector": JetDetectorResponse().to_dict(),
        "blocks": [
            {
                "block": b,
                "pythia_seed": seeds[b].pythia,
                "detector_seed": seeds[b].detector,
                "events": dijets.BLOCK_EVENTS,
                "output": str(workdir / f"{opts.process}{b}.npz"),
            }
            for b in range(blocks)
        ],
    }
    t0 = time.process_time()
    res = dijets._generate_blocks(task, lambda n: None)
    dt = time.process_time() - t0
    events = sum(r["events"] for r in res)
    return 1000 * dt / events, sum(r["kept"] for r in res) / events


def main() -> None:
    blocks = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    extra = {"pthat_min": float(sys.argv[2])} if len(sys.argv) > 2 else {}
    from fivesigma.generate import _pythia, dijets

    result: dict = {
        "benchmark": "generate_dijets",
        "events_per_case": blocks * dijets.BLOCK_EVENTS,
        "pythia8mc": _pythia.pythia_version(),
        "python": platform.python_version(),
        "cases": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for process in ("qcd", "signal"):
            for mpi in (True, False):
                opts = dijets.parse_options({"process": process, "mpi": mpi, **extra})
                full_ms, kept = _full(opts, blocks, Path(tmp))
                bare_ms = _bare(opts, max(50, blocks * dijets.BLOCK_EVENTS // 4))
                kept_per_s = 1000 * kept / full_ms
                result["cases"][f"{process}_mpi_{'on' if mpi else 'off'}"] = {
                    "pthat_min": opts.pthat_min if process == "qcd" else None,
                    "bare_ms_per_event": round(bare_ms, 2),
                    "full_ms_per_event": round(full_ms, 2),
                    "kept_fraction": round(kept, 3),
                    "kept_per_s": round(kept_per_s, 1),
                    "minutes_100k_on_2_cores": round(1e5 / (2 * kept_per_s) / 60, 1),
                }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
