"""Exact recovery: SymPy proves a found formula equal to the truth up to fitted constants.

The definition used (docs/symbolic.md):

1. the candidate is taken in two written forms: as the search gave it, and with its
   float constants made exact rationals and the expression simplified by SymPy (which
   merges constants: ``a*(b*x)`` -> ``(a*b)*x``); each form is tried in turn;
2. its constants become free symbols and are re-fitted by least squares to the
   *noise-free* truth on fresh points (the "fitted constants");
3. constants are pinned to 0, then along redundant scales to +-1, then to 1, -1 or the
   nearest rational with denominator <= 1000, whenever the others can still re-fit the
   truth to 1e-8 (relative RMS): a redundant constant (one scale shared by a numerator
   and a denominator) is pinned to 1, a true one to its exact value; the candidate counts
   as **exactly recovered** when SymPy simplifies ``candidate - truth`` or ``candidate /
   truth`` to a number (free of the inputs), directly or after rewriting roots and logs
   as for positive arguments (``sqrt(1/x) = 1/sqrt(x)``, ``log(a*b) = log(a) + log(b)``;
   the numeric agreement on the fresh points rules out a sign or branch slip); constants
   still left as fitted floats are solved exactly from the truth at a few exact points
   when the equations are linear in them (a rational function's coefficients), and the
   solved formula must simplify to the truth.  ``numeric`` marks a candidate whose re-fit matches the truth to 1e-8 RMS but
   that SymPy could not prove.

The re-fit is allowed to move the candidate's prediction on the data by at most
``max_shift`` (relative RMS): the structure found must already fit.
"""

from __future__ import annotations

import contextlib
from fractions import Fraction
from typing import Any

import numpy as np

from fivesigma.core import extras
from fivesigma.tasks.symbolic.engine import least_squares, template

__all__ = ["exact_recovery"]


def _rationalise(expr: Any, sp: Any) -> Any:
    return expr.xreplace({f: sp.Rational(str(f)) for f in expr.atoms(sp.Float)})


class _Fit:
    """Least squares of a template's constants on noise-free points, relative RMS."""

    def __init__(self, tmpl: Any, xs: list[Any], syms: list[Any], X: np.ndarray,
                 y: np.ndarray, sp: Any) -> None:  # fmt: skip
        self.fn = sp.lambdify([*xs, *syms], tmpl, "numpy")
        self.X, self.y = X, y
        self.scale = float(np.sqrt(np.mean(y**2))) or 1.0

    def resid(self, c: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            r = np.broadcast_to(np.asarray(self.fn(*self.X.T, *c), dtype=float), self.y.shape)
            r = (r - self.y) / self.scale
        return np.where(np.isfinite(r), r, 1e6)

    def rel(self, c: np.ndarray) -> float:
        return float(np.sqrt(np.mean(self.resid(c) ** 2)))

    def __call__(self, c: np.ndarray, free: list[int]) -> tuple[np.ndarray, float]:
        """Fit the constants ``free`` (the others held): (all values, relative RMS)."""
        c = np.array(c, dtype=float)
        best = self.rel(c)
        if not free:
            return c, best

        def resid(v: np.ndarray) -> np.ndarray:
            full = c.copy()
            full[free] = v
            return self.resid(full)

        try:
            fit = least_squares(resid, c[free], method="trf", x_scale="jac",
                                         xtol=1e-15, ftol=1e-15, gtol=1e-15,
                                         max_nfev=300 * len(free))  # fmt: skip
            trial = c.copy()
            trial[free] = fit.x
            rel = self.rel(trial)
            if rel <= best:
                c, best = trial, rel
        except (ValueError, FloatingPointError, OverflowError):
            pass
        return c, best

    def _log_jacobian(self, c: np.ndarray, idx: list[int]) -> np.ndarray | None:
        """d(residual)/d(log|c_j|) for ``j`` in ``idx``: by complex step (no cancellation,
        which the near-cancelling polynomials of a fitted formula need), else by central
        differences."""
        cols = []
        with np.errstate(all="ignore"):
            for j in idx:
                z = c.astype(complex)
                z[j] *= 1 + 1e-20j
                v = np.broadcast_to(np.asarray(self.fn(*self.X.T, *z)), self.y.shape)
                cols.append(np.imag(v) / 1e-20 / self.scale)
        J = np.column_stack(cols)
        if np.all(np.isfinite(J)) and np.any(J):
            return J
        h, cols = 1e-5, []
        for j in idx:
            up, down = c.copy(), c.copy()
            up[j] *= np.exp(h)
            down[j] *= np.exp(-h)
            cols.append((self.resid(up) - self.resid(down)) / (2 * h))
        J = np.column_stack(cols)
        return J if np.all(np.isfinite(J)) else None

    def scale_symmetry(self, c: np.ndarray, free: list[int]) -> np.ndarray | None:
        """A direction ``d`` (over all constants, zero outside ``free``) along which
        ``c * exp(t * d)`` leaves the prediction unchanged (a scale shared by a numerator
        and a denominator, say), from the null space of the Jacobian in log|c|; None
        when there is none."""
        idx = [j for j in free if c[j] != 0]
        if len(idx) < 2:
            return None
        J = self._log_jacobian(c, idx)
        if J is None:
            return None
        _, sv, vt = np.linalg.svd(J, full_matrices=False)
        if sv[0] == 0 or sv[-1] > 1e-6 * sv[0]:
            return None
        d = np.zeros(len(c))
        d[idx] = vt[-1]
        return d


def _pin(fit: _Fit, syms: list[Any], c: np.ndarray, sp: Any, tol: float) -> dict[Any, Any]:
    """Pin constants to exact values while the others can still re-fit the truth to ``tol``.

    Each constant is tried at 0 first (terms the truth does not need); then every
    redundant scale (a direction in log|c| that leaves the prediction unchanged, such as
    a factor shared by a numerator and a denominator) is used up by moving along it until
    one of its constants is +-1; each remaining constant is then tried at 1, -1 and the
    nearest rational with denominator <= 1000, in that order."""
    values: dict[Any, Any] = {}
    free = list(range(len(syms)))

    def attempt(i: int, value: Any, start: np.ndarray) -> bool:
        nonlocal c, free
        rest = [j for j in free if j != i]
        trial = start.copy()
        trial[i] = float(value)
        fitted, rel = fit(trial, rest)
        if rel < tol:
            values[syms[i]], c, free = value, fitted, rest
        return rel < tol

    for i in list(free):
        attempt(i, sp.Integer(0), c)
    while (d := fit.scale_symmetry(c, free)) is not None:
        i = int(np.argmax(np.abs(d)))
        moved = c * np.exp(np.log(1.0 / abs(c[i])) / d[i] * d)
        if not attempt(i, sp.Integer(int(np.sign(c[i]))), moved):
            break
    for i in list(free):
        frac = Fraction(float(c[i])).limit_denominator(1000)
        # 1 before the nearest rational: a redundant scale would fit at any value
        for value in dict.fromkeys(
            [sp.Integer(1), sp.Integer(-1), sp.Rational(frac.numerator, frac.denominator)]
        ):
            if attempt(i, value, c):
                break
    for j in free:
        values[syms[j]] = sp.Float(c[j], 15)
    return values


def _forced(expr: Any, sp: Any) -> Any:
    """``expr`` rewritten as if every power base and log argument were positive."""
    expr = sp.powdenest(sp.powsimp(expr, force=True), force=True)
    return sp.expand_log(expr, force=True)


def _prove(snapped: Any, truth: Any, inputs: set[Any], sp: Any) -> str | None:
    """How SymPy shows ``snapped`` equal to ``truth`` up to a constant, or None."""
    for label, rewrite in (
        ("", lambda e: e),
        (" (for positive arguments of roots and logs)", lambda e: _forced(e, sp)),
    ):
        try:
            diff = sp.simplify(rewrite(snapped - truth))
            if diff == 0 or not (diff.free_symbols & inputs):
                return "difference is a constant" + label
            ratio = sp.simplify(rewrite(snapped / truth))
            if ratio != 0 and not (ratio.free_symbols & inputs):
                return "ratio is a constant" + label
        except Exception:  # SymPy gives up on odd forms: try the next rewrite
            continue
    return None


def _attempt(
    form: Any,
    candidate: Any,
    truth: Any,
    xs: list[Any],
    X_fresh: np.ndarray,
    y_fresh: np.ndarray,
    X_data: np.ndarray,
    max_shift: float,
    sp: Any,
) -> dict[str, Any]:
    """Re-fit, pin and prove one written form of the candidate."""
    tmpl, syms, c0 = template(form)
    fit = _Fit(tmpl, xs, syms, X_fresh, y_fresh, sp)
    c, rel_rms = fit(c0, list(range(len(syms))))
    refit = tmpl.xreplace({s: sp.Float(v, 15) for s, v in zip(syms, c, strict=True)})
    rms_truth = float(np.sqrt(np.mean(y_fresh**2))) or 1.0
    with np.errstate(all="ignore"):
        before = sp.lambdify(xs, candidate, "numpy")(*X_data.T)
        after = sp.lambdify(xs, refit, "numpy")(*X_data.T)
    shift = float(np.sqrt(np.mean((np.asarray(after) - np.asarray(before)) ** 2))) / rms_truth
    out: dict[str, Any] = {
        "exact": False,
        "numeric": bool(rel_rms < 1e-8 and shift <= max_shift),
        "refit_rel_rms": rel_rms,
        "refit_shift": shift,
        "expression": refit,
    }
    if not out["numeric"]:
        return out
    pinned = _pin(fit, syms, c, sp, 1e-8)
    snapped = tmpl.xreplace(pinned)
    with contextlib.suppress(Exception):
        snapped = sp.simplify(snapped)
    out["expression"] = snapped
    proof = _prove(snapped, truth, set(xs), sp)
    if proof is None:
        solved = _solve_linear(tmpl, pinned, syms, truth, xs, X_fresh, sp)
        if solved is not None:
            out["expression"], proof = solved, "constants solved exactly (linear), then equal"
    if proof is not None:
        out["exact"], out["proof"] = True, proof
    return out


def _solve_linear(
    tmpl: Any,
    pinned: dict[Any, Any],
    syms: list[Any],
    truth: Any,
    xs: list[Any],
    X: np.ndarray,
    sp: Any,
    max_free: int = 6,
) -> Any:
    """The constants left as fitted floats, solved exactly when ``template = truth`` at a
    few exact points is linear in them (a rational function's coefficients, say); the
    solved formula if SymPy then simplifies it minus the truth to zero, else None."""
    free = [sym for sym in syms if isinstance(pinned[sym], sp.Float)]
    if not free or len(free) > max_free or len(X) < len(free) + 2:
        return None
    form = tmpl.xreplace({k: v for k, v in pinned.items() if k not in free})
    try:
        eqs = []
        for row in X[: len(free) + 2]:
            at = {x: sp.Rational(str(round(float(v), 4))) for x, v in zip(xs, row, strict=True)}
            num = sp.numer(sp.together(form.xreplace(at) - truth.xreplace(at)))
            if sp.Poly(num, *free).total_degree() > 1:
                return None
            eqs.append(num)
        solution = sp.linsolve(eqs, free)
        if len(solution) != 1:
            return None
        values = next(iter(solution))
        if any(v.free_symbols for v in values):
            return None
        solved = form.xreplace(dict(zip(free, values, strict=True)))
        if sp.simplify(solved - truth) == 0:
            return sp.simplify(solved)
    except Exception:  # not polynomial in the constants, or SymPy gives up
        return None
    return None


def exact_recovery(
    candidate: Any,
    truth: Any,
    names: list[str],
    X_fresh: np.ndarray,
    y_fresh: np.ndarray,
    X_data: np.ndarray,
    max_shift: float = 0.1,
) -> dict[str, Any]:
    """``{"exact": bool, "numeric": bool, "expression": snapped expression, ...}``.

    Two written forms of the candidate are tried: as the search gave it (constants of
    order one, well conditioned) and rationalised and simplified by SymPy (redundant
    constants merged); it is exact when either is proven."""
    sp = extras.sympy()
    xs = [sp.Symbol(n, real=True) for n in names]
    forms = [candidate]
    # SymPy may give up on odd expressions: the search's form is kept then
    with contextlib.suppress(Exception):
        canon = sp.simplify(_rationalise(candidate, sp))
        if canon != candidate:
            forms.append(canon)
    best: dict[str, Any] | None = None
    for form in forms:
        out = _attempt(form, candidate, truth, xs, X_fresh, y_fresh, X_data, max_shift, sp)
        if out["exact"]:
            return out
        if best is None or (out["numeric"] and not best["numeric"]):
            best = out
    assert best is not None
    return best
