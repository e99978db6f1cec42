"""fivesigma.jets: jet tagging on constituents.

Submodules are imported on first use, so ``import fivesigma.jets`` stays light (no torch,
no fastjet):

- :mod:`fivesigma.jets.data`: ``JetSample``, ``read_jets``, ``iter_jets`` (generator ROOT
  files, Top Quark Tagging HDF5, EnergyFlow quark/gluon ``.npz``).
- :mod:`fivesigma.jets.features`: padded constituent inputs, pairwise features and jet
  observables (N-subjettiness) for the taggers.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "CLASS_NAMES",
    "JetSample",
    "constituent_inputs",
    "iter_jets",
    "jet_observables",
    "pairwise_features_numpy",
    "read_jets",
]

_LAZY = {
    "CLASS_NAMES": "data",
    "JetSample": "data",
    "iter_jets": "data",
    "read_jets": "data",
    "constituent_inputs": "features",
    "jet_observables": "features",
    "pairwise_features_numpy": "features",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
