"""The detector-design environment: place up to N barrel tracking layers under a cost
budget to maximise momentum resolution and tracking efficiency.

The analytic resolution model (documented in docs/design.md):

- a track in the bending plane near the origin is the parabola
  y(x) = y0 + phi x + kappa x^2 / 2 with curvature kappa = 0.3 B / pT (1/m; B in T,
  pT in GeV), measured at each layer's radius r_i with resolution sigma;
- multiple scattering in each layer (thickness x/X0) deflects it by an angle of rms
  theta0 = 0.0136 / p sqrt(x/X0) (1 + 0.038 ln(x/X0)) (Highland, beta = 1, eta = 0), which
  displaces every later measurement by theta (r_i - r_j): the measurements are correlated,
  V_ik = sigma^2 delta_ik + sum_{j < min(i, k)} theta0_j^2 (r_i - r_j)(r_k - r_j);
- the least-squares fit's covariance (A^T V^-1 A)^-1 with rows A_i = (1, r_i, r_i^2 / 2)
  gives sigma(kappa) and sigma(pT) / pT = sigma(kappa) / kappa.  Without material and for
  N + 1 equally spaced layers over a lever arm L this is Gluckstern's formula
  sigma(kappa) = sigma / L^2 sqrt(720 N^3 / ((N - 1)(N + 1)(N + 2)(N + 3)))
  (-> sigma / L^2 sqrt(720 / (N + 4)) for large N);
- tracking efficiency: at least ``min_hits`` of the layers fire, each with
  ``hit_efficiency`` (binomial).

Score of a layout: efficiency x the geometric mean over the pT values of
sigma_ref(pT) / sigma(pT), where the reference is ``max_layers`` equally spaced layers
over [r_min, r_max] (cost ignored); a layout over budget loses 2 x its relative excess.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from fivesigma.core import extras

__all__ = [
    "DetectorModel",
    "genetic_search",
    "gluckstern_sigma_kappa",
    "make_detector_env",
]


def gluckstern_sigma_kappa(sigma_m: float, length_m: float, points: int) -> float:
    """Gluckstern's curvature resolution (1/m) for ``points`` equally spaced
    measurements of resolution ``sigma_m`` over ``length_m``, no scattering."""
    n = points - 1
    return sigma_m / length_m**2 * math.sqrt(720 * n**3 / ((n - 1) * (n + 1) * (n + 2) * (n + 3)))


class DetectorModel:
    """Resolution, efficiency, cost and score of layouts (radii in mm)."""

    def __init__(self, d: dict[str, Any]) -> None:
        self.d = d
        self.n = int(d["max_layers"])
        self.r_min, self.r_max = float(d["r_min_mm"]), float(d["r_max_mm"])
        self.sigma = float(d["hit_resolution_um"]) * 1e-6
        self.x0 = float(d["x_over_x0"])
        self.b = float(d["b_field_t"])
        self.pt = np.asarray(d["pt_gev"], dtype=np.float64)
        self.calls = 0
        ref = np.linspace(self.r_min, self.r_max, self.n)
        self.reference = ref
        self.sigma_ref = self.resolution(ref)

    # ------------------------------------------------------------------ physics
    def sigma_kappa(self, radii_mm: np.ndarray, p_gev: float, material: bool = True) -> float:
        """Curvature resolution (1/m) of the fit through layers at ``radii_mm``."""
        r = np.sort(np.asarray(radii_mm, dtype=np.float64)) / 1000.0
        if r.size < 3:
            return math.inf
        v = np.eye(r.size) * self.sigma**2
        if material:
            theta2 = (0.0136 / p_gev * math.sqrt(self.x0) * (1 + 0.038 * math.log(self.x0))) ** 2
            lever = np.maximum(r[None, :] - r[:, None], 0.0)  # [j, i] = r_i - r_j (i after j)
            v = v + theta2 * lever.T @ lever
        a = np.stack([np.ones_like(r), r, r**2 / 2], axis=1)
        try:
            cov = np.linalg.inv(a.T @ np.linalg.solve(v, a))
        except np.linalg.LinAlgError:
            return math.inf
        return float(math.sqrt(max(cov[2, 2], 0.0)))

    def resolution(self, radii_mm: np.ndarray) -> np.ndarray:
        """sigma(pT) / pT at each of the configured pT values."""
        kappa = 0.3 * self.b / self.pt
        return np.array([self.sigma_kappa(radii_mm, p) for p in self.pt]) / kappa

    def efficiency(self, layers: int) -> float:
        """P(at least min_hits of ``layers`` layers fire)."""
        k, e = int(self.d["min_hits"]), float(self.d["hit_efficiency"])
        return float(
            sum(math.comb(layers, j) * e**j * (1 - e) ** (layers - j) for j in range(k, layers + 1))
        )

    def cost(self, radii_mm: np.ndarray) -> float:
        r = np.asarray(radii_mm, dtype=np.float64)
        return float(np.sum(self.d["layer_cost"] + self.d["area_cost"] * r / 1000.0))

    # ------------------------------------------------------------------ designs
    def decode(self, z: np.ndarray) -> np.ndarray:
        """A vector in [-1, 1]^(2N) -> the radii (mm) of the layers switched on
        (z_i > 0 for i < N), at r_min + (z_{N+i} + 1) / 2 (r_max - r_min)."""
        z = np.clip(np.asarray(z, dtype=np.float64), -1, 1)
        on = z[: self.n] > 0
        r = self.r_min + (z[self.n :] + 1) / 2 * (self.r_max - self.r_min)
        return np.sort(r[on])

    def encode(self, radii_mm: np.ndarray) -> np.ndarray:
        r = np.sort(np.asarray(radii_mm, dtype=np.float64))
        z = -np.ones(2 * self.n)
        z[: r.size] = 1.0
        z[self.n : self.n + r.size] = 2 * (r - self.r_min) / (self.r_max - self.r_min) - 1
        return z

    def evaluate(self, radii_mm: np.ndarray) -> dict[str, Any]:
        """Every number of a layout."""
        self.calls += 1
        r = np.sort(np.asarray(radii_mm, dtype=np.float64))
        res = self.resolution(r)
        eff = self.efficiency(r.size) if r.size >= 3 else 0.0
        gain = (
            float(np.exp(np.mean(np.log(self.sigma_ref / res))))
            if np.all(np.isfinite(res))
            else 0.0
        )
        cost = self.cost(r)
        excess = max(0.0, cost / float(self.d["budget"]) - 1.0)
        return {
            "radii_mm": r.tolist(),
            "layers": int(r.size),
            "resolution": res.tolist(),
            "efficiency": eff,
            "resolution_gain": gain,
            "cost": cost,
            "within_budget": excess == 0.0,
            "score": eff * gain - 2.0 * excess,
        }

    def score(self, z: np.ndarray) -> float:
        return float(self.evaluate(self.decode(z))["score"])

    def fixed_design(self) -> np.ndarray:
        """The hand design: as many equally spaced layers over [r_min, r_max] as the
        budget pays for (at least 3)."""
        for n in range(self.n, 2, -1):
            r = np.linspace(self.r_min, self.r_max, n)
            if self.cost(r) <= self.d["budget"]:
                return r
        return np.linspace(self.r_min, self.r_max, 3)


def genetic_search(
    model: DetectorModel, evaluations: int, seed: int, population: int = 30
) -> tuple[np.ndarray, float]:
    """A real-coded genetic algorithm on [-1, 1]^(2N): tournament selection, blend
    crossover, Gaussian mutation, two elites; ``evaluations`` designs in all."""
    rng = np.random.default_rng(seed)
    dim = 2 * model.n
    pop = rng.uniform(-1, 1, size=(population, dim))
    fit = np.array([model.score(z) for z in pop])
    used = population
    while used + population - 2 <= evaluations:
        order = np.argsort(-fit)
        children = [pop[order[0]], pop[order[1]]]
        while len(children) < population:
            i, j = (max(rng.integers(0, population, 2), key=lambda k: fit[k]) for _ in range(2))
            alpha = rng.uniform(-0.25, 1.25, size=dim)
            child = alpha * pop[i] + (1 - alpha) * pop[j]
            mutate = rng.random(dim) < 1.5 / dim
            child = np.clip(child + mutate * rng.normal(0, 0.3, size=dim), -1, 1)
            children.append(child)
        pop = np.array(children)
        fit = np.concatenate([fit[order[:2]], [model.score(z) for z in pop[2:]]])
        used += population - 2
    best = int(np.argmax(fit))
    return pop[best], float(fit[best])


def make_detector_env(model: DetectorModel) -> Any:
    """A ``gymnasium.Env`` of one-step episodes: the action is the whole layout vector
    in [-1, 1]^(2N), the reward its score (a design problem has no state to react to)."""
    gym = extras.gymnasium()
    spaces = extras.gymnasium("spaces")

    class DetectorEnv(gym.Env):
        metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

        def __init__(self) -> None:
            super().__init__()
            self.observation_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
            self.action_space = spaces.Box(-1.0, 1.0, shape=(2 * model.n,), dtype=np.float32)
            self.best: tuple[float, np.ndarray] | None = None

        def reset(self, *, seed: int | None = None, options: dict | None = None):
            super().reset(seed=seed)
            return np.ones(1, dtype=np.float32), {}

        def step(self, action: np.ndarray):
            value = model.score(action)
            if self.best is None or value > self.best[0]:
                self.best = (value, np.asarray(action, dtype=np.float64).copy())
            return np.ones(1, dtype=np.float32), value, True, False, {}

    return DetectorEnv()
