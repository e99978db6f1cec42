"""fivesigma.training: the one training loop and the preprocessing shared by all models.

``Standardiser`` needs only numpy; the torch pieces (``Trainer`` ...) are imported lazily,
so ``from fivesigma.training import Standardiser`` does not import torch.
"""

from __future__ import annotations

from typing import Any

from fivesigma.training.preprocessing import Standardiser

__all__ = [
    "Standardiser",
    "TrainHistory",
    "Trainer",
    "TrainerConfig",
    "resolve_device",
    "weighted_mean",
]

_TORCH_NAMES = {"TrainHistory", "Trainer", "TrainerConfig", "resolve_device", "weighted_mean"}


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        from fivesigma.training import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'fivesigma.training' has no attribute {name!r}")
