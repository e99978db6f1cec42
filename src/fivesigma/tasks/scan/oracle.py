"""The expensive oracle: σ × BR(Z' → e⁺e⁻) from Pythia8, and the expected limit it is
compared with.

The model
---------
A Z' (PDG 32) of mass ``mass`` (GeV) in Pythia's ``NewGaugeBoson:ffbar2gmZZprime`` with
``Zprime:gmZmode = 3`` (the Z' alone, no γ*/Z interference), no Z'WW coupling
(``Zprime:coup2WW = 0``) and generation-universal couplings.  Its vector and axial
couplings are the sequential-standard-model (SSM) values of Pythia's defaults scaled by
two numbers::

    quarks  (vd, ad, vu, au) = g_quark  * (-0.693, -1, 0.387, 1)
    leptons (ve, ae, vnue, anue) = g_lepton * (-0.08, -1, 1, 1)

so ``g_quark = g_lepton = 1`` is the SSM Z'.  Only ``32 -> e+ e-`` is open, so Pythia's
``sigmaGen`` after ``events`` hard processes (no showers, no hadronisation) *is* the
cross section times the branching ratio; the branching ratio itself is read from the
particle data (``resOpenFrac(32)``, the partial widths Pythia computes at ``init``),
σ_total = σ × BR / BR.  √s = 13 TeV; ``PhaseSpace:mHatMin = mass / 2`` keeps the
off-shell tail of a wide Z' from the low-mass region where the Z' alone is meaningless.

Validity: 200 ≤ mass ≤ 7000 GeV (the parton luminosities at 13 TeV), 10⁻³ ≤ g ≤ 3
(above 3 the width exceeds ~25% of the mass and a narrow-resonance limit no longer
applies).  A scan range outside is refused with one line (:func:`check_range`).

The limit
---------
:class:`LimitCurve` is an *ATLAS-like* expected 95% CL upper limit on σ × BR(Z' → ℓℓ) at
13 TeV, 139 fb⁻¹: a smooth parametrisation

    σB_lim(m) = a · (m / 1 TeV)^(-k) + c        [fb]

with a = 0.4 fb, k = 2.3, c = 0.025 fb by default, whose shape and normalisation resemble
the published dilepton expected limit (about 2 fb at 0.5 TeV, 0.4 fb at 1 TeV, 0.06 fb at
3 TeV, flattening to 0.03 fb at 6 TeV).  It is *not* a digitised experimental curve; give
your own with ``limit.table`` (mass, limit pairs, interpolated linearly in log-log).

A point is excluded when σ × BR > σB_lim(mass), i.e. when
``log_ratio = ln(σ × BR / σB_lim) > 0``: that is the function the surrogate learns.

Results are cached on disk, one JSON file per point, keyed by a hash of the parameters,
the number of events, the Pythia seed derived from them and the pythia8mc version; the
seed is a function of the point, so a cached value is the value a fresh call returns.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.errors import ConfigError, GenerationError

__all__ = [
    "PARAMETERS",
    "VALIDITY",
    "LimitCurve",
    "OracleResult",
    "ZprimeOracle",
    "check_range",
]

#: the model parameters, in the order of every parameter vector
PARAMETERS: tuple[str, ...] = ("mass", "g_quark", "g_lepton")

#: where the oracle is valid (closed intervals); see the module docstring
VALIDITY: dict[str, tuple[float, float]] = {
    "mass": (200.0, 7000.0),
    "g_quark": (1e-3, 3.0),
    "g_lepton": (1e-3, 3.0),
}

_UNITS = {"mass": "GeV", "g_quark": "× SSM", "g_lepton": "× SSM"}

_SSM_QUARK = {"vd": -0.693, "ad": -1.0, "vu": 0.387, "au": 1.0}
_SSM_LEPTON = {"ve": -0.08, "ae": -1.0, "vnue": 1.0, "anue": 1.0}

#: bump when the oracle's physics changes, so cached values are not reused
ORACLE_VERSION = 1
ECM_GEV = 13000.0
MB_TO_FB = 1e12


def check_range(name: str, low: float, high: float | None = None) -> None:
    """ConfigError (one line) unless ``[low, high]`` (or the value ``low``) lies inside
    the oracle's validity for parameter ``name``."""
    if name not in VALIDITY:
        raise ConfigError(f"unknown parameter {name!r}; accepted: {', '.join(PARAMETERS)}")
    lo, hi = VALIDITY[name]
    values = [low] if high is None else [low, high]
    if high is not None and not low < high:
        raise ConfigError(f"parameters.{name}: range {[low, high]} must have low < high")
    bad = [v for v in values if not (np.isfinite(v) and lo <= v <= hi)]
    if bad:
        what = "range" if high is not None else "value"
        shown = [low, high] if high is not None else low
        raise ConfigError(
            f"parameters.{name}: {what} {shown} is outside the oracle's validity "
            f"[{lo:g}, {hi:g}] {_UNITS[name]}"
        )


@dataclass(frozen=True)
class LimitCurve:
    """Expected upper limit on σ × BR (fb) as a function of the mass (GeV).

    ``table`` (pairs of mass in GeV and limit in fb, masses increasing) replaces the
    parametrisation ``a · (m / 1 TeV)^(-k) + c`` when given; between its points the limit
    is interpolated linearly in (log m, log σB), beyond them held at the end values.

    >>> LimitCurve()(np.array([1000.0])).round(3).tolist()
    [0.425]
    >>> LimitCurve(table=((1000.0, 1.0), (4000.0, 0.01)))(np.array([2000.0])).round(3).tolist()
    [0.1]
    """

    a_fb: float = 0.4
    k: float = 2.3
    c_fb: float = 0.025
    table: tuple[tuple[float, float], ...] | None = None

    def __call__(self, mass: np.ndarray) -> np.ndarray:
        mass = np.asarray(mass, dtype=float)
        if self.table:
            m, s = np.asarray(self.table, dtype=float).T
            return np.exp(np.interp(np.log(mass), np.log(m), np.log(s)))
        return self.a_fb * (mass / 1000.0) ** (-self.k) + self.c_fb

    def describe(self) -> str:
        if self.table:
            return f"table of {len(self.table)} points, log-log interpolation"
        return f"{self.a_fb:g} fb · (m / 1 TeV)^-{self.k:g} + {self.c_fb:g} fb"

    def to_dict(self) -> dict[str, Any]:
        return {
            "a_fb": self.a_fb,
            "k": self.k,
            "c_fb": self.c_fb,
            "table": [list(p) for p in self.table] if self.table else None,
        }


@dataclass
class OracleResult:
    """What one oracle call returns (cross sections in fb, width in GeV)."""

    params: dict[str, float]
    sigma_br_fb: float
    sigma_br_err_fb: float
    branching_ratio: float
    width_gev: float
    seconds: float
    cached: bool = False

    @property
    def sigma_total_fb(self) -> float:
        return self.sigma_br_fb / self.branching_ratio if self.branching_ratio > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "sigma_br_fb": self.sigma_br_fb,
            "sigma_br_err_fb": self.sigma_br_err_fb,
            "branching_ratio": self.branching_ratio,
            "width_gev": self.width_gev,
            "seconds": self.seconds,
        }


def _pythia_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pythia8mc")
    except PackageNotFoundError:
        return "unknown"


def _settings(params: dict[str, float], events: int, seed: int) -> list[str]:
    gq, gl, m = params["g_quark"], params["g_lepton"], params["mass"]
    return [
        f"Beams:eCM = {ECM_GEV:g}",
        "NewGaugeBoson:ffbar2gmZZprime = on",
        "Zprime:gmZmode = 3",
        "Zprime:coup2WW = 0",
        "Zprime:universality = on",
        *(f"Zprime:{k} = {v * gq:.10g}" for k, v in _SSM_QUARK.items()),
        *(f"Zprime:{k} = {v * gl:.10g}" for k, v in _SSM_LEPTON.items()),
        f"32:m0 = {m:.10g}",
        "32:onMode = off",
        "32:onIfMatch = 11 -11",
        f"PhaseSpace:mHatMin = {0.5 * m:.10g}",
        "PartonLevel:all = off",
        "HadronLevel:all = off",
        "Print:quiet = on",
        "Random:setSeed = on",
        f"Random:seed = {seed}",
    ]


def _point_seed(params: dict[str, float]) -> int:
    """The Pythia seed of a point: a hash of its parameters (1..900 000 000)."""
    text = json.dumps({k: float(f"{params[k]:.10g}") for k in PARAMETERS}, sort_keys=True)
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16) % 900_000_000 + 1


#: one Pythia per process, re-initialised for every point (a new instance costs more)
_PYTHIA: Any = None


def _evaluate(params: dict[str, float], events: int) -> OracleResult:
    """Run Pythia for one point (no cache)."""
    global _PYTHIA
    from fivesigma.core import extras

    pythia8mc = extras.pythia8mc()
    t0 = time.perf_counter()
    if _PYTHIA is None:
        _PYTHIA = pythia8mc.Pythia("", False)
        if not _PYTHIA.settings.isMode("Beams:idA"):
            raise GenerationError(
                "Pythia found no settings database (share/Pythia8/xmldoc); set PYTHIA8DATA to "
                "the xmldoc folder of the pythia8mc installation"
            )
    pythia = _PYTHIA
    for line in _settings(params, events, _point_seed(params)):
        if not pythia.readString(line):
            raise GenerationError(f"Pythia rejected the setting '{line}'")
    if not pythia.init():
        shown = ", ".join(f"{k}={v:g}" for k, v in params.items())
        raise GenerationError(f"Pythia initialisation failed for the Z' at {shown}")
    for _ in range(events):
        pythia.next()
    info = pythia.infoPython()
    entry = pythia.particleData.particleDataEntryPtr(32)
    sigma = float(info.sigmaGen()) * MB_TO_FB
    err = float(info.sigmaErr()) * MB_TO_FB
    if not (np.isfinite(sigma) and sigma > 0):
        shown = ", ".join(f"{k}={v:g}" for k, v in params.items())
        raise GenerationError(f"Pythia returned σ × BR = {sigma!r} fb for the Z' at {shown}")
    return OracleResult(
        params=dict(params),
        sigma_br_fb=sigma,
        sigma_br_err_fb=err,
        branching_ratio=float(entry.resOpenFrac(32)),
        width_gev=float(entry.mWidth()),
        seconds=time.perf_counter() - t0,
    )


def _worker(job: tuple[dict[str, float], int]) -> dict[str, Any]:
    return _evaluate(*job).to_dict()


@dataclass
class ZprimeOracle:
    """σ × BR(Z' → ee) of a parameter point, from Pythia8, cached on disk.

    Parameters
    ----------
    events : hard-process events per point (σ's relative error is about 0.6 / √events).
    fixed : values of the parameters that are not scanned.
    limit : the expected-limit curve.
    cache_dir : where point results live (``<cache>/scan-oracle``); None: no cache.
    jobs : processes for batches of points (spawned workers, one Pythia each).
    """

    events: int = 2000
    fixed: dict[str, float] = field(default_factory=dict)
    limit: LimitCurve = field(default_factory=LimitCurve)
    cache_dir: Path | None = None
    jobs: int = 1
    calls: int = 0
    cache_hits: int = 0
    pythia_seconds: float = 0.0

    def point(self, values: dict[str, float]) -> dict[str, float]:
        """The full parameter dict of a point (scanned values + fixed ones)."""
        full = {**self.fixed, **values}
        missing = [p for p in PARAMETERS if p not in full]
        if missing:
            raise ConfigError(f"parameter(s) {', '.join(missing)} have neither a value nor a range")
        return {p: float(full[p]) for p in PARAMETERS}

    def _key(self, params: dict[str, float]) -> str:
        body = {
            "version": ORACLE_VERSION,
            "pythia8mc": _pythia_version(),
            "events": int(self.events),
            "params": {k: float(f"{params[k]:.10g}") for k in PARAMETERS},
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:20]

    def _cache_path(self, params: dict[str, float]) -> Path | None:
        if self.cache_dir is None:
            return None
        return Path(self.cache_dir) / "scan-oracle" / f"{self._key(params)}.json"

    def _read(self, path: Path | None, params: dict[str, float]) -> OracleResult | None:
        if path is None or not path.is_file():
            return None
        try:
            d = json.loads(path.read_text())
            return OracleResult(
                params=params,
                sigma_br_fb=float(d["sigma_br_fb"]),
                sigma_br_err_fb=float(d["sigma_br_err_fb"]),
                branching_ratio=float(d["branching_ratio"]),
                width_gev=float(d["width_gev"]),
                seconds=float(d["seconds"]),
                cached=True,
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a damaged entry is recomputed

    def _write(self, path: Path | None, result: OracleResult) -> None:
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(result.to_dict()))
            os.replace(tmp, path)
        except OSError:
            pass  # an unwritable cache costs time, not correctness

    def evaluate(
        self, points: Sequence[dict[str, float]], progress: bool = False
    ) -> list[OracleResult]:
        """σ × BR of every point (dicts of the scanned parameters), cached; each uncached
        point counts as one oracle call."""
        full = [self.point(p) for p in points]
        paths = [self._cache_path(p) for p in full]
        results: list[OracleResult | None] = [
            self._read(path, p) for path, p in zip(paths, full, strict=True)
        ]
        todo = [i for i, r in enumerate(results) if r is None]
        self.cache_hits += len(points) - len(todo)
        if todo:
            t0 = time.perf_counter()
            jobs = max(1, min(self.jobs, len(todo) // 8))
            if jobs > 1:
                fresh = self._parallel([full[i] for i in todo], jobs, progress)
            else:
                fresh = []
                for n, i in enumerate(todo):
                    fresh.append(_evaluate(full[i], self.events))
                    if progress and len(todo) > 20 and (n + 1) % 200 == 0:
                        print(f"  oracle: {n + 1}/{len(todo)} points", file=sys.stderr)
            for i, r in zip(todo, fresh, strict=True):
                results[i] = r
                self._write(paths[i], r)
            self.calls += len(todo)
            self.pythia_seconds += time.perf_counter() - t0
        return [r for r in results if r is not None]

    def _parallel(
        self, points: list[dict[str, float]], jobs: int, progress: bool
    ) -> list[OracleResult]:
        ctx = mp.get_context("spawn")
        out: list[OracleResult] = []
        with ctx.Pool(jobs) as pool:
            chunks = pool.imap(_worker, [(p, self.events) for p in points], chunksize=8)
            for n, d in enumerate(chunks):
                out.append(
                    OracleResult(
                        params=d["params"],
                        sigma_br_fb=d["sigma_br_fb"],
                        sigma_br_err_fb=d["sigma_br_err_fb"],
                        branching_ratio=d["branching_ratio"],
                        width_gev=d["width_gev"],
                        seconds=d["seconds"],
                    )
                )
                if progress and (n + 1) % 200 == 0:
                    print(f"  oracle: {n + 1}/{len(points)} points", file=sys.stderr, flush=True)
        return out

    def log_ratio(self, results: Sequence[OracleResult]) -> np.ndarray:
        """ln(σ × BR / σB_lim): > 0 where excluded."""
        s = np.array([r.sigma_br_fb for r in results])
        m = np.array([r.params["mass"] for r in results])
        return np.log(s / self.limit(m))
