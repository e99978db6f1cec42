"""Safe selection and derived-variable expressions.

Users write expressions in YAML configs, e.g.::

    selection: "(nlep >= 4) & (lep_pt[:, 0] > 20)"
    derived:
      m4l: "inv_mass(lep_pt, lep_eta, lep_phi, lep_mass)"
      ht: "sum(select(jet_pt, jet_pt > 30))"
      leptons: "sort(concatenate(p4(Muon_pt, Muon_eta, Muon_phi, Muon_mass),
                                 p4(Electron_pt, Electron_eta, Electron_phi, Electron_mass)))"
      m4l_vec: "sum(leading(leptons, 4)).mass"

The text is parsed with :func:`ast.parse` and checked against a whitelist of syntax;
it is then evaluated by walking the tree -- Python's ``eval``/``exec`` never see user
text.  Allowed:

* column names (numpy arrays, or awkward arrays with one list per event) and the
  constants ``pi``, ``inf``, ``nan``; numbers and ``True``/``False``;
* ``+ - * / // % **``, ``& | ^ ~`` (elementwise logic), ``== != < <= > >=`` (chained
  comparisons are ANDed), ``and``/``or``/``not`` (mapped to elementwise logic);
* text constants only in ``==``/``!=`` comparisons with a text column (``Label == "s"``)
  and as ``by="pt"`` of ``sort``/``argsort``;
* subscripts with constant integers and slices: ``x[:, 0]``, ``x[:, :2]``, ``x[:, -1]``;
  ``x[:, k]`` gives NaN (None for four-vectors) for events with fewer than ``k + 1``
  objects;
* the attributes in :data:`ATTRIBUTES` (``leptons.pt``, ``pairs.a``) and the methods in
  :data:`METHODS` (``a.deltaR(b)``) -- nothing else after a dot;
* calls of the functions in :data:`FUNCTIONS` (plus those of a user features module, see
  :mod:`fivesigma.data.features_module`) with positional arguments and constant keyword
  arguments (``nth(jet_pt, 0, fill=-1)``); the keywords ``charge=``/``pdgid=`` of
  ``p4``/``p4_cartesian`` and ``by=`` of ``sort``/``argsort`` take expressions.

Functions
---------
========================================================  =================================
``abs sqrt exp log log10 sin cos tan arcsin arccos``      numpy's elementwise functions
``arctan arctan2 sinh cosh tanh arcsinh arccosh arctanh``
``minimum maximum isnan isfinite``
``where(c, a, b)``, ``clip(x, lo, hi)``                   elementwise choice, limits
``sum min max mean any all count``                        per-event reductions over objects;
                                                          ``sum`` of four-vectors is their
                                                          vector sum (zero if none)
``nth(x, n, fill=nan)``                                   n-th object per event, else fill
``select(x, cond)``                                       keep objects where ``cond``
``mask(x, cond)``                                         None where ``cond`` is false
                                                          (objects keep their places)
``inv_mass pt_sum delta_phi delta_r mz1 mz2``             kinematics of (pt, eta, phi, m)
``p4(pt, eta, phi, mass, charge=, pdgid=)``               four-vectors (``vector``
``p4_cartesian(px, py, pz, E, charge=, pdgid=)``          ``Momentum4D`` records), flat
                                                          or per object
``concatenate(a, b, ...)``                                objects of a, then b, per event
``sort(x, by=None, ascending=False)``                     objects ordered by ``by`` (an
                                                          attribute name such as ``"pt"``
                                                          or a per-object expression;
                                                          default: the value, or pT of
                                                          four-vectors)
``argsort(x, by=None, ascending=False)``                  the order itself (indices)
``take(x, idx)``                                          ``x[idx]`` per event
``leading(x, n)``                                         the first n objects; None (so
                                                          NaN downstream) with fewer
``firsts(x)``                                             the first object; NaN/None if none
``num(x)``                                                objects per event
``combinations(x, n=2)``                                  n-tuples of distinct objects as
                                                          records ``.a .b [.c .d]``
``cartesian(a, b[, c, d])``                               one of each as records ``.a .b``
========================================================  =================================

Division by zero gives inf/nan as in numpy.  Flat results are numpy arrays (bool for
conditions, float64 for numbers); per-object results and four-vectors stay awkward arrays.

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
import vector
from vector.backends.awkward import VectorAwkward
from vector.backends.numpy import VectorNumpy

from fivesigma.data import jagged
from fivesigma.errors import (
    DataError,
    ExpressionError,
    FivesigmaError,
    close_matches,
    describe_exception,
    shorten,
)
from fivesigma.physics import kinematics

__all__ = ["ATTRIBUTES", "CONSTANTS", "FUNCTIONS", "METHODS", "Expression", "ExpressionError"]

vector.register_awkward()  # Momentum4D records get .pt, .mass, +, ak.sum, ...


def _load_vector_compute() -> tuple[Callable[..., Any], ...] | None:
    """``vector``'s formulas for (pt, eta, phi, mass) records and their sums: t, z, x, y
    of one vector, then the mass and pT of an (x, y, z, t) sum.  The flat kernels of
    inv_mass/pt_sum apply them to the same buffers ``vector`` would; None (so the kernels
    stand aside) if a ``vector`` release moves them."""
    try:
        from vector._compute.lorentz import t, tau
        from vector._compute.planar import rho, x, y
        from vector._compute.spatial import z
    except ImportError:
        return None
    return (t.rhophi_eta_tau, z.rhophi_eta, x.rhophi, y.rhophi, tau.xy_z_t, rho.xy)


_vector_compute = _load_vector_compute()

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
            if out.ndim == 1 and _record_fields(out) is not None:
                return out  # sum of four-vectors: one vector per event
            if out.ndim == 1:
                out = _flat_out(out, empty)
                # ak.sum/any/all have a natural value for empty lists; min/max/mean do not
                if empty is not None and name in ("min", "max", "mean"):
                    out = np.where(jagged.counts(arr) > 0, out, empty)
            return out
        # a flat column is one object per event: reducing it returns it unchanged
        if isinstance(x, ak.Array) and _record_fields(x) is not None:
            return x
        arr = np.asarray(_flat_out(x))
        if name == "any" or name == "all":
            return arr.astype(bool)
        return arr

    reduce.__name__ = name
    reduce.__doc__ = f"``{name}(x)``: {name} over the objects of each event ({empty} if none)."
    return reduce


def _count(x: Any) -> np.ndarray:
    """``count(x)``: number of objects per event (e.g. ``count(lep_pt)``)."""
    if isinstance(x, ak.Array) and x.ndim >= 2:
        # 0 where an event's list is missing (leading(x, n) with fewer than n objects)
        return np.asarray(ak.to_numpy(ak.fill_none(ak.num(x, axis=1), 0)), dtype=np.int64)
    return jagged.counts(x)


def _nth(x: Any, n: int, fill: float = np.nan) -> np.ndarray:
    """``nth(x, n, fill=nan)``: the n-th object (from 0; -1 = last) per event, else ``fill``."""
    return jagged.nth(x, n, fill=fill)


def _summed_vectors(
    pt: Any, eta: Any, phi: Any, mass: Any, n: Any
) -> tuple[tuple[np.ndarray, ...], np.ndarray, int] | None:
    """``(t, z, x, y)`` of the vector sum of the (first ``n``) objects of the events that
    have enough of them, those events' indices and their number; on the flat buffers of
    plain jagged floats, or None where that does not apply.

    The coordinates come from ``vector``'s own formulas (its compute functions, the ones
    its awkward backend applies to the same buffers) and the sums from
    :func:`jagged.sequential_sum`, so the results equal ``vector``'s bit for bit.
    """
    if _vector_compute is None:
        return None
    if n is not None and (isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1):
        return None  # kinematics raises the error
    parts = [jagged.list_parts(a) for a in (pt, eta, phi, mass)]
    if any(p is None for p in parts):
        return None
    starts, stops, _ = parts[0]
    counts = stops - starts
    for other_starts, other_stops, _ in parts[1:]:
        if len(other_starts) != len(counts) or not np.array_equal(
            other_stops - other_starts, counts
        ):
            return None  # kinematics raises the error
    # only the events that have objects (n of them, when n is given) are summed
    events = np.flatnonzero(counts >= (1 if n is None else n))
    if len(events) == 0:
        return None  # every event gives NaN: awkward's path is cheap then
    take = counts[events]
    slots = np.arange(int(n), dtype=np.int64)[:, None] if n is not None else None

    def index_at(first: np.ndarray) -> np.ndarray | None:
        if slots is None:  # every object; the slots past an event's objects add zero
            return jagged.object_index(first[events], take)
        return first[events] + slots  # the first n objects, no padding

    index = index_at(starts)
    if index is None:
        return None
    rows = []
    for other_starts, _, values in parts:
        same = other_starts is starts or np.array_equal(other_starts, starts)
        here = index if same else index_at(other_starts)
        if here is None:
            return None
        rows.append(values.take(here) if slots is not None else jagged.padded_values(values, here))
    p, e, f, m = rows
    t_of, z_of, x_of, y_of = _vector_compute[:4]
    with np.errstate(all="ignore"):
        coords = (t_of(np, p, f, e, m), z_of(np, p, f, e), x_of(np, p, f), y_of(np, p, f))
        sums = tuple(jagged.sequential_sum(c) for c in coords)
    return sums, events, len(counts)


def _on_events(values: np.ndarray, events: np.ndarray, n_events: int) -> np.ndarray:
    """float64 ``values`` at ``events``, NaN at the other events."""
    out = np.full(n_events, np.nan)
    out[events] = values
    return out


def _inv_mass(pt: Any, eta: Any, phi: Any, mass: Any, n: int | None = None) -> np.ndarray:
    """``inv_mass(pt, eta, phi, mass, n=None)``: invariant mass of the vector sum of the
    (first ``n``) objects per event; NaN with no (fewer than ``n``) objects.

    :func:`fivesigma.physics.kinematics.invariant_mass`, computed on the flat buffers when
    the inputs are plain jagged floats (same results, bit for bit).
    """
    fast = _summed_vectors(pt, eta, phi, mass, n)
    if fast is None:
        return kinematics.invariant_mass(pt, eta, phi, mass, n)
    (t, z, x, y), events, n_events = fast
    with np.errstate(all="ignore"):
        return _on_events(_vector_compute[4](np, x, y, z, t), events, n_events)


def _pt_sum(pt: Any, eta: Any, phi: Any, mass: Any, n: int | None = None) -> np.ndarray:
    """``pt_sum(pt, eta, phi, mass, n=None)``: transverse momentum of the vector sum of the
    (first ``n``) objects per event; NaN with no (fewer than ``n``) objects.

    :func:`fivesigma.physics.kinematics.pt_of_sum`, computed on the flat buffers when the
    inputs are plain jagged floats (same results, bit for bit).
    """
    fast = _summed_vectors(pt, eta, phi, mass, n)
    if fast is None:
        return kinematics.pt_of_sum(pt, eta, phi, mass, n)
    (_, _, x, y), events, n_events = fast
    with np.errstate(all="ignore"):
        return _on_events(_vector_compute[5](np, x, y), events, n_events)


def _mz1(pt: Any, eta: Any, phi: Any, mass: Any, pdgid: Any, charge: Any) -> np.ndarray:
    """``mz1(pt, eta, phi, mass, pdgid, charge)``: mass of the SFOS pair closest to mZ."""
    return kinematics.z_pairing(pt, eta, phi, mass, pdgid, charge)[0]


def _mz2(pt: Any, eta: Any, phi: Any, mass: Any, pdgid: Any, charge: Any) -> np.ndarray:
    """``mz2(...)``: mass of the highest-scalar-pT SFOS pair of the leptons left after Z1."""
    return kinematics.z_pairing(pt, eta, phi, mass, pdgid, charge)[1]


# ---------------------------------------------------------------------------------------
# object collections and four-vectors
# ---------------------------------------------------------------------------------------

#: Names of the members of the records made by combinations() and cartesian().
_TUPLE_FIELDS = ("a", "b", "c", "d")

#: Attributes of four-vectors, computed by ``vector`` whatever the stored coordinates.
_VECTOR_ATTRIBUTES = frozenset(
    {"pt", "eta", "phi", "mass", "m", "px", "py", "pz", "E", "energy", "rapidity", "p", "mt"}
)
#: Stored fields that expressions may read: the extras of p4() and the tuple members.
_FIELD_ATTRIBUTES = frozenset({"charge", "pdgid", *_TUPLE_FIELDS})

#: Every name allowed after a dot (``x.pt``); nothing else is ever looked up.
ATTRIBUTES: frozenset[str] = _VECTOR_ATTRIBUTES | _FIELD_ATTRIBUTES

#: Four-vector methods allowed as ``a.deltaR(b)``; each takes one other four-vector.
METHODS: frozenset[str] = frozenset({"deltaR", "deltaphi", "deltaeta"})

#: Sort keys that ``by="..."`` may name.
_SORT_ATTRIBUTES = _VECTOR_ATTRIBUTES | {"charge", "pdgid"}


def _record_fields(x: Any) -> tuple[str, ...] | None:
    """Field names of the records in ``x`` (through lists and options); None if not records."""
    if isinstance(x, ak.Array):
        fields = x.fields
        if fields:
            return tuple(fields)
    return None


def _is_vector(x: Any) -> bool:
    return isinstance(x, VectorAwkward | VectorNumpy)


def _describe(x: Any) -> str:
    fields = _record_fields(x)
    if fields is not None:
        return "records with fields " + ", ".join(fields)
    if isinstance(x, ak.Array | np.ndarray):
        return "numbers"
    return f"the constant {shorten(repr(x), 40)}"


def _n_events(x: Any) -> int | None:
    if isinstance(x, ak.Array):
        return len(x)
    return len(x) if isinstance(x, np.ndarray) and x.ndim >= 1 else None


def _same_events(fname: str, arrays: Iterable[Any]) -> None:
    lengths = {n for n in (_n_events(a) for a in arrays) if n is not None}
    if len(lengths) > 1:
        raise DataError(
            f"{fname}(): the arguments have different numbers of events "
            f"({', '.join(map(str, sorted(lengths)))})"
        )


def _collection(x: Any, fname: str) -> ak.Array:
    """One list of objects per event; a flat column (or one object per event) is one object.

    A missing per-event object (None, e.g. from ``firsts``) becomes an empty list.
    """
    if isinstance(x, ak.Array):
        if x.ndim >= 2:
            return ak.from_regular(x, axis=1)
        if x.ndim == 1:
            return ak.singletons(x)
    elif isinstance(x, np.ndarray) and x.ndim >= 1:
        return jagged.as_jagged(x)
    raise DataError(f"{fname}(): expected a column or a collection of objects, got {_describe(x)}")


def _flat_result(x: ak.Array) -> Any:
    """Per-event numbers -> numpy (None -> NaN, or False for booleans); records unchanged."""
    if x.ndim != 1 or _record_fields(x) is not None:
        return x
    is_bool = str(ak.type(x).content).endswith("bool")
    return _flat_out(x, False if is_bool else np.nan)


def _vectors(fname: str, fields: dict[str, Any], charge: Any, pdgid: Any) -> ak.Array:
    """``Momentum4D`` records from coordinate columns (jagged, flat or constants)."""
    if charge is not None:
        fields["charge"] = charge
    if pdgid is not None:
        fields["pdgid"] = pdgid
    for name, value in fields.items():
        if isinstance(value, bool) or not isinstance(
            value, ak.Array | np.ndarray | int | float | np.number
        ):
            raise DataError(f"{fname}(): {name} must be numbers, got {_describe(value)}")
        if isinstance(value, ak.Array | np.ndarray) and _record_fields(value) is not None:
            raise DataError(f"{fname}(): {name} must be numbers, got {_describe(value)}")
    arrays = [v for v in fields.values() if isinstance(v, ak.Array | np.ndarray)]
    if not arrays:
        raise DataError(f"{fname}(): needs at least one column, got only constants")
    _same_events(fname, arrays)
    try:
        out = ak.zip(fields, with_name="Momentum4D")
    except ValueError as exc:  # awkward: lists of unequal length in some event
        raise DataError(
            f"{fname}(): {', '.join(fields)} have different numbers of objects in some events; "
            "they must come from the same collection"
        ) from exc
    return ak.from_regular(out, axis=1) if out.ndim >= 2 else out


def _p4(pt: Any, eta: Any, phi: Any, mass: Any, charge: Any = None, pdgid: Any = None) -> Any:
    """``p4(pt, eta, phi, mass, charge=None, pdgid=None)``: four-vectors (GeV, radians).

    Jagged inputs give one vector per object, flat ones one per event; constants broadcast
    (``p4(Muon_pt, Muon_eta, Muon_phi, 0.1057)``).  ``charge``/``pdgid`` are stored as the
    fields ``.charge``/``.pdgid``.
    """
    fields = {"pt": pt, "eta": eta, "phi": phi, "mass": mass}
    return _vectors("p4", fields, charge, pdgid)


def _p4_cartesian(px: Any, py: Any, pz: Any, E: Any, charge: Any = None, pdgid: Any = None) -> Any:
    """``p4_cartesian(px, py, pz, E, charge=None, pdgid=None)``: four-vectors from momenta."""
    fields = {"px": px, "py": py, "pz": pz, "E": E}
    return _vectors("p4_cartesian", fields, charge, pdgid)


def _attribute(value: Any, name: str) -> Any:
    """``value.name`` for a whitelisted ``name``: a stored field or a ``vector`` property."""
    fields = _record_fields(value)
    if fields is not None and name in fields:
        return value[name]
    if name in _VECTOR_ATTRIBUTES and _is_vector(value):
        return getattr(value, name)
    if fields is None:
        raise DataError(
            f"'.{name}' needs four-vectors or pairs (p4(...), combinations(...)), "
            f"got {_describe(value)}"
        )
    if name in _VECTOR_ATTRIBUTES:
        raise DataError(f"'.{name}' needs four-vectors (p4(...)), got {_describe(value)}")
    raise DataError(f"these objects have no '.{name}'; they are {_describe(value)}")


def _method(value: Any, name: str, other: Any) -> Any:
    """``value.name(other)`` for a four-vector method in :data:`METHODS`."""
    if name not in METHODS:  # validated away; kept as a second lock
        raise DataError(f"'.{name}(...)' is not allowed")
    if not (_is_vector(value) and _is_vector(other)):
        raise DataError(
            f"'.{name}(...)' needs four-vectors (p4(...)) on both sides, got "
            f"{_describe(value)} and {_describe(other)}"
        )
    return getattr(value, name)(other)


def _concatenate(first: Any, *others: Any) -> ak.Array:
    """``concatenate(a, b, ...)``: per event, the objects of ``a`` then those of ``b`` ..."""
    _same_events("concatenate", (first, *others))
    parts = [_collection(x, "concatenate") for x in (first, *others)]
    kinds = [_record_fields(p) for p in parts]
    for part, kind in zip(parts[1:], kinds[1:], strict=True):
        if kind != kinds[0]:
            raise DataError(
                f"concatenate(): cannot merge {_describe(parts[0])} with {_describe(part)}; "
                "build the collections alike (e.g. each with p4(pt, eta, phi, mass, charge=...))"
            )
    if len(parts) == 1:
        return parts[0]
    out = ak.concatenate(parts, axis=1)
    if "union[" in str(out.type):
        raise DataError("concatenate(): the collections have incompatible types; build them alike")
    return out


def _check_ascending(fname: str, ascending: Any) -> bool:
    if not isinstance(ascending, bool):
        raise DataError(f"{fname}(): ascending must be True or False, got {ascending!r}")
    return ascending


def _sort_key(coll: ak.Array, by: Any, fname: str) -> ak.Array:
    """The per-object key that sort/argsort order by."""
    if by is None:
        if _record_fields(coll) is None:
            return coll
        if _is_vector(coll):
            return coll.pt
        raise DataError(
            f"{fname}(): the objects are {_describe(coll)}; say what to sort by, e.g. "
            "by=abs((pairs.a + pairs.b).mass - 91.1876)"
        )
    if isinstance(by, str):
        if by not in _SORT_ATTRIBUTES:  # validated away; kept as a second lock
            raise DataError(f"{fname}(): by={by!r} is not an attribute")
        return _attribute(coll, by)
    key = _collection(by, fname)
    if _record_fields(key) is not None:
        raise DataError(f"{fname}(): by= must be numbers per object, got {_describe(key)}")
    _same_events(fname, (coll, key))
    same = ak.fill_none(ak.num(coll, axis=1) == ak.num(key, axis=1), True)
    if not ak.all(same):
        raise DataError(
            f"{fname}(): by= has a different number of objects than the collection in some "
            "events; compute it from the same collection"
        )
    return key


def _argsort(x: Any, by: Any = None, ascending: bool = False) -> ak.Array:
    """``argsort(x, by=None, ascending=False)``: per-event object indices in sorted order."""
    ascending = _check_ascending("argsort", ascending)
    coll = _collection(x, "argsort")
    return ak.argsort(_sort_key(coll, by, "argsort"), axis=1, ascending=ascending, stable=True)


def _sort(x: Any, by: Any = None, ascending: bool = False) -> ak.Array:
    """``sort(x, by=None, ascending=False)``: the objects of each event, ordered.

    ``by`` is an attribute name (``by="pt"``) or a per-object expression
    (``by=abs(x.eta)``); by default numbers sort by value and four-vectors by pT.
    Descending (leading first) unless ``ascending=True``.
    """
    ascending = _check_ascending("sort", ascending)
    coll = _collection(x, "sort")
    key = _sort_key(coll, by, "sort")
    return coll[ak.argsort(key, axis=1, ascending=ascending, stable=True)]


def _take(x: Any, idx: Any) -> ak.Array:
    """``take(x, idx)``: ``x[idx]`` per event, with ``idx`` a list of indices per event."""
    if not (isinstance(idx, ak.Array) and idx.ndim >= 2):
        raise DataError(
            "take(): idx must be a list of object indices per event (e.g. argsort(...)); "
            "for one constant index write x[:, k]"
        )
    content = str(ak.type(idx).content)
    if "int" not in content or _record_fields(idx) is not None:
        raise DataError(f"take(): idx must hold integer indices, got {content}")
    coll = _collection(x, "take")
    _same_events("take", (coll, idx))
    return coll[idx]


def _positive_int(fname: str, name: str, value: Any, lo: int = 1, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise DataError(f"{fname}(): {name} must be an integer constant, got {_describe(value)}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        accepted = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise DataError(f"{fname}(): {name} must be {accepted}, got {value}")
    return value


def _leading(x: Any, n: int) -> ak.Array:
    """``leading(x, n)``: the first ``n`` objects; None for events with fewer than ``n``."""
    n = _positive_int("leading", "n", n)
    coll = _collection(x, "leading")
    enough = ak.to_numpy(ak.fill_none(ak.num(coll, axis=1), 0)) >= n
    return ak.mask(coll[:, :n], enough)


def _firsts(x: Any) -> Any:
    """``firsts(x)``: the first object of each event; NaN (None for records) if none."""
    if isinstance(x, ak.Array) and x.ndim >= 2:
        return _flat_result(ak.firsts(x, axis=1))
    if isinstance(x, np.ndarray) and x.ndim >= 2:
        return jagged.nth(x, 0)
    return x  # a flat column is one object per event


def _num(x: Any) -> np.ndarray:
    """``num(x)``: number of objects per event (awkward's name for ``count``)."""
    return _count(x)


def _mask(x: Any, cond: Any) -> Any:
    """``mask(x, cond)``: None (NaN when flat) where ``cond`` is false; objects keep places."""
    if _is_ak(x, cond):
        if not isinstance(x, ak.Array):
            x = ak.Array(np.asarray(x))
        return ak.mask(x, cond)
    return np.where(cond, x, np.nan)


def _combinations(x: Any, n: int = 2) -> ak.Array:
    """``combinations(x, n=2)``: every set of ``n`` distinct objects of an event, as records
    with members ``.a .b`` (``.c .d`` for n = 3, 4), in object order."""
    n = _positive_int("combinations", "n", n, lo=2, hi=len(_TUPLE_FIELDS))
    coll = _collection(x, "combinations")
    return ak.combinations(coll, n, axis=1, fields=list(_TUPLE_FIELDS[:n]))


def _cartesian(a: Any, b: Any, c: Any = None, d: Any = None) -> ak.Array:
    """``cartesian(a, b[, c, d])``: every choice of one object from each collection, per
    event, as records with members ``.a .b`` (``.c .d``)."""
    given = [x for x in (a, b, c, d) if x is not None]
    _same_events("cartesian", given)
    colls = {k: _collection(x, "cartesian") for k, x in zip(_TUPLE_FIELDS, given, strict=False)}
    return ak.cartesian(colls, axis=1)


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
    "arcsinh": np.arcsinh,
    "arccosh": np.arccosh,
    "arctanh": np.arctanh,
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
    "inv_mass": _inv_mass,
    "pt_sum": _pt_sum,
    "delta_phi": kinematics.delta_phi,
    "delta_r": kinematics.delta_r,
    "mz1": _mz1,
    "mz2": _mz2,
    # four-vectors (scikit-hep vector Momentum4D records)
    "p4": _p4,
    "p4_cartesian": _p4_cartesian,
    # object collections (awkward, per event)
    "concatenate": _concatenate,
    "sort": _sort,
    "argsort": _argsort,
    "take": _take,
    "leading": _leading,
    "firsts": _firsts,
    "num": _num,
    "mask": _mask,
    "combinations": _combinations,
    "cartesian": _cartesian,
}

#: Keyword arguments that take expressions (not only constants): (function, keyword) ->
#: "array" (any expression) or "key" (an attribute name in quotes, or any expression).
_KEYWORD_KINDS: dict[tuple[str, str], str] = {
    ("p4", "charge"): "array",
    ("p4", "pdgid"): "array",
    ("p4_cartesian", "charge"): "array",
    ("p4_cartesian", "pdgid"): "array",
    ("sort", "by"): "key",
    ("argsort", "by"): "key",
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
    "x[:, i] subscripts, four-vector attributes such as x.pt and calls of named functions"
)

_TEXT_HINT = (
    'text is allowed only in == / != comparisons with a text column (Label == "s") '
    'and as by="pt" of sort()/argsort()'
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
    functions
        Extra functions callable by name (a user features module, see
        :func:`fivesigma.data.features_module.load_features_module`); their names must
        not clash with :data:`FUNCTIONS` or :data:`CONSTANTS`.

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

    def __init__(
        self,
        text: str,
        what: str = "expression",
        functions: Mapping[str, Callable[..., Any]] | None = None,
    ) -> None:
        self.what = what
        self._functions: Mapping[str, Callable[..., Any]] = FUNCTIONS
        if functions:
            clash = sorted(set(functions) & (set(FUNCTIONS) | set(CONSTANTS)))
            if clash:
                raise ExpressionError(
                    f"{what}: user function {clash[0]!r} clashes with a built-in name; rename it"
                )
            self._functions = {**FUNCTIONS, **functions}
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

    def __getstate__(self) -> dict[str, Any]:
        # the built-in table is restored on unpickling (its closures do not pickle)
        state = dict(self.__dict__)
        if self._functions is FUNCTIONS:
            state["_functions"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self._functions is None:
            self._functions = FUNCTIONS

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
                raise _Reject(
                    f"string constant {shorten(repr(value))} is not allowed; {_TEXT_HINT}"
                )
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
                if isinstance(operand, ast.Constant) and isinstance(operand.value, str):
                    if not all(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
                        raise _Reject(
                            f"text {shorten(repr(operand.value))} can only be compared with "
                            "== or !="
                        )
                    continue
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
        elif isinstance(node, ast.Attribute):
            self._check_attribute(node.attr)
            self._check(node.value, names)
        else:
            construct = _CONSTRUCT_NAMES.get(type(node), type(node).__name__)
            raise _Reject(f"{construct} is not allowed; {_ALLOWED}")

    @staticmethod
    def _check_attribute(attr: str) -> None:
        if attr in ATTRIBUTES:
            return
        if attr in METHODS:
            raise _Reject(f"'.{attr}' is a method: call it as a.{attr}(b)")
        raise _Reject(
            f"attribute access '.{shorten(attr)}' is not allowed; attributes: "
            + " ".join(f".{a}" for a in sorted(ATTRIBUTES, key=str.lower))
        )

    @staticmethod
    def _check_name(name: str) -> None:
        if name.startswith("__"):
            raise _Reject(f"name {name!r} is not allowed (no dunder names); use column names")

    def _check_call(self, node: ast.Call, names: set[str]) -> None:
        if isinstance(node.func, ast.Attribute) and node.func.attr in METHODS:
            self._check_method(node, node.func, names)
            return
        if not isinstance(node.func, ast.Name):
            if isinstance(node.func, ast.Attribute):
                attr = shorten(node.func.attr)
                hint = (
                    f"'.{attr}' is an attribute: write x.{attr}"
                    if attr in ATTRIBUTES
                    else "methods: " + ", ".join(f".{m}(b)" for m in sorted(METHODS))
                )
                raise _Reject(f"method call '.{attr}(...)' is not allowed; {hint}")
            raise _Reject(
                f"calling {self._segment(node.func)!r} is not allowed; call functions by name: "
                f"{self._function_list()}"
            )
        fname = node.func.id
        if fname not in self._functions:
            matches = close_matches(fname, self._functions)
            hint = f"{matches} " if matches.startswith("did you mean") else ""
            raise _Reject(
                f"unknown function {shorten(fname)!r}; {hint}functions: {self._function_list()}"
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
            kind = _KEYWORD_KINDS.get((fname, kw.arg)) if fname in FUNCTIONS else None
            value = kw.value
            if kind == "key" and isinstance(value, ast.Constant) and isinstance(value.value, str):
                if value.value not in _SORT_ATTRIBUTES:
                    raise _Reject(
                        f"{fname}(by={shorten(repr(value.value))}): not an attribute; use one of "
                        + ", ".join(repr(a) for a in sorted(_SORT_ATTRIBUTES, key=str.lower))
                        + " or an expression such as by=abs(x.eta)"
                    )
            elif kind is not None:
                self._check(value, names)
            else:
                self._constant(value, f"keyword argument {kw.arg}= of {fname}()")
        if fname in _REDUCTIONS and (len(node.args) != 1 or node.keywords):
            hint = ""
            if fname in ("min", "max"):
                hint = f"; use {fname}imum(a, b) for the elementwise {fname}imum"
            raise _Reject(
                f"{fname}() takes exactly one argument, the per-event list to reduce{hint}"
            )
        _check_arity(
            fname,
            self._functions[fname],
            len(node.args),
            [kw.arg for kw in node.keywords if kw.arg],
        )

    def _check_method(self, node: ast.Call, func: ast.Attribute, names: set[str]) -> None:
        """``a.deltaR(b)``: one of :data:`METHODS` with exactly one positional argument."""
        if len(node.args) != 1 or node.keywords or isinstance(node.args[0], ast.Starred):
            raise _Reject(f".{func.attr}() takes exactly one argument, the other four-vector(s)")
        self._check(func.value, names)
        self._check(node.args[0], names)

    def _function_list(self) -> str:
        return ", ".join(sorted(self._functions))

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
        except (
            TypeError,
            ValueError,
            IndexError,
            ArithmeticError,
            AttributeError,
            KeyError,
        ) as exc:
            # e.g. `~` on floats, nth(x, col), lists of unequal length; one line only
            raise self._error(f"cannot evaluate: {_one_line(exc)}") from exc
        return self._finish(result, n_events)

    def _finish(self, result: Any, n_events: int | None) -> Any:
        if isinstance(result, ak.Array):
            if result.ndim == 1 and _record_fields(result) is not None:
                # one four-vector (or pair) per event, e.g. sum(leptons): stays awkward
                self._check_length(len(result), n_events)
                return result
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
                if isinstance(right, str) or isinstance(left, str):
                    this = _compare_text(fn, left, right)
                else:
                    this = fn(left, right)
                result = this if result is None else np.logical_and(result, this)
                left = right
            return result
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute):  # validated: a.deltaR(b) and the like
                value = self._eval(node.func.value, columns)
                return _method(value, node.func.attr, self._eval(node.args[0], columns))
            fname = node.func.id  # type: ignore[attr-defined]  # validated: a Name
            args = [self._eval(arg, columns) for arg in node.args]
            kwargs = {kw.arg: self._keyword(fname, kw, columns) for kw in node.keywords}
            try:
                return self._functions[fname](*args, **kwargs)
            except (FivesigmaError, TypeError) as exc:
                message = _one_line(exc)
                if not message.startswith(f"{fname}()"):
                    message = f"{fname}(): {message}"
                raise self._error(message) from exc
            except Exception as exc:
                if fname in FUNCTIONS:
                    raise
                # a user function (features module): any failure is one line naming it
                raise self._error(f"{fname}() raised {describe_exception(exc)}") from exc
        if isinstance(node, ast.Subscript):
            return _subscript(self._eval(node.value, columns), self._index(node.slice))
        if isinstance(node, ast.Attribute):  # validated: node.attr is in ATTRIBUTES
            return _attribute(self._eval(node.value, columns), node.attr)
        raise self._error(f"{type(node).__name__} cannot be evaluated")  # validated away

    def _keyword(self, fname: str, kw: ast.keyword, columns: Mapping[str, Any]) -> Any:
        """Value of a keyword argument: a constant, or an expression where the function
        takes one (:data:`_KEYWORD_KINDS`)."""
        key = (fname, kw.arg or "")
        kind = _KEYWORD_KINDS.get(key) if fname in FUNCTIONS else None
        if kind is None:
            return self._constant(kw.value, kw.arg or "")
        if isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
            return kw.value.value  # an attribute name, validated against _SORT_ATTRIBUTES
        return self._eval(kw.value, columns)


def _subscript(value: Any, index: Any) -> Any:
    """``value[index]``, safe for ``x[:, k]`` on jagged data (NaN, or None for records,
    where too short)."""
    if (
        isinstance(value, ak.Array)
        and isinstance(index, tuple)
        and len(index) == 2
        and index[0] == slice(None)
        and isinstance(index[1], int)
        and value.ndim == 2
    ):
        k = index[1]
        if _record_fields(value) is not None:
            # a one-wide window is empty (not an IndexError) when the event is too short
            window = value[:, k : k + 1] if k != -1 else value[:, -1:]
            return ak.firsts(window, axis=1)
        return jagged.nth(value, k)
    if not isinstance(value, ak.Array | np.ndarray):
        raise TypeError(f"cannot subscript a constant ({value!r})")
    return value[index]


def _is_text(x: Any) -> bool:
    """Whether ``x`` holds text: numpy str/object, or awkward strings (flat or per object)."""
    if isinstance(x, np.ndarray):
        return x.dtype.kind in "USO"
    if isinstance(x, ak.Array):
        t = x.type.content
        while isinstance(t, ak.types.ListType | ak.types.RegularType | ak.types.OptionType):
            if t.parameters.get("__array__") == "string":
                return True
            t = t.content
    return False


def _compare_text(fn: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
    """``Label == "s"``: only a text column compares with text."""
    column = right if isinstance(left, str) else left
    text = left if isinstance(left, str) else right
    if not isinstance(column, str) and not _is_text(column):
        raise DataError(
            f"comparing {_describe(column)} with the text {shorten(repr(text), 40)}; "
            "the column does not hold text"
        )
    return fn(left, right)


def _check_arity(fname: str, fn: Callable[..., Any], n_args: int, keywords: list[str]) -> None:
    """Reject wrong argument counts / unknown keywords before any data is read."""
    if isinstance(fn, np.ufunc):
        if n_args != fn.nin or keywords:
            plural = "s" if fn.nin != 1 else ""
            raise _Reject(f"{fname}() takes {fn.nin} positional argument{plural}, got {n_args}")
        return
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a user's builtin or C function without a signature: checked when called
    try:
        signature.bind(*([None] * n_args), **dict.fromkeys(keywords))
    except TypeError as exc:
        params = ", ".join(
            f"*{p.name}"
            if p.kind is p.VAR_POSITIONAL
            else p.name
            if p.default is p.empty
            else f"{p.name}={p.default!r}"
            for p in signature.parameters.values()
        )
        raise _Reject(f"{fname}(): {exc}; signature: {fname}({params})") from None
