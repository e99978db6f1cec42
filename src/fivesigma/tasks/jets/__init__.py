"""fivesigma.tasks.jets: jet tagging on constituents.

Submodules are imported on first use, so ``import fivesigma.tasks.jets`` stays light (no torch,
no fastjet):

- :mod:`fivesigma.io.jets`: ``JetSample``, ``read_jets``, ``iter_jets`` (generator ROOT
  files, Top Quark Tagging HDF5, EnergyFlow quark/gluon ``.npz``).
- :mod:`fivesigma.tasks.jets.features`: padded constituent inputs, pairwise features and jet
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
    "CLASS_NAMES": "fivesigma.io.jets",
    "JetSample": "fivesigma.io.jets",
    "iter_jets": "fivesigma.io.jets",
    "read_jets": "fivesigma.io.jets",
    "constituent_inputs": "fivesigma.tasks.jets.features",
    "jet_observables": "fivesigma.tasks.jets.features",
    "pairwise_features_numpy": "fivesigma.tasks.jets.features",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
