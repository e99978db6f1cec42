"""``JetTagger``: a scikit-learn-style estimator around the jet tagging networks.

Inputs are padded jet constituents, a dict of arrays (numpy or torch)::

    x     (n_jets, P, F) float   per-particle features (zeros where padded)
    v     (n_jets, P, 4) float   four-momenta (px, py, pz, E) in GeV (zeros where padded)
    mask  (n_jets, P)    bool    True for real particles (0/1 integers or floats accepted)

Labels are ``0..K-1`` (binary: 0 background, 1 signal); event weights may be non-uniform
and negative.  ``JetTagger`` is a :class:`~fivesigma.training.estimator.TorchEstimator`:
fit, predict, scoring, bundles and ONNX export are the ones every torch model shares
(seeded, early stopping, resumable checkpoints).  ``x`` is standardised per feature over
the real particles of the training set (padded entries stay 0); the standardisation is
part of the saved bundle and of the exported ONNX graph.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> n, P = 40, 6
>>> mask = np.arange(P) < rng.integers(1, P + 1, size=(n, 1))
>>> x = rng.normal(size=(n, P, 3)).astype(np.float32) * mask[..., None]
>>> v = np.abs(rng.normal(size=(n, P, 4))).astype(np.float32) * mask[..., None]
>>> y = (mask.sum(1) > 3).astype(int)
>>> tagger = JetTagger("pfn", epochs=2, progress=False).fit({"x": x, "v": v, "mask": mask}, y)
>>> tagger.predict_proba({"x": x, "v": v, "mask": mask}).shape
(40, 2)
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Strict, TypeAdapter, ValidationError, model_validator

from fivesigma.core.bundle import Bundle
from fivesigma.errors import FivesigmaError, ModelError, close_matches, shorten
from fivesigma.training.estimator import TorchEstimator, TorchParams
from fivesigma.training.inputs import CONSTITUENT_KEYS, as_constituents
from fivesigma.training.params import (
    boolean,
    choice,
    detail_error,
    integer,
    number,
    param,
)
from fivesigma.training.preprocessing import Standardiser

__all__ = ["KIND", "TAGGERS", "JetTagger", "check_inputs", "check_model_params", "load"]

#: bundle kind of a saved :class:`JetTagger`
KIND = "jet_tagger"
#: names accepted for ``JetTagger(model=...)``
TAGGERS: dict[str, str] = {
    "cnn1d": "1D CNN over the pT-ordered constituents (fivesigma.tasks.jets.models.cnn1d)",
    "pfn": "Particle Flow Network / Deep Sets (arXiv:1810.05165)",
    "particlenet": "ParticleNet, EdgeConv on particle clouds (arXiv:1902.08570)",
    "part": "Particle Transformer (arXiv:2202.03772)",
}
_PREDICT_BATCH = 1024
#: jets per batch of the validation loss during fit: ParT's pair tensors are
#: (jets, P, P, width), about 1 GB at 800 jets of 100 constituents and width 32
_VALID_BATCH = 256

#: validate a batch dict and return ``(x, v, mask)``; see
#: :func:`fivesigma.training.inputs.as_constituents`
check_inputs = as_constituents


# --------------------------------------------------------------------------------------
# torch wrappers (standardisation in the graph; probabilities for inference and ONNX)


def _wrappers() -> tuple[type, type]:
    import torch
    from torch import nn

    class Standardised(nn.Module):
        """``(x - mean) / scale`` on real particles, then the network -> logits.

        With ``crop`` (eager training and inference only) trailing particle slots that are
        padded in every jet of the batch are cut away first: the output does not change
        (the models are padding-invariant) but the work does.
        """

        def __init__(
            self, net: nn.Module, mean: np.ndarray, scale: np.ndarray, crop: bool = True
        ) -> None:
            super().__init__()
            self.net = net
            self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
            self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
            self.crop = crop

        def forward(self, x: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            if self.crop and not torch.jit.is_tracing():
                used = torch.nonzero(mask.any(dim=0))
                n = int(used.max()) + 1 if used.numel() else 1
                x, v, mask = x[:, :n], v[:, :n], mask[:, :n]  # (B, n, .)
            z = (x - self.mean) / self.scale
            z = torch.where(mask.unsqueeze(-1), z, torch.zeros_like(z))
            return self.net(z, v, mask)

    class Probabilities(nn.Module):
        """ONNX/inference head: float mask in (> 0.5 = real), softmax probabilities out."""

        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.inner(x, v, mask > 0.5), dim=-1)

    return Standardised, Probabilities


# --------------------------------------------------------------------------------------
# Hyper-parameters


def _strict(hint: Any) -> tuple[Any, str]:
    """A strict pydantic type for a network config field's annotation, and its description
    in words: ``int`` refuses bools, floats and strings, ``tuple[int, ...]`` a single
    number or a string, and so on."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return boolean, "true or false"
    if hint is int:
        return integer(), "an integer"
    if hint is float:
        return number(), "a number"
    if hint is str:
        return Annotated[str, Strict()], "a string"
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item, words = _strict(args[0])
        words = words.replace("an integer", "integers").replace("a list", "lists")
        return list[item], f"a list of {words}"
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            item, words = _strict(rest[0])
            return item | None, f"{words} or null"
    return Any, "a value"


def _no_sets(value: Any) -> bool:
    """Sizes come as lists or tuples, not as sets (which pydantic would take for a list,
    in no particular order)."""
    if isinstance(value, list | tuple):
        return all(_no_sets(v) for v in value)
    return not isinstance(value, set | frozenset)


def check_model_params(model: str, model_params: Any, size: str = "default") -> None:
    """Validate a tagger's ``model_params`` with its network config: the names are the
    config's fields, each value has the field's type (strictly: no bool for an int, no
    string for a list) and the config accepts the whole (its own range checks).  Raises a
    one-line :class:`ModelError` (imports torch: the configs live with the networks)."""
    import dataclasses

    from fivesigma.tasks.jets.models import MODELS, make_config

    if not model_params:
        return
    config_cls = MODELS[model][0]
    hints = typing.get_type_hints(config_cls)
    names = [f.name for f in dataclasses.fields(config_cls)]
    for key, value in model_params.items():
        if key in ("n_features", "n_classes") or key not in names:
            continue  # make_config names the unknown key with what is accepted
        strict, words = _strict(hints.get(key, Any))
        try:
            TypeAdapter(strict).validate_python(value)
            ok = _no_sets(value)
        except ValidationError:
            ok = False
        if not ok:
            raise ModelError(f"{key} must be {words}, got {shorten(repr(value))}")
    coords = model_params.get("coord_indices")
    n_features = 1 + max([1, *(coords if isinstance(coords, list | tuple) else ())])
    try:
        make_config(model, max(n_features, 8), 2, dict(model_params), size)
    except FivesigmaError as err:
        raise ModelError(shorten(str(err), 300)) from None


# --------------------------------------------------------------------------------------
# The estimator


class JetTagger(TorchEstimator):
    """Train and apply a jet tagger (``cnn1d``, ``pfn``, ``particlenet`` or ``part``).

    Parameters
    ----------
    model : tagger name, one of :data:`TAGGERS`.
    model_params : overrides of the network's config fields (e.g. ``{"k": 16}``).
    size : ``"default"`` (CPU-friendly) or ``"paper"`` (the published size), before
        ``model_params`` are applied.
    n_classes : number of classes; ``None``: from the training labels (all must appear).
    epochs, batch_size, lr, weight_decay, scheduler, early_stopping_patience, min_delta :
        the training loop (:class:`~fivesigma.training.TrainerConfig`).
    class_weight : ``"balanced"`` (each class gets the same total weight), None, or
        ``{class: factor}``; applied on top of the event weights.
    valid_fraction : without ``valid``, this fraction of each class (chosen by ``seed``)
        is held out for early stopping; 0 disables that.
    standardize : standardise each feature of ``x`` over the real training particles.
    seed : network initialisation, shuffling, dropout and the validation split.
    num_threads, progress, checkpoint_dir, device : passed to the trainer; ``device``
        (``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"``) is also where
        :meth:`predict_proba` runs.  :func:`load` gives ``"cpu"``.

    ``fit(inputs, y, sample_weight=None, *, valid=None, feature_names=None)`` takes the
    constituents dict; ``valid`` is ``(inputs, y)`` or ``(inputs, y, weight)`` and
    ``feature_names`` names the F particle features.  Prediction runs without autograd in
    batches of jets of similar multiplicity (sorted by the number of real particles, so
    little padding is processed).
    """

    kind = KIND
    inputs = "constituents"
    what = "jet tagger"
    predict_batch_size = _PREDICT_BATCH
    valid_batch_size = _VALID_BATCH

    class Params(TorchParams):
        """A jet tagger's hyper-parameters: the network, then the shared torch ones."""

        model: Annotated[
            choice(*TAGGERS), param(f"one of {', '.join(TAGGERS)}", "the tagger's network")
        ] = "particlenet"
        model_params: Annotated[
            dict[str, Any] | None,
            param(
                "null or a mapping of the network config's fields to values of their types "
                "(e.g. {k: 16} for particlenet)",
                "overrides of the network's config fields",
            ),
        ] = None
        size: Annotated[
            choice("default", "paper"),
            param("default or paper", "the network's size before model_params"),
        ] = "default"
        n_classes: Annotated[
            integer(ge=2) | None,
            param("an integer >= 2 or null (from the labels)", "number of classes"),
        ] = None
        standardize: Annotated[
            boolean, param("true or false", "standardise each particle feature of x")
        ] = True
        epochs: Annotated[
            integer(ge=1),
            param("an integer >= 1", "maximum number of passes over the training data"),
        ] = 30
        batch_size: Annotated[integer(ge=1), param("an integer >= 1", "jets per step")] = 256
        early_stopping_patience: Annotated[
            integer(ge=1) | None,
            param(
                "an integer >= 1 or null (no early stopping)",
                "epochs without improvement of the validation loss before stopping",
            ),
        ] = 5

        @model_validator(mode="after")
        def _network_config(self) -> Any:
            try:
                check_model_params(self.model, self.model_params, self.size)
            except ModelError as err:
                raise detail_error(str(err), "model_params") from None
            return self

    def __init__(
        self,
        model: str = "particlenet",
        model_params: Mapping[str, Any] | None = None,
        size: str = "default",
        n_classes: int | None = None,
        epochs: int = 30,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        scheduler: str = "cosine",
        early_stopping_patience: int | None = 5,
        min_delta: float = 0.0,
        class_weight: Any = "balanced",
        valid_fraction: float = 0.2,
        standardize: bool = True,
        seed: int = 0,
        num_threads: int | None = None,
        progress: bool = True,
        checkpoint_dir: str | None = None,
        device: str = "cpu",
    ) -> None:
        self.model = model
        self.model_params = model_params
        self.size = size
        self.n_classes = n_classes
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.scheduler = scheduler
        self.early_stopping_patience = early_stopping_patience
        self.min_delta = min_delta
        self.class_weight = class_weight
        self.valid_fraction = valid_fraction
        self.standardize = standardize
        self.seed = seed
        self.num_threads = num_threads
        self.progress = progress
        self.checkpoint_dir = checkpoint_dir
        self.device = device

    def _params_what(self) -> str:
        return self.model if isinstance(self.model, str) and self.model in TAGGERS else self.what

    # -- the network ----------------------------------------------------------------------

    def _network_config(self, n_features: int, n_classes: int) -> Any:
        from fivesigma.tasks.jets.models import MODELS, make_config

        if self.model not in MODELS:
            raise ModelError(
                f"unknown jet tagger {self.model!r}; accepted: {', '.join(TAGGERS)} "
                f"({close_matches(str(self.model), TAGGERS)})"
            )
        return make_config(self.model, n_features, n_classes, self.model_params, self.size)

    def _build_network(self, config: Any) -> Any:
        from fivesigma.tasks.jets.models import MODELS

        model_cls = next(m for c, m in MODELS.values() if type(config) is c)
        return model_cls(config)

    def _network_record(self) -> dict[str, Any]:
        return {
            "name": self.model,
            "config": self.network_config_.to_dict(),
            "n_parameters": self.n_parameters(),
        }

    def _network_config_from_bundle(self, bundle: Bundle, path: str | Path) -> Any:
        from fivesigma.tasks.jets.models import MODELS

        network = bundle.training.get("network", {})
        name = network.get("name", self.model)
        if name not in MODELS:
            raise ModelError(
                f"model bundle '{path}' holds tagger {name!r}; this fivesigma knows "
                f"{', '.join(MODELS)}"
            )
        config_cls = MODELS[name][0]
        try:
            # a field the bundle lacks predates it: the config names its value back then
            legacy = getattr(config_cls, "LEGACY_DEFAULTS", {})
            return config_cls(**{**legacy, **network["config"]})
        except (KeyError, TypeError) as err:
            raise ModelError(f"model bundle '{path}' has no usable network config: {err}") from None

    # -- inputs and preprocessing ---------------------------------------------------------

    def _fit_scaler(self, data: tuple, w: np.ndarray) -> Standardiser:
        x, _, mask = data
        if self.standardize:
            return Standardiser().fit(x[mask].astype(np.float64))
        n = x.shape[2]
        return Standardiser.from_arrays({"mean": np.zeros(n), "scale": np.ones(n)})

    def _preprocessing_record(self) -> dict[str, Any]:
        return {
            "x": self.scaler_.to_dict(),
            "inputs": {
                "x": "(n_jets, P, F)",
                "v": "(n_jets, P, 4) px,py,pz,E GeV",
                "mask": "(n_jets, P) bool",
            },
        }

    def _scaler_from_bundle(self, bundle: Bundle) -> Standardiser:
        return Standardiser.from_dict(bundle.preprocessing.get("x", {}))

    def _model_inputs(self, data: tuple) -> dict[str, Any]:
        import torch

        return {k: torch.from_numpy(a) for k, a in zip(CONSTITUENT_KEYS, data, strict=True)}

    def _training_module(self, net: Any) -> Any:
        standardised, _ = _wrappers()
        return standardised(net, self.scaler_.mean_, self.scaler_.scale_)

    # -- inference ----------------------------------------------------------------------

    def _head(self, export: bool = False) -> Any:
        standardised, probabilities = _wrappers()
        inner = standardised(self.net_, self.scaler_.mean_, self.scaler_.scale_, crop=not export)
        return probabilities(inner).eval()

    def _predict_order(self, data: tuple) -> np.ndarray:
        return np.argsort(data[2].sum(axis=1), kind="stable")  # by multiplicity

    def _onnx_inputs(self) -> dict[str, tuple[Any, list[int | str]]]:
        """Example inputs for the export: ``mask`` is **float32** (1.0 real, 0.0 padding),
        as in weaver's exports: every runtime handles it."""
        import torch

        n_part = max(getattr(self.network_config_, "k", 1) + 2, 8)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(2, n_part, self.n_features_in_, generator=gen)
        p3 = torch.randn(2, n_part, 3, generator=gen)
        v = torch.cat([p3, p3.norm(dim=-1, keepdim=True) + 1.0], dim=-1)
        mask = torch.ones(2, n_part)
        mask[1, n_part // 2 :] = 0.0
        return {
            "x": (x, ["batch", "particles", self.n_features_in_]),
            "v": (v, ["batch", "particles", 4]),
            "mask": (mask, ["batch", "particles"]),
        }

    def _onnx_metadata(self) -> dict[str, str]:
        return {
            "fivesigma.tagger": self.model,
            "fivesigma.mask": "float32, 1.0 = real particle, 0.0 = padding",
        }


def load(path: str | Path) -> JetTagger:
    """Read a bundle written by :meth:`JetTagger.save` and return the fitted tagger (on the
    CPU; set ``tagger.device`` to predict on a GPU)."""
    return JetTagger.load(path)
