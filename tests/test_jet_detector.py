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
    "kwargs", [{"track_efficiency_barrel_low": 1.5}, {"ecal_cell": 0.0}, {"hcal_constant": -1.0}]
)
def test_bad_parameters(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ConfigError, match=name):
        JetDetectorResponse(**kwargs)
