"""The parametrised shower simulation against closed forms (Gamma CDF, lateral CDF, Poisson)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fivesigma.errors import ConfigError
from fivesigma.physics.calorimeter import (
    ShowerSimulator,
    layer_energies,
    shower_widths,
    total_energy,
)


def test_containment_and_sampling_resolution() -> None:
    # one huge voxel: everything is contained, the visible energy is Poisson spots
    sim = ShowerSimulator(layer_edges=(0.0, 1e4), ring_edges=(0.0, 1e9), constant=0.0)
    e = np.full(4000, 25.0)
    v = sim.simulate(e, np.zeros_like(e), seed=3)
    resp = total_energy(v) / e
    assert abs(resp.mean() - 1.0) < 0.005
    expected = sim.stochastic / math.sqrt(25.0)  # sigma/E = sqrt(spot / E)
    assert resp.std() == pytest.approx(expected, rel=0.05)


def test_longitudinal_profile_is_the_gamma_cdf() -> None:
    stats = pytest.importorskip("scipy.stats")
    edges = (0.0, 4.0, 8.0, 12.0, 20.0, 40.0)
    sim = ShowerSimulator(
        layer_edges=edges, ring_edges=(0.0, 1e9), ln_t_sigma=0.0, ln_a_sigma=0.0, constant=0.0
    )
    energy = 40.0
    v = sim.simulate(np.full(3000, energy), np.zeros(3000), seed=5)
    frac = layer_energies(v, sim.n_layers).sum(0) / (3000 * energy)
    y = energy / sim.critical_energy
    t_max = math.log(y) - 0.858
    a = 0.21 + 0.492 * math.log(y)
    b = (a - 1) / t_max
    cdf = stats.gamma.cdf(np.asarray(edges), a, scale=1 / b)
    np.testing.assert_allclose(frac, np.diff(cdf), atol=0.006)


def test_lateral_profile_matches_its_cdf() -> None:
    r_core = 0.3
    sim = ShowerSimulator(
        layer_edges=(0.0, 1e4),
        ring_edges=(0.0, 0.1, 0.3, 0.9, 1e9),
        tail_fraction=0.0,
        core=(r_core, 0.0),
        constant=0.0,
    )
    v = sim.simulate(np.full(2000, 30.0), np.zeros(2000), seed=7)
    frac = v.sum(0) / v.sum()
    r = np.asarray(sim.ring_edges)
    cdf = np.where(np.isfinite(r), r**2 / (r**2 + r_core**2), 1.0)
    cdf[-1] = 1.0
    np.testing.assert_allclose(frac, np.diff(cdf), atol=0.005)


def test_inclined_showers_are_wider_and_shallower() -> None:
    sim = ShowerSimulator()
    e = np.full(3000, 30.0)
    straight = sim.simulate(e, np.zeros_like(e), seed=1)
    inclined = sim.simulate(e, np.full_like(e, 0.4), seed=1)
    w0 = np.nanmean(shower_widths(straight, sim.n_layers, sim.ring_centres()), 0)
    w1 = np.nanmean(shower_widths(inclined, sim.n_layers, sim.ring_centres()), 0)
    assert np.all(w1[2:] > w0[2:])
    l0 = layer_energies(straight, sim.n_layers).mean(0)
    l1 = layer_energies(inclined, sim.n_layers).mean(0)
    depth = np.arange(sim.n_layers)
    assert (l1 * depth).sum() / l1.sum() < (l0 * depth).sum() / l0.sum()


def test_seeded_and_shaped() -> None:
    sim = ShowerSimulator()
    a = sim.simulate(np.array([10.0, 20.0]), np.array([0.0, 0.1]), seed=2)
    b = sim.simulate(np.array([10.0, 20.0]), np.array([0.0, 0.1]), seed=2)
    assert a.shape == (2, sim.n_voxels)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("energy", "theta"),
    [([-1.0], [0.0]), ([np.nan], [0.0]), ([10.0], [2.0]), ([10.0, 5.0], [0.0])],
)
def test_bad_input(energy: list[float], theta: list[float]) -> None:
    with pytest.raises(ConfigError):
        ShowerSimulator().simulate(np.array(energy), np.array(theta))


def test_bad_geometry() -> None:
    with pytest.raises(ConfigError, match="layer_edges"):
        ShowerSimulator(layer_edges=(0.0, 5.0, 3.0))
