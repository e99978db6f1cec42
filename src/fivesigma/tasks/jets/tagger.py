"""``JetTagger``: a scikit-learn-style estimator around the jet tagging networks.

Inputs are padded jet constituents, a dict of arrays (numpy or torch)::

    x     (n_jets, P, F) float   per-particle features (zeros where padded)
    v     (n_jets, P, 4) float   four-momenta (px, py, pz, E) in GeV (zeros where padded)
    mask  (n_jets, P)    bool    True for real particles (0/1 integers or floats accepted)

Labels are ``0..K-1`` (binary: 0 background, 1 signal); event weights may be non-uniform
and negative.  Training uses the shared :class:`~fivesigma.training.Trainer` (seeded,
early stopping, resumable checkpoints).  ``x`` is standardised per feature over the real
particles of the training set (padded entries stay 0); the standardisation is part of
the saved bundle and of the exported ONNX graph.

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

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.core.bundle import Bundle, data_fingerprint, load_bundle, save_bundle
from fivesigma.errors import DataError, ModelError, close_matches
from fivesigma.training.inputs import (
    apply_class_weight,
    as_labels,
    as_weights,
    stratified_holdout,
    torch_threads,
)
from fivesigma.training.params import HyperParameters, params_to_json
from fivesigma.training.preprocessing import Standardiser

__all__ = ["KIND", "TAGGERS", "JetTagger", "load"]

#: bundle kind of a saved :class:`JetTagger`
KIND = "jet_tagger"
#: names accepted for ``JetTagger(model=...)``
TAGGERS: dict[str, str] = {
    "cnn1d": "1D CNN over the pT-ordered constituents (fivesigma.tasks.jets.models.cnn1d)",
    "pfn": "Particle Flow Network / Deep Sets (arXiv:1810.05165)",
    "particlenet": "ParticleNet, EdgeConv on particle clouds (arXiv:1902.08570)",
    "part": "Particle Transformer (arXiv:2202.03772)",
}
_INPUT_KEYS = ("x", "v", "mask")
_PREDICT_BATCH = 1024
#: jets per batch of the validation loss during fit: ParT's pair tensors are
#: (jets, P, P, width), about 1 GB at 800 jets of 100 constituents and width 32
_VALID_BATCH = 256


# --------------------------------------------------------------------------------------
# Input validation


def check_inputs(
    inputs: Any, name: str = "inputs", n_features: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate a batch dict and return ``(x, v, mask)`` as float32, float32, bool arrays.

    Padded entries of ``x`` and ``v`` are set to 0 (whatever they held); NaN/inf in a real
    particle raise :class:`DataError`.
    """
    if not isinstance(inputs, Mapping):
        raise DataError(
            f"{name} must be a dict with keys 'x', 'v', 'mask', got {type(inputs).__name__}"
        )
    missing = [k for k in _INPUT_KEYS if k not in inputs]
    if missing:
        raise DataError(
            f"{name} lacks {', '.join(repr(m) for m in missing)}; it needs 'x' (n_jets, P, F), "
            "'v' (n_jets, P, 4) and 'mask' (n_jets, P)"
        )

    def numeric(key: str) -> np.ndarray:
        arr = _to_numpy(inputs[key])
        if arr.dtype.kind not in "fiub":
            raise DataError(f"{name}['{key}'] has dtype {arr.dtype}; expected a float array")
        return arr.astype(np.float32, copy=False)

    x, v = numeric("x"), numeric("v")
    mask = _to_numpy(inputs["mask"])
    if x.ndim != 3:
        raise DataError(f"{name}['x'] must be 3-D (n_jets, P, n_features), got shape {x.shape}")
    if x.shape[0] == 0:
        raise DataError(f"{name} has no jets")
    n, p = x.shape[:2]
    if v.shape != (n, p, 4):
        raise DataError(
            f"{name}['v'] has shape {v.shape}; expected {(n, p, 4)} (px, py, pz, E per particle, "
            "same jets and particles as 'x')"
        )
    if mask.shape != (n, p):
        raise DataError(
            f"{name}['mask'] has shape {mask.shape}; expected {(n, p)} like x's first two axes"
        )
    if mask.dtype != bool:
        if mask.dtype.kind not in "iuf" or not np.all((mask == 0) | (mask == 1)):
            raise DataError(
                f"{name}['mask'] has dtype {mask.dtype} with values other than 0/1; "
                "expected a bool array (True = real particle)"
            )
        mask = mask.astype(bool)
    if n_features is not None and x.shape[2] != n_features:
        raise DataError(
            f"{name}['x'] has {x.shape[2]} features per particle but the tagger was trained on {n_features}"
        )
    keep = mask[..., None]
    x = np.where(keep, x, np.float32(0))
    v = np.where(keep, v, np.float32(0))
    for key, arr in (("x", x), ("v", v)):
        bad = ~np.isfinite(arr)
        if bad.any():
            raise DataError(
                f"{name}['{key}'] has {int(bad.sum())} NaN/inf values in real particles; "
                "fill or remove them first"
            )
    return np.ascontiguousarray(x), np.ascontiguousarray(v), np.ascontiguousarray(mask)


def _to_numpy(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):  # a torch tensor
        a = a.detach().cpu().numpy()
    try:
        return np.asarray(a)
    except (TypeError, ValueError) as err:
        raise DataError(f"input cannot be read as an array: {err}") from None


def _n_classes(y: np.ndarray, n_classes: int | None) -> int:
    classes = np.unique(y)
    if classes.size < 2:
        raise DataError(
            f"training labels contain only class {int(classes[0])}; a tagger needs at least two "
            "classes (binary: 0 background, 1 signal)"
        )
    if n_classes is None:
        if classes[-1] != classes.size - 1:
            raise DataError(
                f"training labels are {classes.tolist()}; classes must be 0..K-1 with every class "
                "present (or give n_classes)"
            )
        return int(classes.size)
    if not isinstance(n_classes, int) or n_classes < 2:
        raise ModelError(f"jet tagger n_classes must be an integer >= 2 or None, got {n_classes!r}")
    if classes[-1] >= n_classes:
        raise DataError(f"training labels go up to {int(classes[-1])} but n_classes is {n_classes}")
    return n_classes


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
# The estimator


class JetTagger(HyperParameters):
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
    """

    kind = KIND

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

    # -- network and loop settings ----------------------------------------------------

    def _network_config(self, n_features: int, n_classes: int) -> Any:
        from fivesigma.tasks.jets.models import make_config

        return make_config(self.model, n_features, n_classes, self.model_params, self.size)

    def _trainer_config(self) -> Any:
        from dataclasses import replace

        from fivesigma.training.trainer import TrainerConfig

        return replace(
            TrainerConfig.from_estimator(self, "jet tagger"), eval_batch_size=_VALID_BATCH
        )

    def fit(
        self,
        inputs: Mapping[str, Any],
        y: Any,
        sample_weight: Any = None,
        valid: Sequence[Any] | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> JetTagger:
        """Train on padded constituents ``inputs`` with labels ``y`` and event weights.

        Parameters
        ----------
        inputs : dict with ``x`` (n_jets, P, F), ``v`` (n_jets, P, 4) in GeV, ``mask`` (n_jets, P).
        y : (n_jets,) integer labels 0..K-1 (binary: 0 background, 1 signal).
        sample_weight : (n_jets,) event weights, default 1; negative values allowed.
        valid : optional ``(inputs, y)`` or ``(inputs, y, weight)`` for early stopping.
        feature_names : names of the F particle features (default x0, x1, ...).
        """
        import torch

        from fivesigma.tasks.jets.models import MODELS
        from fivesigma.training.trainer import Trainer

        if self.model not in MODELS:
            raise ModelError(
                f"unknown jet tagger {self.model!r}; accepted: {', '.join(TAGGERS)} "
                f"({close_matches(str(self.model), TAGGERS)})"
            )
        x, v, mask = check_inputs(inputs, "inputs")
        ya = as_labels(y, x.shape[0], "y", "inputs")
        wa = as_weights(sample_weight, x.shape[0], "sample_weight", "inputs")
        n_classes = _n_classes(ya, self.n_classes)
        n_features = x.shape[2]
        names = (
            [str(n) for n in feature_names]
            if feature_names is not None
            else [f"x{i}" for i in range(n_features)]
        )
        if len(names) != n_features:
            raise DataError(
                f"{len(names)} feature_names given for {n_features} particle features of x"
            )
        net_cfg = self._network_config(n_features, n_classes)
        trainer_cfg = self._trainer_config()
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ModelError(
                f"jet tagger valid_fraction must be in [0, 1), got {self.valid_fraction!r}"
            )

        train = (x, v, mask, ya, wa)
        valid_arrays = None
        if valid is not None:
            if not isinstance(valid, Sequence) or len(valid) not in (2, 3):
                raise DataError("valid must be a tuple (inputs, y) or (inputs, y, weight)")
            xv, vv, mv = check_inputs(valid[0], "valid inputs", n_features)
            yv = as_labels(valid[1], xv.shape[0], "valid y", "valid inputs")
            if yv.max() >= n_classes:
                raise DataError(
                    f"valid y contains class {int(yv.max())}; the tagger has classes 0..{n_classes - 1}"
                )
            wv = as_weights(
                valid[2] if len(valid) == 3 else None, xv.shape[0], "valid weight", "valid inputs"
            )
            valid_arrays = (xv, vv, mv, yv, wv)
        elif self.valid_fraction > 0:
            train, valid_arrays = _split_validation(
                train, n_classes, self.valid_fraction, self.seed
            )

        self.n_features_in_ = n_features
        self.feature_names_in_ = names
        self.n_classes_ = n_classes
        self.classes_ = np.arange(n_classes)
        self.data_fingerprint_ = data_fingerprint(x, v, mask, ya, wa)
        self.network_config_ = net_cfg
        xt, _, mt, _, _ = train
        if self.standardize:
            self.scaler_ = Standardiser().fit(xt[mt].astype(np.float64))
        else:
            self.scaler_ = Standardiser.from_arrays(
                {"mean": np.zeros(n_features), "scale": np.ones(n_features)}
            )

        def tensors(arrays: tuple, role: str) -> dict[str, torch.Tensor]:
            xa, va, ma, yl, wl = arrays
            wl = apply_class_weight(yl, wl, self.class_weight, n_classes, role)
            return {
                "x": torch.from_numpy(xa),
                "v": torch.from_numpy(va),
                "mask": torch.from_numpy(ma),
                "target": torch.from_numpy(yl.astype(np.int64)),
                "weight": torch.from_numpy(wl.astype(np.float32)),
            }

        train_t = tensors(train, "training")
        valid_t = tensors(valid_arrays, "validation") if valid_arrays is not None else None

        def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.cross_entropy(logits, target, reduction="none")

        standardised, _ = _wrappers()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)  # initial weights come from the seed too
            net = MODELS[self.model][1](net_cfg)
        wrapped = standardised(net, self.scaler_.mean_, self.scaler_.scale_)
        self.history_ = Trainer(trainer_cfg).fit(wrapped, train_t, valid_t, loss_fn)
        self.net_ = net.cpu().eval()
        return self

    # -- prediction ---------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise ModelError(
                "JetTagger is not fitted yet; call fit(inputs, y) first or load a bundle"
            )

    def n_parameters(self) -> int:
        """Number of network parameters (elements)."""
        self._check_fitted()
        return int(self.net_.n_parameters())

    def _head(self, crop: bool) -> Any:
        standardised, probabilities = _wrappers()
        inner = standardised(self.net_, self.scaler_.mean_, self.scaler_.scale_, crop=crop)
        return probabilities(inner).eval()

    def predict_proba(self, inputs: Mapping[str, Any]) -> np.ndarray:
        """Class probabilities, shape ``(n_jets, n_classes)``; rows sum to 1.

        Runs without autograd in batches of jets of similar multiplicity (sorted by the
        number of real particles, so little padding is processed).
        """
        import torch

        from fivesigma.training.trainer import resolve_device

        self._check_fitted()
        x, v, mask = check_inputs(inputs, "inputs", self.n_features_in_)
        device = resolve_device(self.device)
        head = self._head(crop=True).to(device)
        order = np.argsort(mask.sum(axis=1), kind="stable")
        out = np.empty((x.shape[0], self.n_classes_), dtype=np.float64)
        try:
            with torch.no_grad(), torch_threads(self.num_threads):
                for start in range(0, len(order), _PREDICT_BATCH):
                    idx = order[start : start + _PREDICT_BATCH]
                    p = head(
                        torch.from_numpy(x[idx]).to(device),
                        torch.from_numpy(v[idx]).to(device),
                        torch.from_numpy(mask[idx].astype(np.float32)).to(device),
                    )
                    out[idx] = p.cpu().numpy()
        finally:
            self.net_.cpu()  # the fitted network lives on the CPU (saving, pickling, ONNX)
        return out

    def predict(self, inputs: Mapping[str, Any]) -> np.ndarray:
        """Most probable class per jet."""
        return np.argmax(self.predict_proba(inputs), axis=1)

    def score(self, inputs: Mapping[str, Any]) -> np.ndarray:
        """Signal probability P(class 1) per jet (binary taggers)."""
        self._check_fitted()
        if self.n_classes_ != 2:
            raise ModelError(
                f"score() is for binary taggers; this one has {self.n_classes_} classes: "
                "use predict_proba(inputs)"
            )
        return self.predict_proba(inputs)[:, 1]

    # -- export -------------------------------------------------------------------------

    def export_onnx(self, path: str | Path, opset: int = 17) -> Path:
        """Write an ONNX model of the tagger, standardisation included.

        Inputs: ``x`` (batch, particles, F) float32 raw features, ``v`` (batch, particles, 4)
        float32 four-momenta in GeV, ``mask`` (batch, particles) **float32**, 1.0 for real
        particles and 0.0 for padding (float rather than bool, as in weaver's exports:
        every runtime handles it).  Output: ``probabilities`` (batch, n_classes).  Batch and
        particle axes are dynamic.
        """
        import torch

        from fivesigma.core.files import atomic_file

        self._check_fitted()
        try:
            import onnx
        except ImportError:
            raise ModelError(
                "ONNX export needs the onnx package: pip install 'fivesigma[ml]'"
            ) from None
        head = self._head(crop=False)
        n_part = max(getattr(self.network_config_, "k", 1) + 2, 8)
        gen = torch.Generator().manual_seed(0)
        dummy_x = torch.randn(2, n_part, self.n_features_in_, generator=gen)
        p3 = torch.randn(2, n_part, 3, generator=gen)
        dummy_v = torch.cat([p3, p3.norm(dim=-1, keepdim=True) + 1.0], dim=-1)
        dummy_mask = torch.ones(2, n_part)
        dummy_mask[1, n_part // 2 :] = 0.0
        path = Path(path)
        axes = {"batch": 0, "particles": 1}
        with atomic_file(path) as tmp, warnings.catch_warnings():
            # the TorchScript exporter is deprecated but needs no onnxscript
            warnings.simplefilter("ignore")
            torch.onnx.export(
                head,
                (dummy_x, dummy_v, dummy_mask),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=["x", "v", "mask"],
                output_names=["probabilities"],
                dynamic_axes={
                    "x": {v: k for k, v in axes.items()},
                    "v": {v: k for k, v in axes.items()},
                    "mask": {v: k for k, v in axes.items()},
                    "probabilities": {0: "batch"},
                },
            )
            model = onnx.load(str(tmp))
            # the exporter drops inputs a network ignores (the CNN and PFN never read v);
            # keep all three so every tagger is called the same way
            present = {i.name for i in model.graph.input}
            shapes = {
                "x": ["batch", "particles", self.n_features_in_],
                "v": ["batch", "particles", 4],
                "mask": ["batch", "particles"],
            }
            for pos, name in enumerate(_INPUT_KEYS):
                if name not in present:
                    model.graph.input.insert(
                        pos,
                        onnx.helper.make_tensor_value_info(
                            name, onnx.TensorProto.FLOAT, shapes[name]
                        ),
                    )
            for key, value in (
                ("fivesigma.features", json.dumps(self.feature_names_in_)),
                ("fivesigma.tagger", self.model),
                ("fivesigma.mask", "float32, 1.0 = real particle, 0.0 = padding"),
            ):
                meta = model.metadata_props.add()
                meta.key, meta.value = key, value
            onnx.save(model, str(tmp))
        return path

    # -- persistence --------------------------------------------------------------------

    def save(
        self,
        path: str | Path,
        data: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write a model bundle (kind ``"jet_tagger"``, weights in safetensors) atomically.

        ``data`` and ``metadata`` are stored as given (JSON-serialisable); after
        :func:`load` they are in ``bundle_data_`` and ``bundle_metadata_``.
        """
        self._check_fitted()
        arrays = {f"net.{k}": t.detach().cpu().numpy() for k, t in self.net_.state_dict().items()}
        training: dict[str, Any] = {
            "n_classes": int(self.n_classes_),
            "network": {
                "name": self.model,
                "config": self.network_config_.to_dict(),
                "n_parameters": self.n_parameters(),
            },
        }
        if hasattr(self, "history_"):
            training["history"] = self.history_.to_dict()
        bundle = Bundle(
            kind=KIND,
            features=list(self.feature_names_in_),
            params=params_to_json(self.get_params(), "jet tagger"),
            preprocessing={
                "x": self.scaler_.to_dict(),
                "inputs": {
                    "x": "(n_jets, P, F)",
                    "v": "(n_jets, P, 4) px,py,pz,E GeV",
                    "mask": "(n_jets, P) bool",
                },
            },
            data={"fingerprint": self.data_fingerprint_, **dict(data or {})},
            training=training,
            arrays=arrays,
            metadata=dict(metadata or {}),
        )
        return save_bundle(bundle, path)


def _split_validation(arrays: tuple, n_classes: int, fraction: float, seed: int) -> tuple:
    """Deterministic stratified hold-out of ``fraction`` of each class (labels: arrays[3])."""
    is_valid = stratified_holdout(arrays[3], n_classes, fraction, seed)
    if not is_valid.any():
        return arrays, None
    return tuple(a[~is_valid] for a in arrays), tuple(a[is_valid] for a in arrays)


def load(path: str | Path) -> JetTagger:
    """Read a bundle written by :meth:`JetTagger.save` and return the fitted tagger."""
    import torch

    from fivesigma.tasks.jets.models import MODELS

    bundle = load_bundle(path)
    if bundle.kind != KIND:
        raise ModelError(
            f"model bundle '{path}' has kind {bundle.kind!r}, not a jet tagger ({KIND!r})"
        )
    params = dict(bundle.params)
    JetTagger.check_param_names(params, where=f"bundle '{path}'")
    # A bundle predicts on the CPU wherever it was trained; set ``tagger.device`` for a GPU.
    params["device"] = "cpu"
    tagger = JetTagger(**params)
    network = bundle.training.get("network", {})
    name = network.get("name", tagger.model)
    if name not in MODELS:
        raise ModelError(
            f"model bundle '{path}' holds tagger {name!r}; this fivesigma knows {', '.join(MODELS)}"
        )
    config_cls, model_cls = MODELS[name]
    try:
        # a field the bundle lacks predates it: the config names its value back then
        legacy = getattr(config_cls, "LEGACY_DEFAULTS", {})
        config = config_cls(**{**legacy, **network["config"]})
    except (KeyError, TypeError) as err:
        raise ModelError(f"model bundle '{path}' has no usable network config: {err}") from None
    net = model_cls(config)
    state = {
        k[len("net.") :]: torch.from_numpy(np.array(a))
        for k, a in bundle.arrays.items()
        if k.startswith("net.")
    }
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise ModelError(
            f"model bundle '{path}': weights do not match the {name} network: {str(err).splitlines()[0]}"
        ) from None
    tagger.net_ = net.eval()
    tagger.network_config_ = config
    tagger.n_features_in_ = config.n_features
    tagger.feature_names_in_ = list(bundle.features)
    tagger.n_classes_ = int(bundle.training.get("n_classes", config.n_classes))
    tagger.classes_ = np.arange(tagger.n_classes_)
    tagger.scaler_ = Standardiser.from_dict(bundle.preprocessing.get("x", {}))
    tagger.data_fingerprint_ = bundle.data.get("fingerprint", "")
    tagger.bundle_data_ = dict(bundle.data)
    tagger.bundle_metadata_ = dict(bundle.metadata)
    if "history" in bundle.training:
        from fivesigma.training.trainer import TrainHistory

        tagger.history_ = TrainHistory.from_dict(bundle.training["history"])
    return tagger
