"""The ``task: classify`` config: samples, models, evaluation and the statistical model.

>>> from fivesigma.core.config import parse_config
>>> cfg = parse_config({"version": 1, "data": {"samples": [
...     {"name": "s", "files": ["s.root"], "label": 1},
...     {"name": "b", "files": ["b.root"], "label": 0}], "features": ["x"]}})
>>> cfg.task, [m.kind for m in cfg.models]
('classify', ['logistic', 'bdt', 'mlp'])
>>> cfg.evaluation.best, cfg.evaluation.ks_threshold, cfg.stats_enabled
('auc', 0.05, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, model_validator

from fivesigma.core.config import ModelConfig, StrictModel, TaskConfig, require_unique
from fivesigma.data.config import DataConfig, GenerateConfig

__all__ = [
    "ClassInfo",
    "ClassifyConfig",
    "EvaluationConfig",
    "RunConfig",
    "StatsConfig",
    "class_info",
]


@dataclass(frozen=True)
class ClassInfo:
    """The classes of a run: ``names[k]`` (its samples joined by '+'), the signal classes."""

    names: tuple[str, ...]
    signal: tuple[int, ...]

    @property
    def n_classes(self) -> int:
        return len(self.names)

    @property
    def background(self) -> tuple[int, ...]:
        return tuple(k for k in range(self.n_classes) if k not in self.signal)

    @property
    def multiclass(self) -> bool:
        return self.n_classes > 2


def class_info(cfg: ClassifyConfig) -> ClassInfo:
    """Class names and signal classes from ``data.samples`` (labels and roles).

    Labels must be 0..K-1 without a gap once a label above 1 is used (labels 0/1 are
    checked against the data at run time, as before).  Roles: when no sample has a
    ``role``, label 1 is signal; else the classes of the samples with ``role: signal``
    are, and every other class is background.  The samples of one class must not give it
    two roles, and at least one class must be signal and one background.
    """
    samples = cfg.data.samples
    labels = sorted({s.label for s in samples})
    top = labels[-1]
    if top >= 2 and labels != list(range(top + 1)):
        missing = [k for k in range(top + 1) if k not in labels]
        raise ValueError(
            f"data.samples labels are {labels}; classes must be numbered 0..K-1 without a gap "
            f"(no sample has label {', '.join(map(str, missing))})"
        )
    n = max(top + 1, 2)
    names = tuple(
        "+".join(s.name for s in samples if s.label == k) or f"class {k}" for k in range(n)
    )
    roles: dict[int, str] = {}
    for s in samples:
        if s.role is None:
            continue
        if roles.setdefault(s.label, s.role) != s.role:
            raise ValueError(
                f"data.samples: label {s.label} is given role signal and role background "
                f"(sample {s.name!r}); give the samples of one class one role"
            )
    if not roles:
        return ClassInfo(names, (1,))
    signal = tuple(k for k in range(n) if roles.get(k) == "signal")
    if not signal:
        raise ValueError(
            "data.samples: no sample has role: signal, so no class is signal; give the "
            "signal samples role: signal"
        )
    if len(signal) == n:
        raise ValueError(
            "data.samples: every class has role: signal; at least one class must be background"
        )
    return ClassInfo(names, signal)


def _default_models() -> list[ModelConfig]:
    return [
        ModelConfig(name="logistic", kind="logistic"),
        ModelConfig(name="bdt", kind="bdt"),
        ModelConfig(name="mlp", kind="mlp"),
    ]


class EvaluationConfig(StrictModel):
    """Working points and checks reported for every model."""

    eff_b: Annotated[
        list[Annotated[float, Field(gt=0, lt=1)]],
        Field(description="background efficiencies for eps_S"),
    ] = Field(default_factory=lambda: [0.01, 0.1, 0.3])
    eff_s: Annotated[
        list[Annotated[float, Field(gt=0, lt=1)]],
        Field(description="signal efficiencies for 1/eps_B"),
    ] = Field(default_factory=lambda: [0.3, 0.5])
    ranking_repeats: Annotated[
        int, Field(ge=0, description="permutation-importance repeats (0: skip)")
    ] = 3
    rel_unc_b: Annotated[
        float, Field(ge=0, description="relative background uncertainty in the cut scan")
    ] = 0.1
    best: Annotated[
        Literal["auc", "z", "rejection"],
        Field(
            description="how the model for the physics result is chosen among those passing "
            "the overtraining check: highest weighted test AUC ('auc'), highest cut-scan "
            "significance ('z') or highest background rejection at the first eff_s "
            "('rejection')"
        ),
    ] = "auc"
    shap_events: Annotated[
        int,
        Field(
            ge=0,
            description="test events explained with SHAP values per model (0: no SHAP)",
        ),
    ] = 2000
    ks_threshold: Annotated[
        float,
        Field(
            ge=0,
            lt=1,
            description="overtraining check: a model passes when the train-vs-test KS p-values "
            "of signal and background (K > 2 classes: of every class's own probability) are "
            "all above this (0: no check)",
        ),
    ] = 0.05
    discriminant: Annotated[
        Literal["probability", "likelihood_ratio"],
        Field(
            description="K > 2 classes: the signal-vs-background score for the cut scan and "
            "the statistics: 'probability' p_S (summed over the signal classes) or "
            "'likelihood_ratio' p_S / (p_S + sum of the background classes' p_b); with every "
            "class signal or background the two are equal. Two classes: the model's signal "
            "probability"
        ),
    ] = "probability"

    @model_validator(mode="after")
    def _rejection_needs_a_working_point(self) -> EvaluationConfig:
        if self.best == "rejection" and not self.eff_s:
            raise ValueError(
                "best: rejection ranks models by 1/eps_B at the first eff_s; give at least one "
                "evaluation.eff_s"
            )
        return self


class StatsConfig(StrictModel):
    """The pyhf model built from the best model's score histogram (expected results)."""

    enabled: Annotated[
        bool, Field(description="false turns the statistics stage off (as does stats: null)")
    ] = True
    bins: Annotated[int, Field(ge=1, le=200)] = 10
    bkg_norm_unc: Annotated[
        float, Field(ge=0, lt=1, description="relative background normalisation uncertainty")
    ] = 0.1
    min_background: Annotated[
        float | None, Field(ge=0, description="merge bins until each has this background")
    ] = 1.0
    mc_stat: Annotated[bool, Field(description="per-bin MC statistical uncertainty")] = True


class ClassifyConfig(TaskConfig):
    """An event-classification analysis: data, models, evaluation, statistics."""

    task: Literal["classify"] = "classify"
    generate: GenerateConfig | None = None
    data: DataConfig
    models: Annotated[list[ModelConfig], Field(min_length=1)] = Field(
        default_factory=_default_models
    )
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    stats: StatsConfig | None = Field(
        default_factory=StatsConfig,
        description="the statistical model; null (or enabled: false) turns the stage off",
    )

    @property
    def stats_enabled(self) -> bool:
        """Whether the statistics stage runs (``stats`` given and not ``enabled: false``)."""
        return self.stats is not None and self.stats.enabled

    @model_validator(mode="after")
    def _labels_and_roles(self) -> ClassifyConfig:
        class_info(self)
        return self

    @model_validator(mode="after")
    def _unique_model_names(self) -> ClassifyConfig:
        require_unique("model", [m.name for m in self.models])
        from fivesigma.core.registry import ESTIMATORS

        tables = ESTIMATORS.names(inputs="table")
        for i, m in enumerate(self.models):
            if m.kind not in tables:
                raise ValueError(
                    f"models[{i}].kind {m.kind!r} does not take a table of event features; "
                    f"accepted: {', '.join(tables)}"
                )
        return self


#: The name this config had when classification was the only task.
RunConfig = ClassifyConfig
