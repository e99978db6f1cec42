"""The formula bundle (kind ``symbolic_formula``): a found formula, its inputs and units.

The formula is stored twice: as SymPy text and LaTeX (for people) and as a numpy-style
expression that the project's safe expression evaluator
(:class:`fivesigma.data.expressions.Expression`, never ``eval``) computes; loading a
bundle parses only the latter.  ``derived`` holds expressions that make inputs missing
from a file out of its branches (e.g. ``m4l`` from the leptons), evaluated in order.

>>> import sympy as sp, tempfile, pathlib, numpy as np
>>> p, m = sp.symbols("p m", real=True)
>>> path = save(sp.sqrt(p**2 + m**2), ["p", "m"], {"p": "GeV", "m": "GeV"},
...             pathlib.Path(tempfile.mkdtemp()) / "energy")
>>> f = load(path)
>>> f.expression, f.inputs
('sqrt(m**2 + p**2)', ['p', 'm'])
>>> f.predict({"p": np.array([3.0]), "m": np.array([4.0])}).tolist()
[5.0]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.core import extras
from fivesigma.core.bundle import Bundle, load_bundle, save_bundle
from fivesigma.errors import DataError, ExpressionError, ModelError

__all__ = ["KIND", "FormulaModel", "load", "numpy_text", "save"]

KIND = "symbolic_formula"

# SymPy function names -> the names the safe expression evaluator knows
_FUNCTIONS = {"asin": "arcsin", "acos": "arccos", "atan": "arctan", "asinh": "arcsinh",
              "acosh": "arccosh", "atanh": "arctanh", "Abs": "abs"}  # fmt: skip


def numpy_text(expr: Any) -> str:
    """``expr`` as text the safe expression evaluator reads (``abs``, ``arcsin``, ...)."""
    sp = extras.sympy()
    from sympy.printing.str import StrPrinter

    class _Printer(StrPrinter):
        def _print_Function(self, e: Any) -> str:
            name = type(e).__name__
            args = ", ".join(self._print(a) for a in e.args)
            return f"{_FUNCTIONS.get(name, name)}({args})"

        def _print_Abs(self, e: Any) -> str:
            return f"abs({self._print(e.args[0])})"

        def _print_Exp1(self, e: Any) -> str:
            return "exp(1)"

        def _print_Pi(self, e: Any) -> str:
            return "pi"

    expr = expr.xreplace({sp.E: sp.exp(1, evaluate=False)}) if expr.has(sp.E) else expr
    return _Printer({"full_prec": False}).doprint(expr)


@dataclass
class FormulaModel:
    """A loaded formula: ``predict(columns)`` evaluates it on numpy columns."""

    expression: str
    inputs: list[str]
    units: dict[str, str]
    sympy: str = ""
    latex: str = ""
    output: str = "formula"
    derived: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from fivesigma.data.expressions import Expression

        try:
            self._expr = Expression(self.expression, "formula")
        except ExpressionError as exc:
            raise ModelError(f"the formula bundle holds an unreadable formula: {exc}") from None
        extra = sorted(set(self._expr.names) - set(self.inputs))
        if extra:
            raise ModelError(f"the formula reads {', '.join(extra)}, not among its inputs")

    @property
    def features(self) -> list[str]:
        return list(self.inputs)

    def predict(self, columns: Mapping[str, Any]) -> np.ndarray:
        """The formula on ``columns`` (name -> 1D array), float64; NaN where undefined."""
        missing = [n for n in self.inputs if n not in columns]
        if missing:
            raise DataError(
                f"the formula needs the column(s) {', '.join(missing)}; given "
                f"{', '.join(map(str, columns)) or 'none'}"
            )
        cols = {n: np.asarray(columns[n], dtype=float) for n in self.inputs}
        n = len(next(iter(cols.values()))) if cols else 0
        with np.errstate(all="ignore"):
            value = self._expr.evaluate(cols, n_events=n)
        return np.broadcast_to(np.asarray(value, dtype=float), (n,)).copy()


def save(
    expr: Any,
    inputs: list[str],
    units: dict[str, str],
    path: Path,
    metadata: dict[str, Any] | None = None,
    derived: dict[str, str] | None = None,
    output: str = "formula",
) -> Path:
    """Write ``expr`` (SymPy, in the symbols ``inputs``) as a ``symbolic_formula`` bundle."""
    sp = extras.sympy()
    model = FormulaModel(
        numpy_text(expr),
        list(inputs),
        {n: units.get(n, "1") for n in inputs},
        sympy=str(expr),
        latex=sp.latex(expr),
        output=output,
        derived=dict(derived or {}),
    )
    bundle = Bundle(
        kind=KIND,
        features=list(inputs),
        params={"expression": model.expression, "output": output},
        preprocessing={"units": model.units, "derived": model.derived},
        metadata={"sympy": model.sympy, "latex": model.latex, **(metadata or {})},
    )
    return save_bundle(bundle, path)


def load(path: str | Path) -> FormulaModel:
    b = load_bundle(Path(path))
    if b.kind != KIND:
        raise ModelError(f"'{path}' is a {b.kind!r} bundle, not a {KIND!r} one")
    try:
        return FormulaModel(
            str(b.params["expression"]),
            [str(n) for n in b.features],
            {str(k): str(v) for k, v in b.preprocessing.get("units", {}).items()},
            sympy=str(b.metadata.get("sympy", "")),
            latex=str(b.metadata.get("latex", "")),
            output=str(b.params.get("output", "formula")),
            derived={str(k): str(v) for k, v in b.preprocessing.get("derived", {}).items()},
            metadata=dict(b.metadata),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"'{path}': the formula bundle is incomplete ({exc})") from None
