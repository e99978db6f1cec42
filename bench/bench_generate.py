"""Benchmark the built-in higgs4l generation; prints one JSON object.

For each process: events/s on one core for fivesigma's full path (Pythia generation +
lepton extraction + detector response + ROOT writing), next to a reference measured in
the same run: a bare ``pythia.next()`` loop with the same settings and no Python
extraction.  Also the total rate of ``generate(..., jobs=1)`` and ``jobs=2``.
Target: >= 500 events/s/core.  Pythia initialisation is excluded from the per-process
numbers and included in the ``generate`` totals.

Usage: python bench/bench_generate.py [events_per_process]   (default 4000, ~1 minute)
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _bare(settings: list[str], events: int) -> float:
    from fivesigma.generate import _pythia

    p = _pythia.make_pythia(settings, 4242)
    t0 = time.perf_counter()
    for _ in range(events):
        p.next()
    return events / (time.perf_counter() - t0)


def _full(name: str, events: int, workdir: Path) -> float:
    from fivesigma.generate import _pythia, higgs4l
    from fivesigma.physics.detector import LeptonResponse

    seeds = _pythia.job_seeds(1, name, 1)[0]
    task = {
        "name": name,
        "job": 0,
        "settings": higgs4l.settings_for(name),
        "pythia_seed": seeds.pythia,
        "detector_seed": seeds.detector,
        "detector": LeptonResponse().to_dict(),
        "events": events,
        "output": str(workdir / f"{name}.npz"),
    }
    # Time without Pythia's init, like the bare loop: subtract a separately timed init.
    t0 = time.perf_counter()
    _pythia.make_pythia(task["settings"], seeds.pythia)
    t_init = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = higgs4l._generate_job(task, lambda n: None)
    arrays = dict(np.load(task["output"]))
    weight = res["sigma_pb"] * 1000 * 140.0 / events
    higgs4l._write_root(workdir / f"{name}.root", arrays, 0, weight, "{}")
    return events / (time.perf_counter() - t0 - t_init)


def _generate_total(events: int, jobs: int, workdir: Path) -> float:
    from fivesigma.generate import generate

    t0 = time.perf_counter()
    generate("higgs4l", events, workdir / f"jobs{jobs}", seed=1, jobs=jobs, progress=False)
    return 2 * events / (time.perf_counter() - t0)


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    from fivesigma.generate import _pythia, higgs4l

    result: dict = {
        "benchmark": "generate_higgs4l",
        "events_per_process": events,
        "pythia8mc": _pythia.pythia_version(),
        "python": platform.python_version(),
        "target_events_per_s_per_core": 500,
        "processes": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in higgs4l.PROCESS_SETTINGS:
            full = _full(name, events, work)
            bare = _bare(higgs4l.settings_for(name), events)
            result["processes"][name] = {
                "fivesigma_events_per_s_1core": round(full, 1),
                "bare_pythia_next_events_per_s_1core": round(bare, 1),
                "fivesigma_over_bare": round(full / bare, 3),
            }
        result["generate_jobs1_events_per_s_total"] = round(_generate_total(events, 1, work), 1)
        result["generate_jobs2_events_per_s_total"] = round(_generate_total(events, 2, work), 1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
