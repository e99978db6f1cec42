"""The rate and efficiency model of an L1 menu versus pile-up, and LHC fills.

Rates come from the zero-bias-like L1 stream (``fivesigma generate l1``, process
``zerobias``) generated at a grid of pile-up values mu_j: the rate of a menu of K seeds
with thresholds t at mu_j is the fraction of zero-bias events in which any seed's score
exceeds its threshold, times the colliding-bunch-crossing rate (40 MHz x 2544 / 3564),
plus the reserved rate of triggers the agent does not control.  Signal efficiencies are
the fractions of each signal's events (generated with the same pile-up) that pass.

Between grid points the menu's pass fraction is interpolated **log-linearly in mu**
(rates grow roughly exponentially with pile-up; a pass fraction of zero counts as
half an event, so the logarithm is finite), efficiencies linearly.  A pile-up outside
the grid is refused when the config is read (the fills must stay inside).

A fill: pile-up mu(t) = mu_start exp(-t / lifetime), with the instantaneous luminosity
proportional to mu (a fixed number of colliding bunches); control step i covers
[i, i + 1) x hours / steps and is evaluated at its middle.  Integrated quantities weight
the steps by luminosity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fivesigma.errors import ConfigError, DataError

__all__ = ["Fill", "RateModel", "load_rate_model", "sample_fills"]

#: colliding bunch crossings per second, in kHz
INPUT_RATE_KHZ = 40_000.0 * 2544 / 3564


@dataclass(frozen=True)
class Fill:
    """One LHC fill: its starting pile-up, luminosity lifetime (h), length (h), steps."""

    mu_start: float
    lifetime_h: float
    hours: float
    steps: int

    @property
    def mu(self) -> np.ndarray:
        """Pile-up at the middle of each control step."""
        t = (np.arange(self.steps) + 0.5) * self.hours / self.steps
        return self.mu_start * np.exp(-t / self.lifetime_h)

    @property
    def luminosity_weight(self) -> np.ndarray:
        """Each step's share of the fill's integrated luminosity."""
        mu = self.mu
        return mu / mu.sum()


def sample_fills(
    n: int,
    rng: np.random.Generator,
    mu_start: tuple[float, float],
    lifetime_h: tuple[float, float],
    hours: float,
    steps: int,
) -> list[Fill]:
    """``n`` fills with starting pile-up and lifetime drawn uniformly from the ranges."""
    mu0 = rng.uniform(*mu_start, size=n)
    tau = rng.uniform(*lifetime_h, size=n)
    return [
        Fill(float(m), float(t), float(hours), int(steps)) for m, t in zip(mu0, tau, strict=True)
    ]


class RateModel:
    """Menu rate (kHz) and per-channel signal efficiency as functions of the K thresholds
    and the pile-up, from seed scores (GeV) of events at a grid of pile-up values.

    Parameters
    ----------
    mu_grid : pile-up values, increasing.
    zerobias : per grid point, an (n, K) array of the zero-bias events' seed scores.
    signals : channel -> per grid point, an (n, K) array of the signal's seed scores.
    seeds : the K seed names.
    reserved_khz : rate of triggers outside the menu, added to every rate.

    Examples
    --------
    >>> zb = [np.array([[1.0], [2.0], [3.0], [4.0]])] * 2
    >>> m = RateModel([10, 20], zb, {"s": [np.array([[5.0], [0.0]])] * 2}, ["x"])
    >>> round(m.rate_khz(np.array([2.5]), 15.0) / INPUT_RATE_KHZ, 3)
    0.5
    >>> m.efficiencies(np.array([2.5]), 15.0)
    {'s': 0.5}
    """

    def __init__(
        self,
        mu_grid: list[float],
        zerobias: list[np.ndarray],
        signals: dict[str, list[np.ndarray]],
        seeds: list[str],
        reserved_khz: float = 0.0,
    ) -> None:
        self.mu_grid = np.asarray(mu_grid, dtype=np.float64)
        if self.mu_grid.ndim != 1 or self.mu_grid.size < 2 or np.any(np.diff(self.mu_grid) <= 0):
            raise ConfigError(f"mu grid {list(mu_grid)}: give at least two increasing values")
        self.seeds = list(seeds)
        k = len(self.seeds)
        for table in [*zerobias, *(t for v in signals.values() for t in v)]:
            if table.ndim != 2 or table.shape[1] != k or table.shape[0] == 0:
                raise DataError(f"seed scores of shape {table.shape}; expected (n > 0, {k})")
        if len(zerobias) != self.mu_grid.size or any(
            len(v) != self.mu_grid.size for v in signals.values()
        ):
            raise DataError("one table per pile-up grid point is needed for every sample")
        # column-major: each seed's scores contiguous for the seed-by-seed pass test
        self.zerobias = [np.asfortranarray(z, dtype=np.float32) for z in zerobias]
        self.signals = {
            c: [np.asfortranarray(t, dtype=np.float32) for t in v] for c, v in signals.items()
        }
        self.reserved_khz = float(reserved_khz)
        self.calls = 0

    @property
    def channels(self) -> list[str]:
        return list(self.signals)

    def _bracket(self, mu: float) -> tuple[int, float]:
        g = self.mu_grid
        if not g[0] - 1e-9 <= mu <= g[-1] + 1e-9:
            raise ConfigError(
                f"pile-up {mu:.2f} is outside the rate model's grid [{g[0]:g}, {g[-1]:g}]"
            )
        j = int(np.clip(np.searchsorted(g, mu, side="right") - 1, 0, g.size - 2))
        return j, float((mu - g[j]) / (g[j + 1] - g[j]))

    @staticmethod
    def _pass(table: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
        # seed by seed along the long axis: much faster than any(axis=1) on (n, K)
        passed = table[:, 0] > thresholds[0]
        for k in range(1, table.shape[1]):
            passed |= table[:, k] > thresholds[k]
        return passed

    def pass_fraction(self, thresholds: np.ndarray, mu: float) -> float:
        """Zero-bias fraction passing the menu, log-linear in mu between grid points."""
        j, w = self._bracket(mu)
        p = []
        for z in (self.zerobias[j], self.zerobias[j + 1]):
            n = z.shape[0]
            p.append(max(float(self._pass(z, thresholds).sum()), 0.5) / n)
        return float(np.exp((1 - w) * np.log(p[0]) + w * np.log(p[1])))

    def rate_khz(self, thresholds: np.ndarray, mu: float) -> float:
        """Total L1 rate (kHz) of the menu plus the reserved rate."""
        self.calls += 1
        t = np.asarray(thresholds, dtype=np.float32)
        return self.pass_fraction(t, mu) * INPUT_RATE_KHZ + self.reserved_khz

    def seed_rates_khz(self, thresholds: np.ndarray, mu: float) -> np.ndarray:
        """Rate (kHz) of each seed alone (linear in mu)."""
        j, w = self._bracket(mu)
        t = np.asarray(thresholds, dtype=np.float32)
        r = [(z > t).mean(axis=0) for z in (self.zerobias[j], self.zerobias[j + 1])]
        return ((1 - w) * r[0] + w * r[1]) * INPUT_RATE_KHZ

    def efficiencies(self, thresholds: np.ndarray, mu: float) -> dict[str, float]:
        """Per channel: the fraction of signal events the menu keeps (linear in mu)."""
        j, w = self._bracket(mu)
        t = np.asarray(thresholds, dtype=np.float32)
        out = {}
        for c, tables in self.signals.items():
            e0 = float(self._pass(tables[j], t).mean())
            e1 = float(self._pass(tables[j + 1], t).mean())
            out[c] = (1 - w) * e0 + w * e1
        return out

    def minimum_rate_khz(self, highest: np.ndarray) -> tuple[float, float]:
        """(the lowest rate any allowed thresholds reach at the largest pile-up, that mu):
        every threshold at its upper bound."""
        mu = float(self.mu_grid[-1])
        return self.rate_khz(highest, mu), mu


def load_rate_model(s: Any, progress: bool = True) -> tuple[RateModel, dict[str, Any]]:
    """Generate (or read from the cache) the zero-bias and signal samples at every grid
    pile-up, reduce them to the seed scores, and build the :class:`RateModel`."""
    import sys

    from fivesigma.generate import cached_sample
    from fivesigma.generate.l1 import read
    from fivesigma.physics.l1 import reference_seeds

    def scores(process: str, events: int, seed: int, mu: int) -> np.ndarray:
        if progress:
            print(
                f"L1 stream: {events} {process} events at pile-up {mu} (cached) ...",
                file=sys.stderr,
                flush=True,
            )
        gen = cached_sample(
            "l1",
            events=events,
            seed=seed,
            jobs=s.jobs,
            progress=progress,
            options={"process": process, "mu": mu, "pool_size": s.pool_size},
        )
        table = read(next(iter(gen.files.values())))
        seeds = reference_seeds(table)
        return np.stack([np.asarray(seeds[k], dtype=np.float32) for k in s.seeds], axis=1)

    zb, sig = [], {c: [] for c in s.signals}
    for mu in s.mu_grid:
        # the same seeds at every grid point (common random numbers): the hard events
        # and the pile-up pool repeat, so the differences between grid points are pile-up
        zb.append(scores("zerobias", s.zerobias_events, s.seed, mu))
        for c in s.signals:
            sig[c].append(scores(c, s.signal_events, s.seed + 1, mu))
    model = RateModel(s.mu_grid, zb, sig, s.seeds, s.reserved_khz)
    source = {
        "mu_grid": list(s.mu_grid),
        "zerobias_events": [int(z.shape[0]) for z in zb],
        "signal_events": {c: [int(t.shape[0]) for t in v] for c, v in sig.items()},
        "pool_size": s.pool_size,
        "smallest_rate_step_khz": INPUT_RATE_KHZ / min(z.shape[0] for z in zb),
    }
    return model, source
