"""The base class of every jet tagger."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fivesigma.nn.utils import count_parameters

__all__ = ["TaggerModel"]


class TaggerModel(nn.Module):
    """Base of every tagger: ``forward(x, v, mask) -> logits`` and :meth:`n_parameters`.

    ``x`` (B, P, F) particle features, ``v`` (B, P, 4) four-momenta (px, py, pz, E) in
    GeV, ``mask`` (B, P) bool (True: a real particle) -> (B, n_classes) logits.
    Subclasses set ``self.config`` (their hyper-parameter dataclass) and ``name``.
    """

    name: str = ""
    config: Any

    def n_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters (elements), as reported in papers."""
        return count_parameters(self, trainable_only)

    def forward(self, x: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
