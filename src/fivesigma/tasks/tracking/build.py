"""Track building: tracks (hit labels) from a graph whose edges carry scores.

Stage 3 of the tracking pipeline, after the edge classifier.  Both builders take the
number of hits, the edge list (int64 ``(2, E)``, directed inner -> outer as
:func:`~fivesigma.tasks.tracking.hits.orient_edges` gives it) and one score per edge, and
return int64 track labels, one per hit, ``-1`` for a hit on no track; labels are
``0 .. n_tracks - 1``.

- :func:`connected_components`: the Exa.TrkX baseline (Ju et al., arXiv:2103.06995): keep
  the edges scoring above a threshold; every connected component is a track.
- :func:`walk`: the "CC & walk" track building of acorn (the ATLAS GNN4ITk framework,
  itself after the Exa.TrkX "walkthrough"): components that are simple paths are tracks
  directly; branching components are walked from their innermost hits along the best
  edges, so two particles joined by a wrong edge become two tracks instead of one merged
  track.

Scipy is needed (``pip install 'fivesigma[stats]'``).

>>> labels = walk(len(hits), edges, scores, threshold_low=0.5, threshold_high=0.8)  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from fivesigma.core import extras
from fivesigma.errors import ConfigError, DataError

__all__ = ["connected_components", "walk"]

#: The walk explores at most this many alternative roads from one start hit (each edge
#: above ``threshold_high`` beside the best doubles them), so a dense knot of high scores
#: cannot make it exponential.
MAX_ROADS = 64


# ----------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------
def _inputs(
    n_hits: object, edge_index: object, scores: object
) -> tuple[int, np.ndarray, np.ndarray]:
    if isinstance(n_hits, bool) or not isinstance(n_hits, int | np.integer) or n_hits < 0:
        raise DataError(f"n_hits must be a non-negative integer, got {n_hits!r}")
    n = int(n_hits)
    edges = np.asarray(edge_index)
    if edges.size == 0:
        edges = np.zeros((2, 0), dtype=np.int64)
    if edges.ndim != 2 or edges.shape[0] != 2:
        raise DataError(f"edge_index must have shape (2, E), got {edges.shape}")
    if edges.size and not np.issubdtype(edges.dtype, np.integer):
        raise DataError(f"edge_index must hold integer row indices, got dtype {edges.dtype}")
    edges = edges.astype(np.int64)
    if edges.size and (edges.min() < 0 or edges.max() >= n):
        raise DataError(f"edge_index refers to hits outside [0, {n}); give row indices")
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (edges.shape[1],):
        raise DataError(
            f"scores has shape {s.shape} but there are {edges.shape[1]} edges; give one score "
            "per edge"
        )
    if np.isnan(s).any():
        raise DataError("scores hold NaN; give a finite score per edge")
    return n, edges, s


def _threshold(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if not np.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return float(value)


def _min_hits(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"min_hits must be a positive integer, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------------------
# Connected components
# ----------------------------------------------------------------------------------------
def _components(n: int, edges: np.ndarray) -> np.ndarray:
    """Weakly connected component of every hit (isolated hits get their own)."""
    sparse = extras.scipy("sparse")
    csgraph = extras.scipy("sparse.csgraph")
    adj = sparse.coo_matrix(
        (np.ones(edges.shape[1], dtype=np.int8), (edges[0], edges[1])), shape=(n, n)
    ).tocsr()
    _, comp = csgraph.connected_components(adj, directed=False)
    return comp.astype(np.int64)


def _relabel(labels: np.ndarray, min_hits: int) -> np.ndarray:
    """Labels of groups with fewer than ``min_hits`` hits set to -1, the rest renumbered
    0, 1, ... in order of each track's first hit."""
    out = np.full(len(labels), -1, dtype=np.int64)
    assigned = labels >= 0
    if not assigned.any():
        return out
    uniq, first, inverse, counts = np.unique(
        labels[assigned], return_index=True, return_inverse=True, return_counts=True
    )
    keep = counts >= min_hits
    rank = np.full(len(uniq), -1, dtype=np.int64)
    kept = np.flatnonzero(keep)
    rank[kept[np.argsort(first[kept], kind="stable")]] = np.arange(kept.size)
    out[assigned] = rank[inverse.ravel()]
    return out


def connected_components(
    n_hits: int,
    edge_index: np.ndarray,
    scores: np.ndarray,
    threshold: float = 0.5,
    min_hits: int = 3,
) -> np.ndarray:
    """Tracks = connected components of the edges scoring above ``threshold``.

    Parameters
    ----------
    n_hits : int
        Number of hits (rows) in the event.
    edge_index : int64 (2, E)
        Edges as row indices (direction is ignored).
    scores : (E,)
        Edge scores; an edge is kept when its score is strictly above ``threshold``.
    threshold : float
    min_hits : int
        Components with fewer hits (isolated hits included) get label -1.

    Returns
    -------
    int64 (n_hits,)
        Track labels ``0 .. n_tracks - 1`` in order of each track's first hit; -1 = none.

    >>> connected_components(5, [[0, 1, 3], [1, 2, 4]], [0.9, 0.8, 0.9]).tolist()
    [0, 0, 0, -1, -1]
    """
    n, edges, s = _inputs(n_hits, edge_index, scores)
    threshold = _threshold("threshold", threshold)
    min_hits = _min_hits(min_hits)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    return _relabel(_components(n, edges[:, s > threshold]), min_hits)


# ----------------------------------------------------------------------------------------
# CC & walk
# ----------------------------------------------------------------------------------------
def _simple_paths(n: int, edges: np.ndarray, comp: np.ndarray) -> np.ndarray:
    """Boolean per component: every hit has at most one edge in and one out, and the
    component has no cycle (edges = hits - 1), so it is a chain."""
    n_comp = int(comp.max()) + 1 if n else 0
    indeg = np.bincount(edges[1], minlength=n)
    outdeg = np.bincount(edges[0], minlength=n)
    branching = np.bincount(comp, weights=(indeg > 1) | (outdeg > 1), minlength=n_comp) > 0
    size = np.bincount(comp, minlength=n_comp)
    n_edges = np.bincount(comp[edges[0]], minlength=n_comp)
    return ~branching & (n_edges == size - 1)


def _levels(n: int, edges: np.ndarray) -> np.ndarray:
    """Depth of every hit: the most edges on a path from a hit with no incoming edge.

    Sorting by it is a topological order, found with a few vectorised passes (one per
    level, ~ the hits on the longest track) instead of a Python loop over hits.  A cycle
    (which an inner -> outer graph never has) would never settle: after ``n`` passes the
    depths are used as they are, and the walk, which never revisits a hit, still ends.
    """
    level = np.zeros(n, dtype=np.int64)
    for _ in range(max(n, 1)):
        new = level.copy()
        np.maximum.at(new, edges[1], level[edges[0]] + 1)
        if np.array_equal(new, level):
            break
        level = new
    return level


def _best_road(
    start: int,
    ptr: list[int],
    dst: list[int],
    score: list[float],
    used: bytearray,
    threshold_high: float | None,
) -> list[int]:
    """The longest road from ``start`` (ties: the higher summed score).

    At each hit the walk follows the highest-scoring outgoing edge to an unused hit; when
    other such edges also score above ``threshold_high`` they are explored too (up to
    :data:`MAX_ROADS` roads), and the longest road wins.  Successors in ``dst`` are
    sorted best score first.
    """
    best: list[int] = [start]
    best_key = (1, 0.0)
    # Depth-first over (road so far, summed score).
    stack: list[tuple[list[int], float]] = [([start], 0.0)]
    roads = 0
    while stack:
        road, total = stack.pop()
        on_road = set(road)
        while True:
            v = road[-1]
            options = [
                k for k in range(ptr[v], ptr[v + 1]) if not used[dst[k]] and dst[k] not in on_road
            ]
            if not options:
                break
            k = options[0]
            if threshold_high is not None:
                for alt in options[1:]:
                    if score[alt] <= threshold_high or roads >= MAX_ROADS:
                        break
                    stack.append(([*road, dst[alt]], total + score[alt]))
                    roads += 1
            road.append(dst[k])
            total += score[k]
            on_road.add(dst[k])
        key = (len(road), total)
        if key > best_key:
            best, best_key = road, key
    return best


def walk(
    n_hits: int,
    edge_index: np.ndarray,
    scores: np.ndarray,
    threshold_low: float = 0.5,
    threshold_high: float | None = None,
    min_hits: int = 3,
) -> np.ndarray:
    """Tracks by acorn's "CC & walk".

    1. Keep the edges scoring above ``threshold_low`` and take connected components.
    2. A component that is a simple path (every hit has at most one edge in and one out,
       no cycle) is a track as it is: this is most of them, and costs no Python loop.
    3. The other (branching) components are walked: hits are taken in topological order
       (innermost first); from each hit not yet on a track, the walk follows the
       highest-scoring outgoing edge to a hit not yet used, until none is left.  Where
       other outgoing edges also score above ``threshold_high``, those roads are explored
       too and the longest road wins (ties: the higher summed score).  A road with at least
       ``min_hits`` hits becomes a track and its hits are used; shorter roads are dropped
       and leave their hits free.  With ``threshold_high=None`` only the best edge is
       ever followed.

    Parameters
    ----------
    n_hits : int
    edge_index : int64 (2, E)
        Directed edges, inner -> outer (the walk goes along them).
    scores : (E,)
    threshold_low : float
        Edges scoring at or below it are ignored.
    threshold_high : float or None
        Scores above which alternative branches are explored; at least ``threshold_low``.
    min_hits : int
        Shortest track kept; shorter simple components and roads give -1.

    Returns
    -------
    int64 (n_hits,)
        Track labels; simple-path tracks first (in order of their first hit), then walked
        tracks; -1 = no track.

    >>> walk(6, [[0, 1, 1, 2, 4], [1, 2, 4, 3, 5]], [0.9, 0.9, 0.6, 0.9, 0.9]).tolist()
    [0, 0, 0, 0, -1, -1]
    """
    n, edges, s = _inputs(n_hits, edge_index, scores)
    threshold_low = _threshold("threshold_low", threshold_low)
    if threshold_high is not None:
        threshold_high = _threshold("threshold_high", threshold_high)
        if threshold_high < threshold_low:
            raise ConfigError(
                f"threshold_high ({threshold_high}) must be at least threshold_low "
                f"({threshold_low})"
            )
    min_hits = _min_hits(min_hits)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    keep = s > threshold_low
    edges, s = edges[:, keep], s[keep]
    comp = _components(n, edges)
    simple = _simple_paths(n, edges, comp)
    labels = _relabel(np.where(simple[comp], comp, -1), min_hits)
    # Branching components: the walk, in Python over their hits only.
    branching = ~simple[comp]
    on_branch = branching[edges[0]]
    sub = edges[:, on_branch]
    if sub.shape[1] == 0:
        return labels
    walked = _walk_branches(
        n, np.flatnonzero(branching), sub, s[on_branch], threshold_high, min_hits
    )
    next_label = int(labels.max()) + 1
    for k, road in enumerate(walked):
        labels[road] = next_label + k
    return labels


def _walk_branches(
    n: int,
    nodes: np.ndarray,
    edges: np.ndarray,
    scores: np.ndarray,
    threshold_high: float | None,
    min_hits: int,
) -> list[list[int]]:
    """The roads (lists of hits) walked through the branching components."""
    # Successors of each hit as CSR, best score first; Python lists index fastest.
    order = np.lexsort((-scores, edges[0]))
    ptr = np.searchsorted(edges[0][order], np.arange(n + 1)).tolist()
    dst, score = edges[1][order].tolist(), scores[order].tolist()
    level = _levels(n, edges)
    starts = nodes[np.lexsort((nodes, level[nodes]))].tolist()
    used = bytearray(n)
    roads = []
    for start in starts:
        if used[start]:
            continue
        road = _best_road(start, ptr, dst, score, used, threshold_high)
        if len(road) >= min_hits:
            for v in road:
                used[v] = 1
            roads.append(road)
    return roads
