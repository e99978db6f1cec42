"""Tests of the built-in ``jets`` samples (Pythia8 + FastJet + detector response)."""

from __future__ import annotations

import json
import math

import awkward as ak
import numpy as np
import pytest

from fivesigma.errors import GenerationError
from fivesigma.generate import PROCESSES, GeneratedSample, _pythia, cached_sample, generate
from fivesigma.generate import jets as jets_mod
from fivesigma.generate.cache import cache_key
from fivesigma.physics.jet_detector import JetDetectorResponse

uproot = pytest.importorskip("uproot")

M_TOP = 172.5  # PDG-ish; the Pythia default top mass is 173
M_W = 80.4
BRANCHES = {
    "event": "uint64_t",
    "jet_pt": "float",
    "jet_eta": "float",
    "jet_phi": "float",
    "jet_mass": "float",
    "jet_energy": "float",
    "jet_nparticles": "int32_t",
    "label": "int32_t",
    "truth_parent_pt": "float",
    "npart": "int32_t",
    "part_px": "float[]",
    "part_py": "float[]",
    "part_pz": "float[]",
    "part_energy": "float[]",
    "part_charge": "int32_t[]",
    "part_pid": "int32_t[]",
    "part_class": "int32_t[]",
    "part_d0": "float[]",
    "part_dz": "float[]",
    "part_d0err": "float[]",
    "part_dzerr": "float[]",
}


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


generator = pytest.mark.skipif(
    not (_has("pythia8mc") and _has("fastjet")), reason="pythia8mc or fastjet not installed"
)
heavy = [pytest.mark.slow, pytest.mark.pythia, generator]


def _read(sample: GeneratedSample, name: str) -> ak.Array:
    with uproot.open(sample.files[name]) as f:
        return f["Jets"].arrays()


@pytest.fixture(scope="module")
def top(tmp_path_factory) -> GeneratedSample:
    out = tmp_path_factory.mktemp("top")
    # 60 jets need two blocks of events, so jobs=2 below really runs two processes.
    return generate("jets", 60, out, seed=3, jobs=1, progress=False, options={"process": "top"})


@pytest.fixture(scope="module")
def qcd(tmp_path_factory) -> GeneratedSample:
    out = tmp_path_factory.mktemp("qcd")
    return generate("jets", 40, out, seed=3, jobs=1, progress=False, options={"process": "qcd"})


@pytest.fixture(scope="module")
def qcd_bb(tmp_path_factory) -> GeneratedSample:
    out = tmp_path_factory.mktemp("qcd_bb")
    return generate("jets", 30, out, seed=5, jobs=1, progress=False, options={"process": "qcd_bb"})


@pytest.fixture(scope="module")
def wjets(tmp_path_factory) -> GeneratedSample:
    cache = tmp_path_factory.mktemp("cache")
    return cached_sample(
        "jets", events=30, seed=4, jobs=1, cache_dir=cache, progress=False, options={"process": "w"}
    )


# --------------------------------------------------------------------------------------
# Options and errors (no Pythia)


def test_registered_with_options():
    gen = PROCESSES["jets"]
    assert gen.accepts_options
    assert gen.names({"process": "qcd"}) == ("jets_qcd",)
    assert set(jets_mod.JET_PROCESSES) == {"top", "qcd", "qcd_bb", "qcd_cc", "w", "z", "hbb"}
    assert jets_mod.LABELS == {
        0: "light",
        1: "gluon",
        2: "c",
        3: "b",
        4: "top",
        5: "W",
        6: "Z",
        7: "Hbb",
    }


def test_unknown_jet_process_names_accepted(tmp_path):
    with pytest.raises(
        GenerationError, match="unknown jet process 'tpo'.*top, qcd, qcd_bb, qcd_cc, w, z, hbb"
    ):
        generate("jets", 10, tmp_path / "o", options={"process": "tpo"}, progress=False)
    assert not (tmp_path / "o").exists()  # nothing is written for bad input


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"pt_min": 650.0, "pt_max": 550.0}, "bad jet pT window"),
        ({"pt_min": -5.0}, "bad jet pT window"),
        ({"pt_max": float("nan")}, "pt_max must be a finite number"),
        ({"eta_max": 0.0}, "eta_max"),
        ({"ptmin": 300.0}, "unknown jets option 'ptmin'.*pt_min"),
    ],
)
def test_bad_options(tmp_path, options, match):
    with pytest.raises(GenerationError, match=match):
        generate("jets", 10, tmp_path, options=options, progress=False)


def test_options_for_higgs4l_rejected(tmp_path):
    with pytest.raises(GenerationError, match="'higgs4l' takes no options"):
        generate("higgs4l", 10, tmp_path, options={"process": "top"}, progress=False)


def test_cache_key_depends_on_options():
    det = JetDetectorResponse()
    a = cache_key("jets", 10, 1, 140.0, det, {"process": "top"})
    b = cache_key("jets", 10, 1, 140.0, det, {"process": "qcd"})
    c = cache_key("jets", 10, 1, 140.0, det, {"process": "top", "pt_min": 300.0, "pt_max": 400.0})
    d = cache_key("jets", 10, 1, 140.0, det, {})  # defaults: the top sample
    e = cache_key("jets", 10, 1, 140.0, det, {"process": None, "pt_min": None})  # None: default
    assert a != b and a != c and a == d == e
    assert a["generator"]["settings"][-1] == "PhaseSpace:pTHatMin = 440"
    assert c["generator"]["settings"][-1] == "PhaseSpace:pTHatMin = 240"


def test_cache_key_has_format_2_and_impact_parameter_resolution():
    """Samples cached before the impact parameters (format 1) are not reused, and the
    d0/dz resolutions are part of the key like every other detector parameter."""
    default = cache_key("jets", 10, 1, 140.0, JetDetectorResponse(), {"process": "qcd"})
    assert default["generator"]["format_version"] == jets_mod.FORMAT_VERSION == 2
    assert default["detector"]["d0_constant"] == 0.010
    assert default["detector"]["d0_inverse_pt"] == 0.090
    assert default["detector"]["dz_constant"] == 0.030
    assert default["detector"]["dz_inverse_pt"] == 0.100
    for change in ({"d0_constant": 0.02}, {"dz_inverse_pt": 0.2}):
        other = cache_key("jets", 10, 1, 140.0, JetDetectorResponse(**change), {"process": "qcd"})
        assert other != default


def test_flat_event_record_vertices_unset_are_the_origin():
    """Pythia leaves vProd unset (None in nextBatch) for particles of the primary vertex."""
    vec = lambda x, y, z: {"px": x, "py": y, "pz": z, "e": 0.0}  # noqa: E731
    prt = ak.Array(
        [
            [
                {"id": 211, "vProd": None},
                {"id": -211, "vProd": vec(0.1, -0.2, 3.0)},
            ],
            [{"id": 22, "vProd": vec(1.5, 0.0, -1.0)}],
        ]
    )
    zeros = ak.values_astype(prt["id"] * 0, np.int64)
    four = ak.zip({"px": zeros + 1.0, "py": zeros + 2.0, "pz": zeros + 3.0, "e": zeros + 4.0})
    batch = {
        "prt": ak.zip(
            {
                "id": prt["id"],
                "status": zeros + 1,
                "daughter1": zeros,
                "daughter2": zeros,
                "p": four,
                "vProd": prt["vProd"],
            },
            depth_limit=2,
        )
    }
    rec, offsets = _pythia.flatten_events(batch)
    assert offsets.tolist() == [0, 2, 3]
    assert rec["vx"].tolist() == [0.0, 0.1, 1.5]
    assert rec["vy"].tolist() == [0.0, -0.2, 0.0]
    assert rec["vz"].tolist() == [0.0, 3.0, -1.0]
    assert rec["vx"].dtype == np.float64


# --------------------------------------------------------------------------------------
# Files


def _check_file(sample: GeneratedSample, process: str, n: int) -> ak.Array:
    name = f"jets_{process}"
    assert set(sample.files) == {name}
    with uproot.open(sample.files[name]) as f:
        tree = f["Jets"]
        assert tree.classname.startswith("TTree")
        assert tree.typenames() == BRANCHES
        prov = json.loads(f["provenance"])
    assert prov == json.loads((sample.directory / "provenance.json").read_text())
    assert prov["jets"] == n and prov["process"] == process
    arr = _read(sample, name)
    assert len(arr) == n

    # Window and acceptance.
    assert np.all((arr.jet_pt >= 550) & (arr.jet_pt < 650))
    assert np.all(np.abs(arr.jet_eta) < 2.0)
    # Constituents: at most 200, pT descending, count consistent.
    npart = ak.num(arr.part_px)
    assert ak.all(npart == arr.npart)
    assert ak.all(npart == np.minimum(arr.jet_nparticles, 200))
    assert ak.all(npart <= 200)
    cpt = np.hypot(arr.part_px, arr.part_py)
    assert ak.all(cpt[:, 1:] <= cpt[:, :-1])
    # The jet is the E-scheme sum of exactly these constituents (when none was cut).
    full = arr[arr.jet_nparticles <= 200]
    assert len(full) > 0
    sx, sy, sz, se = (
        ak.to_numpy(ak.sum(full[f], axis=1)).astype(np.float64)
        for f in ("part_px", "part_py", "part_pz", "part_energy")
    )
    np.testing.assert_allclose(np.hypot(sx, sy), full.jet_pt, rtol=1e-4)
    mass = np.sqrt(np.maximum(se**2 - sx**2 - sy**2 - sz**2, 0))
    np.testing.assert_allclose(mass, full.jet_mass, rtol=2e-3, atol=0.1)
    np.testing.assert_allclose(se, full.jet_energy, rtol=1e-5)
    # Classes agree with charge and pid.
    cls, charge, pid = (
        ak.to_numpy(ak.flatten(arr[f])) for f in ("part_class", "part_charge", "part_pid")
    )
    assert set(np.unique(cls)) <= {0, 1, 2, 3, 4}
    assert np.all((charge != 0) == np.isin(cls, [0, 3, 4]))
    assert np.all((cls == 2) == (pid == 22))
    assert np.all((cls == 3) == (np.abs(pid) == 11))
    # Impact parameters: zero for neutral constituents; tracks carry the resolution of
    # their (reconstructed, stored) pT as the error.
    d0, dz, d0err, dzerr = (
        ak.to_numpy(ak.flatten(arr[f])).astype(np.float64)
        for f in ("part_d0", "part_dz", "part_d0err", "part_dzerr")
    )
    neutral = charge == 0
    assert neutral.any() and (~neutral).any()
    for name, val in (("d0", d0), ("dz", dz), ("d0err", d0err), ("dzerr", dzerr)):
        assert np.all(val[neutral] == 0), name
        assert np.all(np.isfinite(val)), name
    track_pt = ak.to_numpy(ak.flatten(cpt)).astype(np.float64)[~neutral]
    np.testing.assert_allclose(d0err[~neutral], np.hypot(0.010, 0.090 / track_pt), rtol=1e-4)
    np.testing.assert_allclose(dzerr[~neutral], np.hypot(0.030, 0.100 / track_pt), rtol=1e-4)
    assert np.all(d0[~neutral] != 0) and np.all(dz[~neutral] != 0)  # smeared
    # Event numbers come from the generated blocks.
    assert np.all(arr.event < prov["events_generated"])
    return arr


@pytest.mark.parametrize("proc", ["top", "qcd"])
@pytest.mark.slow
@pytest.mark.pythia
@generator
def test_file_layout_and_constituents(proc, request):
    sample = request.getfixturevalue(proc)
    arr = _check_file(sample, proc, 60 if proc == "top" else 40)
    if proc == "top":
        assert set(np.unique(arr.label)) == {4}
        # Matched: the top's pT is close to the jet's.
        assert np.all(np.isfinite(arr.truth_parent_pt))
        assert np.median(np.abs(arr.truth_parent_pt / arr.jet_pt - 1)) < 0.1
    else:
        assert set(np.unique(arr.label)) <= {0, 1, 2, 3}
        assert np.all(np.isnan(arr.truth_parent_pt))


@pytest.mark.slow
@pytest.mark.pythia
@generator
def test_provenance(top):
    prov = top.provenance
    assert prov["pythia_settings"][:3] == [
        "Beams:idA = 2212",
        "Beams:idB = 2212",
        "Beams:eCM = 14000.",
    ]
    assert "PartonLevel:MPI = on" in prov["pythia_settings"]
    assert prov["detector_response"] == JetDetectorResponse().to_dict()
    assert 0 < prov["matching_efficiency"] <= 1
    assert prov["jets_matched"] >= 60
    assert len(prov["block_seeds"]) >= 2
    assert prov["jet_window"] == {"pt_min": 550.0, "pt_max": 650.0, "eta_max": 2.0}
    # ttbar at 14 TeV with pTHat > 440 GeV, W -> hadrons: O(1) pb (LO).
    assert 0.1 < prov["cross_section_pb"] < 20
    seeds = [s["pythia"] for s in prov["block_seeds"]]
    assert len(set(seeds)) == len(seeds)


# --------------------------------------------------------------------------------------
# Physics


@pytest.mark.slow
@pytest.mark.pythia
@generator
def test_jet_masses(top, qcd, wjets):
    m_top = np.median(_read(top, "jets_top").jet_mass)
    m_w = np.median(_read(wjets, "jets_w").jet_mass)
    m_qcd = np.median(_read(qcd, "jets_qcd").jet_mass)
    # Matched top jets peak at the top mass, W jets at the W mass (slightly above, from
    # the underlying event in R = 0.8); QCD jets are much lighter.
    assert abs(m_top - M_TOP) < 20
    assert abs(m_w - M_W) < 15
    assert m_qcd < m_top - 40
    assert set(np.unique(_read(wjets, "jets_w").label)) == {5}


# --------------------------------------------------------------------------------------
# Reproducibility and cache


@pytest.mark.slow
@pytest.mark.pythia
@generator
def test_same_seed_same_sample_whatever_jobs(top, tmp_path):
    again = generate(
        "jets", 60, tmp_path, seed=3, jobs=2, progress=False, options={"process": "top"}
    )
    a, b = _read(top, "jets_top"), _read(again, "jets_top")
    for field in BRANCHES:
        x, y = ak.to_numpy(ak.ravel(a[field])), ak.to_numpy(ak.ravel(b[field]))
        np.testing.assert_array_equal(x, y, err_msg=field)  # nan == nan here
    assert again.provenance["block_seeds"] == top.provenance["block_seeds"]


@pytest.mark.slow
@pytest.mark.pythia
@generator
def test_cached_sample_reused(wjets, tmp_path):
    cache = wjets.directory.parent
    path = wjets.files["jets_w"]
    stamp = path.stat().st_mtime_ns
    again = cached_sample(
        "jets", events=30, seed=4, jobs=1, cache_dir=cache, progress=False, options={"process": "w"}
    )
    assert again.directory == wjets.directory
    assert again.files["jets_w"].stat().st_mtime_ns == stamp
    key = json.loads((wjets.directory / "cache_key.json").read_text())
    assert key["generator"]["options"]["process"] == "w"
    assert math.isclose(key["generator"]["options"]["pt_min"], 550.0)


@pytest.mark.slow
@pytest.mark.pythia
@generator
def test_absurdly_low_efficiency_stops_with_error(tmp_path):
    # A 3 TeV window with pTHat > 20 GeV: no jet passes in the events it may try.
    options = {"process": "qcd", "pt_min": 3000.0, "pt_max": 3100.0, "pthat_min": 20.0}
    with pytest.raises(GenerationError, match=r"only 0 jets from \d+ events.*pthat_min"):
        generate("jets", 5, tmp_path, seed=1, jobs=1, progress=False, options=options)
    assert list(tmp_path.iterdir()) == []  # no half-written output


@pytest.mark.slow
@pytest.mark.pythia
def test_heavy_flavour_enriched_qcd_gives_b_and_c_jets(qcd_bb, tmp_path):
    """qcd_bb / qcd_cc exist for flavour taggers: their jets are mostly labelled b / c."""
    cc = generate(
        "jets",
        events=30,
        out=tmp_path / "qcd_cc",
        seed=5,
        jobs=1,
        progress=False,
        options={"process": "qcd_cc"},
    )
    for process, code, s in (("qcd_bb", 3, qcd_bb), ("qcd_cc", 2, cc)):
        with uproot.open(s.files[f"jets_{process}"]) as f:
            labels = f["Jets"]["label"].array(library="np")
        assert len(labels) == 30
        assert np.mean(labels == code) > 0.7, (process, np.bincount(labels))


def _track_significance(arr: ak.Array, labels: tuple[int, ...]) -> np.ndarray:
    """|d0| / d0err of the tracks (charged constituents) of the jets with these labels."""
    sel = arr[np.isin(ak.to_numpy(arr.label), labels)]
    charged = ak.to_numpy(ak.flatten(sel.part_charge)) != 0
    d0 = ak.to_numpy(ak.flatten(sel.part_d0)).astype(np.float64)[charged]
    err = ak.to_numpy(ak.flatten(sel.part_d0err)).astype(np.float64)[charged]
    return np.abs(d0) / err


@pytest.mark.slow
@pytest.mark.pythia
@generator
def test_b_jets_have_displaced_tracks(qcd_bb, qcd):
    """b hadrons fly ~mm before decaying: far more tracks of b jets have |d0| > 3 sigma
    than of light-quark and gluon jets, whose tracks are prompt up to the resolution."""
    b = _track_significance(_read(qcd_bb, "jets_qcd_bb"), (3,))
    light = _track_significance(_read(qcd, "jets_qcd"), (0, 1))
    assert b.size > 300 and light.size > 300  # ~25 tracks per jet
    frac_b, frac_light = np.mean(b > 3), np.mean(light > 3)
    # Measured: ~0.15 vs ~0.003 (a Gaussian alone gives 0.0027).
    assert frac_b > 0.06, frac_b
    assert frac_light < 0.03, frac_light
    assert frac_b > 4 * frac_light
