"""Benchmark the ``l1`` zero-bias generation on one core; prints one JSON object.

One block of the sample, timed by stage: the pile-up pool (``pool_size`` inelastic
interactions from Pythia, reduced to deposits), the block's triggering interactions
(``events``), and the overlay + L1 reduction (towers, jets, e/gamma, muons, MET,
regions) at each mu, from the same pool and interactions.  The reference, measured in the
same run: a bare ``pythia.next()`` loop with the same settings (no Python extraction).
``events_per_s_block`` is events / (pool + interactions + reduction): the rate of
``fivesigma generate l1`` per core for that mu (Pythia's MPI initialisation, once per
sample, excluded).

Usage: python bench/bench_generate_l1.py [events] [pool_size]   (default 1000 2000, ~1 min)
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(events: int = 1000, pool_size: int = 2000) -> dict:
    from fivesigma.generate import l1 as gen

    opts, response = gen.parse_options({"process": "zerobias", "pool_size": pool_size})
    settings = gen.settings_for(opts)["hard"]
    with tempfile.TemporaryDirectory(prefix="fivesigma-bench-") as tmp:
        init = str(Path(tmp) / "mpi.dat")
        t0 = time.perf_counter()
        gen._make_generator(settings, 11, init, save=True)
        mpi_init_s = time.perf_counter() - t0

        bare = gen._make_generator(settings, 12, init)
        n_bare = min(events, 500)
        t0 = time.perf_counter()
        for _ in range(n_bare):
            bare.next()
        bare_rate = n_bare / (time.perf_counter() - t0)

        pythia = gen._make_generator(settings, 13, init)
        charges = gen._Charges(pythia)
        t0 = time.perf_counter()
        deposits, muons = gen._deposits_of(gen._next_events(pythia, pool_size), charges, response)
        pool = gen._Pool.build(deposits, muons, pool_size)
        pool_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        hard = []
        for start in range(0, events, gen._BATCH):
            n = min(gen._BATCH, events - start)
            hard.append((n, gen._deposits_of(gen._next_events(pythia, n), charges, response)))
        hard_s = time.perf_counter() - t0

    per_mu = {}
    for mu in (0, 60, 200):
        rng = np.random.default_rng(1)
        t0 = time.perf_counter()
        ht = []
        for n, dep in hard:
            n_pileup = rng.poisson(mu, n)
            table = gen._reduce_batch(dep, pool if mu else None, n_pileup, n, response, rng)
            ht.append(table["jet_pt"].sum(axis=1))
        reduce_s = time.perf_counter() - t0
        per_mu[str(mu)] = {
            "reduce_s": round(reduce_s, 3),
            "reduce_events_per_s": round(events / reduce_s, 1),
            "events_per_s_block": round(events / (pool_s + hard_s + reduce_s), 1),
            "mean_jet_pt_sum_gev": round(float(np.concatenate(ht).mean()), 2),
        }
    return {
        "benchmark": "generate l1 zerobias, one block on one core",
        "python": platform.python_version(),
        "events": events,
        "pool_size": pool_size,
        "pool_deposits_per_interaction": round(float(pool.offsets[-1] / pool.size), 1),
        "mpi_init_s_once_per_sample": round(mpi_init_s, 2),
        "pool_s": round(pool_s, 3),
        "interactions_s": round(hard_s, 3),
        "pythia_extract_events_per_s": round((pool_size + events) / (pool_s + hard_s), 1),
        "reference_bare_pythia_events_per_s": round(bare_rate, 1),
        "mu": per_mu,
    }


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    print(json.dumps(main(*args), indent=1))
