"""Registries: every task, estimator, generator and bundle kind, looked up by name.

The CLI, ``fivesigma apply`` and config validation read these instead of hand-written
lists, so a new task, model or sample is one ``register`` call.  Entries may be given
lazily as ``"module:attribute"`` strings: listing the registered names (``fivesigma
tasks``, ``--help``) imports nothing heavy; the module is imported when the entry is used.

>>> reg = Registry("colour")
>>> reg.register("red", "builtins:str", description="a colour")
>>> reg.names()
['red']
>>> reg.get("red") is str
True
>>> reg.get("rde")
Traceback (most recent call last):
...
fivesigma.errors.ConfigError: unknown colour 'rde'; registered: red (did you mean 'red'?)
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from fivesigma.errors import ConfigError, close_matches

__all__ = [
    "BUNDLE_KINDS",
    "ESTIMATORS",
    "GENERATORS",
    "TASKS",
    "Entry",
    "Registry",
]


@dataclass
class Entry:
    """One registered object: ``target`` (the object or a ``"module:attribute"`` string),
    a one-line description and free-form metadata (e.g. an estimator's input kind)."""

    name: str
    target: Any
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Any:
        """The registered object, importing its module on first use."""
        if isinstance(self.target, str):
            module, _, attr = self.target.partition(":")
            obj: Any = importlib.import_module(module)
            for part in attr.split(".") if attr else ():
                obj = obj[part] if isinstance(obj, Mapping) else getattr(obj, part)
            self.target = obj
        return self.target


class Registry:
    """Name -> :class:`Entry`.  ``what`` names the kind of thing in error messages."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, Entry] = {}

    def register(
        self,
        name: str,
        target: Any,
        description: str = "",
        replace: bool = False,
        **metadata: Any,
    ) -> None:
        """Add ``name``; registering a taken name needs ``replace=True``."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"{self.what} name must be an identifier, got {name!r}")
        if name in self._entries and not replace:
            raise ConfigError(f"{self.what} {name!r} is already registered")
        self._entries[name] = Entry(name, target, description, dict(metadata))

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests use it to clean up toy entries)."""
        self._entries.pop(name, None)

    def entry(self, name: str) -> Entry:
        """The entry of ``name``, or a one-line :class:`ConfigError` listing the names."""
        found = self._entries.get(name) if isinstance(name, str) else None
        if found is None:
            hint = close_matches(str(name)[:100], self._entries)
            hint = f" ({hint})" if hint.startswith("did you mean") else ""
            shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
            raise ConfigError(
                f"unknown {self.what} {shown}; registered: {', '.join(self.names())}{hint}"
            )
        return found

    def get(self, name: str) -> Any:
        """The registered object of ``name`` (imported on first use)."""
        return self.entry(name).load()

    def names(self, **metadata: Any) -> list[str]:
        """Registered names in registration order, optionally those whose metadata match."""
        return [
            n
            for n, e in self._entries.items()
            if all(e.metadata.get(k) == v for k, v in metadata.items())
        ]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)


#: tasks: name -> :class:`fivesigma.core.task.Task` subclass
TASKS = Registry("task")
#: estimators: name -> class or factory; metadata ``inputs`` ("table" or "constituents")
#: says what ``fit`` takes, ``params`` fixed keyword arguments
ESTIMATORS = Registry("estimator")
#: built-in samples for ``fivesigma generate``: name -> ``ProcessGenerator``; metadata
#: ``event_table`` marks those a ``generate:`` config section can read as events
GENERATORS = Registry("generator")
#: model bundle kinds: name -> loader ``load(path) -> estimator``; metadata ``task`` names
#: the task whose ``apply`` scores files with it
BUNDLE_KINDS = Registry("model bundle kind")


# -- built-in entries -------------------------------------------------------------------
# Strings, so that listing them imports nothing: each module is imported on first use.

TASKS.register(
    "classify",
    "fivesigma.tasks.classify.task:ClassifyTask",
    "event classification: train and compare classifiers, weighted metrics, pyhf result",
)
TASKS.register(
    "jets",
    "fivesigma.tasks.jets.task:JetsTask",
    "jet tagging on constituents: BDT, CNN, PFN, ParticleNet, ParT side by side",
)
TASKS.register(
    "tracking",
    "fivesigma.tasks.tracking.task:TrackingTask",
    "track reconstruction: graph construction, Interaction Network, CC & walk, TrackML score",
)
TASKS.register(
    "anomaly",
    "fivesigma.tasks.anomaly.task:AnomalyTask",
    "anomaly detection on dijets: autoencoders, flows, CWoLa, CATHODE; SIC; bump hunt",
)
TASKS.register(
    "trigger",
    "fivesigma.tasks.trigger.task:TriggerTask",
    "L1 trigger networks: quantisation-aware training, hls4ml emulation, rate vs efficiency",
)
TASKS.register(
    "design",
    "fivesigma.tasks.design.task:DesignTask",
    "RL runs the experiment: trigger thresholds through a fill, tracker layout; vs baselines",
)
TASKS.register(
    "fastsim",
    "fivesigma.tasks.fastsim.task:FastsimTask",
    "fast simulation: flows, flow matching and GANs for jets and calorimeter showers",
)
TASKS.register(
    "reweight",
    "fivesigma.tasks.reweight.task:ReweightTask",
    "reweighting one simulation onto another: classifier weights, DCTR, GBReweighter, closure",
)
TASKS.register(
    "scan",
    "fivesigma.tasks.scan.task:ScanTask",
    "theory-space scan: Pythia8 Z' oracle, Gaussian-process surrogate, GA search",
)
TASKS.register(
    "symbolic",
    "fivesigma.tasks.symbolic.task:SymbolicTask",
    "symbolic regression: Operon + SymPy; exact recovery of physics formulas",
)

for _name, _cls, _description in (
    (
        "logistic",
        "LogisticClassifier",
        "L2-regularised logistic regression on standardised features",
    ),
    ("bdt", "BDTClassifier", "gradient-boosted trees (xgboost, hist method)"),
    ("mlp", "MLPClassifier", "fully connected torch network"),
):
    ESTIMATORS.register(_name, f"fivesigma.estimators.tabular:{_cls}", _description, inputs="table")
for _name, _description in (
    ("cnn1d", "1D CNN over pT-ordered constituents"),
    ("pfn", "Particle Flow Network / Deep Sets (arXiv:1810.05165)"),
    ("particlenet", "ParticleNet: EdgeConv on particle clouds (arXiv:1902.08570)"),
    ("part", "Particle Transformer (arXiv:2202.03772)"),
):
    ESTIMATORS.register(
        _name,
        "fivesigma.tasks.jets.tagger:JetTagger",
        _description,
        inputs="constituents",
        params={"model": _name},
    )

GENERATORS.register(
    "higgs4l",
    "fivesigma.generate:PROCESSES.higgs4l",
    "H -> ZZ* -> 4l signal and ZZ -> 4l background events",
    event_table=True,
)
GENERATORS.register(
    "jets",
    "fivesigma.generate:PROCESSES.jets",
    "boosted jets with constituents: top, QCD (light, bb, cc), W, Z, H -> bb",
)
GENERATORS.register(
    "dijets",
    "fivesigma.generate:PROCESSES.dijets",
    "LHC Olympics-like dijet events (QCD, W' -> XY signal): jet masses, N-subjettiness, "
    "constituents",
)
GENERATORS.register(
    "tracks",
    "fivesigma.generate:PROCESSES.tracks",
    "TrackML-format events: ttbar + pile-up through the TrackML detector (hits, truth, cells)",
)
GENERATORS.register(
    "l1",
    "fivesigma.generate:PROCESSES.l1",
    "Level-1 trigger objects at hardware scales (jets, e/gamma, muons, MET, calorimeter "
    "regions): zero-bias with pile-up, hh4b, haa4gamma, zprime, ttbar",
)

for _kind in ("logistic", "bdt", "mlp"):
    BUNDLE_KINDS.register(_kind, "fivesigma.estimators.tabular:load", task="classify")
BUNDLE_KINDS.register("jet_tagger", "fivesigma.tasks.jets.tagger:load", task="jets")
BUNDLE_KINDS.register("anomaly_detector", "fivesigma.tasks.anomaly.methods:load", task="anomaly")
BUNDLE_KINDS.register("trigger_model", "fivesigma.tasks.trigger.bundle:load", task="trigger")
BUNDLE_KINDS.register(
    "tracking_pipeline", "fivesigma.tasks.tracking.pipeline:TrackingPipeline.load", task="tracking"
)
BUNDLE_KINDS.register("design_policy", "fivesigma.tasks.design.bundle:load", task="design")
BUNDLE_KINDS.register(
    "fastsim_surrogate", "fivesigma.tasks.fastsim.models:load_surrogate", task="fastsim"
)
BUNDLE_KINDS.register("reweighter", "fivesigma.tasks.reweight.model:load", task="reweight")
BUNDLE_KINDS.register("scan_surrogate", "fivesigma.tasks.scan.bundle:load", task="scan")
BUNDLE_KINDS.register("symbolic_formula", "fivesigma.tasks.symbolic.bundle:load", task="symbolic")
