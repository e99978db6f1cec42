"""fivesigma.core: the task contract, the registries, configs, bundles and safe file output.

Everything here is light (no torch, no xgboost): the CLI imports it to list tasks,
validate configs and dispatch ``fivesigma run``.
"""

__all__: list[str] = []
