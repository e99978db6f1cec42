"""Masked operations over padded sets: pooling, batch normalisation, layer stacks.

Conventions for every function here: a batch of sets (jets, events, ...) is padded to
``P`` elements; ``mask`` (B, P) is True for real elements.  Nothing computed for a padded
element may leak into a real one, and no NaN may appear anywhere (``0 * nan`` is ``nan``,
so padded entries are removed with :func:`torch.where`, never by multiplying with the
mask).

>>> import torch
>>> h = torch.tensor([[[1.0], [3.0], [100.0]]]); mask = torch.tensor([[True, True, False]])
>>> masked_sum(h, mask).tolist(), masked_mean(h, mask).tolist(), masked_max(h, mask).tolist()
([[4.0]], [[2.0]], [[3.0]])
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "ATTENTION_MASK_VALUE",
    "MaskedBatchNorm",
    "masked_max",
    "masked_mean",
    "masked_sum",
    "norm_layer",
    "run_masked",
]

#: Added to attention logits of padded keys.  Finite (not -inf) so that a set without
#: any real element still gives finite (meaningless) outputs instead of NaN; exp(-1e9)
#: is exactly 0 in float32, so real sets are unaffected.
ATTENTION_MASK_VALUE = -1e9


def masked_sum(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over real elements: (B, P, C), (B, P) -> (B, C)."""
    return torch.where(mask.unsqueeze(-1), h, torch.zeros_like(h)).sum(dim=1)


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real elements (0 for a set without any): (B, P, C), (B, P) -> (B, C)."""
    n = mask.sum(dim=1, keepdim=True).clamp_min(1).to(h.dtype)  # (B, 1)
    return masked_sum(h, mask) / n


def masked_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over real elements (0 for a set without any): (B, P, C), (B, P) -> (B, C).

    Padded positions are set to -inf before the max, so they can never win.
    """
    neg_inf = torch.full_like(h, float("-inf"))
    out = torch.where(mask.unsqueeze(-1), h, neg_inf).amax(dim=1)  # (B, C)
    has_any = mask.any(dim=1, keepdim=True)  # (B, 1)
    return torch.where(has_any, out, torch.zeros_like(out))


class MaskedBatchNorm(nn.Module):
    """Batch normalisation over the last (channel) axis with statistics of real entries only.

    ``nn.BatchNorm1d`` would average over padded elements (and padded kNN slots or
    element pairs) too, so an output would depend on how much padding its batch carries.
    In training mode the real entries are gathered and normalised by torch's own batch
    norm (batch mean and biased variance; running estimates with momentum ``momentum``
    and the unbiased variance), so the statistics, the running averages and the gradients
    are exactly ``nn.BatchNorm1d``'s on the real entries; padded entries come out as 0.
    In evaluation mode every entry is normalised with the running estimates,
    independently of the rest of the batch.

    >>> bn = MaskedBatchNorm(1)
    >>> h = torch.tensor([[[1.0], [3.0], [1e6]]]); mask = torch.tensor([[True, True, False]])
    >>> [round(v, 4) for v in bn(h, mask)[0, :, 0].tolist()]
    [-1.0, 1.0, 0.0]
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(
        self,
        h: torch.Tensor,
        mask: torch.Tensor | None = None,
        stats_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``h`` (..., C), ``mask`` (...) bool -> (..., C).

        ``mask`` None: every entry is real (a packed (N, C) tensor).  ``stats_mask`` (a
        subset of ``mask``): in training, only these entries make the batch statistics
        (ParT's dense pair path counts each unordered pair once, as its packed path
        does); the default is ``mask``.
        """
        channels = h.shape[-1]
        n_stats = (
            h.numel() // channels
            if mask is None
            else int((mask if stats_mask is None else stats_mask).sum())
        )
        if not self.training or n_stats <= 1:  # running estimates (batch statistics need 2)
            return self._batch_norm(h.reshape(-1, channels), False).reshape(h.shape)
        if mask is None:
            return self._batch_norm(h.reshape(-1, channels), True).reshape(h.shape)
        if stats_mask is None:
            # Gathering the real entries and calling the fused kernel costs about what a
            # LayerNorm does; masked sums over the padded tensor were 5x slower on a CPU.
            out = torch.zeros_like(h)
            out[mask] = self._batch_norm(h[mask], True)  # (N_real, C)
            return out
        # statistics of a subset applied to all real entries: written out (a reference
        # path; the fused kernel normalises only the entries it measured)
        var, mean = torch.var_mean(h[stats_mask], dim=0, correction=0)  # (C,) each
        with torch.no_grad():
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(m * mean.detach())
            self.running_var.mul_(1 - m).add_(m * var.detach() * n_stats / (n_stats - 1))
        out = (h - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias
        return torch.where(mask.unsqueeze(-1), out, torch.zeros_like(out))

    def _batch_norm(self, flat: torch.Tensor, batch_stats: bool) -> torch.Tensor:
        return nn.functional.batch_norm(
            flat,  # (N, C)
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            training=batch_stats,
            momentum=self.momentum,
            eps=self.eps,
        )


def norm_layer(kind: str, width: int) -> nn.Module:
    """``"batch"``: :class:`MaskedBatchNorm`; ``"layer"``: ``nn.LayerNorm`` (channels last)."""
    return MaskedBatchNorm(width) if kind == "batch" else nn.LayerNorm(width)


def run_masked(
    layers: nn.ModuleList,
    h: torch.Tensor,
    mask: torch.Tensor | None,
    stats_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply ``layers`` in turn; each :class:`MaskedBatchNorm` also gets the masks."""
    for layer in layers:
        h = layer(h, mask, stats_mask) if isinstance(layer, MaskedBatchNorm) else layer(h)
    return h
