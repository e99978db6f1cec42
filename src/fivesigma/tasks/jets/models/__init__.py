"""Jet taggers on padded constituents: 1D CNN, PFN (Deep Sets), ParticleNet, ParT.

Every model is called as ``model(x, v, mask) -> logits`` with ``x`` (B, P, F) particle
features, ``v`` (B, P, 4) four-momenta (px, py, pz, E) in GeV, ``mask`` (B, P) bool
(True: real particle), and returns (B, n_classes) logits; P may differ between calls.
Each has a config dataclass with a CPU-friendly default and a ``paper()`` size.

>>> net = build_model("pfn", n_features=3, n_classes=2)
>>> net.n_parameters() == sum(p.numel() for p in net.parameters())
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fivesigma.errors import ModelError, close_matches
from fivesigma.nn.graph import knn
from fivesigma.nn.pairs import pairwise_lv_fts
from fivesigma.nn.utils import count_parameters
from fivesigma.tasks.jets.models.base import TaggerModel
from fivesigma.tasks.jets.models.cnn1d import CNN1D, CNN1DConfig
from fivesigma.tasks.jets.models.part import ParT, ParTConfig
from fivesigma.tasks.jets.models.particlenet import ParticleNet, ParticleNetConfig
from fivesigma.tasks.jets.models.pfn import PFN, PFNConfig

__all__ = [
    "CNN1D",
    "MODELS",
    "PFN",
    "CNN1DConfig",
    "PFNConfig",
    "ParT",
    "ParTConfig",
    "ParticleNet",
    "ParticleNetConfig",
    "TaggerModel",
    "build_model",
    "count_parameters",
    "knn",
    "make_config",
    "pairwise_lv_fts",
]

#: registry name -> (config dataclass, network class)
MODELS: dict[str, tuple[type, type[TaggerModel]]] = {
    "cnn1d": (CNN1DConfig, CNN1D),
    "pfn": (PFNConfig, PFN),
    "particlenet": (ParticleNetConfig, ParticleNet),
    "part": (ParTConfig, ParT),
}


def _lookup(name: str) -> tuple[type, type[TaggerModel]]:
    if name not in MODELS:
        raise ModelError(
            f"unknown jet tagger {name!r}; accepted: {', '.join(MODELS)} "
            f"({close_matches(str(name), MODELS)})"
        )
    return MODELS[name]


def make_config(
    name: str,
    n_features: int,
    n_classes: int = 2,
    params: Mapping[str, Any] | None = None,
    size: str = "default",
) -> Any:
    """The config of tagger ``name``: its ``size`` (``"default"`` or ``"paper"``) with
    ``params`` overriding single fields; unknown fields raise :class:`ModelError`."""
    import dataclasses

    config_cls, _ = _lookup(name)
    if size not in ("default", "paper"):
        raise ModelError(f"tagger size {size!r} is not known; accepted: default, paper")
    base = (
        config_cls.paper(n_features, n_classes)
        if size == "paper"
        else config_cls(n_features, n_classes)
    )
    params = dict(params or {})
    fields = [
        f.name for f in dataclasses.fields(config_cls) if f.name not in ("n_features", "n_classes")
    ]
    for key in params:
        if key not in fields:
            raise ModelError(
                f"unknown {name} hyper-parameter {key!r}; accepted: {', '.join(fields)} "
                f"({close_matches(str(key), fields)})"
            )
    try:
        return dataclasses.replace(base, **params)
    except TypeError as err:
        raise ModelError(f"{name} hyper-parameters are invalid: {err}") from None


def build_model(
    name: str,
    n_features: int,
    n_classes: int = 2,
    params: Mapping[str, Any] | None = None,
    size: str = "default",
) -> TaggerModel:
    """A freshly initialised tagger ``name`` (see :func:`make_config`)."""
    _, model_cls = _lookup(name)
    return model_cls(make_config(name, n_features, n_classes, params, size))
