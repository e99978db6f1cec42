"""Judging reconstructed tracks: the TrackML score, matching rates, and their pT/eta curves.

One :class:`TrackEvaluation` per reconstruction method collects events
(:meth:`TrackEvaluation.add`) and summarises them: the TrackML score as it stands and
normalised by what a perfect tracker can collect, double-majority and ATLAS efficiency,
fake and duplicate rates for particles above ``pt_min``, and the per-particle match flags
behind the efficiency-versus-pT and -eta curves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fivesigma.metrics.tracking import (
    efficiency_vs,
    track_matching,
    trackml_score,
    trackml_score_normalised,
)
from fivesigma.tasks.tracking.hits import Hits, submission_track_ids

__all__ = ["ETA_BINS", "PT_BINS", "TrackEvaluation", "event_metrics"]

#: Bins of the efficiency curves (GeV, and pseudorapidity).
PT_BINS = np.array([0.1, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 100.0])
ETA_BINS = np.linspace(-4.0, 4.0, 17)


def _particles(hits: Hits) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct non-noise particle ids with their pT and eta (from the hit table)."""
    pid = hits.particle_id
    real = pid != 0
    ids, first = np.unique(pid[real], return_index=True)
    pt = hits.particle_pt[real][first]
    eta = hits.particle_eta[real][first]
    return ids, pt, eta


def event_metrics(
    hits: Hits,
    labels: np.ndarray,
    *,
    pt_min: float = 1.0,
    eta_max: float = 4.0,
    min_particle_hits: int = 3,
    min_track_hits: int = 3,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Metrics of one event's track labels (``-1`` = no track), and per-particle flags.

    Returns ``(metrics, particles)``: ``metrics`` holds ``score``, ``score_normalised`` and,
    for particles with pT > ``pt_min``, |eta| < ``eta_max`` and at least
    ``min_particle_hits`` hits, the double-majority (``dm_``) and ATLAS (``atlas_``)
    efficiency, fake and duplicate rates.  ``particles`` holds ``pt``, ``eta``,
    ``dm_matched`` and ``selected`` (the quality cuts without the pT cut) per particle.
    """
    track = submission_track_ids(labels)
    args = (hits.hit_id, track, hits.hit_id, hits.particle_id)
    ids, pt, eta = _particles(hits)
    pt_known = np.nan_to_num(pt, nan=-1.0)
    eta_known = np.nan_to_num(eta, nan=99.0)
    in_acceptance = np.abs(eta_known) < eta_max
    # unassigned hits are single-hit tracks, dropped by min_track_hits before counting
    out: dict[str, float] = {
        "score": trackml_score(*args, hits.weight),
        "score_normalised": trackml_score_normalised(*args, hits.weight),
    }
    chosen = ids[(pt_known > pt_min) & in_acceptance]
    for rule, prefix in (("double_majority", "dm"), ("atlas", "atlas")):
        m = track_matching(
            *args,
            rule=rule,  # type: ignore[arg-type]
            min_track_hits=min_track_hits,
            min_particle_hits=min_particle_hits,
            selected_particles=chosen,
        )
        out[f"{prefix}_efficiency"] = m.efficiency
        out[f"{prefix}_fake_rate"] = m.fake_rate
        out[f"{prefix}_duplicate_rate"] = m.duplicate_rate
        if rule == "double_majority":
            out["n_tracks"] = float(m.n_tracks)
            out["n_selected_particles"] = float(m.particle_selected.sum())
            dm = m
    # every particle with enough hits in acceptance, whatever its pT, for the curves
    order = np.searchsorted(dm.particle_ids, ids)
    matched = dm.particle_matched[order]
    enough = dm.particle_nhits[order] >= min_particle_hits
    particles = {
        "pt": pt_known,
        "eta": eta_known,
        "dm_matched": matched,
        "selected": enough & in_acceptance & (pt_known > 0),
    }
    return out, particles


@dataclass
class TrackEvaluation:
    """Metrics of one method over several events (means, and pooled particle curves)."""

    name: str
    pt_min: float = 1.0
    eta_max: float = 4.0
    min_particle_hits: int = 3
    min_track_hits: int = 3
    events: list[dict[str, float]] = field(default_factory=list)
    _particles: list[dict[str, np.ndarray]] = field(default_factory=list, repr=False)

    def add(self, hits: Hits, labels: np.ndarray, **extra: float) -> dict[str, float]:
        """Score one event; ``extra`` (e.g. timings) is stored with its metrics."""
        metrics, particles = event_metrics(
            hits,
            labels,
            pt_min=self.pt_min,
            eta_max=self.eta_max,
            min_particle_hits=self.min_particle_hits,
            min_track_hits=self.min_track_hits,
        )
        metrics.update(extra)
        metrics["event_id"] = hits.event_id
        self.events.append(metrics)
        self._particles.append(particles)
        return metrics

    def summary(self) -> dict[str, Any]:
        """Mean of every metric over the events (NaN-aware), and the number of events."""
        if not self.events:
            return {"events": 0}
        keys = [k for k in self.events[0] if k != "event_id"]
        out: dict[str, Any] = {"events": len(self.events)}
        for key in keys:
            values = np.array([e.get(key, np.nan) for e in self.events], dtype=float)
            out[key] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
        return out

    def curve(self, variable: str, bins: np.ndarray | None = None) -> dict[str, list[float]]:
        """Double-majority efficiency against ``pt`` or ``eta`` (particles pooled over events;
        the eta curve keeps the pT cut), with Clopper-Pearson 68% intervals."""
        p = {k: np.concatenate([e[k] for e in self._particles]) for k in self._particles[0]}
        keep = p["selected"]
        if variable == "eta":
            keep = keep & (p["pt"] > self.pt_min)
            bins = ETA_BINS if bins is None else bins
        else:
            bins = PT_BINS if bins is None else bins
        values = np.clip(p[variable][keep], bins[0], np.nextafter(bins[-1], -np.inf))
        edges, eff, ci = efficiency_vs(values, p["dm_matched"][keep], bins)
        counts, _ = np.histogram(values, bins=edges)
        return {
            "edges": edges.tolist(),
            "efficiency": eff.tolist(),
            "low": ci[0].tolist(),
            "high": ci[1].tolist(),
            "particles": counts.tolist(),
        }
