"""Conditional generators p(x | c) of the fastsim task: a neural spline flow (zuko), flow
matching with an ODE sampler, and a GAN; the preprocessing around them; the bundle.

Every surrogate is a :class:`Surrogate`: a :class:`Preprocessing` (physics transforms of
the outputs relative to their conditions, then standardisation) and one of the three
networks working on the standardised space:

``flow``            a conditional neural spline flow (``zuko.flows.NSF``), maximum
                    likelihood with the shared Trainer;
``flow_matching``   a velocity field ``v(x_t, t, c)`` (an MLP) trained on the straight
                    path ``x_t = (1 - t) x_0 + t x_1``, ``x_0 ~ N(0, 1)``, with the loss
                    ``|v - (x_1 - x_0)|^2`` (Lipman et al., arXiv:2210.02747), sampled
                    by integrating ``dx/dt = v`` from t = 0 to 1 (Euler, midpoint or
                    RK4, fixed steps); shared Trainer;
``gan``             a conditional GAN (generator and discriminator MLPs, the
                    non-saturating loss, Adam), trained by its own alternating loop.

Samples are checked: a non-finite value from any network is a :class:`ModelError` (one
line) before anything is written.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.core import extras
from fivesigma.errors import DataError, ModelError

__all__ = [
    "MODEL_NAMES",
    "GeneratorSettings",
    "Preprocessing",
    "Surrogate",
    "load_surrogate",
]

MODEL_NAMES = ("flow", "flow_matching", "gan")
BUNDLE_KIND = "fastsim_surrogate"

#: Output transforms: name -> (encode, decode), ``ref`` the matching condition (raw).
_DEQUANT_EPS = 1e-4


def _wrap(a: np.ndarray) -> np.ndarray:
    return (a + math.pi) % (2 * math.pi) - math.pi


def _encode(kind: str, x: np.ndarray, ref: np.ndarray | None, rng: np.random.Generator | None):
    if kind == "identity":
        return x
    if kind == "logratio":
        return np.log(np.maximum(x, 1e-6) / np.maximum(ref, 1e-6))
    if kind == "diff":
        return x - ref
    if kind == "dphi":
        return _wrap(x - ref)
    if kind == "count":  # dequantised: log(n + u), u ~ U(0, 1); decoded with floor
        u = rng.random(x.shape) if rng is not None else 0.5
        return np.log(np.maximum(x, 0.0) + u)
    if kind == "log1p":
        return np.log1p(np.maximum(x, 0.0))
    if kind == "logfrac":  # a voxel energy as a fraction of the incident energy
        return np.log(np.maximum(x, 0.0) / ref + _DEQUANT_EPS)
    if kind == "sqrtfrac":  # sqrt of a fraction of the reference: zeros stay cheap
        return np.sqrt(np.maximum(x, 0.0) / ref)
    if kind == "log":
        return np.log(np.maximum(x, 1e-6))
    raise DataError(f"unknown transform {kind!r}")


def _decode(kind: str, y: np.ndarray, ref: np.ndarray | None) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        if kind == "identity":
            return y
        if kind == "logratio":
            return ref * np.exp(y)
        if kind == "diff":
            return ref + y
        if kind == "dphi":
            return _wrap(ref + y)
        if kind == "count":
            return np.floor(np.maximum(np.exp(y), 0.0))
        if kind == "log1p":
            return np.maximum(np.expm1(y), 0.0)
        if kind == "logfrac":
            # a voxel holds between none and all of the incident energy
            return np.clip(np.exp(np.minimum(y, 1.0)) - _DEQUANT_EPS, 0.0, 1.0) * ref
        if kind == "sqrtfrac":
            return np.clip(y, 0.0, 1.0) ** 2 * ref
        if kind == "log":
            return np.exp(y)
    raise DataError(f"unknown transform {kind!r}")


@dataclass
class Preprocessing:
    """Transforms and standardisation of conditions and outputs.

    ``outputs``: ``[name, kind, reference condition or None]``; ``conditions``:
    ``[name, kind]`` with kinds ``identity``, ``log``, ``log1p`` or ``onehot:K`` (integer
    codes 0..K-1).  ``mean_*`` / ``std_*`` are fitted on the training set.
    ``total``: the name of an output holding the sum of the ``sqrtfrac`` outputs (a
    shower's visible energy); decoded draws are rescaled so that they sum to it, so the
    total comes from one well-learnt number instead of the sum of many small errors.
    """

    outputs: list[list[Any]]
    conditions: list[list[Any]]
    total: str | None = None
    mean_x: list[float] = field(default_factory=list)
    std_x: list[float] = field(default_factory=list)
    mean_c: list[float] = field(default_factory=list)
    std_c: list[float] = field(default_factory=list)

    @property
    def output_names(self) -> list[str]:
        return [o[0] for o in self.outputs]

    @property
    def condition_names(self) -> list[str]:
        return [c[0] for c in self.conditions]

    def _cond_raw(self, cond: np.ndarray) -> np.ndarray:
        cols = []
        for j, (_, kind) in enumerate(self.conditions):
            v = cond[:, j]
            if kind.startswith("onehot:"):
                k = int(kind.split(":")[1])
                code = np.clip(np.rint(v).astype(np.int64), 0, k - 1)
                cols.append(np.eye(k)[code])
            else:
                cols.append(_encode(kind, v, None, None)[:, None])
        return np.concatenate(cols, axis=1)

    def _refs(self, cond: np.ndarray) -> list[np.ndarray | None]:
        names = self.condition_names
        return [cond[:, names.index(o[2])] if o[2] else None for o in self.outputs]

    def _out_raw(self, out: np.ndarray, cond: np.ndarray, rng: np.random.Generator | None):
        refs = self._refs(cond)
        return np.column_stack(
            [_encode(o[1], out[:, j], refs[j], rng) for j, o in enumerate(self.outputs)]
        )

    def fit(self, cond: np.ndarray, out: np.ndarray, seed: int = 0) -> Preprocessing:
        zc = self._cond_raw(cond)
        zx = self._out_raw(out, cond, np.random.default_rng(seed))
        self.mean_c, self.std_c = zc.mean(0).tolist(), _safe_std(zc).tolist()
        self.mean_x, self.std_x = zx.mean(0).tolist(), _safe_std(zx).tolist()
        return self

    def conditions_z(self, cond: np.ndarray) -> np.ndarray:
        return (self._cond_raw(cond) - np.asarray(self.mean_c)) / np.asarray(self.std_c)

    def outputs_z(self, out: np.ndarray, cond: np.ndarray, seed: int = 0) -> np.ndarray:
        zx = self._out_raw(out, cond, np.random.default_rng(seed))
        return (zx - np.asarray(self.mean_x)) / np.asarray(self.std_x)

    def decode(self, z: np.ndarray, cond: np.ndarray) -> np.ndarray:
        y = z * np.asarray(self.std_x) + np.asarray(self.mean_x)
        refs = self._refs(cond)
        return np.column_stack(
            [_decode(o[1], y[:, j], refs[j]) for j, o in enumerate(self.outputs)]
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _safe_std(z: np.ndarray) -> np.ndarray:
    sd = z.std(axis=0)
    return np.where(sd > 1e-12, sd, 1.0)


@dataclass
class GeneratorSettings:
    """Hyper-parameters of the three generators (one dataclass, every model reads its own)."""

    epochs: int = 30
    batch_size: int = 512
    learning_rate: float = 1e-3
    patience: int = 6
    hidden: list[int] = field(default_factory=lambda: [128, 128, 128])
    flow_transforms: int = 5
    flow_bins: int = 8
    flow_passes: int | None = None  # None: autoregressive (one pass per output); 2: coupling
    flow_hidden: list[int] | None = None  # None: ``hidden``
    ode_steps: int = 12
    ode_solver: str = "rk4"
    gan_latent: int = 0  # 0: as many as outputs
    gan_epochs: int = 0  # 0: as many as epochs
    gan_lr: float = 2e-4
    # flow matching regresses a velocity on random (noise, time) pairs: it needs many
    # more passes over the data than the flows' maximum likelihood (0: as the flows)
    fm_epochs: int = 0
    fm_batch_size: int = 0
    fm_learning_rate: float = 0.0
    fm_patience: int = 0
    valid_fraction: float = 0.15
    seed: int = 0
    num_threads: int | None = None
    progress: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GeneratorSettings:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in known})


# --------------------------------------------------------------------------------------
# networks


def _mlp(n_in: int, hidden: list[int], n_out: int, act: str = "silu") -> Any:
    nn = extras.torch().nn
    layers: list[Any] = []
    prev = n_in
    for h in hidden:
        layers += [nn.Linear(prev, h), nn.SiLU() if act == "silu" else nn.LeakyReLU(0.2)]
        prev = h
    layers.append(nn.Linear(prev, n_out))
    return nn.Sequential(*layers)


def _velocity_net(dx: int, dc: int, hidden: list[int]) -> Any:
    torch = extras.torch()

    class Velocity(torch.nn.Module):
        """v(x_t, t, c): an MLP on x_t, Fourier features of t, and c."""

        def __init__(self) -> None:
            super().__init__()
            self.freq = torch.nn.Parameter(
                torch.arange(1, 5, dtype=torch.float32) * math.pi, requires_grad=False
            )
            self.net = _mlp(dx + dc + 9, hidden, dx)

        def forward(self, x: Any, t: Any, c: Any) -> Any:
            tf = t[:, None] * self.freq
            return self.net(torch.cat([x, c, t[:, None], torch.sin(tf), torch.cos(tf)], 1))

    return Velocity()


def build_network(model: str, dx: int, dc: int, s: GeneratorSettings) -> dict[str, Any]:
    """The torch modules of ``model`` (``flow``: ``{"flow"}``, ``flow_matching``:
    ``{"velocity"}``, ``gan``: ``{"generator", "discriminator"}``)."""
    if model == "flow":
        from fivesigma.nn.flows import spline_flow

        hidden = s.flow_hidden or s.hidden
        flow = spline_flow(dx, dc, s.flow_bins, s.flow_transforms, hidden, s.flow_passes)
        return {"flow": flow}
    if model == "flow_matching":
        return {"velocity": _velocity_net(dx, dc, list(s.hidden))}
    if model == "gan":
        latent = s.gan_latent or dx
        return {
            "generator": _mlp(latent + dc, list(s.hidden), dx, "leaky"),
            "discriminator": _mlp(dx + dc, list(s.hidden), 1, "leaky"),
        }
    raise ModelError(f"unknown fastsim model {model!r}; accepted: {', '.join(MODEL_NAMES)}")


def _t(torch: Any, a: np.ndarray) -> Any:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


# --------------------------------------------------------------------------------------
# the surrogate


@dataclass
class Surrogate:
    """A trained conditional generator with its preprocessing.

    Build with :meth:`fit`; draw with :meth:`sample`; ``save`` / :func:`load_surrogate`.
    """

    model: str
    preprocessing: Preprocessing
    settings: GeneratorSettings
    nets: dict[str, Any] = field(default_factory=dict)
    history: dict[str, Any] = field(default_factory=dict)
    fit_seconds: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)

    # ---------------------------------------------------------------- training
    @classmethod
    def fit(
        cls,
        model: str,
        preprocessing: Preprocessing,
        cond: np.ndarray,
        out: np.ndarray,
        settings: GeneratorSettings,
    ) -> Surrogate:
        """Fit ``preprocessing`` and the network ``model`` on raw conditions/outputs."""
        if model not in MODEL_NAMES:
            raise ModelError(f"unknown fastsim model {model!r}; accepted: {', '.join(MODEL_NAMES)}")
        if len(cond) < 10:
            raise DataError(f"need at least 10 training examples, got {len(cond)}")
        torch = extras.torch()
        t0 = time.perf_counter()
        preprocessing.fit(cond, out, settings.seed)
        zc = preprocessing.conditions_z(cond)
        zx = preprocessing.outputs_z(out, cond, settings.seed)
        n_valid = round(settings.valid_fraction * len(zc))
        order = np.random.default_rng([settings.seed, 17]).permutation(len(zc))
        va, tr = order[:n_valid], order[n_valid:]
        self = cls(model, preprocessing, settings)
        threads = torch.get_num_threads()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            if settings.num_threads:
                torch.set_num_threads(settings.num_threads)
            try:
                self.nets = build_network(model, zx.shape[1], zc.shape[1], settings)
                if model == "gan":
                    self.history = self._fit_gan(torch, zx[tr], zc[tr])
                else:
                    self.history = self._fit_trainer(torch, zx, zc, tr, va)
            finally:
                torch.set_num_threads(threads)
        for net in self.nets.values():
            net.eval()
        self.fit_seconds = time.perf_counter() - t0
        return self

    def _fit_trainer(self, torch: Any, zx, zc, tr, va) -> dict[str, Any]:
        from fivesigma.training.trainer import Trainer, TrainerConfig

        s = self.settings
        if self.model == "flow":
            net = self.nets["flow"]

            def objective(m: Any, b: Any) -> Any:
                return -m(b["c"]).log_prob(b["x"])

        else:
            net = self.nets["velocity"]

            def objective(m: Any, b: Any) -> Any:
                x1, c = b["x"], b["c"]
                # validation pairs carry their own noise and times, so that the
                # validation loss (early stopping) does not fluctuate from epoch to epoch
                x0 = b["x0"] if "x0" in b else torch.randn_like(x1)
                t = b["t"] if "t" in b else torch.rand(len(x1))
                xt = (1 - t[:, None]) * x0 + t[:, None] * x1
                return ((m(xt, t, c) - (x1 - x0)) ** 2).mean(dim=1)

        fm = self.model == "flow_matching"
        config = TrainerConfig(
            epochs=(fm and s.fm_epochs) or s.epochs,
            batch_size=(fm and s.fm_batch_size) or s.batch_size,
            lr=(fm and s.fm_learning_rate) or s.learning_rate,
            scheduler="cosine",
            early_stopping_patience=(fm and s.fm_patience) or s.patience,
            seed=s.seed,
            progress=s.progress,
            device="cpu",
        )
        train = {"x": _t(torch, zx[tr]), "c": _t(torch, zc[tr])}
        valid = {"x": _t(torch, zx[va]), "c": _t(torch, zc[va])} if len(va) else None
        if valid is not None and self.model == "flow_matching":
            g = torch.Generator().manual_seed(s.seed + 1)
            valid["x0"] = torch.randn(valid["x"].shape, generator=g)
            valid["t"] = torch.rand(len(va), generator=g)
        history = Trainer(config).fit(net, train, valid, None, objective=objective)
        return history.to_dict()

    def _fit_gan(self, torch: Any, zx: np.ndarray, zc: np.ndarray) -> dict[str, Any]:
        s = self.settings
        gen, disc = self.nets["generator"], self.nets["discriminator"]
        latent = s.gan_latent or zx.shape[1]
        opt_g = torch.optim.Adam(gen.parameters(), lr=s.gan_lr, betas=(0.5, 0.9))
        opt_d = torch.optim.Adam(disc.parameters(), lr=s.gan_lr, betas=(0.5, 0.9))
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        x_all, c_all = _t(torch, zx), _t(torch, zc)
        g = torch.Generator().manual_seed(s.seed)
        hist: dict[str, list[float]] = {"d_loss": [], "g_loss": []}
        epochs = s.gan_epochs or s.epochs
        for _ in range(epochs):
            perm = torch.randperm(len(x_all), generator=g)
            dl = gl = 0.0
            steps = 0
            for i in range(0, len(perm) - s.batch_size + 1, s.batch_size):
                idx = perm[i : i + s.batch_size]
                x, c = x_all[idx], c_all[idx]
                z = torch.randn(len(x), latent, generator=g)
                fake = gen(torch.cat([z, c], 1))
                d_real = disc(torch.cat([x, c], 1))
                d_fake = disc(torch.cat([fake.detach(), c], 1))
                loss_d = bce(d_real, torch.full_like(d_real, 0.9)) + bce(
                    d_fake, torch.zeros_like(d_fake)
                )
                opt_d.zero_grad()
                loss_d.backward()
                opt_d.step()
                d_gen = disc(torch.cat([fake, c], 1))
                loss_g = bce(d_gen, torch.ones_like(d_gen))
                opt_g.zero_grad()
                loss_g.backward()
                opt_g.step()
                dl += float(loss_d.detach())
                gl += float(loss_g.detach())
                steps += 1
            hist["d_loss"].append(dl / max(steps, 1))
            hist["g_loss"].append(gl / max(steps, 1))
        return {"epochs_run": epochs, **hist}

    # ---------------------------------------------------------------- sampling
    def sample_z(self, zc: np.ndarray, seed: int = 0) -> np.ndarray:
        """Draws in the standardised output space, one per row of ``zc``."""
        torch = extras.torch()
        dx = len(self.preprocessing.outputs)
        out = []
        g = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for i in range(0, len(zc), 65536):
                c = _t(torch, zc[i : i + 65536])
                if self.model == "flow":
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(int(seed) + i)
                        x = self.nets["flow"](c).sample()
                elif self.model == "flow_matching":
                    x = self._ode(torch, torch.randn(len(c), dx, generator=g), c)
                else:
                    latent = self.settings.gan_latent or dx
                    z = torch.randn(len(c), latent, generator=g)
                    x = self.nets["generator"](torch.cat([z, c], 1))
                out.append(x.double().numpy())
        return np.concatenate(out) if out else np.zeros((0, dx))

    def _ode(self, torch: Any, x: Any, c: Any) -> Any:
        v = self.nets["velocity"]
        n = max(int(self.settings.ode_steps), 1)
        h = 1.0 / n
        solver = self.settings.ode_solver
        for k in range(n):
            t = torch.full((len(x),), k * h)
            if solver == "euler":
                x = x + h * v(x, t, c)
            elif solver == "midpoint":
                x = x + h * v(x + 0.5 * h * v(x, t, c), t + 0.5 * h, c)
            else:
                k1 = v(x, t, c)
                k2 = v(x + 0.5 * h * k1, t + 0.5 * h, c)
                k3 = v(x + 0.5 * h * k2, t + 0.5 * h, c)
                k4 = v(x + h * k3, t + h, c)
                x = x + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        return x

    def sample(self, cond: np.ndarray, seed: int = 0) -> np.ndarray:
        """Raw outputs (n, outputs) for raw conditions (n, conditions), one draw each.

        Raises ModelError when the network produces a non-finite value.
        """
        cond = np.asarray(cond, dtype=np.float64)
        if cond.ndim != 2 or cond.shape[1] != len(self.preprocessing.conditions):
            raise DataError(
                f"conditions must be (n, {len(self.preprocessing.conditions)}) "
                f"({', '.join(self.preprocessing.condition_names)}), got shape {cond.shape}"
            )
        if not np.all(np.isfinite(cond)):
            raise DataError(f"conditions hold {int(np.sum(~np.isfinite(cond)))} non-finite values")
        z = self.sample_z(self.preprocessing.conditions_z(cond), seed)
        out = self.preprocessing.decode(z, cond)
        bad = ~np.isfinite(out)
        if bad.any():
            rows = int(bad.any(axis=1).sum())
            raise ModelError(
                f"the {self.model} surrogate produced non-finite values for {rows} of "
                f"{len(out)} samples; retrain it (fewer epochs, a lower learning rate)"
            )
        return out

    # ---------------------------------------------------------------- bundles
    def save(self, path: str | Path, features: dict[str, Any] | None = None) -> Path:
        from fivesigma.core.bundle import Bundle, save_bundle

        arrays = {}
        for name, net in self.nets.items():
            for key, val in net.state_dict().items():
                arrays[f"{name}.{key}"] = val.detach().cpu().numpy()
        bundle = Bundle(
            kind=BUNDLE_KIND,
            features=self.preprocessing.condition_names,
            params={"model": self.model, "settings": asdict(self.settings)},
            preprocessing=self.preprocessing.to_dict(),
            training={"history": self.history, "fit_seconds": self.fit_seconds},
            arrays=arrays,
            metadata={**self.metadata, **(features or {})},
        )
        return save_bundle(bundle, path)


def load_surrogate(path: str | Path) -> Surrogate:
    """A :class:`Surrogate` from its bundle directory."""
    from fivesigma.core.bundle import load_bundle

    torch = extras.torch()
    bundle = load_bundle(path)
    if bundle.kind != BUNDLE_KIND:
        raise ModelError(f"'{path}' is a {bundle.kind!r} bundle, not a {BUNDLE_KIND!r} one")
    pre = Preprocessing(**bundle.preprocessing)
    s = GeneratorSettings.from_dict(bundle.params["settings"])
    model = bundle.params["model"]
    dc = len(pre.mean_c)
    nets = build_network(model, len(pre.outputs), dc, s)
    for name, net in nets.items():
        state = {
            k[len(name) + 1 :]: torch.from_numpy(np.array(v))
            for k, v in bundle.arrays.items()
            if k.startswith(name + ".")
        }
        net.load_state_dict(state)
        net.eval()
    return Surrogate(model, pre, s, nets, bundle.training.get("history", {}), 0.0, bundle.metadata)
