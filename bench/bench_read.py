"""Benchmark: fivesigma's read + derive + select path against a raw uproot read.

Usage::

    python bench/bench_read.py [FILE.root] [--events N] [--repeat R]

Without FILE a TTree ``Events`` with N (default 1,000,000) events and jagged lepton
branches is written to a temporary directory.  Both paths run in the same process,
alternating, R times each; the best time of each is reported.  Prints one JSON object:
events/s for each path, their ratio (fivesigma / raw) and peak RSS.  No assertions.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from fivesigma.core.config import parse_config
from fivesigma.data import load_dataset

BRANCHES = ["nlep", "lep_pt", "lep_eta", "lep_phi", "lep_mass", "met", "weight"]


def write_sample(path: Path, n_events: int, seed: int = 1) -> Path:
    """A TTree with jagged leptons (0-5 per event), MET and a weight, in 100k-event baskets."""
    rng = np.random.default_rng(seed)
    types = {
        "lep_pt": "var * float32",
        "lep_eta": "var * float32",
        "lep_phi": "var * float32",
        "lep_mass": "var * float32",
        "nlep": "int32",
        "met": "float32",
        "weight": "float32",
    }
    with uproot.recreate(path) as f:
        f.mktree("Events", types)
        step = 100_000
        for start in range(0, n_events, step):
            n = min(step, n_events - start)
            counts = rng.integers(0, 6, size=n).astype(np.int32)
            total = int(counts.sum())

            def jag(values: np.ndarray, counts: np.ndarray = counts) -> ak.Array:
                return ak.unflatten(values.astype(np.float32), counts)

            f["Events"].extend(
                {
                    "lep_pt": jag(rng.exponential(30.0, total) + 5.0),
                    "lep_eta": jag(rng.uniform(-2.5, 2.5, total)),
                    "lep_phi": jag(rng.uniform(-np.pi, np.pi, total)),
                    "lep_mass": jag(np.full(total, 0.105)),
                    "nlep": counts,
                    "met": rng.exponential(40.0, n).astype(np.float32),
                    "weight": rng.normal(1.0, 0.3, n).astype(np.float32),
                }
            )
    return path


def raw_read(path: Path) -> int:
    """The reference: uproot reads exactly the branches the fivesigma path needs."""
    with uproot.open(path) as f:
        arrays = f["Events"].arrays(BRANCHES)
    return len(arrays)


def fivesigma_read(path: Path, chunk_size: int) -> int:
    raw = {
        "version": 1,
        "seed": 1,
        "data": {
            "samples": [
                {
                    "name": "bench",
                    "files": [str(path)],
                    "tree": "Events",
                    "label": 1,
                    "weight": "weight",
                    "normalisation": {"cross_section_pb": 1.0},
                }
            ],
            "selection": "(nlep >= 2) & (met > 10)",
            "derived": {
                "m_ll": "inv_mass(lep_pt, lep_eta, lep_phi, lep_mass, 2)",
                "lead_pt": "nth(lep_pt, 0)",
                "ht": "sum(lep_pt) + met",
            },
            "features": ["m_ll", "lead_pt", "ht"],
            "chunk_size": chunk_size,
        },
    }
    ds = load_dataset(parse_config(raw, base_dir=path.parent), progress=False)
    return int(ds.events_read.sum())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", help="existing ROOT file with the Events tree")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=200_000)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="fivesigma-bench-") as tmp:
        path = Path(args.file) if args.file else write_sample(Path(tmp) / "bench.root", args.events)
        n_events = raw_read(path)  # also warms the page cache for both paths
        t_raw, t_fs = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            raw_read(path)
            t_raw.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            fivesigma_read(path, args.chunk_size)
            t_fs.append(time.perf_counter() - t0)

    raw_rate = n_events / min(t_raw)
    fs_rate = n_events / min(t_fs)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "benchmark": "read",
                "events": n_events,
                "repeat": args.repeat,
                "chunk_size": args.chunk_size,
                "raw_uproot_events_per_s": round(raw_rate),
                "fivesigma_events_per_s": round(fs_rate),
                "ratio_fivesigma_over_raw": round(fs_rate / raw_rate, 3),
                "raw_uproot_best_s": round(min(t_raw), 4),
                "fivesigma_best_s": round(min(t_fs), 4),
                "fivesigma_work": "read 7 branches + 3 derived (inv_mass, nth, sum) + weight + split + selection",
                "peak_rss_mib": round(peak_kib / 1024, 1),
                "python": platform.python_version(),
                "uproot": uproot.__version__,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
