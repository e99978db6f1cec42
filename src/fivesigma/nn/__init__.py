"""fivesigma.nn: torch building blocks shared by every task's networks.

One module per concept:

- :mod:`~fivesigma.nn.masked`: sums, means, maxima and batch norm over padded sets.
- :mod:`~fivesigma.nn.graph`: k nearest neighbours and the EdgeConv block.
- :mod:`~fivesigma.nn.attention`: masked multi-head attention, transformer and class
  attention blocks.
- :mod:`~fivesigma.nn.pairs`: pairwise Lorentz features of padded particle sets (the
  formulas are :func:`fivesigma.physics.kinematics.pair_features`).
- :mod:`~fivesigma.nn.mlp`: the ``mlp`` layer stack and the event classifier ``MLP``.
- :mod:`~fivesigma.nn.utils`: parameter counts and config checks.
- :mod:`~fivesigma.nn.flows`: zuko's neural spline flow with a faster spline (not
  imported here: it needs the ``flows`` extra).

Importing this package imports torch.
"""

from fivesigma.nn.attention import Attention, TransformerBlock
from fivesigma.nn.graph import EdgeConvBlock, gather_neighbours, knn
from fivesigma.nn.masked import (
    ATTENTION_MASK_VALUE,
    MaskedBatchNorm,
    masked_max,
    masked_mean,
    masked_sum,
    norm_layer,
    run_masked,
)
from fivesigma.nn.mlp import ACTIVATIONS, MLP, MLPConfig, ProbabilityHead, mlp
from fivesigma.nn.pairs import pair_features, pairwise_lv_fts
from fivesigma.nn.utils import check_config, check_sizes, count_parameters

__all__ = [
    "ACTIVATIONS",
    "ATTENTION_MASK_VALUE",
    "MLP",
    "Attention",
    "EdgeConvBlock",
    "MLPConfig",
    "MaskedBatchNorm",
    "ProbabilityHead",
    "TransformerBlock",
    "check_config",
    "check_sizes",
    "count_parameters",
    "gather_neighbours",
    "knn",
    "masked_max",
    "masked_mean",
    "masked_sum",
    "mlp",
    "norm_layer",
    "pair_features",
    "pairwise_lv_fts",
    "run_masked",
]
