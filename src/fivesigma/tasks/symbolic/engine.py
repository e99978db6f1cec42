"""The search: Operon (pyoperon) genetic programming, then SymPy and a Pareto front.

:func:`search` runs NSGA-II on (R², length) with Levenberg-Marquardt constant fitting
inside the evolution, several times (restarts with their own seeds), merges the final
fronts, turns every member of the merged front into a SymPy expression,
re-fits its constants on the data to convergence (scipy), measures its complexity (nodes
of the SymPy tree), checks its units, and picks one formula: the least complex
unit-consistent member with the smallest Bayesian information criterion,
``n ln(max(NMSE, floor)) + penalty * complexity * ln(n)``: more nodes must buy a
better fit than noise alone gives (the floor makes fits at machine precision equal).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fivesigma.core import extras
from fivesigma.errors import ModelError
from fivesigma.tasks.symbolic.units import Dim, check_units

__all__ = [
    "Candidate",
    "EngineSettings",
    "SearchResult",
    "complexity",
    "refit_constants",
    "search",
]


@dataclass
class Candidate:
    """One formula of the front."""

    expr: Any  # sympy expression, fitted float constants
    complexity: int
    nmse: float
    units: str | None  # None: consistent; else why not

    @property
    def text(self) -> str:
        return str(self.expr)


@dataclass
class SearchResult:
    front: list[Candidate]
    best: Candidate
    seconds: float
    engine: dict[str, Any] = field(default_factory=dict)


def complexity(expr: Any) -> int:
    """Nodes of the SymPy expression tree (numbers and symbols count one each)."""
    sp = extras.sympy()
    return sum(1 for _ in sp.preorder_traversal(expr))


def _free_numbers(expr: Any, sp: Any) -> list[Any]:
    """The numbers of ``expr`` that are fitted constants (not exponents, not +-1)."""
    out: list[Any] = []

    def walk(e: Any) -> None:
        if e.is_Number:
            if e not in (sp.Integer(1), sp.Integer(-1), sp.Integer(0)) and e not in out:
                out.append(e)
            return
        if e.is_Pow and e.args[1].is_Rational:
            walk(e.args[0])
            return
        for a in e.args:
            walk(a)

    walk(expr)
    return out


def template(expr: Any) -> tuple[Any, list[Any], np.ndarray]:
    """``expr`` with its fitted constants replaced by symbols ``c0, c1, ...``."""
    sp = extras.sympy()
    nums = _free_numbers(expr, sp)
    syms = [sp.Symbol(f"_c{i}") for i in range(len(nums))]
    tmpl = expr.xreplace(dict(zip(nums, syms, strict=True)))
    return tmpl, syms, np.array([float(v) for v in nums], dtype=float)


def least_squares(*args: Any, **kwargs: Any) -> Any:
    """``scipy.optimize.least_squares`` without its overflow warnings (trial steps of a
    fit may overflow; the fit handles that)."""
    import warnings

    optimize = extras.scipy("optimize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return optimize.least_squares(*args, **kwargs)


def refit_constants(
    expr: Any, names: list[str], X: np.ndarray, y: np.ndarray, tight: bool = False
) -> tuple[Any, float]:
    """Least-squares re-fit of ``expr``'s constants on ``(X, y)``: (expression, NMSE)."""
    sp = extras.sympy()
    tmpl, syms, c0 = template(expr)
    xs = [sp.Symbol(n, real=True) for n in names]
    fn = sp.lambdify([*xs, *syms], tmpl, "numpy")
    var = float(np.var(y)) or 1.0

    def pred(c: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            v = np.asarray(fn(*X.T, *c), dtype=float)
        return np.broadcast_to(v, y.shape)

    def resid(c: np.ndarray) -> np.ndarray:
        r = pred(c) - y
        return np.where(np.isfinite(r), r, 1e6 * np.sqrt(var))

    best_c, best = c0, float(np.mean(resid(c0) ** 2))
    if len(c0):
        tol = 1e-15 if tight else 1e-12
        try:
            fit = least_squares(
                resid,
                c0,
                method="trf",
                xtol=tol,
                ftol=tol,
                gtol=tol,
                max_nfev=(400 if tight else 60) * len(c0),
            )
            mse = float(np.mean(resid(fit.x) ** 2))
            if np.isfinite(mse) and mse <= best:
                best_c, best = fit.x, mse
        except (ValueError, FloatingPointError, OverflowError):
            pass
    fitted = tmpl.xreplace({s: sp.Float(v, 15) for s, v in zip(syms, best_c, strict=True)})
    return fitted, best / var


def _parse(text: str, names: list[str]) -> Any:
    sp = extras.sympy()
    local = {n: sp.Symbol(n, real=True) for n in names}
    local.update({"abs": sp.Abs, "sqrt": sp.sqrt, "log": sp.log, "exp": sp.exp})
    return sp.sympify(text.replace("^", "**"), locals=local)


@dataclass(frozen=True)
class EngineSettings:
    """The search budget and operators, fixed so that a run does not depend on load.

    ``generations`` (per restart) is the budget; ``max_seconds`` is only a safety cap
    per restart (a run that hits it says so in ``SearchResult.engine``).  ``restarts``
    independent runs with seeds ``seed, seed + 1, ...`` are merged into one front (only
    the members of the merged Operon front, by Operon length and MSE, are re-fitted in
    SymPy); no further restart runs once a member fits to ``stop_nmse`` (noise-free data,
    formula found).  Many small restarts find more than few big ones for the same
    evaluations (the quick preset uses 8 of population 250).  ``select_penalty`` and
    ``select_floor`` set the choice (:func:`select`).
    """

    generations: int = 60
    population: int = 500
    max_length: int = 30
    restarts: int = 2
    optimizer_iterations: int = 50
    max_seconds: float = 600.0
    select_penalty: float = 1.0
    select_floor: float = 1e-20
    stop_nmse: float = 1e-20
    max_front: int = 40


def _operon_front(
    X: np.ndarray, y: np.ndarray, names: list[str], operators: str, e: EngineSettings, seed: int
) -> tuple[list[str], dict[str, Any]]:
    """One Operon run: the final front's members as strings in ``names``, and its stats."""
    import warnings

    sr = extras.pyoperon("sklearn")
    reg = sr.SymbolicRegressor(
        allowed_symbols="constant,variable," + operators,
        objectives=["r2", "length"],
        optimizer_iterations=e.optimizer_iterations,
        generations=e.generations,
        max_evaluations=2**62,
        population_size=e.population,
        max_length=e.max_length,
        max_time=max(1, round(e.max_seconds)),
        random_state=int(seed),
        n_threads=1,
        epsilon=1e-10,
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg.fit(X, y)
    members = sorted(reg.pareto_front_, key=lambda d: d["length"])[: e.max_front]
    stats = {
        "seed": int(seed),
        "generations": int(reg.stats_["generations"]),
        "residual_evaluations": int(reg.stats_["residual_evaluations"]),
        "seconds": time.perf_counter() - t0,
    }
    # fewer generations than asked: the time cap stopped the run
    stats["time_capped"] = stats["generations"] < e.generations
    return [
        (
            reg.get_model_string(d["tree"], 12, names),
            int(d["length"]),
            float(d["mean_squared_error"]),
        )
        for d in members
    ], stats


def _operon_pareto(raw: list[tuple[str, int, float]]) -> list[tuple[str, int, float]]:
    """The members of several Operon fronts that no shorter-or-equal member beats in
    Operon's own MSE (constants already fitted by Levenberg-Marquardt): the merged front
    before the costlier SymPy re-fit."""
    out: list[tuple[str, int, float]] = []
    best = np.inf
    for m in sorted(raw, key=lambda m: (m[1], m[2])):
        if np.isfinite(m[2]) and m[2] < best:
            out.append(m)
            best = m[2]
    return out


def search(
    X: np.ndarray,
    y: np.ndarray,
    names: list[str],
    units: dict[str, Dim],
    operators: str,
    seed: int,
    settings: EngineSettings | None = None,
) -> SearchResult:
    """A symbolic-regression search on ``(X, y)``: ``settings.restarts`` Operon runs, their
    fronts merged, every member refitted in SymPy, then the Pareto front and one choice."""
    e = settings or EngineSettings()
    t0 = time.perf_counter()
    runs = []
    raw: list[tuple[str, int, float]] = []
    done: dict[str, Candidate | None] = {}  # Operon text -> refitted candidate (None: unusable)
    for k in range(e.restarts):
        members, stats = _operon_front(X, y, names, operators, e, seed + k)
        runs.append(stats)
        raw.extend(members)
        # only members on the merged Operon front are parsed and refitted (the refit costs
        # as much as a small restart); the rest are dominated already
        for text, _, _ in _operon_pareto(raw):
            if text in done:
                continue
            done[text] = None
            try:
                expr = _parse(text, names)
            except Exception:  # an unreadable member is skipped, never fatal
                continue
            expr, nmse = refit_constants(expr, names, X, y)
            if np.isfinite(nmse):
                done[text] = Candidate(expr, complexity(expr), nmse, check_units(expr, units))
        front = _unique(c for c in done.values() if c is not None)
        if front and min(c.nmse for c in front) < e.stop_nmse:
            break
    if not front:
        raise ModelError("the search found no finite formula; try more generations")
    front = pareto(front)
    best = select(front, len(y), e.select_penalty, e.select_floor)
    info = {
        "engine": "pyoperon",
        "restarts": runs,
        "generations": sum(r["generations"] for r in runs),
        "residual_evaluations": sum(r["residual_evaluations"] for r in runs),
        "time_capped": any(r["time_capped"] for r in runs),
    }
    return SearchResult(front, best, time.perf_counter() - t0, info)


def _unique(cands: Any) -> list[Candidate]:
    """One candidate per written formula (restarts often find the same one)."""
    seen: dict[str, Candidate] = {}
    for c in cands:
        seen.setdefault(str(c.expr), c)
    return list(seen.values())


def pareto(cands: list[Candidate]) -> list[Candidate]:
    """The non-dominated candidates in (complexity, NMSE), by complexity."""
    out: list[Candidate] = []
    for c in sorted(cands, key=lambda c: (c.complexity, c.nmse)):
        if not out or c.nmse < out[-1].nmse:
            out.append(c)
    return out


def select(front: list[Candidate], n: int, penalty: float = 1.0, floor: float = 1e-20) -> Candidate:
    """The candidate with the smallest ``n ln(max(NMSE, floor)) + penalty * complexity *
    ln(n)`` (a BIC with one parameter per node), among the unit-consistent ones when
    there are any."""
    pool = [c for c in front if c.units is None] or front
    log_n = float(np.log(max(n, 2)))
    return min(pool, key=lambda c: n * np.log(max(c.nmse, floor)) + penalty * c.complexity * log_n)
