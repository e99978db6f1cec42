"""Exact recovery: SymPy proves a found formula equal to the truth up to fitted constants.

The definition used (docs/symbolic.md):

1. the candidate's float constants are made exact rationals and the expression is
   simplified by SymPy (which merges constants: ``a*(b*x)`` -> ``(a*b)*x``);
2. its constants become free symbols and are re-fitted by least squares to the
   *noise-free* truth on fresh points (the "fitted constants");
3. constants are pinned one by one to 0, the nearest rational with denominator <= 1000,
   1 or -1 whenever the others can still re-fit the truth to 1e-8 (relative RMS): a
   redundant constant (one scale shared by a numerator and a denominator) is pinned to
   1, a true one to its exact value; the candidate counts as **exactly recovered** when
   SymPy simplifies ``candidate - truth`` to 0 or ``candidate / truth`` to a non-zero
   number.  ``numeric`` marks a candidate whose re-fit matches the truth to 1e-8 RMS but
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
from fivesigma.tasks.symbolic.engine import template

__all__ = ["exact_recovery"]


def _rationalise(expr: Any, sp: Any) -> Any:
    return expr.xreplace({f: sp.Rational(str(f)) for f in expr.atoms(sp.Float)})


def _fit(
    tmpl: Any,
    xs: list[Any],
    syms: list[Any],
    free: list[int],
    c: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    sp: Any,
) -> tuple[np.ndarray, float]:
    """Least squares over the constants ``free`` (the others held): (values, rel RMS)."""
    optimize = extras.scipy("optimize")
    fn = sp.lambdify([*xs, *syms], tmpl, "numpy")
    scale = float(np.sqrt(np.mean(y**2))) or 1.0

    def resid(v: np.ndarray) -> np.ndarray:
        full = c.copy()
        full[free] = v
        with np.errstate(all="ignore"):
            r = np.broadcast_to(np.asarray(fn(*X.T, *full), dtype=float), y.shape) - y
        return np.where(np.isfinite(r), r, 1e6 * scale) / scale

    v0 = c[free]
    if len(free):
        try:
            fit = optimize.least_squares(resid, v0, method="trf", xtol=1e-15, ftol=1e-15,
                                         gtol=1e-15, max_nfev=300 * len(free))  # fmt: skip
            if np.mean(resid(fit.x) ** 2) <= np.mean(resid(v0) ** 2):
                v0 = fit.x
        except (ValueError, FloatingPointError, OverflowError):
            pass
    out = c.copy()
    out[free] = v0
    return out, float(np.sqrt(np.mean(resid(v0) ** 2)))


def _pin(
    tmpl: Any,
    xs: list[Any],
    syms: list[Any],
    c: np.ndarray,
    X: np.ndarray,
    y: np.ndarray,
    sp: Any,
    tol: float,
) -> dict[Any, Any]:
    """Greedily hold each constant at 0, the nearest simple rational, 1 or -1 when the
    others can re-fit the truth to ``tol``: redundant constants (a scale shared by a
    numerator and a denominator) are pinned to 1, true ones to their exact value."""
    values: dict[Any, Any] = {}
    free = list(range(len(syms)))
    for i in range(len(syms)):
        frac = Fraction(float(c[i])).limit_denominator(1000)
        options = [sp.Integer(0), sp.Rational(frac.numerator, frac.denominator),
                   sp.Integer(1), sp.Integer(-1)]  # fmt: skip
        rest = [j for j in free if j != i]
        for value in dict.fromkeys(options):
            trial = c.copy()
            trial[i] = float(value)
            fitted, rel = _fit(tmpl, xs, syms, rest, trial, X, y, sp)
            if rel < tol:
                values[syms[i]], c, free = value, fitted, rest
                break
    for j in free:
        values[syms[j]] = sp.Float(c[j], 15)
    return values


def exact_recovery(
    candidate: Any,
    truth: Any,
    names: list[str],
    X_fresh: np.ndarray,
    y_fresh: np.ndarray,
    X_data: np.ndarray,
    max_shift: float = 0.1,
) -> dict[str, Any]:
    """``{"exact": bool, "numeric": bool, "expression": snapped expression, ...}``."""
    sp = extras.sympy()
    xs = [sp.Symbol(n, real=True) for n in names]
    canon = _rationalise(candidate, sp)
    # SymPy may give up on odd expressions: the raw one is kept then
    with contextlib.suppress(Exception):
        canon = sp.simplify(canon)
    tmpl, syms, c0 = template(canon)
    c, rel_rms = _fit(tmpl, xs, syms, list(range(len(syms))), c0, X_fresh, y_fresh, sp)
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
    pinned = _pin(tmpl, xs, syms, c, X_fresh, y_fresh, sp, 1e-8)
    snapped = sp.simplify(tmpl.xreplace(pinned))
    out["expression"] = snapped
    inputs = set(xs)
    try:
        diff = sp.simplify(snapped - truth)
        if diff == 0 or not (diff.free_symbols & inputs):
            out["exact"], out["proof"] = True, "difference is a constant"
        else:
            ratio = sp.simplify(snapped / truth)
            if not (ratio.free_symbols & inputs) and ratio != 0:
                out["exact"], out["proof"] = True, "ratio is a constant"
    except Exception:  # an unprovable form stays "numeric"
        pass
    return out
