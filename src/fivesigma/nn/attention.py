"""Multi-head attention over padded sets and the pre-LN transformer block of ParT.

:class:`Attention` takes an optional additive bias per head (ParT's interaction bias
from pairwise features) and a key padding mask: the logits of padded keys are replaced by
:data:`~fivesigma.nn.masked.ATTENTION_MASK_VALUE`, so their weight is exactly 0.
:class:`TransformerBlock` is a particle (self-)attention block, or with ``cls`` a class
attention block (CaiT, arXiv:2103.17239, as ParT uses it): a class token attends to itself
and to the set, and only it is updated.

>>> import torch
>>> block = TransformerBlock(dim=8, num_heads=2, ffn_ratio=2, dropout=0.0)
>>> x = torch.randn(3, 5, 8); mask = torch.ones(3, 5, dtype=torch.bool)
>>> block(x, mask).shape, block(x, mask, cls=torch.zeros(3, 1, 8)).shape
(torch.Size([3, 5, 8]), torch.Size([3, 1, 8]))
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fivesigma.nn.masked import ATTENTION_MASK_VALUE

__all__ = ["Attention", "TransformerBlock"]


class Attention(nn.Module):
    """Multi-head attention with an optional additive bias and a key padding mask."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.attn_dropout = nn.Dropout(dropout)

    def forward(
        self,
        query: torch.Tensor,
        context: torch.Tensor,
        key_mask: torch.Tensor,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``query`` (B, Q, D), ``context`` (B, K, D), ``key_mask`` (B, K) bool (True: a
        real key), ``bias`` (B, H, Q, K) or None -> (B, Q, D)."""
        b, _, dim = query.shape
        h, hd = self.num_heads, self.head_dim
        q = self.q(query).reshape(b, -1, h, hd).transpose(1, 2)  # (B, H, Q, hd)
        k = self.k(context).reshape(b, -1, h, hd).transpose(1, 2)  # (B, H, K, hd)
        val = self.v(context).reshape(b, -1, h, hd).transpose(1, 2)  # (B, H, K, hd)
        logits = q @ k.transpose(-2, -1) / math.sqrt(hd)  # (B, H, Q, K)
        if bias is not None:
            logits = logits + bias
        # replace (not add to) the logits of padded keys: their weight is exactly 0
        logits = logits.masked_fill(~key_mask[:, None, None, :], ATTENTION_MASK_VALUE)
        weights = self.attn_dropout(torch.softmax(logits, dim=-1))  # (B, H, Q, K)
        out = (weights @ val).transpose(1, 2).reshape(b, -1, dim)  # (B, Q, H, hd) -> (B, Q, D)
        return self.out(out)


class TransformerBlock(nn.Module):
    """Pre-LN transformer block as in ParT: LN -> attention -> LN -> + ; LN -> MLP -> +.

    Called without ``cls`` it is a self-attention block (queries = keys = the set, with
    an optional attention bias); with ``cls`` (B, 1, D) it is a class attention block: the
    class token attends to itself and to the set and only it is updated.  The MLP is
    ``LN -> Linear(D, ffn_ratio D) -> GELU -> LN -> Linear(ffn_ratio D, D)`` with dropout.
    """

    def __init__(self, dim: int, num_heads: int, ffn_ratio: int, dropout: float) -> None:
        super().__init__()
        self.pre_attn_norm = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, dropout)
        self.post_attn_norm = nn.LayerNorm(dim)
        self.pre_fc_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, dim * ffn_ratio)
        self.post_fc_norm = nn.LayerNorm(dim * ffn_ratio)
        self.fc2 = nn.Linear(dim * ffn_ratio, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        bias: torch.Tensor | None = None,
        cls: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x`` (B, P, D), ``mask`` (B, P), ``bias`` (B, H, P, P) -> (B, P, D); or with
        ``cls`` (B, 1, D) -> updated class token (B, 1, D)."""
        if cls is None:
            residual = x
            h = self.pre_attn_norm(x)
            h = self.attn(h, h, mask, bias)  # (B, P, D)
        else:
            residual = cls
            context = self.pre_attn_norm(torch.cat([cls, x], dim=1))  # (B, 1 + P, D)
            key_mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)  # (B, 1 + P)
            h = self.attn(cls, context, key_mask)  # (B, 1, D)
        x = residual + self.dropout(self.post_attn_norm(h))
        h = self.dropout(torch.nn.functional.gelu(self.fc1(self.pre_fc_norm(x))))  # (B, ., rD)
        h = self.fc2(self.post_fc_norm(h))  # (B, ., D)
        return x + self.dropout(h)
