"""Graphs on padded point sets: k nearest neighbours and the EdgeConv block.

The EdgeConv block (Wang et al., arXiv:1801.07829), as ParticleNet uses it (Qu &
Gouskos, arXiv:1902.08570): find the k nearest neighbours of every element in some
coordinates, build edge features ``(h_i, h_j - h_i)``, pass them through a shared MLP,
average over the neighbours and add a shortcut of the input.  Padded elements are never
neighbours, and batch normalisation takes its statistics from real edges only.

>>> import torch
>>> block = EdgeConvBlock(3, (8, 8), k=2)
>>> h = torch.randn(2, 5, 3); mask = torch.ones(2, 5, dtype=torch.bool)
>>> block(h[..., :2], h, mask).shape
torch.Size([2, 5, 8])
"""

from __future__ import annotations

import torch
from torch import nn

from fivesigma.nn.masked import norm_layer, run_masked

__all__ = ["EdgeConvBlock", "gather_neighbours", "knn"]


def knn(coords: torch.Tensor, mask: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest real neighbours (itself excluded) of every element.

    Distances come from :func:`torch.cdist`; pairs with a padded element and the element
    itself get distance +inf, so they are never chosen before a real neighbour.  When a
    set has fewer than ``k + 1`` real elements the surplus slots are marked invalid in
    ``valid`` (k is clipped per set).  ``k`` extra padded columns are appended before
    ``topk`` so that ``topk(k)`` is defined for any ``P`` (also in an exported ONNX graph
    with a dynamic element axis).

    Parameters
    ----------
    coords : (B, P, C) coordinates in which distances are measured.
    mask : (B, P) bool, True for real elements.
    k : number of neighbours.

    Returns
    -------
    idx : (B, P, k) int64 neighbour indices in ``[0, P)`` (0 in invalid slots).
    valid : (B, P, k) bool, True where ``idx`` is a real neighbour of a real element.
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
    valid = ok.gather(2, idx)  # (B, P, k)
    idx = torch.where(valid, idx, torch.zeros_like(idx))
    return idx, valid


def gather_neighbours(h: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Features of each element's neighbours: (B, P, C), (B, P, k) -> (B, P, k, C)."""
    b, p, k = idx.shape
    c = h.shape[-1]
    flat = idx.reshape(b, p * k, 1).expand(-1, -1, c)  # (B, P*k, C)
    return torch.gather(h, 1, flat).reshape(b, p, k, c)  # (B, P, k, C)


class EdgeConvBlock(nn.Module):
    """kNN in ``coords`` -> edge MLP on ``(h_i, h_j - h_i)`` -> mean over neighbours -> + shortcut.

    The edge MLP is ``[Linear (no bias) -> norm -> ReLU] * len(widths)``, the shortcut
    ``Linear (no bias) -> norm`` of the input; ``norm`` is ``"batch"`` (batch norm over
    real entries) or ``"layer"`` (:func:`~fivesigma.nn.masked.norm_layer`).  Eager calls
    evaluate the MLP on the real edges only (packed); a traced call (ONNX export) on the
    dense (B, P, k) edge tensor: the same numbers, statistics and gradients.
    """

    def __init__(
        self, in_features: int, widths: tuple[int, ...], k: int, norm: str = "batch"
    ) -> None:
        super().__init__()
        self.k = k
        layers: list[nn.Module] = []
        prev = 2 * in_features
        for w in widths:
            # Linear on the last axis == the reference's 1x1 Conv2d
            layers += [nn.Linear(prev, w, bias=False), norm_layer(norm, w), nn.ReLU()]
            prev = w
        # ModuleLists with the indices of the former nn.Sequential keep old bundles loadable
        self.edge_mlp = nn.ModuleList(layers)
        self.shortcut = nn.ModuleList(
            [nn.Linear(in_features, widths[-1], bias=False), norm_layer(norm, widths[-1])]
        )

    def forward(self, coords: torch.Tensor, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``coords`` (B, P, Cc), ``h`` (B, P, C), ``mask`` (B, P) -> (B, P, C_out)."""
        idx, valid = knn(coords, mask, self.k)  # (B, P, k) each
        if torch.jit.is_tracing():  # ONNX export: one static graph over every slot
            aggregated = self._aggregate_dense(h, idx, valid)
        else:
            aggregated = self._aggregate_packed(h, idx, valid)
        out = torch.relu(run_masked(self.shortcut, h, mask) + aggregated)  # (B, P, C_out)
        return torch.where(mask.unsqueeze(-1), out, torch.zeros_like(out))

    def _aggregate_packed(
        self, h: torch.Tensor, idx: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """Mean of the edge MLP over each element's real neighbours: (B, P, C_out).

        Only real edges are computed, packed (N, C), so the batch norms run as one fused
        kernel without a gather and scatter each.  The first layer on the edge features
        (h_i, h_j - h_i) is W_c h_i + W_d (h_j - h_i) = (W_c - W_d) h_i + W_d h_j: both
        terms per element, then picked for each edge -- k times fewer multiply-adds than
        on the (B, P, k, 2C) edge tensor, with the same weights (and bundles).
        """
        b, p, _ = idx.shape
        jet, i, slot = valid.nonzero(as_tuple=True)  # (N,) each: set, element, slot
        j = idx[jet, i, slot]  # (N,) the neighbour
        w_centre, w_diff = self.edge_mlp[0].weight.split(h.shape[-1], dim=1)  # (C_out, C)
        centre = h @ (w_centre - w_diff).T  # (B, P, C_out)
        edges = centre[jet, i] + (h @ w_diff.T)[jet, j]  # (N, C_out)
        edges = run_masked(self.edge_mlp[1:], edges, None)  # (N, C_out)
        summed = edges.new_zeros(b * p, edges.shape[-1]).index_add_(0, jet * p + i, edges)
        n_valid = valid.sum(dim=2, keepdim=True).clamp_min(1).to(edges.dtype)  # (B, P, 1)
        return summed.reshape(b, p, -1) / n_valid  # (B*P, C_out) -> (B, P, C_out)

    def _aggregate_dense(
        self, h: torch.Tensor, idx: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`_aggregate_packed` on the (B, P, k) edge tensor, padded slots included."""
        neighbours = gather_neighbours(h, idx)  # (B, P, k, C)
        centre = h.unsqueeze(2).expand_as(neighbours)  # (B, P, k, C)
        edges = torch.cat([centre, neighbours - centre], dim=-1)  # (B, P, k, 2C)
        edges = run_masked(self.edge_mlp, edges, valid)  # (B, P, k, C_out)
        edges = torch.where(valid.unsqueeze(-1), edges, torch.zeros_like(edges))
        n_valid = valid.sum(dim=2, keepdim=True).clamp_min(1).to(edges.dtype)  # (B, P, 1)
        return edges.sum(dim=2) / n_valid  # (B, P, C_out)
