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


# --------------------------------------------------------------------------------------
# Array functions: one formula for numpy, awkward and torch


def _massless(pt, eta, phi):
    """(px, py, pz, E) of massless particles from pt/eta/phi, plain numpy."""
    return np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], -1)


def _three_ways(x: np.ndarray):
    """The same float64 values as numpy, jagged awkward (ragged split) and torch."""
    torch = pytest.importorskip("torch")
    counts = [0, 1, len(x) // 2 - 1, len(x) - len(x) // 2]
    return x, ak.unflatten(x, counts), torch.from_numpy(x)


def _as_numpy(y) -> np.ndarray:
    if isinstance(y, ak.Array):
        return ak.to_numpy(ak.flatten(y, axis=None))
    return y.numpy() if hasattr(y, "numpy") else np.asarray(y)


def test_numpy_awkward_and_torch_paths_agree():
    rng = np.random.default_rng(7)
    n = 400
    px, py, pz = rng.normal(0, 30, n), rng.normal(0, 30, n), rng.normal(0, 80, n)
    e = np.sqrt(px**2 + py**2 + pz**2 + rng.uniform(0, 5, n) ** 2)
    px[:3] = py[:3] = 0.0  # along the beam, and at rest
    pz[2] = 0.0
    phi1, phi2 = rng.uniform(-10, 10, n), rng.uniform(-10, 10, n)
    eta1, eta2 = rng.normal(0, 2, n), rng.normal(0, 2, n)
    from fivesigma.physics import kinematics as kin

    cases = {
        "pt": (kin.pt, (px, py), {}),
        "phi": (kin.phi, (px, py), {}),
        "rapidity": (kin.rapidity, (pz, e), {}),
        "rapidity guarded": (kin.rapidity, (pz, e), {"guarded": True}),
        "wrap_phi": (kin.wrap_phi, (phi1,), {}),
        "delta_phi": (kin.delta_phi, (phi1, phi2), {}),
        "delta_r": (kin.delta_r, (eta1, phi1, eta2, phi2), {}),
        "delta_r hypot": (kin.delta_r, (eta1, phi1, eta2, phi2), {"hypot": True}),
        "mass_squared": (kin.mass_squared, (px, py, pz, e), {}),
        "mass": (kin.mass, (px, py, pz, e), {}),
        **{f"eta {z}": (kin.pseudorapidity, (px, py, pz), {"zero_pt": z}) for z in kin.ZERO_PT},
    }
    for name, (fn, args, kwargs) in cases.items():
        ways = list(zip(*(_three_ways(a) for a in args), strict=True))  # numpy, awkward, torch
        ref, jagged, tensor = (_as_numpy(fn(*w, **kwargs)) for w in ways)
        # awkward runs numpy's own ufuncs on its contents: the very same numbers
        np.testing.assert_array_equal(jagged, ref, err_msg=name)
        # torch: the same formulas (pT as sqrt(px^2 + py^2) instead of hypot)
        np.testing.assert_allclose(tensor, ref, rtol=1e-12, atol=1e-12, err_msg=name)
    # beam and rest: the pseudorapidity guards
    eta = {z: kin.pseudorapidity(px[:3], py[:3], pz[:3], zero_pt=z) for z in kin.ZERO_PT}
    assert eta["zero"].tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(eta["beam"][:2], np.sign(pz[:2]) * np.arcsinh(1e10))
    np.testing.assert_allclose(eta["floor"][:2], np.arcsinh(pz[:2] / 1e-12))
    assert eta["beam"][2] == eta["floor"][2] == 0.0
    with pytest.raises(ValueError, match="zero_pt"):
        kin.pseudorapidity(px, py, pz, zero_pt="nan")


def test_wrap_phi_range_and_rapidity_of_massless_is_eta():
    torch = pytest.importorskip("torch")
    from fivesigma.physics import kinematics as kin

    d = np.linspace(-20, 20, 2001)
    for w in (kin.wrap_phi(d), kin.wrap_phi(torch.from_numpy(d)).numpy()):
        assert np.all(w >= -np.pi) and np.all(w < np.pi)
        np.testing.assert_allclose(np.exp(1j * w), np.exp(1j * d), atol=1e-12)
    v = _massless(np.full(5, 30.0), np.linspace(-2, 2, 5), np.zeros(5))
    for guarded in (False, True):
        np.testing.assert_allclose(
            kin.rapidity(v[:, 2], v[:, 3], guarded=guarded), np.linspace(-2, 2, 5), atol=1e-12
        )
    # E = pz: infinite as written, finite guarded (numpy log1p, torch clamped log)
    assert np.isinf(kin.rapidity(5.0, 5.0))
    assert np.isfinite(kin.rapidity(5.0, 5.0, guarded=True))
    assert torch.isfinite(kin.rapidity(torch.tensor(5.0), torch.tensor(4.9), guarded=True))


@pytest.mark.parametrize("seed", [0, 1])
def test_massless_pair_mass_closed_form_in_every_path(seed):
    """Two massless particles: m^2 = 2 pT1 pT2 (cosh deta - cos dphi), through the
    four-vector sum (numpy, awkward, torch), ParT's ln m^2 (numpy, torch) and vector."""
    torch = pytest.importorskip("torch")
    from fivesigma.physics import kinematics as kin

    rng = np.random.default_rng(seed)
    n = 200
    pt1, pt2 = rng.uniform(5, 300, n), rng.uniform(5, 300, n)
    eta1, eta2 = rng.uniform(-2.5, 2.5, n), rng.uniform(-2.5, 2.5, n)
    phi1, phi2 = rng.uniform(-np.pi, np.pi, n), rng.uniform(-np.pi, np.pi, n)
    # the first pair back to back: 45 + 45 GeV at rest -> m = 90 GeV
    pt1[0], pt2[0], eta1[0], eta2[0], phi1[0], phi2[0] = 45.0, 45.0, 0.0, 0.0, 0.3, 0.3 - np.pi
    m_closed = np.sqrt(2 * pt1 * pt2 * (np.cosh(eta1 - eta2) - np.cos(phi1 - phi2)))
    assert m_closed[0] == pytest.approx(90.0, rel=1e-12)
    va, vb = _massless(pt1, eta1, phi1), _massless(pt2, eta2, phi2)
    total = va + vb  # (n, 4)
    for comps in zip(*(_three_ways(total[:, k].copy()) for k in range(4)), strict=True):
        np.testing.assert_allclose(_as_numpy(kin.mass(*comps)), m_closed, rtol=1e-9)
    via_vector = invariant_mass(
        np.stack([pt1, pt2], 1),
        np.stack([eta1, eta2], 1),
        np.stack([phi1, phi2], 1),
        np.zeros((n, 2)),
    )
    np.testing.assert_allclose(via_vector, m_closed, rtol=1e-9)
    # ParT's pair features: numpy and torch agree, and ln m^2 is the closed form
    f_np = kin.pair_features(va, vb)
    f_t = kin.pair_features(torch.from_numpy(va), torch.from_numpy(vb)).numpy()
    assert f_np.shape == f_t.shape == (n, 4) and f_np.dtype == f_t.dtype == np.float64
    np.testing.assert_allclose(f_t, f_np, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(f_np[:, 3], np.log(m_closed**2), rtol=1e-9)
    np.testing.assert_allclose(f_np, kin.pair_features(vb, va), rtol=1e-12)  # symmetric
    # ln dR, with dR in (y, phi) (= (eta, phi) for massless particles); kT and z from pT
    dr = np.hypot(eta1 - eta2, kin.delta_phi(phi1, phi2))
    ptmin = np.minimum(pt1, pt2)
    np.testing.assert_allclose(f_np[:, 2], np.log(dr), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(f_np[:, 0], np.log(ptmin * dr), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(f_np[:, 1], np.log(ptmin / (pt1 + pt2)), rtol=1e-9)


def test_pair_features_torch_path_is_finite_for_zero_momenta():
    torch = pytest.importorskip("torch")
    from fivesigma.physics import kinematics as kin

    v = torch.tensor([[0.0, 0, 0, 0], [10.0, 0, 0, 10], [0, 0, 5.0, 5.0]])
    f = kin.pair_features(v[:, None], v[None, :])  # (3, 3, 4), every pair
    assert f.dtype == torch.float32 and torch.isfinite(f).all()


def test_physics_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from fivesigma.physics import kinematics as k; "
        "k.pair_features(np.ones(4), np.ones(4)); k.delta_r(0.0, 1.0, 2.0, 3.0); "
        "import fivesigma.physics.labels, fivesigma.physics.particles; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
