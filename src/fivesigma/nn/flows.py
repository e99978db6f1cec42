"""Normalizing flows shared by the tasks: zuko's neural spline flow, sampled faster.

:func:`spline_flow` is ``zuko.flows.NSF`` (a masked autoregressive flow of monotonic
rational-quadratic splines) built with :class:`RQS`, zuko's spline transform with a
hand-written softmax over the bins: torch's CPU softmax over an inner dimension of a few
bins is about four times slower than ``exp / sum``, and it took half of a spline flow's
sampling time.  The arithmetic is zuko's line for line, so parameters carry over between
the two unchanged (``tests/test_nn_flows.py`` checks the densities agree).

``passes=2`` makes each transform a coupling (two network passes to invert) instead of
fully autoregressive (one pass per feature): sampling is then ``features / 2`` times
cheaper, which is what a fast-simulation surrogate or CATHODE's oversampling wants.

Importing this module imports torch and zuko (``pip install 'fivesigma[flows]'``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn.functional import pad

from fivesigma.core import extras

__all__ = ["RQS", "spline_flow"]

zuko = extras.zuko()


def _softmax(x: torch.Tensor) -> torch.Tensor:
    e = torch.exp(x - x.amax(dim=-1, keepdim=True))
    return e / e.sum(dim=-1, keepdim=True)


class RQS(zuko.transforms.MonotonicRQSTransform):
    """``zuko.transforms.MonotonicRQSTransform`` with :func:`_softmax` over the bins."""

    def __init__(
        self,
        widths: torch.Tensor,
        heights: torch.Tensor,
        derivatives: torch.Tensor,
        bound: float = 5.0,
        slope: float = 1e-3,
        **kwargs: Any,
    ) -> None:
        torch.distributions.Transform.__init__(self, **kwargs)
        widths = widths / (1 + abs(2 * widths / math.log(slope)))
        heights = heights / (1 + abs(2 * heights / math.log(slope)))
        derivatives = derivatives / (1 + abs(derivatives / math.log(slope)))
        widths = pad(_softmax(widths), (1, 0), value=0)
        heights = pad(_softmax(heights), (1, 0), value=0)
        derivatives = pad(derivatives, (1, 1), value=0)
        self.horizontal = bound * (2 * torch.cumsum(widths, dim=-1) - 1)
        self.vertical = bound * (2 * torch.cumsum(heights, dim=-1) - 1)
        self.derivatives = torch.exp(derivatives)


def spline_flow(
    features: int,
    context: int = 0,
    bins: int = 8,
    transforms: int = 3,
    hidden: tuple[int, ...] | list[int] = (64, 64),
    passes: int | None = None,
) -> Any:
    """A conditional neural spline flow ``p(x | c)``: ``flow(c).log_prob(x)``,
    ``flow(c).sample()``; the parameters of ``zuko.flows.NSF`` with the same arguments.

    >>> flow = spline_flow(3, context=2, transforms=2, hidden=(16,), passes=2)
    >>> flow(torch.zeros(5, 2)).sample().shape
    torch.Size([5, 3])
    """
    return zuko.flows.MAF(
        features,
        context=context,
        univariate=RQS,
        shapes=[(bins,), (bins,), (bins - 1,)],
        transforms=transforms,
        hidden_features=tuple(hidden),
        passes=passes,
    )
