"""fivesigma.nn: torch building blocks shared by every task's networks.

Masked operations over padded sets (sum, mean, max, batch norm), kNN graphs, pairwise
Lorentz features, and MLPs.  Importing this package imports torch.
"""
