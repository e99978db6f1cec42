"""The ``l1`` sample and the L1 physics layer: towers, regions and hardware scales checked
by hand, jets and MET of hand-made events, the model inputs, the pile-up overlay, and tiny
Pythia runs (determinism, pile-up, signals)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fivesigma.errors import GenerationError
from fivesigma.generate import l1 as gen
from fivesigma.physics import l1

EXACT = l1.L1Response(smear=False)
#: no smearing and no tower threshold: every deposit counts
ALL = l1.L1Response(smear=False, tower_threshold=0.0)
#: fastest Pythia setup: non-diffractive pile-up (its MPI initialisation takes < 1 s)
FAST = {"minbias": "nondiffractive", "pool_size": 50}


def _event(*particles, n_events: int = 1, response: l1.L1Response = EXACT, rng=None):
    """L1 table of hand-made particles ``(event, pt, eta, phi, pid, charge)``."""
    ev, pt, eta, phi, pid, q = (np.array(col) for col in zip(*particles, strict=True))
    return l1.reduce_particles(
        ev,
        pt * np.cos(phi),
        pt * np.sin(phi),
        pt * np.sinh(eta),
        pid,
        q,
        n_events=n_events,
        response=response,
        rng=rng,
    )


def _towers(*particles, response: l1.L1Response = EXACT):
    ev, pt, eta, phi, pid, q = (np.array(col) for col in zip(*particles, strict=True))
    dep, _ = l1.deposit_particles(
        ev, pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pid, q, response
    )
    em, had = l1.tower_grids(dep["event"], dep["tower"], dep["em"], dep["had"], 1)
    return l1.calorimeter_towers(em, had, response)


# --------------------------------------------------------------------------------------
# Towers, regions, hardware scales


def test_tower_geometry_and_indices():
    assert l1.N_ETA == 80 and l1.N_PHI == 72 and l1.REGION_SHAPE == (18, 14)
    assert l1.ETA_EDGES[40] == 0.0 and l1.ETA_EDGES[-1] == 5.191
    assert l1.ETA_EDGES[l1.CENTRAL_STOP] == 3.0 and l1.ETA_EDGES[l1.CENTRAL_START] == -3.0
    # eta 0.1 lies in [0.087, 0.174): tower 41; phi 0.2 / (2 pi / 72) = 2.29: tower 2
    ieta, iphi = l1.tower_index([0.1, -0.05, 4.0, 5.5, 2.6], [0.2, -0.01, 3.0, 0.0, 1.0])
    assert ieta.tolist() == [41, 39, 73, -1, 66]  # 4.0 in [3.839, 4.013); 2.6 in [2.5, 2.65)
    assert iphi.tolist() == [2, 71, 34, 0, 11]


def test_hardware_scales_and_saturation():
    assert l1.hw_pt([0.49, 0.5, 10.3, 7.9], 9).tolist() == [0, 1, 20, 15]
    assert l1.hw_pt([255.4, 255.5, 300.0], 9).tolist() == [510, 511, 511]  # 9 bits
    assert l1.hw_pt([1023.4, 2000.0], 11).tolist() == [2046, 2047]  # 11 bits
    assert l1.hw_eta([0.0435 * 3, -0.1, 0.0]).tolist() == [3, -2, 0]
    assert l1.hw_phi([0.0, -0.01, math.pi, 2 * math.pi / 144 * 5.5]).tolist() == [0, 143, 72, 5]


def test_particles_land_in_their_tower_and_region_with_hand_computed_hw_et():
    # two photons in towers (41, 2) and (42, 3): the same region (eta 29 // 4 = 7, phi 0)
    towers = _towers((0, 10.3, 0.1, 0.2, 22, 0.0), (0, 7.9, 0.2, 0.3, 22, 0.0))
    hw = towers["hw"][0]
    assert hw[41, 2] == 20 and hw[42, 3] == 15 and hw.sum() == 35
    regions = l1.regions_from_towers(towers["hw"])
    assert regions.shape == (1, 18, 14) and regions.dtype == np.uint16
    # the region sums the integer tower ETs: 20 + 15 = 35, not floor(18.2 / 0.5) = 36
    assert regions[0, 0, 7] == 35 and regions.sum() == 35
    # a negative-eta, large-phi tower: eta -0.05 -> tower 39 -> region (39 - 12) // 4 = 6;
    # phi -0.01 -> tower 71 -> region 17
    regions = l1.regions_from_towers(_towers((0, 4.0, -0.05, -0.01, 11, -1.0))["hw"])
    assert regions[0, 17, 6] == 8 and regions.sum() == 8


def test_saturation_of_towers_and_regions():
    # three 300 GeV photons in three towers of one region: each tower saturates at 511
    # (9 bits), the region at 1023 (10 bits) instead of 3 x 511
    parts = [(0, 300.0, 0.1 + 0.087 * k, 0.2, 22, 0.0) for k in range(3)]
    towers = _towers(*parts)
    assert sorted(towers["hw"][0][towers["hw"][0] > 0].tolist()) == [511, 511, 511]
    assert l1.regions_from_towers(towers["hw"])[0, 0, 7] == 1023


def test_responses_of_particle_kinds():
    # a 10 GeV pi+ at eta 0: hadronic response 1 - 0.4 * 10^-0.2 = 0.7476
    assert _towers((0, 10.0, 0.01, 0.2, 211, 1.0))["et"].sum() == pytest.approx(7.4763, abs=1e-3)
    # a 20 GeV muon leaves 2 GeV; a neutrino nothing; a 0.5 GeV pion curls up in the barrel
    # but reaches the endcap
    assert _towers((0, 20.0, 0.01, 0.2, 13, -1.0))["et"].sum() == pytest.approx(2.0, rel=1e-3)
    assert _towers((0, 20.0, 0.01, 0.2, 12, 0.0))["et"].sum() == 0.0
    low = l1.L1Response(smear=False, tower_threshold=0.0)
    assert _towers((0, 0.5, 0.5, 0.2, 211, 1.0), response=low)["et"].sum() == 0.0
    assert _towers((0, 0.5, 2.0, 0.2, 211, 1.0), response=low)["et"].sum() > 0.0
    # the tower threshold zeroes a 0.8 GeV photon (default 1 GeV)
    assert _towers((0, 0.8, 0.5, 0.2, 22, 0.0))["et"].sum() == 0.0


# --------------------------------------------------------------------------------------
# Objects


def _spray(event=0, total=120.0, eta=0.5, phi=1.0, n=12, pid=22, seed=3):
    """``n`` photons (or pions) within 0.1 of (eta, phi) with pT summing to ``total``."""
    rng = np.random.default_rng(seed)
    pts = rng.dirichlet(np.ones(n)) * total
    return [
        (event, p, eta + rng.uniform(-0.1, 0.1), phi + rng.uniform(-0.1, 0.1), pid, 0.0)
        for p in pts
    ]


def test_narrow_spray_gives_one_jet_with_its_pt():
    table = _event(*_spray(), response=ALL)
    assert table["n_jet"][0] == 1
    assert table["jet_pt"][0, 0] == pytest.approx(120.0, rel=1e-5)  # photons: response 1
    assert abs(table["jet_eta"][0, 0] - 0.5) < 0.2 and abs(table["jet_phi"][0, 0] - 1.0) < 0.2
    assert table["hw_jet_pt"][0, 0] == 240
    # with the resolution: the smeared sum within 5 sigma of sqrt(sum(0.1^2 E + 0.01^2 E^2))
    rng = np.random.default_rng(1)
    pts = [l1.reduce_particles(
        *(np.array(c) for c in _columns(_spray(seed=s))), n_events=1,
        response=l1.L1Response(tower_threshold=0.0), rng=rng)["jet_pt"][0, 0] for s in range(20)]  # fmt: skip
    sigma = math.sqrt(0.1**2 * 120 * math.cosh(0.5) / 3 + (0.01 * 120) ** 2) / math.cosh(0.5)
    assert abs(np.mean(pts) - 120.0) < 5 * sigma / math.sqrt(20) + 1.0
    assert np.std(pts) < 4 * sigma


def _columns(parts):
    ev, pt, eta, phi, pid, q = (np.array(c) for c in zip(*parts, strict=True))
    return ev, pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pid, q


def test_met_of_balanced_event_and_of_one_particle():
    # two 50 GeV photons back to back (tower centres exactly opposite): no MET
    phi0 = l1.PHI_CENTRES[3]
    table = _event((0, 50.0, 0.3, phi0, 22, 0.0), (0, 50.0, -0.3, phi0 + math.pi, 22, 0.0))
    assert table["met"][0] == pytest.approx(0.0, abs=1e-4) and table["hw_met"][0] == 0
    # one 40 GeV photon: MET = 40 GeV opposite to it
    table = _event((0, 40.0, 0.3, phi0, 22, 0.0))
    assert table["met"][0] == pytest.approx(40.0, rel=1e-6) and table["hw_met"][0] == 80
    assert abs(l1._wrap(np.array(table["met_phi"][0] - phi0 - math.pi)) % (2 * math.pi)) < 1e-5
    # a muon counts in MET with its full pT
    table = _event((0, 30.0, 0.3, phi0, 13, -1.0))
    assert table["n_muon"][0] == 1 and table["muon_pt"][0, 0] == pytest.approx(30.0)
    # muon + its 2 GeV deposit (ET 2 / cosh(0.3)), counted twice
    assert table["met"][0] == pytest.approx(30.0 + 2.0 / math.cosh(0.3), rel=1e-5)


def test_egamma_isolation_and_hoe():
    phi0 = l1.PHI_CENTRES[10]
    iso = _event((0, 30.0, 0.3, phi0, 22, 0.0))
    assert iso["n_egamma"][0] == 1 and iso["egamma_pt"][0, 0] == pytest.approx(30.0)
    assert iso["hw_egamma_iso"][0, 0] == 1 and iso["egamma_iso"][0, 0] == 0.0
    # 12 GeV of hadrons two towers away: in the 5 x 5 ring, relative isolation 0.3 x 1.0
    ring = _event((0, 30.0, 0.3, phi0, 22, 0.0), (0, 12.0, 0.3, phi0 + 0.175, 130, 0.0))
    assert ring["egamma_iso"][0, 0] > 0.25 and ring["hw_egamma_iso"][0, 0] == 0
    # a photon on top of a hard hadron: H/E > 0.5, no e/gamma
    hadronic = _event((0, 10.0, 0.3, phi0, 22, 0.0), (0, 30.0, 0.3, phi0, 130, 0.0))
    assert hadronic["n_egamma"][0] == 0
    # muons below 3 GeV or beyond |eta| 2.4 are not L1 muons
    mu = _event((0, 2.5, 0.3, phi0, 13, 1.0), (0, 20.0, 2.6, phi0, 13, 1.0))
    assert mu["n_muon"][0] == 0


def test_objects_are_pt_ordered_and_padded_with_zeros():
    parts = [(0, 10.0 + 5 * k, -2.0 + 0.35 * k, 0.7 * k, 22, 0.0) for k in range(6)]
    table = _event(*parts, (1, 25.0, 0.0, 0.5, 22, 0.0), n_events=3)
    assert table["n_egamma"].tolist() == [6, 1, 0]
    assert table["egamma_pt"][0].tolist() == [35.0, 30.0, 25.0, 20.0]
    assert table["egamma_pt"][1].tolist() == [25.0, 0.0, 0.0, 0.0]
    assert not table["egamma_pt"][2].any() and not table["hw_egamma_phi"][2].any()
    for key in l1.TABLE_COLUMNS:
        assert table[key].shape[0] == 3


def test_axol1tl_and_cicada_inputs_shape_and_order():
    phi0 = l1.PHI_CENTRES[20]
    table = _event(
        (0, 30.0, 0.3, phi0, 22, 0.0),  # e/gamma (and a jet below 20 GeV: none)
        (0, 25.0, -1.0, 0.5, 13, -1.0),  # muon
        *_spray(total=80.0, eta=-1.5, phi=-2.0, pid=22),  # jet (also an e/gamma)
    )
    x = l1.axol1tl_inputs(table)
    assert x.shape == (1, 57) and x.dtype == np.float32
    assert x[0, 0] == table["hw_met"][0] and x[0, 1] == 0 and x[0, 2] == table["hw_met_phi"][0]
    eg = [table[f"hw_egamma_{q}"][0, 0] for q in ("pt", "eta", "phi")]
    mu = [table[f"hw_muon_{q}"][0, 0] for q in ("pt", "eta", "phi")]
    jet = [table[f"hw_jet_{q}"][0, 0] for q in ("pt", "eta", "phi")]
    assert x[0, 3:6].tolist() == eg and x[0, 15:18].tolist() == mu and x[0, 27:30].tolist() == jet
    assert mu == [50, l1.hw_eta(-1.0), l1.hw_phi(0.5)]
    phys = l1.axol1tl_inputs(table, hardware=False)
    assert phys[0, 15] == pytest.approx(25.0) and phys[0, 16] == pytest.approx(-1.0)
    assert phys[0, 27] == pytest.approx(table["jet_pt"][0, 0])
    c = l1.cicada_inputs(table)
    assert c.shape == (1, 18, 14) and c.dtype == np.float32
    assert c.sum() == table["regions"].astype(np.int64).sum() > 0


def test_reference_seeds_and_rate():
    phi0 = l1.PHI_CENTRES[5]
    table = _event(
        *_spray(total=100.0, eta=0.2, phi=phi0),
        *_spray(1, 60.0, 2.8, -1.0),
        n_events=2,
        response=ALL,
    )
    seeds = l1.reference_seeds(table)
    assert set(seeds) == {
        "single_jet",
        "ht",
        "single_egamma",
        "single_iso_egamma",
        "single_muon",
        "met",
    }
    assert seeds["single_jet"][0] == 100.0 and seeds["ht"][0] == 100.0
    assert seeds["ht"][1] == 0.0 and seeds["single_jet"][1] > 0  # |eta| 2.8 is outside HT
    assert seeds["met"][0] == table["hw_met"][0] * 0.5
    assert l1.rate_hz([1, 0, 0, 0]) == pytest.approx(40e6 * 2544 / 3564 / 4)


# --------------------------------------------------------------------------------------
# Pile-up overlay (a synthetic pool: no Pythia)


def _pool(size=40, seed=5):
    rng = np.random.default_rng(seed)
    deposits = {"event": [], "tower": [], "em": [], "had": []}
    for i in range(size):
        k = rng.integers(1, 6)
        deposits["event"] += [i] * k
        deposits["tower"] += sorted(rng.choice(l1.N_TOWERS, k, replace=False).tolist())
        deposits["em"] += rng.uniform(0, 2, k).tolist()
        deposits["had"] += rng.uniform(0, 2, k).tolist()
    deposits = {k: np.array(v) for k, v in deposits.items()}
    muons = {"event": np.array([3, 7]), "pt": np.array([5.0, 8.0]),
             "eta": np.array([1.0, -0.5]), "phi": np.array([0.1, 2.0])}  # fmt: skip
    return gen._Pool.build(deposits, muons, size), deposits


def test_overlay_draws_rotates_and_mirrors_pool_interactions():
    pool, deposits = _pool()
    rng = np.random.default_rng(0)
    counts = rng.poisson(25.0, 400)
    dep, mu = gen.overlay(pool, counts, rng)
    per_event = np.bincount(dep["event"], weights=dep["em"] + dep["had"], minlength=400)
    mean_interaction = (deposits["em"] + deposits["had"]).sum() / 40
    assert per_event.mean() == pytest.approx(25.0 * mean_interaction, rel=0.1)
    # each copy keeps its towers' pattern: the same eta ring or its mirror image
    ieta = dep["tower"] // l1.N_PHI
    rings = set((deposits["tower"] // l1.N_PHI).tolist())
    assert set(ieta.tolist()) <= rings | {l1.N_ETA - 1 - r for r in rings}
    assert len(set((dep["tower"] % l1.N_PHI).tolist())) > 60  # rotated over all phi
    # muons: pT kept, |eta| kept (mirrored), one per copy of interaction 3 or 7
    assert set(np.round(mu["pt"], 6)) <= {5.0, 8.0} and set(np.round(np.abs(mu["eta"]), 6)) <= {
        1.0,
        0.5,
    }
    assert (mu["eta"] < 0).any() and (mu["eta"] > 0).any()
    assert 0 < mu["pt"].size < counts.sum()


def test_bad_options_are_one_line_errors():
    for options, message in (
        ({"mu": -1}, "l1 option mu must be in [0, 300], got -1"),
        ({"mu": 301}, "l1 option mu must be in [0, 300]"),
        ({"pool_size": 0}, "l1 option pool_size must be in [1, 1e+06]"),
        ({"pool_size": 2.5}, "pool_size must be an integer"),
        ({"process": "zerobais"}, "unknown l1 process 'zerobais'"),
        ({"minbias": "soft"}, "unknown l1 minbias 'soft'"),
        ({"mew": 3}, "unknown l1 option 'mew'"),
        ({"tower_threshold": -1}, "tower_threshold must be a number in [0.0, 100.0]"),
        ({"smear": "yes"}, "smear must be true or false"),
    ):
        with pytest.raises(GenerationError) as err:
            gen.parse_options(options)
        assert message in str(err.value) and "\n" not in str(err.value)
    opts, response = gen.parse_options({"mu": 20, "jet_pt_min": 30, "process": "hh4b"})
    assert opts.mu == 20.0 and response.jet_pt_min == 30.0 and opts.process == "hh4b"


def test_registered():
    from fivesigma.core.registry import GENERATORS
    from fivesigma.generate import PROCESSES

    assert GENERATORS.entry("l1").load() is PROCESSES["l1"]
    assert PROCESSES["l1"].names({"process": "hh4b"}) == ("l1_hh4b",)
    assert PROCESSES["l1"].names(None) == ("l1_zerobias",)
    key = PROCESSES["l1"].key({"mu": 60})
    assert key != PROCESSES["l1"].key({"mu": 61}) and key["response"]["tower_threshold"] == 1.0


# --------------------------------------------------------------------------------------
# Pythia


@pytest.mark.pythia
def test_zerobias_pileup_reads_back(tmp_path):
    pytest.importorskip("pythia8mc")
    means = {}
    for mu in (0, 40):
        out = tmp_path / f"mu{mu}"
        out.mkdir()
        files, prov = gen.run(60, out, 3, 1, progress=False, options={**FAST, "mu": mu})
        table = gen.read(files["l1_zerobias"])
        assert table["jet_pt"].shape == (60, 10) and table["regions"].shape == (60, 18, 14)
        assert table["hw_jet_pt"].dtype == np.int32 and table["regions"].dtype == np.uint16
        assert (table["label"] == 0).all() and (table["weight"] == 1).all()
        assert l1.axol1tl_inputs(table).shape == (60, 57)
        npu = table["n_pileup"]
        assert abs(npu.mean() - mu) < 4 * math.sqrt(max(mu, 1) / 60)
        means[mu] = (l1.cicada_inputs(table).sum(axis=(1, 2)).mean(), l1.ht(table).mean())
        assert prov["pileup"]["mu"] == mu and (out / "provenance.json").is_file()
    assert means[40][0] > 5 * means[0][0]  # calorimeter ET grows with pile-up
    assert means[40][1] > means[0][1]  # and so does the zero-bias HT


@pytest.mark.slow
@pytest.mark.pythia
def test_same_seed_same_sample_whatever_jobs(tmp_path, monkeypatch):
    pytest.importorskip("pythia8mc")
    monkeypatch.setattr(gen, "BLOCK_EVENTS", 15)  # 2 blocks, so jobs = 2 splits the work
    tables = []
    for jobs in (1, 2):
        out = tmp_path / f"j{jobs}"
        out.mkdir()
        files, _ = gen.run(30, out, 4, jobs, progress=False, options={**FAST, "mu": 10})
        tables.append(gen.read(files["l1_zerobias"]))
    for key in tables[0]:
        np.testing.assert_array_equal(tables[0][key], tables[1][key], err_msg=key)


@pytest.mark.slow
@pytest.mark.pythia
def test_signals_differ_from_zero_bias(tmp_path):
    pytest.importorskip("pythia8mc")
    tables = {}
    for process in ("zerobias", "haa4gamma", "zprime"):
        out = tmp_path / process
        out.mkdir()
        files, prov = gen.run(
            40, out, 5, 1, progress=False, options={**FAST, "mu": 5, "process": process}
        )
        tables[process] = gen.read(files[f"l1_{process}"])
        assert (tables[process]["label"] == gen.LABELS[process]).all()
        if process != "zerobias":
            assert prov["cross_section_pb"] > 0 and tables[process]["weight"][0] > 0
    two_eg = {p: np.mean(t["n_egamma"] >= 2) for p, t in tables.items()}
    assert two_eg["haa4gamma"] > 0.4 and two_eg["haa4gamma"] > 4 * two_eg["zerobias"]
    lead = {p: l1.leading_jet_pt(t) for p, t in tables.items()}
    assert np.median(lead["zprime"]) > 300 and np.median(lead["zerobias"]) < 60


@pytest.mark.pythia
def test_cached_sample_and_cli(tmp_path, capsys):
    pytest.importorskip("pythia8mc")
    from fivesigma.cli import main
    from fivesigma.generate import cached_sample

    options = {**FAST, "mu": 2, "process": "zerobias"}
    kwargs = {"events": 5, "seed": 2, "jobs": 1, "cache_dir": tmp_path / "c", "progress": False}
    sample = cached_sample("l1", options=options, **kwargs)
    path = sample.files["l1_zerobias"]
    stamp = path.stat().st_mtime_ns
    again = cached_sample("l1", options=options, **kwargs)
    assert again.files["l1_zerobias"] == path and path.stat().st_mtime_ns == stamp
    assert gen.read(path)["event"].size == 5

    out = tmp_path / "cli"
    argv = ["generate", "l1", "--events", "3", "--out", str(out), "--jobs", "1", "-q"]
    opts = ["--option", "process=zerobias", "--option", "mu=2", "--option", "minbias=nondiffractive",
            "--option", "pool_size=20"]  # fmt: skip
    assert main([*argv, *opts]) == 0
    assert "l1_zerobias.root" in capsys.readouterr().out
    bad = tmp_path / "bad"
    assert main([*argv[:4], "--out", str(bad), "--option", "mu=-1"]) == 2
    err = capsys.readouterr().err
    assert "l1 option mu must be in [0, 300]" in err and err.count("\n") == 1
    assert not bad.exists() or not any(bad.iterdir())
