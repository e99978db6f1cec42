"""The ``tracks`` sample: helix propagation through the TrackML detector, the measurement,
the TrackML files, truth weights, reproducibility, and a validation on a real event."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fivesigma.errors import GenerationError
from fivesigma.generate import tracks
from fivesigma.generate.tracks import TrackOptions, parse_options, propagate, simulate_event
from fivesigma.io.trackml import PART_COLUMNS, check_geometry, iter_events, read_detectors
from fivesigma.metrics.tracking import trackml_weights
from fivesigma.physics.tracker import default_geometry

SHARED = Path("/work/shared/data/trackml_subset_gnn_tracking")
needs_shared = pytest.mark.skipif(
    not (SHARED / "event000000001-truth.csv.gz").is_file(), reason="shared TrackML data absent"
)


#: the fastest Pythia setup: no hard process, a few non-diffractive interactions
FAST = {"mu": 3, "hard_process": "none", "minbias": "nondiffractive"}
#: no material, no smearing: hits at the true crossings of ideal helices
IDEAL = {"x0_pixel": 0.0, "x0_short_strip": 0.0, "x0_long_strip": 0.0, "smear": False}


@pytest.fixture(scope="module")
def geo():
    return default_geometry()


def _gun(n: int, seed: int = 1, pt=(1.0, 10.0), eta=(-4.0, 4.0)) -> dict[str, np.ndarray]:
    """Charged pions from the origin, flat in eta, phi and pT."""
    rng = np.random.default_rng(seed)
    e = rng.uniform(*eta, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    p_t = rng.uniform(*pt, n)
    q = rng.choice([-1.0, 1.0], n)
    return {
        "particle_id": (np.arange(n, dtype=np.int64) + 1) << 32,
        "particle_type": (211 * q).astype(np.int64),
        "vx": np.zeros(n),
        "vy": np.zeros(n),
        "vz": rng.normal(0.0, 30.0, n),
        "px": p_t * np.cos(phi),
        "py": p_t * np.sin(phi),
        "pz": p_t * np.sinh(e),
        "q": q,
        "mass": np.full(n, 0.13957),
        "decay_length": np.full(n, np.inf),
    }


def _propagate(geo, parts, **kwargs):
    vertex = np.stack([parts[c] for c in ("vx", "vy", "vz")], axis=1)
    mom = np.stack([parts[c] for c in ("px", "py", "pz")], axis=1)
    return propagate(geo, vertex, mom, parts["q"], parts["mass"], **kwargs)


# --------------------------------------------------------------------------------------
# Options


def test_default_options():
    opts = parse_options(None)
    assert opts == TrackOptions()
    assert (opts.mu, opts.hard_process, opts.pt_min, opts.eta_max) == (200.0, "ttbar", 0.1, 4.0)
    assert (opts.field_tesla, opts.beam_sigma_z, opts.beam_sigma_xy) == (2.0, 55.0, 0.015)
    assert parse_options({"mu": 20, "noise_fraction": None}).mu == 20.0  # None: default
    assert parse_options(opts) == opts


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mu": -1}, r"tracks option mu must be in \[0, 300\], got -1"),
        ({"mu": 301}, r"mu must be in \[0, 300\]"),
        ({"mu": "many"}, "tracks option mu must be a number, got 'many'"),
        ({"mu": True}, "must be a number"),
        ({"muu": 20}, "unknown tracks option 'muu'.*did you mean 'mu'"),
        ({"hard_process": "higgs"}, "unknown tracks hard_process 'higgs'; accepted: ttbar, none"),
        ({"minbias": "soft"}, "accepted: inelastic, nondiffractive"),
        ({"noise_fraction": 1.0}, r"noise_fraction must be in \[0, 1\)"),
        ({"inefficiency": 1.5}, r"inefficiency must be in \[0, 1\]"),
        ({"pt_min": 0}, r"pt_min must be in \(0, 1000\]"),
        ({"smear": "yes"}, "smear must be true or false"),
        ({"geometry": "/nonexistent/detectors.csv"}, "is not a file"),
        ({"mu": 0, "hard_process": "none"}, "give empty events"),
    ],
)
def test_bad_options_one_line(options, message):
    with pytest.raises(GenerationError, match=message) as err:
        parse_options(options)
    assert "\n" not in str(err.value)


def test_registered_with_generic_cache(tmp_path):
    from fivesigma.core.registry import GENERATORS
    from fivesigma.generate import PROCESSES
    from fivesigma.generate.cache import _load, cache_key

    gen = GENERATORS.get("tracks")
    assert gen is PROCESSES["tracks"] and gen.file_suffix == ".csv.gz"
    assert gen.names({"mu": 5}) == ("detectors",)
    # the other generators keep their .root files
    assert PROCESSES["jets"].file_suffix == ".root" == PROCESSES["higgs4l"].file_suffix
    a = cache_key("tracks", 2, 1, 140.0, gen.default_detector(), {"mu": 5})
    b = cache_key("tracks", 2, 1, 140.0, gen.default_detector(), {"mu": 6})
    assert a != b and a["generator"]["geometry_sha256"] == b["generator"]["geometry_sha256"]
    (tmp_path / "detectors.csv.gz").write_bytes(b"x")
    assert _load(tmp_path, ("detectors",), ".csv.gz") is None  # no provenance yet
    (tmp_path / "provenance.json").write_text("{}")
    found = _load(tmp_path, ("detectors",), ".csv.gz")
    assert found is not None and found.files["detectors"] == tmp_path / "detectors.csv.gz"


# --------------------------------------------------------------------------------------
# TrackML weights


def test_trackml_weights_definition():
    # particle 1: 4 hits, pT 4 GeV; particle 2: 3 hits (weight 0); particle 3: 25 hits
    # (n capped at 20, hits 21-25 weigh 0), pT 1.75 GeV (pT weight 0.6); noise
    pid = np.r_[[1] * 4, [2] * 3, [3] * 25, [0, 0]]
    tz = np.r_[[40.0, 10.0, 30.0, 20.0], [1.0, 2.0, 3.0], np.arange(25.0, 0.0, -1.0), [5.0, 6.0]]
    truth = pd.DataFrame({"particle_id": pid, "tz": tz})
    parts = pd.DataFrame(
        {"particle_id": [1, 2, 3], "vz": [0.0, 0.0, 0.0], "px": [4.0, 1.0, 0.0], "py": [0, 0, 1.75]}
    )
    w = trackml_weights(truth, parts)
    assert w.sum() == pytest.approx(1.0) and np.all(w[4:7] == 0) and np.all(w[-2:] == 0)
    # n = 4: the proposal at 0, 1, 2, 3 of supports k * 3 / 8: 10, 6 - 0.25/0.375, 3, 6
    order4 = np.array([10.0, 16.0 / 3.0, 3.0, 6.0]) / (10 + 16 / 3 + 3 + 6)
    p1 = w[:4][np.argsort(tz[:4])]
    np.testing.assert_allclose(p1 / p1.sum(), order4)
    # n = 25 -> 20: the first 20 hits by |tz - vz| (tz = 1..20) weigh the n = 20 row
    p3 = w[7:32][np.argsort(tz[7:32])]
    assert np.all(p3[20:] == 0)
    supports = np.arange(9) * 19 / 8
    row = np.interp(np.arange(20), supports, [10, 8, 6, 5, 3, 3, 3, 5, 6])
    np.testing.assert_allclose(p3[:20] / p3[:20].sum(), row / row.sum())
    # pT weights 1.0 and 0.6 (linear from 0.2 at 0.5 GeV to 1 at 3 GeV)
    assert p3.sum() / p1.sum() == pytest.approx(0.6)
    # deselected particles weigh 0, the rest is renormalised
    w2 = trackml_weights(truth, parts, selected=np.array([True, True, False]))
    np.testing.assert_allclose(w2[:4], w[:4] / w[:4].sum())


def test_trackml_weights_errors():
    from fivesigma.metrics import MetricError

    truth = {"particle_id": [1, 7], "tz": [0.0, 1.0]}
    parts = {"particle_id": [1], "vz": [0.0], "px": [1.0], "py": [0.0]}
    with pytest.raises(MetricError, match="1 particle id.*not in the particles table, e.g. 7"):
        trackml_weights(truth, parts)
    with pytest.raises(MetricError, match="has no column 'vz'"):
        trackml_weights(truth, {"particle_id": [1]})


@needs_shared
def test_trackml_weights_match_real_event():
    truth = pd.read_csv(SHARED / "event000000001-truth.csv.gz")
    parts = pd.read_csv(SHARED / "event000000001-particles.csv.gz")
    real = truth.weight.to_numpy()
    w = trackml_weights(truth, parts)
    nz = real > 0
    # for particles the file weighs, every hit weight is ours up to one normalisation
    ratio = w[nz] / real[nz]
    assert ratio.std() / ratio.mean() < 1e-5
    # the file also zeroes material secondaries (TrackML generation field != 0)
    generation = (parts.particle_id.to_numpy().astype(np.uint64) >> np.uint64(24)) & np.uint64(
        0xFFF
    )
    w2 = trackml_weights(truth, parts, selected=generation == 0)
    np.testing.assert_allclose(w2, real / real.sum(), rtol=1e-5, atol=1e-12)


# --------------------------------------------------------------------------------------
# Propagation


@pytest.mark.parametrize("charge", [1.0, -1.0])
def test_helix_curvature_matches_pt(geo, charge):
    # pT = 0.3 B R: a 3 GeV track in 2 T bends with R = 3 / (0.2998 * 2) m = 5.003 m
    pt, phi0 = 3.0, 0.7
    mom = [[pt * np.cos(phi0), pt * np.sin(phi0), pt * np.sinh(0.3)]]
    sim = propagate(geo, [[0.0, 0.0, 0.0]], mom, [charge], field_tesla=2.0)
    assert len(sim) >= 10
    x, y = sim.position[:, 0], sim.position[:, 1]
    # algebraic circle fit through the origin and the hits: x^2 + y^2 = 2 a x + 2 b y
    xs, ys = np.r_[0.0, x], np.r_[0.0, y]
    (a, b), *_ = np.linalg.lstsq(np.stack([2 * xs, 2 * ys], 1), xs**2 + ys**2, rcond=None)
    radius_m = np.hypot(a, b) / 1000
    assert radius_m == pytest.approx(pt / (0.299792458 * 2.0), rel=0.01)
    # positive tracks bend clockwise seen from +z (the centre is on their right)
    side = np.cos(phi0) * b - np.sin(phi0) * a
    assert np.sign(side) == -charge
    # no material: |p| and pT are conserved at every hit
    np.testing.assert_allclose(np.hypot(sim.momentum[:, 0], sim.momentum[:, 1]), pt, rtol=1e-9)
    # hits on their module planes and inside the modules, in order of path length
    local = geo.to_local(sim.module, sim.position)
    assert np.all(np.abs(local[:, 2]) < 1e-6)
    assert geo.inside(sim.module, local[:, 0], local[:, 1]).all()
    assert np.all(np.diff(sim.path) > 0)
    assert np.all(np.diff(np.hypot(x, y)) > -5)  # outgoing (overlaps: a few mm back)


def test_hits_per_particle_vs_eta(geo):
    parts = _gun(1500)
    sim = _propagate(geo, parts)
    nhits = np.bincount(sim.particle, minlength=1500)
    eta = np.arcsinh(parts["pz"] / np.hypot(parts["px"], parts["py"]))
    for lo, hi in [(0, 1), (1, 2), (2, 3), (3, 3.8)]:
        sel = (np.abs(eta) >= lo) & (np.abs(eta) < hi)
        # TrackML: about 10-15 hits for a central track, overlaps add some
        assert 11.0 <= nhits[sel].mean() <= 15.0
        assert np.quantile(nhits[sel], 0.02) >= 8
    local = geo.to_local(sim.module, sim.position)
    assert np.all(np.abs(local[:, 2]) < geo.thickness[sim.module])
    assert geo.inside(sim.module, local[:, 0], local[:, 1]).all()
    # overlapping modules give 2 hits on a layer for some tracks, never 2 on one module
    key = sim.particle * 100 + geo.module_layer[sim.module]
    assert 0.1 < 1 - np.unique(key).size / key.size < 0.3
    assert np.unique(sim.particle * 100_000 + sim.module).size == len(sim)


def test_loopers_decays_and_stops(geo):
    # a 0.2 GeV central track (R = 334 mm): outgoing leg only with half a turn
    mom = [[0.2, 0.0, 0.02]]
    half = propagate(geo, [[0.0, 0.0, 0.0]], mom, [1.0], max_turns=0.5)
    full = propagate(geo, [[0.0, 0.0, 0.0]], mom, [1.0], max_turns=1.0)
    turn = np.abs(np.arctan2(half.momentum[:, 1], half.momentum[:, 0]))
    assert np.all(turn <= np.pi) and len(full) > len(half) >= 6
    assert np.max(np.hypot(half.position[:, 0], half.position[:, 1])) > 600  # reaches 2R
    # a particle decaying after 100 mm leaves hits only before
    dec = propagate(geo, [[0.0, 0.0, 0.0]], [[2.0, 0, 0]], [1.0], decay_length=[100.0])
    assert len(dec) >= 3 and np.all(dec.path <= 100.0)
    # neutral and outside-the-tracker particles leave nothing
    assert len(propagate(geo, [[0, 0, 0], [0, 0, 5000.0]], [[1, 0, 0], [1, 0, 0]], [0, 1])) == 0


def test_material_scattering_energy_loss_and_interactions(geo):
    parts = _gun(600, seed=5, pt=(0.5, 0.6), eta=(-1, 1))
    ideal = _propagate(geo, parts)
    rng = np.random.default_rng(0)
    x0 = np.full(len(geo.layers), 0.02)
    real = _propagate(geo, parts, material=x0, rng=rng)
    # scattering: hits wander off the ideal helix, more at larger radius
    a = pd.DataFrame({"p": ideal.particle, "m": ideal.module, "x": ideal.position[:, 0]})
    b = pd.DataFrame({"p": real.particle, "m": real.module, "x2": real.position[:, 0]})
    j = a.merge(b, on=["p", "m"])
    inner = geo.module_layer[j.m] == geo.layer(8, 2).index
    outer = geo.module_layer[j.m] == geo.layer(13, 8).index
    d = np.abs(j.x - j.x2)
    assert d[inner].median() < 0.01 < d[outer].median() < 5
    # energy loss: |p| falls along each track
    p = np.linalg.norm(real.momentum, axis=1)
    same = real.particle[1:] == real.particle[:-1]
    assert np.all(np.diff(p)[same] <= 1e-12) and np.any(np.diff(p)[same] < -1e-4)
    # nuclear interactions stop hadrons at a layer crossing
    hit = _propagate(
        geo, parts, material=x0, rng=rng, interaction_length_x0=0.5, hadron=np.ones(600, bool)
    )
    inter = hit.meta["interactions"]
    assert 0.2 < inter["particle"].size / 600 < 0.6
    r = np.hypot(inter["position"][:, 0], inter["position"][:, 1])
    radii = np.array([lay.radius for lay in geo.layers if lay.barrel])
    disks = np.array([lay.z for lay in geo.layers if not lay.barrel])
    on_cylinder = np.min(np.abs(r[:, None] - radii[None, :]), axis=1) < 1e-3
    on_disk = np.min(np.abs(inter["position"][:, 2:3] - disks[None, :]), axis=1) < 1e-3
    assert np.all(on_cylinder | on_disk) and on_cylinder.mean() > 0.8
    # ... and leave no hits after that: interacting tracks are shorter
    nhits = np.bincount(hit.particle, minlength=600)
    stopped = np.isin(np.arange(600), inter["particle"])
    assert nhits[stopped].mean() < 0.8 * nhits[~stopped].mean()


# --------------------------------------------------------------------------------------
# One simulated event (no Pythia: a particle gun)


@pytest.fixture(scope="module")
def gun_event(geo):
    parts = _gun(800, seed=9, pt=(0.3, 5.0))
    opts = parse_options({"mu": 0, "noise_fraction": 0.15, "inefficiency": 0.02})
    return parts, opts, simulate_event(geo, parts, opts, np.random.default_rng(4))


def test_event_tables_follow_trackml_schema(gun_event, geo):
    _, opts, tab = gun_event
    for part, columns in PART_COLUMNS.items():
        assert set(columns) <= set(tab[part].columns)
    hits, truth, ptable, cells = tab["hits"], tab["truth"], tab["particles"], tab["cells"]
    assert list(ptable.columns) == [
        "particle_id", "particle_type", "vx", "vy", "vz", "px", "py", "pz", "q", "nhits"
    ]  # fmt: skip
    assert hits.hit_id.tolist() == list(range(1, len(hits) + 1))
    assert truth.hit_id.tolist() == hits.hit_id.tolist()
    # rows sorted by module, so the row order says nothing about the particles
    key = hits.volume_id * 10**9 + hits.layer_id * 10**6 + hits.module_id
    assert key.is_monotonic_increasing
    assert (
        np.corrcoef(hits.hit_id[truth.particle_id > 0], truth.particle_id[truth.particle_id > 0])[
            0, 1
        ]
        < 0.2
    )
    # noise: a fraction of the hits near the option, truth at the hit, zero momentum
    noise = truth.particle_id == 0
    assert noise.mean() == pytest.approx(opts.noise_fraction, abs=0.02)
    assert np.all(truth.loc[noise, ["tpx", "tpy", "tpz", "weight"]] == 0)
    np.testing.assert_allclose(
        truth.loc[noise, ["tx", "ty", "tz"]], hits.loc[noise, ["x", "y", "z"]]
    )
    # particles: unique positive ids, nhits = their truth rows, weights as TrackML
    assert ptable.particle_id.is_unique and (ptable.particle_id > 0).all()
    counts = truth[~noise].particle_id.value_counts()
    assert (ptable.set_index("particle_id").nhits.reindex(counts.index) == counts).all()
    assert ptable.nhits.sum() == (~noise).sum()
    assert truth.weight.sum() == pytest.approx(1.0, abs=1e-5)
    primary = (ptable.particle_id.to_numpy() & (0xFFF << 20)) == 0  # no material secondaries
    expected = trackml_weights(truth, ptable, selected=primary)
    np.testing.assert_allclose(truth.weight, expected, rtol=1e-6, atol=1e-12)
    # cells: every hit has at least one, channels inside the module
    assert set(cells.hit_id) == set(hits.hit_id)
    mods = geo.module_index(hits.volume_id, hits.layer_id, hits.module_id)
    cm = mods[cells.hit_id.to_numpy() - 1]
    assert (cells.ch0 >= 0).all() and (
        cells.ch0 < np.round(2 * geo.max_hu[cm] / geo.pitch_u[cm])
    ).all()
    assert (cells.ch1 >= 0).all() and (cells.ch1 < np.round(2 * geo.hv[cm] / geo.pitch_v[cm])).all()
    assert 1.0 < cells.groupby("hit_id").size().mean() < 8.0


def test_measured_hits_on_modules_with_pitch_resolution(gun_event, geo):
    _, _, tab = gun_event
    hits, truth = tab["hits"], tab["truth"]
    mods = geo.module_index(hits.volume_id, hits.layer_id, hits.module_id)
    local = geo.to_local(mods, hits[["x", "y", "z"]].to_numpy())
    assert (
        np.all(np.abs(local[:, 2]) < 1e-3)
        and geo.inside(mods, local[:, 0], local[:, 1], 1e-3).all()
    )
    sig = truth.particle_id.to_numpy() > 0
    tloc = geo.to_local(mods[sig], truth[["tx", "ty", "tz"]].to_numpy()[sig])
    res = local[sig] - tloc
    pix = geo.volume_id[mods[sig]] == 8
    assert res[pix, 0].std() == pytest.approx(0.05 / np.sqrt(12), rel=0.15)
    assert res[pix, 1].std() == pytest.approx(0.05625 / np.sqrt(12), rel=0.15)
    long_strips = geo.volume_id[mods[sig]] == 17
    assert 2.0 < res[long_strips, 1].std() < 3.5  # 10.8 mm / sqrt(12) = 3.1, clipped at the ends
    assert res[long_strips, 0].std() == pytest.approx(0.12 / np.sqrt(12), rel=0.2)


def test_cluster_length_follows_the_sensor_thickness(gun_event, geo):
    """A particle crossing a pixel at incidence tan along v fires about 1 + t |tan| / pitch
    channels: the real TrackML event follows this with t = module_t (0.15 mm, not twice
    it), with correlation 0.97 in the pixel barrel; the simulation must do the same."""
    _, _, tab = gun_event
    hits, truth, cells = tab["hits"], tab["truth"], tab["cells"]
    ext = cells.groupby("hit_id").ch1.agg(lambda c: c.max() - c.min() + 1)
    mods = geo.module_index(hits.volume_id, hits.layer_id, hits.module_id)
    barrel = (geo.volume_id[mods] == 8) & (truth.particle_id.to_numpy() > 0)
    ldir = geo.local_direction(mods[barrel], truth[["tpx", "tpy", "tpz"]].to_numpy()[barrel])
    x = np.abs(ldir[:, 1] / ldir[:, 2]) / geo.pitch_v[mods[barrel]]
    y = ext.reindex(hits.hit_id[barrel]).to_numpy() - 1.0
    x, y = x[x < 40], y[x < 40]  # below the 20-channel cap of grazing loopers
    fitted_thickness = (x * y).sum() / (x * x).sum()
    assert fitted_thickness == pytest.approx(0.15, rel=0.1)
    assert np.corrcoef(x, y)[0, 1] > 0.9
    # noise clusters look like the particles' clusters of their volume, not single cells
    noise = truth.particle_id.to_numpy() == 0
    noise_barrel = noise & (geo.volume_id[mods] == 8)
    sizes = cells.groupby("hit_id").size()
    ratio = (
        sizes.reindex(hits.hit_id[noise_barrel]).mean() / sizes.reindex(hits.hit_id[barrel]).mean()
    )
    assert 0.5 < ratio < 2.0


def test_inefficiency_drops_hits(geo):
    parts = _gun(400, seed=2)
    count = {}
    for ineff in (0.0, 0.3):
        opts = parse_options({**IDEAL, "noise_fraction": 0.0, "inefficiency": ineff})
        tab = simulate_event(geo, parts, opts, np.random.default_rng(1))
        count[ineff] = len(tab["hits"])
    assert count[0.3] / count[0.0] == pytest.approx(0.7, abs=0.03)


def test_nuclear_secondaries_in_the_event(geo):
    parts = _gun(400, seed=3, pt=(0.5, 2.0), eta=(-1.0, 1.0))
    opts = parse_options({"mu": 0, "interaction_length_x0": 0.3})
    tab = simulate_event(geo, parts, opts, np.random.default_rng(6))
    pid = tab["particles"].particle_id.to_numpy()
    sec = (pid & ((1 << 32) - 1)) >= (1 << 20)
    assert sec.sum() > 20
    parent = pid[sec] & ~np.int64(((1 << 12) - 1) << 20)
    assert np.isin(parent, parts["particle_id"]).all()
    sp = tab["particles"][sec]
    r = np.hypot(sp.vx, sp.vy)
    assert (r > 25).all()  # born at a layer, not at the beam line
    assert set(np.abs(sp.particle_type)) <= {211, 2212}
    assert tab["particles"].nhits[sec].sum() > 0
    # their hits weigh 0, as the material secondaries of the TrackML events
    truth = tab["truth"]
    assert (truth.weight[truth.particle_id.isin(pid[sec])] == 0).all()
    assert truth.weight.sum() == pytest.approx(1.0, abs=1e-5)


# --------------------------------------------------------------------------------------
# With Pythia


@pytest.mark.pythia
def test_generate_reads_back(tmp_path, geo):
    pytest.importorskip("pythia8mc")
    from fivesigma.generate import generate

    opts = {"mu": 2, "minbias": "nondiffractive"}
    sample = generate(
        "tracks", events=2, out=tmp_path, seed=3, jobs=1, progress=False, options=opts
    )
    assert sample.files == {"detectors": tmp_path / "detectors.csv.gz"}
    # the packaged geometry travels with the events, byte for byte
    assert (tmp_path / "detectors.csv.gz").read_bytes() == Path(geo.source).read_bytes()
    detectors = read_detectors(tmp_path)
    events = list(iter_events(tmp_path, parts=("hits", "truth", "particles", "cells")))
    assert [ev.event_id for ev in events] == [1, 2]
    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert prov["events"] == ["event000000001", "event000000002"] and prov["options"]["mu"] == 2
    displaced = 0
    for ev in events:
        check_geometry(ev, detectors)
        assert ev.truth.weight.sum() == pytest.approx(1.0, abs=1e-5)
        p = ev.particles
        assert p.particle_id.is_unique and (p.particle_id > 0).all() and set(p.q) <= {-1, 1}
        pt = np.hypot(p.px, p.py)
        assert (pt > 0.1).all() and (np.abs(np.arcsinh(p.pz / pt)) < 4).all()
        assert 0.1 < ev.noise.mean() < 0.2
        # one ttbar event: hundreds of charged particles, thousands of hits
        assert len(p) > 100 and len(ev.hits) > 1000
        displaced += int((np.hypot(p.vx, p.vy) > 1.0).sum())  # K0S, Lambda daughters
    assert displaced > 0
    # primary vertices spread by the beam spot (sigma_z = 55 mm)
    prim = pd.concat(
        [ev.particles[np.hypot(ev.particles.vx, ev.particles.vy) < 0.1] for ev in events]
    )
    assert 5 < prim.vz.std() < 200 and prim.vx.std() < 0.05


@pytest.mark.slow
@pytest.mark.pythia
def test_same_seed_same_files_whatever_jobs(tmp_path):
    pytest.importorskip("pythia8mc")
    from fivesigma.generate import generate

    opts = {**FAST, "mu": 1}
    n = tracks.BLOCK_EVENTS + 1  # two blocks
    a = generate("tracks", n, tmp_path / "a", seed=7, jobs=1, progress=False, options=opts)
    b = generate("tracks", n, tmp_path / "b", seed=7, jobs=2, progress=False, options=opts)
    names = sorted(p.name for p in a.directory.glob("*.csv.gz"))
    assert len(names) == 4 * n + 1
    assert names == sorted(p.name for p in b.directory.glob("*.csv.gz"))
    for name in names:
        assert (a.directory / name).read_bytes() == (b.directory / name).read_bytes(), name
    c = generate("tracks", 1, tmp_path / "c", seed=8, jobs=1, progress=False, options=opts)
    first = "event000000001-hits.csv.gz"
    assert (c.directory / first).read_bytes() != (a.directory / first).read_bytes()


@pytest.mark.pythia
def test_cached_sample_and_cli(tmp_path, capsys):
    pytest.importorskip("pythia8mc")
    from fivesigma.cli import main
    from fivesigma.generate import cached_sample

    cache = tmp_path / "cache"
    kwargs = {"events": 1, "seed": 2, "jobs": 1, "cache_dir": cache, "progress": False}
    sample = cached_sample("tracks", options=FAST, **kwargs)
    assert sample.directory.parent == cache and sample.directory.name.startswith("tracks-")
    hits = sample.directory / "event000000001-hits.csv.gz"
    stamp = hits.stat().st_mtime_ns
    again = cached_sample("tracks", options=FAST, **kwargs)
    assert again.directory == sample.directory and hits.stat().st_mtime_ns == stamp  # reused
    assert [ev.event_id for ev in iter_events(again.directory)] == [1]

    out = tmp_path / "cli"
    argv = ["generate", "tracks", "--events", "1", "--out", str(out), "--jobs", "1", "-q"]
    code = main(
        [*argv, "--mu", "3", "--hard-process", "none", "--option", "minbias=nondiffractive"]
    )
    captured = capsys.readouterr()
    assert code == 0 and "1 TrackML events" in captured.out
    assert (
        json.loads((out / "provenance.json").read_text())["options"]["minbias"] == "nondiffractive"
    )
    for bad, message in (
        (["--option", "nosie_fraction=0.1"], "unknown tracks option 'nosie_fraction'"),
        (["--option", "noise_fraction"], "--option expects KEY=VALUE"),
        (["--pt-max", "5"], "--pt-max applies to 'fivesigma generate jets'"),
    ):
        assert main([*argv, *bad]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    jets_argv = ["generate", "jets", "--events", "1", "--out", str(tmp_path / "j"), "--mu", "5"]
    assert main(jets_argv) == 2
    assert "--mu applies to 'fivesigma generate tracks'" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# Validation against the real TrackML event


def _real_event():
    hits = pd.read_csv(SHARED / "event000000001-hits.csv.gz")
    truth = pd.read_csv(SHARED / "event000000001-truth.csv.gz")
    parts = pd.read_csv(SHARED / "event000000001-particles.csv.gz")
    return hits.merge(truth, on="hit_id"), parts


@needs_shared
def test_real_event_primaries_through_the_simulation(geo):
    """Real particles (vertex, momentum, charge) through the ideal simulation (no material,
    smearing, inefficiency or noise): the simulated hits of primaries above 1 GeV land on
    the real hits' modules, within tens of microns in the pixels (the real detector has
    material and a non-uniform field, hence mm in the outer strips)."""
    hits, parts = _real_event()
    generation = (parts.particle_id.to_numpy().astype(np.uint64) >> np.uint64(24)) & np.uint64(
        0xFFF
    )
    pt = np.hypot(parts.px, parts.py).to_numpy()
    primary = (generation == 0) & (np.hypot(parts.vx, parts.vy).to_numpy() < 1.0)
    sel = np.flatnonzero(primary & (pt > 1.0))
    columns = ("particle_id", "particle_type", "vx", "vy", "vz", "px", "py", "pz", "q")
    table = {c: parts[c].to_numpy() for c in columns}
    off = {"noise_fraction": 0.0, "inefficiency": 0.0, "nuclear_interactions": False}
    opts = parse_options({**IDEAL, **off})
    tab = simulate_event(geo, {k: v[sel] for k, v in table.items()}, opts, np.random.default_rng(0))
    sim = tab["hits"].merge(tab["truth"], on="hit_id")
    real = hits[hits.particle_id.isin(parts.particle_id.to_numpy()[sel])]
    key = ["particle_id", "volume_id", "layer_id", "module_id"]
    j = real.merge(sim[[*key, "tx", "ty", "tz"]], on=key, how="left", suffixes=("", "_sim"))
    found = j.tx_sim.notna()
    dist = np.sqrt((j.tx - j.tx_sim) ** 2 + (j.ty - j.ty_sim) ** 2 + (j.tz - j.tz_sim) ** 2)
    pixel = j.volume_id.isin([7, 8, 9])
    assert len(sel) >= 40
    assert found[pixel].mean() > 0.97  # real pixel hits with a simulated hit on the module
    assert found.mean() > 0.9
    assert dist[pixel].median() < 0.15  # mm
    assert dist[~pixel].median() < 3.0
    # the first hit of each particle (nearest its vertex in z) is on the same module
    vz = parts.set_index("particle_id").vz
    ids = ["volume_id", "layer_id", "module_id"]

    def first(t: pd.DataFrame) -> pd.DataFrame:
        dz = (t.tz - t.particle_id.map(vz)).abs()
        return t.loc[dz.groupby(t.particle_id).idxmin(), ["particle_id", *ids]]

    pair = first(real).merge(first(sim), on="particle_id", suffixes=("", "_sim"))
    same = (pair[ids].to_numpy() == pair[[f"{c}_sim" for c in ids]].to_numpy()).all(axis=1)
    assert same.mean() > 0.9

    # the set of layers crossed agrees for most particles (the real ones may stop early)
    def layers(t: pd.DataFrame) -> pd.Series:
        return (t.volume_id * 100 + t.layer_id).groupby(t.particle_id).apply(frozenset)

    lr, ls = layers(real), layers(sim)
    assert (lr == ls.reindex(lr.index)).mean() > 0.6
