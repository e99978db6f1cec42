"""The searches: surrogate-guided genetic search (active learning) and its baselines.

Every method works on the unit square of the scanned parameters (each axis logarithmic
in the parameter: masses and couplings span decades) and learns the sign of the oracle's
``log_ratio = ln(σ × BR / σB_lim)`` (> 0: excluded).

- :func:`active_search`: a Latin-hypercube start, then per step the Gaussian process is
  refitted on every point computed so far and a genetic algorithm (pymoo ``GA``)
  minimises the acquisition ``U(x) = |μ(x)| / σ(x)`` (small where the surrogate puts the
  boundary, or where it is unsure, which is where a point is most likely misclassified);
  the best ``batch`` distinct proposals go to the oracle.  The search stops by its own
  estimate, ``1 - mean Φ(-|μ| / σ)`` over the square above ``stop_accuracy`` for
  ``patience`` steps, or at ``max_calls``.
- :func:`grid_baseline`: uniform grids (sub-grids of the dense reference grid), the
  dense grid classified by linear interpolation of the log ratio.
- :func:`random_baseline`: uniformly random points (nodes of the dense grid, drawn
  without replacement, so they cost no extra Pythia runs); the dense grid classified by
  linear interpolation between them (the classic random scan) and by the same Gaussian
  process the active search uses.

Accuracy is the fraction of dense-grid nodes a method classifies as the dense grid's own
oracle values do; :func:`calls_to_reach` is the number of oracle calls after which it
stays at or above the target.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fivesigma.core import extras
from fivesigma.tasks.scan.surrogate import GPSurrogate

__all__ = [
    "ActiveRun",
    "Space",
    "active_search",
    "agreement",
    "calls_to_reach",
    "dense_grid",
    "grid_baseline",
    "random_baseline",
]


@dataclass(frozen=True)
class Space:
    """The scanned parameters and their ranges; unit coordinates are log-uniform."""

    names: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]

    @property
    def dim(self) -> int:
        return len(self.names)

    def to_physical(self, u: np.ndarray) -> np.ndarray:
        lo, hi = np.log(self.low), np.log(self.high)
        return np.exp(lo + np.asarray(u, dtype=float) * (hi - lo))

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        lo, hi = np.log(self.low), np.log(self.high)
        return (np.log(np.asarray(x, dtype=float)) - lo) / (hi - lo)

    def points(self, u: np.ndarray) -> list[dict[str, float]]:
        """Parameter dicts of unit points ``u`` (n, d)."""
        x = self.to_physical(np.atleast_2d(u))
        return [dict(zip(self.names, map(float, row), strict=True)) for row in x]


def dense_grid(n: int, dim: int = 2) -> tuple[np.ndarray, list[np.ndarray]]:
    """The n^dim nodes of the uniform grid on the unit cube (row-major, last axis fastest)
    and the axes."""
    axes = [np.linspace(0.0, 1.0, n) for _ in range(dim)]
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1), axes


def agreement(pred: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of points whose sign (excluded: > 0) agrees with the truth's."""
    return float(np.mean((np.asarray(pred) > 0) == (np.asarray(truth) > 0)))


def calls_to_reach(calls: Sequence[int], accuracy: Sequence[float], target: float) -> int | None:
    """The fewest calls after which the accuracy stays >= target (None: never)."""
    calls, acc = list(calls), list(accuracy)
    reached = None
    for n, a in zip(calls, acc, strict=True):
        if a >= target:
            if reached is None:
                reached = n
        else:
            reached = None
    return reached


# -- the surrogate-guided search -----------------------------------------------------------
@dataclass
class ActiveRun:
    """One active search: the points in call order, the accuracy after each call (when a
    truth was given), the search's own accuracy estimate, and the final surrogate."""

    seed: int
    x: np.ndarray  # (n, d) unit coordinates, in call order
    y: np.ndarray  # log ratio
    calls: list[int] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    estimated: list[float] = field(default_factory=list)
    stopped_at: int = 0
    stop_reason: str = ""
    rule_stop: int | None = None
    surrogates: dict[int, GPSurrogate] = field(default_factory=dict)
    surrogate: GPSurrogate | None = None
    seconds: float = 0.0
    ga_seconds: float = 0.0


def _estimated_accuracy(gp: GPSurrogate, probe: np.ndarray) -> float:
    from scipy.special import ndtr

    mean, std = gp.predict(probe)
    return float(1.0 - np.mean(ndtr(-np.abs(mean) / std)))


def _propose(
    gp: GPSurrogate,
    x_done: np.ndarray,
    batch: int,
    population: int,
    generations: int,
    seed: int,
    min_distance: float,
) -> np.ndarray:
    """``batch`` points minimising U = |μ| / σ, found by a genetic algorithm."""
    pymoo_ga = extras.pymoo("algorithms.soo.nonconvex.ga")
    problem_mod = extras.pymoo("core.problem")
    optimize = extras.pymoo("optimize")
    dim = x_done.shape[1]

    class Acquisition(problem_mod.Problem):
        def __init__(self) -> None:
            super().__init__(n_var=dim, n_obj=1, xl=0.0, xu=1.0)

        def _evaluate(self, x: np.ndarray, out: dict[str, Any], *args: Any, **kw: Any) -> None:
            mean, std = gp.predict(x)
            out["F"] = (np.abs(mean) / std)[:, None]

    algorithm = pymoo_ga.GA(pop_size=population, eliminate_duplicates=True)
    res = optimize.minimize(
        Acquisition(), algorithm, ("n_gen", generations), seed=seed, verbose=False
    )
    pop_x = np.atleast_2d(res.pop.get("X"))
    pop_f = np.asarray(res.pop.get("F")).reshape(-1)
    order = np.argsort(pop_f)
    chosen: list[np.ndarray] = []
    taken = x_done
    for i in order:
        cand = pop_x[i]
        if np.min(np.linalg.norm(taken - cand, axis=1)) < min_distance:
            continue  # the oracle already knows (nearly) this point
        chosen.append(cand)
        taken = np.vstack([taken, cand])
        if len(chosen) == batch:
            break
    if not chosen:  # the population collapsed onto known points: explore instead
        rng = np.random.default_rng(seed)
        probe = rng.uniform(size=(2048, dim))
        _, std = gp.predict(probe)
        chosen.append(probe[int(np.argmax(std))])
    return np.array(chosen)


def active_search(
    evaluate: Callable[[np.ndarray], np.ndarray],
    dim: int,
    *,
    seed: int,
    initial: int,
    max_calls: int,
    batch: int = 1,
    population: int = 40,
    generations: int = 25,
    stop_accuracy: float | None = 0.995,
    patience: int = 3,
    truth: tuple[np.ndarray, np.ndarray] | None = None,
    run_to_max: bool = False,
    restarts: int = 2,
    progress: Callable[[str], None] | None = None,
) -> ActiveRun:
    """Surrogate-guided genetic search of the boundary.

    Parameters
    ----------
    evaluate : unit points (n, d) -> log ratio (n,), the oracle (each point one call).
    truth : (nodes, log ratio) of the dense reference grid, to record the accuracy after
        every call (not used by the search).
    stop_accuracy : stop once the estimated accuracy is above this for ``patience``
        steps; None runs to ``max_calls``.
    run_to_max : go on to ``max_calls`` after the stopping rule fired (its call count is
        kept in ``rule_stop`` and its surrogate in ``surrogates``), to measure the
        accuracy beyond it.
    """
    t0 = time.perf_counter()
    qmc = extras.scipy("stats").qmc
    x = qmc.LatinHypercube(d=dim, seed=seed).random(initial)
    y = np.asarray(evaluate(x), dtype=float)
    run = ActiveRun(seed=seed, x=x, y=y)
    probe = np.random.default_rng(seed + 7919).uniform(size=(4096, dim))
    streak = 0
    step = 0
    ga_seconds = 0.0
    while True:
        gp = GPSurrogate(restarts=restarts, seed=seed + step).fit(run.x, run.y)
        est = _estimated_accuracy(gp, probe)
        run.calls.append(len(run.y))
        run.estimated.append(est)
        if truth is not None:
            run.accuracy.append(agreement(gp.predict(truth[0])[0], truth[1]))
        run.surrogate = gp
        streak = streak + 1 if stop_accuracy is not None and est >= stop_accuracy else 0
        if stop_accuracy is not None and streak >= patience and run.rule_stop is None:
            run.rule_stop = len(run.y)
            run.surrogates[len(run.y)] = gp
            run.stop_reason = f"estimated accuracy >= {stop_accuracy} for {patience} steps"
            if not run_to_max:
                break
        if len(run.y) >= max_calls:
            if run.rule_stop is None:
                run.stop_reason = f"max_calls ({max_calls}) reached"
            break
        g0 = time.perf_counter()
        new = _propose(
            gp,
            run.x,
            min(batch, max_calls - len(run.y)),
            population,
            generations,
            seed * 1000 + step,
            min_distance=0.5 / max(8.0, math.sqrt(max_calls) * 4),
        )
        ga_seconds += time.perf_counter() - g0
        run.x = np.vstack([run.x, new])
        run.y = np.concatenate([run.y, np.asarray(evaluate(new), dtype=float)])
        step += 1
        if progress and step % 10 == 0:
            acc = f", accuracy {run.accuracy[-1]:.3f}" if run.accuracy else ""
            progress(f"  seed {seed}: {len(run.y)} calls, estimated {est:.3f}{acc}")
    run.stopped_at = len(run.y)
    run.seconds = time.perf_counter() - t0
    run.ga_seconds = ga_seconds
    return run


# -- baselines ------------------------------------------------------------------------------
def grid_baseline(n: int, truth: np.ndarray, target: float) -> dict[str, Any]:
    """Uniform k×k sub-grids of the n×n reference grid (k - 1 divides n - 1), each
    classifying the reference nodes by linear interpolation of its log ratio."""
    interpolate = extras.scipy("interpolate")
    nodes, axes = dense_grid(n)
    values = np.asarray(truth).reshape(n, n)
    rows = []
    for stride in sorted((s for s in range(1, n) if (n - 1) % s == 0), reverse=True):
        sub = values[::stride, ::stride]
        f = interpolate.RegularGridInterpolator((axes[0][::stride], axes[1][::stride]), sub)
        rows.append(
            {
                "calls": int(sub.size),
                "per_axis": int(sub.shape[0]),
                "accuracy": agreement(f(nodes), truth),
            }
        )
    calls = [r["calls"] for r in rows]
    return {
        "rows": rows,
        "calls_to_target": calls_to_reach(calls, [r["accuracy"] for r in rows], target),
    }


def _schedule(start: int, stop: int) -> list[int]:
    """Roughly geometric call counts from ``start`` to ``stop`` (15% steps)."""
    out, v = [], float(start)
    while v < stop:
        out.append(round(v))
        v = max(v * 1.15, v + 1)
    out.append(stop)
    return sorted(set(out))


def random_baseline(
    nodes: np.ndarray,
    truth: np.ndarray,
    seed: int,
    start: int,
    max_calls: int,
    restarts: int = 0,
    surrogate: bool = True,
) -> dict[str, Any]:
    """Random scan: the first n nodes of a random permutation of the reference grid;
    accuracy of linear interpolation (nearest outside the hull) and of the surrogate."""
    interpolate = extras.scipy("interpolate")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(nodes))[:max_calls]
    calls = _schedule(start, min(max_calls, len(nodes)))
    acc_interp, acc_gp = [], []
    for n in calls:
        idx = order[:n]
        x, y = nodes[idx], truth[idx]
        lin = interpolate.griddata(x, y, nodes, method="linear")
        near = interpolate.griddata(x, y, nodes, method="nearest")
        acc_interp.append(agreement(np.where(np.isnan(lin), near, lin), truth))
        if surrogate:
            gp = GPSurrogate(restarts=restarts, seed=seed).fit(x, y)
            acc_gp.append(agreement(gp.predict(nodes)[0], truth))
    out: dict[str, Any] = {"seed": seed, "calls": calls, "accuracy_interpolation": acc_interp}
    if surrogate:
        out["accuracy_surrogate"] = acc_gp
    return out
