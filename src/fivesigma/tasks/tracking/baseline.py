"""The classical baseline: a seeded combinatorial (cellular-automaton) track finder.

No neural network: the cuts-and-combinatorics approach of the track seeding of the LHC
experiments (the cellular automata of the CMS pixel tracking and of ALICE, the ATLAS seed
finder), in four vectorised steps:

1. **Doublets** (cells): a :class:`~fivesigma.tasks.tracking.graph.LayerPairGraph`
   learnt from the training events.
2. **Triplets**: two doublets sharing their middle hit, ``a -> b -> c``, kept when
   compatible (:data:`TRIPLET_FEATURES`): the change of phi slope and of polar angle
   between the two doublets, the transverse impact parameter of the circle through the
   three hits and its curvature, each inside the range of the *true* triplets of the
   training events for that triple of layers (quantiles with a margin; min and max for
   triples seen less than ``min_triplets`` times).  A triple of layers never seen in
   training has no triplets: more training events, more triples.
3. **Cellular automaton**: each doublet's state is the length of the longest chain of
   compatible doublets ending in it (a few vectorised passes, one per step in the
   chain).  Every chain end is followed back along the best compatible neighbour one
   state lower, giving one candidate per end.
4. **Ambiguity resolution**: each hit goes to the longest candidate holding it (then the
   best-fitting, then the lowest id); a candidate that wins all its hits is a track, the
   others lose the hits taken and try again while they keep ``min_hits`` hits.

>>> tracker = CombinatorialTracker(pt_min=0.5).fit(train_hits)  # doctest: +SKIP
>>> labels = tracker.reconstruct(hits)  # int64, -1 = no track  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.errors import ConfigError, DataError
from fivesigma.tasks.tracking.graph import (
    LayerPairGraph,
    _check_hits,
    _check_number,
    _check_quantiles,
    _chunks,
    _expand,
    _Geometry,
    _group_ranges,
    _training_hits,
    _true_edges,
    _wrap,
)
from fivesigma.tasks.tracking.hits import Hits

__all__ = ["MAX_CHAIN", "TRIPLET_FEATURES", "CombinatorialTracker", "triplet_features"]

#: Triplet compatibility quantities of ``a -> b -> c``: ``dphi_slope`` = phi slope (dphi/dr)
#: of ``b -> c`` minus that of ``a -> b`` (rad/mm); ``dtheta`` = polar angle in the (r, z)
#: plane of ``b -> c`` minus that of ``a -> b``; ``d0`` = distance of closest approach of
#: the circle through the three hits (x-y) to the beam line (mm); ``curvature`` = signed
#: 1/radius of that circle (1/mm; pT [GeV] = 0.3 B[T] / (1000 |curvature|)).
TRIPLET_FEATURES: tuple[str, ...] = ("dphi_slope", "dtheta", "d0", "curvature")

_FORMAT_VERSION = 1
_LAYER_BASE = 10_000  # layer keys (100 * volume + layer) are below it in TrackML
#: Three hits whose cross product is below this fraction of their squared spread are a
#: straight line: the circle centre would be numerically meaningless.
_STRAIGHT = 1e-9
#: Most passes of the cellular automaton: the longest chain of doublets it resolves.
MAX_CHAIN = 64
#: A triple whose dtheta range covers more polar-angle bins than this is looked up
#: without the bins (one query instead of many).
_MAX_BINS = 4


def _circle(
    ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray, cx: np.ndarray, cy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(d0, curvature) of the circle through three points of the x-y plane."""
    ux, uy, vx, vy = bx - ax, by - ay, cx - ax, cy - ay
    cross = ux * vy - uy * vx
    u2, v2 = ux * ux + uy * uy, vx * vx + vy * vy
    w2 = (cx - bx) ** 2 + (cy - by) ** 2
    denom = np.sqrt(u2 * v2 * w2)
    with np.errstate(divide="ignore", invalid="ignore"):
        curvature = np.where(denom > 0, 2 * cross / denom, 0.0)
        straight = np.abs(cross) < _STRAIGHT * np.maximum(u2 + v2, 1.0)
        d = 2 * np.where(straight, 1.0, cross)
        # Circle centre relative to a (perpendicular bisectors), then its distance to the
        # origin minus the radius; a (near) straight line uses the line's distance.
        ox = ax + (vy * u2 - uy * v2) / d
        oy = ay + (ux * v2 - vx * u2) / d
        radius = np.sqrt(((vy * u2 - uy * v2) / d) ** 2 + ((ux * v2 - vx * u2) / d) ** 2)
        d0_circle = np.abs(np.hypot(ox, oy) - radius)
        d0_line = np.abs(vx * ay - vy * ax) / np.sqrt(np.maximum(v2, 1e-300))
    return np.where(straight, d0_line, d0_circle), curvature


def _features(
    geo: _Geometry, x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
) -> np.ndarray:
    """``(T, 4)`` :data:`TRIPLET_FEATURES` of the triplets ``a -> b -> c`` (row arrays)."""
    ab, bc = geo.features(a, b), geo.features(b, c)
    theta_ab = np.arctan2(geo.r[b] - geo.r[a], geo.z[b] - geo.z[a])
    theta_bc = np.arctan2(geo.r[c] - geo.r[b], geo.z[c] - geo.z[b])
    d0, curvature = _circle(x[a], y[a], x[b], y[b], x[c], y[c])
    return np.stack([bc[:, 1] - ab[:, 1], _wrap(theta_bc - theta_ab), d0, curvature], axis=1)


def triplet_features(hits: Hits, triplets: np.ndarray) -> np.ndarray:
    """The :data:`TRIPLET_FEATURES` of ``triplets`` (int ``(3, T)`` rows ``a, b, c``)."""
    _check_hits(hits)
    t = np.asarray(triplets)
    if t.size == 0:
        return np.zeros((0, len(TRIPLET_FEATURES)))
    if t.ndim != 2 or t.shape[0] != 3 or not np.issubdtype(t.dtype, np.integer):
        raise DataError(f"triplets must be integer rows of shape (3, T), got {t.shape}")
    if t.min() < 0 or t.max() >= len(hits):
        raise DataError(f"triplets refer to rows outside [0, {len(hits)})")
    x, y = np.asarray(hits.x, np.float64), np.asarray(hits.y, np.float64)
    return _features(_Geometry(hits), x, y, *t.astype(np.int64))


def _doublet_pairs(n: int, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (first, second) edge index pairs with ``edges[1, first] == edges[0, second]``;
    ``edges`` must be sorted by source (as the graph builders return them)."""
    ptr = np.searchsorted(edges[0], np.arange(n + 1))
    outdeg = np.diff(ptr)
    counts = outdeg[edges[1]]
    first, pos = _expand(ptr[edges[1]], counts)
    return first, pos


def _search(keys: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``searchsorted`` of the ranges ``[low, high)`` in ``keys``, with the queries taken
    in increasing order: on millions of random queries that is several times faster (the
    binary searches then walk memory forward)."""
    order = np.argsort(low, kind="stable")
    start = np.empty(len(low), dtype=np.int64)
    stop = np.empty(len(low), dtype=np.int64)
    start[order] = np.searchsorted(keys, low[order], side="left")
    stop[order] = np.searchsorted(keys, high[order], side="left")
    return start, stop


def _layer_triples(lk: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return (lk[a] * _LAYER_BASE + lk[b]) * _LAYER_BASE + lk[c]


class CombinatorialTracker:
    """Seeded combinatorial track finder (doublets -> triplets -> CA chains -> tracks).

    Parameters
    ----------
    pt_min : float
        GeV; the doublet graph and the triplet cuts are learnt from particles above it
        (so it is roughly the lowest pT found).  Default 0.5: on simulated mu = 10 ttbar
        events (held out from training) it gave the best TrackML score, 0.66-0.68,
        against 0.51-0.53 at 1 GeV, 0.56 at 0.3 and 0.23 at 0, where the cuts that keep
        the slowest particles let the combinatorics swamp the automaton (and take
        20-40 s per event).
    quantiles : (float, float)
        Triplet cut ranges are these quantiles of the true triplets' values (default
        0.5%, 99.5%: the tails are long, from secondaries and scattering).
    margin : float
        ... widened on each side by this fraction of their width (default 0.3).
    min_triplets : int
        Layer triples with fewer true training triplets take their min and max.
    min_hits : int
        Shortest track kept.
    graph : dict or None
        Settings of the :class:`~fivesigma.tasks.tracking.graph.LayerPairGraph` that
        makes the doublets.
    max_triplets : int
        Triplet candidates evaluated at once (bounds memory).
    """

    kind = "combinatorial"

    def __init__(
        self,
        pt_min: float = 0.5,
        quantiles: tuple[float, float] = (0.005, 0.995),
        margin: float = 0.3,
        min_triplets: int = 50,
        min_hits: int = 3,
        graph: dict[str, Any] | None = None,
        max_triplets: int = 4_000_000,
    ) -> None:
        self.pt_min = _check_number("pt_min", pt_min)
        self.quantiles = _check_quantiles(quantiles)
        self.margin = _check_number("margin", margin)
        self.min_triplets = _check_number("min_triplets", min_triplets, 1, integer=True)
        self.min_hits = _check_number("min_hits", min_hits, 1, integer=True)
        self.max_triplets = _check_number("max_triplets", max_triplets, 1, integer=True)
        if graph is not None and not isinstance(graph, dict):
            raise ConfigError(
                f"graph must be a dict of LayerPairGraph settings, got {type(graph).__name__}"
            )
        # The tracker's pt_min is the graph's: one cut for doublets and triplets.
        self.graph = {**dict(graph or {}), "pt_min": self.pt_min}
        self.graph_ = LayerPairGraph(**self.graph)  # validates the settings now
        self.triples_: np.ndarray | None = None
        self.low_: np.ndarray | None = None
        self.high_: np.ndarray | None = None
        self.n_true_: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        """The settings (the constructor's arguments), JSON-serialisable."""
        return {
            "pt_min": self.pt_min,
            "quantiles": list(self.quantiles),
            "margin": self.margin,
            "min_triplets": self.min_triplets,
            "min_hits": self.min_hits,
            "graph": self.graph_.to_dict(),
            "max_triplets": self.max_triplets,
        }

    @property
    def fitted(self) -> bool:
        return self.triples_ is not None

    def _require_fit(self) -> None:
        if not self.fitted:
            raise ConfigError(
                "this CombinatorialTracker is not fitted; call fit(events) or load(directory)"
            )

    # ------------------------------------------------------------------------------------
    def fit(self, events: Sequence[Hits]) -> CombinatorialTracker:
        """Learn the doublet graph and the triplet cuts from the truth of ``events``."""
        hits_list = _training_hits(events)
        self.graph_.fit(hits_list, pt_min=self.pt_min)
        keys, values = [], []
        for hits in hits_list:
            edges = _true_edges(hits, self.pt_min)
            first, second = _doublet_pairs(len(hits), edges)
            a, b, c = edges[0][first], edges[1][first], edges[1][second]
            x, y = np.asarray(hits.x, np.float64), np.asarray(hits.y, np.float64)
            values.append(_features(_Geometry(hits), x, y, a, b, c))
            keys.append(_layer_triples(hits.layer_key, a, b, c))
        key, feats = np.concatenate(keys), np.concatenate(values)
        if len(key) == 0:
            raise DataError(
                f"the {len(hits_list)} training event(s) hold no true triplet (three hits of "
                f"a particle with pT > {self.pt_min} GeV); nothing to learn cuts from"
            )
        triples, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        self.low_, self.high_ = _group_ranges(
            feats, inverse.ravel(), counts, self.quantiles, self.margin, self.min_triplets
        )
        self.triples_ = triples.astype(np.int64)
        self.n_true_ = counts.astype(np.int64)
        return self

    # ------------------------------------------------------------------------------------
    def _cut_ranges(self, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per triplet, the (low, high) ranges of its layer triple; an empty range
        (low = inf, high = -inf) for triples never seen in training."""
        shape = (len(key), len(TRIPLET_FEATURES))
        low, high = np.full(shape, np.inf), np.full(shape, -np.inf)
        if len(self.triples_):  # type: ignore[arg-type]
            pos = np.minimum(np.searchsorted(self.triples_, key), len(self.triples_) - 1)  # type: ignore[arg-type]
            known = self.triples_[pos] == key  # type: ignore[index]
            low[known], high[known] = self.low_[pos[known]], self.high_[pos[known]]  # type: ignore[index]
        return low, high

    def _accepted(
        self, hits: Hits, geo: _Geometry, edges: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(left doublet, right doublet, quality) of the triplets passing the cuts.

        Joining every doublet with every doublet leaving its outer hit is ~E x out-degree
        candidates (billions at pile-up 200), so the search is windowed: the doublets
        leaving each hit are sorted by (layer of their outer hit, polar-angle bin, phi
        slope), and each incoming doublet, for each learnt layer triple it can start,
        looks up in the angle bins that triple's ``dtheta`` range covers only the
        doublets within its ``dphi_slope`` range (one ``searchsorted`` per bin, on an
        exact integer key).  The circle is fitted to the survivors only.
        """
        empty = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        triples = self.triples_
        if len(triples) == 0 or edges.shape[1] == 0:  # type: ignore[arg-type]
            return empty
        x, y = np.asarray(hits.x, np.float64), np.asarray(hits.y, np.float64)
        src, dst = edges
        n_edges = len(src)
        slope = geo.features(src, dst)[:, 1]
        theta = np.arctan2(geo.r[dst] - geo.r[src], geo.z[dst] - geo.z[src])
        layers, layer_of = np.unique(hits.layer_key, return_inverse=True)
        layer_of = layer_of.ravel()
        # Learnt triples present in this event, and for each layer pair the run of
        # triples starting with it (triples are sorted, so a prefix is contiguous).
        t_out = np.searchsorted(layers, triples % _LAYER_BASE)  # type: ignore[operator]
        t_out = np.minimum(t_out, len(layers) - 1)
        present = layers[t_out] == triples % _LAYER_BASE  # type: ignore[operator]
        prefix = triples // _LAYER_BASE  # type: ignore[operator]
        pair = layers[layer_of[src]] * _LAYER_BASE + layers[layer_of[dst]]
        t_first = np.searchsorted(prefix, pair, side="left")
        t_count = np.searchsorted(prefix, pair, side="right") - t_first
        # Angle bins: a whole number around the circle (so wrapping is exact), about as
        # wide as the typical dtheta window, so a window covers two or three bins.
        width = float(np.median(self.high_[:, 1] - self.low_[:, 1]))  # type: ignore[index]
        n_bins = int(min(max(np.ceil(2 * np.pi / max(width, 1e-6)), 1), 4096))
        n_groups = n_edges * len(layers) * n_bins
        # The integer key is group * n_edges + slope rank: keep it inside int64.
        while n_bins > 1 and n_groups * max(n_edges, 1) > 2**62:
            n_bins //= 2
            n_groups = n_edges * len(layers) * n_bins
        bin_width = 2 * np.pi / n_bins
        angle_bin = np.floor((theta + np.pi) / bin_width).astype(np.int64) % n_bins
        by_slope = np.argsort(slope, kind="stable")
        sorted_slope = slope[by_slope]
        rank = np.empty(n_edges, dtype=np.int64)
        rank[by_slope] = np.arange(n_edges)
        # Two sorted indexes of the outgoing doublets: by (source, outer layer, angle
        # bin, slope) for triples with a narrow dtheta range, and by (source, outer
        # layer, slope) for the few wide ones, which would cover too many bins.
        plain = src * len(layers) + layer_of[dst]
        binned_key = (plain * n_bins + angle_bin) * n_edges + rank
        out_bin = np.argsort(binned_key, kind="stable")
        binned_key = binned_key[out_bin]
        plain_key = plain * n_edges + rank
        out_plain = np.argsort(plain_key, kind="stable")
        plain_key = plain_key[out_plain]
        out = np.concatenate([out_bin, out_plain])
        # The two sorted indexes (binned keys first, then the plain ones, each row of
        # ``out`` the doublet at that position) and what the queries need to use them.
        tables = (binned_key, plain_key, out, n_bins, bin_width, t_out, len(layers))
        lefts, rights, quals = [], [], []
        # Incoming doublets in blocks, so the queries (a few per doublet) stay bounded.
        step = max(self.max_triplets // 8, 1)
        for block in range(0, n_edges, step):
            rows = np.arange(block, min(block + step, n_edges))
            q_edge, q_triple = _expand(t_first[rows], t_count[rows])
            q_edge = rows[q_edge]
            keep = present[q_triple]
            found = self._lookup(
                q_edge[keep], q_triple[keep], edges, slope, theta, sorted_slope, tables, x, y
            )
            lefts.extend(found[0])
            rights.extend(found[1])
            quals.extend(found[2])
        if not lefts:
            return empty
        return np.concatenate(lefts), np.concatenate(rights), np.concatenate(quals)

    def _lookup(
        self,
        q_edge: np.ndarray,
        q_triple: np.ndarray,
        edges: np.ndarray,
        slope: np.ndarray,
        theta: np.ndarray,
        sorted_slope: np.ndarray,
        tables: tuple[Any, ...],
        x: np.ndarray,
        y: np.ndarray,
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """The accepted triplets of the queries (incoming doublet, layer triple)."""
        binned_key, plain_key, out, n_bins, bin_width, t_out, n_layers = tables
        src, dst = edges
        n_edges = len(src)
        lo, hi = self.low_[q_triple], self.high_[q_triple]  # type: ignore[index]
        s_lo = np.searchsorted(sorted_slope, slope[q_edge] + lo[:, 0], side="left")
        s_hi = np.searchsorted(sorted_slope, slope[q_edge] + hi[:, 0], side="right")
        q_plain = dst[q_edge] * n_layers + t_out[q_triple]
        first = np.floor((theta[q_edge] + lo[:, 1] + np.pi) / bin_width).astype(np.int64)
        last = np.floor((theta[q_edge] + hi[:, 1] + np.pi) / bin_width).astype(np.int64)
        n_q = np.clip(last - first + 1, 0, n_bins)
        wide = n_q > _MAX_BINS
        # Narrow dtheta ranges: one query per angle bin they cover ...
        narrow = np.flatnonzero(~wide)
        q, offset = _expand(np.zeros(narrow.size, dtype=np.int64), n_q[narrow])
        q = narrow[q]
        q_group = q_plain[q] * n_bins + (first[q] + offset) % n_bins
        begin, end = _search(binned_key, q_group * n_edges + s_lo[q], q_group * n_edges + s_hi[q])
        start, stop, rows = [begin], [end], [q]
        # ... wide ones once, in the index without angle bins (placed after the first).
        w = np.flatnonzero(wide)
        begin, end = _search(
            plain_key, q_plain[w] * n_edges + s_lo[w], q_plain[w] * n_edges + s_hi[w]
        )
        start.append(begin + n_edges)
        stop.append(end + n_edges)
        rows.append(w)
        start, stop, q = np.concatenate(start), np.concatenate(stop), np.concatenate(rows)
        counts = np.maximum(stop - start, 0)
        q_edge, q_triple = q_edge[q], q_triple[q]
        lefts, rights, quals = [], [], []
        for part in _chunks(counts, self.max_triplets):
            j, pos = _expand(start[part], counts[part])
            left, right = q_edge[part][j], out[pos]
            t = q_triple[part][j]
            low, high = self.low_[t], self.high_[t]  # type: ignore[index]
            dtheta = _wrap(theta[right] - theta[left])
            ok = (dtheta >= low[:, 1]) & (dtheta <= high[:, 1])
            left, right, dtheta, low, high = left[ok], right[ok], dtheta[ok], low[ok], high[ok]
            a, b, c = src[left], dst[left], dst[right]
            d0, curvature = _circle(x[a], y[a], x[b], y[b], x[c], y[c])
            feats = np.stack([slope[right] - slope[left], dtheta, d0, curvature], axis=1)
            ok = np.all((feats >= low) & (feats <= high), axis=1)
            mid, half = (high[ok] + low[ok]) / 2, np.maximum((high[ok] - low[ok]) / 2, 1e-300)
            lefts.append(left[ok])
            rights.append(right[ok])
            quals.append(np.sum(((feats[ok] - mid) / half) ** 2, axis=1))
        return lefts, rights, quals

    def reconstruct(self, hits: Hits, edges: np.ndarray | None = None) -> np.ndarray:
        """Track labels of ``hits``: int64 ``(n_hits,)``, ``-1`` = no track.

        ``edges`` (doublets sorted by source, inner -> outer) defaults to the fitted
        layer-pair graph of ``hits``.
        """
        self._require_fit()
        _check_hits(hits)
        n = len(hits)
        labels = np.full(n, -1, dtype=np.int64)
        if n == 0:
            return labels
        if edges is None:
            edges = self.graph_.build(hits)
        else:
            edges = np.asarray(edges, dtype=np.int64).reshape(2, -1)
            if edges.size and (edges.min() < 0 or edges.max() >= n):
                raise DataError(f"edges refer to rows outside [0, {n}); give row indices")
            if np.any(np.diff(edges[0]) < 0):  # the triplet search needs them by source
                edges = edges[:, np.lexsort((edges[1], edges[0]))]
        if edges.shape[1] == 0:
            return labels
        left, right, qual = self._accepted(hits, _Geometry(hits), edges)
        n_cells = edges.shape[1]
        state = _ca_states(n_cells, left, right)
        best_left, best_q = _best_left(n_cells, left, right, qual, state)
        cand, cand_hits, cand_q = _candidates(edges, state, best_left, best_q, self.min_hits)
        _resolve(labels, cand, cand_hits, cand_q, self.min_hits)
        return labels

    # ------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``tracker.json``, ``tracker.npz`` and the doublet graph (``graph/``)."""
        self._require_fit()
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.graph_.save(path / "graph")
        np.savez(
            path / "tracker.npz",
            triples=self.triples_,
            low=self.low_,
            high=self.high_,
            n_true=self.n_true_,
        )
        meta = {
            "format_version": _FORMAT_VERSION,
            "kind": self.kind,
            "settings": self.to_dict(),
            "features": list(TRIPLET_FEATURES),
        }
        (path / "tracker.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> CombinatorialTracker:
        """Read a tracker written by :meth:`save`."""
        path = Path(directory)
        meta_file, array_file = path / "tracker.json", path / "tracker.npz"
        if not meta_file.is_file() or not array_file.is_file():
            raise DataError(
                f"'{path}' is not a saved CombinatorialTracker: it needs tracker.json, "
                "tracker.npz and graph/"
            )
        try:
            meta = json.loads(meta_file.read_text())
            with np.load(array_file, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            if meta.get("format_version") != _FORMAT_VERSION or meta.get("kind") != cls.kind:
                raise DataError(
                    f"'{meta_file}' is not a CombinatorialTracker of format version "
                    f"{_FORMAT_VERSION}"
                )
            tracker = cls(**meta["settings"])
            tracker.graph_ = LayerPairGraph.load(path / "graph")
            tracker.triples_ = arrays["triples"].astype(np.int64)
            tracker.low_, tracker.high_ = arrays["low"], arrays["high"]
            tracker.n_true_ = arrays["n_true"].astype(np.int64)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise DataError(f"'{path}': cannot read the saved tracker ({err})") from None
        return tracker


# ----------------------------------------------------------------------------------------
# Cellular automaton and ambiguity resolution
# ----------------------------------------------------------------------------------------
def _ca_states(n_cells: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """State of every cell: 1 + the longest chain of compatible cells ending in it.

    Cells point inner -> outer, so the chains are acyclic; one vectorised pass per chain
    step (a reduceat over triplets grouped by right cell) until nothing changes, or after
    :data:`MAX_CHAIN` passes: a loose graph can chain hits along one layer hundreds of
    times, and no particle crosses that many layers.  Cells beyond it keep the state
    reached, and their chains are followed back only as far as the states agree.
    """
    state = np.ones(n_cells, dtype=np.int64)
    if left.size == 0:
        return state
    order = np.argsort(right, kind="stable")
    left, right = left[order], right[order]
    starts = np.flatnonzero(np.concatenate([[True], right[1:] != right[:-1]]))
    targets = right[starts]
    for _ in range(min(n_cells, MAX_CHAIN)):
        best = np.maximum.reduceat(state[left], starts) + 1
        new = state.copy()
        new[targets] = np.maximum(1, best)
        if np.array_equal(new, state):
            break
        state = new
    return state


def _best_left(
    n_cells: int, left: np.ndarray, right: np.ndarray, qual: np.ndarray, state: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per cell, the compatible left neighbour one state lower with the best quality
    (-1 for chain starts), and that triplet's quality."""
    best = np.full(n_cells, -1, dtype=np.int64)
    best_q = np.zeros(n_cells)
    ok = state[left] == state[right] - 1
    left, right, qual = left[ok], right[ok], qual[ok]
    if left.size:
        order = np.lexsort((left, qual, right))
        right, left, qual = right[order], left[order], qual[order]
        first = np.concatenate([[True], right[1:] != right[:-1]])
        best[right[first]] = left[first]
        best_q[right[first]] = qual[first]
    return best, best_q


def _candidates(
    edges: np.ndarray,
    state: np.ndarray,
    best_left: np.ndarray,
    best_q: np.ndarray,
    min_hits: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One candidate per chain end (a cell nobody chose as its best left neighbour),
    followed back to its start: flat (candidate, hit) arrays and the mean quality."""
    chosen = np.zeros(len(state), dtype=bool)
    chosen[best_left[best_left >= 0]] = True
    ends = np.flatnonzero(~chosen & (state + 1 >= min_hits))
    cand_ids, cand_hits = [], []
    total_q = np.zeros(len(ends))
    cur = ends
    ids = np.arange(len(ends))
    while cur.size:
        cand_ids.append(ids)
        cand_hits.append(edges[1][cur])
        total_q[ids] += best_q[cur]
        prev = best_left[cur]
        root = prev < 0
        # A chain's first cell also contributes its inner hit.
        cand_ids.append(ids[root])
        cand_hits.append(edges[0][cur[root]])
        cur, ids = prev[~root], ids[~root]
    if not cand_ids:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    mean_q = total_q / np.maximum(state[ends] - 1, 1)
    return np.concatenate(cand_ids), np.concatenate(cand_hits), mean_q


def _resolve(
    labels: np.ndarray, cand: np.ndarray, hit: np.ndarray, quality: np.ndarray, min_hits: int
) -> None:
    """Greedy sharing of hits between candidates, in rounds, writing ``labels`` in place.

    In each round every hit is claimed by the longest live candidate holding it (then the
    lowest mean triplet quality, then the lowest id); candidates that win all their hits
    become tracks, the hits they take are removed from the others, and candidates left
    with fewer than ``min_hits`` hits are dropped.  The best remaining candidate always
    wins, so every round makes progress.
    """
    next_label = 0
    n_cand = len(quality)
    while cand.size:
        size = np.bincount(cand, minlength=n_cand)
        live = size[cand] >= min_hits
        cand, hit = cand[live], hit[live]
        if cand.size == 0:
            break
        order = np.lexsort((cand, quality[cand], -size[cand], hit))
        c_sorted, h_sorted = cand[order], hit[order]
        first = np.concatenate([[True], h_sorted[1:] != h_sorted[:-1]])
        wins = np.bincount(c_sorted[first], minlength=n_cand)
        won = (wins == size) & (size >= min_hits)
        accepted = np.flatnonzero(won)
        new_label = np.full(n_cand, -1, dtype=np.int64)
        new_label[accepted] = next_label + np.arange(accepted.size)
        next_label += accepted.size
        mine = won[cand]
        labels[hit[mine]] = new_label[cand[mine]]
        taken = labels[hit] >= 0
        cand, hit = cand[~taken], hit[~taken]
