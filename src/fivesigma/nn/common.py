"""Pieces shared by the jet taggers: masked pooling, pairwise Lorentz features, kNN.

Conventions for every function here: a batch of jets is padded to ``P`` particles;
``mask`` (B, P) is True for real particles.  Nothing computed for a padded particle may
leak into a real one, and no NaN may appear anywhere (``0 * nan`` is ``nan``, so padded
entries are removed with :func:`torch.where`, never by multiplying with the mask).

>>> import torch
>>> h = torch.tensor([[[1.0], [3.0], [100.0]]]); mask = torch.tensor([[True, True, False]])
>>> masked_sum(h, mask).tolist(), masked_mean(h, mask).tolist(), masked_max(h, mask).tolist()
([[4.0]], [[2.0]], [[3.0]])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fivesigma.errors import ModelError

__all__ = [
    "ATTENTION_MASK_VALUE",
    "MaskedBatchNorm",
    "TaggerModel",
    "check_config",
    "check_sizes",
    "count_parameters",
    "gather_neighbours",
    "knn",
    "masked_max",
    "masked_mean",
    "masked_sum",
    "norm_layer",
    "pair_features",
    "pairwise_lv_fts",
    "run_masked",
]

#: Added to attention logits of padded keys.  Finite (not -inf) so that a jet without
#: any real particle still gives finite (meaningless) outputs instead of NaN; exp(-1e9)
#: is exactly 0 in float32, so real jets are unaffected.
ATTENTION_MASK_VALUE = -1e9


def masked_sum(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over real particles: (B, P, C), (B, P) -> (B, C)."""
    return torch.where(mask.unsqueeze(-1), h, torch.zeros_like(h)).sum(dim=1)


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real particles (0 for a jet without any): (B, P, C), (B, P) -> (B, C)."""
    n = mask.sum(dim=1, keepdim=True).clamp_min(1).to(h.dtype)  # (B, 1)
    return masked_sum(h, mask) / n


def masked_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over real particles (0 for a jet without any): (B, P, C), (B, P) -> (B, C).

    Padded positions are set to -inf before the max, so they can never win.
    """
    neg_inf = torch.full_like(h, float("-inf"))
    out = torch.where(mask.unsqueeze(-1), h, neg_inf).amax(dim=1)  # (B, C)
    has_any = mask.any(dim=1, keepdim=True)  # (B, 1)
    return torch.where(has_any, out, torch.zeros_like(out))


def pair_features(va: torch.Tensor, vb: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """ParT's pairwise features ``(ln kT, ln z, ln dR, ln m^2)`` of particle pairs.

    ``va`` and ``vb`` (..., 4) are the two particles' four-momenta (px, py, pz, E) in GeV,
    broadcast against each other: ``v[:, :, None]`` and ``v[:, None, :]`` give every pair
    of a padded batch, ``v[jet, i]`` and ``v[jet, j]`` a list of pairs.  Returns (..., 4).
    The formulas are :func:`pairwise_lv_fts`'s; the features are symmetric in a and b.
    """
    px_a, py_a, pz_a, e_a = va.unbind(dim=-1)
    px_b, py_b, pz_b, e_b = vb.unbind(dim=-1)
    pt_a = torch.sqrt(px_a * px_a + py_a * py_a)
    pt_b = torch.sqrt(px_b * px_b + py_b * py_b)
    dot = px_a * px_b + py_a * py_b
    cross = px_a * py_b - py_a * px_b
    # atan2(0, 0) is 0 in torch but 0/0 = NaN in the exported ONNX graph: a particle of zero
    # momentum would poison its pairs there, so such pairs get atan2(0, 1) = 0 explicitly
    both_zero = (dot == 0) & (cross == 0)
    dphi = torch.atan2(cross, torch.where(both_zero, torch.ones_like(dot), dot))
    drap = _rapidity(pz_a, e_a) - _rapidity(pz_b, e_b)
    delta = torch.sqrt(drap * drap + dphi * dphi)

    ptmin = torch.minimum(pt_a, pt_b)
    lndelta = torch.log(delta.clamp(min=eps))
    lnkt = torch.log((ptmin * delta).clamp(min=eps))
    lnz = torch.log((ptmin / (pt_a + pt_b).clamp(min=eps)).clamp(min=eps))
    s = va + vb  # summed four-momenta
    m2 = s[..., 3] ** 2 - s[..., 0] ** 2 - s[..., 1] ** 2 - s[..., 2] ** 2
    lnm2 = torch.log(m2.clamp(min=eps))
    return torch.stack([lnkt, lnz, lndelta, lnm2], dim=-1)


def _rapidity(pz: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    # as in ParT: 0.5 ln((E + pz) / (E - pz)) written to stay finite at E = pz; the clamp
    # on the argument guards against E < |pz| from rounding
    return 0.5 * torch.log((1 + 2 * pz / (e - pz).clamp(min=1e-20)).clamp(min=1e-20))


def pairwise_lv_fts(
    v: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8
) -> tuple[torch.Tensor, torch.Tensor]:
    """ParT's pairwise features ``(ln kT, ln z, ln dR, ln m^2)`` of every particle pair.

    As ``pairwise_lv_fts`` of the Particle Transformer (arXiv:2202.03772)::

        dR    = sqrt((y_a - y_b)^2 + dphi_ab^2)        (y: rapidity)
        kT    = min(pT_a, pT_b) * dR
        z     = min(pT_a, pT_b) / (pT_a + pT_b)
        m^2   = (E_a + E_b)^2 - |p_a + p_b|^2
        each clamped to >= eps before the log.

    ``dphi`` is ``atan2(p_a x p_b, p_a . p_b)`` in the transverse plane: the same wrapped
    angle as ``(phi_a - phi_b + pi) mod 2 pi - pi`` up to its sign (only its square is
    used), with one ONNX-friendly ``atan2`` and no modulo.

    Parameters
    ----------
    v : (B, P, 4) four-momenta (px, py, pz, E) in GeV.
    mask : (B, P) bool, True for real particles.

    Returns
    -------
    fts : (B, P, P, 4) float, zero for every pair that involves a padded particle.
    pair_mask : (B, P, P) bool, True where both particles are real.
    """
    fts = pair_features(v.unsqueeze(2), v.unsqueeze(1), eps)  # (B, P, P, 4)
    pair_mask = mask.unsqueeze(2) & mask.unsqueeze(1)  # (B, P, P)
    fts = torch.where(pair_mask.unsqueeze(-1), fts, torch.zeros_like(fts))
    return fts, pair_mask


def knn(coords: torch.Tensor, mask: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest real neighbours (itself excluded) of every particle.

    Distances come from :func:`torch.cdist`; pairs with a padded particle and the particle
    itself get distance +inf, so they are never chosen before a real neighbour.  When a
    jet has fewer than ``k + 1`` real particles the surplus slots are marked invalid in
    ``valid`` (k is clipped per jet).  ``k`` extra padded columns are appended before
    ``topk`` so that ``topk(k)`` is defined for any ``P`` (also in an exported ONNX graph
    with a dynamic particle axis).

    Parameters
    ----------
    coords : (B, P, C) coordinates in which distances are measured.
    mask : (B, P) bool, True for real particles.
    k : number of neighbours.

    Returns
    -------
    idx : (B, P, k) int64 neighbour indices in ``[0, P)`` (0 in invalid slots).
    valid : (B, P, k) bool, True where ``idx`` is a real neighbour of a real particle.
    """
    coords_ext = nn.functional.pad(coords, (0, 0, 0, k))  # (B, P + k, C)
    mask_ext = nn.functional.pad(mask, (0, k), value=False)  # (B, P + k)
    dist = torch.cdist(coords, coords_ext)  # (B, P, P + k)
    n_ext = mask_ext.shape[1]
    i = torch.arange(mask.shape[1], device=mask.device).unsqueeze(1)  # (P, 1)
    j = torch.arange(n_ext, device=mask.device).unsqueeze(0)  # (1, P + k)
    ok = mask.unsqueeze(2) & mask_ext.unsqueeze(1) & (i != j)  # (B, P, P + k)
    dist = torch.where(ok, dist, torch.full_like(dist, float("inf")))
    idx = dist.topk(k, dim=-1, largest=False).indices  # (B, P, k)
    valid = ok.gather(2, idx)
    idx = torch.where(valid, idx, torch.zeros_like(idx))
    return idx, valid


def gather_neighbours(h: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Features of each particle's neighbours: (B, P, C), (B, P, k) -> (B, P, k, C)."""
    b, p, k = idx.shape
    c = h.shape[-1]
    flat = idx.reshape(b, p * k, 1).expand(-1, -1, c)  # (B, P*k, C)
    return torch.gather(h, 1, flat).reshape(b, p, k, c)  # (B, P, k, C)


class MaskedBatchNorm(nn.Module):
    """Batch normalisation over the last (channel) axis with statistics of real entries only.

    ``nn.BatchNorm1d`` would average over padded particles (and padded kNN slots or
    particle pairs) too, so a jet's output would depend on how much padding its batch
    carries.  In training mode the real entries are gathered and normalised by torch's
    own batch norm (batch mean and biased variance; running estimates with momentum
    ``momentum`` and the unbiased variance), so the statistics, the running averages and
    the gradients are exactly ``nn.BatchNorm1d``'s on the real entries; padded entries
    come out as 0.  In evaluation mode every entry is normalised with the running
    estimates, independently of the rest of the batch.

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
            out[mask] = self._batch_norm(h[mask], True)
            return out
        # statistics of a subset applied to all real entries: written out (a reference
        # path; the fused kernel normalises only the entries it measured)
        var, mean = torch.var_mean(h[stats_mask], dim=0, correction=0)
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


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (elements) of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def check_config(name: str, config: Any) -> None:
    """One-line :class:`ModelError` for impossible sizes in a model config dataclass."""
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


class TaggerModel(nn.Module):
    """Base of every tagger: ``forward(x, v, mask) -> logits`` and :meth:`n_parameters`.

    Subclasses set ``self.config`` (their hyper-parameter dataclass) and ``name``.
    """

    name: str = ""
    config: Any

    def n_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters (elements), as reported in papers."""
        return count_parameters(self, trainable_only)

    def forward(self, x: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
