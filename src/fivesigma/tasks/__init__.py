"""fivesigma.tasks: one package per task, each registered by name in :mod:`fivesigma.core.registry`.

A task package holds its pydantic config model, ``run(config, out, progress) -> Result``,
optionally ``apply`` for its bundles, and its report sections.  Tasks import the shared
layers (io, data, physics, nn, training, estimators, metrics, stats, report) and never
each other.
"""

__all__: list[str] = []
