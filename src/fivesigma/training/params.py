"""scikit-learn style hyper-parameters, shared by every estimator (classifiers, taggers).

An estimator's hyper-parameters are exactly the arguments of its ``__init__``, stored
under the same names.  This mixin gives ``get_params`` / ``set_params`` / ``repr`` and the
checks and JSON conversion that model bundles need.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from typing import Any

from fivesigma.errors import ModelError, close_matches

__all__ = ["HyperParameters", "params_to_json"]


class HyperParameters:
    """Mixin: hyper-parameters are the ``__init__`` arguments, kept as attributes."""

    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    @classmethod
    def check_param_names(cls, params: Mapping[str, Any], where: str | None = None) -> None:
        """Raise :class:`ModelError` for a name ``__init__`` does not take."""
        accepted = cls._param_names()
        for name in params:
            if name not in accepted:
                raise ModelError(
                    f"unknown hyper-parameter {name!r} for {where or cls.__name__}; "
                    f"accepted: {', '.join(accepted)} ({close_matches(name, accepted)})"
                )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyper-parameters as given to ``__init__``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Any:
        """Change hyper-parameters; unknown names raise :class:`ModelError`."""
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
        return value

    out = {k: clean(v) for k, v in params.items()}
    try:
        json.dumps(out)
    except TypeError as err:
        raise ModelError(f"{what} hyper-parameters are not JSON-serialisable: {err}") from None
    return out
