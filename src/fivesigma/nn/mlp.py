"""Fully connected networks: the :func:`mlp` layer stack of the taggers, and the event
classifier :class:`MLP` (one module, nanoGPT style).

>>> import torch
>>> net = MLP(MLPConfig(n_inputs=4, n_classes=2, hidden=(8, 8)))
>>> net(torch.zeros(3, 4)).shape   # binary: one logit per event
torch.Size([3, 1])
>>> mlp((4, 8, 2), dropout=0.1, output_layer=True)
Sequential(
  (0): Linear(in_features=4, out_features=8, bias=True)
  (1): ReLU()
  (2): Dropout(p=0.1, inplace=False)
  (3): Linear(in_features=8, out_features=2, bias=True)
)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from fivesigma.errors import ModelError

__all__ = ["ACTIVATIONS", "MLP", "MLPConfig", "ProbabilityHead", "mlp"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


def mlp(
    widths: Sequence[int],
    activation: Callable[[], nn.Module] = nn.ReLU,
    *,
    dropout: float | None = None,
    dropout_first: bool = False,
    output_layer: bool = False,
) -> nn.Sequential:
    """Linear layers ``widths[0] -> widths[1] -> ... -> widths[-1]``, each ``Linear -> act``.

    ``dropout`` (a float, 0 included: the module is there either way, so the indices and
    the state-dict keys do not depend on it) adds ``nn.Dropout`` after each activation, or
    before each Linear with ``dropout_first``.  ``output_layer``: the last Linear is bare
    (logits), without activation or dropout.  The Sequential's indices are those of the
    layers in this order, e.g. ``[Linear, ReLU] * n`` keys ``0, 2, 4, ...``.
    """
    layers: list[nn.Module] = []
    n_hidden = len(widths) - 1 - int(output_layer)
    for i in range(n_hidden):
        block: list[nn.Module] = [nn.Linear(widths[i], widths[i + 1]), activation()]
        if dropout is not None:
            block.insert(0 if dropout_first else 2, nn.Dropout(dropout))
        layers += block
    if output_layer:
        layers.append(nn.Linear(widths[-2], widths[-1]))
    return nn.Sequential(*layers)


@dataclass
class MLPConfig:
    """Hyper-parameters of :class:`MLP`.

    Attributes
    ----------
    n_inputs : number of input features.
    n_classes : 2 for signal/background (one logit output), K > 2 for K logits.
    hidden : widths of the hidden layers.
    dropout : dropout probability after each hidden activation.
    batch_norm : batch normalisation before each hidden activation.
    activation : one of ``ACTIVATIONS``.
    """

    n_inputs: int
    n_classes: int = 2
    hidden: tuple[int, ...] = field(default=(64, 64))
    dropout: float = 0.0
    batch_norm: bool = False
    activation: str = "relu"

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.n_inputs < 1:
            raise ModelError(f"MLP n_inputs must be >= 1, got {self.n_inputs}")
        if self.n_classes < 2:
            raise ModelError(f"MLP n_classes must be >= 2, got {self.n_classes}")
        if any(h < 1 for h in self.hidden):
            raise ModelError(
                f"MLP hidden layer sizes must be positive integers, got {list(self.hidden)}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ModelError(f"MLP dropout must be in [0, 1), got {self.dropout}")
        if self.activation not in ACTIVATIONS:
            raise ModelError(
                f"MLP activation {self.activation!r} is not known; accepted: {', '.join(ACTIVATIONS)}"
            )

    @property
    def n_outputs(self) -> int:
        """1 logit for binary classification, else one per class."""
        return 1 if self.n_classes == 2 else self.n_classes

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable copy."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


class MLP(nn.Module):
    """``[Linear -> (BatchNorm) -> activation -> (Dropout)] * len(hidden) -> Linear``.

    ``forward(x)`` maps standardised features ``(batch, n_inputs)`` to logits
    ``(batch, n_outputs)``.
    """

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        width = config.n_inputs
        for h in config.hidden:
            # the bias is redundant right before batch norm (which adds its own shift)
            layers.append(nn.Linear(width, h, bias=not config.batch_norm))
            if config.batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(ACTIVATIONS[config.activation]())
            if config.dropout > 0:
                layers.append(nn.Dropout(config.dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, config.n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)  # (batch, hidden[-1])
        return self.head(h)  # (batch, n_outputs)


class ProbabilityHead(nn.Module):
    """Raw features -> class probabilities: standardisation, the MLP, sigmoid/softmax.

    Used for ONNX export, so that a deployed model takes the physics features directly.
    """

    def __init__(self, net: MLP, mean: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", mean.to(torch.float32).reshape(1, -1))  # (1, n_inputs)
        self.register_buffer("scale", scale.to(torch.float32).reshape(1, -1))  # (1, n_inputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net((x - self.mean) / self.scale)  # (batch, n_outputs)
        if logits.shape[1] == 1:
            p = torch.sigmoid(logits)  # (batch, 1)
            return torch.cat([1.0 - p, p], dim=1)  # (batch, 2)
        return torch.softmax(logits, dim=1)  # (batch, n_classes)
