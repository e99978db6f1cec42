"""Pairwise Lorentz features of padded particle sets, for attention biases (ParT).

The formulas are :func:`fivesigma.physics.kinematics.pair_features` (one implementation
for numpy and torch); here they are evaluated for every pair of a padded batch, with the
pairs that involve a padded particle set to zero.

>>> import torch
>>> v = torch.tensor([[[30.0, 0, 0, 30], [0, 10, 0, 10], [0, 0, 0, 0]]])
>>> fts, pairs = pairwise_lv_fts(v, torch.tensor([[True, True, False]]))
>>> fts.shape, pairs[0].sum().item(), bool((fts[0, 2] == 0).all())
(torch.Size([1, 3, 3, 4]), 4, True)
"""

from __future__ import annotations

import torch

from fivesigma.physics.kinematics import pair_features

__all__ = ["pair_features", "pairwise_lv_fts"]


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
    # (B, P, 1, 4) against (B, 1, P, 4): every ordered pair
    fts = pair_features(v.unsqueeze(2), v.unsqueeze(1), eps)  # (B, P, P, 4)
    pair_mask = mask.unsqueeze(2) & mask.unsqueeze(1)  # (B, P, P)
    fts = torch.where(pair_mask.unsqueeze(-1), fts, torch.zeros_like(fts))
    return fts, pair_mask
