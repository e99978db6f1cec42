"""The benchmark: known physics formulas, sampled with noise, to be found again.

Each :class:`Formula` names its inputs (unit and sampling range), the truth as a SymPy
string and the operators the engine may use.  Constants are exact numbers (rationals),
so that SymPy can prove a recovered formula equal to the truth.  Noise is additive and
Gaussian with a standard deviation of ``noise`` times the RMS of the noise-free target.

>>> f = BUILTIN["lorentz_gamma"]
>>> X, y, clean = sample(f, 200, noise=0.0, seed=1)
>>> X.shape, bool(abs(y - clean).max() == 0)
((200, 1), True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fivesigma.core import extras
from fivesigma.errors import ConfigError, DataError
from fivesigma.tasks.symbolic.units import Dim, parse_unit

__all__ = ["BUILTIN", "Formula", "Input", "sample", "truth_expr"]


@dataclass(frozen=True)
class Input:
    """One input variable: name, unit, sampling range; ``integer`` draws whole numbers."""

    name: str
    unit: str = "1"
    low: float = 0.0
    high: float = 1.0
    integer: bool = False

    @property
    def dim(self) -> Dim:
        return parse_unit(self.unit)


@dataclass(frozen=True)
class Formula:
    """A benchmark formula: ``truth`` in the input names, operators for the engine."""

    name: str
    title: str
    truth: str
    inputs: tuple[Input, ...]
    operators: str = "add,sub,mul,div"
    note: str = ""
    where: str = ""  # a numpy-evaluable condition on the inputs (kept samples)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [i.name for i in self.inputs]

    @property
    def units(self) -> dict[str, Dim]:
        return {i.name: i.dim for i in self.inputs}


def _f(name, title, truth, inputs, operators, note="", where=""):
    return Formula(name, title, truth, tuple(Input(*i) for i in inputs), operators, note, where)


#: the ten formulas of the issue (constants exact, so SymPy can prove a recovery)
BUILTIN: dict[str, Formula] = {
    f.name: f
    for f in (
        _f(
            "invariant_mass",
            "invariant mass of two massless particles",
            "sqrt(2*pt1*pt2*(cosh(eta1 - eta2) - cos(phi1 - phi2)))",
            [
                ("pt1", "GeV", 20, 100),
                ("eta1", "1", -2.5, 2.5),
                ("phi1", "rad", -3.14, 3.14),
                ("pt2", "GeV", 20, 100),
                ("eta2", "1", -2.5, 2.5),
                ("phi2", "rad", -3.14, 3.14),
            ],
            "add,sub,mul,sqrt,cosh,cos",
        ),
        _f(
            "lorentz_gamma",
            "Lorentz factor",
            "1/sqrt(1 - beta**2)",
            [("beta", "1", 0.05, 0.95)],
            "add,sub,mul,div,sqrt",
        ),
        _f(
            "relativistic_energy",
            "relativistic energy",
            "sqrt(p**2 + m**2)",
            [("p", "GeV", 0.1, 10), ("m", "GeV", 0.1, 5)],
            "add,sub,mul,div,sqrt,square",
        ),
        _f(
            "rapidity",
            "rapidity",
            "log((E + pz)/(E - pz))/2",
            [("E", "GeV", 1, 50), ("pz", "GeV", -50, 50)],
            "add,sub,mul,div,log",
            where="abs(pz) < 0.95*E",
        ),
        _f(
            "breit_wigner",
            "Breit-Wigner line shape in s (M = 91 GeV, Γ = 5/2 GeV, peak 1)",
            "(207025/4)/((s - 8281)**2 + 207025/4)",
            [("s", "GeV^2", 6400, 10000)],
            "add,sub,mul,div,square",
        ),
        _f(
            "dsigma_dcos",
            "dσ/dcosθ ∝ 1 + cos²θ (normalised)",
            "3*(1 + cos(theta)**2)/8",
            [("theta", "rad", 0, 3.14159)],
            "add,sub,mul,div,cos,square",
        ),
        _f(
            "rutherford",
            "Rutherford cross section ∝ 1/(E² sin⁴(θ/2))",
            "1/(E**2*sin(theta/2)**4)",
            [("theta", "rad", 0.3, 3.0), ("E", "GeV", 1, 10)],
            "add,sub,mul,div,sin,square",
        ),
        _f(
            "bethe_bloch",
            "Bethe-Bloch-like 1/β² term ∝ z²/β²",
            "z**2/beta**2",
            [("beta", "1", 0.2, 0.95), ("z", "1", 1, 3, True)],
            "add,sub,mul,div,square",
        ),
        _f(
            "asimov",
            "Cowan Asimov significance",
            "sqrt(2*((s + b)*log(1 + s/b) - s))",
            [("s", "1", 1, 50), ("b", "1", 1, 100)],
            "add,sub,mul,div,log,sqrt",
        ),
        _f(
            "recurrence",
            "recurrence a(n+1) = a(n) + n + 1, a(0) = 1 (1, 2, 4, 7, 11, 16, ...)",
            "n*(n + 1)/2 + 1",
            [("n", "1", 0, 40, True)],
            "add,sub,mul,div,square",
            note="targets from the recurrence itself; the closed form is the truth",
        ),
    )
}


def truth_expr(formula: Formula) -> Any:
    """The truth as a SymPy expression in the input symbols."""
    sp = extras.sympy()
    local = {n: sp.Symbol(n, real=True) for n in formula.names}
    try:
        return sp.sympify(formula.truth, locals=local)
    except (sp.SympifyError, SyntaxError, TypeError) as exc:
        raise ConfigError(
            f"formula {formula.name!r}: cannot read {formula.truth!r} ({exc})"
        ) from None


def _recurrence(n: np.ndarray) -> np.ndarray:
    top = int(n.max())
    a = np.empty(top + 1)
    a[0] = 1.0
    for k in range(top):
        a[k + 1] = a[k] + k + 1
    return a[n.astype(int)]


def sample(
    formula: Formula, n: int, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X, y, y_clean)``: ``n`` points (DataError if an input is constant)."""
    sp = extras.sympy()
    rng = np.random.default_rng(seed)
    const = [i.name for i in formula.inputs if not i.high > i.low]
    if const:
        raise DataError(
            f"formula {formula.name!r}: input(s) {', '.join(const)} are constant "
            "(range low == high); a formula cannot be found from inputs that do not vary"
        )
    cols: dict[str, np.ndarray] = {}
    keep = np.ones(4 * n, dtype=bool)
    for inp in formula.inputs:
        if inp.integer:
            cols[inp.name] = rng.integers(int(inp.low), int(inp.high) + 1, 4 * n).astype(float)
        else:
            cols[inp.name] = rng.uniform(inp.low, inp.high, 4 * n)
    if formula.where:
        keep &= np.asarray(eval(formula.where, {"abs": np.abs, "np": np}, dict(cols)))
    if formula.name == "recurrence":
        keep[:] = True
    idx = np.flatnonzero(keep)[:n]
    X = np.column_stack([cols[k][idx] for k in formula.names])
    if formula.name == "recurrence":
        clean = _recurrence(X[:, 0])
    else:
        fn = sp.lambdify(
            [sp.Symbol(k, real=True) for k in formula.names], truth_expr(formula), "numpy"
        )
        with np.errstate(all="ignore"):
            clean = np.broadcast_to(np.asarray(fn(*X.T), dtype=float), (len(X),)).copy()
    if not np.all(np.isfinite(clean)):
        raise DataError(f"formula {formula.name!r} is not finite on its sampling ranges")
    if np.ptp(clean) == 0:
        raise DataError(f"formula {formula.name!r} is constant on its sampling ranges")
    y = clean + noise * np.sqrt(np.mean(clean**2)) * rng.standard_normal(len(clean))
    return X, y, clean
