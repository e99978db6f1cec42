"""Particle Flow Network / Deep Sets (Komiske, Metodiev, Thaler, arXiv:1810.05165).

``x`` (B, P, F) -> per-particle MLP Phi -> sum over *real* particles -> MLP F -> logits.
The sum makes the network invariant to the order of the particles and to padding.

>>> import torch
>>> net = PFN(PFNConfig(n_features=3))
>>> net(torch.zeros(2, 5, 3), torch.zeros(2, 5, 4), torch.ones(2, 5, dtype=torch.bool)).shape
torch.Size([2, 2])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from fivesigma.nn.masked import masked_sum
from fivesigma.nn.mlp import mlp
from fivesigma.nn.utils import check_config, check_sizes
from fivesigma.tasks.jets.models.base import TaggerModel

__all__ = ["PFN", "PFNConfig"]


@dataclass
class PFNConfig:
    """Hyper-parameters of :class:`PFN`.

    Default: Phi (64, 64, 128), F (64, 64), CPU-friendly.  :meth:`paper`: Phi
    (100, 100, 256), F (100, 100, 100) as in the Energy Flow Networks paper.

    Attributes
    ----------
    n_features : per-particle input features F.
    n_classes : number of output logits.
    phi : widths of the per-particle network; the last one is the latent dimension.
    f : widths of the jet-level network after the sum.
    dropout : dropout before each layer of F.
    """

    n_features: int
    n_classes: int = 2
    phi: tuple[int, ...] = (64, 64, 128)
    f: tuple[int, ...] = (64, 64)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        self.phi = check_sizes("pfn", "phi", self.phi)
        self.f = check_sizes("pfn", "f", self.f, allow_empty=True)
        check_config("pfn", self)

    @classmethod
    def paper(cls, n_features: int, n_classes: int = 2) -> PFNConfig:
        """Phi (100, 100, 256), F (100, 100, 100) (arXiv:1810.05165)."""
        return cls(n_features, n_classes, phi=(100, 100, 256), f=(100, 100, 100))

    def to_dict(self) -> dict:
        """JSON-serialisable copy."""
        d = asdict(self)
        d["phi"], d["f"] = list(self.phi), list(self.f)
        return d


class PFN(TaggerModel):
    """Per-particle MLP, masked sum, jet-level MLP."""

    name = "pfn"

    def __init__(self, config: PFNConfig) -> None:
        super().__init__()
        self.config = config
        self.phi = mlp((config.n_features, *config.phi))  # [Linear -> ReLU] * len(phi)
        # [Dropout -> Linear -> ReLU] * len(f) -> Linear
        self.f = mlp(
            (config.phi[-1], *config.f, config.n_classes),
            dropout=config.dropout,
            dropout_first=True,
            output_layer=True,
        )

    def forward(self, x: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` (B, P, F), ``v`` (B, P, 4) unused, ``mask`` (B, P) -> logits (B, n_classes)."""
        h = self.phi(x)  # (B, P, latent)
        latent = masked_sum(h, mask)  # (B, latent): padded particles add nothing
        return self.f(latent)  # (B, n_classes)
