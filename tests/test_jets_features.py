"""Tagger inputs: ParT particle features, pairwise features, N-subjettiness."""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest

from fivesigma.errors import ConfigError
from fivesigma.io.jets import JetSample
from fivesigma.tasks.jets.features import (
    PARTICLE_FEATURES_FULL,
    PARTICLE_FEATURES_KIN,
    PARTICLE_FEATURES_PID,
    STANDARDIZATION,
    constituent_inputs,
    default_features,
    describe,
    input_options,
    jet_observables,
    pairwise_features_numpy,
)


def _ptetaphim(pt, eta, phi, m=0.0):
    """(px, py, pz, E) of a particle, by hand."""
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return px, py, pz, np.sqrt(px**2 + py**2 + pz**2 + m**2)


def _sample(jets, labels=None, **kw) -> JetSample:
    """jets: list of lists of (px, py, pz, E[, charge, pid])."""
    cols = [[[p[k] for p in j] for j in jets] for k in range(4)]
    extra = {}
    if jets and jets[0] and len(jets[0][0]) > 4:
        extra["pid"] = [[p[5] for p in j] for j in jets]
        extra["charge"] = [[p[4] for p in j] for j in jets]
    labels = labels if labels is not None else [0] * len(jets)
    return JetSample.from_arrays(*cols, labels, **extra, **kw)


# Jet with axis at negative eta and phi near pi: deta sign flip and dphi wrapping matter.
_PARTS = [  # (pt, eta, phi, charge, pid)
    (40.0, -1.0, 3.10, 1, 211),
    (25.0, -1.2, -3.10, 0, 22),  # just across -pi from the jet axis
    (5.0, -0.8, 2.90, -1, 11),
]


def _handmade() -> tuple[JetSample, np.ndarray]:
    jet = []
    for pt, eta, phi, q, pid in _PARTS:
        jet.append((*_ptetaphim(pt, eta, phi), q, pid))
    return _sample([jet], labels=[4]), np.array(jet)


def test_particle_features_by_hand() -> None:
    sample, raw = _handmade()
    out = constituent_inputs(sample, max_particles=4, standardize=False, frame="none")
    x, v, mask = out["x"], out["v"], out["mask"]
    assert x.shape == (1, 4, 13) and x.dtype == np.float32
    assert mask.tolist() == [[True, True, True, False]]
    # the jet axis by hand from the 4-vector sum
    s = raw[:, :4].sum(axis=0)
    jpt = np.hypot(s[0], s[1])
    jeta = np.arcsinh(s[2] / jpt)
    jphi = np.arctan2(s[1], s[0])
    assert jeta < 0 and abs(jphi) > 3.0
    f = {n: x[0, :3, k] for k, n in enumerate(PARTICLE_FEATURES_PID)}
    pts = np.array([p[0] for p in _PARTS])
    etas = np.array([p[1] for p in _PARTS])
    phis = np.array([p[2] for p in _PARTS])
    np.testing.assert_allclose(f["part_pt_log"], np.log(pts), rtol=1e-5)
    np.testing.assert_allclose(f["part_e_log"], np.log(raw[:, 3]), rtol=1e-5)
    np.testing.assert_allclose(f["part_logptrel"], np.log(pts / jpt), rtol=1e-5)
    np.testing.assert_allclose(f["part_logerel"], np.log(raw[:, 3] / s[3]), rtol=1e-5)
    # ParT: deta = (eta - eta_jet) * sign(eta_jet); eta_jet < 0 flips the sign
    deta = -(etas - jeta)
    np.testing.assert_allclose(f["part_deta"], deta, rtol=1e-4, atol=1e-5)
    # dphi wraps: e.g. particle at -3.10, axis near +3.1 -> small positive dphi
    dphi = np.array([((p - jphi + np.pi) % (2 * np.pi)) - np.pi for p in phis])
    assert np.all(np.abs(dphi) < 0.5)
    np.testing.assert_allclose(f["part_dphi"], dphi, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(f["part_deltaR"], np.hypot(deta, dphi), rtol=1e-4)
    assert f["part_charge"].tolist() == [1, 0, -1]
    assert f["part_isChargedHadron"].tolist() == [1, 0, 0]
    assert f["part_isPhoton"].tolist() == [0, 1, 0]
    assert f["part_isElectron"].tolist() == [0, 0, 1]
    assert f["part_isNeutralHadron"].tolist() == [0, 0, 0] and f["part_isMuon"].tolist() == [
        0,
        0,
        0,
    ]
    np.testing.assert_allclose(v[0, :3], raw[:, :4], rtol=1e-6)
    assert np.all(x[0, 3] == 0) and np.all(v[0, 3] == 0)


def test_standardisation_is_the_fixed_part_transform() -> None:
    sample, _ = _handmade()
    raw = constituent_inputs(sample, 3, standardize=False)["x"]
    std = constituent_inputs(sample, 3)["x"]
    for k, name in enumerate(PARTICLE_FEATURES_PID):
        if name in STANDARDIZATION:
            shift, scale = STANDARDIZATION[name]
            want = np.clip((raw[..., k] - shift) * scale, -5, 5)
        else:
            want = raw[..., k]
        np.testing.assert_allclose(std[..., k], want, rtol=1e-5, atol=1e-6)
    assert STANDARDIZATION["part_pt_log"] == (1.7, 0.7)


def test_padding_is_exactly_zero_and_truncation_keeps_hardest() -> None:
    rng = np.random.default_rng(5)
    jets = []
    for n in (0, 2, 7):
        pts = rng.permutation(np.arange(1.0, n + 1.0) * 3.0)
        jets.append([_ptetaphim(pt, rng.normal(0, 0.3), rng.normal(0, 0.3)) for pt in pts])
    sample = _sample(jets)
    out = constituent_inputs(sample, max_particles=4)
    assert out["mask"].sum(axis=1).tolist() == [0, 2, 4]
    assert np.all(out["x"][~out["mask"]] == 0) and np.all(out["v"][~out["mask"]] == 0)
    pt_kept = np.hypot(out["v"][2, :, 0], out["v"][2, :, 1])
    np.testing.assert_allclose(pt_kept, [21.0, 18.0, 15.0, 12.0], rtol=1e-5)
    # kinematic-only set is the default without PID
    assert not sample.has_pid and out["x"].shape[-1] == len(PARTICLE_FEATURES_KIN) == 7


def test_permuting_input_constituents_gives_identical_output() -> None:
    rng = np.random.default_rng(9)
    jets = [
        [
            (*_ptetaphim(pt, rng.normal(0, 0.4), rng.normal(0, 0.4)), 0, 22)
            for pt in rng.uniform(1, 100, 6)
        ]
        for _ in range(3)
    ]
    shuffled = [[j[i] for i in rng.permutation(len(j))] for j in jets]
    a = constituent_inputs(_sample(jets), 8)
    b = constituent_inputs(_sample(shuffled), 8)
    for key in ("x", "v", "mask"):
        np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_allclose(
        jet_observables(_sample(jets))[0], jet_observables(_sample(shuffled))[0]
    )


def test_unknown_feature_name() -> None:
    sample, _ = _handmade()
    with pytest.raises(ConfigError, match="did you mean 'part_deta'"):
        constituent_inputs(sample, features=["part_dta"])
    out = constituent_inputs(sample, 3, features=["part_dphi", "part_charge"], standardize=False)
    assert out["x"].shape == (1, 3, 2) and out["x"][0, :, 1].tolist() == [1, 0, -1]


def test_describe_is_json_and_matches_features() -> None:
    d = describe(PARTICLE_FEATURES_KIN, max_particles=64)
    json.dumps(d)
    assert [f["name"] for f in d["particle_features"]] == PARTICLE_FEATURES_KIN
    assert d["particle_features"][0]["transform"]["shift"] == 1.7 and d["max_particles"] == 64


# --------------------------------------------------------------------------------------
# Track impact parameters


def test_feature_lists_are_nested_and_the_new_ones_appended() -> None:
    assert PARTICLE_FEATURES_FULL[-4:] == ["part_d0", "part_d0err", "part_dz", "part_dzerr"]
    assert len(PARTICLE_FEATURES_FULL) == 17
    assert PARTICLE_FEATURES_FULL[:13] == PARTICLE_FEATURES_PID
    assert PARTICLE_FEATURES_FULL[:7] == PARTICLE_FEATURES_KIN
    assert PARTICLE_FEATURES_PID[-1] == "part_isMuon" and PARTICLE_FEATURES_KIN[-1] == "part_dphi"


def _with_tracks() -> JetSample:
    """The handmade jet with impact parameters (mm): a displaced pion, a photon, an e+."""
    jet = [(*_ptetaphim(pt, eta, phi), q, pid) for pt, eta, phi, q, pid in _PARTS]
    cols = [[[p[k] for p in jet]] for k in range(4)]
    return JetSample.from_arrays(
        *cols,
        [3],
        pid=[[p[5] for p in jet]],
        charge=[[p[4] for p in jet]],
        d0=[[0.8, 0.0, -0.02]],
        dz=[[-2.5, 0.0, 0.3]],
        d0err=[[0.012, 0.0, 1.7]],  # the e+ error is above the clip at 1 mm
        dzerr=[[0.031, 0.0, 0.2]],
    )


def test_impact_parameter_features_by_hand() -> None:
    sample = _with_tracks()
    assert default_features(sample) == PARTICLE_FEATURES_FULL
    out = constituent_inputs(sample, max_particles=4)
    x = out["x"]
    assert x.shape == (1, 4, 17)
    f = {n: x[0, :, k] for k, n in enumerate(PARTICLE_FEATURES_FULL)}
    # JetClass_full.yaml: tanh(d0 / mm), clip(d0err, 0, 1); the same with and without
    # standardisation (they are the features' definitions, not a standardisation).
    np.testing.assert_allclose(f["part_d0"], [np.tanh(0.8), 0.0, np.tanh(-0.02), 0.0], rtol=1e-6)
    np.testing.assert_allclose(f["part_dz"], [np.tanh(-2.5), 0.0, np.tanh(0.3), 0.0], rtol=1e-6)
    np.testing.assert_allclose(f["part_d0err"], [0.012, 0.0, 1.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(f["part_dzerr"], [0.031, 0.0, 0.2, 0.0], rtol=1e-6)
    raw = constituent_inputs(sample, max_particles=4, standardize=False)["x"]
    np.testing.assert_array_equal(raw[..., 13:], x[..., 13:])
    # Appending them changes none of the other features.
    pid_only = constituent_inputs(sample, max_particles=4, features=PARTICLE_FEATURES_PID)
    np.testing.assert_array_equal(pid_only["x"], x[..., :13])
    # A sample without impact parameters asked for them gets zeros, not garbage.
    plain, _ = _handmade()
    zeros = constituent_inputs(plain, 4, features=PARTICLE_FEATURES_FULL)["x"]
    assert zeros.shape == (1, 4, 17) and np.all(zeros[..., 13:] == 0)


def test_default_features_picks_the_richest_list() -> None:
    kin = ([[1.0]], [[0.0]], [[0.0]], [[1.0]], [0])
    assert default_features(JetSample.from_arrays(*kin)) == PARTICLE_FEATURES_KIN
    assert default_features(JetSample.from_arrays(*kin, pid=[[22]])) == PARTICLE_FEATURES_PID
    full = JetSample.from_arrays(*kin, pid=[[211]], d0=[[0.1]])
    assert default_features(full) == PARTICLE_FEATURES_FULL
    # constituent_inputs uses it by default.
    assert constituent_inputs(full, 2)["x"].shape[-1] == 17
    assert constituent_inputs(JetSample.from_arrays(*kin, pid=[[22]]), 2)["x"].shape[-1] == 13


def test_describe_units_of_the_impact_parameter_features() -> None:
    d = describe(PARTICLE_FEATURES_FULL)
    units = {f["name"]: f["unit"] for f in d["particle_features"]}
    assert units["part_d0"] == "tanh(d0/mm)" and units["part_dz"] == "tanh(dz/mm)"
    assert units["part_d0err"] == units["part_dzerr"] == "mm, clipped to [0, 1]"
    assert input_options(json.loads(json.dumps(d)))["features"] == PARTICLE_FEATURES_FULL


# --------------------------------------------------------------------------------------
# Pairwise features


def test_pairwise_features_by_hand() -> None:
    a = _ptetaphim(30.0, 0.0, 0.1)
    b = _ptetaphim(10.0, 0.0, 0.5)  # eta = rapidity = 0 for both: Delta = dphi = 0.4
    v = np.zeros((1, 3, 4))
    v[0, 0], v[0, 1] = a, b
    mask = np.array([[True, True, False]])
    out = pairwise_features_numpy(v, mask)
    assert out.shape == (1, 3, 3, 4) and out.dtype == np.float32
    delta = 0.4
    m2 = (a[3] + b[3]) ** 2 - sum((a[k] + b[k]) ** 2 for k in range(3))
    want = [np.log(10.0 * delta), np.log(10.0 / 40.0), np.log(delta), np.log(m2)]
    np.testing.assert_allclose(out[0, 0, 1], want, rtol=1e-5)
    np.testing.assert_allclose(out[0, 1, 0], want, rtol=1e-5)  # symmetric
    # massless collinear-free pair: m^2 = 2 pTa pTb (cosh dy - cos dphi)
    assert m2 == pytest.approx(2 * 30 * 10 * (1 - np.cos(0.4)), rel=1e-9)
    assert np.all(out[0, 2] == 0) and np.all(out[0, :, 2] == 0)  # padded pairs are zero


def test_pairwise_rapidity_and_phi_wrap() -> None:
    a = _ptetaphim(20.0, 1.0, 3.0, m=1.0)
    b = _ptetaphim(20.0, 0.5, -3.0, m=1.0)
    v = np.array([[a, b]])
    out = pairwise_features_numpy(v, np.ones((1, 2), dtype=bool))
    # rapidity by hand differs from eta for massive particles
    ya = 0.5 * np.log((a[3] + a[2]) / (a[3] - a[2]))
    yb = 0.5 * np.log((b[3] + b[2]) / (b[3] - b[2]))
    dphi = 2 * np.pi - 6.0
    np.testing.assert_allclose(out[0, 0, 1, 2], np.log(np.hypot(ya - yb, dphi)), rtol=1e-5)


# --------------------------------------------------------------------------------------
# N-subjettiness


def _tau_by_hand(parts, axes, r0=0.8):
    """tau_N with given axes (lists of (px, py, pz, E)), dR in rapidity-phi."""

    def yphi(p):
        return 0.5 * np.log((p[3] + p[2]) / (p[3] - p[2])), np.arctan2(p[1], p[0])

    num = 0.0
    for p in parts:
        y, phi = yphi(p)
        d = []
        for ax in axes:
            ya, phia = yphi(ax)
            dp = (phi - phia + np.pi) % (2 * np.pi) - np.pi
            d.append(np.hypot(y - ya, dp))
        num += np.hypot(p[0], p[1]) * min(d)
    return num / (sum(np.hypot(p[0], p[1]) for p in parts) * r0)


def test_nsubjettiness_two_and_three_particles() -> None:
    two = [_ptetaphim(100.0, 0.0, 0.0), _ptetaphim(50.0, 0.3, 0.4)]
    three = [_ptetaphim(100.0, 0.0, 0.0), _ptetaphim(60.0, 0.5, 0.2), _ptetaphim(40.0, -0.3, 0.5)]
    obs, names = jet_observables(_sample([two, three]))
    t = dict(zip(names, obs.T, strict=True))
    assert t["tau2"][0] == 0.0 and t["tau3"][1] == 0.0
    # tau1: the single exclusive-kT axis is the E-scheme sum of all particles
    axis2 = [tuple(np.sum(two, axis=0))]
    axis3 = [tuple(np.sum(three, axis=0))]
    assert t["tau1"][0] == pytest.approx(_tau_by_hand(two, axis2), rel=1e-6)
    assert t["tau1"][1] == pytest.approx(_tau_by_hand(three, axis3), rel=1e-6)
    assert t["n_constituents"].tolist() == [2, 3]
    assert t["tau21"][0] == 0.0


def test_nsubjettiness_two_pairs_by_hand() -> None:
    # Two well separated pairs: exclusive kT with 2 jets gives the two pair sums.
    p = [
        _ptetaphim(50.0, 0.0, 0.0),
        _ptetaphim(40.0, 0.05, 0.03),
        _ptetaphim(30.0, 0.6, 0.5),
        _ptetaphim(20.0, 0.62, 0.45),
    ]
    axes = [tuple(np.add(p[0], p[1])), tuple(np.add(p[2], p[3]))]
    obs, names = jet_observables(_sample([p]))
    t = dict(zip(names, obs[0], strict=True))
    assert t["tau2"] == pytest.approx(_tau_by_hand(p, axes), rel=1e-6)
    assert t["tau21"] == pytest.approx(t["tau2"] / t["tau1"], rel=1e-12)


def test_tau21_orders_one_prong_above_two_prong() -> None:
    rng = np.random.default_rng(11)

    def prong(pt, eta, phi, n, width):
        return [
            _ptetaphim(pt * f, eta + rng.normal(0, width), phi + rng.normal(0, width))
            for f in rng.dirichlet(np.ones(n))
        ]

    one = prong(300.0, 0.0, 0.0, 20, 0.05)
    two = prong(150.0, 0.0, 0.0, 10, 0.03) + prong(150.0, 0.4, 0.4, 10, 0.03)
    obs, names = jet_observables(_sample([one, two]))
    tau21 = obs[:, names.index("tau21")]
    assert tau21[1] < 0.5 * tau21[0]
    mass = obs[:, names.index("jet_mass")]
    assert mass[1] > mass[0]


def test_empty_jet_observables_are_zero() -> None:
    sample = _sample([[], [_ptetaphim(10.0, 0.0, 0.0)]])
    obs, names = jet_observables(sample)
    assert np.all(np.isfinite(obs))
    assert obs[0, names.index("tau1")] == 0.0 and obs[1, names.index("tau1")] == 0.0
    out = constituent_inputs(sample, 2)
    assert not out["mask"][0].any() and np.all(out["x"][0] == 0)


def test_sample_without_particles_at_all() -> None:
    sample = _sample([[], []])
    assert constituent_inputs(sample, 3)["x"].shape == (2, 3, 7)
    assert ak.sum(sample.constituents.px) == 0


# --------------------------------------------------------------------------------------
# The principal jet frame


def _spread_jets(n: int = 4, seed: int = 3) -> list:
    """Jets with an elongated, asymmetric particle pattern around (eta, phi) = (0.5, 1.0)."""
    rng = np.random.default_rng(seed)
    jets = []
    for _ in range(n):
        angle = rng.uniform(0, np.pi)
        jet = []
        for pt in rng.uniform(1, 120, 12):
            t, s = rng.normal(0, 0.3), rng.normal(0, 0.05)
            eta = 0.5 + t * np.cos(angle) - s * np.sin(angle)
            phi = 1.0 + t * np.sin(angle) + s * np.cos(angle)
            jet.append((*_ptetaphim(pt, eta, phi), 0, 22))
        jets.append(jet)
    return jets


def test_principal_frame_moments_by_hand() -> None:
    """In the frame the pT-weighted moments are diagonal, the major axis is deta, and the
    third moments along both axes are non-negative; deltaR is unchanged."""
    sample = _sample(_spread_jets())
    raw = constituent_inputs(sample, 16, standardize=False, frame="none")
    out = constituent_inputs(sample, 16, standardize=False, frame="principal")
    k = {n: i for i, n in enumerate(PARTICLE_FEATURES_PID)}
    m = out["mask"]
    pt = np.exp(out["x"][..., k["part_pt_log"]]) * m
    a, b = out["x"][..., k["part_deta"]], out["x"][..., k["part_dphi"]]
    caa, cbb, cab = (pt * a * a).sum(1), (pt * b * b).sum(1), (pt * a * b).sum(1)
    np.testing.assert_allclose(cab, 0.0, atol=1e-4 * caa.max())
    assert np.all(caa > cbb)
    assert np.all((pt * a**3).sum(1) >= 0) and np.all((pt * b**3).sum(1) >= 0)
    # raw coordinates are not in that frame (the test jets are rotated at random)
    ra, rb = raw["x"][..., k["part_deta"]], raw["x"][..., k["part_dphi"]]
    assert np.max(np.abs((pt * ra * rb).sum(1))) > 1e-2 * caa.max()
    # a rotation + reflection keeps distances to the axis and every other feature
    np.testing.assert_allclose(np.hypot(a, b), np.hypot(ra, rb), atol=1e-5)
    other = [i for n, i in k.items() if n not in ("part_deta", "part_dphi")]
    np.testing.assert_array_equal(out["x"][..., other], raw["x"][..., other])
    np.testing.assert_array_equal(out["v"], raw["v"])


def test_principal_frame_removes_mirror_images() -> None:
    """A jet and its mirror image in phi (py -> -py) get identical inputs in the frame,
    and different ones without it."""
    jets = _spread_jets(3)
    mirrored = [[(p[0], -p[1], *p[2:]) for p in j] for j in jets]
    a = constituent_inputs(_sample(jets), 16, frame="principal")["x"]
    b = constituent_inputs(_sample(mirrored), 16, frame="principal")["x"]
    np.testing.assert_allclose(a, b, atol=2e-5)
    a0 = constituent_inputs(_sample(jets), 16, frame="none")["x"]
    b0 = constituent_inputs(_sample(mirrored), 16, frame="none")["x"]
    assert np.max(np.abs(a0 - b0)) > 0.1


def test_principal_frame_does_not_depend_on_truncation() -> None:
    sample = _sample(_spread_jets())
    short = constituent_inputs(sample, 5)
    full = constituent_inputs(sample, 20)
    np.testing.assert_array_equal(short["x"], full["x"][:, :5])


def test_frame_option_checked_and_recorded() -> None:
    sample, _ = _handmade()
    with pytest.raises(ConfigError, match="unknown jet frame 'principle'.*principal"):
        constituent_inputs(sample, frame="principle")
    spec = describe(PARTICLE_FEATURES_KIN, max_particles=32, frame="none")
    assert input_options(json.loads(json.dumps(spec))) == {
        "features": PARTICLE_FEATURES_KIN,
        "max_particles": 32,
        "standardize": True,
        "frame": "none",
    }
    # bundles written before the frame existed were trained without one
    old = {k: v for k, v in describe().items() if k not in ("frame", "frame_definition")}
    assert input_options(old)["frame"] == "none"
    with pytest.raises(ConfigError, match="particle_features"):
        input_options({"max_particles": 3})
