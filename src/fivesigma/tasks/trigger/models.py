"""The trigger networks, float and quantisation-aware, trained on the shared Trainer.

- the jet tagger: 16 high-level features -> 64 -> 32 -> 32 -> 5 classes (g, q, W, Z, t),
  as hls4ml's published tagger;
- the AXOL1TL-like anomaly trigger: a VAE whose encoder 57 -> 28 -> 15 -> 8 (mu) is what
  the firmware computes; the anomaly score is |mu|^2 (the log-variance head and the
  decoder exist only in training);
- the CICADA-like calorimeter trigger: a float teacher autoencoder of the 18 x 14 region
  ETs, and a small quantised CNN student that regresses the teacher's log reconstruction
  error, the quantity the firmware outputs.

Inputs are standardised (features) or shifted by a power of two (region ET counts: a bit
shift, free in firmware) before the input's fixed-point type; the standardisation is the
firmware's input scaling and is stored in the bundle.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from fivesigma.export.fixed_point import FixedPoint
from fivesigma.nn.quant import prune_to_sparsity, quant_cnn, quant_mlp

__all__ = [
    "JET_CLASSES",
    "TAGGER_SIZES",
    "QuantSpec",
    "float_mlp",
    "train_classifier",
    "train_regressor",
    "train_vae",
]

#: hls4ml's jet classes, in its order
JET_CLASSES = ("g", "q", "w", "z", "t")
TAGGER_SIZES = (16, 64, 32, 32, 5)
ENCODER_SIZES = (57, 28, 15, 8)
#: region ET counts (0.5 GeV) are divided by 2^REGION_SHIFT before the CNN's input type
REGION_SHIFT = 6


@dataclass(frozen=True)
class QuantSpec:
    """Fixed-point types of one network: weights and activations ``ap_fixed<width, .>``
    (activations with ``integer`` integer bits), the input type, pruning."""

    width: int
    integer: int
    input_type: FixedPoint
    sparsity: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "integer": self.integer,
            "input_type": self.input_type.hls(),
            "sparsity": self.sparsity,
        }


def float_mlp(sizes: tuple[int, ...]) -> nn.Sequential:
    """A float MLP with quant_mlp's layer names (so QAT can start from its weights)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i in range(1, len(sizes)):
        layers[f"fc{i}"] = nn.Linear(sizes[i - 1], sizes[i])
        if i < len(sizes) - 1:
            layers[f"relu{i}"] = nn.ReLU()
    return nn.Sequential(layers)


def quant_tagger(spec: QuantSpec, sizes: tuple[int, ...] = TAGGER_SIZES) -> nn.Sequential:
    return quant_mlp(sizes, width=spec.width, integer=spec.integer, input_type=spec.input_type)


def quant_student(spec: QuantSpec) -> nn.Sequential:
    return quant_cnn(
        (1, 18, 14), width=spec.width, integer=spec.integer, input_type=spec.input_type
    )


def float_student() -> nn.Sequential:
    """The CNN student's float twin (same shape as :func:`quant_cnn`)."""
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 4, 2, stride=2),
            relu1=nn.ReLU(),
            flatten=nn.Flatten(),
            fc1=nn.Linear(4 * 9 * 7, 16),
            relu2=nn.ReLU(),
            fc2=nn.Linear(16, 1),
        )
    )


def _trainer(epochs: int, patience: int, seed: int, batch_size: int = 256, lr: float = 3e-3):
    from fivesigma.training.trainer import Trainer, TrainerConfig

    return Trainer(
        TrainerConfig(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            scheduler="cosine",
            early_stopping_patience=patience,
            seed=seed,
            progress=False,
        )
    )


def _tensors(x: np.ndarray, y: np.ndarray, dtype: Any = torch.float32) -> tuple:
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    yt = torch.as_tensor(y, dtype=dtype)
    return xt, yt, torch.ones(len(xt))


def train_classifier(
    model: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    valid: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int,
    patience: int,
    seed: int,
    sparsity: float = 0.0,
) -> dict[str, Any]:
    """Cross-entropy training (pruned to ``sparsity`` after the first half, then
    fine-tuned with the mask fixed); returns the history."""

    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(out, target, reduction="none")

    tr = _tensors(*train, dtype=torch.long)
    va = _tensors(*valid, dtype=torch.long)
    if sparsity > 0:
        first = _trainer(max(1, epochs // 2), patience, seed).fit(model, tr, va, loss)
        prune_to_sparsity(model, sparsity)
        second = _trainer(max(1, epochs - epochs // 2), patience, seed + 1).fit(model, tr, va, loss)
        return {"train_loss": first.train_loss + second.train_loss,
                "val_loss": first.val_loss + second.val_loss}  # fmt: skip
    history = _trainer(epochs, patience, seed).fit(model, tr, va, loss)
    return {"train_loss": history.train_loss, "val_loss": history.val_loss}


def train_regressor(
    model: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    valid: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int,
    patience: int,
    seed: int,
) -> dict[str, Any]:
    """Mean-squared-error regression of a scalar target (the CICADA student)."""

    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (out.reshape(-1) - target) ** 2

    history = _trainer(epochs, patience, seed).fit(model, _tensors(*train), _tensors(*valid), loss)
    return {"train_loss": history.train_loss, "val_loss": history.val_loss}


class VAE(nn.Module):
    """A VAE around ``encoder`` (input -> mu); the log-variance head reads the encoder's
    last hidden activation (captured by a hook), the decoder mirrors the encoder."""

    def __init__(self, encoder: nn.Sequential, sizes: tuple[int, ...], beta: float = 0.5):
        super().__init__()
        self.encoder = encoder
        self.beta = beta
        hidden_name = [n for n, _ in encoder.named_children() if n.startswith("relu")][-1]
        self._hidden: list[torch.Tensor] = []
        getattr(encoder, hidden_name).register_forward_hook(
            lambda _m, _i, out: self._hidden.append(out)
        )
        self.logvar = nn.Linear(sizes[-2], sizes[-1])
        dec: OrderedDict[str, nn.Module] = OrderedDict()
        rev = sizes[::-1]
        for i in range(1, len(rev)):
            dec[f"fc{i}"] = nn.Linear(rev[i - 1], rev[i])
            if i < len(rev) - 1:
                dec[f"relu{i}"] = nn.ReLU()
        self.decoder = nn.Sequential(dec)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self._hidden.clear()
        mu = self.encoder(x).float()
        logvar = self.logvar(self._hidden[-1].float()).clamp(-8, 8)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decoder(z), mu, logvar

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        recon, mu, logvar = self(x)
        rec = ((recon - x) ** 2).mean(dim=1)
        kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(dim=1)
        return rec + self.beta * kl


def train_vae(
    encoder: nn.Sequential,
    train: np.ndarray,
    valid: np.ndarray,
    *,
    epochs: int,
    patience: int,
    seed: int,
    sizes: tuple[int, ...] = ENCODER_SIZES,
) -> dict[str, Any]:
    """Train ``encoder`` inside a VAE on zero-bias events (no target)."""
    torch.manual_seed(seed)
    vae = VAE(encoder, sizes)

    def objective(model: VAE, batch: Any) -> torch.Tensor:
        (x,) = batch if isinstance(batch, list | tuple) else (batch,)
        return model.loss(x)

    tr = torch.utils.data.TensorDataset(torch.as_tensor(np.asarray(train, np.float32)))
    va = torch.utils.data.TensorDataset(torch.as_tensor(np.asarray(valid, np.float32)))
    history = _trainer(epochs, patience, seed, batch_size=512, lr=1e-3).fit(
        vae, tr, va, objective=objective
    )
    return {"train_loss": history.train_loss, "val_loss": history.val_loss}


def predict(model: nn.Module, x: np.ndarray, batch: int = 65536) -> np.ndarray:
    """The model's output (float64) in evaluation mode."""
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            xb = torch.as_tensor(np.asarray(x[start : start + batch], dtype=np.float32))
            out.append(model(xb).double().numpy())
    return np.concatenate(out) if out else np.zeros((0,))


def anomaly_score(mu: np.ndarray) -> np.ndarray:
    """AXOL1TL's score: |mu|^2."""
    return np.sum(np.asarray(mu, dtype=np.float64) ** 2, axis=1)


def quant_encoder(spec: QuantSpec) -> nn.Sequential:
    """The AXOL1TL-like encoder 57 -> 28 -> 15 -> 8 (its output is mu)."""
    return quant_mlp(
        ENCODER_SIZES, width=spec.width, integer=spec.integer, input_type=spec.input_type
    )


#: network name -> builder of its QAT model from a QuantSpec
BUILDERS = {"jet_tagger": quant_tagger, "axol1tl": quant_encoder, "cicada": quant_student}
