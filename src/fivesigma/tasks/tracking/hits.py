"""The hit table every tracking stage works on, and the truth graph it is judged by.

Every stage of the tracking pipeline (graph construction, edge classification, track
building, the classical baseline) takes a :class:`Hits` and works on row indices into
it:

- an **edge list** is an ``int64`` array of shape ``(2, E)`` of row indices, directed from
  the hit nearer the origin to the one further out (:func:`orient_edges`);
- **edge scores** are ``float32`` of shape ``(E,)``;
- **track labels** are ``int64`` of shape ``(n_hits,)``: hits with the same non-negative
  label form one track, ``-1`` means the hit is on no track
  (:func:`submission_track_ids` turns them into a TrackML submission).

The **truth graph** links consecutive hits of each particle, ordered by distance from the
particle's production vertex (by distance from the origin when the particles table is
absent); noise hits are on no edge.  An edge is *true* when its two hits are adjacent in
the truth graph, in either order (:meth:`Hits.edge_truth`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fivesigma.errors import DataError
from fivesigma.io.trackml import TrackMLEvent

if TYPE_CHECKING:
    from fivesigma.physics.tracker import TrackerGeometry

__all__ = [
    "STRIP_PITCH_V_MM",
    "Hits",
    "cluster_incidence",
    "orient_edges",
    "submission_track_ids",
]


@dataclass
class Hits:
    """One event's hits as numpy arrays (one entry per hit, in the event's row order).

    Truth arrays are None when the event has no truth.

    Attributes
    ----------
    event_id : int
    hit_id : int64
    x, y, z : float64, mm
    volume_id, layer_id, module_id : int64
    particle_id : int64 or None (0 = noise)
    weight : float64 or None (the TrackML score weight)
    particle_pt, particle_eta : float64 or None
        The transverse momentum (GeV) and pseudorapidity of each hit's particle; NaN for
        noise hits (and for particles missing from the particles table).
    order : float64 or None
        Distance of the true hit position from the particle's production vertex (mm),
        the order along the track; None without truth.
    cluster : float64 (n, 2) or None
        The incidence measured by the hit's cluster of cells: ``|tan|`` of the angle
        between the particle and the module's normal w, along the module's u and v axes,
        ``(extent in channels - 1) * pitch / thickness``; NaN where the cluster cannot
        tell (a strip's v, a hit without cells).  None when the event has no cells file.
    frame : float32 (n, 3, 3) or None
        The rotation of each hit's module (``global = frame @ (u, v, w)``), set with
        ``cluster``.
    """

    event_id: int
    hit_id: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    volume_id: np.ndarray
    layer_id: np.ndarray
    module_id: np.ndarray
    particle_id: np.ndarray | None = None
    weight: np.ndarray | None = None
    particle_pt: np.ndarray | None = None
    particle_eta: np.ndarray | None = None
    order: np.ndarray | None = None
    cluster: np.ndarray | None = None
    frame: np.ndarray | None = None

    # ----------------------------------------------------------------------------------
    @classmethod
    def from_event(cls, event: TrackMLEvent, geometry: TrackerGeometry | None = None) -> Hits:
        """The hit table of a :class:`~fivesigma.io.trackml.TrackMLEvent` (truth if read;
        cluster shapes when the cells were read and ``geometry`` knows every module)."""
        h = event.hits
        if len(h) == 0:
            raise DataError(f"event {event.event_id}: no hits; an event needs at least one hit")
        hits = cls(
            event_id=int(event.event_id),
            hit_id=h["hit_id"].to_numpy(np.int64),
            x=h["x"].to_numpy(np.float64),
            y=h["y"].to_numpy(np.float64),
            z=h["z"].to_numpy(np.float64),
            volume_id=h["volume_id"].to_numpy(np.int64),
            layer_id=h["layer_id"].to_numpy(np.int64),
            module_id=h["module_id"].to_numpy(np.int64),
        )
        if event.cells is not None and geometry is not None:
            hits.cluster, hits.frame = cluster_incidence(hits, event.cells, geometry)
        if event.truth is None:
            return hits
        truth = event.truth.set_index("hit_id").reindex(hits.hit_id)
        pid = truth["particle_id"].to_numpy(np.int64)
        hits.particle_id = pid
        hits.weight = truth["weight"].to_numpy(np.float64)
        tx, ty, tz = (truth[c].to_numpy(np.float64) for c in ("tx", "ty", "tz"))
        vx = vy = vz = np.zeros(len(pid))
        nan = np.full(len(pid), np.nan)
        hits.particle_pt, hits.particle_eta = nan.copy(), nan.copy()
        if event.particles is not None and len(event.particles):
            parts = event.particles.drop_duplicates("particle_id").set_index("particle_id")
            p = parts.reindex(pid)
            px, py, pz = (p[c].to_numpy(np.float64) for c in ("px", "py", "pz"))
            pt = np.hypot(px, py)
            with np.errstate(divide="ignore", invalid="ignore"):
                eta = np.arcsinh(pz / pt)
            found = ~np.isnan(pt) & (pid != 0)
            hits.particle_pt = np.where(found, pt, np.nan)
            hits.particle_eta = np.where(found, eta, np.nan)
            vx, vy, vz = (np.nan_to_num(p[c].to_numpy(np.float64)) for c in ("vx", "vy", "vz"))
        hits.order = np.sqrt((tx - vx) ** 2 + (ty - vy) ** 2 + (tz - vz) ** 2)
        return hits

    # ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.hit_id)

    @property
    def r(self) -> np.ndarray:
        """Cylindrical radius (mm)."""
        return np.hypot(self.x, self.y)

    @property
    def phi(self) -> np.ndarray:
        """Azimuth in ``[-pi, pi]``."""
        return np.arctan2(self.y, self.x)

    @property
    def eta(self) -> np.ndarray:
        """Pseudorapidity of the hit position seen from the origin."""
        with np.errstate(divide="ignore"):
            return np.arcsinh(self.z / self.r)

    @property
    def rho(self) -> np.ndarray:
        """Distance from the origin ``sqrt(x² + y² + z²)`` (mm)."""
        return np.sqrt(self.x**2 + self.y**2 + self.z**2)

    @property
    def layer_key(self) -> np.ndarray:
        """One integer per detector layer: ``100 * volume_id + layer_id``."""
        return 100 * self.volume_id + self.layer_id

    @property
    def has_truth(self) -> bool:
        return self.particle_id is not None

    def _require_truth(self) -> None:
        if not self.has_truth:
            raise DataError(f"event {self.event_id}: this needs the truth, which was not read")

    def subset(self, rows: np.ndarray) -> Hits:
        """The hits at ``rows`` (an index or boolean array), truth included."""
        out = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value[rows] if isinstance(value, np.ndarray) else value
        return Hits(**out)

    # ----------------------------------------------------------------------------------
    def truth_edges(self) -> np.ndarray:
        """The truth graph: ``(2, E)`` consecutive hits of each particle, inner to outer."""
        self._require_truth()
        pid = self.particle_id
        order = self.order if self.order is not None else self.rho
        rows = np.flatnonzero(pid != 0)
        rows = rows[np.lexsort((order[rows], pid[rows]))]
        same = pid[rows[1:]] == pid[rows[:-1]]
        return np.stack([rows[:-1][same], rows[1:][same]]).astype(np.int64)

    def edge_truth(self, edge_index: np.ndarray) -> np.ndarray:
        """Boolean per edge: its hits are adjacent in the truth graph (either order)."""
        self._require_truth()
        edge_index = np.asarray(edge_index, dtype=np.int64)
        if edge_index.size == 0:
            return np.zeros(0, dtype=bool)
        n = len(self)
        truth = self.truth_edges()
        lo, hi = np.minimum(truth[0], truth[1]), np.maximum(truth[0], truth[1])
        keys = np.unique(lo * n + hi)
        a, b = edge_index
        query = np.minimum(a, b) * n + np.maximum(a, b)
        if keys.size == 0:
            return np.zeros(len(query), dtype=bool)
        pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        return keys[pos] == query

    def same_particle(self, edge_index: np.ndarray) -> np.ndarray:
        """Boolean per edge: both hits belong to the same particle (not noise)."""
        self._require_truth()
        a, b = np.asarray(edge_index, dtype=np.int64)
        return (self.particle_id[a] == self.particle_id[b]) & (self.particle_id[a] != 0)


#: pitch_v (mm) from which a module is a strip module: its v extent tells nothing
STRIP_PITCH_V_MM = 0.5


def cluster_incidence(
    hits: Hits, cells: pd.DataFrame, geometry: TrackerGeometry
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per hit, the ``|tan|`` of the incidence angle along u and v measured by its cluster
    (see :attr:`Hits.cluster`) and its module's rotation; ``(None, None)`` when
    ``geometry`` lacks a module of the hits (another detector: no cluster shapes).

    A particle crossing a sensor of thickness t at incidence ``tan`` along an axis of
    pitch p fires about ``1 + t |tan| / p`` channels along it; in the real TrackML event
    this holds with correlation 0.97 for the pixel barrel's v (along z)."""

    try:
        module = geometry.module_index(hits.volume_id, hits.layer_id, hits.module_id)
    except DataError:
        return None, None
    n = len(hits)
    row = pd.Index(hits.hit_id).get_indexer(cells["hit_id"].to_numpy())
    ok = row >= 0
    row = row[ok]
    ch0 = cells["ch0"].to_numpy(np.int64)[ok]
    ch1 = cells["ch1"].to_numpy(np.int64)[ok]
    big = np.iinfo(np.int64).max
    lo0, hi0 = np.full(n, big), np.full(n, -1)
    lo1, hi1 = np.full(n, big), np.full(n, -1)
    np.minimum.at(lo0, row, ch0)
    np.maximum.at(hi0, row, ch0)
    np.minimum.at(lo1, row, ch1)
    np.maximum.at(hi1, row, ch1)
    has = hi0 >= 0
    thickness = geometry.thickness[module]
    tan_u = np.where(has, (hi0 - lo0) * geometry.pitch_u[module] / thickness, np.nan)
    strip = geometry.pitch_v[module] >= STRIP_PITCH_V_MM
    tan_v = np.where(has & ~strip, (hi1 - lo1) * geometry.pitch_v[module] / thickness, np.nan)
    return np.stack([tan_u, tan_v], axis=1), geometry.rotation[module].astype(np.float32)


def orient_edges(hits: Hits, edge_index: np.ndarray) -> np.ndarray:
    """Edges directed from the hit nearer the origin (``rho``) to the further one, with
    self-loops and duplicates (in either direction) removed, sorted by source."""
    edge_index = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    rho = hits.rho
    a, b = edge_index
    swap = (rho[a] > rho[b]) | ((rho[a] == rho[b]) & (a > b))
    src, dst = np.where(swap, b, a), np.where(swap, a, b)
    keep = src != dst
    keys = np.sort(src[keep] * len(hits) + dst[keep])  # a plain sort: np.unique is slower
    if keys.size:
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    return np.stack([keys // len(hits), keys % len(hits)]).astype(np.int64)


def submission_track_ids(labels: np.ndarray) -> np.ndarray:
    """Track labels (``-1`` = no track) as TrackML submission ids: every hit gets a positive
    id, and each unassigned hit its own."""
    labels = np.asarray(labels, dtype=np.int64)
    out = np.empty_like(labels)
    assigned = labels >= 0
    _, dense = np.unique(labels[assigned], return_inverse=True)
    out[assigned] = dense + 1
    n_tracks = int(dense.max()) + 1 if dense.size else 0
    out[~assigned] = n_tracks + 1 + np.arange(int((~assigned).sum()))
    return out
