"""The ``reweight`` task: classifier weights that move one simulation onto another."""
