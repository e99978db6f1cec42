"""fivesigma.tasks.classify: event classification from a YAML config (``task: classify``).

Reads event samples, trains the configured estimators (logistic, BDT, MLP, ...), judges
them with weighted metrics and overtraining checks, and turns the best score into an
expected significance and CLs limit with pyhf.
"""

__all__: list[str] = []
