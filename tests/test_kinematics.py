"""Kinematics against closed forms and a hand-written E/px/py/pz reference."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from fivesigma.errors import DataError
from fivesigma.physics import (
    MZ,
    delta_phi,
    delta_r,
    invariant_mass,
    p4,
    pt_of_sum,
    z_pairing,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


# ------------------------------------------------------------------ independent reference
def _cartesian(pt, eta, phi, mass):
    """E, px, py, pz from pt/eta/phi/m with plain numpy (independent of `vector`)."""
    px = pt * np.cos(phi)
    py = pt * np.sin(phi)
    pz = pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
    return e, px, py, pz


def _reference_mass_and_pt(pt, eta, phi, mass):
    """Per-event invariant mass and pT of the sum, from Python lists of lists."""
    masses, pts = [], []
    for ev in zip(pt, eta, phi, mass, strict=True):
        if len(ev[0]) == 0:
            masses.append(np.nan)
            pts.append(np.nan)
            continue
        e, px, py, pz = (np.sum(c) for c in _cartesian(*(np.asarray(a) for a in ev)))
        masses.append(np.sqrt(max(e**2 - px**2 - py**2 - pz**2, 0.0)))
        pts.append(np.hypot(px, py))
    return np.array(masses), np.array(pts)


def _random_events(seed: int, n_events: int = 300, max_obj: int = 6):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, max_obj + 1, size=n_events)
    total = int(counts.sum())
    flat = {
        "pt": rng.uniform(5.0, 200.0, total),
        "eta": rng.uniform(-2.5, 2.5, total),
        "phi": rng.uniform(-np.pi, np.pi, total),
        "mass": rng.uniform(0.0, 10.0, total),
    }
    return {k: ak.unflatten(v, counts) for k, v in flat.items()}


# --------------------------------------------------------------------------- tests
def test_back_to_back_massless_45_gev_gives_90():
    # |p| = 45 GeV each: pT = 45 / cosh(eta), opposite eta and phi
    pt = 45.0 / np.cosh(0.7)
    m = invariant_mass(
        ak.Array([[pt, pt]]),
        ak.Array([[0.7, -0.7]]),
        ak.Array([[0.3, 0.3 - np.pi]]),
        ak.Array([[0.0, 0.0]]),
    )
    assert m.dtype == np.float64
    np.testing.assert_allclose(m, [90.0], rtol=1e-9)


def test_invariant_mass_and_pt_match_handwritten_reference():
    ev = _random_events(seed=1)
    ref_m, ref_pt = _reference_mass_and_pt(
        *(ak.to_list(ev[k]) for k in ("pt", "eta", "phi", "mass"))
    )
    m = invariant_mass(ev["pt"], ev["eta"], ev["phi"], ev["mass"])
    pt = pt_of_sum(ev["pt"], ev["eta"], ev["phi"], ev["mass"])
    np.testing.assert_allclose(m, ref_m, rtol=1e-7, atol=1e-6)
    np.testing.assert_allclose(pt, ref_pt, rtol=1e-7, atol=1e-6)
    # events without objects are NaN, all others finite
    empty = ak.to_numpy(ak.num(ev["pt"])) == 0
    assert empty.any() and np.isnan(m[empty]).all() and np.isfinite(m[~empty]).all()


def test_invariant_mass_first_n_objects_and_too_few_is_nan():
    ev = _random_events(seed=2)
    sub = {k: ev[k][:, :2] for k in ev}
    ref_m, _ = _reference_mass_and_pt(*(ak.to_list(sub[k]) for k in ("pt", "eta", "phi", "mass")))
    ref_m[ak.to_numpy(ak.num(ev["pt"])) < 2] = np.nan
    m = invariant_mass(ev["pt"], ev["eta"], ev["phi"], ev["mass"], n=2)
    np.testing.assert_allclose(m, ref_m, rtol=1e-7, atol=1e-6)


def test_single_object_mass_is_its_own_mass_and_2d_numpy_input_works():
    pt = np.array([[50.0, 20.0], [10.0, 30.0]])
    eta = np.array([[0.1, -1.0], [2.0, 0.0]])
    phi = np.array([[0.0, 2.0], [-3.0, 1.0]])
    mass = np.array([[0.105, 0.105], [0.000511, 4.0]])
    ref_m, _ = _reference_mass_and_pt(pt.tolist(), eta.tolist(), phi.tolist(), mass.tolist())
    np.testing.assert_allclose(invariant_mass(pt, eta, phi, mass), ref_m, rtol=1e-7)
    np.testing.assert_allclose(invariant_mass(pt, eta, phi, mass, n=1), mass[:, 0], atol=1e-6)


def test_p4_components_match_reference():
    rng = np.random.default_rng(3)
    pt, eta, phi, m = (
        rng.uniform(1, 100, 50),
        rng.normal(0, 2, 50),
        rng.uniform(-3, 3, 50),
        rng.uniform(0, 5, 50),
    )
    v = p4(pt, eta, phi, m)
    e, px, py, pz = _cartesian(pt, eta, phi, m)
    np.testing.assert_allclose(v.py, py, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(v.E, e, rtol=1e-9)
    np.testing.assert_allclose(v.px, px, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(v.pz, pz, rtol=1e-9, atol=1e-9)


def test_delta_phi_wraps_across_pi():
    d = delta_phi(np.array([3.0, -3.0, 0.5, np.pi]), np.array([-3.0, 3.0, -0.5, -np.pi]))
    np.testing.assert_allclose(d, [6.0 - 2 * np.pi, 2 * np.pi - 6.0, 1.0, 0.0], atol=1e-12)
    rng = np.random.default_rng(4)
    a, b = rng.uniform(-10, 10, 1000), rng.uniform(-10, 10, 1000)
    d = delta_phi(a, b)
    assert np.all(d >= -np.pi) and np.all(d < np.pi)
    # same angle as the plain difference: compare on the unit circle
    np.testing.assert_allclose(np.cos(d), np.cos(a - b), atol=1e-9)
    np.testing.assert_allclose(np.sin(d), np.sin(a - b), atol=1e-9)


def test_delta_phi_broadcasts_per_event_on_jagged():
    jets = ak.Array([[0.0, 3.0], [], [-3.0]])
    lead = np.array([-3.0, 1.0, 3.0])
    d = delta_phi(jets, lead)
    expected = [[3.0, 6.0 - 2 * np.pi], [], [2 * np.pi - 6.0]]
    for got, want in zip(ak.to_list(d), expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_delta_r():
    dr = delta_r(
        np.array([0.0, 1.0]), np.array([3.1, 0.0]), np.array([0.0, -2.0]), np.array([-3.1, 4.0])
    )
    dphi1 = 2 * np.pi - 6.2
    dphi2 = 4.0 - 2 * np.pi  # 0 - 4 wrapped into [-pi, pi)
    np.testing.assert_allclose(dr, [abs(dphi1), np.hypot(3.0, dphi2)], atol=1e-12)


def _lepton(pt, eta, phi, mass, pid, q):
    return {"pt": pt, "eta": eta, "phi": phi, "mass": mass, "pdgid": pid, "charge": q}


def _pair_mass(a, b):
    e1, x1, y1, z1 = _cartesian(*(np.float64(a[k]) for k in ("pt", "eta", "phi", "mass")))
    e2, x2, y2, z2 = _cartesian(*(np.float64(b[k]) for k in ("pt", "eta", "phi", "mass")))
    return np.sqrt((e1 + e2) ** 2 - (x1 + x2) ** 2 - (y1 + y2) ** 2 - (z1 + z2) ** 2)


def _events(*events):
    keys = ("pt", "eta", "phi", "mass", "pdgid", "charge")
    return [ak.Array([[lep[k] for lep in ev] for ev in events]) for k in keys]


def test_z_pairing_2e2mu_4mu_and_no_sfos():
    # 2e2mu: the only SFOS pairs are (e+e-) and (mu+mu-)
    e1 = _lepton(40.0, 0.2, 0.1, 0.000511, 11, -1)
    e2 = _lepton(35.0, -0.4, 2.9, 0.000511, -11, +1)
    m1 = _lepton(20.0, 1.0, -1.5, 0.1057, 13, -1)
    m2 = _lepton(15.0, -1.2, 1.2, 0.1057, -13, +1)
    ee, mumu = _pair_mass(e1, e2), _pair_mass(m1, m2)
    z1_2e2mu = ee if abs(ee - MZ) < abs(mumu - MZ) else mumu
    z2_2e2mu = mumu if z1_2e2mu == ee else ee

    # 4mu: four SFOS candidates; Z1 closest to mZ, Z2 the opposite-charge pair of the rest
    a = _lepton(50.0, 0.0, 0.0, 0.1057, 13, -1)
    b = _lepton(45.0, 0.1, 3.0, 0.1057, 13, +1)
    c = _lepton(12.0, 1.5, 1.0, 0.1057, 13, -1)
    d = _lepton(10.0, -1.0, -2.0, 0.1057, 13, +1)
    cands = {("a", "b"): (a, b), ("a", "d"): (a, d), ("c", "b"): (c, b), ("c", "d"): (c, d)}
    masses = {k: _pair_mass(*v) for k, v in cands.items()}
    best = min(masses, key=lambda k: abs(masses[k] - MZ))
    other = {
        ("a", "b"): ("c", "d"),
        ("c", "d"): ("a", "b"),
        ("a", "d"): ("c", "b"),
        ("c", "b"): ("a", "d"),
    }[best]
    z1_4mu, z2_4mu = masses[best], masses[other]

    # no SFOS pair: e- e- mu- mu- (same-sign pairs only) ...
    nos = [
        _lepton(30.0, 0.0, 0.0, 0.0, 11, -1),
        _lepton(30.0, 0.0, 2.0, 0.0, 11, -1),
        _lepton(30.0, 1.0, 1.0, 0.1, 13, -1),
        _lepton(30.0, -1.0, -1.0, 0.1, 13, -1),
    ]
    # e+ e- mu+ (only one SFOS pair -> Z1 defined, Z2 NaN)
    three = [e1, e2, _lepton(20.0, 0.5, 0.5, 0.1057, -13, +1)]

    mz1, mz2 = z_pairing(*_events([e1, m1, e2, m2], [a, b, c, d], nos, three, []))
    np.testing.assert_allclose(mz1[:2], [z1_2e2mu, z1_4mu], rtol=1e-7)
    np.testing.assert_allclose(mz2[:2], [z2_2e2mu, z2_4mu], rtol=1e-7)
    assert np.isnan(mz1[2]) and np.isnan(mz2[2])
    np.testing.assert_allclose(mz1[3], ee, rtol=1e-7)
    assert np.isnan(mz2[3])
    assert np.isnan(mz1[4]) and np.isnan(mz2[4])


def test_z_pairing_z2_prefers_highest_scalar_pt_pair_and_abs_pdgid_works():
    # 6 muons: Z1 = (p, q) on shell; of the remaining, (r, s) has higher pt sum than (t, u)
    p = _lepton(45.6, 0.0, 0.0, 0.0, 13, -1)
    q = _lepton(45.6, 0.0, np.pi, 0.0, 13, +1)  # m(p,q) = 91.2 -> Z1
    r = _lepton(30.0, 0.5, 1.0, 0.0, 13, -1)
    s = _lepton(25.0, -0.5, -1.0, 0.0, 13, +1)
    t = _lepton(8.0, 2.0, 0.5, 0.0, 13, -1)
    u = _lepton(7.0, -2.0, 2.5, 0.0, 13, +1)
    # candidates for Z2: (r,s), (r,u), (t,s), (t,u) -> highest pt sum is (r,s)
    mz1, mz2 = z_pairing(*_events([p, q, r, s, t, u]))
    np.testing.assert_allclose(mz1, [_pair_mass(p, q)], rtol=1e-7)
    np.testing.assert_allclose(mz2, [_pair_mass(r, s)], rtol=1e-7)
    # unsigned pdg ids give the same answer
    args = _events([p, q, r, s, t, u])
    args[4] = np.abs(args[4])
    np.testing.assert_allclose(z_pairing(*args)[1], mz2, rtol=1e-12)


def test_mismatched_collections_raise_one_line_dataerror():
    with pytest.raises(DataError) as info:
        invariant_mass(
            ak.Array([[1.0, 2.0]]), ak.Array([[0.0]]), ak.Array([[0.0]]), ak.Array([[0.0]])
        )
    assert "\n" not in str(info.value) and "objects" in str(info.value)


def test_real_zz_sample_z_pairing_against_cartesian_reference():
    """CMS HEP-tutorial ZZ MC: events with >= 2 muons; Z1 by brute force on px/py/pz/E."""
    path = DATA / "cms_hep_tutorial_2012" / "zz.root"
    if not path.exists():
        pytest.skip(f"sample file not found: {path}")
    uproot = pytest.importorskip("uproot")
    with uproot.open(path) as f:
        arr = f["events"].arrays(["Muon_Px", "Muon_Py", "Muon_Pz", "Muon_E", "Muon_Charge"])
    arr = arr[ak.num(arr["Muon_Px"]) >= 2][:300]
    assert len(arr) > 50
    px, py, pz, e = (arr[k] for k in ("Muon_Px", "Muon_Py", "Muon_Pz", "Muon_E"))
    pt = np.hypot(px, py)
    eta = np.arcsinh(pz / pt)
    phi = np.arctan2(py, px)
    mass = np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))
    mz1, _ = z_pairing(
        pt, eta, phi, mass, 13 * ak.ones_like(arr["Muon_Charge"]), arr["Muon_Charge"]
    )

    ref = []
    for ev in ak.to_list(arr):
        best = np.nan
        n = len(ev["Muon_Px"])
        for i in range(n):
            for j in range(i + 1, n):
                if ev["Muon_Charge"][i] * ev["Muon_Charge"][j] >= 0:
                    continue
                ps = [ev[k][i] + ev[k][j] for k in ("Muon_E", "Muon_Px", "Muon_Py", "Muon_Pz")]
                m = np.sqrt(max(ps[0] ** 2 - ps[1] ** 2 - ps[2] ** 2 - ps[3] ** 2, 0.0))
                if np.isnan(best) or abs(m - MZ) < abs(best - MZ):
                    best = m
        ref.append(best)
    # the sample's stored E uses the muon mass, so pt/eta/phi/m round-trips closely
    np.testing.assert_allclose(mz1, ref, rtol=1e-4, atol=1e-3)
