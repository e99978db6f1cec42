"""Benchmark: fivesigma's read + derive + select path against a raw uproot read and
against the same work written by hand.

Usage::

    python bench/bench_read.py [FILE.root] [--events N] [--repeat R]

Without FILE a TTree ``Events`` with N (default 1,000,000) events and jagged lepton
branches is written to a temporary directory.  Three paths run in the same process,
alternating, R times each, and the best time of each is reported:

* raw: uproot reads the branches the other two need, nothing more;
* fivesigma: ``load_dataset`` on a config (3 derived columns, weight, split, selection,
  normalisation);
* hand-written: what an expert writes for the same outputs with uproot.iterate
  (step_size), awkward and vector: select first, then the kinematics.

Prints one JSON object: events/s of each path, the ratios fivesigma / hand-written and
fivesigma / raw (above 1: fivesigma is faster), how the outputs of fivesigma and the
hand-written path compare (same events, weights and splits; features equal up to float32
rounding: they do the same work), and peak RSS.  No assertions.
"""

from __future__ import annotations

import argparse
import hashlib
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
import vector

from fivesigma.core.config import parse_config
from fivesigma.data import Dataset, load_dataset

BRANCHES = ["nlep", "lep_pt", "lep_eta", "lep_phi", "lep_mass", "met", "weight"]
SEED = 1


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


def fivesigma_load(path: Path, chunk_size: int) -> Dataset:
    raw = {
        "version": 1,
        "seed": SEED,
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
    return load_dataset(parse_config(raw, base_dir=path.parent), progress=False)


def fivesigma_read(path: Path, chunk_size: int) -> int:
    return int(fivesigma_load(path, chunk_size).events_read.sum())


# --------------------------------------------------------------------------------------
# The same work by hand: uproot.iterate, awkward, vector, numpy.

_MASK = (1 << 64) - 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _mix(a: int, b: int) -> int:
    h = _splitmix64(np.array([a & _MASK], dtype=np.uint64))
    return int(_splitmix64(h ^ np.uint64(b & _MASK))[0])


def _split(path: Path, entries: np.ndarray, fractions: tuple[float, float, float]) -> np.ndarray:
    """Train/validation/test (0/1/2) from a hash of (seed, file name, entry): the scheme
    fivesigma documents, so that both paths put every event in the same split."""
    name = int.from_bytes(hashlib.blake2b(path.name.encode(), digest_size=8).digest(), "little")
    salt = _mix(_mix(0x66696C655F656E74, SEED), name)
    h = _splitmix64(_splitmix64(entries.astype(np.uint64) ^ np.uint64(salt)))
    u = (h >> np.uint64(11)).astype(np.float64) / 2.0**53
    return np.where(u < fractions[0], 0, np.where(u < fractions[0] + fractions[1], 1, 2)).astype(
        np.int8
    )


def handwritten_load(path: Path, chunk_size: int) -> dict[str, np.ndarray]:
    """The fivesigma config of :func:`fivesigma_load`, written by hand."""
    vector.register_awkward()
    features, weights, splits = [], [], []
    sum_w_read = 0.0
    for events, report in uproot.iterate(
        {str(path): "Events"}, BRANCHES, step_size=chunk_size, report=True
    ):
        w = ak.to_numpy(events.weight).astype(np.float64)
        sum_w_read += w.sum()
        keep = ak.to_numpy((events.nlep >= 2) & (events.met > 10))
        ev = events[keep]
        leptons = ak.zip(
            {"pt": ev.lep_pt, "eta": ev.lep_eta, "phi": ev.lep_phi, "mass": ev.lep_mass},
            with_name="Momentum4D",
        )
        m_ll = (leptons[:, 0] + leptons[:, 1]).mass
        lead_pt = ev.lep_pt[:, 0]
        ht = ak.sum(ev.lep_pt, axis=1) + ev.met
        features.append(
            np.column_stack([ak.to_numpy(c).astype(np.float64) for c in (m_ll, lead_pt, ht)])
        )
        weights.append(w[keep])
        entries = np.arange(report.tree_entry_start, report.tree_entry_stop)[keep]
        splits.append(_split(path, entries, (0.6, 0.2, 0.2)))
    # normalise to cross section (1 pb) x luminosity (fivesigma's default, 140/fb)
    weight = np.concatenate(weights) * (1.0 * 1000.0 * 140.0 / sum_w_read)
    return {
        "features": np.concatenate(features),
        "weight": weight,
        "split": np.concatenate(splits),
        "label": np.ones(len(weight), dtype=np.int64),
    }


def handwritten_read(path: Path, chunk_size: int) -> int:
    return len(handwritten_load(path, chunk_size)["weight"])


def agreement(path: Path, chunk_size: int) -> dict[str, object]:
    """How closely the outputs of fivesigma and the hand-written path agree."""
    ds = fivesigma_load(path, chunk_size)
    hand = handwritten_load(path, chunk_size)
    same_events = len(ds) == len(hand["weight"])
    out: dict[str, object] = {"same_events": same_events}
    if same_events:
        names = ["m_ll", "lead_pt", "ht"]
        diff = np.abs(ds.features(names) - hand["features"])
        # float32 inputs: the two paths add the lepton vectors in different coordinates,
        # so m_ll differs by float32 rounding (most near the 2 m_mu threshold)
        out["features_max_abs_diff_gev"] = {
            name: float(f"{d:.3g}") for name, d in zip(names, diff.max(axis=0), strict=True)
        }
        out["features_median_rel_diff"] = float(
            f"{np.median(diff / np.maximum(np.abs(hand['features']), 1e-12)):.3g}"
        )
        out["same_weights"] = bool(np.allclose(ds.weight, hand["weight"], rtol=1e-12))
        out["same_splits"] = bool(np.array_equal(ds.split, hand["split"]))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", help="existing ROOT file with the Events tree")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=200_000)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="fivesigma-bench-") as tmp:
        path = Path(args.file) if args.file else write_sample(Path(tmp) / "bench.root", args.events)
        n_events = raw_read(path)  # also warms the page cache for all paths
        agree = agreement(path, args.chunk_size)  # and imports/warms both paths
        times: dict[str, list[float]] = {"raw": [], "fivesigma": [], "handwritten": []}
        paths = {
            "raw": lambda: raw_read(path),
            "fivesigma": lambda: fivesigma_read(path, args.chunk_size),
            "handwritten": lambda: handwritten_read(path, args.chunk_size),
        }
        for _ in range(args.repeat):
            for name, fn in paths.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)

    best = {name: min(t) for name, t in times.items()}
    rate = {name: n_events / t for name, t in best.items()}
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "benchmark": "read",
                "events": n_events,
                "repeat": args.repeat,
                "chunk_size": args.chunk_size,
                "raw_uproot_events_per_s": round(rate["raw"]),
                "fivesigma_events_per_s": round(rate["fivesigma"]),
                "handwritten_events_per_s": round(rate["handwritten"]),
                "ratio_fivesigma_over_handwritten": round(
                    rate["fivesigma"] / rate["handwritten"], 3
                ),
                "ratio_fivesigma_over_raw": round(rate["fivesigma"] / rate["raw"], 3),
                "ratio_handwritten_over_raw": round(rate["handwritten"] / rate["raw"], 3),
                "raw_uproot_best_s": round(best["raw"], 4),
                "fivesigma_best_s": round(best["fivesigma"], 4),
                "handwritten_best_s": round(best["handwritten"], 4),
                "fivesigma_vs_handwritten": agree,
                "work": "read 7 branches + 3 derived (inv_mass, nth, sum) + weight + split "
                "+ selection + normalisation",
                "peak_rss_mib": round(peak_kib / 1024, 1),
                "python": platform.python_version(),
                "uproot": uproot.__version__,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
