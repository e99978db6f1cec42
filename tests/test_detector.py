"""Tests of the lepton detector response (no Pythia needed)."""

from __future__ import annotations

import numpy as np
import pytest

from fivesigma.errors import ConfigError
from fivesigma.physics.detector import LeptonResponse

N = 100_000


def _toy(pdgid: int, seed: int = 0, pt_range=(10.0, 200.0), eta_max: float = 3.0):
    rng = np.random.default_rng(seed)
    pt = rng.uniform(*pt_range, N)
    eta = rng.uniform(-eta_max, eta_max, N)
    pid = np.full(N, pdgid) * rng.choice([-1, 1], N)
    return pt, eta, pid


@pytest.mark.parametrize("flavour", [11, 13])
def test_acceptance_cuts_applied_exactly(flavour):
    resp = LeptonResponse(electron_efficiency=1.0, muon_efficiency=1.0)
    pt, eta, pid = _toy(flavour, pt_range=(1.0, 30.0))
    pt_reco, keep = resp.apply(pt, eta, pid, np.random.default_rng(3))
    eta_max = resp.electron_eta_max if flavour == 11 else resp.muon_eta_max
    pt_min = resp.electron_pt_min if flavour == 11 else resp.muon_pt_min
    expected = (np.abs(eta) < eta_max) & (pt_reco > pt_min)
    # With 100 % efficiency, kept == inside the acceptance (cut on reconstructed pT).
    np.testing.assert_array_equal(keep, expected)
    assert keep.any() and not keep.all()


def test_non_leptons_are_dropped():
    resp = LeptonResponse()
    _, keep = resp.apply(np.array([50.0, 50.0]), np.array([0.0, 0.0]), np.array([22, 211]), 1)
    assert not keep.any()


@pytest.mark.parametrize(
    ("flavour", "attr"), [(11, "electron_efficiency"), (13, "muon_efficiency")]
)
def test_efficiency_matches_configured_value(flavour, attr):
    resp = LeptonResponse(**{attr: 0.8})
    # Well inside the acceptance, so only the efficiency removes leptons.
    pt, eta, pid = _toy(flavour, pt_range=(40.0, 60.0), eta_max=1.0)
    _, keep = resp.apply(pt, eta, pid, np.random.default_rng(7))
    eff = keep.mean()
    sigma = np.sqrt(0.8 * 0.2 / N)  # binomial error
    assert abs(eff - 0.8) < 4 * sigma


def test_electron_resolution_matches_formula():
    resp = LeptonResponse(electron_efficiency=1.0)
    pt = np.full(N, 50.0)
    eta = np.full(N, 0.5)
    pt_reco, _ = resp.apply(pt, eta, np.full(N, 11), np.random.default_rng(11))
    energy = 50.0 * np.cosh(0.5)
    expected = np.sqrt((0.10 / np.sqrt(energy)) ** 2 + 0.007**2)  # closed form
    assert np.std(pt_reco / pt - 1) == pytest.approx(expected, rel=0.03)
    assert np.mean(pt_reco / pt - 1) == pytest.approx(0.0, abs=4 * expected / np.sqrt(N))


@pytest.mark.parametrize("pt_value", [20.0, 500.0])
def test_muon_resolution_matches_formula(pt_value):
    resp = LeptonResponse()
    pt = np.full(N, pt_value)
    pt_reco, _ = resp.apply(pt, np.zeros(N), np.full(N, -13), np.random.default_rng(5))
    expected = np.hypot(0.01, 1e-4 * pt_value)
    assert np.std(pt_reco / pt - 1) == pytest.approx(expected, rel=0.03)


def test_eta_is_not_smeared_and_resolution_function():
    resp = LeptonResponse()
    res = resp.resolution(np.array([100.0, 100.0, 100.0]), np.zeros(3), np.array([11, 13, 22]))
    assert res[0] == pytest.approx(np.hypot(0.01, 0.007))
    assert res[1] == pytest.approx(np.hypot(0.01, 0.01))
    assert res[2] == 0.0


def test_disabled_response_is_identity():
    resp = LeptonResponse(enabled=False)
    pt, eta, pid = _toy(13, pt_range=(0.5, 30.0))
    pt_reco, keep = resp.apply(pt, eta, pid, 1)
    np.testing.assert_array_equal(pt_reco, pt)
    assert keep.all()


def test_seeded_response_is_reproducible():
    resp = LeptonResponse()
    pt, eta, pid = _toy(11)
    a = resp.apply(pt, eta, pid, np.random.default_rng(42))
    b = resp.apply(pt, eta, pid, 42)
    c = resp.apply(pt, eta, pid, 43)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_negative_or_weird_parameters_rejected():
    with pytest.raises(ConfigError, match="muon_efficiency"):
        LeptonResponse(muon_efficiency=1.5)
    with pytest.raises(ConfigError, match="electron_constant"):
        LeptonResponse(electron_constant=-0.1)


def test_to_dict_round_trip():
    resp = LeptonResponse(muon_pt_min=3.0)
    assert LeptonResponse(**resp.to_dict()) == resp
