"""A parametrised electromagnetic shower simulation: fivesigma's calorimeter ground truth.

A sampling calorimeter of ``len(layer_edges) - 1`` longitudinal layers (depths in
radiation lengths X0) read out in rings around the particle's entry point (radii in
Molière radii R_M): a CaloChallenge-like r-binned grid (arXiv:2410.21611, dataset 1).
Each shower is a cloud of energy spots (Grindhammer and Peters, hep-ex/0001020):

1. **Longitudinal profile**: ``dE/dt = E (b t)^(a-1) b exp(-b t) / Gamma(a)`` in X0.
   Per shower, ``ln T`` and ``ln a`` are correlated Gaussians (``rho``) around
   ``T = ln(E / E_c) - 0.858`` (the shower maximum for electrons, ``E_c`` the critical
   energy) and ``a = 0.21 + 0.492 ln(E / E_c)``; ``b = (a - 1) / T``.
2. **Lateral profile**: each spot at depth ``t`` lies at ``r`` from the shower axis
   drawn from ``f(r) = (1 - p) 2 r R_C^2 / (r^2 + R_C^2)^2 + p 2 r R_T^2 / (r^2 +
   R_T^2)^2`` (a core and a tail, radii in R_M growing with ``tau = t / T``:
   ``R_C = z1 + z2 tau``, ``R_T = k1 (exp(k3 (tau - k2)) + exp(k4 (tau - k2)))``), at a
   uniform azimuth.
3. **Incident angle** ``theta`` (radians, from the normal): the axis moves out by
   ``z tan(theta)`` at depth ``z`` (in R_M) and the depth crossed is ``t cos(theta)``
   per unit of path, so inclined showers deposit earlier layers and wider rings.
4. **Sampling fluctuations**: the number of spots is Poisson with mean
   ``E / spot_energy``; every spot carries ``spot_energy``, so the visible energy has
   ``sigma / E = sqrt(spot_energy / E)`` (``stochastic = 0.2`` -> 20 % / sqrt(E[GeV]))
   times a constant term (a Gaussian of ``constant``) per shower.

Spots past the last layer leak (energy lost); the visible energy is the sum over voxels.
Voxel order: layer-major, ``voxel = layer * n_rings + ring``.

>>> sim = ShowerSimulator()
>>> out = sim.simulate(np.array([20.0, 50.0]), np.array([0.0, 0.2]), seed=1)
>>> out.shape, bool((out >= 0).all())
((2, 30), True)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fivesigma.errors import ConfigError

__all__ = ["ShowerSimulator", "layer_energies", "shower_widths", "total_energy"]


@dataclass(frozen=True)
class ShowerSimulator:
    """Geometry and shower parameters (GeV, X0, R_M); see the module docstring."""

    layer_edges: tuple[float, ...] = (0.0, 3.0, 8.0, 13.0, 19.0, 26.0)
    ring_edges: tuple[float, ...] = (0.0, 0.15, 0.35, 0.6, 1.0, 1.6, 3.0)
    critical_energy: float = 0.0215  # GeV (lead tungstate-like)
    ln_t_sigma: float = 0.12
    ln_a_sigma: float = 0.10
    rho: float = 0.7
    stochastic: float = 0.20  # sigma/E = stochastic / sqrt(E[GeV])
    constant: float = 0.01
    tail_fraction: float = 0.25  # p
    core: tuple[float, float] = (0.0251, 0.143)  # z1, z2: R_C = z1 + z2 tau
    tail: tuple[float, float, float, float] = (0.22, 1.0, 1.0, 0.28)  # k1..k4
    x0_over_rm: float = 0.45  # one X0 in Moliere radii (lateral offset of inclined showers)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("layer_edges", "ring_edges"):
            e = np.asarray(getattr(self, name), dtype=np.float64)
            if e.size < 2 or not np.all(np.diff(e) > 0) or e[0] < 0:
                raise ConfigError(f"ShowerSimulator.{name}: need >= 2 increasing edges >= 0")
        for name in ("critical_energy", "stochastic", "x0_over_rm"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"ShowerSimulator.{name}: must be > 0")

    @property
    def n_layers(self) -> int:
        return len(self.layer_edges) - 1

    @property
    def n_rings(self) -> int:
        return len(self.ring_edges) - 1

    @property
    def n_voxels(self) -> int:
        return self.n_layers * self.n_rings

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # ----------------------------------------------------------------------------------
    def simulate(
        self, energy: np.ndarray, theta: np.ndarray, seed: int | np.random.Generator = 0
    ) -> np.ndarray:
        """Voxel energies (GeV), shape (n, n_voxels), of showers of incident ``energy``
        (GeV, > 0) at angles ``theta`` (radians in [0, pi/2))."""
        energy = np.asarray(energy, dtype=np.float64).ravel()
        theta = np.asarray(theta, dtype=np.float64).ravel()
        if energy.shape != theta.shape:
            raise ConfigError(f"energy and theta differ in length ({energy.size}, {theta.size})")
        if energy.size and (not np.all(energy > 0) or not np.all(np.isfinite(energy))):
            raise ConfigError("incident energies must be finite and > 0 GeV")
        if energy.size and not np.all((theta >= 0) & (theta < math.pi / 2)):
            raise ConfigError("incident angles must lie in [0, pi/2) radians")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        n = energy.size
        # per-shower profile parameters, correlated log-normal fluctuations
        y = np.maximum(energy / self.critical_energy, 3.0)
        t_mean = np.maximum(np.log(y) - 0.858, 0.5)
        a_mean = np.maximum(0.21 + 0.492 * np.log(y), 1.2)
        z1 = rng.standard_normal(n)
        z2 = self.rho * z1 + math.sqrt(1 - self.rho**2) * rng.standard_normal(n)
        t_max = t_mean * np.exp(self.ln_t_sigma * z1)
        alpha = np.maximum(a_mean * np.exp(self.ln_a_sigma * z2), 1.05)
        beta = (alpha - 1.0) / t_max
        spot = self.stochastic**2  # GeV per spot
        nspots = rng.poisson(energy / spot)
        owner = np.repeat(np.arange(n), nspots)
        # depth along the shower axis (X0), then the depth crossed in the calorimeter
        t = rng.gamma(alpha[owner], 1.0 / beta[owner])
        depth = t * np.cos(theta[owner])
        tau = t / t_max[owner]
        rc = self.core[0] + self.core[1] * tau
        k1, k2, k3, k4 = self.tail
        rt = k1 * (np.exp(k3 * (tau - k2)) + np.exp(k4 * (tau - k2)))
        radius = np.where(rng.random(owner.size) < self.tail_fraction, rt, rc)
        u = rng.random(owner.size)
        r = radius * np.sqrt(u / (1.0 - u))  # inverse CDF of 2 r R^2 / (r^2 + R^2)^2
        phi = rng.uniform(0.0, 2 * math.pi, owner.size)
        shift = depth * self.x0_over_rm * np.tan(theta[owner])
        x = r * np.cos(phi) + shift
        yv = r * np.sin(phi)
        rho_ring = np.hypot(x, yv)
        layer = np.searchsorted(self.layer_edges, depth, side="right") - 1
        ring = np.searchsorted(self.ring_edges, rho_ring, side="right") - 1
        ok = (layer >= 0) & (layer < self.n_layers) & (ring >= 0) & (ring < self.n_rings)
        voxel = layer[ok] * self.n_rings + ring[ok]
        flat = np.bincount(owner[ok] * self.n_voxels + voxel, minlength=n * self.n_voxels).astype(
            np.float64
        )
        out = flat.reshape(n, self.n_voxels) * spot
        scale = np.maximum(1.0 + self.constant * rng.standard_normal(n), 0.0)
        return out * scale[:, None]

    def ring_centres(self) -> np.ndarray:
        """Ring centres (R_M), the last ring at its inner edge plus half the previous width."""
        e = np.asarray(self.ring_edges, dtype=np.float64)
        return 0.5 * (e[:-1] + e[1:])


def total_energy(voxels: np.ndarray) -> np.ndarray:
    """Visible energy of each shower (sum over voxels)."""
    return np.asarray(voxels, dtype=np.float64).sum(axis=1)


def layer_energies(voxels: np.ndarray, n_layers: int) -> np.ndarray:
    """Energy per layer, shape (n, n_layers)."""
    v = np.asarray(voxels, dtype=np.float64)
    return v.reshape(len(v), n_layers, -1).sum(axis=2)


def shower_widths(voxels: np.ndarray, n_layers: int, ring_centres: np.ndarray) -> np.ndarray:
    """Energy-weighted mean ring radius (R_M) per layer, shape (n, n_layers); nan where a
    layer is empty."""
    v = np.asarray(voxels, dtype=np.float64).reshape(len(voxels), n_layers, -1)
    e = v.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(e > 0, (v * ring_centres).sum(axis=2) / e, np.nan)
