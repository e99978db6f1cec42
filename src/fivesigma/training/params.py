"""scikit-learn style hyper-parameters, shared by every estimator (classifiers, taggers).

An estimator's hyper-parameters are exactly the arguments of its ``__init__``, stored
under the same names.  This mixin gives ``get_params`` / ``set_params`` / ``repr`` and the
checks and JSON conversion that model bundles need.

Each estimator declares the values it accepts as a pydantic model, its nested ``Params``
class (a :class:`ParamSchema`: unknown names are errors, every field says in its
description what it accepts).  :meth:`HyperParameters.check_params` validates against it
and turns the first problem into one line naming the estimator, the parameter, what is
accepted and the value given:

>>> from typing import Annotated
>>> class Toy(HyperParameters):
...     class Params(ParamSchema):
...         depth: Annotated[integer(ge=1), param("an integer >= 1", "tree depth")] = 3
...     def __init__(self, depth: int = 3) -> None:
...         self.depth = depth
>>> Toy.check_params({"depth": 2})
>>> Toy.check_params({"depth": True}, what="toy")
Traceback (most recent call last):
...
fivesigma.errors.ModelError: toy depth: expected an integer >= 1, got True

The field types below (:func:`integer`, :func:`number`, :func:`choice`, ...) refuse what
would otherwise be coerced silently: a bool or a float where an integer is needed, a
string where a number is, a single number where a list is.  They only *check*: the
estimator keeps the values as given (scikit-learn's ``get_params`` contract).
"""

from __future__ import annotations

import inspect
import json
import math
import numbers
import os
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from annotated_types import Interval, MinLen
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from fivesigma.errors import ModelError, close_matches, shorten

__all__ = [
    "CLASS_WEIGHT",
    "SCHEDULERS",
    "HyperParameters",
    "ParamSchema",
    "boolean",
    "choice",
    "detail_error",
    "integer",
    "number",
    "param",
    "params_to_json",
    "sizes",
]

#: learning-rate schedules of the shared trainer (:class:`fivesigma.training.TrainerConfig`)
SCHEDULERS = ("none", "cosine", "plateau", "onecycle")

#: how a refused value is reported: with the field's ``accepted`` text ("wrong") or with
#: the validator's own sentence ("detail", :func:`detail_error`)
_WRONG = "fivesigma_wrong"
_DETAIL = "fivesigma_detail"


def _wrong() -> PydanticCustomError:
    return PydanticCustomError(_WRONG, "value not accepted")


def detail_error(message: str, param: str = "") -> PydanticCustomError:
    """An error whose one-line ``message`` is reported as it is (after the parameter's name).

    Raise it from a validator that can say more than the field's ``accepted`` text;
    ``param`` names the parameter when the validator is not a field's (a model validator).
    """
    return PydanticCustomError(_DETAIL, "{message}", {"message": message, "param": param})


# --------------------------------------------------------------------------------------
# Field types


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _wrong()
    return int(value)


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _wrong()
    try:
        out = float(value)
    except (OverflowError, TypeError, ValueError):
        raise _wrong() from None
    if not math.isfinite(out):
        raise _wrong()
    return out


def _as_list(value: Any) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise _wrong()
    return list(value)


def _interval(ge: float | None, gt: float | None, le: float | None, lt: float | None) -> list:
    if ge is None and gt is None and le is None and lt is None:
        return []
    return [Interval(ge=ge, gt=gt, le=le, lt=lt)]


def integer(*, ge: int | None = None, le: int | None = None) -> Any:
    """An integer (numpy integers too; not a bool, float or string) in ``[ge, le]``."""
    return Annotated[(int, *_interval(ge, None, le, None), BeforeValidator(_as_int))]


def number(
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A finite real number (an int is fine; not a bool or string) within the bounds."""
    return Annotated[(float, *_interval(ge, gt, le, lt), BeforeValidator(_as_float))]


#: ``True`` or ``False`` (not 0/1 or "yes")
boolean = Annotated[bool, Strict()]


def sizes(*, min_items: int = 0) -> Any:
    """A list (or tuple) of positive integers, e.g. layer widths ``[64, 64]``."""
    item = integer(ge=1)
    extra = [MinLen(min_items)] if min_items else []
    return Annotated[(list[item], *extra, BeforeValidator(_as_list))]


def choice(*values: str) -> Any:
    """One of the strings ``values``; a near miss gets a "did you mean" hint."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and value in values:
            return value
        hint = ""
        if isinstance(value, str):
            close = close_matches(value, values)
            hint = f" ({close})" if close.startswith("did you mean") else ""
        raise detail_error(f"expected one of {', '.join(values)}, got {shorten(repr(value))}{hint}")

    return Annotated[Literal[values], BeforeValidator(check)]


def _check_class_weight(value: Any) -> Any:
    if value is None or (isinstance(value, str) and value == "balanced"):
        return value
    if not isinstance(value, Mapping) or not value:
        raise _wrong()
    for key, factor in value.items():
        if isinstance(key, str) and key.isascii() and key.isdigit():
            key = int(key)  # JSON object keys (a saved bundle's parameters) are strings
        if isinstance(key, bool) or not isinstance(key, numbers.Integral) or key < 0:
            raise _wrong()
        if _as_float(factor) <= 0:
            raise _wrong()
    return value


#: ``None``, ``"balanced"`` or ``{class: factor}`` (classes integers >= 0, factors > 0)
CLASS_WEIGHT = Annotated[
    Literal["balanced"] | dict[int, number(gt=0)] | None, BeforeValidator(_check_class_weight)
]


def _check_device(value: Any) -> Any:
    if isinstance(value, str) and (
        value in ("cpu", "cuda", "auto")
        or (value.startswith("cuda:") and value[5:].isascii() and value[5:].isdigit())
    ):
        return value
    raise _wrong()


#: where a torch model trains and predicts: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"``
DEVICE = Annotated[
    Annotated[str, Field(pattern=r"^(cpu|cuda|cuda:[0-9]+|auto)$")], BeforeValidator(_check_device)
]


def _check_path(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise _wrong()
    return value


#: a directory path (a string or ``pathlib.Path``) or ``None``
OPTIONAL_PATH = Annotated[Annotated[str, MinLen(1)] | None, BeforeValidator(_check_path)]


def param(accepted: str, meaning: str = "") -> FieldInfo:
    """A parameter's field: ``accepted`` says what values are accepted (used in messages and
    the schema's description), ``meaning`` what the parameter does."""
    description = f"{meaning}; accepted: {accepted}" if meaning else f"accepted: {accepted}"
    return Field(description=description, json_schema_extra={"accepted": accepted})


class ParamSchema(BaseModel):
    """Base of the ``Params`` model of an estimator: unknown names are errors."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


# --------------------------------------------------------------------------------------
# The mixin


class HyperParameters:
    """Mixin: hyper-parameters are the ``__init__`` arguments, kept as attributes.

    ``Params`` (a :class:`ParamSchema` subclass, one field per ``__init__`` argument) is
    the typed schema of the values; ``None`` checks the names only.
    """

    #: the typed schema of the hyper-parameters (None: names are checked, values are not)
    Params: ClassVar[type[BaseModel] | None] = None

    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    @classmethod
    def check_param_names(cls, params: Mapping[str, Any], where: str | None = None) -> None:
        """Raise :class:`ModelError` for a name ``__init__`` does not take."""
        accepted = cls._param_names()
        for name in params:
            if name not in accepted:
                shown = shorten(repr(name), 60)
                raise ModelError(
                    f"unknown hyper-parameter {shown} for {where or cls.__name__}; "
                    f"accepted: {', '.join(accepted)} ({close_matches(str(name)[:100], accepted)})"
                )

    @classmethod
    def check_params(
        cls, params: Mapping[str, Any], what: str | None = None, where: str | None = None
    ) -> None:
        """Validate hyper-parameters (names and values) against ``Params``.

        The first problem raises a one-line :class:`ModelError`: ``"{what} {name}:
        expected {accepted}, got {value}"`` (``what`` names the estimator, default the class
        name; ``where`` is used in the unknown-name message).
        """
        cls.check_param_names(params, where=where or what)
        if cls.Params is None:
            return
        try:
            cls.Params.model_validate(dict(params))
        except ValidationError as err:
            raise ModelError(_one_line(cls.Params, err, params, what or cls.__name__)) from None

    @classmethod
    def param_schema(cls) -> dict[str, Any]:
        """The JSON schema of the hyper-parameters (what each accepts, in its description)."""
        if cls.Params is not None:
            return cls.Params.model_json_schema()
        return {
            "title": cls.__name__,
            "type": "object",
            "properties": {name: {} for name in cls._param_names()},
            "additionalProperties": False,
        }

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyper-parameters as given to ``__init__``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Any:
        """Change hyper-parameters; unknown names raise :class:`ModelError` (values are
        checked by ``fit``, as in scikit-learn)."""
        self.check_param_names(params)
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        changed = [
            f"{k}={v!r}"
            for k, v in self.get_params().items()
            if sig.parameters[k].default is inspect.Parameter.empty
            or sig.parameters[k].default != v
        ]
        return f"{type(self).__name__}({', '.join(changed)})"


def _one_line(
    schema: type[BaseModel], err: ValidationError, params: Mapping[str, Any], what: str
) -> str:
    """The first error of ``err`` as ``"{what} {name}: ..."``."""
    first = err.errors(include_url=False)[0]
    loc = first.get("loc", ())
    ctx = first.get("ctx") or {}
    name = str(loc[0]) if loc else str(ctx.get("param", ""))
    prefix = f"{what} {name}".strip()
    if first["type"] == _DETAIL:
        return f"{prefix}: {ctx.get('message', '')}"
    field = schema.model_fields.get(name)
    extra = field.json_schema_extra if field is not None else None
    accepted = extra.get("accepted") if isinstance(extra, dict) else None
    if accepted is None:  # a field without param(): pydantic's own words
        accepted = str(first.get("msg", "")).splitlines()[0] if first.get("msg") else "a value"
    value = params.get(name) if name in params else first.get("input")
    return f"{prefix}: expected {accepted}, got {shorten(repr(value))}"


def params_to_json(params: Mapping[str, Any], what: str = "model") -> dict[str, Any]:
    """Hyper-parameters as JSON types (tuples to lists, mapping keys to strings).

    >>> params_to_json({"hidden": (64, 64), "class_weight": {0: 1.0}})
    {'hidden': [64, 64], 'class_weight': {'0': 1.0}}
    """

    def clean(value: Any) -> Any:
        if isinstance(value, tuple | list):
            return [clean(v) for v in value]
        if isinstance(value, Mapping):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        return value

    out = {k: clean(v) for k, v in params.items()}
    try:
        json.dumps(out)
    except TypeError as err:
        raise ModelError(f"{what} hyper-parameters are not JSON-serialisable: {err}") from None
    return out
