"""The trigger environment and the controllers judged on it.

:class:`TriggerEnv` (a ``gymnasium.Env``): one episode is one LHC fill of ``steps``
control steps.  Observation: (mu / mu_max, fill phase).  Action: K numbers in [-1, 1]
that move each threshold around a reference menu (the menu tuned for the highest
pile-up of the fills) by up to a factor exp(width), within the seed's bounds
(:class:`ThresholdMap`), so the agent sets all K thresholds every step.  Reward (:func:`reward`): the mean signal efficiency over the channels minus
``penalty`` x log(1 + max(0, rate / budget - 1)).  The fill evolves whatever the
thresholds are, so an action changes only its own step's reward.

Every controller (the agents, fixed thresholds, the PID controller, an optuna schedule)
goes through :func:`run_fill`, which evaluates the same way: integrated signal efficiency
(luminosity-weighted mean over the fill of the mean channel efficiency), budget
violation (luminosity-weighted mean relative excess) and the fraction of steps over
budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from fivesigma.core import extras
from fivesigma.tasks.design.fill import Fill, RateModel, sample_fills

__all__ = [
    "Controller",
    "FixedController",
    "PIDController",
    "PolicyController",
    "ScheduleController",
    "ThresholdMap",
    "make_trigger_env",
    "rate_elasticity",
    "reward",
    "run_fill",
    "tune_thresholds",
]


class ThresholdMap:
    """Actions in [-1, 1]^K <-> thresholds.

    Without ``centre``: log-linear over each seed's bounds.  With ``centre`` (a reference
    menu, GeV): t = centre x exp(width x a), clipped to the bounds, so a = 0 is the
    reference menu and the agent moves each threshold by up to a factor exp(width).
    """

    def __init__(
        self,
        bounds: dict[str, tuple[float, float]],
        centre: np.ndarray | None = None,
        width: float = 1.0,
    ) -> None:
        self.names = list(bounds)
        b = np.array([bounds[k] for k in self.names], dtype=np.float64)
        self.log_lo, self.log_hi = np.log(b[:, 0]), np.log(b[:, 1])
        self.centre = None if centre is None else np.asarray(centre, dtype=np.float64)
        self.width = float(width)

    @property
    def k(self) -> int:
        return len(self.names)

    def thresholds(self, action: np.ndarray) -> np.ndarray:
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        if self.centre is not None:
            return np.exp(np.clip(np.log(self.centre) + self.width * a, self.log_lo, self.log_hi))
        return np.exp(self.log_lo + (a + 1.0) / 2.0 * (self.log_hi - self.log_lo))

    def action(self, thresholds: np.ndarray) -> np.ndarray:
        t = np.log(np.asarray(thresholds, dtype=np.float64))
        if self.centre is not None:
            return np.clip((t - np.log(self.centre)) / self.width, -1, 1)
        return np.clip(2.0 * (t - self.log_lo) / (self.log_hi - self.log_lo) - 1.0, -1, 1)

    @property
    def highest(self) -> np.ndarray:
        return np.exp(self.log_hi)


class Controller:
    """Chooses the thresholds of each step of a fill."""

    def reset(self, fill: Fill) -> None:
        """Called at the start of a fill."""

    def thresholds(self, step: int, mu: float, phase: float) -> np.ndarray:
        raise NotImplementedError

    def observe(self, rate_khz: float) -> None:
        """The rate measured during the step just run."""


class FixedController(Controller):
    """The same thresholds all fill long."""

    def __init__(self, thresholds: np.ndarray) -> None:
        self.t = np.asarray(thresholds, dtype=np.float64)

    def thresholds(self, step: int, mu: float, phase: float) -> np.ndarray:
        return self.t


class PIDController(Controller):
    """A PID controller on the total rate: all thresholds scaled by exp(u), with
    u = kp e + ki sum(e) + kd (e - e_prev) and e = log(rate / budget) / g of the step
    before, g = -dlog(rate)/du measured at the start (so the gains are in units of the
    correction that would cancel the error); a rate above budget raises the thresholds.
    The integral is clamped to |ki sum(e)| <= 3 (anti-windup)."""

    def __init__(
        self,
        start: np.ndarray,
        budget_khz: float,
        kp: float,
        ki: float,
        kd: float = 0.0,
        bounds: ThresholdMap | None = None,
        gain: float = 1.0,
    ) -> None:
        self.start = np.asarray(start, dtype=np.float64)
        self.budget, self.kp, self.ki, self.kd = budget_khz, kp, ki, kd
        self.map, self.gain = bounds, max(float(gain), 0.1)
        self.reset(None)

    def reset(self, fill: Fill | None) -> None:
        self.u, self.integral, self.e_prev = 0.0, 0.0, 0.0

    def thresholds(self, step: int, mu: float, phase: float) -> np.ndarray:
        t = self.start * np.exp(self.u)
        if self.map is not None:
            t = np.clip(t, np.exp(self.map.log_lo), np.exp(self.map.log_hi))
        return t

    def observe(self, rate_khz: float) -> None:
        e = float(np.log(max(rate_khz, 1e-6) / self.budget)) / self.gain
        self.integral += e
        if self.ki > 0:
            self.integral = float(np.clip(self.integral, -3 / self.ki, 3 / self.ki))
        self.u = self.kp * e + self.ki * self.integral + self.kd * (e - self.e_prev)
        self.e_prev = e


def rate_elasticity(model: RateModel, thresholds: np.ndarray, mu: float, du: float = 0.1) -> float:
    """-dlog(rate)/du when every threshold is scaled by exp(u), by a central difference."""
    up = model.rate_khz(thresholds * np.exp(du), mu)
    down = model.rate_khz(thresholds * np.exp(-du), mu)
    return float(np.log(max(down, 1e-6) / max(up, 1e-6)) / (2 * du))


class ScheduleController(Controller):
    """A threshold schedule in pile-up: action_k(mu) = clip(c_k + d_k x (mu - m) / s)."""

    def __init__(
        self, c: np.ndarray, d: np.ndarray, mu_mid: float, mu_span: float, bounds: ThresholdMap
    ) -> None:
        self.c, self.d = np.asarray(c, float), np.asarray(d, float)
        self.mid, self.span, self.map = mu_mid, mu_span, bounds

    def thresholds(self, step: int, mu: float, phase: float) -> np.ndarray:
        return self.map.thresholds(self.c + self.d * (mu - self.mid) / self.span)


class PolicyController(Controller):
    """A deterministic policy obs -> action (the trained agents, as numpy)."""

    def __init__(
        self, policy: Callable[[np.ndarray], np.ndarray], bounds: ThresholdMap, mu_scale: float
    ) -> None:
        self.policy, self.map, self.mu_scale = policy, bounds, mu_scale

    def thresholds(self, step: int, mu: float, phase: float) -> np.ndarray:
        obs = np.array([mu / self.mu_scale, phase], dtype=np.float32)
        return self.map.thresholds(self.policy(obs))


def reward(efficiency: float, rate_khz: float, budget_khz: float, penalty: float) -> float:
    """Mean signal efficiency minus ``penalty`` x log(1 + relative excess over budget): the
    penalty's slope at the budget is ``penalty``; the logarithm keeps far-off rates from
    swamping the reward scale while the agent explores."""
    return efficiency - penalty * float(np.log1p(max(0.0, rate_khz / budget_khz - 1.0)))


def run_fill(
    controller: Controller, model: RateModel, fill: Fill, budget_khz: float, penalty: float
) -> dict[str, Any]:
    """Run one fill; per-step arrays and the integrated numbers."""
    controller.reset(fill)
    mus, w = fill.mu, fill.luminosity_weight
    rates, effs, ths, rewards = [], [], [], []
    for i, mu in enumerate(mus):
        t = controller.thresholds(i, float(mu), i / fill.steps)
        rate = model.rate_khz(t, float(mu))
        eff = float(np.mean(list(model.efficiencies(t, float(mu)).values())))
        controller.observe(rate)
        rates.append(rate)
        effs.append(eff)
        ths.append(np.asarray(t, dtype=np.float64))
        rewards.append(reward(eff, rate, budget_khz, penalty))
    rates_a, effs_a = np.asarray(rates), np.asarray(effs)
    excess_a = np.maximum(0.0, rates_a / budget_khz - 1.0)
    return {
        "mu": mus,
        "rate_khz": rates_a,
        "efficiency": effs_a,
        "thresholds": np.asarray(ths),
        "integrated_efficiency": float(np.sum(w * effs_a)),
        "violation": float(np.sum(w * excess_a)),
        "violation_fraction": float(np.mean(rates_a > budget_khz * (1 + 1e-9))),
        "reward": float(np.sum(rewards)),
    }


def evaluate(
    controller: Controller,
    model: RateModel,
    fills: list[Fill],
    budget_khz: float,
    penalty: float,
) -> dict[str, float]:
    """Means over fills of the integrated numbers."""
    runs = [run_fill(controller, model, f, budget_khz, penalty) for f in fills]
    keys = ("integrated_efficiency", "violation", "violation_fraction", "reward")
    return {k: float(np.mean([r[k] for r in runs])) for k in keys}


def tune_thresholds(
    model: RateModel,
    mu: float,
    budget_khz: float,
    bmap: ThresholdMap,
    rng: np.random.Generator,
    calls: int = 300,
) -> tuple[np.ndarray, int]:
    """Thresholds that maximise the mean efficiency at pile-up ``mu`` with the rate within
    budget: random search in action space, then a shrinking local search; returns the
    thresholds and the number of rate-model calls spent."""

    def score(a: np.ndarray) -> float:
        t = bmap.thresholds(a)
        rate = model.rate_khz(t, mu)  # one rate evaluation per candidate menu
        if rate > budget_khz:
            return -1.0 - rate / budget_khz
        return float(np.mean(list(model.efficiencies(t, mu).values())))

    # random search, then a shrinking local search from each of the three best points
    # (moves of one threshold or of all), so one poor basin does not decide the menu
    n_random = max(1, (2 * calls) // 5)
    starts = [(score(np.ones(bmap.k)), np.ones(bmap.k))]
    for a in rng.uniform(-1, 1, size=(n_random, bmap.k)):
        starts.append((score(a), a))
    starts.sort(key=lambda p: -p[0])
    per_start = max(1, (calls - n_random - 1) // 3)
    best, best_a = starts[0]
    for value, a0 in starts[:3]:
        cur, cur_a, step = value, a0, 0.4
        for i in range(per_start):
            move = rng.normal(0, step, size=bmap.k)
            if rng.random() < 0.5:
                move *= np.eye(bmap.k)[rng.integers(bmap.k)]
            a = np.clip(cur_a + move, -1, 1)
            v = score(a)
            if v > cur:
                cur_a, cur = a, v
            if (i + 1) % 20 == 0:
                step *= 0.7
        if cur > best:
            best, best_a = cur, cur_a
    return bmap.thresholds(best_a), calls


def make_trigger_env(model: RateModel, s: Any, bmap: ThresholdMap, seed: Any) -> Any:
    """A ``gymnasium.Env``: each reset draws a new training fill from the fill
    distribution (seeded; held-out fills use other seeds)."""
    gym = extras.gymnasium()
    spaces = extras.gymnasium("spaces")
    mu_scale = float(model.mu_grid[-1])

    class TriggerEnv(gym.Env):
        metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

        def __init__(self) -> None:
            super().__init__()
            self.observation_space = spaces.Box(0.0, 1.5, shape=(2,), dtype=np.float32)
            self.action_space = spaces.Box(-1.0, 1.0, shape=(bmap.k,), dtype=np.float32)
            self.fill_rng = np.random.default_rng(seed)
            self.fill: Fill | None = None
            self.i = 0

        def _obs(self) -> np.ndarray:
            mu = float(self.fill.mu[self.i])
            return np.array([mu / mu_scale, self.i / self.fill.steps], dtype=np.float32)

        def reset(self, *, seed: int | None = None, options: dict | None = None):
            super().reset(seed=seed)
            self.fill = sample_fills(
                1, self.fill_rng, s.mu_start, s.lifetime_h, s.fill_hours, s.fill_steps
            )[0]
            self.i = 0
            return self._obs(), {}

        def step(self, action: np.ndarray):
            mu = float(self.fill.mu[self.i])
            t = bmap.thresholds(action)
            rate = model.rate_khz(t, mu)
            eff = float(np.mean(list(model.efficiencies(t, mu).values())))
            r = reward(eff, rate, s.budget_khz, s.penalty)
            self.i += 1
            done = self.i >= self.fill.steps
            obs = self._obs() if not done else np.zeros(2, dtype=np.float32)
            return obs, r, done, False, {"rate_khz": rate, "efficiency": eff}

    return TriggerEnv()
