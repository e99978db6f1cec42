"""The TrackML tracker geometry: layers, transforms, the trapezoid test, candidate lookup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fivesigma.errors import DataError
from fivesigma.io.trackml import read_detectors
from fivesigma.physics.tracker import TrackerGeometry, default_geometry

SHARED = Path("/work/shared/data/trackml_subset_gnn_tracking")
needs_shared = pytest.mark.skipif(
    not (SHARED / "event000000001-hits.csv.gz").is_file(), reason="shared TrackML data absent"
)


@pytest.fixture(scope="module")
def geo() -> TrackerGeometry:
    return default_geometry()


def test_packaged_geometry_layers(geo):
    assert len(geo) == 18728 and len(geo.layers) == 48
    barrel = {lay.volume_id for lay in geo.layers if lay.barrel}
    endcap = {lay.volume_id for lay in geo.layers if not lay.barrel}
    assert barrel == {8, 13, 17} and endcap == {7, 9, 12, 14, 16, 18}
    radii = [round(lay.radius) for lay in geo.layers if lay.barrel]
    assert radii == [32, 72, 116, 172, 260, 360, 500, 660, 820, 1020]
    disk = geo.layer(9, 2)
    assert disk.z == pytest.approx(600.0, abs=1.0) and disk.r_min < 35 and disk.r_max > 170
    # a pixel barrel layer spans the modules' corners in z
    assert geo.layer(8, 2).z_min == pytest.approx(-491.0) and geo.layer(8, 2).z_max == 491.0
    assert 1020 < geo.r_max < 1030 and 2950 < geo.z_max < 2965
    assert default_geometry() is geo  # read once per process


def test_local_global_round_trip(geo):
    rng = np.random.default_rng(3)
    mods = rng.integers(0, len(geo), 1000)
    uvw = rng.normal(size=(1000, 3)) * [10.0, 30.0, 0.1]
    xyz = geo.to_global(mods, uvw)
    np.testing.assert_allclose(geo.to_local(mods, xyz), uvw, atol=1e-9)
    # the rotation is orthonormal and the centre maps to the local origin
    r = geo.rotation[mods]
    np.testing.assert_allclose(
        np.einsum("nji,njk->nik", r, r), np.broadcast_to(np.eye(3), r.shape), atol=1e-5
    )
    np.testing.assert_allclose(geo.to_local(mods, geo.center[mods]), 0.0, atol=1e-12)
    # directions rotate without the shift
    d = rng.normal(size=(1000, 3))
    np.testing.assert_allclose(
        geo.local_direction(mods, d), geo.to_local(mods, geo.center[mods] + d), atol=1e-9
    )


def test_trapezoid_inside(geo):
    # a strip endcap module: narrow (minhu) at v = -hv, wide (maxhu) at v = +hv
    m = int(np.flatnonzero((geo.volume_id == 14) & (geo.max_hu > geo.min_hu + 5))[0])
    lo, hi, hv = geo.min_hu[m], geo.max_hu[m], geo.hv[m]
    mods = np.full(6, m)
    u = np.array([0.99 * hi, 0.99 * hi, 0.99 * lo, 0.0, 0.0, 1.01 * hi])
    v = np.array([0.999 * hv, -0.999 * hv, -0.999 * hv, 1.01 * hv, 0.0, 0.999 * hv])
    assert geo.inside(mods, u, v).tolist() == [True, False, True, False, True, False]
    assert geo.inside(mods[:1], [1.01 * hi], [hv], tolerance=0.02 * hi).tolist() == [True]
    cu, cv = geo.clip_to_module(mods, u, v)
    assert geo.inside(mods, cu, cv).all()
    np.testing.assert_allclose(geo.half_width(mods[:2], [-hv, hv]), [lo, hi])


def test_channels(geo):
    # a pixel module: 2 x 8.4 mm / 0.05 mm = 336 columns, 2 x 36 mm / 0.05625 mm = 1280 rows
    m = int(np.flatnonzero(geo.volume_id == 8)[0])
    assert (geo.max_hu[m], geo.hv[m], geo.pitch_u[m], geo.pitch_v[m]) == (8.4, 36.0, 0.05, 0.05625)
    u = [-8.4 + 0.025, 0.01, 8.4, 9.0]  # first cell, just past the middle, edge, outside
    v = [-36 + 2.5 * 0.05625, 0.01, 36.0, -40.0]
    ch0, ch1 = geo.channels([m] * 4, u, v)
    assert ch0.tolist() == [0, 168, 335, 335] and ch1.tolist() == [2, 640, 1279, 0]


def test_module_index_and_candidates(geo):
    rows = np.array([0, 5000, 18727])
    found = geo.module_index(geo.volume_id[rows], geo.layer_id[rows], geo.module_id[rows])
    assert found.tolist() == rows.tolist()
    with pytest.raises(DataError, match=r"module \(volume 8, layer 2, module 99999\) is not in"):
        geo.module_index(8, 2, 99999)
    with pytest.raises(DataError, match="no layer .volume 8, layer 3"):
        geo.layer(8, 3)
    # every module is among the candidates of points on it (centre and near its corners)
    for lay in geo.layers:
        mods = lay.modules
        for point in (geo.center[mods], 0.98 * geo.corners(mods)[:, 3] + 0.02 * geo.center[mods]):
            k, cand = geo.candidates(lay.index, point)
            assert np.all(np.isin(mods, cand[cand == mods[k]]))


def test_from_csv_and_written_table(tmp_path, geo):
    path = tmp_path / "detectors.csv.gz"
    geo.write_csv(path)
    again = TrackerGeometry.from_csv(tmp_path)
    assert len(again) == len(geo)
    np.testing.assert_allclose(again.center, geo.center)
    np.testing.assert_allclose(again.rotation, geo.rotation)
    pd.testing.assert_frame_equal(read_detectors(path), read_detectors(geo.source), check_like=True)
    assert geo.to_csv_bytes() == again.to_csv_bytes()  # deterministic bytes


def test_bad_tables_one_line_errors(geo):
    table = geo.table.drop(columns=["pitch_u"])
    with pytest.raises(DataError, match="missing detector columns pitch_u") as err:
        TrackerGeometry.from_table(table)
    assert "\n" not in str(err.value)
    mixed = geo.table[geo.table.volume_id.isin([8])].copy()
    rot = [f"rot_{a}{b}" for a in "xyz" for b in "uvw"]
    # one barrel module turned to face along z, like an endcap module
    mixed.loc[mixed.index[0], rot] = geo.table.loc[geo.table.volume_id == 7, rot].iloc[0].to_numpy()
    with pytest.raises(DataError, match="mixes modules facing"):
        TrackerGeometry.from_table(mixed)
    dup = pd.concat([geo.table.iloc[:3], geo.table.iloc[:1]])
    with pytest.raises(DataError, match="duplicated"):
        TrackerGeometry.from_table(dup)


@needs_shared
def test_real_hits_lie_on_their_modules(geo):
    hits = pd.read_csv(SHARED / "event000000001-hits.csv.gz")
    truth = pd.read_csv(SHARED / "event000000001-truth.csv.gz")
    shared = TrackerGeometry.from_csv(SHARED / "detectors.csv.gz")
    assert len(shared) == len(geo)
    mods = geo.module_index(hits.volume_id, hits.layer_id, hits.module_id)
    local = geo.to_local(mods, hits[["x", "y", "z"]].to_numpy())
    assert np.all(np.abs(local[:, 2]) < geo.thickness[mods])
    # the trapezoid orientation (minhu at v = -hv) holds for every real hit
    assert geo.inside(mods, local[:, 0], local[:, 1]).all()
    sig = truth.particle_id.to_numpy() > 0
    tloc = geo.to_local(mods[sig], truth[["tx", "ty", "tz"]].to_numpy()[sig])
    assert geo.inside(mods[sig], tloc[:, 0], tloc[:, 1]).all()
    # the lookup finds each hit's module from the hit position
    for lay in geo.layers:
        rows = np.flatnonzero(geo.module_layer[mods] == lay.index)
        k, cand = geo.candidates(lay.index, hits[["x", "y", "z"]].to_numpy()[rows])
        hit_has = np.zeros(rows.size, bool)
        hit_has[k[cand == mods[rows][k]]] = True
        assert hit_has.all()
