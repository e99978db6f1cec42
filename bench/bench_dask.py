"""Benchmark: ``fivesigma apply`` eager against dask.distributed with 1 and 2 workers.

Usage::

    python bench/bench_dask.py [--files F] [--events N] [--chunk-size C] [--repeat R]

Writes F ROOT files of N events each (a TTree ``Events`` with jagged leptons, MET, HT and
unused branches) and a logistic-regression bundle that needs MET and the leading lepton
pT, then times, in the same run: the raw uproot read of the branches the bundle needs
(the reference), the eager apply, and apply on a ``LocalCluster`` of 1 and of 2 worker
processes (1 thread each; cluster start-up is reported apart, not in the rate).  Each is
timed R times and the best is kept.  Prints one JSON object.  No assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

sys.path.insert(0, str(Path(__file__).parent))

from _timing import best_of
from fivesigma.core.execution import executor
from fivesigma.estimators import make_estimator
from fivesigma.tasks.classify.apply import apply_bundle

BRANCHES = ["met", "lep_pt"]  # what the bundle's expressions need
DATA = {"derived": {"lead": "nth(lep_pt, 0)"}, "selection": "met > 10", "tree": "Events"}


def write_files(directory: Path, n_files: int, n_events: int, basket: int = 20_000) -> list[str]:
    """F files of N events in baskets of ``basket`` entries (NanoAOD-like: many baskets
    per partition, so no partition decompresses a basket it mostly does not need)."""
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n_files):
        path = directory / f"events{i}.root"
        with uproot.recreate(path) as f:
            for start in range(0, n_events, basket):
                n = min(basket, n_events - start)
                counts = rng.integers(0, 5, n).astype(np.int32)
                total = int(counts.sum())
                arrays = {
                    "met": rng.exponential(40.0, n).astype(np.float32),
                    "ht": rng.normal(200.0, 50.0, n).astype(np.float32),
                    "unused1": rng.normal(size=n),
                    "unused2": rng.normal(size=n),
                    "lep_pt": ak.unflatten(rng.exponential(30.0, total).astype(np.float32), counts),
                }
                if start == 0:
                    f["Events"] = arrays
                else:
                    f["Events"].extend(arrays)
        paths.append(str(path))
    return paths


def write_bundle(directory: Path) -> Path:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(2000, 2)) * [30.0, 40.0] + [40.0, 50.0]
    y = (X[:, 0] + rng.normal(0, 20, 2000) > 40).astype(np.int64)
    est = make_estimator("logistic").fit(X, y, feature_names=["met", "lead"])
    return est.save(directory / "bundle", data=DATA)


def raw_read(files: list[str], chunk_size: int) -> int:
    n = 0
    for batch in uproot.iterate(
        [f"{f}:Events" for f in files], BRANCHES, step_size=chunk_size, library="ak"
    ):
        n += len(batch)
    return n


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--events", type=int, default=250_000)
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)

    result: dict[str, object] = {
        "benchmark": "dask_apply",
        "files": args.files,
        "events": args.files * args.events,
        "chunk_size": args.chunk_size,
        "repeat": args.repeat,
    }
    with tempfile.TemporaryDirectory(prefix="fivesigma-bench-") as tmp:
        base = Path(tmp)
        files = write_files(base, args.files, args.events)
        bundle = write_bundle(base)
        n = raw_read(files, args.chunk_size)  # also warms the page cache
        rates = {}
        rates["raw_uproot_read"] = n / best_of(
            lambda: raw_read(files, args.chunk_size), args.repeat
        )
        rates["eager_apply"] = n / best_of(
            lambda: apply_bundle(bundle, files, base / "eager.parquet", chunk_size=args.chunk_size),
            args.repeat,
        )
        startup = {}
        for workers in (1, 2):
            t0 = time.perf_counter()
            with executor(f"processes:{workers}", echo=lambda line: None) as client:
                startup[workers] = time.perf_counter() - t0

                def run(client=client, workers=workers) -> None:
                    info = apply_bundle(
                        bundle,
                        files,
                        base / f"dask{workers}.parquet",
                        chunk_size=args.chunk_size,
                        client=client,
                    )
                    assert not info["failed"], info["failed"]

                run()  # the first run loads the model on each worker
                rates[f"dask_{workers}_workers_apply"] = n / best_of(run, args.repeat)
    result.update({f"{k}_events_per_s": round(v) for k, v in rates.items()})
    result.update(
        {
            "ratio_dask_2_over_eager": round(
                rates["dask_2_workers_apply"] / rates["eager_apply"], 3
            ),
            "ratio_eager_over_raw": round(rates["eager_apply"] / rates["raw_uproot_read"], 3),
            "cluster_startup_s": {str(k): round(v, 2) for k, v in startup.items()},
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "uproot": uproot.__version__,
        }
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
