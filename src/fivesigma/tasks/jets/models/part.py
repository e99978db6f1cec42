"""Particle Transformer (Qu, Li, Qian, arXiv:2202.03772), nanoGPT style.

``x`` (B, P, F) -> particle embedding MLP -> particle attention blocks whose attention
logits get one additive bias per head from the pairwise features
``(ln kT, ln z, ln dR, ln m^2)`` of ``v`` -> class-attention blocks with a learnable class
token -> LayerNorm -> linear -> logits (B, n_classes).  The blocks are
:class:`~fivesigma.nn.attention.TransformerBlock`; the pairwise features
:func:`~fivesigma.physics.kinematics.pair_features`.

Masking: padded particles are never attention keys (their logits are replaced by
:data:`~fivesigma.nn.masked.ATTENTION_MASK_VALUE`), pairs involving them get a
zero bias, and the embedding sets them to zero.  Padded queries still compute something,
but it never reaches a real particle or the class token.  The reference's input BatchNorm
is the tagger's standardisation of ``x``; the pair embedding's BatchNorms (on the four
pairwise features and after each of its layers) take their statistics from real pairs
only, each unordered pair (diagonal included) counted once as in the reference's packed
pair embedding (:class:`~fivesigma.nn.masked.MaskedBatchNorm`), or are LayerNorms after
each layer with ``pair_norm="layer"``, which fivesigma used before it had a masked batch
norm (bundles saved then load with it).

>>> import torch
>>> net = ParT(ParTConfig(n_features=4))
>>> v = torch.rand(2, 5, 4) + torch.tensor([0.0, 0.0, 0.0, 2.0])
>>> net(torch.randn(2, 5, 4), v, torch.ones(2, 5, dtype=torch.bool)).shape
torch.Size([2, 2])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from fivesigma.errors import ModelError
from fivesigma.nn.attention import TransformerBlock
from fivesigma.nn.masked import MaskedBatchNorm, norm_layer, run_masked
from fivesigma.nn.pairs import pairwise_lv_fts
from fivesigma.nn.utils import check_config, check_sizes
from fivesigma.physics.kinematics import pair_features
from fivesigma.tasks.jets.models.base import TaggerModel

__all__ = ["PAIR_NORMS", "ParT", "ParTConfig"]

#: normalisation of the pair embedding: masked batch norm (as the reference) or LayerNorm
PAIR_NORMS = ("batch", "layer")


@dataclass
class ParTConfig:
    """Hyper-parameters of :class:`ParT`.

    Default (CPU-friendly): embedding (64, 64), pair embedding (32, 32), 4 heads,
    3 particle blocks, 1 class block, MLP ratio 2.  :meth:`paper`: embedding
    (128, 512, 128), pair embedding (64, 64, 64), 8 heads, 8 particle blocks, 2 class
    blocks, MLP ratio 4, dropout 0.1.

    Attributes
    ----------
    n_features : per-particle input features F.
    n_classes : number of output logits.
    embed_dims : widths of the particle embedding MLP; the last is the model width.
    pair_embed_dims : widths of the pointwise MLP on the 4 pairwise features; a final
        layer maps to one bias per head.  Empty: no interaction bias (plain transformer).
    num_heads : attention heads (must divide the model width).
    num_layers : particle attention blocks.
    num_cls_layers : class attention blocks.
    ffn_ratio : hidden width of each block's MLP, in units of the model width.
    dropout : dropout after attention and MLP (also on attention weights and activations).
    pair_norm : normalisation in the pair embedding: ``"batch"`` (as the reference, over
        real pairs, also on its four inputs) or ``"layer"`` (LayerNorm after each layer).
    """

    n_features: int
    n_classes: int = 2
    embed_dims: tuple[int, ...] = (64, 64)
    pair_embed_dims: tuple[int, ...] = (32, 32)
    num_heads: int = 4
    num_layers: int = 3
    num_cls_layers: int = 1
    ffn_ratio: int = 2
    dropout: float = 0.1
    pair_norm: str = "batch"

    #: values of fields that bundles saved before the field existed were trained with
    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = {"pair_norm": "layer"}

    def __post_init__(self) -> None:
        if self.pair_norm not in PAIR_NORMS:
            raise ModelError(
                f"part pair_norm must be one of {', '.join(PAIR_NORMS)}, got {self.pair_norm!r}"
            )
        self.embed_dims = check_sizes("part", "embed_dims", self.embed_dims)
        self.pair_embed_dims = check_sizes(
            "part", "pair_embed_dims", self.pair_embed_dims, allow_empty=True
        )
        check_config("part", self)
        for name in ("num_heads", "num_cls_layers", "ffn_ratio"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ModelError(f"part {name} must be a positive integer, got {value!r}")
        if not isinstance(self.num_layers, int) or self.num_layers < 0:
            raise ModelError(f"part num_layers must be an integer >= 0, got {self.num_layers!r}")
        if self.embed_dims[-1] % self.num_heads:
            raise ModelError(
                f"part num_heads {self.num_heads} must divide the model width "
                f"embed_dims[-1] = {self.embed_dims[-1]}"
            )

    @classmethod
    def paper(cls, n_features: int, n_classes: int = 2) -> ParTConfig:
        """The Particle Transformer of arXiv:2202.03772."""
        return cls(
            n_features,
            n_classes,
            embed_dims=(128, 512, 128),
            pair_embed_dims=(64, 64, 64),
            num_heads=8,
            num_layers=8,
            num_cls_layers=2,
            ffn_ratio=4,
            dropout=0.1,
        )

    def to_dict(self) -> dict:
        """JSON-serialisable copy."""
        d = asdict(self)
        d["embed_dims"], d["pair_embed_dims"] = list(self.embed_dims), list(self.pair_embed_dims)
        return d


class ParT(TaggerModel):
    """Particle Transformer: embedding, interaction-biased attention, class attention."""

    name = "part"
    #: eager training and inference evaluate the pair embedding once per real unordered
    #: pair (the dense path, which ONNX export traces, gives the same numbers;
    #: ``bench/bench_taggers.py --dense-pair-reference`` times both)
    pack_pairs: ClassVar[bool] = True

    def __init__(self, config: ParTConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        prev = config.n_features
        for i, w in enumerate(config.embed_dims):
            if i > 0:
                layers.append(nn.LayerNorm(prev))
            layers += [nn.Linear(prev, w), nn.GELU()]
            prev = w
        self.embed = nn.Sequential(*layers)
        dim = prev
        if config.pair_embed_dims:
            # pointwise ("1x1 conv") MLP on each pair's 4 features -> one bias per head
            # the reference also batch-normalises the 4 raw pairwise features
            layers, prev = [MaskedBatchNorm(4)] if config.pair_norm == "batch" else [], 4
            for w in config.pair_embed_dims:
                layers += [nn.Linear(prev, w), norm_layer(config.pair_norm, w), nn.GELU()]
                prev = w
            layers.append(nn.Linear(prev, config.num_heads))
            # a ModuleList with the indices of the former nn.Sequential: old bundles load
            self.pair_embed: nn.ModuleList | None = nn.ModuleList(layers)
        else:
            self.pair_embed = None
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, config.num_heads, config.ffn_ratio, config.dropout)
            for _ in range(config.num_layers)
        )
        self.cls_blocks = nn.ModuleList(
            TransformerBlock(dim, config.num_heads, config.ffn_ratio, config.dropout)
            for _ in range(config.num_cls_layers)
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, config.n_classes)

    def interaction_bias(self, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
        """Per-head attention bias from the pairwise features: (B, H, P, P), 0 for padded pairs.

        In training the pair embedding's batch norms count each unordered real pair
        (diagonal included) once, as the reference's packed pair embedding does.  Eager
        training and inference run on the packed pairs; an ONNX export traces the dense
        path (a static graph; in evaluation mode both give the same numbers).
        """
        if self.pair_embed is None:
            return None
        if self.pack_pairs and not torch.jit.is_tracing():
            bias = self._pair_bias_packed(v, mask)
        else:
            fts, pair_mask = pairwise_lv_fts(v, mask)  # (B, P, P, 4), (B, P, P)
            stats_mask = None
            if self.training:  # the packed path's statistics: one of ij and ji
                stats_mask = pair_mask & _lower_triangle(mask)
            bias = run_masked(self.pair_embed, fts, pair_mask, stats_mask)  # (B, P, P, H)
            bias = torch.where(pair_mask.unsqueeze(-1), bias, torch.zeros_like(bias))
        return bias.permute(0, 3, 1, 2)  # (B, H, P, P)

    def _pair_bias_packed(self, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The pair embedding on each real unordered pair once: (B, P, 4) -> (B, P, P, H).

        The features and the pointwise MLP are symmetric in the two particles, so ij and ji
        share one evaluation, and the features are computed for real pairs only.  With
        ~50 real of 100 slots this is ~1/8 of the dense work; the batch norms run as one
        fused kernel on the packed pairs.
        """
        b, p = mask.shape
        pairs = mask.unsqueeze(2) & mask.unsqueeze(1) & _lower_triangle(mask)
        jet, i, j = pairs.nonzero(as_tuple=True)  # i >= j
        h = pair_features(v[jet, i], v[jet, j])  # (N, 4)
        assert self.pair_embed is not None
        h = run_masked(self.pair_embed, h, None)  # (N, H)
        bias = h.new_zeros(b, p, p, h.shape[-1])
        bias[jet, i, j] = h
        off = i != j  # the mirror image of each off-diagonal pair (disjoint positions)
        bias[jet[off], j[off], i[off]] = h[off]
        return bias

    def forward(self, x: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` (B, P, F), ``v`` (B, P, 4) in GeV, ``mask`` (B, P) -> logits (B, n_classes)."""
        keep = mask.unsqueeze(-1)  # (B, P, 1)
        x = torch.where(keep, x, torch.zeros_like(x))
        v = torch.where(keep, v, torch.zeros_like(v))
        h = self.embed(x)  # (B, P, D)
        h = torch.where(keep, h, torch.zeros_like(h))
        bias = self.interaction_bias(v, mask)
        for block in self.blocks:
            h = block(h, mask, bias)  # (B, P, D)
        cls = self.cls_token.expand(h.shape[0], -1, -1)  # (B, 1, D)
        for block in self.cls_blocks:
            cls = block(h, mask, cls=cls)  # (B, 1, D)
        return self.fc(self.norm(cls[:, 0]))  # (B, D) -> (B, n_classes)


def _lower_triangle(mask: torch.Tensor) -> torch.Tensor:
    """(P, P) bool, True where i >= j: one of each unordered pair ij, ji (and ii)."""
    p = mask.shape[1]
    return torch.ones(p, p, dtype=torch.bool, device=mask.device).tril()
