"""The ``task: design`` config: an agent that runs the trigger through an LHC fill, and a
tracker layout under a cost budget.

A config names a ``preset`` (``quick`` or ``full``); every key left out (or ``null``)
keeps the preset's value, so the smallest config is ``{version: 1, task: design}``.

>>> from fivesigma.core.config import parse_config
>>> s = parse_config({"version": 1, "task": "design"}).settings()
>>> s.seeds, s.agents, len(s.mu_grid) >= 2
(['single_jet', 'ht', 'single_egamma', 'met'], ['ppo', 'sac'], True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field

from fivesigma.core.config import OutputConfig, StrictModel, TaskConfig
from fivesigma.errors import ConfigError

__all__ = ["AGENTS", "PRESETS", "SEED_NAMES", "DesignConfig", "DesignSettings"]

#: the agents trained on both environments (Stable-Baselines3)
AGENTS = ("ppo", "sac")

#: the controllable L1 seeds: names of :func:`fivesigma.physics.l1.reference_seeds`
SEED_NAMES = ("single_jet", "ht", "single_egamma", "single_iso_egamma", "single_muon", "met")

#: default threshold ranges (GeV) the agent may choose from, per seed
DEFAULT_BOUNDS: dict[str, tuple[float, float]] = {
    "single_jet": (30.0, 400.0),
    "ht": (60.0, 800.0),
    "single_egamma": (8.0, 120.0),
    "single_iso_egamma": (8.0, 120.0),
    "single_muon": (3.0, 60.0),
    "met": (30.0, 300.0),
}

#: LHC: 40 MHz bunch crossings of which 2544 of 3564 bunch slots collide
INPUT_RATE_KHZ = 40_000.0 * 2544 / 3564

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "mu_grid": [15, 35, 60],
        "zerobias_events": 4000,
        "signal_events": 600,
        "pool_size": 300,
        "budget_khz": 250.0,
        # PPO needs ~40 000 steps to move its menus far enough from the reference as
        # the pile-up falls (12 000 left it at 0.93, between fixed and PID)
        "timesteps": {"ppo": 48_000, "sac": 1_000},
        "seeds": 5,
        "heldout_fills": 10,
        "bo_fills": 4,
        "detector_evaluations": 300,
    },
    "full": {
        "mu_grid": [10, 20, 30, 40, 50, 60, 70],
        "zerobias_events": 40_000,
        "signal_events": 4000,
        "pool_size": 2000,
        "budget_khz": 100.0,
        "timesteps": {"ppo": 100_000, "sac": 20_000},
        "seeds": 5,
        "heldout_fills": 50,
        "bo_fills": 5,
        "detector_evaluations": 3000,
    },
}


class _Output(OutputConfig):
    dir: Annotated[str, Field(description="output directory (overridden by --out)")] = (
        "fivesigma-design"
    )


class DesignStream(StrictModel):
    """Zero-bias and signal samples (``fivesigma generate l1``, cached) at a grid of
    pile-up values; rates and efficiencies between grid points are interpolated."""

    mu_grid: Annotated[
        list[int] | None, Field(description="pile-up values the samples are generated at")
    ] = None
    zerobias_events: Annotated[int | None, Field(ge=200, description="per grid point")] = None
    signal_events: Annotated[int | None, Field(ge=50, description="per signal and grid point")] = (
        None
    )
    pool_size: Annotated[int | None, Field(ge=10, description="pile-up pool per block")] = None
    signals: Annotated[
        list[str], Field(description="signal channels (processes of `fivesigma generate l1`)")
    ] = Field(default_factory=lambda: ["hh4b", "haa4gamma", "zprime"])
    jobs: Annotated[int | None, Field(ge=1)] = None


class DesignTrigger(StrictModel):
    """The trigger menu the agent runs: K seeds, each with one threshold."""

    seeds: Annotated[
        list[str], Field(description=f"controlled L1 seeds: {', '.join(SEED_NAMES)}")
    ] = Field(default_factory=lambda: ["single_jet", "ht", "single_egamma", "met"])
    bounds: Annotated[
        dict[str, tuple[float, float]],
        Field(description="threshold range [low, high] in GeV per seed (default per seed)"),
    ] = Field(default_factory=dict)
    budget_khz: Annotated[float | None, Field(gt=0, description="total L1 rate budget (kHz)")] = (
        None
    )
    reserved_khz: Annotated[
        float,
        Field(ge=0, description="rate of triggers the agent does not control (kHz)"),
    ] = 0.0
    penalty: Annotated[
        float, Field(ge=0, description="reward penalty per unit relative budget excess")
    ] = 5.0
    action_width: Annotated[
        float,
        Field(gt=0, le=5, description="an action moves a threshold by up to exp(width)"),
    ] = 1.0


class DesignFill(StrictModel):
    """LHC fills: pile-up mu(t) = mu_start exp(-t / lifetime), luminosity proportional to
    mu (fixed number of colliding bunches); each fill is ``steps`` control steps."""

    hours: Annotated[float, Field(gt=0, description="fill length")] = 10.0
    steps: Annotated[int, Field(ge=2, le=500, description="control steps per fill")] = 20
    mu_start: Annotated[
        tuple[float, float], Field(description="range of the pile-up at the start")
    ] = (45.0, 60.0)
    lifetime_h: Annotated[
        tuple[float, float], Field(description="range of the luminosity lifetime (hours)")
    ] = (10.0, 20.0)
    heldout_fills: Annotated[int | None, Field(ge=1)] = None


class DesignAgents(StrictModel):
    """Stable-Baselines3 agents; every baseline gets the same number of simulated steps."""

    agents: Annotated[list[str], Field(description=f"agents: {', '.join(AGENTS)}")] = Field(
        default_factory=lambda: list(AGENTS)
    )
    timesteps: Annotated[
        dict[str, int] | None, Field(description="training steps per agent (trigger)")
    ] = None
    seeds: Annotated[int | None, Field(ge=1, le=20, description="training seeds")] = None
    bo_fills: Annotated[int | None, Field(ge=1, description="training fills per optuna trial")] = (
        None
    )


class DesignDetector(StrictModel):
    """Tracker layout: up to ``max_layers`` barrel layers between ``r_min_mm`` and
    ``r_max_mm``; cost per layer ``layer_cost + area_cost * r / 1 m``."""

    enabled: bool = True
    max_layers: Annotated[int, Field(ge=3, le=20)] = 8
    r_min_mm: Annotated[float, Field(gt=0)] = 30.0
    r_max_mm: Annotated[float, Field(gt=0)] = 1000.0
    hit_resolution_um: Annotated[float, Field(gt=0)] = 15.0
    x_over_x0: Annotated[float, Field(gt=0, lt=1, description="material per layer")] = 0.015
    b_field_t: Annotated[float, Field(gt=0)] = 2.0
    hit_efficiency: Annotated[float, Field(gt=0, le=1)] = 0.97
    min_hits: Annotated[int, Field(ge=3)] = 4
    pt_gev: Annotated[list[float], Field(description="pT values the resolution is judged at")] = (
        Field(default_factory=lambda: [1.0, 10.0, 100.0])
    )
    layer_cost: Annotated[float, Field(ge=0)] = 1.0
    area_cost: Annotated[float, Field(ge=0, description="cost per layer per metre radius")] = 4.0
    budget: Annotated[float, Field(gt=0, description="cost budget")] = 16.0
    evaluations: Annotated[
        int | None,
        Field(ge=20, description="designs each optimiser and agent may evaluate"),
    ] = None


class DesignConfig(TaskConfig):
    """Reinforcement learning that runs the experiment: trigger thresholds through an LHC
    fill, and a tracker layout under a cost budget, against honest baselines."""

    task: Literal["design"] = "design"
    seed: Annotated[int, Field(description="seed of generation, fills and training")] = 1
    output: _Output = Field(default_factory=_Output)
    preset: Annotated[
        Literal["quick", "full"], Field(description="quick: minutes; full: bigger samples")
    ] = "quick"
    stream: DesignStream = Field(default_factory=DesignStream)
    trigger: DesignTrigger = Field(default_factory=DesignTrigger)
    fill: DesignFill = Field(default_factory=DesignFill)
    training: DesignAgents = Field(default_factory=DesignAgents)
    detector: DesignDetector = Field(default_factory=DesignDetector)

    def settings(self) -> DesignSettings:
        """The preset with this config's keys applied; ConfigError for contradictions."""
        p = PRESETS[self.preset]
        t, f, a, d, st = self.trigger, self.fill, self.training, self.detector, self.stream
        seeds = list(dict.fromkeys(t.seeds))
        bad = [x for x in seeds if x not in SEED_NAMES]
        if bad or not seeds:
            raise ConfigError(
                f"trigger.seeds: unknown or empty {bad or seeds}; accepted: {', '.join(SEED_NAMES)}"
            )
        extra = [k for k in t.bounds if k not in seeds]
        if extra:
            raise ConfigError(f"trigger.bounds: {extra} are not in trigger.seeds {seeds}")
        bounds = {k: tuple(map(float, t.bounds.get(k, DEFAULT_BOUNDS[k]))) for k in seeds}
        for k, (lo, hi) in bounds.items():
            if not 0 < lo < hi:
                raise ConfigError(f"trigger.bounds.{k}: [{lo:g}, {hi:g}] GeV; give 0 < low < high")
        agents = list(dict.fromkeys(a.agents))
        if [x for x in agents if x not in AGENTS] or not agents:
            raise ConfigError(f"training.agents: {agents}; accepted: {', '.join(AGENTS)}")
        budget = t.budget_khz if t.budget_khz is not None else p["budget_khz"]
        if budget <= t.reserved_khz or budget >= INPUT_RATE_KHZ:
            raise ConfigError(
                f"trigger.budget_khz: {budget:g} kHz cannot be met by any threshold: "
                f"{t.reserved_khz:g} kHz are reserved for other triggers and the input is "
                f"{INPUT_RATE_KHZ:.0f} kHz; give a budget in ({t.reserved_khz:g}, "
                f"{INPUT_RATE_KHZ:.0f})"
            )
        grid = sorted(set(st.mu_grid or p["mu_grid"]))
        if len(grid) < 2 or grid[0] < 0 or grid[-1] > 200:
            raise ConfigError(f"stream.mu_grid: {grid}; give at least two values in [0, 200]")
        mu_lo, mu_hi = f.mu_start
        tau_lo, tau_hi = f.lifetime_h
        if not (0 < mu_lo <= mu_hi and 0 < tau_lo <= tau_hi):
            raise ConfigError(
                f"fill.mu_start {list(f.mu_start)} / fill.lifetime_h {list(f.lifetime_h)}: "
                "give positive [low, high] ranges"
            )
        mu_end = mu_lo * _decay(f.hours, tau_lo, f.steps)
        if mu_hi > grid[-1] or mu_end < grid[0]:
            raise ConfigError(
                f"fill: pile-up runs from {mu_hi:g} down to {mu_end:.1f}, outside "
                f"stream.mu_grid [{grid[0]}, {grid[-1]}] where rates are known; widen "
                "the grid or narrow fill.mu_start / fill.lifetime_h / fill.hours"
            )
        if d.r_min_mm >= d.r_max_mm:
            raise ConfigError(
                f"detector.r_min_mm ({d.r_min_mm:g}) must be below r_max_mm ({d.r_max_mm:g})"
            )
        if d.min_hits > d.max_layers:
            raise ConfigError(
                f"detector.min_hits ({d.min_hits}) exceeds detector.max_layers ({d.max_layers})"
            )
        cheapest = d.min_hits * (d.layer_cost + d.area_cost * d.r_min_mm / 1000.0)
        if d.enabled and cheapest > d.budget:
            raise ConfigError(
                f"detector.budget {d.budget:g} cannot pay for {d.min_hits} layers (at least "
                f"{cheapest:.3g}); raise the budget or lower detector.min_hits"
            )
        timesteps = {**p["timesteps"], **(a.timesteps or {})}
        for name, value in timesteps.items():
            if name not in AGENTS or value < 1:
                raise ConfigError(
                    f"timesteps: {name}={value}; give agents {', '.join(AGENTS)} >= 1 step"
                )
        return DesignSettings(
            seed=self.seed,
            mu_grid=grid,
            zerobias_events=st.zerobias_events or p["zerobias_events"],
            signal_events=st.signal_events or p["signal_events"],
            pool_size=st.pool_size or p["pool_size"],
            signals=list(dict.fromkeys(st.signals)),
            jobs=st.jobs,
            seeds=seeds,
            bounds=bounds,
            budget_khz=float(budget),
            reserved_khz=float(t.reserved_khz),
            penalty=float(t.penalty),
            action_width=float(t.action_width),
            fill_hours=f.hours,
            fill_steps=f.steps,
            mu_start=(float(mu_lo), float(mu_hi)),
            lifetime_h=(float(tau_lo), float(tau_hi)),
            heldout_fills=f.heldout_fills or p["heldout_fills"],
            agents=agents,
            timesteps={k: int(timesteps[k]) for k in agents},
            n_seeds=a.seeds or p["seeds"],
            bo_fills=a.bo_fills or p["bo_fills"],
            detector=d.model_dump() | {"evaluations": d.evaluations or p["detector_evaluations"]},
        )


def _decay(hours: float, lifetime: float, steps: int) -> float:
    """exp(-t / lifetime) at the middle of the last control step."""
    import math

    return math.exp(-hours * (steps - 0.5) / steps / lifetime)


@dataclass
class DesignSettings:
    """Resolved sizes and settings (what the run uses, written to metrics.json)."""

    seed: int
    mu_grid: list[int]
    zerobias_events: int
    signal_events: int
    pool_size: int
    signals: list[str]
    jobs: int | None
    seeds: list[str]
    bounds: dict[str, tuple[float, float]]
    budget_khz: float
    reserved_khz: float
    penalty: float
    action_width: float
    fill_hours: float
    fill_steps: int
    mu_start: tuple[float, float]
    lifetime_h: tuple[float, float]
    heldout_fills: int
    agents: list[str]
    timesteps: dict[str, int]
    n_seeds: int
    bo_fills: int
    detector: dict[str, Any] = field(default_factory=dict)
