"""Silicon tracker geometry from a TrackML ``detectors.csv``: modules, layers, transforms.

A TrackML detector description lists every sensitive module: its identifiers
``volume_id, layer_id, module_id``, its centre ``c = (cx, cy, cz)`` (mm) and rotation
``R`` (``rot_xu .. rot_zw``: rows x, y, z; columns u, v, w) with

    global = c + R @ (u, v, w),

its thickness ``module_t`` along w (the TrackML documentation calls it the half thickness,
but the real event's cluster lengths follow a sensor ``module_t`` thick: 0.15 mm for the
pixels), its half length ``module_hv`` along v and its
half width along u, ``module_minhu`` at ``v = -hv`` growing linearly to ``module_maxhu``
at ``v = +hv`` (endcap modules are trapezoids, barrel ones rectangles), and the readout
pitch ``pitch_u, pitch_v`` (mm; strip modules have a long ``pitch_v``).

:class:`TrackerGeometry` holds those as numpy arrays and derives one *layer surface* per
``(volume_id, layer_id)``: a cylinder (barrel layers, modules facing the beam line) of the
mean module-centre radius and the z extent of the module corners, or a disk (endcap
layers, modules facing along z) at the mean module-centre z with the radial extent of the
corners.  In the TrackML detector the barrel volumes are 8 (pixels), 13 (short strips)
and 17 (long strips), the endcap volumes 7 / 9, 12 / 14 and 16 / 18 (negative / positive
z).  The kind is derived from the module orientation, so other geometries work too.

Modules of a layer overlap and are staggered in radius or z by a few mm, so a layer
surface only tells *where to look*: :meth:`TrackerGeometry.candidates` returns the modules
whose centres lie near points on the layer (a scipy cKDTree of module centres per layer),
and the caller intersects the actual module planes.

>>> geo = default_geometry()
>>> len(geo), len(geo.layers)
(18728, 48)
>>> lay = geo.layer(8, 2)
>>> lay.barrel, round(lay.radius, 1)
(True, 32.0)
"""

from __future__ import annotations

import functools
import gzip
import io
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fivesigma.errors import DataError
from fivesigma.io.trackml import DETECTOR_COLUMNS, read_detectors

__all__ = [
    "DEFAULT_GEOMETRY_FILE",
    "LayerSurface",
    "TrackerGeometry",
    "default_geometry",
    "geometry_from",
]

#: The packaged TrackML detector description (see ``physics/data/README.md``).
DEFAULT_GEOMETRY_FILE = "trackml_detectors.csv.gz"

#: A layer whose module normals all have ``|n_z|`` above this is an endcap disk; one whose
#: normals all have ``|n_z|`` below ``1 - _DISK_NZ`` is a barrel cylinder.
_DISK_NZ = 0.9


@dataclass
class LayerSurface:
    """One layer: a barrel cylinder or an endcap disk, and its modules.

    Attributes
    ----------
    index : int
        Position in :attr:`TrackerGeometry.layers`.
    volume_id, layer_id : int
        The TrackML identifiers.
    barrel : bool
        True for a cylinder ``r = radius``, False for a disk ``z = z``.
    radius : float
        Mean module-centre radius (mm); for a disk, informative only.
    z : float
        Mean module-centre z (mm); for a cylinder, informative only.
    r_min, r_max, z_min, z_max : float
        Extent of the module corners (mm).
    modules : ndarray of int
        Row indices (into the geometry arrays) of the layer's modules.
    search_radius : float
        Largest distance (mm) from a point on a module to its centre, plus the stagger of
        the module centres off the layer surface: modules farther than this from a point
        cannot contain it.
    """

    index: int
    volume_id: int
    layer_id: int
    barrel: bool
    radius: float
    z: float
    r_min: float
    r_max: float
    z_min: float
    z_max: float
    modules: np.ndarray
    search_radius: float
    max_candidates: int = 0
    _tree: Any = field(default=None, repr=False)


class TrackerGeometry:
    """The modules of a TrackML detector as numpy arrays, with layer surfaces and lookups.

    Build it with :meth:`from_csv` (a ``detectors.csv(.gz)``), :meth:`from_table` (its
    DataFrame) or :func:`default_geometry` (the packaged TrackML detector).

    Attributes
    ----------
    table : DataFrame
        The detector table as read (the TrackML columns).
    volume_id, layer_id, module_id : ndarray of int64
        Identifiers per module (row).
    center : ndarray, shape (n, 3)
        Module centres (mm).
    rotation : ndarray, shape (n, 3, 3)
        ``rotation[i] @ (u, v, w)`` is the global direction of a local vector.
    thickness, min_hu, max_hu, hv, pitch_u, pitch_v : ndarray
        Sensor thickness, half widths at ``v = -hv`` and ``v = +hv``, half length, pitches (mm).
    layers : list of LayerSurface
        One per ``(volume_id, layer_id)``, sorted by volume then layer.
    source : str
        Where the table came from (for messages and provenance).
    """

    def __init__(self, table: pd.DataFrame, source: str = "detector table") -> None:
        missing = [c for c in DETECTOR_COLUMNS if c not in table.columns]
        if missing:
            raise DataError(f"'{source}': missing detector columns {', '.join(missing)}")
        if len(table) == 0:
            raise DataError(f"'{source}': the detector table has no modules")
        self.table = table.reset_index(drop=True)
        self.source = source
        col = lambda name: self.table[name].to_numpy()  # noqa: E731
        self.volume_id = col("volume_id").astype(np.int64)
        self.layer_id = col("layer_id").astype(np.int64)
        self.module_id = col("module_id").astype(np.int64)
        self.center = np.stack([col(c).astype(np.float64) for c in ("cx", "cy", "cz")], axis=1)
        rot = [[col(f"rot_{a}{b}").astype(np.float64) for b in "uvw"] for a in "xyz"]
        self.rotation = np.moveaxis(np.asarray(rot), 2, 0)  # (n, 3 rows xyz, 3 cols uvw)
        # the file's rotations are orthonormal to ~1e-6 only (printed digits): the exact
        # inverse keeps global -> local -> global exact, and the plane normal is u x v
        self._inverse = np.linalg.inv(self.rotation)
        cross = np.cross(self.rotation[:, :, 0], self.rotation[:, :, 1])
        self._normal = cross / np.linalg.norm(cross, axis=1)[:, None]
        self.thickness = col("module_t").astype(np.float64)
        self.min_hu = col("module_minhu").astype(np.float64)
        self.max_hu = col("module_maxhu").astype(np.float64)
        self.hv = col("module_hv").astype(np.float64)
        self.pitch_u = col("pitch_u").astype(np.float64)
        self.pitch_v = col("pitch_v").astype(np.float64)
        if np.any(self.hv <= 0) or np.any(self.max_hu <= 0) or np.any(self.min_hu <= 0):
            raise DataError(f"'{source}': module half sizes must be positive")
        if np.any(self.pitch_u <= 0) or np.any(self.pitch_v <= 0):
            raise DataError(f"'{source}': module pitches must be positive")
        keys = self._keys(self.volume_id, self.layer_id, self.module_id)
        self._key_order = np.argsort(keys, kind="stable")
        self._sorted_keys = keys[self._key_order]
        if np.any(self._sorted_keys[1:] == self._sorted_keys[:-1]):
            raise DataError(f"'{source}': duplicated (volume_id, layer_id, module_id) rows")
        self.layers = self._build_layers()
        self._layer_of = {(lay.volume_id, lay.layer_id): lay for lay in self.layers}
        self.module_layer = np.empty(len(self), dtype=np.int64)
        for lay in self.layers:
            self.module_layer[lay.modules] = lay.index

    # ----------------------------------------------------------------------------------
    # Construction

    @classmethod
    def from_csv(cls, path: str | os.PathLike) -> TrackerGeometry:
        """Read ``detectors.csv`` / ``detectors.csv.gz`` (a file or a directory holding it)."""
        table = read_detectors(path)
        return cls(table, source=table.attrs.get("source", str(path)))

    @classmethod
    def from_table(cls, table: pd.DataFrame) -> TrackerGeometry:
        """From a detector DataFrame with the TrackML columns."""
        return cls(table, source=table.attrs.get("source", "detector table"))

    @staticmethod
    def _keys(volume: Any, layer: Any, module: Any) -> np.ndarray:
        # module ids stay below 2^20 and layer ids below 2^10 in TrackML; one int64 key
        return (
            (np.asarray(volume, np.int64) << 40)
            | (np.asarray(layer, np.int64) << 20)
            | np.asarray(module, np.int64)
        )

    def corners(self, modules: np.ndarray | None = None) -> np.ndarray:
        """Global positions of the 4 corners (mid-plane) of ``modules``, shape (n, 4, 3)."""
        idx = np.arange(len(self)) if modules is None else np.asarray(modules, np.int64)
        v = self.hv[idx]
        local = np.stack(
            [
                np.stack([-self.min_hu[idx], -v, np.zeros_like(v)], axis=1),
                np.stack([self.min_hu[idx], -v, np.zeros_like(v)], axis=1),
                np.stack([-self.max_hu[idx], v, np.zeros_like(v)], axis=1),
                np.stack([self.max_hu[idx], v, np.zeros_like(v)], axis=1),
            ],
            axis=1,
        )
        return self.center[idx, None, :] + np.einsum("nij,nkj->nki", self.rotation[idx], local)

    def _build_layers(self) -> list[LayerSurface]:
        from scipy.spatial import cKDTree

        layers: list[LayerSurface] = []
        pairs = np.unique(np.stack([self.volume_id, self.layer_id], axis=1), axis=0)
        corners = self.corners()
        normal_z = np.abs(self._normal[:, 2])
        radius = np.hypot(self.center[:, 0], self.center[:, 1])
        half_diag = np.hypot(np.maximum(self.min_hu, self.max_hu), self.hv)
        for vol, lay in pairs.tolist():
            idx = np.flatnonzero((self.volume_id == vol) & (self.layer_id == lay))
            nz = normal_z[idx]
            if np.all(nz > _DISK_NZ):
                barrel = False
            elif np.all(nz < 1.0 - _DISK_NZ):
                barrel = True
            else:
                raise DataError(
                    f"'{self.source}': layer (volume {vol}, layer {lay}) mixes modules facing "
                    "the beam line and facing along z; accepted: barrel or endcap layers"
                )
            cr = np.hypot(corners[idx, :, 0], corners[idx, :, 1])
            cz = corners[idx, :, 2]
            mean_r = float(radius[idx].mean())
            mean_z = float(self.center[idx, 2].mean())
            # how far module centres sit off the layer surface (staggering, tilts)
            off = radius[idx] - mean_r if barrel else self.center[idx, 2] - mean_z
            stagger = float(np.max(np.abs(off)))
            search = float(half_diag[idx].max()) + stagger + 2.0
            tree = cKDTree(self.center[idx])
            # most module centres near any point of the layer: probe a 3 x 3 grid on each
            # module (corners, edge midpoints, centre), plus 2 for points in between
            grid = np.array([-1.0, 0.0, 1.0])
            gu, gv = np.meshgrid(grid, grid)
            hu = np.maximum(self.min_hu[idx], self.max_hu[idx])
            probe_local = np.stack(
                [
                    gu.reshape(1, -1) * hu[:, None],
                    gv.reshape(1, -1) * self.hv[idx, None],
                    np.zeros((idx.size, 9)),
                ],
                axis=2,
            )
            probes = self.center[idx, None, :] + np.einsum(
                "nij,nkj->nki", self.rotation[idx], probe_local
            )
            nearby = tree.query_ball_point(probes.reshape(-1, 3), search, return_length=True)
            layers.append(
                LayerSurface(
                    index=len(layers),
                    volume_id=int(vol),
                    layer_id=int(lay),
                    barrel=barrel,
                    radius=mean_r,
                    z=mean_z,
                    r_min=float(cr.min()),
                    r_max=float(cr.max()),
                    z_min=float(cz.min()),
                    z_max=float(cz.max()),
                    modules=idx,
                    search_radius=search,
                    max_candidates=int(min(np.max(nearby) + 2, idx.size)),
                    _tree=tree,
                )
            )
        return layers

    # ----------------------------------------------------------------------------------
    # Lookups

    def __len__(self) -> int:
        return int(self.volume_id.size)

    def __repr__(self) -> str:
        return f"TrackerGeometry({len(self)} modules, {len(self.layers)} layers, '{self.source}')"

    @property
    def r_max(self) -> float:
        """Largest radius of any module corner (mm)."""
        return max(lay.r_max for lay in self.layers)

    @property
    def z_max(self) -> float:
        """Largest |z| of any module corner (mm)."""
        return max(max(abs(lay.z_min), abs(lay.z_max)) for lay in self.layers)

    @property
    def normal(self) -> np.ndarray:
        """Unit normal of every module plane (u x v, the w axis), shape (n, 3)."""
        return self._normal

    def layer(self, volume_id: int, layer_id: int) -> LayerSurface:
        """The layer surface of ``(volume_id, layer_id)``; DataError if there is none."""
        found = self._layer_of.get((int(volume_id), int(layer_id)))
        if found is None:
            raise DataError(
                f"no layer (volume {volume_id}, layer {layer_id}) in '{self.source}'; "
                f"volumes: {', '.join(map(str, sorted({v for v, _ in self._layer_of})))}"
            )
        return found

    def module_index(self, volume_id: Any, layer_id: Any, module_id: Any) -> np.ndarray:
        """Row indices of modules given by their identifiers (arrays broadcast).

        Raises DataError naming the first unknown ``(volume, layer, module)``.
        """
        keys = np.atleast_1d(self._keys(volume_id, layer_id, module_id))
        pos = np.searchsorted(self._sorted_keys, keys)
        pos = np.clip(pos, 0, len(self) - 1)
        bad = self._sorted_keys[pos] != keys
        if np.any(bad):
            k = int(keys[np.argmax(bad)])
            raise DataError(
                f"module (volume {k >> 40}, layer {(k >> 20) & 0xFFFFF}, module "
                f"{k & 0xFFFFF}) is not in '{self.source}'"
            )
        return self._key_order[pos]

    def candidates(self, layer: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Modules of ``layer`` whose centres are near ``points`` (n, 3), as pairs.

        Returns ``(point_index, module_row)`` arrays: the modules of the layer whose
        centres lie within its ``search_radius`` (at most ``max_candidates``, nearest
        first), several per point where modules overlap.
        """
        lay = self.layers[layer]
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if points.shape[0] == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        _, found = lay._tree.query(
            points, k=lay.max_candidates, distance_upper_bound=lay.search_radius
        )
        found = np.asarray(found).reshape(points.shape[0], -1)
        rows, cols = np.nonzero(found < lay.modules.size)  # misses are flagged with n
        return rows, lay.modules[found[rows, cols]]

    # ----------------------------------------------------------------------------------
    # Transforms

    def to_local(self, modules: Any, xyz: np.ndarray) -> np.ndarray:
        """Local ``(u, v, w)`` (mm) of global points ``xyz`` (n, 3) on ``modules`` (n,)."""
        idx = np.asarray(modules, dtype=np.int64)
        d = np.asarray(xyz, dtype=np.float64) - self.center[idx]
        return np.einsum("nij,nj->ni", self._inverse[idx], d)

    def to_global(self, modules: Any, uvw: np.ndarray) -> np.ndarray:
        """Global ``(x, y, z)`` (mm) of local points ``uvw`` (n, 3) on ``modules`` (n,)."""
        idx = np.asarray(modules, dtype=np.int64)
        return self.center[idx] + np.einsum("nij,nj->ni", self.rotation[idx], uvw)

    def local_direction(self, modules: Any, direction: np.ndarray) -> np.ndarray:
        """Global direction vectors (n, 3) expressed in the modules' (u, v, w) axes."""
        idx = np.asarray(modules, dtype=np.int64)
        return np.einsum("nij,nj->ni", self._inverse[idx], np.asarray(direction, np.float64))

    def half_width(self, modules: Any, v: Any) -> np.ndarray:
        """Half width along u at local ``v`` (linear from ``min_hu`` to ``max_hu``)."""
        idx = np.asarray(modules, dtype=np.int64)
        frac = (np.asarray(v, np.float64) + self.hv[idx]) / (2.0 * self.hv[idx])
        return self.min_hu[idx] + (self.max_hu[idx] - self.min_hu[idx]) * frac

    def inside(self, modules: Any, u: Any, v: Any, tolerance: float = 0.0) -> np.ndarray:
        """Whether local ``(u, v)`` lies on the (trapezoidal) module, within ``tolerance`` mm."""
        idx = np.asarray(modules, dtype=np.int64)
        u = np.asarray(u, np.float64)
        v = np.asarray(v, np.float64)
        return (np.abs(v) <= self.hv[idx] + tolerance) & (
            np.abs(u) <= self.half_width(idx, np.clip(v, -self.hv[idx], self.hv[idx])) + tolerance
        )

    def clip_to_module(self, modules: Any, u: Any, v: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(u, v)`` moved onto the module where outside (v first, then u at that v)."""
        idx = np.asarray(modules, dtype=np.int64)
        v = np.clip(np.asarray(v, np.float64), -self.hv[idx], self.hv[idx])
        hu = self.half_width(idx, v)
        return np.clip(np.asarray(u, np.float64), -hu, hu), v

    def channels(self, modules: Any, u: Any, v: Any) -> tuple[np.ndarray, np.ndarray]:
        """Readout cell indices ``(ch0, ch1)`` of local ``(u, v)``, counted from the
        module's ``-maxhu`` / ``-hv`` corner in units of ``pitch_u`` / ``pitch_v``."""
        idx = np.asarray(modules, dtype=np.int64)
        ch0 = np.floor((np.asarray(u, np.float64) + self.max_hu[idx]) / self.pitch_u[idx])
        ch1 = np.floor((np.asarray(v, np.float64) + self.hv[idx]) / self.pitch_v[idx])
        n0 = np.floor(2 * self.max_hu[idx] / self.pitch_u[idx]) - 1
        n1 = np.floor(2 * self.hv[idx] / self.pitch_v[idx]) - 1
        return (
            np.clip(ch0, 0, np.maximum(n0, 0)).astype(np.int64),
            np.clip(ch1, 0, np.maximum(n1, 0)).astype(np.int64),
        )

    # ----------------------------------------------------------------------------------
    # Output

    def to_csv_bytes(self) -> bytes:
        """The table as gzip-compressed TrackML ``detectors.csv`` bytes (deterministic:
        no time stamp or file name in the gzip header)."""
        buf = io.StringIO()
        self.table[list(DETECTOR_COLUMNS)].to_csv(buf, index=True)
        return gzip.compress(buf.getvalue().encode(), compresslevel=1, mtime=0)

    def write_csv(self, path: str | os.PathLike) -> Path:
        """Write ``detectors.csv.gz`` (TrackML layout: an unnamed index column first)."""
        path = Path(path)
        path.write_bytes(self.to_csv_bytes())
        return path


@functools.lru_cache(maxsize=4)
def _load(path: str) -> TrackerGeometry:
    return TrackerGeometry.from_csv(path)


def default_geometry() -> TrackerGeometry:
    """The packaged TrackML detector (18728 modules), read once per process.

    The returned object is shared: treat it as read-only.
    """
    path = resources.files("fivesigma.physics") / "data" / DEFAULT_GEOMETRY_FILE
    return _load(str(path))


def geometry_from(path: str | os.PathLike | None) -> TrackerGeometry:
    """``default_geometry()`` for None, else the (cached) geometry read from ``path``."""
    if path is None:
        return default_geometry()
    return _load(str(Path(path).resolve()))
