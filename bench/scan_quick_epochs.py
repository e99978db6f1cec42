"""Scan: how many epochs each tagger of the quick top benchmark needs.

Usage::

    python bench/scan_quick_epochs.py [--epochs pfn=15,30 particlenet=8,15 ...]
        [--seeds K] [--workers W] [--device cpu|cuda]

Trains each tagger with each epoch budget on the ``--quick`` top preset's jets (cached
after the first run; early stopping stays on, so a budget is an upper bound) with K
seeds, the settings run in W processes side by side (on one GPU, W of them share it).
Prints one JSON object: per tagger and budget, AUC and 1/eps_B at eps_S = 0.5 and 0.3
(mean, std and the per-seed values) and the training seconds.  This is how the quick
preset's epochs were chosen: a budget is cut where the rejection at eps_S = 0.3 stops
gaining within the seed-to-seed spread.  A quality measurement, not a speed one: the
reference is the preset's own budget in the same run.  No assertions.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import tempfile
import time

from fivesigma.tasks.jets.benchmark import BenchmarkSettings, load_task_jets, run_benchmark

KEYS = ("auc", "rejection_at_eff_s_0.5", "rejection_at_eff_s_0.3")
DEFAULT_SCAN = {"cnn1d": (15, 30), "pfn": (15, 30), "particlenet": (8, 15), "part": (10, 20)}


def _run(job: tuple[str, int, int, str]) -> dict:
    tagger, epochs, seeds, device = job
    settings = BenchmarkSettings.quick(
        taggers=(tagger,),
        seeds=seeds,
        device=device,
        progress=False,
        tagger_params={tagger: {"epochs": epochs}},
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        result = run_benchmark(settings, out)
    runs = result["runs"][tagger]
    row = {k: result["taggers"][tagger][k] for k in KEYS}
    row.update({f"{k}_std": result["taggers"][tagger].get(f"{k}_std") for k in KEYS})
    row["per_seed_rejection_at_eff_s_0.3"] = [r["rejection_at_eff_s_0.3"] for r in runs]
    row["train_seconds"] = [round(r["train_seconds"], 1) for r in runs]
    row["wall_seconds"] = round(time.perf_counter() - t0, 1)
    return {"tagger": tagger, "epochs": epochs, **row}


def _parse_scan(items: list[str] | None) -> dict[str, tuple[int, ...]]:
    if not items:
        return DEFAULT_SCAN
    scan = {}
    for item in items:
        name, _, budgets = item.partition("=")
        scan[name] = tuple(int(b) for b in budgets.split(","))
    return scan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--epochs", nargs="*", help="TAGGER=E1,E2,... (default: each preset budget and one other)"
    )
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    scan = _parse_scan(args.epochs)
    load_task_jets(BenchmarkSettings.quick(progress=False))  # generate once, before the pool
    jobs = [(t, e, args.seeds, args.device) for t, budgets in scan.items() for e in budgets]
    preset = BenchmarkSettings.quick().tagger_params
    t0 = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        rows = pool.map(_run, jobs)
    for row in rows:
        row["preset_budget"] = row["epochs"] == preset[row["tagger"]]["epochs"]
    print(
        json.dumps(
            {
                "benchmark": "quick top preset, epochs per tagger",
                "machine": platform.machine(),
                "device": args.device,
                "seeds": args.seeds,
                "results": rows,
                "wall_seconds": round(time.perf_counter() - t0, 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
