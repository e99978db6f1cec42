"""Toy dijet files in the generator's layout (no Pythia): a falling m_JJ background with
Gaussian features and a resonance at 3.5 TeV whose features sit apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def toy_tables(n_background: int, n_signal: int, seed: int = 0) -> dict[str, dict]:
    rng = np.random.default_rng(seed)
    tables = {}
    for name, n in (("qcd", n_background), ("signal", n_signal)):
        if name == "qcd":
            mjj = 2900.0 * rng.uniform(0.0, 1.0, n) ** (-1.0 / 8.0)  # f ~ m^-9, dijet-like
            mj1 = rng.gamma(2.0, 40.0, n)
            dm = rng.gamma(2.0, 60.0, n)
            t1, t2 = rng.beta(5, 3, n), rng.beta(5, 3, n)
            label = np.zeros(n, np.int32)
        else:
            mjj = rng.normal(3500.0, 120.0, n)
            mj1 = rng.normal(100.0, 8.0, n)
            dm = rng.normal(400.0, 30.0, n)
            t1, t2 = rng.beta(2, 5, n), rng.beta(2, 5, n)
            label = np.ones(n, np.int32)
        tables[name] = {
            "mjj": mjj,
            "mj1": mj1,
            "mj2": mj1 + dm,
            "delta_mj": dm,
            "tau21_j1": t1,
            "tau21_j2": t2,
            "label": label,
            "weight": np.ones(n),
        }
    return tables


def write_toy_dijets(directory: Path, n_background: int = 30_000, n_signal: int = 3000,
                     seed: int = 0) -> dict[str, Path]:  # fmt: skip
    import uproot

    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, cols in toy_tables(n_background, n_signal, seed).items():
        path = directory / f"dijets_{name}.root"
        with uproot.recreate(path) as f:
            f["Events"] = cols
        paths[name] = path
    return paths
