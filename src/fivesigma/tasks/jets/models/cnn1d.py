"""A 1D convolutional tagger over the pT-ordered constituent sequence (nanoGPT style).

``x`` (B, P, F) -> Conv1d stack along the particle axis -> global max over *real*
particles -> MLP -> logits (B, n_classes).  Convolutions see the particles in pT order,
so the network is order-dependent by design; padded positions are zeroed after every
layer, so appending padding never changes the output (a real particle next to the end
of the sequence sees zeros either way).

>>> import torch
>>> net = CNN1D(CNN1DConfig(n_features=3))
>>> net(torch.zeros(2, 5, 3), torch.zeros(2, 5, 4), torch.ones(2, 5, dtype=torch.bool)).shape
torch.Size([2, 2])
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import torch
from torch import nn

from fivesigma.errors import ModelError
from fivesigma.nn.masked import masked_max, masked_mean
from fivesigma.nn.mlp import mlp
from fivesigma.nn.utils import check_config, check_sizes
from fivesigma.tasks.jets.models.base import TaggerModel

__all__ = ["CNN1D", "CNN1DConfig"]

POOLS = ("max", "max+mean")


@dataclass
class CNN1DConfig:
    """Hyper-parameters of :class:`CNN1D`.

    The default is CPU-friendly (~10k parameters for 7 features); :meth:`paper` is a
    larger stack of the size used by constituent-sequence CNN taggers (there is no single
    reference architecture).

    Attributes
    ----------
    n_features : per-particle input features F.
    n_classes : number of output logits.
    channels : output channels of each Conv1d layer.
    kernel_size : odd kernel width (in particles); 'same' padding keeps the length.
    hidden : widths of the MLP after pooling.
    dropout : dropout before each hidden layer of the MLP.
    pool : ``"max"`` (global max over the real particles, the classic constituent CNN) or
        ``"max+mean"`` (max and mean concatenated: the mean carries additive, mass-like
        information that a max cannot).
    """

    n_features: int
    n_classes: int = 2
    channels: tuple[int, ...] = (32, 32, 32)
    kernel_size: int = 3
    hidden: tuple[int, ...] = (64,)
    dropout: float = 0.0
    pool: str = "max"

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise ModelError(f"cnn1d pool must be one of {', '.join(POOLS)}, got {self.pool!r}")
        self.channels = check_sizes("cnn1d", "channels", self.channels)
        self.hidden = check_sizes("cnn1d", "hidden", self.hidden, allow_empty=True)
        check_config("cnn1d", self)
        if (
            not isinstance(self.kernel_size, int)
            or self.kernel_size < 1
            or self.kernel_size % 2 == 0
        ):
            raise ModelError(
                f"cnn1d kernel_size must be an odd positive integer, got {self.kernel_size!r}"
            )

    @classmethod
    def paper(cls, n_features: int, n_classes: int = 2) -> CNN1DConfig:
        """The large size: 4 convolutions of 64 channels, kernel 3, MLP 128, dropout 0.1."""
        return cls(
            n_features,
            n_classes,
            channels=(64, 64, 64, 64),
            kernel_size=3,
            hidden=(128,),
            dropout=0.1,
        )

    def to_dict(self) -> dict:
        """JSON-serialisable copy."""
        d = asdict(self)
        d["channels"], d["hidden"] = list(self.channels), list(self.hidden)
        return d


class CNN1D(TaggerModel):
    """Conv1d stack over the particle sequence + masked global max-pool + MLP."""

    name = "cnn1d"

    def __init__(self, config: CNN1DConfig) -> None:
        super().__init__()
        self.config = config
        widths = (config.n_features, *config.channels)
        self.convs = nn.ModuleList(
            nn.Conv1d(a, b, config.kernel_size, padding=config.kernel_size // 2)
            for a, b in itertools.pairwise(widths)
        )
        pooled = widths[-1] * (2 if config.pool == "max+mean" else 1)
        # [Dropout -> Linear -> ReLU] * len(hidden) -> Linear
        self.head = mlp(
            (pooled, *config.hidden, config.n_classes),
            dropout=config.dropout,
            dropout_first=True,
            output_layer=True,
        )

    def forward(self, x: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` (B, P, F), ``v`` (B, P, 4) unused, ``mask`` (B, P) -> logits (B, n_classes)."""
        keep = mask.unsqueeze(1)  # (B, 1, P)
        h = x.transpose(1, 2)  # (B, F, P): channels first for Conv1d
        h = torch.where(keep, h, torch.zeros_like(h))
        for conv in self.convs:
            h = torch.relu(conv(h))  # (B, C, P)
            # zero padded positions so the next layer sees what it would at the sequence end
            h = torch.where(keep, h, torch.zeros_like(h))
        h = h.transpose(1, 2)  # (B, P, C)
        pooled = masked_max(h, mask)  # (B, C)
        if self.config.pool == "max+mean":
            pooled = torch.cat([pooled, masked_mean(h, mask)], dim=-1)  # (B, 2C)
        return self.head(pooled)  # (B, n_classes)
