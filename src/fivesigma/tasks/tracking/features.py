"""Node and edge features of a hit graph, scaled to O(1), and the PyG graph of an event.

Node features (:data:`NODE_FEATURES`), one row per hit: cylindrical coordinates and the
incidence its cluster of cells measures (:attr:`~fivesigma.tasks.tracking.hits.Hits.cluster`):

========  ===============  ==================================================
name      value            why this scale
========  ===============  ==================================================
r         r / 1000 mm      the tracker reaches r ~ 1 m
phi       phi / pi         in [-1, 1]
z         z / 1000 mm      |z| up to ~3 m
eta       eta / 3          |eta| up to ~4 in the TrackML detector
cu        asinh(tan_u) / 3  0 for a crossing along the normal, ~1 for grazing
cv        asinh(tan_v) / 3  (both 0 where the cluster tells nothing)
========  ===============  ==================================================

Edge features (:data:`EDGE_FEATURES`), one row per edge ``src -> dst`` (inner to outer,
as :func:`~fivesigma.tasks.tracking.hits.orient_edges` directs them), every difference
``dst - src``:

==========  ================================  ======================================
name        value                             scale of a true edge
==========  ================================  ======================================
dr          dr / 100 mm                       adjacent layers are 40-200 mm apart
dphi        dphi / 0.1, wrapped to [-pi, pi]  a 0.5 GeV track turns ~0.06 rad in 10 cm
dz          dz / 100 mm                       O(1) for |eta| < 2
deta        deta / 0.1                        a few 0.01
phi_slope   dphi / dr, rad/m                  <= 0.3 B / (2 pT) = 0.6 rad/m at 0.5 GeV
z0          z_src - r_src dz/dr, / 100 mm     the beam spot: sigma_z ~ 50 mm
cu_src      cluster compatibility, u, src     ~0 (see below)
cv_src      cluster compatibility, v, src     ~0
cu_dst      cluster compatibility, u, dst     ~0
cv_dst      cluster compatibility, v, dst     ~0
==========  ================================  ======================================

The **cluster compatibility** of an end: the edge's direction, turned into the frame of
that hit's module, predicts how far the cluster of cells should extend along u and v
(``|tan|`` of the incidence, :attr:`~fivesigma.tasks.tracking.hits.Hits.cluster`); the
feature is ``asinh(predicted) - asinh(measured)``.  A segment joining hits of two
particles usually crosses the sensor at another angle than either particle did, which the
cluster shows; this is the cell information of the Exa.TrkX pipelines.  It is 0 where the
cluster tells nothing (a strip's v) and for events without cells.

``phi_slope`` and ``z0`` divide by ``dr``, which is ~0 for an edge between two hits at
the same radius (endcap disks): ``|dr|`` is floored at 1 mm.  Every edge feature is
clipped to ``[-10, 10]`` (:data:`EDGE_CLIP`), so that a wild fake edge (half a turn in
phi, two metres in z) cannot set the scale of a network's inputs.

>>> import numpy as np
>>> from fivesigma.tasks.tracking.hits import Hits
>>> h = Hits(1, np.arange(2), np.array([30.0, 70.0]), np.zeros(2), np.array([0.0, 10.0]),
...          np.full(2, 8), np.array([2, 4]), np.ones(2, dtype=np.int64))
>>> node_features(h).shape
(2, 6)
>>> edge_features(h, np.array([[0], [1]])).astype(float).round(3).tolist()
[[0.4, 0.0, 0.1, 1.424, 0.0, -0.075, 0.0, 0.0, 0.0, 0.0]]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from fivesigma.errors import DataError
from fivesigma.tasks.tracking.hits import Hits

if TYPE_CHECKING:
    from torch_geometric.data import Data

__all__ = [
    "EDGE_CLIP",
    "EDGE_FEATURES",
    "NODE_FEATURES",
    "check_edge_index",
    "cluster_features",
    "edge_features",
    "node_features",
    "to_graph",
]

#: node feature names, in column order
NODE_FEATURES: tuple[str, ...] = ("r", "phi", "z", "eta", "cu", "cv")
#: edge feature names, in column order
EDGE_FEATURES: tuple[str, ...] = (
    "dr", "dphi", "dz", "deta", "phi_slope", "z0", "cu_src", "cv_src", "cu_dst", "cv_dst"
)  # fmt: skip
#: every (scaled) edge feature is clipped to [-EDGE_CLIP, EDGE_CLIP]
EDGE_CLIP = 10.0

_MIN_DR_MM = 1.0


def node_features(hits: Hits) -> np.ndarray:
    """float32 ``(n_hits, 6)``: r/1000, phi/pi, z/1000, eta/3 and the cluster's
    asinh(tan_u)/3, asinh(tan_v)/3 (see the module docstring)."""
    r = hits.r
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(hits.z / r)
    # a hit on the beam line (r = 0) has no finite eta: the sign of z at a large value
    eta = np.where(np.isfinite(eta), eta, np.sign(hits.z) * 10.0)
    cluster = cluster_features(hits)
    out = np.stack(
        [r / 1000.0, hits.phi / np.pi, hits.z / 1000.0, eta / 3.0, cluster[:, 0], cluster[:, 1]],
        axis=1,
    )
    return out.astype(np.float32)


def cluster_features(hits: Hits) -> np.ndarray:
    """float64 ``(n_hits, 2)``: asinh(tan_u)/3, asinh(tan_v)/3 of each hit's cluster
    (:attr:`~fivesigma.tasks.tracking.hits.Hits.cluster`); 0 where it tells nothing."""
    if hits.cluster is None:
        return np.zeros((len(hits), 2))
    return np.nan_to_num(np.arcsinh(hits.cluster) / 3.0, nan=0.0)


def check_edge_index(edge_index: Any, n_nodes: int, what: str = "edge_index") -> np.ndarray:
    """``edge_index`` as an int64 ``(2, E)`` array of row indices in ``[0, n_nodes)``, or a
    one-line :class:`DataError`."""
    try:
        arr = np.asarray(edge_index)
    except (TypeError, ValueError):
        raise DataError(f"{what} must be an integer array (2, edges)") from None
    if arr.ndim != 2 or arr.shape[0] != 2:
        raise DataError(f"{what} must have shape (2, edges), got {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{what} must hold integer hit indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= n_nodes):
        raise DataError(
            f"{what} holds hit indices outside [0, {n_nodes}) (min {arr.min()}, max {arr.max()})"
        )
    return arr


def edge_features(hits: Hits, edge_index: np.ndarray) -> np.ndarray:
    """float32 ``(E, 10)``: dr, dphi, dz, deta, phi_slope, z0 and the four cluster
    compatibilities of every edge ``src -> dst``, scaled and clipped (see the module
    docstring)."""
    src, dst = check_edge_index(edge_index, len(hits))
    r, phi, z = hits.r, hits.phi, hits.z
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(z / r)
    eta = np.where(np.isfinite(eta), eta, np.sign(z) * 10.0)
    dr = r[dst] - r[src]
    dphi = np.remainder(phi[dst] - phi[src] + np.pi, 2 * np.pi) - np.pi  # wrapped to [-pi, pi)
    dz = z[dst] - z[src]
    deta = eta[dst] - eta[src]
    safe_dr = np.where(np.abs(dr) < _MIN_DR_MM, np.where(dr < 0, -_MIN_DR_MM, _MIN_DR_MM), dr)
    phi_slope = dphi / safe_dr * 1000.0  # rad/m
    z0 = z[src] - r[src] * dz / safe_dr
    geometric = [dr / 100.0, dphi / 0.1, dz / 100.0, deta / 0.1, phi_slope, z0 / 100.0]
    out = np.stack(geometric + _cluster_compatibility(hits, src, dst), axis=1)
    return np.clip(out, -EDGE_CLIP, EDGE_CLIP).astype(np.float32)


def _cluster_compatibility(hits: Hits, src: np.ndarray, dst: np.ndarray) -> list[np.ndarray]:
    """``asinh(predicted |tan|) - asinh(measured |tan|)`` along u and v at both ends (4
    arrays); 0 where nothing is measured."""
    if hits.cluster is None or hits.frame is None:
        return [np.zeros(len(src))] * 4
    direction = np.stack([hits.x[dst] - hits.x[src], hits.y[dst] - hits.y[src],
                          hits.z[dst] - hits.z[src]], axis=1)  # fmt: skip
    out = []
    for end in (src, dst):
        # frame is a rotation: its transpose takes global directions to (u, v, w)
        local = np.einsum("nji,nj->ni", hits.frame[end].astype(np.float64), direction)
        w = np.maximum(np.abs(local[:, 2]), 1e-6 * np.linalg.norm(local, axis=1) + 1e-12)
        for axis in (0, 1):
            predicted = np.abs(local[:, axis]) / w
            diff = np.arcsinh(predicted) - np.arcsinh(hits.cluster[end, axis])
            out.append(np.where(np.isfinite(diff), diff, 0.0))
    return out


def to_graph(hits: Hits, edge_index: np.ndarray, with_truth: bool = True) -> Data:
    """The PyG graph of ``hits`` with edges ``edge_index``.

    Attributes: ``x`` float32 (N, 6) :func:`node_features`, ``edge_index`` int64 (2, E),
    ``edge_attr`` float32 (E, 6) :func:`edge_features` and, when ``with_truth`` and the
    hits have truth, ``y`` float32 (E,): 1.0 for a true edge
    (:meth:`~fivesigma.tasks.tracking.hits.Hits.edge_truth`), else 0.0.
    """
    from fivesigma.core import extras

    torch = extras.torch()
    data_cls = extras.torch_geometric("data").Data
    if len(hits) == 0:
        raise DataError(f"event {hits.event_id}: no hits; a graph needs at least one hit")
    edges = check_edge_index(edge_index, len(hits))
    data = data_cls(
        x=torch.from_numpy(node_features(hits)),
        edge_index=torch.from_numpy(np.ascontiguousarray(edges)),
        edge_attr=torch.from_numpy(edge_features(hits, edges)),
        num_nodes=len(hits),
    )
    if with_truth and hits.has_truth:
        data.y = torch.from_numpy(hits.edge_truth(edges).astype(np.float32))
    return data
