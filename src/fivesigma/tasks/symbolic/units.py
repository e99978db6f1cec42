"""A small unit system for symbolic regression: each input declares its dimensions.

A unit string is a product of base units with integer powers, ``"GeV"``, ``"GeV^2"``,
``"GeV/mm"``, ``"pb*fb^-1"``; ``"1"``, ``""``, ``"dimensionless"`` and ``"rad"`` (angles)
are dimensionless.  :func:`check_units` walks a SymPy expression and returns the first
place where it adds (or compares) quantities of different dimensions, or takes a
transcendental function (exp, log, sin, cos, cosh, ...) of a dimensional argument.

Conventions, chosen for fitted formulas: a fitted constant may carry any unit, so a
term holding a number takes whatever dimension it is added to (``E**2 - 8281`` is
``GeV^2``, ``s**2 - 16562*s``  too, the number being in GeV²; ``log(0.02*p)`` is fine,
the number being in 1/GeV).  What is refused: adding terms without constants of
different dimensions (``E + theta``), a transcendental function of a dimensional
quantity (``log(p)``, ``exp(E)``) and a fractional power that leaves a fractional
dimension (``sqrt(E)``).  ``log(a) - log(b)`` is combined first (``log(a/b)``).

>>> import sympy as sp
>>> E, th = sp.symbols("E theta")
>>> units = {"E": parse_unit("GeV"), "theta": parse_unit("rad")}
>>> check_units(sp.sqrt(E**2 + 3) * sp.cos(th), units) is None
True
>>> check_units(sp.log(E), units)
'takes log of a quantity in GeV in log(E)'
>>> check_units(E + th, units)
'adds GeV and dimensionless in E + theta'
"""

from __future__ import annotations

import re
from typing import Any

from fivesigma.core import extras
from fivesigma.errors import ConfigError

__all__ = ["DIMENSIONLESS", "check_units", "format_unit", "parse_unit"]

#: a dimension: sorted tuple of (base unit, power), powers non-zero
Dim = tuple[tuple[str, int], ...]
DIMENSIONLESS: Dim = ()
_NONE = {"", "1", "dimensionless", "rad", "radian", "none"}
_TOKEN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\^(-?\d+))?$")


def parse_unit(text: str) -> Dim:
    """``"GeV^2/mm"`` -> ``(("GeV", 2), ("mm", -1))``; ConfigError for a bad string."""
    text = str(text).strip()
    if text.lower() in _NONE:
        return DIMENSIONLESS
    powers: dict[str, int] = {}
    sign = 1
    for part in re.split(r"(\*|/)", text.replace(" ", "")):
        if part in ("*", "/"):
            sign = 1 if part == "*" else -1
            continue
        m = _TOKEN.match(part)
        if m is None:
            raise ConfigError(
                f"unit {text!r}: cannot read {part!r}; write base units with integer "
                "powers joined by * and /, e.g. GeV, GeV^2, GeV/mm, rad, dimensionless"
            )
        name, power = m.group(1), int(m.group(2) or 1)
        if name.lower() in _NONE:
            continue
        powers[name] = powers.get(name, 0) + sign * power
    return tuple(sorted((k, v) for k, v in powers.items() if v))


def format_unit(dim: Dim) -> str:
    """The readable form of a dimension (``"dimensionless"`` for none)."""
    if not dim:
        return "dimensionless"
    return "*".join(f"{k}^{v}" if v != 1 else k for k, v in dim)


def _mul(a: Dim, b: Dim, power: int | float = 1) -> Dim | None:
    out = dict(a)
    for k, v in b:
        q = v * power
        if q != int(q):
            return None
        out[k] = out.get(k, 0) + int(q)
    return tuple(sorted((k, v) for k, v in out.items() if v))


class _Mismatch(Exception):
    pass


# "free" stands for a pure number: it takes whatever dimension it is added to
_FREE = "free"


def _dim(expr: Any, units: dict[str, Dim], sp: Any) -> Any:
    if expr.is_Number or expr.is_NumberSymbol:
        return _FREE
    if expr.is_Symbol:
        return units.get(expr.name, DIMENSIONLESS)
    if expr.is_Add:
        dims = [_dim(a, units, sp) for a in expr.args]
        fixed = {d for d in dims if d != _FREE}
        if len(fixed) > 1:
            names = " and ".join(sorted(format_unit(d) for d in fixed))
            raise _Mismatch(f"adds {names} in {expr}")
        return fixed.pop() if fixed else _FREE
    if expr.is_Mul:
        out: Dim = DIMENSIONLESS
        free = False
        for a in expr.args:
            d = _dim(a, units, sp)
            if d == _FREE:
                free = True  # the constant absorbs the product's unit
            else:
                out = _mul(out, d)  # type: ignore[assignment]
        return _FREE if free else out
    if expr.is_Pow:
        base, exp = expr.args
        db = _dim(base, units, sp)
        de = _dim(exp, units, sp)
        if de not in (_FREE, DIMENSIONLESS):
            raise _Mismatch(f"raises to a power with units {format_unit(de)} in {expr}")
        if db in (_FREE, DIMENSIONLESS):
            return db
        if not exp.is_Number:
            raise _Mismatch(f"raises {format_unit(db)} to a non-numeric power in {expr}")
        out = _mul(DIMENSIONLESS, db, float(exp))
        if out is None:
            raise _Mismatch(f"takes a fractional power of {format_unit(db)} in {expr}")
        return out
    if isinstance(expr, sp.Abs):
        return _dim(expr.args[0], units, sp)
    if isinstance(expr, sp.Function):
        for a in expr.args:
            d = _dim(a, units, sp)
            if d not in (_FREE, DIMENSIONLESS):
                raise _Mismatch(
                    f"takes {type(expr).__name__} of a quantity in {format_unit(d)} in {expr}"
                )
        return DIMENSIONLESS
    return _FREE if not expr.free_symbols else DIMENSIONLESS


def check_units(expr: Any, units: dict[str, Dim]) -> str | None:
    """None when ``expr`` is dimensionally consistent, else one line saying where not."""
    sp = extras.sympy()
    try:
        expr = sp.logcombine(expr, force=True)
        _dim(expr, units, sp)
    except _Mismatch as exc:
        return str(exc)
    return None
