"""Safe selection and derived-variable expressions.

Users write expressions in YAML configs, e.g.::

    selection: "(nlep >= 4) & (lep_pt[:, 0] > 20)"
    derived:
      m4l: "inv_mass(lep_pt, lep_eta, lep_phi, lep_mass)"
      ht: "sum(select(jet_pt, jet_pt > 30))"

The text is parsed with :func:`ast.parse` and checked against a whitelist of syntax;
it is then evaluated by walking the tree -- Python's ``eval``/``exec`` never see user
text.  Allowed:

* column names (numpy arrays, or awkward arrays with one list per event) and the
  constants ``pi``, ``inf``, ``nan``; numbers and ``True``/``False``;
* ``+ - * / // % **``, ``& | ^ ~`` (elementwise logic), ``== != < <= > >=`` (chained
  comparisons are ANDed), ``and``/``or``/``not`` (mapped to elementwise logic);
* subscripts with constant integers and slices: ``x[:, 0]``, ``x[:, :2]``, ``x[:, -1]``;
  ``x[:, k]`` gives NaN for events with fewer than ``k + 1`` objects;
* calls of the functions in :data:`FUNCTIONS` with positional arguments and constant
  keyword arguments (``nth(jet_pt, 0, fill=-1)``).

Division by zero gives inf/nan as in numpy.  Flat results are numpy arrays (bool for
conditions, float64 for numbers); per-object results stay awkward arrays.

>>> import numpy as np
>>> Expression("(a > 1) and not (b == 2)").evaluate({"a": np.array([0, 2, 3]),
...                                                 "b": np.array([2, 2, 1])}).tolist()
[False, False, True]
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import awkward as ak
import numpy as np

from fivesigma.data import jagged
from fivesigma.errors import ExpressionError, FivesigmaError, close_matches, shorten
from fivesigma.physics import kinematics

__all__ = ["CONSTANTS", "FUNCTIONS", "Expression", "ExpressionError"]

#: Named constants usable in expressions; they are not columns.
CONSTANTS: dict[str, float] = {"pi": float(np.pi), "inf": float(np.inf), "nan": float(np.nan)}


# ---------------------------------------------------------------------------------------
# functions available in expressions
# ---------------------------------------------------------------------------------------


def _is_ak(*args: Any) -> bool:
    return any(isinstance(a, ak.Array) for a in args)


def _is_listy(x: Any) -> bool:
    """True for per-event lists (jagged awkward or >=2-D numpy)."""
    if isinstance(x, ak.Array):
        return x.ndim >= 2
    return isinstance(x, np.ndarray) and x.ndim >= 2


def _flat_out(x: Any, fill: Any = np.nan) -> Any:
    """A 1-D awkward result becomes numpy (None -> ``fill``); anything else is unchanged."""
    if isinstance(x, ak.Array) and x.ndim == 1:
        return ak.to_numpy(ak.fill_none(x, fill), allow_missing=False)
    return x


def _where(cond: Any, a: Any, b: Any) -> Any:
    """``where(c, a, b)``: ``a`` where ``c`` is true, else ``b`` (elementwise)."""
    if _is_ak(cond, a, b):
        return ak.where(cond, a, b)
    return np.where(cond, a, b)


def _clip(x: Any, lo: Any, hi: Any) -> Any:
    """``clip(x, lo, hi)``: limit ``x`` to ``[lo, hi]`` elementwise."""
    return np.minimum(np.maximum(x, lo), hi)


def _select(x: Any, cond: Any) -> Any:
    """``select(x, cond)``: keep the objects of each event where ``cond`` is true.

    E.g. ``sum(select(jet_pt, jet_pt > 30))`` is H_T of jets above 30 GeV.
    """
    if not _is_ak(x, cond):
        x, cond = jagged.as_jagged(x), jagged.as_jagged(cond)
    return x[cond]


def _reduction(name: str, ak_fn: Callable, empty: Any) -> Callable[[Any], Any]:
    """A per-event reduction over objects (axis=1); ``empty`` fills events with no objects."""

    def reduce(x: Any) -> Any:
        if _is_listy(x):
            arr = x if isinstance(x, ak.Array) else jagged.as_jagged(x)
            with np.errstate(all="ignore"):
                out = ak_fn(arr, axis=1)
            if out.ndim == 1:
                out = _flat_out(out, empty)
                # ak.sum/any/all have a natural value for empty lists; min/max/mean do not
                if empty is not None and name in ("min", "max", "mean"):
                    out = np.where(jagged.counts(arr) > 0, out, empty)
            return out
        # a flat column is one object per event: reducing it returns it unchanged
        arr = np.asarray(_flat_out(x))
        if name == "any" or name == "all":
            return arr.astype(bool)
        return arr

    reduce.__name__ = name
    reduce.__doc__ = f"``{name}(x)``: {name} over the objects of each event ({empty} if none)."
    return reduce


def _count(x: Any) -> np.ndarray:
    """``count(x)``: number of objects per event (e.g. ``count(lep_pt)``)."""
    return jagged.counts(x)


def _nth(x: Any, n: int, fill: float = np.nan) -> np.ndarray:
    """``nth(x, n, fill=nan)``: the n-th object (from 0; -1 = last) per event, else ``fill``."""
    return jagged.nth(x, n, fill=fill)


def _mz1(pt: Any, eta: Any, phi: Any, mass: Any, pdgid: Any, charge: Any) -> np.ndarray:
    """``mz1(pt, eta, phi, mass, pdgid, charge)``: mass of the SFOS pair closest to mZ."""
    return kinematics.z_pairing(pt, eta, phi, mass, pdgid, charge)[0]


def _mz2(pt: Any, eta: Any, phi: Any, mass: Any, pdgid: Any, charge: Any) -> np.ndarray:
    """``mz2(...)``: mass of the highest-scalar-pT SFOS pair of the leptons left after Z1."""
    return kinematics.z_pairing(pt, eta, phi, mass, pdgid, charge)[1]


#: The whitelist of functions callable from expressions.  All accept numpy and awkward
#: arrays; reductions work over the objects of each event.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    # elementwise math (numpy ufuncs dispatch to awkward themselves)
    "abs": np.absolute,
    "sqrt": np.sqrt,
    "exp": np.exp,
    "log": np.log,
    "log10": np.log10,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "arcsin": np.arcsin,
    "arccos": np.arccos,
    "arctan": np.arctan,
    "arctan2": np.arctan2,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "minimum": np.minimum,
    "maximum": np.maximum,
    "where": _where,
    "isnan": np.isnan,
    "isfinite": np.isfinite,
    "clip": _clip,
    # per-event reductions over objects
    "sum": _reduction("sum", ak.sum, 0.0),
    "min": _reduction("min", ak.min, np.nan),
    "max": _reduction("max", ak.max, np.nan),
    "mean": _reduction("mean", ak.mean, np.nan),
    "any": _reduction("any", ak.any, False),
    "all": _reduction("all", ak.all, True),
    "count": _count,
    "nth": _nth,
    "select": _select,
    # kinematics (GeV, radians)
    "inv_mass": kinematics.invariant_mass,
    "pt_sum": kinematics.pt_of_sum,
    "delta_phi": kinematics.delta_phi,
    "delta_r": kinematics.delta_r,
    "mz1": _mz1,
    "mz2": _mz2,
}

_REDUCTIONS = {"sum", "min", "max", "mean", "any", "all", "count"}

# ---------------------------------------------------------------------------------------
# operators
# ---------------------------------------------------------------------------------------

# numpy ufuncs everywhere: they dispatch to awkward, never raise on division by zero,
# and turn Python-int constants into fixed-size numbers (no 9**9**9 big-int blow-up).
_BINOPS: dict[type, tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Add: ("+", np.add),
    ast.Sub: ("-", np.subtract),
    ast.Mult: ("*", np.multiply),
    ast.Div: ("/", np.true_divide),
    ast.FloorDiv: ("//", np.floor_divide),
    ast.Mod: ("%", np.mod),
    ast.Pow: ("**", np.float_power),
    ast.BitAnd: ("&", np.bitwise_and),
    ast.BitOr: ("|", np.bitwise_or),
    ast.BitXor: ("^", np.bitwise_xor),
}
_UNARYOPS: dict[type, tuple[str, Callable[[Any], Any]]] = {
    ast.USub: ("-", np.negative),
    ast.UAdd: ("+", np.positive),
    ast.Invert: ("~", np.invert),
    ast.Not: ("not", np.logical_not),
}
_CMPOPS: dict[type, tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
}

# names of rejected constructs, for messages that say what was written
_CONSTRUCT_NAMES: dict[type, str] = {
    ast.Attribute: "attribute access",
    ast.Lambda: "lambda",
    ast.ListComp: "list comprehension",
    ast.SetComp: "set comprehension",
    ast.DictComp: "dict comprehension",
    ast.GeneratorExp: "generator expression",
    ast.List: "list literal",
    ast.Tuple: "tuple",
    ast.Set: "set literal",
    ast.Dict: "dict literal",
    ast.Starred: "star-unpacking '*'",
    ast.NamedExpr: "assignment ':='",
    ast.IfExp: "conditional 'a if c else b' (use where(c, a, b))",
    ast.JoinedStr: "f-string",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Slice: "slice outside a subscript",
}

_ALLOWED = (
    "allowed: column names, numbers, + - * / // % ** & | ^ ~, comparisons, and/or/not, "
    "x[:, i] subscripts and the functions listed in fivesigma.data.expressions.FUNCTIONS"
)


def _one_line(exc: BaseException) -> str:
    """First non-empty line of an exception message (awkward errors span many lines)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


class _Reject(Exception):
    """Internal: a validation failure (message without the expression prefix)."""


class Expression:
    """A validated selection / derived-variable expression.

    Parameters
    ----------
    text
        The expression as written by the user.
    what
        How errors name it, e.g. ``"selection"`` or ``"derived 'm4l'"``.

    Attributes
    ----------
    text : str
        The expression text.
    names : frozenset[str]
        Column names it reads (function names and constants excluded); the data layer
        reads only these branches.

    Raises
    ------
    ExpressionError
        At construction, if the text is not valid or uses anything outside the whitelist.
    """

    def __init__(self, text: str, what: str = "expression") -> None:
        self.what = what
        if not isinstance(text, str):
            raise ExpressionError(f"{what}: expected an expression string, got {text!r}")
        self.text = text
        stripped = text.strip()
        if not stripped:
            raise self._error("empty expression; " + _ALLOWED)
        try:
            tree = ast.parse(stripped, mode="eval")
        except SyntaxError as exc:
            where = f" at column {exc.offset}" if exc.offset else ""
            raise self._error(f"invalid syntax{where}: {exc.msg}") from None
        except (RecursionError, MemoryError, ValueError) as exc:
            raise self._error(f"cannot parse ({type(exc).__name__}); simplify it") from None
        self._source = stripped.encode("utf-8")  # ast offsets are in UTF-8 bytes
        self._line_starts = [0]
        for k, byte in enumerate(self._source):
            if byte == ord("\n"):
                self._line_starts.append(k + 1)
        names: set[str] = set()
        try:
            self._check(tree, names)
        except _Reject as exc:
            raise self._error(str(exc)) from None
        except RecursionError:
            raise self._error("too deeply nested; simplify it") from None
        self._tree = tree
        self.names: frozenset[str] = frozenset(names)

    def __repr__(self) -> str:
        return f"Expression({self.text!r}, what={self.what!r})"

    # ---------------------------------------------------------------- errors
    def _error(self, message: str) -> ExpressionError:
        # keep the one-line message readable even for a pathological expression
        shown = self.text if len(self.text) <= 200 else self.text[:197] + "..."
        return ExpressionError(f"{self.what} {shown!r}: {message}")

    def _unknown_column(self, name: str, available: Iterable[str]) -> ExpressionError:
        return self._error(f"unknown column {shorten(name)!r}; {close_matches(name, available)}")

    # ------------------------------------------------------------ validation
    def _segment(self, node: ast.AST) -> str:
        seg = ast.get_source_segment(self._source.decode("utf-8"), node)
        return seg if seg is not None else type(node).__name__

    def _parenthesised(self, node: ast.AST) -> bool:
        """Whether ``node`` is written inside its own parentheses in the source."""
        start = self._line_starts[node.lineno - 1] + node.col_offset
        end = self._line_starts[node.end_lineno - 1] + node.end_col_offset
        before = self._source[:start].rstrip()
        after = self._source[end:].lstrip()
        return before.endswith(b"(") and after.startswith(b")")

    def _check(self, node: ast.AST, names: set[str]) -> None:
        """Walk the tree, reject anything outside the whitelist, collect column names."""
        if isinstance(node, ast.Expression):
            self._check(node.body, names)
        elif isinstance(node, ast.Name):
            self._check_name(node.id)
            if node.id not in CONSTANTS:
                names.add(node.id)
        elif isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, str):
                raise _Reject(f"string constant {value!r} is not allowed; {_ALLOWED}")
            if not isinstance(value, bool | int | float):
                raise _Reject(f"constant {value!r} is not allowed; only int, float, True/False")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINOPS:
                raise _Reject(f"operator in {self._segment(node)!r} is not allowed; {_ALLOWED}")
            self._check(node.left, names)
            self._check(node.right, names)
        elif isinstance(node, ast.UnaryOp):
            self._check(node.operand, names)
        elif isinstance(node, ast.BoolOp):
            for value in node.values:
                self._check(value, names)
        elif isinstance(node, ast.Compare):
            for op in node.ops:
                if type(op) not in _CMPOPS:
                    sym = {ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}
                    raise _Reject(
                        f"comparison '{sym.get(type(op), type(op).__name__)}' is not allowed; "
                        "use == != < <= > >="
                    )
            for operand in [node.left, *node.comparators]:
                # `a > 1 & b < 2` parses as `a > (1 & b) < 2`: catch this classic slip
                if (
                    isinstance(operand, ast.BinOp)
                    and isinstance(operand.op, ast.BitAnd | ast.BitOr | ast.BitXor)
                    and not self._parenthesised(operand)
                ):
                    raise _Reject(
                        f"'{self._segment(node)}' mixes & | ^ with comparisons without "
                        "parentheses (& binds tighter than >); write '(a > 1) & (b < 2)' "
                        "or 'a > 1 and b < 2'"
                    )
                self._check(operand, names)
        elif isinstance(node, ast.Call):
            self._check_call(node, names)
        elif isinstance(node, ast.Subscript):
            self._index(node.slice)  # validates
            self._check(node.value, names)
        else:
            construct = _CONSTRUCT_NAMES.get(type(node), type(node).__name__)
            if isinstance(node, ast.Attribute):
                construct = f"attribute access '.{node.attr}'"
            raise _Reject(f"{construct} is not allowed; {_ALLOWED}")

    @staticmethod
    def _check_name(name: str) -> None:
        if name.startswith("__"):
            raise _Reject(f"name {name!r} is not allowed (no dunder names); use column names")

    def _check_call(self, node: ast.Call, names: set[str]) -> None:
        if not isinstance(node.func, ast.Name):
            what = (
                f"method call '.{node.func.attr}(...)'"
                if isinstance(node.func, ast.Attribute)
                else f"calling {self._segment(node.func)!r}"
            )
            raise _Reject(f"{what} is not allowed; call functions by name: {_function_list()}")
        fname = node.func.id
        if fname not in FUNCTIONS:
            raise _Reject(
                f"unknown function {fname!r}; {close_matches(fname, FUNCTIONS)} "
                "(see fivesigma.data.expressions.FUNCTIONS)"
            )
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise _Reject(f"star-argument '*' in {fname}() is not allowed; pass arguments")
            self._check(arg, names)
        for kw in node.keywords:
            if kw.arg is None:
                raise _Reject(
                    f"keyword splat '**' in {fname}() is not allowed; write name=constant"
                )
            self._constant(kw.value, f"keyword argument {kw.arg}= of {fname}()")
        if fname in _REDUCTIONS and (len(node.args) != 1 or node.keywords):
            hint = ""
            if fname in ("min", "max"):
                hint = f"; use {fname}imum(a, b) for the elementwise {fname}imum"
            raise _Reject(
                f"{fname}() takes exactly one argument, the per-event list to reduce{hint}"
            )
        _check_arity(fname, len(node.args), [kw.arg for kw in node.keywords if kw.arg])

    def _constant(self, node: ast.AST, where: str) -> Any:
        """Value of a constant keyword argument: number, bool, None, -number, pi/inf/nan."""
        if isinstance(node, ast.Constant) and (
            node.value is None or isinstance(node.value, bool | int | float)
        ):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = self._constant(node.operand, where)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _Reject(f"{where} must be a number, got {self._segment(node)!r}")
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Name) and node.id in CONSTANTS:
            return CONSTANTS[node.id]
        raise _Reject(f"{where} must be a constant number, got {self._segment(node)!r}")

    def _index(self, node: ast.AST) -> Any:
        """Python index object for a constant subscript (int, slice, tuple of those)."""
        if isinstance(node, ast.Tuple):
            return tuple(self._index_item(elt) for elt in node.elts)
        return self._index_item(node)

    def _index_item(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Slice):
            parts = []
            for part in (node.lower, node.upper, node.step):
                parts.append(None if part is None else self._int_constant(part))
            return slice(*parts)
        return self._int_constant(node)

    def _int_constant(self, node: ast.AST) -> int:
        value = None
        with contextlib.suppress(_Reject):
            value = self._constant(node, "subscript")
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Reject(
                f"subscript {self._segment(node)!r} is not allowed; use constant integers and "
                "slices such as x[:, 0] or x[:, :2] (select(x, cond) filters objects)"
            )
        return value

    # -------------------------------------------------------------- checking
    def check_names(self, available: Iterable[str]) -> None:
        """Raise :class:`ExpressionError` if a column it reads is not in ``available``.

        Called by the data layer with the file's branches plus derived names, before
        any data is read.
        """
        available = set(available)
        for name in sorted(self.names):
            if name not in available:
                raise self._unknown_column(name, available)

    # ------------------------------------------------------------ evaluation
    def evaluate(self, columns: Mapping[str, Any], n_events: int | None = None) -> Any:
        """Evaluate on a chunk of events.

        Parameters
        ----------
        columns
            ``{name: array}`` with numpy (flat) or awkward (jagged) arrays, one entry
            per event; must contain every name in :attr:`names`.
        n_events
            Number of events; needed only when the expression reads no column (``"1"``)
            and ``columns`` is empty.

        Returns
        -------
        numpy.ndarray or awkward.Array
            One entry per event: numpy bool for conditions, float64 numpy for flat
            numbers, awkward for per-object results.
        """
        self.check_names(columns.keys())
        if n_events is None and (self.names or columns):
            # any column tells the chunk size; prefer one the expression reads
            n_events = len(columns[min(self.names)] if self.names else next(iter(columns.values())))
        try:
            with np.errstate(all="ignore"):
                result = self._eval(self._tree.body, columns)
        except ExpressionError:
            raise
        except FivesigmaError as exc:
            raise self._error(_one_line(exc)) from exc
        except (TypeError, ValueError, IndexError, ArithmeticError) as exc:
            # e.g. `~` on floats, nth(x, col), lists of unequal length; one line only
            raise self._error(f"cannot evaluate: {_one_line(exc)}") from exc
        return self._finish(result, n_events)

    def _finish(self, result: Any, n_events: int | None) -> Any:
        if isinstance(result, ak.Array):
            if result.ndim == 1:
                is_bool = str(ak.type(result).content).endswith("bool")
                result = _flat_out(result, False if is_bool else np.nan)
            else:
                self._check_length(len(result), n_events)
                return result
        result = np.asarray(result)
        if result.ndim == 0:
            if n_events is None:
                raise self._error(
                    "reads no column, so the number of events is unknown; pass n_events"
                )
            result = np.full(n_events, result[()])
        self._check_length(len(result), n_events)
        if result.dtype == bool:
            return result
        if result.dtype.kind in "iuf":
            return result.astype(np.float64, copy=False)
        raise self._error(f"result has unsupported type {result.dtype}; expected numbers")

    def _check_length(self, length: int, n_events: int | None) -> None:
        if n_events is not None and length != n_events:
            raise self._error(
                f"result has {length} entries but there are {n_events} events; "
                "index objects per event with x[:, i], not x[i]"
            )

    def _bitwise_error(self, sym: str, node: ast.AST, exc: Exception) -> ExpressionError:
        if sym in ("&", "|", "^", "~"):
            return self._error(
                f"'{sym}' in '{self._segment(node)}' needs booleans (comparisons) or integers, "
                "not floats; compare first, e.g. '(x > 0) & (y > 0)'"
            )
        return self._error(f"cannot evaluate '{self._segment(node)}': {_one_line(exc)}")

    def _eval(self, node: ast.AST, columns: Mapping[str, Any]) -> Any:
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            value = columns[node.id]
            if not isinstance(value, ak.Array | np.ndarray):
                value = np.asarray(value)
            return value
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.BinOp):
            sym, fn = _BINOPS[type(node.op)]
            left, right = self._eval(node.left, columns), self._eval(node.right, columns)
            try:
                return fn(left, right)
            except TypeError as exc:
                raise self._bitwise_error(sym, node, exc) from exc
        if isinstance(node, ast.UnaryOp):
            sym, fn = _UNARYOPS[type(node.op)]
            operand = self._eval(node.operand, columns)
            try:
                return fn(operand)
            except TypeError as exc:
                raise self._bitwise_error(sym, node, exc) from exc
        if isinstance(node, ast.BoolOp):
            fn = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            result = self._eval(node.values[0], columns)
            for value in node.values[1:]:
                result = fn(result, self._eval(value, columns))
            return result
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, columns)
            result = None
            for op, comp in zip(node.ops, node.comparators, strict=True):
                right = self._eval(comp, columns)
                _, fn = _CMPOPS[type(op)]
                this = fn(left, right)
                result = this if result is None else np.logical_and(result, this)
                left = right
            return result
        if isinstance(node, ast.Call):
            fname = node.func.id  # type: ignore[attr-defined]  # validated: a Name
            args = [self._eval(arg, columns) for arg in node.args]
            kwargs = {kw.arg: self._constant(kw.value, kw.arg) for kw in node.keywords}
            try:
                return FUNCTIONS[fname](*args, **kwargs)
            except (FivesigmaError, TypeError) as exc:
                message = _one_line(exc)
                if not message.startswith(f"{fname}()"):
                    message = f"{fname}(): {message}"
                raise self._error(message) from exc
        if isinstance(node, ast.Subscript):
            return _subscript(self._eval(node.value, columns), self._index(node.slice))
        raise self._error(f"{type(node).__name__} cannot be evaluated")  # validated away


def _subscript(value: Any, index: Any) -> Any:
    """``value[index]``, safe for ``x[:, k]`` on jagged data (NaN where too short)."""
    if (
        isinstance(value, ak.Array)
        and isinstance(index, tuple)
        and len(index) == 2
        and index[0] == slice(None)
        and isinstance(index[1], int)
        and value.ndim == 2
    ):
        return jagged.nth(value, index[1])
    if not isinstance(value, ak.Array | np.ndarray):
        raise TypeError(f"cannot subscript a constant ({value!r})")
    return value[index]


def _function_list() -> str:
    return ", ".join(sorted(FUNCTIONS))


def _check_arity(fname: str, n_args: int, keywords: list[str]) -> None:
    """Reject wrong argument counts / unknown keywords before any data is read."""
    fn = FUNCTIONS[fname]
    if isinstance(fn, np.ufunc):
        if n_args != fn.nin or keywords:
            plural = "s" if fn.nin != 1 else ""
            raise _Reject(f"{fname}() takes {fn.nin} positional argument{plural}, got {n_args}")
        return
    try:
        inspect.signature(fn).bind(*([None] * n_args), **dict.fromkeys(keywords))
    except TypeError as exc:
        params = ", ".join(
            p.name if p.default is p.empty else f"{p.name}={p.default!r}"
            for p in inspect.signature(fn).parameters.values()
        )
        raise _Reject(f"{fname}(): {exc}; signature: {fname}({params})") from None
