"""Model bookkeeping: parameter counts and one-line checks of config dataclasses."""

from __future__ import annotations

from typing import Any

from torch import nn

from fivesigma.errors import ModelError

__all__ = ["check_config", "check_sizes", "count_parameters"]


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (elements) of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def check_config(name: str, config: Any) -> None:
    """One-line :class:`ModelError` for impossible sizes in a model config dataclass.

    ``config`` has ``n_features`` (>= 1) and ``n_classes`` (>= 2), optionally ``dropout``
    (in [0, 1)); ``name`` is the model's name in the message.
    """
    for field_name in ("n_features", "n_classes"):
        value = getattr(config, field_name)
        if not isinstance(value, int) or value < (2 if field_name == "n_classes" else 1):
            least = 2 if field_name == "n_classes" else 1
            raise ModelError(f"{name} {field_name} must be an integer >= {least}, got {value!r}")
    dropout = getattr(config, "dropout", 0.0)
    if not 0.0 <= dropout < 1.0:
        raise ModelError(f"{name} dropout must be in [0, 1), got {dropout!r}")


def check_sizes(
    name: str, field_name: str, sizes: Any, allow_empty: bool = False
) -> tuple[int, ...]:
    """Layer widths as a tuple of positive ints, or a one-line :class:`ModelError`."""
    try:
        out = tuple(int(s) for s in sizes)
    except (TypeError, ValueError):
        raise ModelError(
            f"{name} {field_name} must be a list of positive integers, got {sizes!r}"
        ) from None
    if (not out and not allow_empty) or any(s < 1 for s in out):
        raise ModelError(
            f"{name} {field_name} must be a list of positive integers, got {list(out)}"
        )
    return out
