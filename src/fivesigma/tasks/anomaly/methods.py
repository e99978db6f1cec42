"""Anomaly-detection methods behind one API: fit on an :class:`AnomalySample`, ``score``.

Every method is an :class:`AnomalyMethod`: ``make_method(name, settings)`` builds it,
``fit(sample)`` trains it (the validation events for early stopping are carved out of the
training events, deterministically in ``settings.seed``), ``score(x)`` returns one finite
number per event, higher for more anomalous, and ``save``/:func:`load` write and read a
model bundle of kind ``"anomaly_detector"``.  Inputs are standardised inside every method
(the parameters travel in the bundle).

========================  ==============  ============================================
method                    kind            trained on, score
========================  ==============  ============================================
``autoencoder``           unsupervised    SR data; reconstruction MSE
``vae``                   unsupervised    SR data; reconstruction + beta * KL at z = mu
``deep_svdd``             unsupervised    SR data; ``||phi(x) - c||^2`` (Ruff et al. 2018)
``flow``                  density         SR data; ``-log p(x)`` (neural spline flow)
``cwola``                 weak            SR (1) against SB (0); classifier log-odds
``cathode``               weak            SR (1) against ``p(x | m_JJ)`` samples (0)
``iad``                   reference       SR (1) against pure background in the SR (0)
``supervised``            reference       labelled signal (1) against background (0)
========================  ==============  ============================================

Classifiers are the shared MLP (:class:`fivesigma.nn.mlp.MLP`, 3 x 64 ReLU like CATHODE)
with the binary cross-entropy, class-balancing weights (both classes weigh the same in the
loss) and early stopping on the validation loss.  ``settings.ensemble = k`` averages the
probabilities of the k epochs with the lowest validation loss of one training (CATHODE's
choice), so it costs no extra training; the score is the log-odds of that average.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> n = 2000
>>> x = rng.normal(size=(n, 2)); mjj = rng.uniform(3000, 4000, n)
>>> sample = AnomalySample(x=x, mjj=mjj, in_sr=mjj > 3300, in_sb=mjj <= 3300)
>>> ae = make_method("autoencoder", MethodSettings(epochs=2, latent=1, hidden=(8,)))
>>> ae.fit(sample).score(x[:3]).shape
(3,)
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fivesigma.core import extras
from fivesigma.core.bundle import Bundle, bundle_kind, load_bundle, save_bundle
from fivesigma.errors import ConfigError, DataError, ModelError, shorten
from fivesigma.training.preprocessing import Standardiser

__all__ = [
    "BUNDLE_KIND",
    "METHODS",
    "AnomalyMethod",
    "AnomalySample",
    "AutoencoderMethod",
    "CWoLaMethod",
    "CathodeMethod",
    "DeepSVDDMethod",
    "FlowMethod",
    "IADMethod",
    "MethodSettings",
    "SupervisedMethod",
    "VAEMethod",
    "load",
    "make_method",
]

BUNDLE_KIND = "anomaly_detector"

#: events per forward pass when scoring or sampling (bounds the memory, not the result)
_CHUNK = 65_536


# --------------------------------------------------------------------------------------
# Inputs and settings


@dataclass
class AnomalySample:
    """What every method's ``fit`` receives (numpy, float64).

    Attributes
    ----------
    x : (n, k) features of the "data" (background plus injected signal), every m_JJ.
    mjj : (n,) the conditional variable m_JJ in GeV.
    in_sr, in_sb : (n,) bool, the signal region and the sidebands.
    truth : (n,) 1 for signal; only the ``supervised`` reference may read it.
    background_sr : (m, k) an independent pure-background sample in the SR (``iad``,
        ``supervised``).
    background_sr_mjj : (m,) its m_JJ.
    signal : (s, k) labelled signal events (``supervised``).
    """

    x: np.ndarray
    mjj: np.ndarray | None
    in_sr: np.ndarray
    in_sb: np.ndarray
    truth: np.ndarray | None = None
    background_sr: np.ndarray | None = None
    background_sr_mjj: np.ndarray | None = None
    signal: np.ndarray | None = None


@dataclass
class MethodSettings:
    """The knobs every method takes; each method reads the ones that concern it.

    Attributes
    ----------
    hidden : hidden-layer widths of the classifier, autoencoder (encoder; the decoder
        mirrors it) and Deep SVDD networks.
    epochs, batch_size, learning_rate, weight_decay, patience : the training loop (AdamW,
        early stopping after ``patience`` epochs without a better validation loss).
    valid_fraction : fraction of the training events held out for early stopping (per
        class for the classifiers), chosen by ``seed``; 0 trains on everything and keeps
        the last epoch.
    seed : network initialisation, shuffling, the validation split, sampling.
    progress : a progress bar per training.
    num_threads : torch CPU threads while fitting, scoring and sampling; None: unchanged.
    scheduler : learning-rate schedule of the trainer (``none``, ``cosine``, ``plateau``,
        ``onecycle``); constant by default, as in CATHODE.
    latent : latent dimension of the autoencoder and VAE, output dimension of Deep SVDD.
    beta : weight of the KL term of the VAE (training loss and score).
    flow_transforms, flow_hidden, flow_bins : the neural spline flow
        (:func:`fivesigma.nn.flows.spline_flow`, zuko's ``NSF``).
    flow_epochs : epochs of the flow (``flow``, ``cathode``); None: ``epochs``.
    oversampling : CATHODE samples per SR data event.
    ensemble : classifiers averaged: the ``ensemble`` epochs of lowest validation loss of
        one training (CATHODE's choice; no retraining).
    mjj_kde_bandwidth : ``bw_method`` of the m_JJ KDE of CATHODE (a factor); None: Scott.
    image_hidden, image_latent : the image autoencoder's encoder widths and latent
        dimension (``hidden`` and ``latent`` are sized for a handful of features, too small
        for 1600 pixels).
    """

    hidden: tuple[int, ...] = (64, 64, 64)
    epochs: int = 100
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 10
    valid_fraction: float = 0.2
    seed: int = 0
    progress: bool = False
    num_threads: int | None = None
    scheduler: str = "none"
    latent: int = 2
    beta: float = 1.0
    flow_transforms: int = 4
    flow_hidden: tuple[int, ...] = (64, 64)
    flow_bins: int = 8
    flow_epochs: int | None = None
    oversampling: int = 4
    ensemble: int = 1
    mjj_kde_bandwidth: float | None = None
    image_hidden: tuple[int, ...] = (256, 64)
    image_latent: int = 8

    def __post_init__(self) -> None:
        # lists from YAML/JSON become tuples so that equal settings compare equal
        for name in ("hidden", "flow_hidden", "image_hidden"):
            value = getattr(self, name)
            if isinstance(value, list | tuple):
                setattr(self, name, tuple(value))

    def validate(self) -> MethodSettings:
        """Raise :class:`ConfigError` (one line) for an impossible setting; return self."""

        def positive_int(name: str, allow_none: bool = False) -> None:
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if not _integer(value) or value < 1:
                raise ConfigError(
                    f"method setting {name} must be a positive integer"
                    f"{' or null' if allow_none else ''}, got {value!r}"
                )

        def widths(name: str) -> None:
            value = getattr(self, name)
            ok = isinstance(value, tuple) and len(value) > 0
            if not ok or not all(_integer(h) and h >= 1 for h in value):
                raise ConfigError(
                    f"method setting {name} must be a non-empty list of positive integers, "
                    f"got {value!r}"
                )

        widths("hidden")
        widths("flow_hidden")
        widths("image_hidden")
        counts = ("epochs", "batch_size", "patience", "latent", "flow_transforms", "flow_bins")
        for name in (*counts, "oversampling", "ensemble", "image_latent"):
            positive_int(name)
        positive_int("flow_epochs", allow_none=True)
        positive_int("num_threads", allow_none=True)
        if not _number(self.learning_rate) or not self.learning_rate > 0:
            raise ConfigError(
                f"method setting learning_rate must be > 0, got {self.learning_rate!r}"
            )
        for name in ("weight_decay", "beta"):
            value = getattr(self, name)
            if not _number(value) or not value >= 0:
                raise ConfigError(f"method setting {name} must be a number >= 0, got {value!r}")
        if not _number(self.valid_fraction) or not 0 <= self.valid_fraction < 1:
            raise ConfigError(
                f"method setting valid_fraction must be in [0, 1), got {self.valid_fraction!r}"
            )
        if not _integer(self.seed) or self.seed < 0:
            raise ConfigError(f"method setting seed must be an integer >= 0, got {self.seed!r}")
        if self.scheduler not in ("none", "cosine", "plateau", "onecycle"):
            raise ConfigError(
                f"method setting scheduler {self.scheduler!r} is not known; accepted: none, "
                "cosine, plateau, onecycle"
            )
        bw = self.mjj_kde_bandwidth
        if bw is not None and (not _number(bw) or not bw > 0):
            raise ConfigError(
                f"method setting mjj_kde_bandwidth must be a number > 0 or null, got {bw!r}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable copy (tuples as lists)."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["flow_hidden"] = list(self.flow_hidden)
        d["image_hidden"] = list(self.image_hidden)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MethodSettings:
        """Inverse of :meth:`to_dict`; an unknown key is a :class:`ConfigError`."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(k for k in d if k not in known)
        if unknown:
            raise ConfigError(
                f"unknown method setting(s) {', '.join(map(repr, unknown))}; accepted: "
                f"{', '.join(known)}"
            )
        return cls(**dict(d)).validate()


def _integer(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _matrix(x: Any, what: str, n_features: int | None = None) -> np.ndarray:
    """``x`` as a finite 2-D float64 array (of ``n_features`` columns when given)."""
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{what} is not a numeric array") from None
    if x.ndim == 1 and n_features == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise DataError(f"{what} must be a 2-D array (events, features), got shape {x.shape}")
    if n_features is not None and x.shape[1] != n_features:
        raise DataError(f"{what} has {x.shape[1]} features; the model expects {n_features}")
    bad = int(np.count_nonzero(~np.isfinite(x).all(axis=1)))
    if bad:
        raise DataError(f"{what} has {bad} event(s) with NaN or inf features; remove them first")
    return x


def _mask(m: Any, n: int, what: str) -> np.ndarray:
    m = np.asarray(m)
    if m.shape != (n,):
        raise DataError(f"{what} must have shape ({n},), got {m.shape}")
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise DataError(f"{what} must be boolean (or 0/1)")
        m = m.astype(bool)
    return m


# --------------------------------------------------------------------------------------
# torch helpers (torch is imported inside functions: importing this module stays light)


@contextlib.contextmanager
def _torch_scope(seed: int | None, num_threads: int | None) -> Iterator[Any]:
    """torch with its global RNG forked (seeded when ``seed`` is given) and the thread
    count set; both are restored on exit, so a method never disturbs its caller."""
    torch = extras.torch()
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        try:
            yield torch
        finally:
            torch.set_num_threads(threads)


def _dense(widths: tuple[int, ...], *, bias: bool = True) -> Any:
    """``Linear -> ReLU`` between consecutive ``widths``, the last Linear bare."""
    nn = extras.torch().nn
    layers: list[Any] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1], bias=bias))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _classifier_net(n_features: int, s: MethodSettings) -> Any:
    from fivesigma.nn.mlp import MLP, MLPConfig

    return MLP(MLPConfig(n_inputs=n_features, n_classes=2, hidden=s.hidden))


def _flow_net(n_features: int, context: int, s: MethodSettings) -> Any:
    extras.zuko()  # the install hint when zuko is missing
    from fivesigma.nn.flows import spline_flow

    return spline_flow(n_features, context, s.flow_bins, s.flow_transforms, s.flow_hidden)


def _split(n: int, fraction: float, seed: int, stream: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices of ``n`` events; ``stream`` separates the splits of
    different arrays drawn with one seed."""
    order = np.random.default_rng([seed, 0x5A1, stream]).permutation(n)
    n_valid = round(fraction * n)
    if n_valid < 1 or n - n_valid < 1:
        return np.sort(order), np.empty(0, dtype=np.int64)
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


def _train(
    model: Any,
    train: Any,
    valid: Any | None,
    s: MethodSettings,
    *,
    epochs: int | None = None,
    loss_fn: Callable | None = None,
    objective: Callable | None = None,
    keep: int = 1,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Fit ``model`` with the shared :class:`Trainer`; return its history (a dict) and the
    state dicts of the ``keep`` epochs with the lowest validation loss (best first)."""
    from fivesigma.training.trainer import Trainer, TrainerConfig

    config = TrainerConfig(
        epochs=epochs or s.epochs,
        batch_size=s.batch_size,
        lr=float(s.learning_rate),
        weight_decay=float(s.weight_decay),
        scheduler=s.scheduler,  # type: ignore[arg-type]
        early_stopping_patience=s.patience,
        seed=int(s.seed),
        num_threads=s.num_threads,
        progress=s.progress,
        device="cpu",
    )
    snapshots: dict[int, dict[str, Any]] = {}

    def snapshot(epoch: int, history: Any) -> None:
        if keep > 1:
            snapshots[epoch] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    history = Trainer(config, callbacks=[snapshot]).fit(
        model, train, valid, loss_fn, objective=objective
    )
    if keep <= 1:
        return history.to_dict(), [model.state_dict()]
    losses = history.val_loss if valid is not None else [-e for e in range(len(history.val_loss))]
    epochs_by_loss = sorted(range(1, len(losses) + 1), key=lambda e: (losses[e - 1], e))
    return history.to_dict(), [snapshots[e] for e in epochs_by_loss[:keep]]


def _float32(torch: Any, a: np.ndarray) -> Any:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _chunked(fn: Callable[[Any], Any], z: np.ndarray, torch: Any) -> np.ndarray:
    """``fn`` over float32 chunks of ``z`` without autograd, as float64."""
    out = []
    with torch.no_grad():
        for i in range(0, len(z), _CHUNK):
            out.append(fn(_float32(torch, z[i : i + _CHUNK])).double().numpy())
    return np.concatenate(out) if out else np.empty(0)


# --------------------------------------------------------------------------------------
# The base class


class AnomalyMethod:
    """One anomaly-detection method: ``fit(sample)``, then ``score(x)`` per event.

    Subclasses set ``name`` and ``kind`` and implement ``_fit``, ``_score``, ``_networks``
    (the architecture, for :func:`load`), ``_record``/``_restore_record`` (preprocessing).

    Attributes (after ``fit``)
    --------------------------
    n_features_ : number of input features.
    nets_ : name -> torch module.
    history_ : stage -> loss curves (``train_loss``, ``val_loss``, ``lr``, ``best_epoch``,
        ...); the stages are ``model``, or ``classifier`` (and ``flow`` for CATHODE).
    fit_seconds_ : wall time of ``fit``.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    #: what ``fit`` trains on, for error messages and docs
    trained_on: ClassVar[str] = "the SR events"

    def __init__(self, settings: MethodSettings | None = None) -> None:
        if settings is not None and not isinstance(settings, MethodSettings):
            raise ConfigError(
                f"{self.name}: settings must be a MethodSettings, got {type(settings).__name__}"
            )
        self.settings = (settings if settings is not None else MethodSettings()).validate()
        self.history_: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"

    # -- public ---------------------------------------------------------------------------

    def fit(self, train: AnomalySample) -> AnomalyMethod:
        """Train on ``train`` (the validation split is carved out inside); return self."""
        if not isinstance(train, AnomalySample):
            raise DataError(f"{self.name}.fit needs an AnomalySample, got {type(train).__name__}")
        x = self._as_features(train.x, f"{self.name}: training x")
        n = len(x)
        in_sr = _mask(train.in_sr, n, f"{self.name}: in_sr")
        in_sb = _mask(train.in_sb, n, f"{self.name}: in_sb")
        mjj = train.mjj
        if mjj is not None:
            mjj = np.asarray(mjj, dtype=np.float64)
            if mjj.shape != (n,):
                raise DataError(f"{self.name}: mjj must have shape ({n},), got {mjj.shape}")
        checked = AnomalySample(
            x=x,
            mjj=mjj,
            in_sr=in_sr,
            in_sb=in_sb,
            truth=train.truth,
            background_sr=train.background_sr,
            background_sr_mjj=train.background_sr_mjj,
            signal=train.signal,
        )
        self.n_features_ = int(x.shape[1])
        self.history_ = {}
        t0 = time.perf_counter()
        with _torch_scope(self.settings.seed, self.settings.num_threads):
            self._fit(checked)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def score(self, x: np.ndarray, mjj: np.ndarray | None = None) -> np.ndarray:
        """Anomaly score per event, shape (n,): higher is more anomalous; always finite.

        ``mjj`` is accepted by every method for a uniform call; none of the methods here
        uses it (the weakly supervised classifiers score x alone).
        """
        if not hasattr(self, "nets_"):
            raise ModelError(f"{self.name} is not fitted yet; call fit(sample) first")
        x = self._as_features(x, f"{self.name}: x to score", self.n_features_)
        if len(x) == 0:
            return np.empty(0)
        with _torch_scope(None, self.settings.num_threads) as torch:
            for net in self.nets_.values():
                net.eval()
            s = np.asarray(self._score(x, torch), dtype=np.float64).reshape(-1)
        bad = int(np.count_nonzero(~np.isfinite(s)))
        if bad:
            raise ModelError(
                f"{self.name}: {bad} of {len(s)} scores are NaN or inf; the model is broken "
                "(retrain it, e.g. with a lower learning_rate)"
            )
        return s

    def save(self, path: str | Path) -> Path:
        """Write a model bundle (kind ``anomaly_detector``) to the directory ``path``."""
        if not hasattr(self, "nets_"):
            raise ModelError(f"{self.name} is not fitted yet; nothing to save")
        arrays: dict[str, np.ndarray] = {}
        for net_name, net in self.nets_.items():
            for key, value in net.state_dict().items():
                arrays[f"{net_name}.{key}"] = value.detach().cpu().numpy()
        record, extra_arrays = self._record()
        arrays.update({f"pre.{k}": v for k, v in extra_arrays.items()})
        bundle = Bundle(
            kind=BUNDLE_KIND,
            features=list(
                getattr(self, "feature_names_", None) or [f"x{i}" for i in range(self.n_features_)]
            ),
            params={"method": self.name, "settings": self.settings.to_dict()},
            preprocessing=record,
            training={
                "history": self.history_,
                "fit_seconds": getattr(self, "fit_seconds_", None),
                "networks": sorted(self.nets_),
            },
            arrays=arrays,
            metadata={"method_kind": self.kind, "trained_on": self.trained_on},
        )
        return save_bundle(bundle, path)

    @staticmethod
    def load(path: str | Path) -> AnomalyMethod:
        """Read a bundle written by :meth:`save` (any method); see :func:`load`."""
        return load(path)

    # -- for subclasses -------------------------------------------------------------------

    def _as_features(self, x: Any, what: str, n_features: int | None = None) -> np.ndarray:
        return _matrix(x, what, n_features)

    def _fit(self, train: AnomalySample) -> None:
        raise NotImplementedError

    def _score(self, x: np.ndarray, torch: Any) -> np.ndarray:
        raise NotImplementedError

    def _networks(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Freshly built networks of the fitted architecture (weights to be loaded)."""
        raise NotImplementedError

    def _record(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Preprocessing for the manifest (JSON) and arrays for the safetensors file."""
        return {"x": self.scaler_.to_dict()}, {}

    def _restore_record(self, record: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        self.scaler_ = Standardiser.from_dict(record["x"])

    def _sr(self, train: AnomalySample, what: str = "signal-region") -> np.ndarray:
        x = train.x[train.in_sr]
        if len(x) < 2:
            raise DataError(
                f"{self.name}: {len(x)} {what} events (in_sr); it trains on the SR events"
            )
        return x


# --------------------------------------------------------------------------------------
# Unsupervised: autoencoder, VAE, Deep SVDD


class AutoencoderMethod(AnomalyMethod):
    """Dense autoencoder ``k -> hidden -> latent -> reversed(hidden) -> k`` on the
    standardised SR data; score = mean squared reconstruction error (standardised units)."""

    name = "autoencoder"
    kind = "unsupervised"

    def _training_x(self, train: AnomalySample) -> np.ndarray:
        return self._sr(train)

    def _fit_scaler(self, x: np.ndarray) -> None:
        self.scaler_ = Standardiser().fit(x)

    def _transform(self, x: np.ndarray) -> np.ndarray:
        return self.scaler_.transform(x)

    def _architecture(self) -> tuple[tuple[int, ...], int]:
        """(encoder hidden widths, latent dimension)."""
        return self.settings.hidden, self.settings.latent

    def _networks(self, record: Mapping[str, Any]) -> dict[str, Any]:
        (hidden, latent), k = self._architecture(), self.n_features_
        return {
            "encoder": _dense((k, *hidden, latent)),
            "decoder": _dense((latent, *reversed(hidden), k)),
        }

    def _fit(self, train: AnomalySample) -> None:
        torch = extras.torch()
        x = self._training_x(train)
        self._fit_scaler(x)
        z = self._transform(x)
        nets = self._networks({})
        model = torch.nn.ModuleDict(nets)
        tr, va = _split(len(z), self.settings.valid_fraction, self.settings.seed, 0)

        def reconstruction(model: Any, batch: Any) -> Any:
            xb = batch["x"]
            return ((model["decoder"](model["encoder"](xb)) - xb) ** 2).mean(dim=1)

        history, _ = _train(
            model,
            {"x": _float32(torch, z[tr])},
            {"x": _float32(torch, z[va])} if len(va) else None,
            self.settings,
            objective=reconstruction,
        )
        self.nets_ = dict(model.items())
        self.history_ = {"model": history}

    def _score(self, x: np.ndarray, torch: Any) -> np.ndarray:
        enc, dec = self.nets_["encoder"], self.nets_["decoder"]
        return _chunked(
            lambda xb: ((dec(enc(xb)) - xb) ** 2).mean(dim=1), self._transform(x), torch
        )


class VAEMethod(AnomalyMethod):
    """Variational autoencoder (Gaussian encoder, unit-variance Gaussian decoder) on the
    standardised SR data.  Training minimises ``sum_j (x_j - x'_j)^2 + beta * KL`` with one
    reparametrised sample; the score is the same expression evaluated deterministically at
    ``z = mu`` (reconstruction of the mean plus ``beta`` times the KL divergence), so it
    is reproducible."""

    name = "vae"
    kind = "unsupervised"

    def _networks(self, record: Mapping[str, Any]) -> dict[str, Any]:
        s, k = self.settings, self.n_features_
        return {
            "encoder": _dense((k, *s.hidden, 2 * s.latent)),  # (mu, log variance)
            "decoder": _dense((s.latent, *reversed(s.hidden), k)),
        }

    def _terms(self, model: Any, xb: Any, sample: bool) -> Any:
        torch = extras.torch()
        h = model["encoder"](xb)  # (batch, 2 * latent)
        mu, logvar = h[:, : self.settings.latent], h[:, self.settings.latent :]
        logvar = logvar.clamp(-20.0, 20.0)  # exp() stays finite for wild inputs
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
        rec = ((model["decoder"](z) - xb) ** 2).sum(dim=1)
        kl = 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar).sum(dim=1)
        return rec + self.settings.beta * kl

    def _fit(self, train: AnomalySample) -> None:
        torch = extras.torch()
        x = self._sr(train)
        self.scaler_ = Standardiser().fit(x)
        z = self.scaler_.transform(x)
        model = torch.nn.ModuleDict(self._networks({}))
        tr, va = _split(len(z), self.settings.valid_fraction, self.settings.seed, 0)
        history, _ = _train(
            model,
            {"x": _float32(torch, z[tr])},
            {"x": _float32(torch, z[va])} if len(va) else None,
            self.settings,
            objective=lambda m, b: self._terms(m, b["x"], sample=True),
        )
        self.nets_ = dict(model.items())
        self.history_ = {"model": history}

    def _score(self, x: np.ndarray, torch: Any) -> np.ndarray:
        model = torch.nn.ModuleDict(self.nets_)
        return _chunked(
            lambda xb: self._terms(model, xb, sample=False), self.scaler_.transform(x), torch
        )


class DeepSVDDMethod(AnomalyMethod):
    """One-class Deep SVDD (Ruff et al. 2018): a bias-free ReLU network ``phi`` mapped
    onto a hypersphere around ``c``, the mean of ``phi`` over the training events at
    initialisation (components closer to 0 than 0.1 pushed to +-0.1, as in the paper's
    code, against collapse); loss and score ``||phi(x) - c||^2``.  No biases and an
    unbounded activation keep the trivial constant map out of reach."""

    name = "deep_svdd"
    kind = "unsupervised"
    _EPS = 0.1

    def _networks(self, record: Mapping[str, Any]) -> dict[str, Any]:
        s = self.settings
        return {"phi": _dense((self.n_features_, *s.hidden, s.latent), bias=False)}

    def _fit(self, train: AnomalySample) -> None:
        torch = extras.torch()
        x = self._sr(train)
        self.scaler_ = Standardiser().fit(x)
        z = self.scaler_.transform(x)
        phi = self._networks({})["phi"]
        tr, va = _split(len(z), self.settings.valid_fraction, self.settings.seed, 0)
        c = _chunked(phi, z[tr], torch).mean(axis=0)
        c = np.where(np.abs(c) < self._EPS, np.where(c < 0, -self._EPS, self._EPS), c)
        self.center_ = c
        centre = _float32(torch, c)

        def distance(model: Any, batch: Any) -> Any:
            return ((model(batch["x"]) - centre) ** 2).sum(dim=1)

        history, _ = _train(
            phi,
            {"x": _float32(torch, z[tr])},
            {"x": _float32(torch, z[va])} if len(va) else None,
            self.settings,
            objective=distance,
        )
        self.nets_ = {"phi": phi}
        self.history_ = {"model": history}

    def _score(self, x: np.ndarray, torch: Any) -> np.ndarray:
        phi = self.nets_["phi"]
        return ((_chunked(phi, self.scaler_.transform(x), torch) - self.center_) ** 2).sum(axis=1)

    def _record(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"x": self.scaler_.to_dict()}, {"center": self.center_}

    def _restore_record(self, record: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        super()._restore_record(record, arrays)
        if "center" not in arrays:
            raise ModelError("deep_svdd bundle lacks its centre (pre.center)")
        self.center_ = np.asarray(arrays["center"], dtype=np.float64)


# --------------------------------------------------------------------------------------
# Density: the flow


class FlowMethod(AnomalyMethod):
    """Neural spline flow (zuko ``NSF``) of the density of x in the SR data (ANODE's
    data density, without the conditional variable); score = ``-log p(x)`` in the
    original units (the standardisation's Jacobian included)."""

    name = "flow"
    kind = "density"

    def _networks(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return {"flow": _flow_net(self.n_features_, 0, self.settings)}

    def _fit(self, train: AnomalySample) -> None:
        torch = extras.torch()
        x = self._sr(train)
        self.scaler_ = Standardiser().fit(x)
        z = self.scaler_.transform(x)
        flow = self._networks({})["flow"]
        tr, va = _split(len(z), self.settings.valid_fraction, self.settings.seed, 0)
        history, _ = _train(
            flow,
            {"x": _float32(torch, z[tr])},
            {"x": _float32(torch, z[va])} if len(va) else None,
            self.settings,
            epochs=self.settings.flow_epochs,
            objective=lambda m, b: -m().log_prob(b["x"]),
        )
        self.nets_ = {"flow": flow}
        self.history_ = {"model": history}

    def _score(self, x: np.ndarray, torch: Any) -> np.ndarray:
        flow = self.nets_["flow"]
        nll = -_chunked(lambda xb: flow().log_prob(xb), self.scaler_.transform(x), torch)
        # p(x) = p(z) / prod(scale): the density of the raw features
        return nll + float(np.log(self.scaler_.scale_).sum())


# --------------------------------------------------------------------------------------
# Classifiers: CWoLa, CATHODE, IAD, supervised


class _ClassifierMethod(AnomalyMethod):
    """A classifier of class 1 (the SR data, or signal) against class 0; score = the
    log-odds of the (ensemble-averaged) probability of class 1."""

    kind = "weak"

    def _classes(self, train: AnomalySample) -> tuple[np.ndarray, np.ndarray]:
        """(class 1, class 0) feature arrays."""
        raise NotImplementedError

    def _networks(self, record: Mapping[str, Any]) -> dict[str, Any]:
        n = int(record.get("members", self.settings.ensemble))
        return {
            f"classifier{i}": _classifier_net(self.n_features_, self.settings) for i in range(n)
        }

    def _fit(self, train: AnomalySample) -> None:
        x1, x0 = self._classes(train)
        self._fit_classifier(x1, x0)

    def _fit_classifier(self, x1: np.ndarray, x0: np.ndarray) -> None:
        torch = extras.torch()
        s = self.settings
        for label, arr in ((1, x1), (0, x0)):
            if len(arr) < 2:
                raise DataError(
                    f"{self.name}: class {label} has {len(arr)} events; the classifier needs "
                    "at least 2 per class"
                )
        # class-balancing weights: each class weighs half of the total
        n1, n0 = len(x1), len(x0)
        w1, w0 = (n1 + n0) / (2.0 * n1), (n1 + n0) / (2.0 * n0)
        tr1, va1 = _split(n1, s.valid_fraction, s.seed, 1)
        tr0, va0 = _split(n0, s.valid_fraction, s.seed, 2)
        x_all = np.concatenate([x1, x0])
        w_all = np.concatenate([np.full(n1, w1), np.full(n0, w0)])
        self.scaler_ = Standardiser().fit(x_all, w_all)

        def tensors(i1: np.ndarray, i0: np.ndarray) -> tuple[Any, ...] | None:
            if not len(i1) or not len(i0):
                return None
            x = self.scaler_.transform(np.concatenate([x1[i1], x0[i0]]))
            y = np.concatenate([np.ones(len(i1)), np.zeros(len(i0))])
            w = np.concatenate([np.full(len(i1), w1), np.full(len(i0), w0)])
            return (_float32(torch, x), _float32(torch, y), _float32(torch, w))

        def bce(logits: Any, target: Any) -> Any:
            return torch.nn.functional.binary_cross_entropy_with_logits(
                logits[:, 0], target, reduction="none"
            )

        net = _classifier_net(self.n_features_, s)
        history, states = _train(
            net, tensors(tr1, tr0), tensors(va1, va0), s, loss_fn=bce, keep=s.ensemble
        )
        nets = {}
        for i, state in enumerate(states):
            member = _classifier_net(self.n_features_, s) if i else net
            member.load_state_dict(state)
            nets[f"classifier{i}"] = member.eval()
        self.nets_ = nets
        self.history_["classifier"] = history

    def _score(self, x: np.ndarray, torch: Any) -> np.ndarray:
        z = self.scaler_.transform(x)
        members = [k for k in sorted(self.nets_) if k.startswith("classifier")]
        logits = np.stack(
            [_chunked(lambda xb, k=k: self.nets_[k](xb)[:, 0], z, torch) for k in members]
        )
        if len(members) == 1:
            return logits[0]
        # log-odds of the mean probability, computed stably from the logits:
        # log p = log mean sigmoid(l) = logsumexp(-softplus(-l)) - log k, likewise log(1-p)
        logsumexp = extras.scipy("special").logsumexp
        log_p = logsumexp(-np.logaddexp(0.0, -logits), axis=0)
        log_q = logsumexp(-np.logaddexp(0.0, logits), axis=0)
        return log_p - log_q

    def _record(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        members = sum(k.startswith("classifier") for k in self.nets_)
        return {"x": self.scaler_.to_dict(), "members": members}, {}


class CWoLaMethod(_ClassifierMethod):
    """Classification without labels (CWoLa hunting): SR data (1) against SB data (0)."""

    name = "cwola"
    kind = "weak"
    trained_on = "the SR events (1) against the SB events (0)"

    def _classes(self, train: AnomalySample) -> tuple[np.ndarray, np.ndarray]:
        x_sb = train.x[train.in_sb & ~train.in_sr]
        if len(x_sb) < 2:
            raise DataError(f"cwola: {len(x_sb)} sideband events (in_sb); it needs the sidebands")
        return self._sr(train), x_sb


class IADMethod(_ClassifierMethod):
    """Idealised anomaly detector: SR data (1) against an independent pure-background
    sample in the SR (0), the ceiling of weakly supervised methods."""

    name = "iad"
    kind = "reference"
    trained_on = "the SR events (1) against background_sr (0)"

    def _classes(self, train: AnomalySample) -> tuple[np.ndarray, np.ndarray]:
        if train.background_sr is None:
            raise DataError(
                "iad needs background_sr, an independent pure-background sample in the SR; "
                "the sample has none"
            )
        bkg = _matrix(train.background_sr, "iad: background_sr", self.n_features_)
        return self._sr(train), bkg


class SupervisedMethod(_ClassifierMethod):
    """Fully supervised reference: labelled signal (1) against background_sr (0)."""

    name = "supervised"
    kind = "reference"
    trained_on = "signal (1) against background_sr (0)"

    def _classes(self, train: AnomalySample) -> tuple[np.ndarray, np.ndarray]:
        missing = [n for n in ("signal", "background_sr") if getattr(train, n) is None]
        if missing:
            raise DataError(
                f"supervised needs labelled signal and background_sr; the sample lacks "
                f"{' and '.join(missing)}"
            )
        sig = _matrix(train.signal, "supervised: signal", self.n_features_)
        bkg = _matrix(train.background_sr, "supervised: background_sr", self.n_features_)
        return sig, bkg


class CathodeMethod(_ClassifierMethod):
    """CATHODE (Hallin et al. 2022): a conditional neural spline flow ``p(x | m_JJ)``
    trained on the sidebands (context: standardised ``log m_JJ``), sampled at m_JJ values
    drawn from a Gaussian KDE of the SR data's m_JJ (truncated to the SR's m_JJ range),
    ``oversampling`` samples per SR event; then a classifier of the SR data (1) against
    the samples (0).

    Non-finite flow samples are an error (counted and named), never dropped silently.
    """

    name = "cathode"
    kind = "weak"
    trained_on = "flow on the SB events; classifier: SR events (1) against flow samples (0)"

    def _networks(self, record: Mapping[str, Any]) -> dict[str, Any]:
        nets = super()._networks(record)
        nets["flow"] = _flow_net(self.n_features_, 1, self.settings)
        return nets

    def _context(self, mjj: np.ndarray) -> np.ndarray:
        return ((np.log(mjj) - self.mjj_mean_) / self.mjj_scale_)[:, None]

    def _classes(self, train: AnomalySample) -> tuple[np.ndarray, np.ndarray]:
        torch = extras.torch()
        s = self.settings
        if train.mjj is None:
            raise ConfigError(
                "cathode needs the conditional variable m_JJ (the sample's mjj is None); "
                "without it use autoencoder, vae, deep_svdd or flow"
            )
        sb = train.in_sb & ~train.in_sr
        x_sr = self._sr(train)
        x_sb, m_sb = train.x[sb], train.mjj[sb]
        m_sr = train.mjj[train.in_sr]
        if len(x_sb) < 2:
            raise DataError(
                f"cathode: {len(x_sb)} sideband events (in_sb); the flow trains on them"
            )
        used = train.mjj[sb | train.in_sr]
        if not (np.all(np.isfinite(used)) and np.all(used > 0)):
            raise DataError("cathode: mjj must be finite and > 0 GeV in the SR and sidebands")

        # the flow p(x | m_JJ) on the sidebands
        self.flow_scaler_ = Standardiser().fit(x_sb)
        log_m = np.log(m_sb)
        self.mjj_mean_, self.mjj_scale_ = float(log_m.mean()), float(log_m.std() or 1.0)
        z, c = self.flow_scaler_.transform(x_sb), self._context(m_sb)
        flow = _flow_net(self.n_features_, 1, s)
        tr, va = _split(len(z), s.valid_fraction, s.seed, 3)

        def nll(model: Any, batch: Any) -> Any:
            return -model(batch["c"]).log_prob(batch["x"])

        history, _ = _train(
            flow,
            {"x": _float32(torch, z[tr]), "c": _float32(torch, c[tr])},
            {"x": _float32(torch, z[va]), "c": _float32(torch, c[va])} if len(va) else None,
            s,
            epochs=s.flow_epochs,
            objective=nll,
        )
        self.flow_ = flow.eval()
        self.history_["flow"] = history

        # m_JJ of the samples from the SR data's KDE, inside the SR's range
        kde = extras.scipy("stats").gaussian_kde(m_sr, bw_method=s.mjj_kde_bandwidth)
        rng = np.random.default_rng([s.seed, 0xCA7])
        n_samples = s.oversampling * len(x_sr)
        lo, hi = float(m_sr.min()), float(m_sr.max())
        m_gen = np.empty(0)
        for _ in range(100):
            draw = kde.resample(2 * n_samples, seed=rng)[0]
            m_gen = np.concatenate([m_gen, draw[(draw >= lo) & (draw <= hi)]])
            if len(m_gen) >= n_samples:
                break
        if len(m_gen) < n_samples:  # pragma: no cover - needs a degenerate KDE
            raise ModelError("cathode: the m_JJ KDE gives almost no values inside the SR range")
        samples = self.sample(m_gen[:n_samples])
        bad = int(np.count_nonzero(~np.isfinite(samples).all(axis=1)))
        if bad:
            raise DataError(
                f"cathode: the sideband flow produced {bad} of {len(samples)} samples with NaN "
                "or inf; retrain it (lower learning_rate, more flow_epochs) rather than drop them"
            )
        return x_sr, samples

    def sample(self, mjj: np.ndarray, seed: int | None = None) -> np.ndarray:
        """Background-like samples of x from the sideband flow at the given m_JJ (GeV), one
        per value (reproducible in ``seed``, default ``settings.seed``)."""
        if not hasattr(self, "flow_"):
            raise ModelError("cathode is not fitted yet; call fit(sample) first")
        mjj = np.asarray(mjj, dtype=np.float64).reshape(-1)
        if not (np.all(np.isfinite(mjj)) and np.all(mjj > 0)):
            raise DataError("cathode.sample: mjj must be finite and > 0 GeV")
        c = self._context(mjj)
        seed = self.settings.seed if seed is None else seed
        out = []
        with _torch_scope(seed, self.settings.num_threads) as torch, torch.no_grad():
            for i in range(0, len(c), _CHUNK):
                out.append(self.flow_(_float32(torch, c[i : i + _CHUNK])).sample().double().numpy())
        z = np.concatenate(out) if out else np.empty((0, self.n_features_))
        return self.flow_scaler_.inverse_transform(z)

    def _fit(self, train: AnomalySample) -> None:
        x1, x0 = self._classes(train)
        self._fit_classifier(x1, x0)
        self.nets_["flow"] = self.flow_

    def _record(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        record, arrays = super()._record()
        record["flow_x"] = self.flow_scaler_.to_dict()
        record["mjj"] = {"transform": "log", "mean": self.mjj_mean_, "scale": self.mjj_scale_}
        return record, arrays

    def _restore_record(self, record: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        super()._restore_record(record, arrays)
        try:
            self.flow_scaler_ = Standardiser.from_dict(record["flow_x"])
            self.mjj_mean_ = float(record["mjj"]["mean"])
            self.mjj_scale_ = float(record["mjj"]["scale"])
        except (KeyError, TypeError, ValueError):
            raise ModelError("cathode bundle lacks its flow preprocessing (flow_x, mjj)") from None


# --------------------------------------------------------------------------------------
# Registry and loading


#: name -> class of the methods on tabular features (the task runs these)
METHODS: dict[str, type[AnomalyMethod]] = {
    cls.name: cls
    for cls in (
        AutoencoderMethod,
        VAEMethod,
        DeepSVDDMethod,
        FlowMethod,
        CWoLaMethod,
        CathodeMethod,
        IADMethod,
        SupervisedMethod,
    )
}

#: methods defined elsewhere in the task, imported when named
_LAZY = {"image_autoencoder": ("fivesigma.tasks.anomaly.images", "ImageAutoencoder")}


def _method_class(name: Any, where: str) -> type[AnomalyMethod]:
    if isinstance(name, str) and name in METHODS:
        return METHODS[name]
    if isinstance(name, str) and name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise ConfigError(
        f"{where}unknown anomaly method {shorten(repr(name), 60)}; accepted: "
        f"{', '.join([*METHODS, *_LAZY])}"
    )


def make_method(name: str, settings: MethodSettings | None = None) -> AnomalyMethod:
    """A new, unfitted method by name (``METHODS``, or ``image_autoencoder``)."""
    return _method_class(name, "")(settings)


def load(path: str | Path) -> AnomalyMethod:
    """Read an ``anomaly_detector`` bundle written by :meth:`AnomalyMethod.save`."""
    kind = bundle_kind(path)
    if kind != BUNDLE_KIND:
        raise ModelError(f"model bundle '{path}' has kind {kind!r}, not {BUNDLE_KIND!r}")
    bundle = load_bundle(path)
    params = bundle.params
    try:
        cls = _method_class(params.get("method"), f"model bundle '{path}': ")
        settings = MethodSettings.from_dict(params.get("settings", {}))
    except ConfigError as err:
        text = str(err)
        raise ModelError(
            text if text.startswith("model bundle") else f"model bundle '{path}': {text}"
        ) from None
    method = cls(settings)
    method.n_features_ = len(bundle.features)
    # names the task set before saving (the dijet features); x0, x1, ... otherwise
    if not all(f == f"x{i}" for i, f in enumerate(bundle.features)):
        method.feature_names_ = list(bundle.features)
    record = bundle.preprocessing
    arrays = {k[len("pre.") :]: v for k, v in bundle.arrays.items() if k.startswith("pre.")}
    try:
        method._restore_record(record, arrays)
    except (KeyError, TypeError):
        raise ModelError(f"model bundle '{path}': its preprocessing record is incomplete") from None
    torch = extras.torch()
    with _torch_scope(0, None):
        nets = method._networks(record)
    expected = sorted(nets)
    if sorted(bundle.training.get("networks", expected)) != expected:
        raise ModelError(
            f"model bundle '{path}': networks {bundle.training.get('networks')} do not match "
            f"the {cls.name} method ({expected})"
        )
    for net_name, net in nets.items():
        prefix = f"{net_name}."
        state = {
            k[len(prefix) :]: torch.from_numpy(np.array(v))
            for k, v in bundle.arrays.items()
            if k.startswith(prefix)
        }
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            from fivesigma.training.estimator import weights_mismatch

            raise ModelError(
                f"model bundle '{path}': the weights of {net_name} do not match the "
                f"{cls.name} network ({weights_mismatch(err)})"
            ) from None
        net.eval()
    method.nets_ = nets
    if "flow" in nets and isinstance(method, CathodeMethod):
        method.flow_ = nets["flow"]
    method.history_ = dict(bundle.training.get("history", {}))
    if bundle.training.get("fit_seconds") is not None:
        method.fit_seconds_ = float(bundle.training["fit_seconds"])
    return method
