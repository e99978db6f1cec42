"""A toy TrackML event for the tracking unit tests: helices through barrel cylinders.

Fast (no Pythia, no geometry file) and fully known: particles from near the origin with
uniform phi, eta in [-1, 1], pT from ``pt_range``, propagated as helices in a 2 T field
through ``len(radii)`` cylinders (volume 8, layers 2, 4, ...), hits smeared by
``sigma_mm`` in r-phi and z, plus uniform noise hits.  Not the simulator: the real one is
``fivesigma generate tracks``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fivesigma.io.trackml import TrackMLEvent

RADII = (32.0, 72.0, 116.0, 172.0, 260.0, 360.0, 500.0, 660.0, 820.0, 1000.0)
B_TESLA = 2.0


def toy_event(
    n_particles: int = 50,
    seed: int = 0,
    noise: int = 20,
    radii: tuple[float, ...] = RADII,
    pt_range: tuple[float, float] = (0.5, 10.0),
    sigma_mm: float = 0.02,
    event_id: int = 1,
) -> TrackMLEvent:
    rng = np.random.default_rng(seed)
    pt = np.exp(rng.uniform(np.log(pt_range[0]), np.log(pt_range[1]), n_particles))
    phi0 = rng.uniform(-np.pi, np.pi, n_particles)
    eta = rng.uniform(-1.0, 1.0, n_particles)
    q = rng.choice([-1, 1], n_particles)
    vz = rng.normal(0.0, 30.0, n_particles)
    radius_mm = pt / (0.3 * B_TESLA) * 1000.0  # helix radius
    pz = pt * np.sinh(eta)
    particle_id = np.arange(1, n_particles + 1, dtype=np.int64) * 1000
    rows = []
    for i in range(n_particles):
        for layer, r in enumerate(radii):
            if r >= 2 * radius_mm[i]:
                break
            # turning angle to reach cylindrical radius r: r = 2R sin(a/2)
            a = 2 * np.arcsin(r / (2 * radius_mm[i]))
            phi = phi0[i] - q[i] * a / 2
            s_t = radius_mm[i] * a  # transverse path length
            z = vz[i] + s_t * pz[i] / pt[i]
            if abs(z) > 1100:
                break
            x, y = r * np.cos(phi), r * np.sin(phi)
            dphi = rng.normal(0, sigma_mm) / r
            xs, ys = r * np.cos(phi + dphi), r * np.sin(phi + dphi)
            rows.append(
                (
                    xs,
                    ys,
                    z + rng.normal(0, sigma_mm),
                    8,
                    2 * (layer + 1),
                    1,
                    particle_id[i],
                    x,
                    y,
                    z,
                    pt[i],
                    pz[i],
                )
            )
    for _ in range(noise):
        layer = int(rng.integers(len(radii)))
        r, ph, z = radii[layer], rng.uniform(-np.pi, np.pi), rng.uniform(-1000, 1000)
        rows.append(
            (
                r * np.cos(ph),
                r * np.sin(ph),
                z,
                8,
                2 * (layer + 1),
                1,
                0,
                r * np.cos(ph),
                r * np.sin(ph),
                z,
                0.0,
                0.0,
            )
        )
    table = pd.DataFrame(
        rows,
        columns=[
            "x",
            "y",
            "z",
            "volume_id",
            "layer_id",
            "module_id",
            "particle_id",
            "tx",
            "ty",
            "tz",
            "tpt",
            "tpz",
        ],
    )
    table = table.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    table["hit_id"] = np.arange(1, len(table) + 1)
    hits = table[["hit_id", "x", "y", "z", "volume_id", "layer_id", "module_id"]].copy()
    truth = table[["hit_id", "particle_id", "tx", "ty", "tz"]].copy()
    truth["tpx"], truth["tpy"], truth["tpz"] = table["tpt"], 0.0, table["tpz"]
    nhits = truth[truth.particle_id != 0].groupby("particle_id").size()
    w = np.where(truth.particle_id.to_numpy() != 0, 1.0, 0.0)
    truth["weight"] = w / w.sum()
    particles = pd.DataFrame(
        {
            "particle_id": particle_id,
            "vx": 0.0,
            "vy": 0.0,
            "vz": vz,
            "px": pt * np.cos(phi0),
            "py": pt * np.sin(phi0),
            "pz": pz,
            "q": q,
            "nhits": nhits.reindex(particle_id).fillna(0).astype(int).to_numpy(),
        }
    )
    return TrackMLEvent(event_id=event_id, hits=hits, truth=truth, particles=particles)


def write_toy_events(directory, n_events: int = 3, seed: int = 0, first_id: int = 1, **kw):
    """Write ``n_events`` toy events as TrackML CSVs into ``directory``; returns it."""
    from pathlib import Path

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(n_events):
        ev = toy_event(seed=seed + i, event_id=first_id + i, **kw)
        prefix = directory / f"event{first_id + i:09d}"
        ev.hits.to_csv(f"{prefix}-hits.csv", index=False)
        ev.truth.to_csv(f"{prefix}-truth.csv", index=False)
        ev.particles.to_csv(f"{prefix}-particles.csv", index=False)
    return directory
