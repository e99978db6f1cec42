"""`fivesigma benchmark top` and `fivesigma apply` on jet taggers, on tiny synthetic jets
written in the Top Quark Tagging Reference Dataset layout (pandas HDF5)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from fivesigma.cli import main
from fivesigma.errors import ConfigError, DataError
from fivesigma.tasks.jets.apply import apply_tagger
from fivesigma.tasks.jets.benchmark import BenchmarkSettings, run_benchmark

N_MAX = 200


def _jet(rng, prongs: int, n: int) -> np.ndarray:
    """(n, 4) E, px, py, pz of massless particles around `prongs` axes near eta=0, phi=0."""
    axes = rng.normal(0.0, 0.25, size=(prongs, 2)) if prongs > 1 else np.zeros((1, 2))
    which = rng.integers(0, prongs, n)
    eta = axes[which, 0] + rng.normal(0, 0.03, n)
    phi = axes[which, 1] + rng.normal(0, 0.03, n)
    pt = rng.exponential(20.0, n) + 1.0
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return np.column_stack([pt * np.cosh(eta), px, py, pz])


def write_toptagging(path, n_jets: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    cols = {f"{c}_{i}": np.zeros(n_jets) for i in range(N_MAX) for c in ("E", "PX", "PY", "PZ")}
    df = pd.DataFrame(cols)
    sig = np.arange(n_jets) % 2
    for j in range(n_jets):
        p = _jet(rng, 3 if sig[j] else 1, int(rng.integers(8, 30)))
        p = p[np.argsort(-np.hypot(p[:, 1], p[:, 2]))]
        for k, c in enumerate(("E", "PX", "PY", "PZ")):
            df.loc[j, [f"{c}_{i}" for i in range(len(p))]] = p[:, k]
    df["is_signal_new"] = sig
    df["ttv"] = np.where(np.arange(n_jets) % 5 < 3, 0, np.where(np.arange(n_jets) % 5 == 3, 1, 2))
    df.to_hdf(path, key="table", mode="w")
    return path


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    data = write_toptagging(tmp / "jets.h5", 300)
    settings = BenchmarkSettings(
        data=[str(data)],
        seeds=2,
        taggers=("bdt", "pfn", "part"),
        epochs=2,
        batch_size=32,
        max_particles=16,
        progress=False,
        tagger_params={"bdt": {"n_estimators": 20}, "part": {"model_params": {"num_layers": 1}}},
    )
    return tmp, data, run_benchmark(settings, tmp / "out")


def test_benchmark_writes_table_json_html_and_bundles(bench):
    tmp, _, _result = bench
    out = tmp / "out"
    table = (out / "benchmark.md").read_text()
    assert table.splitlines()[0].startswith("| tagger | accuracy | AUC")
    rows = [line for line in table.splitlines()[2:] if line.startswith("|")]
    assert [line.split("|")[1].strip() for line in rows] == ["bdt", "pfn", "part"]
    j = json.loads((out / "metrics.json").read_text())
    # The published dataset's own train/val/test split (ttv) is used: 3/5, 1/5, 1/5.
    assert j["n_jets"] == {"train": 180, "validation": 60, "test": 60, "extra_test_background": 0}
    for name in ("bdt", "pfn", "part"):
        s = j["taggers"][name]
        assert s["runs"] == 2 and len(j["runs"][name]) == 2
        runs = [r["auc"] for r in j["runs"][name]]
        assert s["auc"] == pytest.approx(np.mean(runs))
        assert s["auc_std"] == pytest.approx(np.std(runs, ddof=1))
        assert 0.0 <= s["accuracy"] <= 1.0 and s["parameters"] > 0
        assert (out / "models" / name / "manifest.json").is_file()
        first = j["runs"][name][0]
        low, high = first["rejection_at_eff_s_0.5_interval"]
        value = first["rejection_at_eff_s_0.5"]  # JSON writes inf as null
        assert low <= (np.inf if value is None else value) <= (np.inf if high is None else high)
        assert s["rejection_at_eff_s_0.5_interval"] == [low, high]
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 1 + 3 and "http" not in html.replace(
        "https://fastjet", ""
    )
    n_bkg = j["taggers"]["bdt"]["n_background_test"]
    assert f"{n_bkg} test background jets" in html
    assert f"{n_bkg} test background jets" in (out / "benchmark.md").read_text()


def test_three_prong_jets_are_separable(bench):
    _, _, result = bench
    # 3-prong vs 1-prong toy jets: the N-subjettiness BDT must see it clearly.
    assert result["taggers"]["bdt"]["auc"] > 0.9


def test_apply_reproduces_benchmark_scores(bench, tmp_path):
    tmp, data, _ = bench
    out = tmp_path / "scores.parquet"
    info = apply_tagger(tmp / "out" / "models" / "pfn", [str(data)], out)
    assert info["jets"] == 300
    t = pq.read_table(out).to_pandas()
    assert list(t.columns[:3]) == ["file_index", "jet", "label"]
    assert np.allclose(t["prob_0"] + t["prob_1"], 1.0, atol=1e-6)
    # Same scores as predicting the test jets directly with the loaded tagger.
    from fivesigma.io.jets import read_jets
    from fivesigma.tasks.jets.features import constituent_inputs, input_options
    from fivesigma.tasks.jets.tagger import load

    tagger = load(tmp / "out" / "models" / "pfn")
    sample = read_jets([str(data)])
    spec = tagger.bundle_data_
    assert spec["frame"] == "principal"  # the benchmark's default inputs
    inputs = constituent_inputs(sample, **input_options(spec))
    np.testing.assert_allclose(
        t["prob_1"].to_numpy(), tagger.predict_proba(inputs)[:, 1], rtol=1e-5, atol=1e-6
    )


def test_cli_benchmark_and_bad_tagger(tmp_path, capsys):
    data = write_toptagging(tmp_path / "j.h5", 100, seed=3)
    code = main(
        [
            "benchmark",
            "top",
            "--data",
            str(data),
            "--taggers",
            "bdt",
            "--out",
            str(tmp_path / "o"),
            "-q",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "| bdt |" in out
    code = main(
        [
            "benchmark",
            "top",
            "--data",
            str(data),
            "--taggers",
            "bdt,partnet",
            "--out",
            str(tmp_path / "p"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "unknown tagger 'partnet'" in err and "part" in err
    assert not (tmp_path / "p").exists()
    with pytest.raises(ConfigError, match="unknown benchmark task"):
        BenchmarkSettings(task="wz").check()
    code = main(
        [
            "benchmark",
            "top",
            "--data",
            str(data),
            "--frame",
            "rotated",
            "--out",
            str(tmp_path / "f"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "unknown jet frame 'rotated'" in err and "principal" in err
    assert not (tmp_path / "f").exists()
    argv = ["benchmark", "top", "--data", str(data), "--taggers", "pfn", "--epochs", "1", "-q"]
    code = main([*argv, "--max-particles", "0", "--out", str(tmp_path / "m0")])
    err = capsys.readouterr().err
    assert code == 2 and "max_particles must be a number of constituents >= 1" in err
    assert not (tmp_path / "m0").exists()
    assert main([*argv, "--max-particles", "6", "--out", str(tmp_path / "m6")]) == 0
    written = json.loads((tmp_path / "m6" / "metrics.json").read_text())
    assert written["settings"]["max_particles"] == 6


def test_cli_benchmark_on_a_missing_gpu_fails_before_any_work(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    data = write_toptagging(tmp_path / "j.h5", 20, seed=3)
    argv = ["benchmark", "top", "--data", str(data), "--out", str(tmp_path / "g"), "-q"]
    code = main([*argv, "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 2 and "no CUDA GPU" in err and "'cpu'" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "g").exists()
    code = main([*argv, "--device", "tpu"])
    assert code == 2 and "unknown device 'tpu'" in capsys.readouterr().err
    # the BDT alone needs no GPU, so a GPU device does not stop it
    assert main([*argv, "--device", "cuda", "--taggers", "bdt"]) == 0


def test_fastjet_banner_does_not_reach_stdout(tmp_path):
    import subprocess
    import sys

    data = write_toptagging(tmp_path / "j.h5", 4)
    code = (
        "from fivesigma.io.jets import read_jets; from fivesigma.tasks.jets.features import jet_observables; "
        f"obs, names = jet_observables(read_jets([{str(data)!r}])); print('tau21', obs[:, names.index('tau21')].round(3).tolist())"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.startswith("tau21 [") and "FastJet" not in proc.stdout


def write_generated_layout(path, labels, seed=0):
    """Jets in the generator's ROOT layout; class code k gets k-dependent prongs and size."""
    import awkward as ak
    import uproot

    rng = np.random.default_rng(seed)
    rank = {3: 0, 2: 1, 0: 2, 1: 3, 4: 4, 5: 2}
    parts = [_jet(rng, 1 + rank[c] % 3, 6 + 4 * rank[c] + int(rng.integers(0, 3))) for c in labels]
    parts = [p[np.argsort(-np.hypot(p[:, 1], p[:, 2]))] for p in parts]
    counts = [len(p) for p in parts]
    flat = np.concatenate(parts).astype(np.float32)

    def jag(col, dtype=np.float32):
        return ak.values_astype(ak.unflatten(col, counts), dtype)

    zeros = np.zeros(len(flat), dtype=np.int32)
    part = ak.zip(
        {
            "px": jag(flat[:, 1]),
            "py": jag(flat[:, 2]),
            "pz": jag(flat[:, 3]),
            "energy": jag(flat[:, 0]),
            "charge": jag(zeros, np.int32),
            "pid": jag(zeros + 22, np.int32),
            "class": jag(zeros + 2, np.int32),
        }
    )
    tot = np.array([p.sum(axis=0) for p in parts])
    pt = np.hypot(tot[:, 1], tot[:, 2])
    jets = {
        "jet_pt": pt.astype(np.float32),
        "jet_eta": np.arcsinh(tot[:, 3] / pt).astype(np.float32),
        "jet_phi": np.arctan2(tot[:, 2], tot[:, 1]).astype(np.float32),
        "jet_mass": np.sqrt(np.maximum(tot[:, 0] ** 2 - (tot[:, 1:] ** 2).sum(axis=1), 0)).astype(
            np.float32
        ),
        "jet_energy": tot[:, 0].astype(np.float32),
        "label": np.asarray(labels, dtype=np.int32),
        "jet_nparticles": np.asarray(counts, dtype=np.int32),
    }
    with uproot.recreate(path) as f:
        tree = f.mktree(
            "Jets",
            {**{k: v.dtype for k, v in jets.items()}, "part": part.type.content},
            counter_name=lambda _: "npart",
        )
        tree.extend({**jets, "part": part})
    return path


def test_flavour_benchmark_reports_one_vs_rest_per_class(tmp_path):
    codes = np.tile([3, 2, 0, 1, 4, 5], 60)  # b, c, light, gluon, top, and W jets (not used)
    data = write_generated_layout(tmp_path / "jets_mix.root", codes)
    settings = BenchmarkSettings(
        task="flavour",
        data=[str(data)],
        taggers=("bdt", "pfn"),
        epochs=2,
        batch_size=32,
        max_particles=24,
        progress=False,
        tagger_params={"bdt": {"n_estimators": 30}},
    )
    result = run_benchmark(settings, tmp_path / "out")
    assert result["classes"] == ["b", "c", "uds", "g", "top"]
    assert sum(result["n_jets"].values()) == 300  # the 60 W jets are dropped
    header = (tmp_path / "out" / "benchmark.md").read_text().splitlines()[0]
    for c in ("b", "c", "uds", "g", "top"):
        assert f"AUC {c} vs rest" in header
    bdt = result["taggers"]["bdt"]
    per_class = [bdt[f"auc_{c}"] for c in result["classes"]]
    assert bdt["auc"] == pytest.approx(np.mean(per_class))
    assert bdt["auc"] > 0.8  # the classes differ in size and prongs
    assert 0 <= bdt["accuracy"] <= 1
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5  # one ROC figure per class


def test_flavour_benchmark_on_data_without_flavours_is_refused(tmp_path):
    data = write_toptagging(tmp_path / "j.h5", 50)
    settings = BenchmarkSettings(task="flavour", data=[str(data)], taggers=("bdt",), progress=False)
    with pytest.raises(DataError, match="has no b, c, g jets"):
        run_benchmark(settings, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_apply_refuses_a_file_without_the_features_the_tagger_uses(bench, tmp_path):
    """A tagger trained with particle ID / impact parameters must not silently see zeros
    on a file that has neither (the Top Tagging layout)."""
    from fivesigma.io.jets import read_jets
    from fivesigma.tasks.jets.features import (
        PARTICLE_FEATURES_FULL,
        PARTICLE_FEATURES_PID,
        constituent_inputs,
        describe,
    )
    from fivesigma.tasks.jets.tagger import JetTagger

    _, data, _ = bench
    sample = read_jets([str(data)])
    y = (sample.label == 4).astype(int)
    for features, missing in (
        (PARTICLE_FEATURES_FULL, "no track impact parameters"),
        (PARTICLE_FEATURES_PID, "no particle ID"),
    ):
        inputs = constituent_inputs(sample, 8, features=features)
        tagger = JetTagger("pfn", epochs=1, progress=False).fit(inputs, y)
        bundle = tmp_path / f"pfn{len(features)}"
        tagger.save(bundle, data=describe(features, max_particles=8))
        out = tmp_path / f"scores{len(features)}.parquet"
        with pytest.raises(DataError, match=missing):
            apply_tagger(bundle, [str(data)], out)
        assert not out.exists()


def test_quick_preset_epochs():
    quick = BenchmarkSettings.quick()
    assert quick.epochs == 8 and quick.tagger_params["pfn"]["epochs"] == 30
    # an explicit --epochs is every tagger's, and per-tagger extras are merged
    mine = BenchmarkSettings.quick(epochs=3, tagger_params={"pfn": {"lr": 1e-3}})
    assert mine.epochs == 3 and mine.tagger_params["pfn"] == {"lr": 1e-3}
    merged = BenchmarkSettings.quick(tagger_params={"pfn": {"lr": 1e-3}})
    assert merged.tagger_params["pfn"] == {"epochs": 30, "lr": 1e-3}
    # the top preset's epochs were scanned for it; the flavour task keeps its own
    top = {n: p["epochs"] for n, p in quick.tagger_params.items()}
    assert top == {"cnn1d": 15, "pfn": 30, "particlenet": 8, "part": 10}
    flavour = BenchmarkSettings.quick(task="flavour").tagger_params
    assert {n: p["epochs"] for n, p in flavour.items()} == {
        "cnn1d": 30,
        "pfn": 30,
        "particlenet": 15,
        "part": 20,
    }


def test_quick_preset_sees_whole_top_jets():
    # top vs QCD: every constituent up to 100 and the full ParticleNet's k=16, whatever
    # the epochs; a user's model_params replace the preset's
    for quick in (BenchmarkSettings.quick(), BenchmarkSettings.quick(epochs=3)):
        assert quick.max_particles == 100
        assert quick.tagger_params["particlenet"]["model_params"] == {"k": 16}
    mine = BenchmarkSettings.quick(tagger_params={"particlenet": {"model_params": {"k": 8}}})
    assert mine.tagger_params["particlenet"] == {"epochs": 8, "model_params": {"k": 8}}
    assert BenchmarkSettings.quick(max_particles=32).max_particles == 32
    # the 5-class flavour task keeps its measured 48 constituents and the Lite k
    flavour = BenchmarkSettings.quick(task="flavour")
    assert flavour.max_particles == 48 and "model_params" not in flavour.tagger_params.get(
        "particlenet", {}
    )


def test_split_fractions_are_checked_and_used(tmp_path):
    from fivesigma.tasks.jets.benchmark import load_task_jets

    with pytest.raises(ConfigError, match="three positive fractions.*summing to 1"):
        BenchmarkSettings(split=(0.5, 0.5, 0.5)).check()
    with pytest.raises(ConfigError, match="three positive fractions"):
        BenchmarkSettings(split=(0.9, 0.1, 0.0)).check()
    assert BenchmarkSettings.quick().split == (0.5, 0.1, 0.4)
    assert BenchmarkSettings.quick().test_background == 6000
    flavour = BenchmarkSettings.quick(task="flavour")
    assert flavour.split == (0.6, 0.2, 0.2) and flavour.jets_per_class == 3000
    assert flavour.test_background == 0  # a 5-class task has no single background
    assert BenchmarkSettings.quick(split=(0.8, 0.1, 0.1)).split == (0.8, 0.1, 0.1)
    path = write_generated_layout(tmp_path / "mix.root", [0, 4] * 500)
    shares = {}
    for split in ((0.6, 0.2, 0.2), (0.5, 0.1, 0.4)):
        _, _, codes = load_task_jets(BenchmarkSettings(data=[str(path)], split=split))
        shares[split] = np.bincount(codes, minlength=3) / codes.size
        np.testing.assert_allclose(shares[split], split, atol=0.05)


def test_markdown_table_says_how_many_background_jets_a_rejection_rests_on():
    row = {
        "accuracy": 0.9,
        "accuracy_std": 0.0,
        "auc": 0.95,
        "auc_std": 0.0,
        "rejection_at_eff_s_0.5": 40.0,
        "rejection_at_eff_s_0.5_std": 0.0,
        "rejection_at_eff_s_0.3": float("inf"),
        "rejection_at_eff_s_0.3_std": float("nan"),
        "parameters": 10,
        "inference_ms_per_jet": 0.1,
        "inference_ms_per_jet_std": 0.0,
        "n_background_test": 600,
    }
    from fivesigma.tasks.jets.benchmark import markdown_table

    table = markdown_table({"pfn": row})
    assert "| pfn | 0.900 | 0.9500 | 40.0 | > 600 |" in table
    assert "600 test background jets" in table and "above 60 rest on fewer than 10" in table
    # one training: the counting interval in brackets; several: mean +- std only
    from fivesigma.metrics import rejection_interval

    low, high = rejection_interval(40.0, 600)
    one = {**row, "runs": 1, "rejection_at_eff_s_0.5_interval": [low, high]}
    assert f"| 40.0 [{low:.0f}, {high:.0f}] | > 600 |" in markdown_table({"pfn": one})
    assert "Clopper-Pearson" in markdown_table({"pfn": one})
    three = {**one, "runs": 3, "rejection_at_eff_s_0.5_std": 5.0}
    assert "| 40.0 ± 5.0 | > 600 |" in markdown_table({"pfn": three})


def test_benchmark_features_must_be_in_the_data(tmp_path):
    from fivesigma.tasks.jets.features import PARTICLE_FEATURES_PID

    data = write_toptagging(tmp_path / "j.h5", 60, seed=4)
    settings = BenchmarkSettings(
        data=[str(data)], taggers=("pfn",), features=tuple(PARTICLE_FEATURES_PID), progress=False
    )
    with pytest.raises(DataError, match="has no particle ID"):
        run_benchmark(settings, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_max_train_jets_keeps_every_class_when_the_file_is_sorted_by_class(tmp_path):
    from fivesigma.tasks.jets.benchmark import load_task_jets

    # all QCD (light) jets first, then all top jets, as concatenated generated samples are
    path = write_generated_layout(tmp_path / "sorted.root", [0] * 60 + [4] * 60)
    settings = BenchmarkSettings(data=[str(path)], max_train_jets=20)
    _, y, split = load_task_jets(settings)
    train = split == 0
    assert train.sum() == 20
    assert 4 <= int(y[train].sum()) <= 16  # both classes, roughly in proportion
    _, _, full = load_task_jets(BenchmarkSettings(data=[str(path)]))
    assert set(np.flatnonzero(train)) <= set(np.flatnonzero(full == 0))
    assert np.array_equal(split == 2, full == 2)  # the test split is untouched


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"test_background": -5}, "test_background must be a number of jets >= 0"),
        ({"max_particles": 0}, "max_particles must be a number of constituents >= 1"),
        ({"max_particles": 4.5}, "max_particles must be a number of constituents >= 1"),
        ({"test_background": 100, "data": ["jets.h5"]}, "with --data the test split is the files'"),
        ({"test_background": 100, "task": "flavour"}, "needs a binary task.*use task top"),
    ],
)
def test_bad_test_background_is_one_config_error(settings, match):
    with pytest.raises(ConfigError, match=match) as err:
        BenchmarkSettings(**settings).check()
    assert "\n" not in str(err.value)


def _has_generator() -> bool:
    try:
        import fastjet  # noqa: F401
        import pythia8mc  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.pythia
@pytest.mark.skipif(not _has_generator(), reason="pythia8mc or fastjet not installed")
def test_test_background_adds_independent_qcd_jets_to_the_test_split_only(tmp_path, monkeypatch):
    from dataclasses import replace

    from fivesigma.tasks.jets.benchmark import load_task_jets

    monkeypatch.setenv("FIVESIGMA_CACHE", str(tmp_path / "cache"))
    base = BenchmarkSettings(jets_per_class=16, split=(0.4, 0.2, 0.4), jobs=1, progress=False)
    sample0, y0, split0 = load_task_jets(base)
    sample, y, split = load_task_jets(replace(base, test_background=25))
    n0 = len(sample0)
    assert len(sample) == n0 + 25 and len(y) == len(split) == n0 + 25
    np.testing.assert_array_equal(split[:n0], split0)  # the main sample's split is unchanged
    np.testing.assert_array_equal(y[:n0], y0)
    assert (split[n0:] == 2).all() and (y[n0:] == 0).all()  # test-only background
    # generated from another seed: no extra jet repeats one of the main sample
    main_pts = set(np.round(np.asarray(sample0.jet["pt"]), 3).tolist())
    extra_pts = set(np.round(np.asarray(sample.jet["pt"][n0:]), 3).tolist())
    assert len(extra_pts) == 25 and not main_pts & extra_pts
