"""The ``task: scan`` config: a surrogate-guided scan of a Z' model's parameter space.

A config names a ``preset`` (``quick`` or ``full``); every key left out (or ``null``)
keeps the preset's value, so the smallest config is ``{version: 1, task: scan}``.
Exactly two of the parameters ``mass``, ``g_quark``, ``g_lepton`` are scanned (given as
``[low, high]``); the third is fixed (a number).

>>> from fivesigma.core.config import parse_config
>>> cfg = parse_config({"version": 1, "task": "scan"})
>>> s = cfg.settings()
>>> s.scanned, s.fixed, s.grid >= 20
(('mass', 'g_quark'), {'g_lepton': 0.5}, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from fivesigma.core.config import OutputConfig, StrictModel, TaskConfig
from fivesigma.errors import ConfigError
from fivesigma.tasks.scan.oracle import PARAMETERS, LimitCurve, check_range

__all__ = ["PRESETS", "ScanConfig", "ScanSettings"]

#: Sizes of the presets.  ``quick`` runs in under 15 minutes on 2 CPU cores from an
#: empty oracle cache (the dense reference grid dominates; cached, a rerun takes minutes).
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "events": 2000,
        "grid": 25,
        "initial": 8,
        "max_calls": 60,
        "population": 30,
        "generations": 20,
        "seeds": 3,
        "random_max_calls": 300,
    },
    "full": {
        "events": 5000,
        "grid": 49,
        "initial": 10,
        "max_calls": 150,
        "population": 40,
        "generations": 30,
        "seeds": 5,
        "random_max_calls": 1200,
    },
}

_Range = tuple[float, float]


class _Output(OutputConfig):
    dir: Annotated[str, Field(description="output directory (overridden by --out)")] = (
        "fivesigma-scan"
    )


class ScanParameters(StrictModel):
    """The Z' model's parameters: a [low, high] range is scanned, a number is fixed."""

    mass: Annotated[float | _Range, Field(description="Z' mass in GeV (valid: 200..7000)")] = (
        500.0,
        6000.0,
    )
    g_quark: Annotated[
        float | _Range,
        Field(description="quark couplings in units of the SSM ones (valid: 0.001..3)"),
    ] = (0.01, 3.0)
    g_lepton: Annotated[
        float | _Range,
        Field(description="lepton couplings in units of the SSM ones (valid: 0.001..3)"),
    ] = 0.5


class ScanOracle(StrictModel):
    """The expensive oracle: σ × BR(Z' → ee) from Pythia8 at 13 TeV, cached on disk."""

    events: Annotated[
        int | None,
        Field(ge=100, le=1_000_000, description="hard-process events per point (σ error ~0.6/√n)"),
    ] = None
    jobs: Annotated[int, Field(ge=1, le=64, description="processes for the reference grid")] = 2
    cache_dir: Annotated[
        str | None,
        Field(description="oracle cache; default: $FIVESIGMA_CACHE or ~/.cache/fivesigma"),
    ] = None


class ScanLimit(StrictModel):
    """The expected 95% CL limit on σ × BR (fb): a·(m/1 TeV)^-k + c, or a table."""

    a_fb: Annotated[float, Field(gt=0, description="fb")] = 0.4
    k: Annotated[float, Field(ge=0, le=10)] = 2.3
    c_fb: Annotated[float, Field(ge=0, description="fb, the high-mass plateau")] = 0.025
    table: Annotated[
        list[tuple[float, float]] | None,
        Field(description="[[mass GeV, limit fb], ...] replacing the parametrisation"),
    ] = None


class ScanSearch(StrictModel):
    """The surrogate-guided genetic search (Gaussian process + pymoo GA)."""

    initial: Annotated[int | None, Field(ge=3, description="Latin-hypercube start points")] = None
    max_calls: Annotated[int | None, Field(ge=5, description="most oracle calls per search")] = None
    batch: Annotated[int, Field(ge=1, le=50, description="proposals per step")] = 1
    population: Annotated[int | None, Field(ge=8, description="GA population")] = None
    generations: Annotated[int | None, Field(ge=2, description="GA generations per step")] = None
    stop_accuracy: Annotated[
        float,
        Field(gt=0.5, lt=1, description="stop once the estimated accuracy stays above this"),
    ] = 0.995
    patience: Annotated[int, Field(ge=1, description="steps the estimate must stay above")] = 3


class ScanBenchmark(StrictModel):
    """The side-by-side measurement against a dense reference grid."""

    enabled: bool = True
    grid: Annotated[
        int | None,
        Field(ge=5, le=201, description="reference grid nodes per axis (grid^2 oracle calls)"),
    ] = None
    target: Annotated[
        float,
        Field(
            gt=0.5,
            le=1,
            description="boundary accuracy the methods must reach: the fraction of "
            "reference-grid nodes classified as the reference grid does",
        ),
    ] = 0.998
    seeds: Annotated[int | None, Field(ge=1, le=20, description="seeds per stochastic method")] = (
        None
    )
    random_max_calls: Annotated[
        int | None, Field(ge=10, description="most points of the random scan")
    ] = None


class ScanConfig(TaskConfig):
    """A genetic search of a Z' model's parameter space guided by a learned surrogate,
    judged against a dense grid, a uniform grid and random sampling."""

    task: Literal["scan"] = "scan"
    seed: Annotated[int, Field(description="seed of the searches")] = 1
    output: _Output = Field(default_factory=_Output)
    preset: Annotated[
        Literal["quick", "full"],
        Field(description="quick: under 15 minutes on 2 cores; full: denser grid, 5 seeds"),
    ] = "quick"
    parameters: ScanParameters = Field(default_factory=ScanParameters)
    oracle: ScanOracle = Field(default_factory=ScanOracle)
    limit: ScanLimit = Field(default_factory=ScanLimit)
    search: ScanSearch = Field(default_factory=ScanSearch)
    benchmark: ScanBenchmark = Field(default_factory=ScanBenchmark)

    def settings(self) -> ScanSettings:
        """The preset with this config's keys applied; ConfigError for contradictions."""
        preset = PRESETS[self.preset]
        scanned, low, high, fixed = [], [], [], {}
        for name in PARAMETERS:
            value = getattr(self.parameters, name)
            if isinstance(value, tuple):
                check_range(name, float(value[0]), float(value[1]))
                scanned.append(name)
                low.append(float(value[0]))
                high.append(float(value[1]))
            else:
                check_range(name, float(value))
                fixed[name] = float(value)
        if len(scanned) != 2:
            raise ConfigError(
                f"parameters: scan exactly two of {', '.join(PARAMETERS)} (give them as "
                f"[low, high]) and fix the third; got {len(scanned)} ranges"
            )
        table = None
        if self.limit.table is not None:
            table = tuple((float(m), float(s)) for m, s in self.limit.table)
            masses = [m for m, _ in table]
            if len(table) < 2 or np.any(np.diff(masses) <= 0):
                raise ConfigError(
                    "limit.table needs >= 2 [mass, limit] pairs with increasing masses"
                )
            if any(not (m > 0 and s > 0) for m, s in table):
                raise ConfigError("limit.table masses and limits must be positive")
        search, bench = self.search, self.benchmark
        initial = search.initial or preset["initial"]
        max_calls = search.max_calls or preset["max_calls"]
        if max_calls <= initial:
            raise ConfigError(
                f"search.max_calls ({max_calls}) must exceed search.initial ({initial})"
            )
        return ScanSettings(
            seed=self.seed,
            scanned=tuple(scanned),
            low=tuple(low),
            high=tuple(high),
            fixed=fixed,
            events=self.oracle.events or preset["events"],
            jobs=self.oracle.jobs,
            limit=LimitCurve(self.limit.a_fb, self.limit.k, self.limit.c_fb, table),
            initial=initial,
            max_calls=max_calls,
            batch=search.batch,
            population=search.population or preset["population"],
            generations=search.generations or preset["generations"],
            stop_accuracy=search.stop_accuracy,
            patience=search.patience,
            benchmark=bench.enabled,
            grid=bench.grid or preset["grid"],
            target=bench.target,
            seeds=bench.seeds or preset["seeds"],
            random_max_calls=bench.random_max_calls or preset["random_max_calls"],
        )


@dataclass
class ScanSettings:
    """Resolved settings (what the run uses, written to metrics.json)."""

    seed: int
    scanned: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    fixed: dict[str, float]
    events: int
    jobs: int
    limit: LimitCurve
    initial: int
    max_calls: int
    batch: int
    population: int
    generations: int
    stop_accuracy: float
    patience: int
    benchmark: bool
    grid: int
    target: float
    seeds: int
    random_max_calls: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if k not in ("limit", "extra")}
        out["limit"] = self.limit.to_dict()
        return out
