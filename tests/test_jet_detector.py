"""Tests of the particle-level detector response for jet constituents (no Pythia)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fivesigma.errors import ConfigError
from fivesigma.physics.jet_detector import (
    CHARGED_HADRON,
    ELECTRON,
    MUON,
    NEUTRAL_HADRON,
    PHOTON,
    JetDetectorResponse,
    impact_parameters,
    merge_cells,
    particle_class,
)


def _particles(pt, eta, phi, pid, charge, mass=0.0):
    """Flat four-momenta from (pt, eta, phi, mass) arrays."""
    pt, eta, phi = (np.asarray(a, dtype=np.float64) for a in (pt, eta, phi))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
    n = pt.size
    return (
        px,
        py,
        pz,
        e,
        np.broadcast_to(pid, n).astype(np.int32),
        np.broadcast_to(charge, n).astype(np.float64),
    )


def _binomial_ok(k: int, n: int, p: float, nsigma: float = 5.0) -> bool:
    return abs(k - n * p) <= nsigma * math.sqrt(n * p * (1 - p)) + 1


@pytest.mark.parametrize(
    ("pt", "eta", "expected"),
    [(0.5, 0.3, 0.70), (5.0, -1.0, 0.95), (0.5, 2.0, 0.60), (20.0, 2.2, 0.85), (0.05, 0.0, 0.0)],
)
def test_tracking_efficiency_within_binomial_errors(pt, eta, expected):
    n = 20_000
    resp = JetDetectorResponse()
    args = _particles(np.full(n, pt), np.full(n, eta), np.zeros(n), 211, 1.0, mass=0.1396)
    out = resp.apply(*args, event=np.arange(n), rng=np.random.default_rng(3))
    kept = int(np.sum(out["charge"] != 0))
    assert _binomial_ok(kept, n, expected)


def test_charged_outside_tracker_not_reconstructed():
    resp = JetDetectorResponse()
    args = _particles(np.full(100, 50.0), np.full(100, 2.7), np.zeros(100), -211, -1.0)
    out = resp.apply(*args, event=np.arange(100), rng=1)
    assert out["px"].size == 0


def test_track_resolution_formula_and_smearing():
    resp = JetDetectorResponse(track_efficiency_barrel_high=1.0)
    pt = np.array([1.0, 100.0, 1000.0])
    expected = np.sqrt(0.01**2 + (1.5e-4 * pt) ** 2)
    np.testing.assert_allclose(resp.track_resolution(pt), expected, rtol=1e-12)

    n = 20_000
    args = _particles(np.full(n, 100.0), np.full(n, 0.5), np.full(n, 1.0), 211, 1.0)
    out = resp.apply(*args, event=np.arange(n), rng=np.random.default_rng(5))
    assert out["px"].size == n
    ratio = np.hypot(out["px"], out["py"]) / 100.0
    sigma = math.hypot(0.01, 0.015)
    # Relative statistical error of a sample standard deviation is ~1/sqrt(2n).
    assert abs(ratio.std() / sigma - 1) < 5 / math.sqrt(2 * n)
    assert abs(ratio.mean() - 1) < 5 * sigma / math.sqrt(n)
    # Direction unchanged: eta and phi of every track are the input's.
    eta = np.arcsinh(out["pz"] / np.hypot(out["px"], out["py"]))
    np.testing.assert_allclose(eta, 0.5, atol=1e-9)
    np.testing.assert_allclose(np.arctan2(out["py"], out["px"]), 1.0, atol=1e-9)


@pytest.mark.parametrize(("pid", "stoch", "const"), [(22, 0.10, 0.007), (2112, 0.50, 0.03)])
def test_calorimeter_resolution(pid, stoch, const):
    resp = JetDetectorResponse()
    e = np.array([4.0, 50.0, 400.0])
    expected = np.sqrt(stoch**2 / e + const**2)
    method = resp.ecal_resolution if pid == 22 else resp.hcal_resolution
    np.testing.assert_allclose(method(e), expected, rtol=1e-12)

    # One particle per event: no merging, so the spread is the single-cell resolution.
    n = 20_000
    args = _particles(np.full(n, 50.0), np.zeros(n), np.zeros(n), pid, 0.0)
    out = resp.apply(*args, event=np.arange(n), rng=np.random.default_rng(9))
    assert out["energy"].size == n
    sigma = math.sqrt(stoch**2 / 50.0 + const**2)
    assert abs((out["energy"] / 50.0).std() / sigma - 1) < 5 / math.sqrt(2 * n)


def test_merging_conserves_energy_within_a_cell():
    rng = np.random.default_rng(2)
    n = 5000
    event = rng.integers(0, 3, n)
    eta = rng.uniform(-0.3, 0.3, n)
    phi = rng.uniform(-math.pi, math.pi, n)
    energy = rng.exponential(5.0, n)
    pid = np.full(n, 22)
    size = 0.1
    cells = merge_cells(event, eta, phi, energy, pid, size)
    # Independent reference: a dictionary keyed by (event, floor(eta/size), phi bin).
    nphi = round(2 * math.pi / size)
    ref: dict[tuple[int, int, int], float] = {}
    for ev, et, ph, en in zip(event, eta, phi, energy, strict=True):
        key = (int(ev), math.floor(et / size), int((ph + math.pi) // (2 * math.pi / nphi)))
        ref[key] = ref.get(key, 0.0) + en
    assert cells["energy"].size == len(ref)
    np.testing.assert_allclose(np.sort(cells["energy"]), np.sort(list(ref.values())), rtol=1e-12)
    assert cells["energy"].sum() == pytest.approx(energy.sum(), rel=1e-12)
    # Cell centres lie within half a cell of every deposit they hold.
    assert np.all(np.abs(cells["eta"] / size - np.floor(cells["eta"] / size) - 0.5) < 1e-9)


def test_photons_in_one_cell_merge_and_separate_events_do_not():
    # No smearing: the cell energy must be exactly the sum.
    resp = JetDetectorResponse(ecal_stochastic=0.0, ecal_constant=0.0)
    args = _particles([10.0, 20.0, 30.0], [0.101, 0.102, 0.101], [0.501, 0.502, 0.501], 22, 0.0)
    energy = args[3]
    out = resp.apply(*args, event=np.array([0, 0, 1]), rng=1)
    assert out["energy"].size == 2
    by_event = dict(zip(out["event"].tolist(), out["energy"].tolist(), strict=True))
    assert by_event[0] == pytest.approx(energy[0] + energy[1], rel=1e-12)
    assert by_event[1] == pytest.approx(energy[2], rel=1e-12)
    # Massless deposit at the cell centre.
    mass2 = out["energy"] ** 2 - out["px"] ** 2 - out["py"] ** 2 - out["pz"] ** 2
    np.testing.assert_allclose(mass2, 0.0, atol=1e-9)


def test_neutral_thresholds():
    resp = JetDetectorResponse(
        ecal_stochastic=0.0, ecal_constant=0.0, hcal_stochastic=0.0, hcal_constant=0.0
    )
    args = _particles(
        [0.3, 0.8, 0.8, 2.0], [0.0, 1.0, -1.0, 2.0], [0.0, 1.0, 2.0, 3.0], [22, 22, 130, 2112], 0.0
    )
    out = resp.apply(*args, event=np.arange(4), rng=1)
    # 0.3 GeV photon < 0.5 GeV dropped; 0.8*cosh(1) GeV photon kept; K_L with
    # 0.8*cosh(1) = 1.23 GeV kept; neutron 2*cosh(2) kept.
    assert sorted(out["pid"].tolist()) == [22, 130, 2112]


def test_disabled_is_identity():
    rng = np.random.default_rng(4)
    args = _particles(
        rng.exponential(5, 50),
        rng.normal(0, 2, 50),
        rng.uniform(-3, 3, 50),
        rng.choice([22, 211, -211, 130, 11]),
        0.0,
    )
    out = JetDetectorResponse(enabled=False).apply(*args, event=np.arange(50), rng=1)
    for name, arr in zip(("px", "py", "pz", "energy", "pid", "charge"), args, strict=True):
        np.testing.assert_array_equal(out[name], arr)
    np.testing.assert_array_equal(out["event"], np.arange(50))


def test_seeded_reproducible():
    rng = np.random.default_rng(8)
    n = 300
    pid = rng.choice([22, 211, -211, 130], n)
    charge = np.where(np.abs(pid) == 211, np.sign(pid), 0).astype(float)
    args = list(
        _particles(rng.exponential(5, n), rng.normal(0, 1, n), rng.uniform(-3, 3, n), 0, 0.0)
    )
    args[4], args[5] = pid, charge
    event = rng.integers(0, 5, n)
    resp = JetDetectorResponse()
    a = resp.apply(*args, event=event, rng=11)
    b = resp.apply(*args, event=event, rng=np.random.default_rng(11))
    c = resp.apply(*args, event=event, rng=12)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert a["px"].size != c["px"].size or not np.array_equal(a["px"], c["px"])
    # Grouped by event.
    assert np.all(np.diff(a["event"]) >= 0)


def test_particle_class():
    pid = np.array([211, -321, 130, 2112, 22, 11, -11, 13, -13, 2212])
    charge = np.array([1, -1, 0, 0, 0, -1, 1, -1, 1, 1])
    expected = [
        CHARGED_HADRON,
        CHARGED_HADRON,
        NEUTRAL_HADRON,
        NEUTRAL_HADRON,
        PHOTON,
        ELECTRON,
        ELECTRON,
        MUON,
        MUON,
        CHARGED_HADRON,
    ]
    assert particle_class(pid, charge).tolist() == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        {"track_efficiency_barrel_low": 1.5},
        {"ecal_cell": 0.0},
        {"hcal_constant": -1.0},
        {"d0_constant": -0.01},
        {"dz_inverse_pt": float("nan")},
    ],
)
def test_bad_parameters(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ConfigError, match=name):
        JetDetectorResponse(**kwargs)


# --------------------------------------------------------------------------------------
# Track impact parameters


def test_impact_parameters_by_hand_with_sign():
    # (vertex mm, momentum GeV) -> (d0, dz) worked out on paper.
    cases = [
        # At x = 1 mm going along +y: passes the beam line counter-clockwise, d0 = +1.
        ((1.0, 0.0, 5.0), (0.0, 10.0, 10.0), (1.0, 5.0)),
        # At y = 2 mm going along +x: clockwise, d0 = -2; closest approach at t = 0.
        ((0.0, 2.0, 0.0), (4.0, 0.0, 5.0), (-2.0, 0.0)),
        # Radially outwards from (3, 4, 1): d0 = 0, and the line back to the beam line
        # loses 5 mm transversally, so 5 mm * pz/pT = 5 * 2/1 = 10 mm in z.
        ((3.0, 4.0, 1.0), (0.6, 0.8, 2.0), (0.0, 1.0 - 10.0)),
        # (4 - 6)/5 and 3 - (3 + 8) * 5/25.
        ((1.0, 2.0, 3.0), (3.0, 4.0, 5.0), (-0.4, 0.8)),
        # pT = 0: d0 = 0, dz = z.
        ((1.0, 1.0, 7.0), (0.0, 0.0, 3.0), (0.0, 7.0)),
    ]
    v = np.array([c[0] for c in cases]).T
    p = np.array([c[1] for c in cases]).T
    d0, dz = impact_parameters(*v, *p)
    np.testing.assert_allclose(d0, [c[2][0] for c in cases], atol=1e-12)
    np.testing.assert_allclose(dz, [c[2][1] for c in cases], atol=1e-12)


def test_impact_parameters_are_the_point_of_closest_approach():
    rng = np.random.default_rng(21)
    n = 200
    v = rng.normal(0, 2.0, (3, n))
    p = rng.normal(0, 10.0, (3, n))
    d0, dz = impact_parameters(*v, *p)
    # Brute force along the line (a grid in the path parameter, then a finer one around
    # its best point): the transverse distance to the z axis is smallest at |d0|, and
    # there z = dz.
    cols = np.arange(n)
    lo = -2.0 * np.hypot(*v[:2]) / np.hypot(*p[:2])
    width = -2.0 * lo
    for _ in range(2):
        t = lo + np.linspace(0.0, 1.0, 2001)[:, None] * width
        x, y, z = (v[k] + t * p[k] for k in range(3))
        best = np.argmin(np.hypot(x, y), axis=0)
        width = 2.0 * width / 2000
        lo = t[best, cols] - width / 2
    np.testing.assert_allclose(np.abs(d0), np.hypot(x, y)[best, cols], atol=1e-6)
    np.testing.assert_allclose(dz, z[best, cols], atol=1e-4)
    # The sign is that of the angular momentum L_z = x py - y px; the scale of the
    # momentum does not matter.
    assert np.all(np.sign(d0) == np.sign(v[0] * p[1] - v[1] * p[0]))
    d0b, dzb = impact_parameters(*v, *(7.0 * p))
    np.testing.assert_allclose(d0b, d0, rtol=1e-12)
    np.testing.assert_allclose(dzb, dz, rtol=1e-12, atol=1e-12)


def _displaced(n, seed, pid=211, charge=1.0):
    """n particles of pT 0.3-50 GeV in the barrel with displaced production vertices."""
    rng = np.random.default_rng(seed)
    pt = 0.3 + rng.exponential(8.0, n)
    args = _particles(pt, rng.uniform(-1.4, 1.4, n), rng.uniform(-3, 3, n), pid, charge)
    vertex = tuple(rng.normal(0, s, n) for s in (0.5, 0.5, 2.0))
    return args, vertex


def test_impact_parameter_resolution_formula():
    resp = JetDetectorResponse()
    pt = np.array([0.5, 1.0, 10.0, 1000.0])
    s_d0, s_dz = resp.impact_parameter_resolution(pt)
    np.testing.assert_allclose(s_d0, np.sqrt(0.010**2 + (0.090 / pt) ** 2), rtol=1e-12)
    np.testing.assert_allclose(s_dz, np.sqrt(0.030**2 + (0.100 / pt) ** 2), rtol=1e-12)
    # CMS-like: ~100 um at 1 GeV, ~10 um at high pT.
    assert 0.085 < s_d0[1] < 0.095 and 0.0099 < s_d0[3] < 0.0101


def test_impact_parameter_smearing_has_the_documented_sigma():
    n = 20_000
    resp = JetDetectorResponse(track_efficiency_barrel_low=1.0, track_efficiency_barrel_high=1.0)
    args, vertex = _displaced(n, seed=13)
    d0_true, dz_true = impact_parameters(*vertex, *args[:3])
    # One particle per event: the output tracks are the inputs, in order.
    out = resp.apply(*args, event=np.arange(n), rng=np.random.default_rng(17), vertex=vertex)
    assert out["d0"].size == n
    pt_reco = np.hypot(out["px"], out["py"])
    s_d0, s_dz = resp.impact_parameter_resolution(pt_reco)
    np.testing.assert_allclose(out["d0err"], s_d0, rtol=1e-12)
    np.testing.assert_allclose(out["dzerr"], s_dz, rtol=1e-12)
    assert out["d0err"].min() > 0.01 and out["d0err"].max() > 0.1  # really pT dependent
    for name, true in (("d0", d0_true), ("dz", dz_true)):
        pull = (out[name] - true) / out[f"{name}err"]
        # Relative error of a sample std is ~1/sqrt(2n); of the mean 1/sqrt(n).
        assert abs(pull.std() - 1) < 5 / math.sqrt(2 * n), name
        assert abs(pull.mean()) < 5 / math.sqrt(n), name
        # Gaussian: 99.73 % within 3 sigma (binomial error 5 sigma).
        assert _binomial_ok(int(np.sum(np.abs(pull) < 3)), n, 0.9973), name
    # Smearing is of the order of sigma, far below the displacements themselves.
    assert np.std(out["d0"] - d0_true) < 0.2 * np.std(d0_true)


def test_impact_parameters_of_neutrals_are_zero():
    n = 500
    args, vertex = _displaced(n, seed=4, pid=22, charge=0.0)
    hadrons, hvertex = _displaced(n, seed=5, pid=2112, charge=0.0)
    both = [np.concatenate([a, b]) for a, b in zip(args, hadrons, strict=True)]
    vert = tuple(np.concatenate([a, b]) for a, b in zip(vertex, hvertex, strict=True))
    assert np.all(np.abs(impact_parameters(*vert, *both[:3])[0]) > 0)  # would be displaced
    for resp in (JetDetectorResponse(), JetDetectorResponse(enabled=False)):
        out = resp.apply(*both, event=np.arange(2 * n), rng=3, vertex=vert)
        assert out["energy"].size > 0 and np.all(out["charge"] == 0)
        for name in ("d0", "dz", "d0err", "dzerr"):
            assert np.all(out[name] == 0), (resp.enabled, name)


def test_disabled_response_stores_true_impact_parameters_and_zero_errors():
    n = 300
    args, vertex = _displaced(n, seed=6)
    charge = np.where(np.arange(n) % 3 == 0, 0.0, args[5])  # a third neutral
    args = (*args[:5], charge)
    out = JetDetectorResponse(enabled=False).apply(*args, event=np.arange(n), rng=1, vertex=vertex)
    d0, dz = impact_parameters(*vertex, *args[:3])
    charged = charge != 0
    np.testing.assert_array_equal(out["d0"], np.where(charged, d0, 0.0))
    np.testing.assert_array_equal(out["dz"], np.where(charged, dz, 0.0))
    assert np.all(out["d0"][charged] != 0)
    assert np.all(out["d0err"] == 0) and np.all(out["dzerr"] == 0)


def test_zero_resolution_keeps_true_values_and_calo_cells_have_none():
    resp = JetDetectorResponse(
        d0_constant=0.0, d0_inverse_pt=0.0, dz_constant=0.0, dz_inverse_pt=0.0
    )
    args = _particles([20.0, 20.0], [0.3, 0.3], [1.0, -2.0], [211, 22], [1.0, 0.0])
    vertex = (np.array([0.3, 0.3]), np.array([-0.1, -0.1]), np.array([2.0, 2.0]))
    out = resp.apply(*args, event=np.zeros(2, dtype=int), rng=2, vertex=vertex)
    d0, dz = impact_parameters(*vertex, *args[:3])
    track = out["charge"] != 0
    assert track.sum() == 1 and (~track).sum() == 1  # the pion and one ECAL cell
    np.testing.assert_allclose(out["d0"][track], d0[0], rtol=1e-12)
    np.testing.assert_allclose(out["dz"][track], dz[0], rtol=1e-12)
    assert out["d0"][~track] == 0 and out["dz"][~track] == 0 and out["d0err"][~track] == 0


def test_vertices_do_not_change_the_kinematics_of_a_seed():
    rng = np.random.default_rng(8)
    n = 400
    pid = rng.choice([22, 211, -211, 130], n)
    charge = np.where(np.abs(pid) == 211, np.sign(pid), 0).astype(float)
    args, vertex = _displaced(n, seed=9)
    args = (*args[:4], pid, charge)
    event = np.sort(rng.integers(0, 5, n))
    resp = JetDetectorResponse()
    a = resp.apply(*args, event=event, rng=11)
    b = resp.apply(*args, event=event, rng=11, vertex=vertex)
    for key in ("px", "py", "pz", "energy", "pid", "charge", "event", "d0err", "dzerr"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # Same noise, shifted by the true impact parameters of the tracks.
    assert not np.array_equal(a["d0"], b["d0"])
    c = resp.apply(*args, event=event, rng=11, vertex=vertex)
    np.testing.assert_array_equal(b["d0"], c["d0"])


def test_vertex_of_wrong_length_is_refused():
    args = _particles([10.0, 5.0], [0.0, 0.1], [0.0, 0.2], 211, 1.0)
    with pytest.raises(ValueError, match="vertex"):
        JetDetectorResponse().apply(*args, rng=1, vertex=(np.zeros(1), np.zeros(2), np.zeros(2)))
