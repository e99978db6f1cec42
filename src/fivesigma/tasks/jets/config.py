"""The ``task: jets`` config: every setting of the jet-tagging benchmark as a YAML key.

A config names a ``preset`` (``quick`` or ``full``) and overrides any of its settings;
a key left out (or ``null``) keeps the preset's value.  ``fivesigma benchmark top --quick``
is a shortcut that builds this config from its flags.

>>> from fivesigma.core.config import parse_config
>>> cfg = parse_config({"version": 1, "task": "jets", "preset": "quick", "seeds": 2})
>>> settings = cfg.settings()
>>> settings.seeds, settings.jets_per_class, settings.tagger_params["part"]["epochs"]
(2, 4000, 10)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from fivesigma.core.config import OutputConfig, TaskConfig
from fivesigma.errors import ConfigError, FivesigmaError

__all__ = ["JetsConfig"]


class _JetsOutput(OutputConfig):
    dir: Annotated[str, Field(description="output directory (overridden by --out)")] = (
        "fivesigma-jets"
    )


class JetsConfig(TaskConfig):
    """Jet tagging: which jets, which taggers, how they train; see ``BenchmarkSettings``."""

    task: Literal["jets"] = "jets"
    seed: Annotated[int, Field(description="base seed; training k uses seed + 1000 k")] = 1
    output: _JetsOutput = Field(default_factory=_JetsOutput)
    preset: Annotated[
        Literal["quick", "full"],
        Field(description="quick: minutes on a laptop; full: the papers' sizes"),
    ] = "full"
    benchmark: Annotated[
        str, Field(description="top (top vs QCD) or flavour (b, c, uds, g, top)")
    ] = "top"
    data: Annotated[
        list[str] | None,
        Field(
            description="jet files (Top Tagging .h5 with its train/val/test split, "
            "EnergyFlow .npz, fivesigma ROOT); default: generate"
        ),
    ] = None
    seeds: Annotated[int | None, Field(ge=1, description="trainings per tagger")] = None
    taggers: Annotated[
        list[str] | None, Field(description="subset of bdt, cnn1d, pfn, particlenet, part")
    ] = None
    jets_per_class: Annotated[int | None, Field(ge=1, description="generated jets")] = None
    test_background: Annotated[
        int | None, Field(description="extra generated QCD jets in the test split only")
    ] = None
    # ranges of the benchmark's own settings are checked by BenchmarkSettings.check,
    # whose messages say what the presets use
    max_particles: Annotated[
        int | None, Field(description="leading constituents the networks see")
    ] = None
    frame: Annotated[
        str | None, Field(description="principal (rotate into the jet's axes) or none")
    ] = None
    features: Annotated[
        list[str] | None, Field(description="particle features; default: all the data carry")
    ] = None
    epochs: Annotated[int | None, Field(ge=1, description="epochs for every tagger")] = None
    batch_size: Annotated[int | None, Field(ge=1)] = None
    lr: Annotated[float | None, Field(gt=0, description="peak learning rate")] = None
    max_train_jets: Annotated[
        int | None, Field(ge=1, description="a seeded random subset of the training split")
    ] = None
    split: Annotated[
        list[float] | None,
        Field(description="train, validation, test fractions (generated jets)"),
    ] = None
    jobs: Annotated[int | None, Field(ge=1, description="generation processes")] = None
    device: Annotated[str | None, Field(description="cpu, cuda, cuda:N or auto")] = None
    tagger_params: Annotated[
        dict[str, dict[str, Any]] | None,
        Field(description="per-tagger estimator parameters, merged into the preset's"),
    ] = None

    @field_validator("split")
    @classmethod
    def _three_fractions(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and len(value) != 3:
            raise ValueError(f"split needs three fractions (train, validation, test), got {value}")
        return value

    def settings(self, progress: bool = True) -> Any:
        """The benchmark settings this config stands for (preset, then the keys given)."""
        from fivesigma.tasks.jets.benchmark import BenchmarkSettings

        overrides: dict[str, Any] = {
            "task": self.benchmark,
            "seed": self.seed,
            "progress": progress,
        }
        for key in (
            "data",
            "seeds",
            "jets_per_class",
            "test_background",
            "max_particles",
            "frame",
            "epochs",
            "batch_size",
            "lr",
            "max_train_jets",
            "jobs",
            "device",
            "tagger_params",
        ):
            value = getattr(self, key)
            if value is not None:
                overrides[key] = value
        if self.data is not None:
            overrides["data"] = [str(self.resolve(p)) for p in self.data]
        for key in ("taggers", "features", "split"):
            value = getattr(self, key)
            if value is not None:
                overrides[key] = tuple(value)
        preset = BenchmarkSettings.quick if self.preset == "quick" else BenchmarkSettings.full
        settings = preset(**overrides)
        try:
            settings.check()
        except FivesigmaError as err:
            raise ConfigError(str(err)) from None
        return settings
