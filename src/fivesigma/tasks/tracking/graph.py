"""Geometric graph construction: candidate edges between hits, learnt from truth.

Stage 1 of the tracking pipeline.  A builder learns from the truth graphs of training
events (:meth:`Hits.truth_edges`, oriented inner to outer by :func:`orient_edges`) where
true edges can be and how they look, then connects the hits of a new event that could be
consecutive hits of one particle:

- :class:`LayerPairGraph` (the Exa.TrkX / HEP.TrkX "geometric" graph, Ju et al.,
  arXiv:2103.06995): the ordered detector-layer pairs that carry true edges, and per pair
  the ranges of four doublet quantities (:data:`FEATURES`).  Vectorised: per layer pair the
  outer hits are sorted by (eta bin, phi) and every inner hit takes a ``searchsorted``
  window, so the work scales with the number of candidates, not with the square of the hits.
- :class:`ModuleMapGraph` (the "module map" of the ATLAS ITk GNN tracking): the same
  idea one level finer, per pair of detector modules.  A module pair never seen in
  training never gets an edge, so a module map needs many training events (ATLAS builds
  its map from tens of thousands of simulated events) before it is complete; with a
  handful of events its edge efficiency is well below the layer-pair graph's.

:func:`graph_metrics` measures a graph against the truth: edge efficiency, purity, size.
Both builders save to a directory as JSON and ``.npz`` (no pickle).

Scale: fake edges per hit grow with the hit density (the z0 cut cannot narrow the inner
pixel pairs below the ~±15 cm luminous region).  On simulated events learnt at
``pt_min=1``: mu = 10 (~12k hits) ~6-12 edges per hit; mu = 200 (159k hits) 19 million
edges, 118 per hit, 98% efficient, 0.5% pure, built in ~7-8 s on one core.  At high
pile-up a layer-pair graph wants an edge filter after it (or metric learning instead).

>>> graph = LayerPairGraph().fit(train_hits)            # doctest: +SKIP
>>> edges = graph.build(hits)  # (2, E) int64, inner -> outer  # doctest: +SKIP
>>> graph_metrics(hits, edges, pt_min=1.0)["efficiency"]  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.errors import ConfigError, DataError
from fivesigma.tasks.tracking.hits import Hits, orient_edges

__all__ = [
    "FEATURES",
    "LayerPairGraph",
    "ModuleMapGraph",
    "doublet_features",
    "graph_metrics",
    "load_graph_builder",
]

#: The doublet quantities of an edge ``i -> o`` (inner to outer), columns of
#: :func:`doublet_features`: ``dphi`` = phi_o - phi_i wrapped into [-pi, pi);
#: ``phi_slope`` = dphi / (r_o - r_i) (rad/mm, ~ -curvature/2 for a track from the beam
#: line); ``z0`` = z_i - r_i (z_o - z_i) / (r_o - r_i), where the straight line through the
#: two hits crosses the beam line (mm); ``deta`` = eta_o - eta_i (hit pseudorapidities).
FEATURES: tuple[str, ...] = ("dphi", "phi_slope", "z0", "deta")

_FORMAT_VERSION = 1
_ETA_CLIP = 8.0  # |eta| of a hit on the beam line is infinite; keep the sort keys finite
_DR_MIN = 1e-3  # mm; two hits at the same radius would give an infinite slope
_SLOPE_CLIP = 1e6


# ----------------------------------------------------------------------------------------
# Doublet quantities
# ----------------------------------------------------------------------------------------
class _Geometry:
    """Per-hit coordinates computed once per event (the builders look them up per edge)."""

    def __init__(self, hits: Hits) -> None:
        self.r = hits.r
        self.phi = hits.phi
        self.z = np.asarray(hits.z, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            eta = np.arcsinh(self.z / self.r)
        self.eta = np.clip(np.nan_to_num(eta, nan=0.0), -_ETA_CLIP, _ETA_CLIP)
        rho = hits.rho
        # The position of every hit in the inner -> outer order orient_edges uses (rho,
        # then row), so a candidate edge can be checked for orientation by one comparison.
        order = np.lexsort((np.arange(len(rho)), rho))
        self.rank = np.empty(len(rho), dtype=np.int64)
        self.rank[order] = np.arange(len(rho))

    def features(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """``(E, len(FEATURES))`` doublet quantities of the edges ``src -> dst``."""
        dphi = _wrap(self.phi[dst] - self.phi[src])
        dr = self.r[dst] - self.r[src]
        # A tiny radial step would make the slopes infinite; clamping keeps them finite
        # and of the right sign, so quantiles and comparisons stay meaningful.
        dr = np.where(np.abs(dr) < _DR_MIN, np.where(dr < 0, -_DR_MIN, _DR_MIN), dr)
        phi_slope = np.clip(dphi / dr, -_SLOPE_CLIP, _SLOPE_CLIP)
        z0 = np.clip(
            self.z[src] - self.r[src] * (self.z[dst] - self.z[src]) / dr,
            -_SLOPE_CLIP,
            _SLOPE_CLIP,
        )
        deta = self.eta[dst] - self.eta[src]
        return np.stack([dphi, phi_slope, z0, deta], axis=1)


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Angles into [-pi, pi)."""
    return (angle + np.pi) % (2 * np.pi) - np.pi


def doublet_features(hits: Hits, edge_index: np.ndarray) -> np.ndarray:
    """The :data:`FEATURES` of every edge: float64 of shape ``(E, 4)``.

    Edges are taken as given (``edge_index[0]`` is the inner hit); orient them first with
    :func:`~fivesigma.tasks.tracking.hits.orient_edges` for the builders' convention.
    """
    _check_hits(hits)
    edges = _check_edges(edge_index, len(hits))
    return _Geometry(hits).features(edges[0], edges[1])


# ----------------------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------------------
def _check_hits(hits: object) -> Hits:
    if not isinstance(hits, Hits):
        raise DataError(f"expected a Hits table, got {type(hits).__name__}; use Hits.from_event")
    return hits


def _check_edges(edge_index: object, n_hits: int) -> np.ndarray:
    edges = np.asarray(edge_index)
    if edges.size == 0:
        return np.zeros((2, 0), dtype=np.int64)
    if edges.ndim != 2 or edges.shape[0] != 2:
        raise DataError(f"edge_index must have shape (2, E), got {edges.shape}")
    if not np.issubdtype(edges.dtype, np.integer):
        raise DataError(f"edge_index must hold integer row indices, got dtype {edges.dtype}")
    edges = edges.astype(np.int64)
    if edges.min() < 0 or edges.max() >= n_hits:
        raise DataError(
            f"edge_index refers to rows outside [0, {n_hits}); give row indices into the hits"
        )
    return edges


def _training_hits(events: object) -> list[Hits]:
    if isinstance(events, Hits):
        events = [events]
    if not isinstance(events, Sequence) or isinstance(events, str | bytes):
        raise DataError(f"events must be a sequence of Hits, got {type(events).__name__}")
    out = []
    for k, ev in enumerate(events):
        if not isinstance(ev, Hits):
            raise DataError(f"events[{k}] is a {type(ev).__name__}, not Hits")
        if not ev.has_truth:
            raise DataError(f"event {ev.event_id}: fitting needs the truth; read events with truth")
        out.append(ev)
    if not out:
        raise DataError("no training events; fitting needs at least one event with truth")
    return out


def _true_edges(hits: Hits, pt_min: float) -> np.ndarray:
    """The oriented truth graph, restricted to particles with pT > pt_min."""
    edges = orient_edges(hits, hits.truth_edges())
    if pt_min > 0:
        pt = hits.particle_pt
        if pt is None or (edges.shape[1] and np.all(np.isnan(pt[edges[0]]))):
            raise DataError(
                f"event {hits.event_id}: pt_min={pt_min} needs particle pT, but the event "
                "has no particles table; read it with the particles or use pt_min=0"
            )
        edges = edges[:, pt[edges[0]] > pt_min]
    return edges


def _check_quantiles(quantiles: object) -> tuple[float, float]:
    try:
        lo, hi = (float(q) for q in quantiles)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ConfigError(
            f"quantiles must be two numbers (low, high) in [0, 1], got {quantiles!r}"
        ) from None
    if not 0.0 <= lo < hi <= 1.0:
        raise ConfigError(f"quantiles must satisfy 0 <= low < high <= 1, got {(lo, hi)}")
    return lo, hi


def _check_number(name: str, value: object, low: float = 0.0, integer: bool = False) -> Any:
    kind = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kind) or not np.isfinite(value):
        what = "an integer" if integer else "a number"
        raise ConfigError(f"{name} must be {what} >= {low}, got {value!r}")
    if value < low:
        raise ConfigError(f"{name} must be >= {low}, got {value!r}")
    return int(value) if integer else float(value)


def _check_cuts(cuts: object) -> tuple[str, ...]:
    if isinstance(cuts, str) or not isinstance(cuts, Sequence):
        raise ConfigError(f"cuts must be a list of names from {FEATURES}, got {cuts!r}")
    unknown = [c for c in cuts if c not in FEATURES]
    if unknown:
        raise ConfigError(f"unknown cut(s) {unknown}; choose from {FEATURES}")
    # dphi is the search window, so it is always applied.
    return tuple(f for f in FEATURES if f in cuts or f == "dphi")


def _ranges(values: np.ndarray, quantiles: tuple[float, float], margin: float) -> np.ndarray:
    """``(2, K)`` quantile range of each column, widened by ``margin`` of its width."""
    lo, hi = np.quantile(values, quantiles, axis=0)
    width = hi - lo
    return np.stack([lo - margin * width, hi + margin * width])


def _group_ranges(
    values: np.ndarray,
    group: np.ndarray,
    counts: np.ndarray,
    quantiles: tuple[float, float],
    margin: float,
    min_count: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the widened quantile range of ``values`` (rows of group ``group[i]``);
    groups with fewer than ``min_count`` rows take their min and max instead, since the
    tail quantiles of a handful of values are no estimate."""
    order = np.argsort(group, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    low = np.empty((len(counts), values.shape[1]))
    high = np.empty_like(low)
    for g in range(len(counts)):
        q = quantiles if counts[g] >= min_count else (0.0, 1.0)
        low[g], high[g] = _ranges(values[order[bounds[g] : bounds[g + 1]]], q, margin)
    return low, high


# ----------------------------------------------------------------------------------------
# Windowed candidate search
# ----------------------------------------------------------------------------------------
def _expand(start: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For query k with ``counts[k]`` matches from ``start[k]``: (query, position) pairs."""
    total = int(counts.sum())
    query = np.repeat(np.arange(len(counts)), counts)
    first = np.cumsum(counts) - counts
    pos = np.repeat(start - first, counts) + np.arange(total)
    return query, pos


def _chunks(counts: np.ndarray, max_candidates: int) -> Iterator[slice]:
    """Consecutive query ranges of at most ~max_candidates matches each (one big query may
    exceed it alone), so memory stays bounded whatever the occupancy."""
    cum = np.cumsum(counts)
    total = int(cum[-1]) if len(cum) else 0
    if total <= max_candidates:
        yield slice(0, len(counts))
        return
    cuts = np.searchsorted(cum, np.arange(max_candidates, total, max_candidates), side="right")
    bounds = np.unique(np.concatenate([[0], cuts, [len(counts)]]))
    for a, b in itertools.pairwise(bounds.tolist()):
        yield slice(int(a), int(b))


def _window_candidates(
    geo: _Geometry,
    inner: np.ndarray,
    outer: np.ndarray,
    dphi: tuple[float, float],
    deta: tuple[float, float] | None,
    max_candidates: int,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield chunks of (inner row, outer row) with dphi in ``dphi`` (exact, wrap-around) and
    deta in ``deta`` (a superset: whole eta bins of the window's width)."""
    lo, hi = max(dphi[0], -np.pi), min(dphi[1], np.pi)
    if hi < lo or len(inner) == 0 or len(outer) == 0:
        return
    two_pi = 2 * np.pi
    # Outer hits three times, at phi - 2pi, phi, phi + 2pi, so a window that crosses
    # +-pi is one contiguous range; shifted by 3pi so all keys are positive, in [0, 6pi].
    ophi = geo.phi[outer] + 3 * np.pi
    ext_phi = np.concatenate([ophi - two_pi, ophi, ophi + two_pi])
    ext_row = np.tile(outer, 3)
    stride = 8 * np.pi  # > 6pi: the eta bins' key ranges never overlap
    if deta is not None and np.isfinite(deta[1] - deta[0]) and deta[1] > deta[0]:
        width = deta[1] - deta[0]
        eta_min = float(geo.eta[outer].min())
        obin = np.floor((geo.eta[outer] - eta_min) / width)
        ext_key = np.tile(obin, 3) * stride + ext_phi
        first = np.floor((geo.eta[inner] + deta[0] - eta_min) / width)
        # The window [eta_i + lo, eta_i + hi) is one bin wide, so it touches two bins.
        qbins = np.concatenate([first, first + 1])
        qrows = np.concatenate([inner, inner])
    else:
        ext_key = ext_phi
        qbins = np.zeros(len(inner))
        qrows = inner
    order = np.argsort(ext_key, kind="stable")
    ext_key, ext_row = ext_key[order], ext_row[order]
    base = qbins * stride + geo.phi[qrows] + 3 * np.pi
    # Windows with hi - lo = 2pi would hold a hit twice at exactly the edges: half-open.
    start = np.searchsorted(ext_key, base + lo, side="left")
    stop = np.searchsorted(ext_key, base + min(hi, lo + two_pi), side="left")
    counts = stop - start
    for part in _chunks(counts, max_candidates):
        q, pos = _expand(start[part], counts[part])
        yield qrows[part][q], ext_row[pos]


def _sorted_edges(n_hits: int, found: list[np.ndarray]) -> np.ndarray:
    """The builders' candidate edges (already inner -> outer) as :func:`orient_edges` gives
    them: duplicates removed, sorted by source then target.

    Same result as ``orient_edges``, whose ``np.unique`` (hash based in numpy 2) costs
    several times more than this sort on millions of edges.
    """
    if not found:
        return np.zeros((2, 0), dtype=np.int64)
    edges = np.concatenate(found, axis=1)
    keys = np.sort(edges[0] * n_hits + edges[1])
    if keys.size:
        keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
    return np.stack([keys // n_hits, keys % n_hits]).astype(np.int64)


def _pass(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.all((values >= lo) & (values <= hi), axis=1)


def _group_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows grouped by key: (unique keys, CSR pointer, rows sorted by key)."""
    order = np.argsort(keys, kind="stable")
    uniq, counts = np.unique(keys[order], return_counts=True)
    ptr = np.concatenate([[0], np.cumsum(counts)])
    return uniq, ptr, order


# ----------------------------------------------------------------------------------------
# Persistence helpers
# ----------------------------------------------------------------------------------------
def _save(directory: str | Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    np.savez(path / "graph.npz", **arrays)
    (path / "graph.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path


def _read(directory: str | Path, kind: str | None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    path = Path(directory)
    meta_file, array_file = path / "graph.json", path / "graph.npz"
    if not meta_file.is_file() or not array_file.is_file():
        raise DataError(f"'{path}' is not a saved graph builder: it needs graph.json and graph.npz")
    try:
        meta = json.loads(meta_file.read_text())
        with np.load(array_file, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise DataError(f"'{path}': cannot read the saved graph builder ({err})") from None
    if not isinstance(meta, dict) or meta.get("format_version") != _FORMAT_VERSION:
        raise DataError(
            f"'{path}/graph.json' is not a graph builder of format version {_FORMAT_VERSION}"
        )
    if kind is not None and meta.get("kind") != kind:
        raise DataError(f"'{path}' holds a {meta.get('kind')!r} graph builder, not {kind!r}")
    return meta, arrays


def load_graph_builder(directory: str | Path) -> LayerPairGraph | ModuleMapGraph:
    """Load whichever graph builder :meth:`LayerPairGraph.save` or
    :meth:`ModuleMapGraph.save` wrote to ``directory``."""
    meta, _ = _read(directory, None)
    kinds = {"layer_pairs": LayerPairGraph, "module_map": ModuleMapGraph}
    cls = kinds.get(str(meta.get("kind")))
    if cls is None:
        raise DataError(
            f"'{directory}' holds an unknown graph builder kind {meta.get('kind')!r}; "
            f"known: {sorted(kinds)}"
        )
    return cls.load(directory)


# ----------------------------------------------------------------------------------------
# Layer pairs
# ----------------------------------------------------------------------------------------
class LayerPairGraph:
    """Edges between hits on learnt layer pairs that pass learnt doublet cuts.

    Parameters
    ----------
    quantiles : (float, float)
        Per layer pair, each cut is the range between these quantiles of the true edges'
        values (default 0.5% and 99.5%).  The distributions have long tails (secondaries,
        multiple scattering of slow particles), which the extreme quantiles follow: on
        simulated pile-up events 0.05%/99.95% doubles the graph for +0.5% edge
        efficiency.
    margin : float
        The ranges are widened on each side by this fraction of their width (default 0.3).
    min_pair_fraction : float
        A layer pair is kept when it holds more than this fraction of all true training
        edges (default 1e-4 = 0.01%); rarer pairs (a few odd hits) cost more candidates
        than they bring edges.
    min_edges : int
        A kept pair with fewer true training edges than this takes the min and max of
        its edges (widened by ``margin``) instead of quantiles.
    cuts : sequence of str
        Which of :data:`FEATURES` are applied (``dphi`` always is: it is the search
        window).  ``deta`` also narrows the search window.
    max_candidates : int
        Candidate edges evaluated at once (bounds the memory of dense events).
    max_edges : int
        :meth:`build` raises DataError rather than return more edges than this (50
        million, ~1 GB): a graph that large means cuts far too loose for the event, e.g.
        ``pt_min=0`` at pile-up 200, and would exhaust the memory of what follows.
    pt_min : float
        GeV; the default of :meth:`fit`'s ``pt_min`` (so a config can set it with the
        other settings).  On simulated mu = 10 events the graph holds ~40 edges per hit
        at 0, ~12 at 0.5 and ~6 at 1 GeV, for 98-99% edge efficiency above the cut.

    Attributes (after :meth:`fit`)
    ------------------------------
    pairs_ : int64 (P, 2)
        The kept (inner layer_key, outer layer_key) pairs, sorted.
    low_, high_ : float64 (P, len(FEATURES))
        The cut ranges per pair.
    n_true_ : int64 (P,)
        True training edges per pair.
    pt_min_ : float
        Particles at or below this pT (GeV) were left out of the fit.
    """

    kind = "layer_pairs"

    def __init__(
        self,
        quantiles: tuple[float, float] = (0.005, 0.995),
        margin: float = 0.3,
        min_pair_fraction: float = 1e-4,
        min_edges: int = 20,
        cuts: Sequence[str] = FEATURES,
        max_candidates: int = 2_000_000,
        max_edges: int = 50_000_000,
        pt_min: float = 0.0,
    ) -> None:
        self.quantiles = _check_quantiles(quantiles)
        self.pt_min = _check_number("pt_min", pt_min)
        self.margin = _check_number("margin", margin)
        self.min_pair_fraction = _check_number("min_pair_fraction", min_pair_fraction)
        self.min_edges = _check_number("min_edges", min_edges, 1, integer=True)
        self.cuts = _check_cuts(cuts)
        self.max_candidates = _check_number("max_candidates", max_candidates, 1, integer=True)
        self.max_edges = _check_number("max_edges", max_edges, 1, integer=True)
        self.pairs_: np.ndarray | None = None
        self.low_: np.ndarray | None = None
        self.high_: np.ndarray | None = None
        self.n_true_: np.ndarray | None = None
        self.pt_min_ = 0.0
        self.n_events_ = 0

    def to_dict(self) -> dict[str, Any]:
        """The settings (the constructor's arguments), JSON-serialisable."""
        return {
            "quantiles": list(self.quantiles),
            "margin": self.margin,
            "min_pair_fraction": self.min_pair_fraction,
            "min_edges": self.min_edges,
            "cuts": list(self.cuts),
            "max_candidates": self.max_candidates,
            "max_edges": self.max_edges,
            "pt_min": self.pt_min,
        }

    @property
    def fitted(self) -> bool:
        return self.pairs_ is not None

    def _require_fit(self) -> None:
        if not self.fitted:
            raise ConfigError(
                f"this {type(self).__name__} is not fitted; call fit(events) or load(directory)"
            )

    # ------------------------------------------------------------------------------------
    def fit(self, events: Sequence[Hits], pt_min: float | None = None) -> LayerPairGraph:
        """Learn the layer pairs and their cut ranges from the true edges of ``events``.

        Only edges of particles with pT > ``pt_min`` (GeV; default: the constructor's)
        are learnt from, so a positive ``pt_min`` gives a smaller graph aimed at those
        particles.  Raises DataError when the events hold no true edge.
        """
        hits_list = _training_hits(events)
        pt_min = _check_number("pt_min", self.pt_min if pt_min is None else pt_min)
        pair_keys, values = [], []
        for hits in hits_list:
            edges = _true_edges(hits, pt_min)
            lk = hits.layer_key
            pair_keys.append(np.stack([lk[edges[0]], lk[edges[1]]], axis=1))
            values.append(_Geometry(hits).features(edges[0], edges[1]))
        keys = np.concatenate(pair_keys)
        feats = np.concatenate(values)
        if len(keys) == 0:
            raise DataError(
                f"the {len(hits_list)} training event(s) hold no true edge of a particle with "
                f"pT > {pt_min} GeV; nothing to learn a graph from"
            )
        pairs, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
        inverse = inverse.ravel()
        keep = counts > self.min_pair_fraction * len(keys)
        low, high = _group_ranges(
            feats, inverse, counts, self.quantiles, self.margin, self.min_edges
        )
        self.pairs_ = pairs[keep].astype(np.int64)
        self.low_, self.high_ = low[keep], high[keep]
        self.n_true_ = counts[keep].astype(np.int64)
        self.pt_min_ = pt_min
        self.n_events_ = len(hits_list)
        return self

    # ------------------------------------------------------------------------------------
    def build(self, hits: Hits) -> np.ndarray:
        """Candidate edges of ``hits``: int64 ``(2, E)``, oriented inner -> outer.

        An event with no hits, or no hits on any learnt layer pair, gives ``(2, 0)``.
        """
        self._require_fit()
        _check_hits(hits)
        if len(hits) == 0:
            return np.zeros((2, 0), dtype=np.int64)
        geo = _Geometry(hits)
        layers, ptr, rows = _group_rows(hits.layer_key)
        where = {int(k): rows[ptr[j] : ptr[j + 1]] for j, k in enumerate(layers)}
        cols = [FEATURES.index(c) for c in self.cuts]
        use_deta = "deta" in self.cuts
        found: list[np.ndarray] = []
        n_found = 0
        for p, (kin, kout) in enumerate(self.pairs_.tolist()):  # type: ignore[union-attr]
            inner, outer = where.get(kin), where.get(kout)
            if inner is None or outer is None:
                continue
            lo, hi = self.low_[p], self.high_[p]  # type: ignore[index]
            deta = (lo[3], hi[3]) if use_deta else None
            for src, dst in _window_candidates(
                geo, inner, outer, (lo[0], hi[0]), deta, self.max_candidates
            ):
                # Same-layer pairs see both orders; keep only the inner -> outer one.
                ok = geo.rank[src] < geo.rank[dst]
                src, dst = src[ok], dst[ok]
                ok = _pass(geo.features(src, dst)[:, cols], lo[cols], hi[cols])
                found.append(np.stack([src[ok], dst[ok]]))
                n_found += int(ok.sum())
                if n_found > self.max_edges:
                    raise DataError(
                        f"event {hits.event_id}: the layer-pair graph exceeds max_edges="
                        f"{self.max_edges} edges ({len(hits)} hits); fit with a higher "
                        "pt_min or narrower quantiles, or raise max_edges"
                    )
        return _sorted_edges(len(hits), found)

    # ------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``graph.json`` (settings) and ``graph.npz`` (pairs, ranges) to ``directory``."""
        self._require_fit()
        meta = {
            "format_version": _FORMAT_VERSION,
            "kind": self.kind,
            "settings": self.to_dict(),
            "features": list(FEATURES),
            "pt_min": self.pt_min_,
            "n_events": self.n_events_,
        }
        arrays = {
            "pairs": self.pairs_,
            "low": self.low_,
            "high": self.high_,
            "n_true": self.n_true_,
        }
        return _save(directory, meta, arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, directory: str | Path) -> LayerPairGraph:
        """Read a builder written by :meth:`save`."""
        meta, arrays = _read(directory, cls.kind)
        try:
            graph = cls(**meta["settings"])
            graph.pairs_ = arrays["pairs"].astype(np.int64).reshape(-1, 2)
            graph.low_, graph.high_ = arrays["low"], arrays["high"]
            graph.n_true_ = arrays["n_true"].astype(np.int64)
            graph.pt_min_ = float(meta["pt_min"])
            graph.n_events_ = int(meta["n_events"])
        except (KeyError, TypeError) as err:
            raise DataError(f"'{directory}': incomplete saved graph builder ({err})") from None
        return graph


# ----------------------------------------------------------------------------------------
# Module map
# ----------------------------------------------------------------------------------------
def _module_key(hits: Hits) -> np.ndarray:
    """One integer per detector module (TrackML module ids are < 10^6)."""
    return hits.layer_key * 1_000_000 + np.asarray(hits.module_id, dtype=np.int64)


class ModuleMapGraph:
    """Edges between hits on module pairs seen in true training edges, within per-pair cuts.

    Each (inner module, outer module) pair that carries at least one true edge in the
    training events is kept, with the min and max of every :data:`FEATURES` quantity over
    its true edges.  A new event's hits on connected modules are all tried (modules hold a
    few hits each) and kept when inside the ranges.  **Incomplete with few events:** a
    module pair is learnt only once a training particle has crossed it, so the edge
    efficiency grows with the number of training events (ATLAS uses tens of thousands).

    Parameters
    ----------
    margin : float
        Each range is widened on each side by this fraction of its own width ...
    tolerance : float
        ... plus this fraction of the width of the same quantity over all true edges,
        so a pair seen once still gets a usable window.
    cuts : sequence of str
        Which of :data:`FEATURES` are applied (default all).
    max_candidates : int
        Candidate edges evaluated at once.
    pt_min : float
        GeV; the default of :meth:`fit`'s ``pt_min``.
    """

    kind = "module_map"

    def __init__(
        self,
        margin: float = 0.1,
        tolerance: float = 0.02,
        cuts: Sequence[str] = FEATURES,
        max_candidates: int = 2_000_000,
        pt_min: float = 0.0,
    ) -> None:
        self.pt_min = _check_number("pt_min", pt_min)
        self.margin = _check_number("margin", margin)
        self.tolerance = _check_number("tolerance", tolerance)
        self.cuts = _check_cuts(cuts)
        self.max_candidates = _check_number("max_candidates", max_candidates, 1, integer=True)
        self.pairs_: np.ndarray | None = None
        self.low_: np.ndarray | None = None
        self.high_: np.ndarray | None = None
        self.n_true_: np.ndarray | None = None
        self.pt_min_ = 0.0
        self.n_events_ = 0

    def to_dict(self) -> dict[str, Any]:
        """The settings (the constructor's arguments), JSON-serialisable."""
        return {
            "margin": self.margin,
            "tolerance": self.tolerance,
            "cuts": list(self.cuts),
            "max_candidates": self.max_candidates,
            "pt_min": self.pt_min,
        }

    @property
    def fitted(self) -> bool:
        return self.pairs_ is not None

    _require_fit = LayerPairGraph._require_fit

    def fit(self, events: Sequence[Hits], pt_min: float | None = None) -> ModuleMapGraph:
        """Learn the module pairs and their ranges from the true edges (pT > ``pt_min``,
        GeV; default: the constructor's)."""
        hits_list = _training_hits(events)
        pt_min = _check_number("pt_min", self.pt_min if pt_min is None else pt_min)
        pair_keys, values = [], []
        for hits in hits_list:
            edges = _true_edges(hits, pt_min)
            mk = _module_key(hits)
            pair_keys.append(np.stack([mk[edges[0]], mk[edges[1]]], axis=1))
            values.append(_Geometry(hits).features(edges[0], edges[1]))
        keys, feats = np.concatenate(pair_keys), np.concatenate(values)
        if len(keys) == 0:
            raise DataError(
                f"the {len(hits_list)} training event(s) hold no true edge of a particle with "
                f"pT > {pt_min} GeV; nothing to learn a module map from"
            )
        pairs, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
        inverse = inverse.ravel()
        k = len(FEATURES)
        low = np.full((len(pairs), k), np.inf)
        high = np.full((len(pairs), k), -np.inf)
        for j in range(k):
            np.minimum.at(low[:, j], inverse, feats[:, j])
            np.maximum.at(high[:, j], inverse, feats[:, j])
        q_lo, q_hi = np.quantile(feats, [0.01, 0.99], axis=0)
        pad = self.margin * (high - low) + self.tolerance * (q_hi - q_lo)
        self.pairs_ = pairs.astype(np.int64)
        self.low_, self.high_ = low - pad, high + pad
        self.n_true_ = counts.astype(np.int64)
        self.pt_min_ = pt_min
        self.n_events_ = len(hits_list)
        return self

    def build(self, hits: Hits) -> np.ndarray:
        """Candidate edges of ``hits``: int64 ``(2, E)``, oriented inner -> outer."""
        self._require_fit()
        _check_hits(hits)
        empty = np.zeros((2, 0), dtype=np.int64)
        if len(hits) == 0:
            return empty
        geo = _Geometry(hits)
        modules, ptr, rows = _group_rows(_module_key(hits))
        n_on = np.diff(ptr)
        pairs = self.pairs_
        # Module pairs of the map with hits on both modules in this event.
        m_in = np.searchsorted(modules, pairs[:, 0])  # type: ignore[index]
        m_out = np.searchsorted(modules, pairs[:, 1])  # type: ignore[index]
        m_in, m_out = np.minimum(m_in, len(modules) - 1), np.minimum(m_out, len(modules) - 1)
        live = (modules[m_in] == pairs[:, 0]) & (modules[m_out] == pairs[:, 1])  # type: ignore[index]
        live = np.flatnonzero(live)
        if live.size == 0:
            return empty
        # Every hit of the inner module with every hit of the outer one: per live pair
        # n_in * n_out candidates, enumerated without a loop over pairs.
        counts = n_on[m_in[live]] * n_on[m_out[live]]
        cols = [FEATURES.index(c) for c in self.cuts]
        found = []
        for part in _chunks(counts, self.max_candidates):
            p, k = _expand(np.zeros(part.stop - part.start, dtype=np.int64), counts[part])
            pair = live[part][p]
            n_out = n_on[m_out[pair]]
            src = rows[ptr[m_in[pair]] + k // n_out]
            dst = rows[ptr[m_out[pair]] + k % n_out]
            ok = geo.rank[src] < geo.rank[dst]
            src, dst, pair = src[ok], dst[ok], pair[ok]
            feats = geo.features(src, dst)[:, cols]
            ok = _pass(feats, self.low_[pair][:, cols], self.high_[pair][:, cols])  # type: ignore[index]
            found.append(np.stack([src[ok], dst[ok]]))
        return _sorted_edges(len(hits), found)

    def save(self, directory: str | Path) -> Path:
        """Write ``graph.json`` (settings) and ``graph.npz`` (module pairs, ranges)."""
        self._require_fit()
        meta = {
            "format_version": _FORMAT_VERSION,
            "kind": self.kind,
            "settings": self.to_dict(),
            "features": list(FEATURES),
            "pt_min": self.pt_min_,
            "n_events": self.n_events_,
        }
        arrays = {
            "pairs": self.pairs_,
            "low": self.low_,
            "high": self.high_,
            "n_true": self.n_true_,
        }
        return _save(directory, meta, arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, directory: str | Path) -> ModuleMapGraph:
        """Read a module map written by :meth:`save`."""
        meta, arrays = _read(directory, cls.kind)
        try:
            graph = cls(**meta["settings"])
            graph.pairs_ = arrays["pairs"].astype(np.int64).reshape(-1, 2)
            graph.low_, graph.high_ = arrays["low"], arrays["high"]
            graph.n_true_ = arrays["n_true"].astype(np.int64)
            graph.pt_min_ = float(meta["pt_min"])
            graph.n_events_ = int(meta["n_events"])
        except (KeyError, TypeError) as err:
            raise DataError(f"'{directory}': incomplete saved module map ({err})") from None
        return graph


# ----------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------
def graph_metrics(hits: Hits, edge_index: np.ndarray, pt_min: float = 0.0) -> dict[str, Any]:
    """How good a graph is, against the event's truth graph.

    Returns
    -------
    dict
        ``n_hits``, ``n_edges``, ``edges_per_hit``;
        ``n_true_edges``: truth-graph edges of particles with pT > ``pt_min`` (GeV);
        ``efficiency``: the fraction of those in the graph (either direction; NaN when
        there are none);
        ``purity``: the fraction of graph edges that are truth-graph edges of any particle
        (NaN for an empty graph);
        ``purity_pt``: the fraction that are truth-graph edges of particles above
        ``pt_min`` (equals ``purity`` at ``pt_min=0``).
    """
    _check_hits(hits)
    hits._require_truth()
    edges = _check_edges(edge_index, len(hits))
    pt_min = _check_number("pt_min", pt_min)
    n = len(hits)
    truth = _true_edges(hits, pt_min)
    is_true = hits.edge_truth(edges)
    if edges.shape[1] and truth.shape[1]:
        # A sorted array (duplicates harmless) is all searchsorted needs; np.unique costs more.
        keys = np.sort(np.minimum(edges[0], edges[1]) * n + np.maximum(edges[0], edges[1]))
        query = np.minimum(truth[0], truth[1]) * n + np.maximum(truth[0], truth[1])
        pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        found = int(np.count_nonzero(keys[pos] == query))
    else:
        found = 0
    if pt_min > 0 and edges.shape[1]:
        pid = hits.particle_id
        pt = hits.particle_pt
        true_pt = is_true & (pid[edges[0]] == pid[edges[1]]) & (pt[edges[0]] > pt_min)  # type: ignore[index]
    else:
        true_pt = is_true
    n_edges = int(edges.shape[1])
    n_true = int(truth.shape[1])
    return {
        "n_hits": n,
        "n_edges": n_edges,
        "edges_per_hit": n_edges / n if n else float("nan"),
        "n_true_edges": n_true,
        "efficiency": found / n_true if n_true else float("nan"),
        "purity": float(is_true.mean()) if n_edges else float("nan"),
        "purity_pt": float(true_pt.mean()) if n_edges else float("nan"),
    }
