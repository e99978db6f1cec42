"""The two studies of the design task, each over several training seeds.

Trigger (:func:`trigger_study`): for every seed, each controller is set up on training
fills or at the start of each fill and judged on the same held-out fills:

- ``fixed``: thresholds tuned at the start of each fill (at its first pile-up, the best
  mean efficiency within budget, :func:`tune_thresholds`) and kept all fill long;
- ``pid``: the same start, then a PID controller on the total rate; its gains chosen
  from a small grid on training fills started the same way, as many fills as the
  agents' simulation budget pays for (:func:`pid_tuning_fills`);
- ``bo``: optuna (TPE) over a threshold schedule in pile-up (2K parameters), each trial
  judged on ``bo_fills`` training fills, as many simulated steps as the largest agent;
- ``ppo``, ``sac``: Stable-Baselines3 agents trained on fresh training fills.

Detector (:func:`detector_study`): the hand design (equally spaced layers the budget
pays for), random search, optuna, a genetic algorithm and the agents, each with the
same number of evaluated layouts.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from fivesigma.errors import ConfigError
from fivesigma.tasks.design.agents import NumpyPolicy, optuna_search, train_agent
from fivesigma.tasks.design.detector import DetectorModel, genetic_search, make_detector_env
from fivesigma.tasks.design.env import (
    Controller,
    PIDController,
    PolicyController,
    ScheduleController,
    ThresholdMap,
    evaluate,
    make_trigger_env,
    rate_elasticity,
    run_fill,
    tune_thresholds,
)
from fivesigma.tasks.design.fill import Fill, RateModel, sample_fills

__all__ = ["check_budget", "detector_study", "pid_tuning_fills", "summarise", "trigger_study"]

#: budget-violation tolerance of the "equal or lower violation" comparison
VIOLATION_TOLERANCE = 1e-3

_METRICS = ("integrated_efficiency", "violation", "violation_fraction", "reward")
_TUNE_CALLS = 600
_PID_GRID = [(kp, ki) for kp in (0.2, 0.5, 0.8) for ki in (0.1, 0.3, 0.6)]


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def check_budget(model: RateModel, s: Any, bmap: ThresholdMap) -> dict[str, float]:
    """ConfigError when no thresholds within the bounds meet the budget at the largest
    pile-up of the fills (every threshold at its upper bound passes the fewest events)."""
    mu = float(s.mu_start[1])
    rate = model.rate_khz(bmap.highest, mu)
    if rate > s.budget_khz:
        bounds = ", ".join(f"{k} {v[1]:g}" for k, v in s.bounds.items())
        raise ConfigError(
            f"trigger.budget_khz: {s.budget_khz:g} kHz cannot be met by any threshold: with "
            f"every threshold at its upper bound ({bounds} GeV) the menu passes {rate:.1f} "
            f"kHz at pile-up {mu:g}; raise the budget above {rate:.1f} kHz or the upper "
            "bounds in trigger.bounds"
        )
    return {"lowest_rate_khz": rate, "at_mu": mu}


class _TunedAtStart(Controller):
    """Tunes the thresholds at the fill's first pile-up, then delegates."""

    def __init__(
        self,
        model: RateModel,
        s: Any,
        bmap: ThresholdMap,
        seed: int,
        pid: tuple[float, float] | None = None,
        calls: int = _TUNE_CALLS,
    ) -> None:
        self.model, self.s, self.map, self.pid, self.calls = model, s, bmap, pid, calls
        self.rng = np.random.default_rng(seed)
        self.inner: Controller | None = None
        self.tuning_calls = 0

    def reset(self, fill: Fill) -> None:
        t0, calls = tune_thresholds(
            self.model, float(fill.mu[0]), self.s.budget_khz, self.map, self.rng, self.calls
        )
        self.tuning_calls += calls
        if self.pid is None:
            self.inner = _Fixed(t0)
        else:
            g = rate_elasticity(self.model, t0, float(fill.mu[0]))
            self.tuning_calls += 2
            self.inner = PIDController(t0, self.s.budget_khz, *self.pid, bounds=self.map, gain=g)
        self.inner.reset(fill)

    def thresholds(self, step: int, mu: float, phase: float) -> np.ndarray:
        return self.inner.thresholds(step, mu, phase)

    def observe(self, rate_khz: float) -> None:
        self.inner.observe(rate_khz)


class _Fixed(Controller):
    def __init__(self, t: np.ndarray) -> None:
        self.t = t

    def thresholds(self, step: int, mu: float, phase: float) -> np.ndarray:
        return self.t


def pid_tuning_fills(sim_budget: int, steps: int) -> int:
    """Training fills the PID gains are chosen on: as many as ``sim_budget`` simulated
    steps pay for when every gain pair of the grid runs on each fill from a start menu
    tuned as on the held-out fills (``_TUNE_CALLS`` rate evaluations, 2 for the rate
    elasticity, then ``steps`` steps), and at least 3."""
    per_fill = len(_PID_GRID) * (_TUNE_CALLS + 2 + steps)
    return max(3, int(sim_budget) // per_fill)


def _train_fills(s: Any, seed: int, n: int) -> list[Fill]:
    rng = np.random.default_rng([seed, 7])
    return sample_fills(n, rng, s.mu_start, s.lifetime_h, s.fill_hours, s.fill_steps)


def heldout_fills(s: Any) -> list[Fill]:
    """The held-out fills: one fixed set for every method and seed (its own stream)."""
    rng = np.random.default_rng([s.seed, 999_983])
    return sample_fills(s.heldout_fills, rng, s.mu_start, s.lifetime_h, s.fill_hours, s.fill_steps)


def trigger_study(model: RateModel, s: Any, progress: bool = True) -> dict[str, Any]:
    """Every controller on the held-out fills, for each of ``s.n_seeds`` seeds."""
    plain = ThresholdMap(s.bounds)
    # the reference menu the agents and the schedule move around: the best menu within
    # budget at the highest pile-up the fills start at (counted in their simulated steps)
    calls0 = model.calls
    t_ref, _ = tune_thresholds(
        model,
        float(s.mu_start[1]),
        s.budget_khz,
        plain,
        np.random.default_rng([s.seed, 5]),
        4 * _TUNE_CALLS,
    )
    ref_calls = model.calls - calls0
    bmap = ThresholdMap(s.bounds, centre=t_ref, width=s.action_width)
    heldout = heldout_fills(s)
    mu_scale = float(model.mu_grid[-1])
    mu_mid = float(np.mean(s.mu_start) * 0.6)
    mu_span = float(s.mu_start[1])
    sim_budget = max(s.timesteps.values())
    runs: dict[str, list[dict[str, Any]]] = {}
    policies: dict[str, list[NumpyPolicy]] = {k: [] for k in s.agents}
    controllers: dict[str, Controller] = {}
    for i in range(s.n_seeds):
        seed = s.seed + i
        row: dict[str, dict[str, Any]] = {}
        # fixed, tuned at the start of each fill
        t0 = time.perf_counter()
        fixed = _TunedAtStart(model, s, plain, seed)
        row["fixed"] = evaluate(fixed, model, heldout, s.budget_khz, s.penalty)
        row["fixed"]["sim_steps"] = fixed.tuning_calls / len(heldout)
        row["fixed"]["seconds"] = time.perf_counter() - t0
        # PID: gains from a grid on training fills
        t0 = time.perf_counter()
        # each gain pair on the same training fills, each fill started from a menu tuned
        # exactly as on the held-out fills (the start the gains will be used from), on
        # as many fills as the agents' simulation budget pays for
        train = _train_fills(s, seed, pid_tuning_fills(sim_budget, s.fill_steps))
        best, best_gains = -np.inf, _PID_GRID[0]
        calls0 = model.calls
        for gains in _PID_GRID:
            c = _TunedAtStart(model, s, plain, seed, pid=gains)
            v = evaluate(c, model, train, s.budget_khz, s.penalty)["reward"]
            if v > best:
                best, best_gains = v, gains
        tuning = model.calls - calls0
        pid = _TunedAtStart(model, s, plain, seed, pid=best_gains)
        row["pid"] = evaluate(pid, model, heldout, s.budget_khz, s.penalty)
        row["pid"]["gains"] = {"kp": best_gains[0], "ki": best_gains[1]}
        row["pid"]["sim_steps"] = tuning + pid.tuning_calls / len(heldout)
        row["pid"]["seconds"] = time.perf_counter() - t0
        # optuna schedule
        t0 = time.perf_counter()
        bo_train = _train_fills(s, seed, s.bo_fills)
        trials = max(10, sim_budget // (s.bo_fills * s.fill_steps))
        k = bmap.k

        def schedule(x: np.ndarray, k: int = k) -> ScheduleController:
            return ScheduleController(x[:k], 2 * x[k:], mu_mid, mu_span, bmap)

        x, _ = optuna_search(
            lambda x, fills=bo_train: evaluate(schedule(x), model, fills, s.budget_khz, s.penalty)[
                "reward"
            ],
            2 * k,
            trials,
            seed,
        )
        row["bo"] = evaluate(schedule(x), model, heldout, s.budget_khz, s.penalty)
        row["bo"]["trials"] = trials
        row["bo"]["sim_steps"] = trials * s.bo_fills * s.fill_steps + ref_calls
        row["bo"]["seconds"] = time.perf_counter() - t0
        if i == 0:
            controllers.update(fixed=fixed, pid=pid, bo=schedule(x))
        # the agents
        for kind in s.agents:
            t0 = time.perf_counter()
            policy, _ = train_agent(
                kind,
                lambda j, seed=seed: make_trigger_env(model, s, bmap, [seed, j]),
                s.timesteps[kind],
                seed,
            )
            policies[kind].append(policy)
            ctrl = PolicyController(policy, bmap, mu_scale)
            row[kind] = evaluate(ctrl, model, heldout, s.budget_khz, s.penalty)
            row[kind]["sim_steps"] = s.timesteps[kind] + ref_calls
            row[kind]["seconds"] = time.perf_counter() - t0
            if i == 0:
                controllers[kind] = ctrl
        for name, r in row.items():
            runs.setdefault(name, []).append(r)
        _say(
            progress,
            f"trigger seed {seed}: "
            + ", ".join(
                f"{n} {r['integrated_efficiency']:.3f} (viol {r['violation']:.4f})"
                for n, r in row.items()
            ),
        )
    trace = {
        name: run_fill(c, model, heldout[0], s.budget_khz, s.penalty)
        for name, c in controllers.items()
    }
    return {
        "runs": runs,
        "summary": summarise(runs, s.agents),
        "policies": policies,
        "trace": trace,
        "heldout": [vars(f) for f in heldout],
        "bounds": {k: list(v) for k, v in s.bounds.items()},
        "reference_menu": dict(zip(s.seeds, t_ref.tolist(), strict=True)),
        "map": bmap,
        "mu_scale": mu_scale,
    }


def summarise(runs: dict[str, list[dict[str, Any]]], agents: list[str]) -> dict[str, Any]:
    """Mean and std over seeds of every method's numbers, and each agent's verdict."""
    out: dict[str, Any] = {"methods": {}, "verdict": {}}
    for name, rows in runs.items():
        out["methods"][name] = {
            key: {
                "mean": float(np.mean([r[key] for r in rows])),
                "std": float(np.std([r[key] for r in rows])),
            }
            for key in (*_METRICS, "sim_steps")
            if key in rows[0]
        }
    m = out["methods"]
    for agent in agents:
        if agent not in m:
            continue
        verdict = {}
        for base in ("fixed", "pid", "bo"):
            eff = (
                m[agent]["integrated_efficiency"]["mean"] - m[base]["integrated_efficiency"]["mean"]
            )
            viol = m[agent]["violation"]["mean"] - m[base]["violation"]["mean"]
            seeds = sum(
                a["integrated_efficiency"] > b["integrated_efficiency"]
                and a["violation"] <= b["violation"] + VIOLATION_TOLERANCE
                for a, b in zip(runs[agent], runs[base], strict=True)
            )
            verdict[base] = {
                "efficiency_gain": eff,
                "violation_change": viol,
                "wins": bool(eff > 0 and viol <= VIOLATION_TOLERANCE),
                "seeds_won": int(seeds),
            }
        verdict["beats_fixed_and_pid"] = verdict["fixed"]["wins"] and verdict["pid"]["wins"]
        out["verdict"][agent] = verdict
    out["violation_tolerance"] = VIOLATION_TOLERANCE
    return out


def detector_study(
    d: dict[str, Any], agents: list[str], n_seeds: int, seed: int, progress: bool = True
) -> dict[str, Any]:
    """Every optimiser and agent on the layout problem, ``d["evaluations"]`` designs each."""
    model = DetectorModel(d)
    budget = int(d["evaluations"])
    dim = 2 * model.n
    fixed = model.evaluate(model.fixed_design())
    runs: dict[str, list[dict[str, Any]]] = {"fixed": []}
    for i in range(n_seeds):
        sd = seed + i
        row: dict[str, dict[str, Any]] = {"fixed": dict(fixed)}
        t0 = time.perf_counter()
        rng = np.random.default_rng(sd)
        zs = rng.uniform(-1, 1, size=(budget, dim))
        scores = [model.score(z) for z in zs]
        row["random"] = model.evaluate(model.decode(zs[int(np.argmax(scores))]))
        row["random"]["seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        z, _ = optuna_search(model.score, dim, budget, sd)
        row["bo"] = model.evaluate(model.decode(z))
        row["bo"]["seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        z, _ = genetic_search(model, budget, sd)
        row["ga"] = model.evaluate(model.decode(z))
        row["ga"]["seconds"] = time.perf_counter() - t0
        for kind in agents:
            t0 = time.perf_counter()
            policy, envs = train_agent(kind, lambda j: make_detector_env(model), budget, sd)
            row[kind] = model.evaluate(model.decode(policy(np.ones(1))))
            seen = [e.best[0] for e in envs if e.best is not None]
            row[kind]["best_seen_score"] = float(max(seen)) if seen else None
            row[kind]["seconds"] = time.perf_counter() - t0
        for name, r in row.items():
            runs.setdefault(name, []).append(r)
        _say(
            progress,
            f"detector seed {sd}: " + ", ".join(f"{n} {r['score']:.3f}" for n, r in row.items()),
        )
    summary = {
        name: {
            key: {
                "mean": float(np.mean([r[key] for r in rows])),
                "std": float(np.std([r[key] for r in rows])),
            }
            for key in ("score", "efficiency", "resolution_gain", "cost", "layers")
        }
        | {"within_budget": float(np.mean([r["within_budget"] for r in rows]))}
        for name, rows in runs.items()
    }
    return {
        "runs": runs,
        "summary": summary,
        "evaluations": budget,
        "reference": {"radii_mm": model.reference.tolist(), "resolution": model.sigma_ref.tolist()},
        "pt_gev": model.pt.tolist(),
    }
