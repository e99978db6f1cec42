"""Tests of the built-in ``dijets`` samples (Pythia8 + FastJet + detector response)."""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest

from fivesigma.core.registry import GENERATORS
from fivesigma.errors import GenerationError
from fivesigma.generate import PROCESSES, GeneratedSample, cached_sample, generate
from fivesigma.generate import dijets as dijets_mod
from fivesigma.generate.cache import cache_key
from fivesigma.physics import kinematics
from fivesigma.physics.jet_detector import JetDetectorResponse
from fivesigma.physics.substructure import nsubjettiness

uproot = pytest.importorskip("uproot")


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

#: a signal sample of 300 kept events needs two blocks (~70 % of 400 pass), so jobs=2
#: below really runs two processes.
SIGNAL = {"process": "signal", "mpi": False}


def _read(sample: GeneratedSample, name: str) -> dict[str, np.ndarray]:
    with uproot.open(sample.files[name]) as f:
        return f["Events"].arrays(library="np")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def signal(cache) -> GeneratedSample:
    pytest.importorskip("pythia8mc")
    return cached_sample(
        "dijets", 300, seed=4, jobs=1, cache_dir=cache, progress=False, options=SIGNAL
    )


@pytest.fixture(scope="module")
def qcd(tmp_path_factory) -> GeneratedSample:
    pytest.importorskip("pythia8mc")
    out = tmp_path_factory.mktemp("qcd")
    options = {"process": "qcd", "mpi": False, "max_constituents": 60}
    return generate("dijets", 60, out, seed=4, jobs=1, progress=False, options=options)


# --------------------------------------------------------------------------------------
# Registration and options (no Pythia)


def test_registered():
    assert "dijets" in GENERATORS.names()
    assert GENERATORS.entry("dijets").target == "fivesigma.generate:PROCESSES.dijets"
    gen = PROCESSES["dijets"]
    assert gen.accepts_options and gen.default_detector is JetDetectorResponse
    assert gen.names({"process": "signal"}) == ("dijets_signal",)
    assert gen.names(None) == ("dijets_qcd",)


def test_defaults_and_settings():
    opts = dijets_mod.parse_options(None)
    assert (opts.process, opts.leading_pt_min, opts.eta_max, opts.radius) == (
        "qcd",
        1200.0,
        2.5,
        1.0,
    )
    qcd = dijets_mod.settings_for(opts)
    assert "Beams:eCM = 13000." in qcd and "HardQCD:all = on" in qcd
    assert f"PhaseSpace:pTHatMin = {opts.pthat_min:g}" in qcd
    sig = dijets_mod.settings_for(dijets_mod.parse_options({"process": "signal", "m_x": 400}))
    assert "34:m0 = 3500" in sig and "37:m0 = 400" in sig and "36:m0 = 100" in sig
    assert "PartonLevel:MPI = off" in dijets_mod.settings_for(opts)
    on = dijets_mod.parse_options({"mpi": True})
    assert "PartonLevel:MPI = on" in dijets_mod.settings_for(on)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"proces": "qcd"}, "unknown dijets option 'proces'.*process"),
        ({"process": "wprime"}, "unknown dijets process 'wprime'; accepted: qcd, signal"),
        ({"m_x": 3000, "m_y": 500}, "do not fit"),
        ({"m_y": 5}, "do not fit"),
        ({"m_resonance": -1}, "m_resonance"),
        ({"pthat_min": "high"}, "pthat_min must be a finite number"),
        ({"leading_pt_min": 0}, "leading_pt_min"),
        ({"eta_max": 0}, "eta_max"),
        ({"radius": 3}, "radius"),
        ({"mpi": "yes"}, "mpi must be true or false"),
        ({"max_constituents": 0}, "max_constituents must be a positive integer"),
        ({"max_constituents": 2.5}, "max_constituents"),
    ],
)
def test_bad_options(tmp_path, options, match):
    with pytest.raises(GenerationError, match=match) as err:
        generate("dijets", 10, tmp_path, progress=False, options=options)
    assert "\n" not in str(err.value)
    assert not any(tmp_path.iterdir())  # nothing written


def test_cache_key_depends_on_options():
    det = JetDetectorResponse()
    a = cache_key("dijets", 100, 1, 140.0, det, {"process": "qcd"})
    b = cache_key("dijets", 100, 1, 140.0, det, {"process": "signal"})
    c = cache_key("dijets", 100, 1, 140.0, det, {"process": "qcd", "mpi": True})
    assert a != b and a != c
    assert a == cache_key("dijets", 100, 1, 140.0, det, {"process": "qcd", "pthat_min": None})


def test_nsubjettiness_takes_arrays_and_samples():
    jets = ak.Array(
        [
            [
                {"px": 100.0, "py": 0.0, "pz": 0.0, "energy": 100.0},
                {"px": 50.0, "py": 20.0, "pz": 5.0, "energy": 54.2},
                {"px": 30.0, "py": -10.0, "pz": 2.0, "energy": 31.7},
            ],
            [{"px": 10.0, "py": 0.0, "pz": 0.0, "energy": 10.0}],
        ]
    )

    class Sample:
        constituents = jets

    taus = nsubjettiness(jets, 3)
    np.testing.assert_array_equal(taus, nsubjettiness(Sample(), 3))
    assert taus.shape == (2, 3) and np.all(taus[1] == 0) and taus[0, 2] == 0
    assert taus[0, 0] > taus[0, 1] > 0


# --------------------------------------------------------------------------------------
# Generated samples (Pythia)


@pytest.mark.slow
@pytest.mark.pythia
@generator
def test_signal_peaks_at_the_masses(signal):
    a = _read(signal, "dijets_signal")
    assert a["mjj"].size == 300 and np.all(a["label"] == 1)
    # The reconstructed peak sits a few % below m_resonance (FSR out of the jets).
    assert 3200 < np.median(a["mjj"]) < 3550
    assert np.mean(np.abs(a["mjj"] - 3500) < 400) > 0.7
    assert 80 < np.median(a["mj1"]) < 140  # J1, the lighter jet: Y (100 GeV)
    assert 440 < np.median(a["mj2"]) < 530  # J2: X (500 GeV)
    assert np.mean(np.abs(a["mj2"] - 500) < 60) > 0.5
    # two-prong jets: low tau21
    assert np.median(a["tau21_j2"]) < 0.4


@pytest.mark.slow
@pytest.mark.pythia
@generator
def test_qcd_features_and_selection(qcd):
    a = _read(qcd, "dijets_qcd")
    assert a["mjj"].size == 60 and np.all(a["label"] == 0)
    flat = [k for k, v in a.items() if v.dtype != object]
    for key in flat:
        assert np.all(np.isfinite(a[key].astype(float))), key
    assert np.all(np.maximum(a["pt_j1"], a["pt_j2"]) > 1200)
    assert np.all(np.abs(a["eta_j1"]) < 2.5) and np.all(np.abs(a["eta_j2"]) < 2.5)
    assert np.all(a["mj1"] <= a["mj2"])
    np.testing.assert_allclose(a["delta_mj"], a["mj2"] - a["mj1"], rtol=1e-12)
    np.testing.assert_allclose(a["tau21_j1"], a["tau2_j1"] / a["tau1_j1"], rtol=1e-12)
    assert np.all((a["tau21_j2"] >= 0) & (a["tau21_j2"] <= 1.2))
    # mjj from the two jets' (pt, eta, phi, m)
    p = [0.0, 0.0, 0.0, 0.0]
    for j in ("j1", "j2"):
        pt, eta, phi, m = a[f"pt_{j}"], a[f"eta_{j}"], a[f"phi_{j}"], a[f"m{j}"]
        px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
        p = [p[0] + px, p[1] + py, p[2] + pz, p[3] + np.sqrt(px**2 + py**2 + pz**2 + m**2)]
    np.testing.assert_allclose(a["mjj"], kinematics.mass(*p), rtol=1e-6)
    assert np.all(a["pthat"] >= dijets_mod.parse_options(None).pthat_min)
    # equal weights summing to sigma * efficiency * luminosity
    prov = qcd.provenance
    assert np.all(a["weight"] == a["weight"][0])
    expected = prov["cross_section_pb"] * 1000 * 140.0 * prov["efficiency"]
    assert a["weight"].sum() == pytest.approx(expected, rel=1e-9)


@pytest.mark.slow
@pytest.mark.pythia
@generator
def test_constituents(qcd):
    with uproot.open(qcd.files["dijets_qcd"]) as f:
        t = f["Events"].arrays()
    for j in ("j1", "j2"):
        n = ak.to_numpy(t[f"n{j}"])
        np.testing.assert_array_equal(n, np.minimum(ak.to_numpy(t[f"nconst_{j}"]), 60))
        assert ak.all(ak.num(t[f"{j}_px"]) == t[f"n{j}"])
        pt = np.hypot(t[f"{j}_px"], t[f"{j}_py"])
        assert ak.all(pt[:, :-1] >= pt[:, 1:])  # pT descending
        # a jet with every constituent stored: its four-momentum is their sum
        full = ak.to_numpy(t[f"nconst_{j}"]) <= 60
        if full.any():
            sx = ak.to_numpy(ak.sum(t[f"{j}_px"], axis=1))[full]
            sy = ak.to_numpy(ak.sum(t[f"{j}_py"], axis=1))[full]
            np.testing.assert_allclose(np.hypot(sx, sy), ak.to_numpy(t[f"pt_{j}"])[full],
                                       rtol=1e-4)  # fmt: skip


@pytest.mark.slow
@pytest.mark.pythia
@generator
def test_same_sample_whatever_jobs_and_cache_reused(signal, cache, tmp_path):
    again = cached_sample(
        "dijets", 300, seed=4, jobs=2, cache_dir=cache, progress=False, options=SIGNAL
    )
    assert again.directory == signal.directory  # found in the cache, not regenerated
    two = generate("dijets", 300, tmp_path, seed=4, jobs=2, progress=False, options=SIGNAL)
    assert len(signal.provenance["block_seeds"]) == 2
    with (
        uproot.open(signal.files["dijets_signal"]) as fa,
        uproot.open(two.files["dijets_signal"]) as fb,
    ):
        a, b = fa["Events"].arrays(), fb["Events"].arrays()
    assert a.fields == b.fields
    for key in a.fields:
        assert ak.to_list(a[key]) == ak.to_list(b[key]), key
    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert prov["events"] == 300 and prov["process"] == "signal"


@pytest.mark.slow
@pytest.mark.pythia
@generator
def test_read_dijets_reads_the_generator_file(signal):
    from fivesigma.tasks.anomaly.data import read_dijets

    table = read_dijets(signal.files["dijets_signal"])
    a = _read(signal, "dijets_signal")
    assert len(table) == 300 and "j1_px" not in table.columns
    np.testing.assert_array_equal(table.features(), np.column_stack(
        [a["mj1"], a["delta_mj"], a["tau21_j1"], a["tau21_j2"]]))  # fmt: skip


@pytest.mark.slow
@pytest.mark.pythia
@generator
def test_impossible_cut_stops_with_error(tmp_path):
    options = {"process": "qcd", "mpi": False, "pthat_min": 50, "leading_pt_min": 3000}
    with pytest.raises(GenerationError, match="only 0 of 800 events pass"):
        generate("dijets", 5, tmp_path, seed=1, jobs=1, progress=False, options=options)
