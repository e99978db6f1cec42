"""Track-reconstruction metrics: the TrackML score, track matching, efficiency, fakes, duplicates.

Numpy only (scipy lazily, inside :func:`efficiency_vs`).  A reconstruction is given as two
aligned arrays ``hit_ids`` / ``track_ids`` (one row per assigned hit); the truth as aligned
arrays ``truth_hit_ids`` / ``truth_particle_ids`` (and ``truth_weights`` for the score), one
row per hit of the event.  ``particle_id == 0`` is noise, as in the TrackML data.  Truth hits
that the reconstruction leaves out are unassigned: they count for their particle's hit total
but are in no track.

Definitions and sources
-----------------------
* TrackML score (``trackml.score.score_event`` in github.com/LAL/trackml-library; Amrouche
  et al., arXiv:1904.06778, sec. 3): for each track take the particle that holds the most of
  its hits; the track is *good* when that particle holds strictly more than 50% of the track's
  hits AND the track holds strictly more than 50% of that particle's (truth) hits.  The score
  is the summed weight of the hits of the majority particle in good tracks, divided by the
  total truth weight.  In the official truth the weights sum to one per event; noise hits and
  hits of particles with three hits or fewer have weight 0; the other hits are weighted by
  their position along the track (first and last hits weigh more) and by the particle pT.
* ``rule="double_majority"``: a track matches particle p when more than 50% of the track's
  hits come from p AND more than 50% of p's hits are in the track (the TrackML rule; the
  "two_way" matching of the Exa.TrkX / acorn (GNN4ITk) evaluation, arXiv:2103.06995).
* ``rule="atlas"``: a track matches p when more than 50% of its hits come from p (the ATLAS
  / acorn "ATLAS" matching style with ``matching_fraction=0.5``; unweighted hit counts here,
  ATLAS ITk studies use a weighted "truth-matching probability" > 0.5).
* Exactly 50% is never a majority.  Noise (particle 0) is never a match, so a track whose
  majority is noise is a fake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from fivesigma.core import extras
from fivesigma.metrics._validate import MetricError

__all__ = [
    "MatchResult",
    "duplicate_rate",
    "efficiency_vs",
    "fake_rate",
    "track_matching",
    "tracking_efficiency",
    "trackml_score",
    "trackml_score_normalised",
    "trackml_weights",
]

_RULES = ("double_majority", "atlas")


def _ids(x: object, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise MetricError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
            return arr.astype(np.int64)
        raise MetricError(f"{name} must hold integer ids, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _no_duplicates(ids: np.ndarray, name: str) -> None:
    s = np.sort(ids)
    dup = s[1:][s[1:] == s[:-1]]
    if dup.size:
        raise MetricError(
            f"{name} has {np.unique(dup).size} duplicated hit id(s), e.g. {int(dup[0])}; "
            "each hit must appear once"
        )


@dataclass(frozen=True)
class _Event:
    """Validated event: per-(track, particle) pair counts and the per-particle totals."""

    tracks: np.ndarray  # unique track ids
    track_nhits: np.ndarray
    particles: np.ndarray  # unique truth particle ids (noise 0 included if present)
    particle_nhits: np.ndarray  # truth hits per particle
    pair_track: np.ndarray  # index into tracks
    pair_particle: np.ndarray  # index into particles
    pair_nhits: np.ndarray
    pair_weight: np.ndarray
    total_weight: float
    noise_weight: float


def _event(
    hit_ids: object,
    track_ids: object,
    truth_hit_ids: object,
    truth_particle_ids: object,
    truth_weights: object | None = None,
) -> _Event:
    hits = _ids(hit_ids, "hit_ids")
    trk = _ids(track_ids, "track_ids")
    thits = _ids(truth_hit_ids, "truth_hit_ids")
    tpart = _ids(truth_particle_ids, "truth_particle_ids")
    if hits.shape != trk.shape:
        raise MetricError(
            f"hit_ids has {hits.size} entries but track_ids has {trk.size}; give one track id per hit"
        )
    if thits.shape != tpart.shape:
        raise MetricError(
            f"truth_hit_ids has {thits.size} entries but truth_particle_ids has {tpart.size}"
        )
    if truth_weights is None:
        w = np.ones(thits.size)
    else:
        w = np.asarray(truth_weights, dtype=np.float64)
        if w.shape != thits.shape:
            raise MetricError(
                f"truth_weights has shape {w.shape} but there are {thits.size} truth hits"
            )
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise MetricError("truth_weights must be finite and non-negative")
    _no_duplicates(hits, "hit_ids")
    _no_duplicates(thits, "truth_hit_ids")
    order = np.argsort(thits, kind="stable")
    if thits.size:
        pos = np.minimum(np.searchsorted(thits, hits, sorter=order), thits.size - 1)
        row = order[pos]
        missing = thits[row] != hits
    else:
        row = np.zeros(hits.size, dtype=np.int64)
        missing = np.ones(hits.size, dtype=bool)
    if np.any(missing):
        raise MetricError(
            f"{int(missing.sum())} hit id(s) in the reconstruction are absent from the truth, "
            f"e.g. {int(hits[missing][0])}"
        )
    particles, p_inv, particle_nhits = np.unique(tpart, return_inverse=True, return_counts=True)
    tracks, t_inv, track_nhits = np.unique(trk, return_inverse=True, return_counts=True)
    key = t_inv.astype(np.int64) * max(particles.size, 1) + p_inv[row]
    pair_key, k_inv, pair_nhits = np.unique(key, return_inverse=True, return_counts=True)
    pair_weight = np.bincount(k_inv, weights=w[row], minlength=pair_key.size)
    return _Event(
        tracks=tracks,
        track_nhits=track_nhits,
        particles=particles,
        particle_nhits=particle_nhits,
        pair_track=pair_key // max(particles.size, 1),
        pair_particle=pair_key % max(particles.size, 1),
        pair_nhits=pair_nhits,
        pair_weight=pair_weight,
        total_weight=float(w.sum()),
        noise_weight=float(w[tpart == 0].sum()),
    )


def _good_pairs(ev: _Event, rule: str) -> np.ndarray:
    """Pairs where the particle holds > 50% of the track (and, double majority, vice versa)."""
    good = 2 * ev.pair_nhits > ev.track_nhits[ev.pair_track]
    if rule == "double_majority":
        good &= 2 * ev.pair_nhits > ev.particle_nhits[ev.pair_particle]
    return good


def trackml_score(
    hit_ids: object,
    track_ids: object,
    truth_hit_ids: object,
    truth_particle_ids: object,
    truth_weights: object,
) -> float:
    """The official TrackML event score (``trackml.score.score_event``).

    Sum of the weights of the hits of the majority particle in every double-majority track
    (the particle holds > 50% of the track and the track > 50% of the particle's hits),
    divided by the total truth weight; noise (particle 0) is treated like any particle, as
    in the official code, so it scores only its own weight (0 in the official truth).

    >>> trackml_score([1, 2, 3, 4], [7, 7, 7, 8], [1, 2, 3, 4], [5, 5, 5, 0], [0.3, 0.3, 0.4, 0])
    1.0
    >>> round(trackml_score([1, 2, 3, 4], [7, 7, 8, 8], [1, 2, 3, 4], [5, 5, 5, 0], [0.3, 0.3, 0.4, 0]), 6)
    0.6
    """
    ev = _event(hit_ids, track_ids, truth_hit_ids, truth_particle_ids, truth_weights)
    if ev.total_weight <= 0:
        raise MetricError("truth_weights sum to 0; the TrackML score is undefined")
    good = _good_pairs(ev, "double_majority")
    return float(ev.pair_weight[good].sum() / ev.total_weight)


def trackml_score_normalised(
    hit_ids: object,
    track_ids: object,
    truth_hit_ids: object,
    truth_particle_ids: object,
    truth_weights: object,
) -> float:
    """TrackML score divided by the most a perfect tracker can collect (1 for a perfect one).

    The maximum is the weight of all non-noise truth hits: one track per particle holds 100%
    of its particle and 100% of the track, so every particle, whatever its number of hits,
    is matched under the official rule.  Noise is credited neither in the numerator nor in
    the maximum.  With the official truth (noise weight 0, weights summing to 1) this equals
    :func:`trackml_score`.

    >>> trackml_score_normalised([1, 2, 3], [7, 7, 8], [1, 2, 3, 4], [5, 5, 6, 0], [2, 2, 1, 5])
    1.0
    """
    ev = _event(hit_ids, track_ids, truth_hit_ids, truth_particle_ids, truth_weights)
    maximum = ev.total_weight - ev.noise_weight
    if maximum <= 0:
        raise MetricError("the non-noise truth hits have zero total weight; score undefined")
    good = _good_pairs(ev, "double_majority") & (ev.particles[ev.pair_particle] != 0)
    return float(ev.pair_weight[good].sum() / maximum)


@dataclass(frozen=True)
class MatchResult:
    """Track ↔ particle matching of one event (see :func:`track_matching`).

    Track arrays cover the tracks with at least ``min_track_hits`` hits; particle arrays cover
    every non-noise truth particle.
    """

    rule: str
    track_ids: np.ndarray
    track_nhits: np.ndarray
    track_particle: np.ndarray  # matched particle id, or -1 (fake)
    particle_ids: np.ndarray
    particle_nhits: np.ndarray
    particle_selected: np.ndarray  # enters the efficiency denominator
    particle_n_tracks: np.ndarray  # number of tracks matched to the particle

    @property
    def particle_matched(self) -> np.ndarray:
        return self.particle_n_tracks > 0

    @property
    def n_tracks(self) -> int:
        return int(self.track_ids.size)

    @property
    def efficiency(self) -> float:
        """Matched selected particles / selected particles (nan when none is selected)."""
        n = int(self.particle_selected.sum())
        return float((self.particle_matched & self.particle_selected).sum() / n) if n else np.nan

    @property
    def fake_rate(self) -> float:
        """Tracks matched to no particle / tracks (nan without tracks)."""
        n = self.n_tracks
        return float((self.track_particle < 0).sum() / n) if n else np.nan

    @property
    def duplicate_rate(self) -> float:
        """(matched tracks - distinct matched particles) / tracks (nan without tracks)."""
        n = self.n_tracks
        extra = int(np.maximum(self.particle_n_tracks - 1, 0).sum())
        return float(extra / n) if n else np.nan


def track_matching(
    hit_ids: object,
    track_ids: object,
    truth_hit_ids: object,
    truth_particle_ids: object,
    *,
    rule: Literal["double_majority", "atlas"] = "double_majority",
    min_track_hits: int = 3,
    min_particle_hits: int = 3,
    selected_particles: object | None = None,
) -> MatchResult:
    """Match reconstructed tracks to truth particles.

    ``rule="double_majority"``: a track matches particle p when > 50% of its hits are p's and
    > 50% of p's truth hits are in it (TrackML; Exa.TrkX/acorn "two_way").  ``rule="atlas"``:
    > 50% of the track's hits are p's (ATLAS / acorn "ATLAS" style).  Exactly 50% is not a
    majority; noise (particle 0) never matches.  Tracks with fewer than ``min_track_hits``
    hits are dropped before anything is counted.  Every particle can be matched, but only
    those with at least ``min_particle_hits`` truth hits and, when given, whose id is in
    ``selected_particles`` (e.g. the ids with pT > 1 GeV and |eta| < 4) are *selected*, i.e.
    enter the efficiency denominator; a track matched to an unselected particle is not fake.

    Under double majority each particle has at most one matched track (two tracks cannot each
    hold > 50% of its hits), so a particle split in two gives one match and one fake, never a
    duplicate; under "atlas" the pieces are a match plus duplicates.

    >>> m = track_matching([1, 2, 3, 4, 5, 6], [0, 0, 0, 1, 1, 1], [1, 2, 3, 4, 5, 6],
    ...                    [9, 9, 9, 9, 8, 0], min_track_hits=1, min_particle_hits=1)
    >>> m.track_particle.tolist(), m.efficiency, m.fake_rate
    ([9, -1], 0.5, 0.5)
    """
    if rule not in _RULES:
        raise MetricError(f"rule must be one of {_RULES}, got {rule!r}")
    for name, v in (("min_track_hits", min_track_hits), ("min_particle_hits", min_particle_hits)):
        if not isinstance(v, int | np.integer) or v < 1:
            raise MetricError(f"{name} must be a positive integer, got {v!r}")
    ev = _event(hit_ids, track_ids, truth_hit_ids, truth_particle_ids)
    keep_track = ev.track_nhits >= min_track_hits
    good = _good_pairs(ev, rule) & keep_track[ev.pair_track] & (ev.particles[ev.pair_particle] != 0)
    track_particle = np.full(ev.tracks.size, -1, dtype=np.int64)
    track_particle[ev.pair_track[good]] = ev.particles[ev.pair_particle[good]]
    n_tracks = np.bincount(ev.pair_particle[good], minlength=ev.particles.size)
    real = ev.particles != 0
    selected = ev.particle_nhits >= min_particle_hits
    if selected_particles is not None:
        selected &= np.isin(ev.particles, _ids(selected_particles, "selected_particles"))
    return MatchResult(
        rule=rule,
        track_ids=ev.tracks[keep_track],
        track_nhits=ev.track_nhits[keep_track],
        track_particle=track_particle[keep_track],
        particle_ids=ev.particles[real],
        particle_nhits=ev.particle_nhits[real],
        particle_selected=selected[real],
        particle_n_tracks=n_tracks[real],
    )


def tracking_efficiency(*args: object, **kwargs: object) -> float:
    """Matched selected particles / selected particles; arguments as :func:`track_matching`."""
    return track_matching(*args, **kwargs).efficiency  # type: ignore[arg-type]


def fake_rate(*args: object, **kwargs: object) -> float:
    """Tracks matched to no particle / tracks; arguments as :func:`track_matching`."""
    return track_matching(*args, **kwargs).fake_rate  # type: ignore[arg-type]


def duplicate_rate(*args: object, **kwargs: object) -> float:
    """Extra tracks on an already matched particle / tracks; as :func:`track_matching`."""
    return track_matching(*args, **kwargs).duplicate_rate  # type: ignore[arg-type]


def efficiency_vs(
    values: object, matched: object, bins: object, cl: float = 0.6827
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Efficiency in bins of a per-particle quantity (pT, eta) with Clopper-Pearson intervals.

    ``values`` and ``matched`` have one entry per selected particle (e.g. from a
    :class:`MatchResult`: ``particle_matched[particle_selected]``).  ``bins`` is an edge array
    or a bin count (as ``numpy.histogram``).  Returns ``(edges, efficiency, interval)`` with
    ``interval`` of shape (2, n_bins): the central Clopper-Pearson interval at ``cl``; empty
    bins give nan.

    >>> edges, eff, ci = efficiency_vs([1, 2, 3, 4], [1, 0, 1, 1], [0, 2.5, 5])
    >>> eff.tolist()
    [0.5, 1.0]
    """
    x = np.asarray(values, dtype=np.float64)
    m = np.asarray(matched)
    if x.ndim != 1 or m.shape != x.shape:
        raise MetricError(
            f"values has shape {x.shape} but matched has {m.shape}; give one flag per value"
        )
    if not np.all(np.isfinite(x)):
        raise MetricError("values has NaN/inf entries")
    if not 0 < cl < 1:
        raise MetricError(f"cl must be between 0 and 1, got {cl!r}")
    m = m.astype(bool)
    total, edges = np.histogram(x, bins=bins)  # type: ignore[call-overload]
    passed, _ = np.histogram(x[m], bins=edges)
    beta = extras.scipy("stats").beta
    alpha = 1.0 - cl
    with np.errstate(invalid="ignore", divide="ignore"):
        eff = np.where(total > 0, passed / np.maximum(total, 1), np.nan)
        low = np.where(passed > 0, beta.ppf(alpha / 2, passed, total - passed + 1), 0.0)
        high = np.where(passed < total, beta.ppf(1 - alpha / 2, passed + 1, total - passed), 1.0)
    empty = total == 0
    low = np.where(empty, np.nan, low)
    high = np.where(empty, np.nan, high)
    return edges, eff, np.vstack([low, high])


#: TrackML hit-order weights (first hits and the last ones weigh more), stretched over a
#: particle's hits; particles with fewer hits than the minimum get 0, hits beyond the
#: maximum count too (arXiv:1904.06778, sec. 3).
TRACKML_ORDER_PROPOSAL = (10.0, 8.0, 6.0, 5.0, 3.0, 3.0, 3.0, 5.0, 6.0)
TRACKML_ORDER_MIN_HITS = 4
TRACKML_ORDER_MAX_HITS = 20
#: pT weight: 0.2 below 0.5 GeV, rising linearly to 1 at 3 GeV, 1 above.
TRACKML_PT_LIMITS = (0.5, 3.0)
TRACKML_PT_WEIGHTS = (0.2, 1.0)


def _order_table() -> np.ndarray:
    """``table[n, i]``: order weight of the i-th hit (by distance from the vertex) of a
    particle with n hits, each row normalised to sum 1 (rows below the minimum are 0)."""
    nmax = TRACKML_ORDER_MAX_HITS
    proposal = np.asarray(TRACKML_ORDER_PROPOSAL)
    table = np.zeros((nmax + 1, nmax))
    for n in range(TRACKML_ORDER_MIN_HITS, nmax + 1):
        # the proposal's 9 supports spread evenly from the first hit (0) to the last (n - 1)
        supports = np.arange(proposal.size) * (n - 1) / (proposal.size - 1)
        row = np.interp(np.arange(n), supports, proposal)
        table[n, :n] = row / row.sum()
    return table


def _column(table: object, name: str, what: str) -> np.ndarray:
    try:
        return np.asarray(table[name])  # type: ignore[index]
    except (KeyError, IndexError, TypeError, ValueError):
        raise MetricError(f"{what} has no column {name!r}") from None


def trackml_weights(truth: object, particles: object, selected: object = None) -> np.ndarray:
    """Per-hit weights of the TrackML score, computed from the truth and the particles.

    The TrackML definition (arXiv:1904.06778, sec. 3): for each particle its hits are
    ordered by ``|tz - vz|`` (distance along z from its production vertex); the *order
    weight* of the i-th hit interpolates the proposal ``[10, 8, 6, 5, 3, 3, 3, 5, 6]``,
    whose 9 supports sit at ``k (n - 1) / 8``, at i, normalised to sum 1 over the
    particle's hits; particles with fewer than 4 hits get 0, and ``n`` is capped at 20
    (hits after the 20th get 0).  The *pT weight* is 0.2 below 0.5 GeV, linear up to 1.0
    at 3 GeV and 1.0 above.  A hit weighs order weight x pT weight; noise hits
    (``particle_id == 0``) weigh 0; all weights are normalised to sum 1 over the event.

    Parameters
    ----------
    truth
        Table (pandas DataFrame or mapping of arrays) with ``particle_id`` and ``tz``, one
        row per hit.
    particles
        Table with ``particle_id``, ``vz``, ``px``, ``py``; every non-zero ``particle_id``
        of ``truth`` must be in it.
    selected
        Optional boolean per row of ``particles``: hits of unselected particles weigh 0
        (before the normalisation).  The published TrackML events also zero the hits of
        secondaries from material interactions (generation ``(particle_id >> 24) & 0xfff``
        non-zero, the challenge's phase-2 rule): pass ``generation == 0`` to reproduce
        their weights exactly.

    Returns
    -------
    ndarray
        float64 weights aligned with the rows of ``truth`` (all 0 if no particle has 4
        hits).

    >>> truth = {"particle_id": [1, 1, 1, 1, 0], "tz": [40.0, 10.0, 30.0, 20.0, 5.0]}
    >>> parts = {"particle_id": [1], "vz": [0.0], "px": [4.0], "py": [0.0]}
    >>> np.round(trackml_weights(truth, parts), 4).tolist()  # 10, 5.33, 3, 6 normalised
    [0.2466, 0.411, 0.1233, 0.2192, 0.0]
    """
    pid = _ids(_column(truth, "particle_id", "truth"), "truth particle_id")
    tz = np.asarray(_column(truth, "tz", "truth"), dtype=np.float64)
    ppid = _ids(_column(particles, "particle_id", "particles"), "particles particle_id")
    vz = np.asarray(_column(particles, "vz", "particles"), dtype=np.float64)
    pt = np.hypot(
        np.asarray(_column(particles, "px", "particles"), dtype=np.float64),
        np.asarray(_column(particles, "py", "particles"), dtype=np.float64),
    )
    if tz.shape != pid.shape:
        raise MetricError(f"truth tz has {tz.size} rows but particle_id has {pid.size}")
    _no_duplicates(ppid, "particles particle_id")
    keep = np.ones(ppid.size, dtype=bool)
    if selected is not None:
        keep = np.asarray(selected)
        if keep.shape != ppid.shape or keep.dtype != bool:
            raise MetricError(
                f"selected must be one boolean per particle ({ppid.size}), got "
                f"dtype {keep.dtype}, shape {keep.shape}"
            )
    weights = np.zeros(pid.size)
    real = np.flatnonzero(pid != 0)
    if real.size == 0:
        return weights
    order_p = np.argsort(ppid, kind="stable")
    pos = np.clip(np.searchsorted(ppid[order_p], pid[real]), 0, max(ppid.size - 1, 0))
    if ppid.size == 0 or np.any(ppid[order_p][pos] != pid[real]):
        missing = pid[real] if ppid.size == 0 else pid[real][ppid[order_p][pos] != pid[real]]
        raise MetricError(
            f"{np.unique(missing).size} particle id(s) of the truth are not in the particles "
            f"table, e.g. {int(missing[0])}"
        )
    row = order_p[pos]
    dz = np.abs(tz[real] - vz[row])
    # hits of one particle together, nearest to its vertex first (ties: file order)
    order = np.lexsort((dz, pid[real]))
    spid = pid[real][order]
    start = np.flatnonzero(np.r_[True, spid[1:] != spid[:-1]])
    counts = np.diff(np.r_[start, spid.size])
    n = np.repeat(counts, counts)
    rank = np.arange(spid.size) - np.repeat(start, counts)
    table = _order_table()
    n_capped = np.minimum(n, TRACKML_ORDER_MAX_HITS)
    inside = rank < TRACKML_ORDER_MAX_HITS
    w_order = np.zeros(spid.size)
    w_order[inside] = table[n_capped[inside], rank[inside]]
    w_pt = np.interp(pt[row[order]], TRACKML_PT_LIMITS, TRACKML_PT_WEIGHTS)
    weights[real[order]] = w_order * w_pt * keep[row[order]]
    total = weights.sum()
    return weights / total if total > 0 else weights
