"""Tests of the built-in higgs4l Pythia8 sample, its files, provenance and cache."""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

import fivesigma.generate as gen_mod
from fivesigma.errors import GenerationError, OutputError
from fivesigma.generate import PROCESSES, GeneratedSample, cached_sample, generate
from fivesigma.physics.detector import LeptonResponse

uproot = pytest.importorskip("uproot")

M_Z = 91.1876  # PDG
M_H = 125.0  # the mass the sample is generated with
EVENTS = 400
LUMI = 140.0
BRANCHES = {
    "event": "uint64_t",
    "weight": "double",
    "nlep": "int32_t",
    "lep_pt": "float[]",
    "lep_eta": "float[]",
    "lep_phi": "float[]",
    "lep_mass": "float[]",
    "lep_pdgid": "int32_t[]",
    "lep_charge": "int32_t[]",
    "true_m4l": "double",
}
pythia = pytest.mark.pythia
slow = pytest.mark.slow


def _has_pythia() -> bool:
    try:
        import pythia8mc  # noqa: F401
    except ImportError:
        return False
    return True


needs_pythia = pytest.mark.skipif(not _has_pythia(), reason="pythia8mc not installed")


def _read(path: Path) -> ak.Array:
    with uproot.open(path) as f:
        return f["Events"].arrays()


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> GeneratedSample:
    out = tmp_path_factory.mktemp("gen") / "out"
    return generate("higgs4l", EVENTS, out, seed=7, jobs=1, luminosity_fb=LUMI, progress=False)


@pytest.fixture(scope="module")
def truth_sample(tmp_path_factory) -> GeneratedSample:
    out = tmp_path_factory.mktemp("truth")
    return generate(
        "higgs4l",
        EVENTS,
        out,
        seed=8,
        jobs=1,
        progress=False,
        detector=LeptonResponse(enabled=False),
    )


# --------------------------------------------------------------------------------------
# Argument checking (no Pythia run)


def test_unknown_process_names_accepted_ones(tmp_path):
    with pytest.raises(GenerationError, match="higgs4l"):
        generate("higgs5l", 10, tmp_path / "o")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("events", [0, -5])
def test_non_positive_events_rejected(tmp_path, events):
    with pytest.raises(GenerationError, match="events"):
        generate("higgs4l", events, tmp_path)


def test_unwritable_out_raises_output_error_and_writes_nothing(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OutputError):
        generate("higgs4l", 10, blocker / "sub", jobs=1, progress=False)
    with pytest.raises(OutputError):
        generate("higgs4l", 10, blocker, jobs=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_registry_lists_higgs4l():
    assert "higgs4l" in PROCESSES
    assert PROCESSES["higgs4l"].processes == ("ggH_4l", "qqZZ_4l")


def test_interrupted_run_leaves_no_files(tmp_path, monkeypatch):
    from fivesigma.generate import _pythia

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_pythia, "run_jobs", boom)
    with pytest.raises(KeyboardInterrupt):
        generate("higgs4l", 10, tmp_path, jobs=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_job_seeds_distinct_and_in_range():
    from fivesigma.generate._pythia import job_seeds, split_blocks

    seeds = job_seeds(1, "ggH_4l", 64)
    assert len({s.pythia for s in seeds}) == 64
    assert all(1 <= s.pythia <= 900_000_000 for s in seeds)
    assert {s.pythia for s in job_seeds(1, "qqZZ_4l", 64)}.isdisjoint({s.pythia for s in seeds})
    assert job_seeds(1, "ggH_4l", 3) == job_seeds(1, "ggH_4l", 3)
    assert split_blocks(12, 5) == [5, 5, 2]
    assert split_blocks(10, 5) == [5, 5]
    assert split_blocks(3, 5) == [3]


# --------------------------------------------------------------------------------------
# Files


@needs_pythia
@pythia
@slow
def test_files_are_ttrees_with_documented_branches(sample):
    assert set(sample.files) == {"ggH_4l", "qqZZ_4l"}
    for name, path in sample.files.items():
        assert path == sample.directory / f"{name}.root"
        with uproot.open(path) as f:
            assert f.classname_of("Events") == "TTree"
            assert f["Events"].typenames() == BRANCHES
            a = f["Events"].arrays()
        assert len(a) == EVENTS  # all events kept, also those with < 4 leptons
        assert len(np.unique(a.event.to_numpy())) == EVENTS
        np.testing.assert_array_equal(ak.num(a.lep_pt), a.nlep)
        pt = a.lep_pt
        assert ak.all(pt[:, 1:] <= pt[:, :-1])  # sorted by pT descending
        assert ak.all(a.lep_charge == -np.sign(a.lep_pdgid))
        assert set(np.unique(np.abs(ak.flatten(a.lep_pdgid)))) <= {11, 13}
        # Reconstructed leptons pass the default acceptance.
        flat_pt, flat_id = ak.flatten(pt).to_numpy(), np.abs(ak.flatten(a.lep_pdgid).to_numpy())
        assert np.all(flat_pt[flat_id == 11] > 7.0) and np.all(flat_pt[flat_id == 13] > 5.0)
        assert np.all(np.abs(ak.flatten(a.lep_eta).to_numpy()) < 2.5)
        assert ak.any(a.nlep < 4)  # the detector loses some leptons, and the events are kept


@needs_pythia
@pythia
@slow
def test_weights_sum_to_sigma_times_lumi(sample):
    for name, path in sample.files.items():
        a = _read(path)
        prov = sample.provenance["processes"][name]
        sigma_pb = prov["cross_section_pb"]
        assert np.sum(a.weight) == pytest.approx(sigma_pb * 1000 * LUMI, rel=1e-12)
        assert prov["events_generated"] == EVENTS


def _reference_sigma(settings: list[str], seed: int, events: int) -> tuple[float, float]:
    """Independent Pythia run, written out here, not through fivesigma: (sigma, err) in pb."""
    import pythia8mc

    p = pythia8mc.Pythia("", False)
    common = [
        "Beams:eCM = 13000.",
        "PartonLevel:all = off",
        "HadronLevel:all = off",
        "Print:quiet = on",
    ]
    for s in [*common, *settings, "Random:setSeed = on", f"Random:seed = {seed}"]:
        assert p.readString(s)
    assert p.init()
    for _ in range(events):
        p.next()
    info = p.infoPython()
    return info.sigmaGen() * 1e9, info.sigmaErr() * 1e9


@needs_pythia
@pythia
@slow
@pytest.mark.parametrize(
    ("name", "settings", "window_pb"),
    [
        (
            "ggH_4l",
            [
                "HiggsSM:gg2H = on",
                "25:m0 = 125",
                "25:onMode = off",
                "25:onIfMatch = 23 23",
                "23:onMode = off",
                "23:onIfAny = 11 13",
            ],
            (1e-3, 1e-2),  # a few fb
        ),
        (
            "qqZZ_4l",
            [
                "WeakDoubleBoson:ffbar2gmZgmZ = on",
                "WeakZ0:gmZmode = 0",
                "23:mMin = 12.",
                "23:onMode = off",
                "23:onIfAny = 11 13",
            ],
            (1e-2, 1e-1),  # tens of fb
        ),
    ],
)
def test_cross_section_agrees_with_independent_pythia_run(sample, name, settings, window_pb):
    prov = sample.provenance["processes"][name]
    ref, ref_err = _reference_sigma(settings, seed=12345, events=3000)
    combined = np.hypot(prov["cross_section_error_pb"], ref_err)
    assert abs(prov["cross_section_pb"] - ref) < 4 * combined
    assert window_pb[0] < prov["cross_section_pb"] < window_pb[1]


@needs_pythia
@pythia
@slow
def test_branching_ratios_are_folded_into_sigma():
    """Closing decay channels scales sigmaGen by Pythia's own BR table product."""
    import pythia8mc

    open_h = ["HiggsSM:gg2H = on", "25:m0 = 125"]
    closed = [
        *open_h,
        "25:onMode = off",
        "25:onIfMatch = 23 23",
        "23:onMode = off",
        "23:onIfAny = 11 13",
    ]
    s_open, e_open = _reference_sigma(open_h, 3, 3000)
    s_closed, e_closed = _reference_sigma(closed, 4, 3000)
    p = pythia8mc.Pythia("", False)
    p.readString("Print:quiet = on")
    p.readString("25:m0 = 125")
    p.readString("HiggsSM:gg2H = on")
    p.init()
    h = p.particleData.particleDataEntryPtr(25)
    z = p.particleData.particleDataEntryPtr(23)
    br_zz = sum(
        h.channel(i).bRatio()
        for i in range(h.sizeChannels())
        if (h.channel(i).product(0), h.channel(i).product(1)) == (23, 23)
    )
    br_ll = sum(
        z.channel(i).bRatio()
        for i in range(z.sizeChannels())
        if abs(z.channel(i).product(0)) in (11, 13)
    )
    ratio = s_closed / s_open
    ratio_err = ratio * np.hypot(e_open / s_open, e_closed / s_closed)
    assert abs(ratio - br_zz * br_ll**2) < 4 * ratio_err


# --------------------------------------------------------------------------------------
# Reproducibility and jobs


@needs_pythia
@pythia
@slow
def test_same_seed_identical_different_seed_different(sample, tmp_path):
    again = generate(
        "higgs4l", EVENTS, tmp_path / "a", seed=7, jobs=1, luminosity_fb=LUMI, progress=False
    )
    other = generate(
        "higgs4l", EVENTS, tmp_path / "b", seed=9, jobs=1, luminosity_fb=LUMI, progress=False
    )
    for name in sample.files:
        a, b, c = _read(sample.files[name]), _read(again.files[name]), _read(other.files[name])
        for branch in BRANCHES:
            assert ak.array_equal(a[branch], b[branch], equal_nan=True), branch
        assert not ak.array_equal(a.lep_pt, c.lep_pt)


@needs_pythia
@pythia
@slow
def test_blocks_have_distinct_seeds_and_jobs_do_not_change_the_sample(tmp_path, monkeypatch):
    from fivesigma.generate import higgs4l

    monkeypatch.setattr(higgs4l, "BLOCK_EVENTS", 150)
    s = generate("higgs4l", 300, tmp_path / "two", seed=3, jobs=2, progress=False)
    one = generate("higgs4l", 300, tmp_path / "one", seed=3, jobs=1, progress=False)
    for name, path in s.files.items():
        prov = s.provenance["processes"][name]
        seeds = [j["pythia"] for j in prov["block_seeds"]]
        assert len(seeds) == 2 and seeds[0] != seeds[1]
        assert [j["events"] for j in prov["block_seeds"]] == [150, 150]
        a = _read(path)
        assert len(a) == 300 and len(np.unique(a.event.to_numpy())) == 300
        # No event duplicated between the blocks: true_m4l (float64, continuous) is unique.
        m4l = a.true_m4l.to_numpy()
        m4l = m4l[np.isfinite(m4l)]
        assert len(np.unique(m4l)) == len(m4l)
        assert np.isfinite(a.true_m4l.to_numpy()).sum() > 250
        # Two processes or one: the same events.
        b = _read(one.files[name])
        assert ak.all(a.lep_pt == b.lep_pt)
        np.testing.assert_array_equal(a.true_m4l.to_numpy(), b.true_m4l.to_numpy())


# --------------------------------------------------------------------------------------
# Physics sanity


@needs_pythia
@pythia
@slow
def test_signal_true_m4l_is_the_higgs_mass(sample):
    m4l = _read(sample.files["ggH_4l"]).true_m4l.to_numpy()
    ok = np.isfinite(m4l)
    assert ok.mean() > 0.99  # every H -> ZZ* -> 4l event has 4 hard-process leptons
    assert np.all(np.abs(m4l[ok] - M_H) < 1.0)  # Gamma_H ~ 4 MeV


@needs_pythia
@pythia
@slow
def test_background_sfos_pairs_peak_at_mz(truth_sample):
    a = _read(truth_sample.files["qqZZ_4l"])
    lep = ak.zip(
        {"pt": a.lep_pt, "eta": a.lep_eta, "phi": a.lep_phi, "mass": a.lep_mass, "pid": a.lep_pdgid}
    )
    pairs = ak.flatten(ak.combinations(lep, 2))
    sfos = pairs[(pairs["0"].pid == -pairs["1"].pid)]
    l1, l2 = sfos["0"], sfos["1"]
    # Massless-lepton pair mass from (pt, eta, phi): closed form.
    m2 = 2 * l1.pt * l2.pt * (np.cosh(l1.eta - l2.eta) - np.cos(l1.phi - l2.phi))
    m = np.sqrt(ak.to_numpy(m2))
    counts, edges = np.histogram(m, bins=np.arange(60.0, 122.0, 4.0))
    peak = 0.5 * (edges[np.argmax(counts)] + edges[np.argmax(counts) + 1])
    assert abs(peak - M_Z) < 4.0
    assert counts.max() > 5 * np.median(counts)


@needs_pythia
@pythia
@slow
def test_truth_lepton_flavours_consistent_with_z_to_ee_mumu(truth_sample):
    for name in ("ggH_4l", "qqZZ_4l"):
        a = _read(truth_sample.files[name])
        pid = a.lep_pdgid
        n_e = ak.to_numpy(ak.sum(abs(pid) == 11, axis=1))
        n_mu = ak.to_numpy(ak.sum(abs(pid) == 13, axis=1))
        # Z -> ee/mumu (and photon splittings) only make same-flavour pairs.
        assert np.all(n_e % 2 == 0) and np.all(n_mu % 2 == 0)
        assert np.all(ak.to_numpy(ak.sum(a.lep_charge, axis=1)) == 0)
        assert np.mean((n_e + n_mu) == 4) > 0.95
        # Lepton universality: 2e2mu is half of 4l events (4e, 4mu a quarter each).
        four = (n_e + n_mu) == 4
        frac = np.mean(n_e[four] == 2)
        err = np.sqrt(0.25 / four.sum())
        assert abs(frac - 0.5) < 4 * err + 0.05  # + interference effects in 4e/4mu


# --------------------------------------------------------------------------------------
# Provenance and cache


@needs_pythia
@pythia
@slow
def test_provenance_json_and_tobjstring(sample):
    prov = json.loads((sample.directory / "provenance.json").read_text())
    assert prov == sample.provenance
    for key in (
        "fivesigma_version",
        "pythia8mc_version",
        "seed",
        "luminosity_fb",
        "detector_response",
        "notes",
        "created",
    ):
        assert key in prov
    assert "MPI" in prov["notes"]
    for name, path in sample.files.items():
        with uproot.open(path) as f:
            assert f.classname_of("provenance") == "TObjString"
            inner = json.loads(str(f["provenance"]))
        assert inner["process"] == name
        assert inner == prov["processes"][name]
        assert "PartonLevel:MPI = off" in inner["pythia_settings"]
        assert inner["events_generated"] == EVENTS
        assert inner["cross_section_error_pb"] > 0
        assert inner["block_seeds"][0]["events"] == EVENTS
        assert inner["detector_response"] == LeptonResponse().to_dict()


@needs_pythia
@pythia
@slow
def test_cache_reuses_and_keys_on_seed(tmp_path, monkeypatch):
    s1 = cached_sample("higgs4l", events=200, seed=1, jobs=1, cache_dir=tmp_path, progress=False)
    mtimes = {n: p.stat().st_mtime_ns for n, p in s1.files.items()}

    def no_generation(*args, **kwargs):
        raise AssertionError("cached sample was regenerated")

    monkeypatch.setattr(gen_mod, "generate", no_generation)
    s2 = cached_sample("higgs4l", events=200, seed=1, jobs=1, cache_dir=tmp_path, progress=False)
    assert s2.directory == s1.directory
    assert {n: p.stat().st_mtime_ns for n, p in s2.files.items()} == mtimes
    monkeypatch.undo()

    s3 = cached_sample("higgs4l", events=200, seed=2, jobs=1, cache_dir=tmp_path, progress=False)
    assert s3.directory != s1.directory and s3.directory.parent == tmp_path
    # No leftovers of the temporary directories (the per-entry lock files stay).
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".lock") == sorted(
        [s1.directory.name, s3.directory.name]
    )


@needs_pythia
@pythia
@slow
def test_cache_dir_from_environment_and_incomplete_is_regenerated(tmp_path, monkeypatch):
    monkeypatch.setenv("FIVESIGMA_CACHE", str(tmp_path / "envcache"))
    s1 = cached_sample("higgs4l", events=200, seed=5, jobs=1, progress=False)
    assert s1.directory.parent == tmp_path / "envcache"
    s1.files["qqZZ_4l"].unlink()  # damage it: must not be taken as complete
    s2 = cached_sample("higgs4l", events=200, seed=5, jobs=1, progress=False)
    assert s2.files["qqZZ_4l"].is_file()


def test_missing_pythia_settings_database_is_named(tmp_path):
    import os
    import subprocess
    import sys

    pytest.importorskip("pythia8mc")
    code = (
        "from fivesigma.generate._pythia import make_pythia\n"
        "from fivesigma.errors import GenerationError\n"
        "try:\n    make_pythia(['Beams:eCM = 13000.'], 1)\n"
        "except GenerationError as err:\n    print('ERR', err)\n"
    )
    env = {**os.environ, "PYTHIA8DATA": str(tmp_path / "nowhere")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert "ERR Pythia found no settings database" in proc.stdout
    assert "PYTHIA8DATA" in proc.stdout


def test_concurrent_requests_for_one_sample_generate_it_once(tmp_path, monkeypatch):
    """Two runs asking for the same cache entry at once: one generates, the other waits."""
    import threading
    import time

    calls = []

    def fake_generate(process, events, out, **kwargs):
        calls.append(process)
        time.sleep(0.5)  # long enough for the second request to arrive meanwhile
        for name in gen_mod.PROCESSES[process].names(kwargs.get("options")):
            (out / f"{name}.root").write_bytes(b"x")
        (out / "provenance.json").write_text("{}")

    monkeypatch.setattr(gen_mod, "generate", fake_generate)
    results = []

    def request():
        results.append(
            cached_sample("higgs4l", events=10, seed=3, jobs=1, cache_dir=tmp_path, progress=False)
        )

    threads = [threading.Thread(target=request) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["higgs4l"]
    assert results[0].directory == results[1].directory
    assert all(p.is_file() for p in results[1].files.values())


def test_an_absurd_number_of_events_is_one_line_before_any_work(tmp_path, capsys):
    from fivesigma.cli import main

    out = tmp_path / "g"
    assert main(["generate", "higgs4l", "--events", "99999999999999999999", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "more than this generator makes" in err and err.count("\n") == 1
    assert not out.exists()
