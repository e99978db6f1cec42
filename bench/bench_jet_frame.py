"""Benchmark: what the principal-axis jet frame buys the constituent taggers on few jets.

Usage::

    python bench/bench_jet_frame.py [--jets N] [--taggers pfn,cnn1d] [--seeds K]

Trains the given taggers on the same generated top/QCD jets (the ``--quick`` benchmark
settings, N jets per class, cached after the first run) with the constituents in each
jet's principal frame (``frame="principal"``, the default) and as the ParT paper feeds
them (``frame="none"``), each with all 17 particle features and without the track impact
parameters (13), with the BDT on jet observables as the reference that neither touches.
Prints one JSON object: per tagger, feature set and frame, AUC and 1/eps_B at
eps_S = 0.5 and 0.3 (mean and std over K seeds), and the AUC gain of the frame.  This is a
quality measurement, not a speed one, so it reports numbers from the same jets and
splits side by side.  No assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

from fivesigma.tasks.jets.benchmark import BenchmarkSettings, run_benchmark
from fivesigma.tasks.jets.features import FRAMES, PARTICLE_FEATURES_FULL, PARTICLE_FEATURES_PID

KEYS = ("auc", "rejection_at_eff_s_0.5", "rejection_at_eff_s_0.3")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jets", type=int, default=3000, help="generated jets per class")
    ap.add_argument("--taggers", default="pfn,cnn1d", help="constituent taggers to compare")
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
    taggers = tuple(t for t in args.taggers.split(",") if t)
    out: dict = {
        "benchmark": "principal jet frame vs none (quick settings, generated top vs QCD)",
        "jets_per_class": args.jets,
        "seeds": args.seeds,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "taggers": {},
    }
    results = {}
    feature_sets = {"full": PARTICLE_FEATURES_FULL, "no_impact_parameters": PARTICLE_FEATURES_PID}
    for fset, features in feature_sets.items():
        for frame in FRAMES:
            first = not results
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                settings = BenchmarkSettings.quick(
                    jets_per_class=args.jets,
                    seeds=args.seeds,
                    taggers=("bdt", *taggers) if first else taggers,
                    frame=frame,
                    features=tuple(features),
                    progress=False,
                )
                results[fset, frame] = run_benchmark(settings, tmp)
                out[f"wall_seconds_{fset}_{frame}"] = time.perf_counter() - t0
            if first:
                out["n_jets"] = results[fset, frame]["n_jets"]
                bdt = results[fset, frame]["taggers"]["bdt"]
                out["reference_bdt"] = {k: bdt[k] for k in (*KEYS, *(k + "_std" for k in KEYS))}
    for name in taggers:
        row: dict = {}
        for fset in feature_sets:
            row[fset] = {}
            for frame in FRAMES:
                summary = results[fset, frame]["taggers"][name]
                row[fset][frame] = {k: summary[k] for k in (*KEYS, *(k + "_std" for k in KEYS))}
            row[fset]["auc_gain_of_frame"] = (
                row[fset]["principal"]["auc"] - row[fset]["none"]["auc"]
            )
        out["taggers"][name] = row
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
