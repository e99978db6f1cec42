"""Benchmark track reconstruction at full occupancy; prints one JSON object.

Reconstructs simulated events at pile-up ``--mu`` (default 200, about 125-160k hits) with
the GNN chain and, as the reference in the same run, the classical combinatorial finder,
each from a bundle written by ``fivesigma run tracking.yaml`` (``--gnn``/``--baseline``;
without them the quick preset is trained first, into a temporary directory).

Per chain and event: CPU and wall seconds per stage (reading excluded), peak memory,
graph size, TrackML score, double-majority efficiency for pT > 1 GeV, fake and duplicate
rates; and the ratio of the GNN chain's wall time to the baseline's.

Usage: python bench/bench_tracking.py [--mu 200] [--events 1] [--gnn DIR --baseline DIR]
                                     [--chains gnn,baseline]
(about 2 minutes with bundles given; add about 5 minutes to train the quick preset)
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path


def _bundles(args: argparse.Namespace) -> tuple[Path, Path]:
    if args.gnn and args.baseline:
        return Path(args.gnn), Path(args.baseline)
    from fivesigma.core.config import parse_config
    from fivesigma.core.registry import TASKS
    from fivesigma.core.task import execute

    out = Path(tempfile.mkdtemp()) / "tracking"
    cfg = parse_config({"version": 1, "task": "tracking", "preset": "quick"})
    execute(TASKS.get("tracking")(), cfg, out, progress=False)
    return out / "models" / "gnn", out / "models" / "baseline"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mu", type=int, default=200)
    parser.add_argument("--events", type=int, default=1)
    parser.add_argument("--seed", type=int, default=424242)
    parser.add_argument("--gnn", help="GNN bundle (models/gnn of a tracking run)")
    parser.add_argument("--baseline", help="baseline bundle (models/baseline)")
    parser.add_argument(
        "--chains", default="gnn,baseline", help="which chains to run (default gnn,baseline)"
    )
    args = parser.parse_args()

    from fivesigma.errors import FivesigmaError
    from fivesigma.generate import cached_sample
    from fivesigma.tasks.tracking.evaluate import event_metrics
    from fivesigma.tasks.tracking.pipeline import TrackingPipeline, peak_memory_mb
    from fivesigma.tasks.tracking.task import event_prefixes, load_hits

    gnn_path, baseline_path = _bundles(args)
    paths = {"gnn": gnn_path, "baseline": baseline_path}
    chains = {name: TrackingPipeline.load(paths[name]) for name in args.chains.split(",")}
    t0 = time.perf_counter()
    sample = cached_sample(
        "tracks", events=args.events, seed=args.seed, progress=False, options={"mu": args.mu}
    )
    generate_s = time.perf_counter() - t0
    rows = []
    for prefix in event_prefixes([sample.directory]):
        hits = load_hits(prefix, need_truth=True)
        for name, chain in chains.items():
            row = {"event": prefix.name, "chain": name, "hits": len(hits)}
            try:
                rec = chain.reconstruct(hits)
            except FivesigmaError as err:  # e.g. the graph exceeds its edge budget
                row["error"] = str(err)
                rows.append(row)
                continue
            metrics, _ = event_metrics(hits, rec.labels, pt_min=1.0)
            row.update(rec.times.flat())
            row["peak_mb"] = peak_memory_mb()
            if rec.edge_index is not None:
                row["edges"] = int(rec.edge_index.shape[1])
            row.update(
                {
                    k: metrics[k]
                    for k in (
                        "score",
                        "dm_efficiency",
                        "dm_fake_rate",
                        "dm_duplicate_rate",
                        "n_tracks",
                    )
                }
            )
            rows.append(row)
    wall = {r["chain"]: r.get("wall_total") for r in rows}
    result = {
        "benchmark": "tracking_full_occupancy",
        "mu": args.mu,
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "generate_seconds": generate_s,
        "bundles": {"gnn": str(gnn_path), "baseline": str(baseline_path)},
        "events": rows,
        "gnn_over_baseline_wall": (
            wall["gnn"] / wall["baseline"] if wall.get("gnn") and wall.get("baseline") else None
        ),
        "targets": {"wall_seconds": 10.0, "dm_efficiency_pt1": 0.95, "fake_rate": 0.01},
    }
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
