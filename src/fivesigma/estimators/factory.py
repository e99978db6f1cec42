"""Build any registered estimator by name, read any model bundle by its kind.

Both go through the registries of :mod:`fivesigma.core.registry`:
:data:`~fivesigma.core.registry.ESTIMATORS` (name -> class, with fixed ``params`` such as
``{"model": "pfn"}`` for the jet taggers) and
:data:`~fivesigma.core.registry.BUNDLE_KINDS` (bundle kind -> loader).  Nothing heavy is
imported until an estimator is built or a bundle read.

>>> make_estimator("pfn", epochs=2).get_params()["model"]
'pfn'
>>> make_estimator("xgb")
Traceback (most recent call last):
...
fivesigma.errors.ModelError: unknown model kind 'xgb'; registered: logistic, bdt, mlp, cnn1d, pfn, particlenet, part
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fivesigma.core.bundle import bundle_kind
from fivesigma.core.registry import BUNDLE_KINDS, ESTIMATORS
from fivesigma.errors import ModelError, close_matches

__all__ = ["load", "make_estimator"]


def make_estimator(kind: str, **params: Any) -> Any:
    """A new, unfitted estimator of registry name ``kind`` with hyper-parameters ``params``.

    An unknown ``kind`` or hyper-parameter name, or a value the estimator's typed schema
    (its ``Params``, :meth:`~fivesigma.training.estimator.Estimator.param_schema`) refuses,
    raises a one-line :class:`ModelError` naming the parameter and what is accepted, before
    anything is trained.  Parameters the registry entry fixes (a tagger's ``model``) cannot
    be given.

    >>> make_estimator("mlp", hidden=64)
    Traceback (most recent call last):
    ...
    fivesigma.errors.ModelError: mlp hidden: expected a list of positive integers such as [64, 64], got 64
    """
    if kind not in ESTIMATORS:
        names = ESTIMATORS.names()
        hint = close_matches(str(kind)[:100], names)
        hint = f" ({hint})" if hint.startswith("did you mean") else ""
        raise ModelError(
            f"unknown model kind {str(kind)[:60]!r}; registered: {', '.join(names)}{hint}"
        )
    entry = ESTIMATORS.entry(kind)
    fixed = dict(entry.metadata.get("params", {}))
    clash = sorted(set(fixed) & set(params))
    if clash:
        raise ModelError(
            f"model kind {kind!r} fixes {', '.join(f'{k}={fixed[k]!r}' for k in clash)}; "
            "choose another kind instead of setting it"
        )
    cls = entry.load()
    cls.check_params({**fixed, **params}, what=kind, where=f"{kind!r} model")
    return cls(**fixed, **params)


def load(path: str | Path) -> Any:
    """Read any model bundle and return the fitted estimator (its loader is looked up in
    :data:`~fivesigma.core.registry.BUNDLE_KINDS` by the bundle's kind)."""
    kind = bundle_kind(path)
    if kind not in BUNDLE_KINDS:
        raise ModelError(
            f"model bundle '{path}' has kind {kind!r}; this fivesigma reads "
            f"{', '.join(BUNDLE_KINDS.names())}"
        )
    return BUNDLE_KINDS.get(kind)(path)
