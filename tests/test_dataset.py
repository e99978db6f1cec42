"""fivesigma.data.split and fivesigma.data.dataset: splits, process_chunk, load_dataset."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest

from fivesigma.core.config import parse_config
from fivesigma.data import (
    Dataset,
    load_dataset,
    needed_columns,
    process_chunk,
    split_codes,
)
from fivesigma.data import dataset as dataset_module
from fivesigma.data.split import file_identity
from fivesigma.errors import DataError, ExpressionError
from fivesigma.io.events import iter_chunks

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared(relative: str) -> Path:
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"real sample file {path} not present")
    return path


def config(base: Path, samples: list[dict[str, Any]], **data: Any) -> Any:
    raw = {"version": 1, "seed": 11, "data": {"samples": samples, **data}}
    return parse_config(raw, base_dir=base)


# ------------------------------------------------------------------------------ splits


@pytest.mark.parametrize("fractions", [(0.6, 0.2, 0.2), (0.7, 0.1, 0.2), (0.5, 0.5, 0.0)])
def test_split_fractions_within_statistical_precision(
    fractions: tuple[float, float, float],
) -> None:
    n = 100_000
    for codes in (
        split_codes(np.arange(n), seed=5, fractions=fractions),
        split_codes(seed=5, fractions=fractions, file="sig.root", entries=np.arange(n)),
    ):
        assert codes.dtype == np.int8
        observed = np.bincount(codes, minlength=3) / n
        sigma = np.sqrt(np.array(fractions) * (1 - np.array(fractions)) / n)
        # 5 standard deviations of a binomial fraction
        assert np.all(np.abs(observed - fractions) <= 5 * sigma + 1e-12), observed


def test_split_independent_of_chunking_and_order() -> None:
    entries = np.arange(10_000)
    whole = split_codes(seed=3, file="/a/b/sig.root", entries=entries)
    for size in (7, 1000):
        pieces = [
            split_codes(seed=3, file="/a/b/sig.root", entries=entries[i : i + size])
            for i in range(0, len(entries), size)
        ]
        np.testing.assert_array_equal(np.concatenate(pieces), whole)
    perm = np.random.default_rng(0).permutation(len(entries))
    np.testing.assert_array_equal(
        split_codes(seed=3, file="sig.root", entries=entries[perm]), whole[perm]
    )
    ids = np.random.default_rng(1).integers(0, 2**62, size=5000)
    np.testing.assert_array_equal(split_codes(ids[::-1], seed=3), split_codes(ids, seed=3)[::-1])


def test_split_depends_on_seed_and_file_name_only() -> None:
    entries = np.arange(5000)
    a = split_codes(seed=1, file="/data/x/sig.root", entries=entries)
    # moving the directory does not change the split
    np.testing.assert_array_equal(
        a, split_codes(seed=1, file="/elsewhere/sig.root", entries=entries)
    )
    assert file_identity("/x/sig.root") == file_identity(Path("sig.root"))
    # another file name or seed gives an unrelated split (agreement ~ 0.6^2+0.2^2+0.2^2 = 0.44)
    for other in (
        split_codes(seed=1, file="/data/x/bkg.root", entries=entries),
        split_codes(seed=2, file="/data/x/sig.root", entries=entries),
    ):
        assert 0.38 < np.mean(other == a) < 0.50


def test_split_key_validation() -> None:
    with pytest.raises(DataError, match="whole numbers"):
        split_codes(np.array([1.5, 2.0]), seed=1)
    np.testing.assert_array_equal(
        split_codes(np.array([1.0, 2.0]), seed=1), split_codes(np.array([1, 2]), seed=1)
    )


# ------------------------------------------------------------------ needed columns


def test_needed_columns_excludes_derived_but_keeps_shadowed_branches(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        [
            {
                "name": "s",
                "files": ["x.root"],
                "label": 1,
                "weight": "w * sf",
                "selection": "nlep >= 1",
            }
        ],
        selection="met > 10",
        derived={"lead": "nth(lep_pt, 0)", "met": "met / 1000", "ratio": "lead / met"},
        features=["ratio", "ht"],
        split={"key": "event"},
    )
    needed = needed_columns(cfg.data, cfg.data.samples[0])
    assert needed == {"lep_pt", "met", "w", "sf", "nlep", "ht", "event"}
    assert "lead" not in needed and "ratio" not in needed


# ------------------------------------------------------------------ process_chunk


def test_process_chunk_order_derive_weight_split_select(
    tmp_path: Path, root_file: Path, events: dict
) -> None:
    cfg = config(
        tmp_path,
        [{"name": "sig", "files": [str(root_file)], "label": 1, "weight": "weight * 2"}],
        selection="lead > 30",
        derived={"lead": "nth(lep_pt, 0)"},
        features=["lead", "met"],
    )
    sample = cfg.data.samples[0]
    chunk = next(iter_chunks(root_file, "Events", sorted(needed_columns(cfg.data, sample)), 1000))
    ds = process_chunk(chunk, 0, sample, cfg.data, seed=11)

    lead = np.array([float(x[0]) if len(x) else np.nan for x in ak.to_list(events["lep_pt"])])
    keep = lead > 30
    assert len(ds) == keep.sum()
    np.testing.assert_allclose(ds.columns["lead"], lead[keep], rtol=1e-6)
    np.testing.assert_array_equal(ds.columns["met"], events["met"][keep])
    np.testing.assert_allclose(ds.weight, 2 * events["weight"][keep])
    # split codes were computed on all entries, then selected
    all_codes = split_codes(seed=11, file=root_file, entries=np.arange(len(lead)))
    np.testing.assert_array_equal(ds.split, all_codes[keep])
    assert set(ds.columns) == {"lead", "met"}
    assert ds.events_read.tolist() == [len(lead)]
    assert ds.sum_weights_read[0] == pytest.approx(2 * events["weight"].sum())
    assert (ds.label == 1).all() and (ds.sample == 0).all()


# ------------------------------------------------------------------ load_dataset


def _two_sample_config(tmp_path: Path, root_file: Path, parquet_file: Path, **data: Any) -> Any:
    data.setdefault("derived", {"lead": "nth(lep_pt, 0, fill=0)", "ht": "sum(lep_pt) + met"})
    data.setdefault("features", ["lead", "ht", "met"])
    return config(
        tmp_path,
        [
            {
                "name": "signal",
                "files": [root_file.name],
                "label": 1,
                "weight": "weight",
                "normalisation": {"cross_section_pb": 0.5, "luminosity_fb": 140.0},
            },
            {"name": "background", "files": ["*.parquet"], "label": 0, "weight": "weight"},
        ],
        **data,
    )


def _assert_same(a: Dataset, b: Dataset) -> None:
    assert a.sample_names == b.sample_names
    for name in ("weight", "label", "sample", "split"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert set(a.columns) == set(b.columns)
    for name in a.columns:
        assert ak.to_list(a.columns[name]) == ak.to_list(b.columns[name]), name


def test_load_dataset_chunk_size_does_not_matter(
    tmp_path: Path, root_file: Path, parquet_file: Path
) -> None:
    results = []
    for chunk_size in (7, 1000, 10**9):
        cfg = _two_sample_config(
            tmp_path, root_file, parquet_file, selection="nlep >= 1", chunk_size=chunk_size
        )
        results.append(load_dataset(cfg, progress=False))
    _assert_same(results[0], results[1])
    _assert_same(results[0], results[2])


def test_load_dataset_values_and_normalisation(
    tmp_path: Path, root_file: Path, parquet_file: Path, events: dict
) -> None:
    cfg = _two_sample_config(tmp_path, root_file, parquet_file, selection="nlep >= 1", chunk_size=9)
    ds = load_dataset(cfg, progress=False)
    keep = events["nlep"] >= 1
    w = events["weight"]
    assert ds.sample_names == ["signal", "background"]
    sig, bkg = ds.sample == 0, ds.sample == 1
    assert sig.sum() == keep.sum() == bkg.sum()
    assert (ds.label[sig] == 1).all() and (ds.label[bkg] == 0).all()
    # normalised: the weights of all events read (before selection) sum to sigma * L
    target = 0.5 * 1000 * 140.0
    assert ds.sum_weights_read[0] == pytest.approx(target, rel=1e-12)
    np.testing.assert_allclose(ds.weight[sig], w[keep] * target / w.sum(), rtol=1e-12)
    assert ds.weight[sig].sum() == pytest.approx(target * w[keep].sum() / w.sum(), rel=1e-12)
    # un-normalised sample keeps its raw (partly negative) weights
    np.testing.assert_allclose(ds.weight[bkg], w[keep], rtol=1e-12)
    assert (ds.weight < 0).any()
    # derived values against a plain-python reference
    lep = ak.to_list(events["lep_pt"])
    ht = np.array([sum(x) for x in lep]) + events["met"]
    np.testing.assert_allclose(ds.columns["ht"][sig], ht[keep], rtol=1e-6)
    np.testing.assert_allclose(
        ds.features(["lead"])[bkg, 0],
        [x[0] for x, k in zip(lep, keep, strict=True) if k],
        rtol=1e-6,
    )
    # summary counts by sample and split
    summary = ds.summary()
    assert summary["samples"]["signal"]["events_read"] == len(w)
    for code, split in enumerate(("train", "validation", "test")):
        sel = sig & (ds.split == code)
        assert summary["samples"]["signal"][split]["events"] == sel.sum()
        assert summary["samples"]["signal"][split]["sum_weights"] == pytest.approx(
            ds.weight[sel].sum()
        )
    assert summary["events"] == len(ds)


def test_sum_weights_generated_is_used(tmp_path: Path, root_file: Path, events: dict) -> None:
    cfg = config(
        tmp_path,
        [
            {
                "name": "s",
                "files": ["events.root"],
                "label": 1,
                "weight": "weight",
                "normalisation": {
                    "cross_section_pb": 2.0,
                    "luminosity_fb": 10.0,
                    "sum_weights_generated": 400.0,
                },
            }
        ],
        features=["met"],
    )
    ds = load_dataset(cfg, progress=False)
    np.testing.assert_allclose(ds.weight, events["weight"] * 2.0 * 1000 * 10.0 / 400.0, rtol=1e-12)


def test_normalisation_refuses_non_positive_sum(tmp_path: Path, root_file: Path) -> None:
    cfg = config(
        tmp_path,
        [
            {
                "name": "s",
                "files": ["events.root"],
                "label": 1,
                "weight": "-abs(weight)",
                "normalisation": {"cross_section_pb": 1.0},
            }
        ],
    )
    with pytest.raises(
        DataError,
        match="cannot be normalised; set data.samples\\[0\\].normalisation.sum_weights_generated",
    ):
        load_dataset(cfg, progress=False)


def test_split_same_whatever_file_order_and_location(
    tmp_path: Path, root_file: Path, write_root, events: dict
) -> None:
    other = write_root(tmp_path / "more.root", events)
    key = ["event", "nlep"]

    def load(files: list[str], chunk: int) -> dict[tuple[str, int], int]:
        cfg = config(
            tmp_path,
            [{"name": "s", "files": files, "label": 0}],
            features=["met"],
            chunk_size=chunk,
        )
        ds = load_dataset(cfg, progress=False, extra_columns=key)
        # events are identified by (which copy, event id): copies hold the same ids
        copy = np.repeat([0, 1], len(events["met"]))
        return {
            (int(c), int(e)): int(s)
            for c, e, s in zip(copy, ds.columns["event"], ds.split, strict=True)
        }

    first = load([root_file.name, other.name], 7)
    assert first == load([other.name, root_file.name], 1000)
    # moving the files to another directory keeps the split
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(root_file, moved / root_file.name)
    shutil.copy(other, moved / other.name)
    assert first == load([f"moved/{root_file.name}", f"moved/{other.name}"], 13)


def test_split_key_branch(tmp_path: Path, root_file: Path, csv_file: Path, events: dict) -> None:
    """With split.key the split follows the event id, so the same events in two formats agree."""
    codes = []
    for name in (root_file.name, csv_file.name):
        cfg = config(
            tmp_path,
            [{"name": "s", "files": [name], "label": 0}],
            features=["met"],
            split={"key": "event"},
        )
        codes.append(load_dataset(cfg, progress=False).split)
    np.testing.assert_array_equal(codes[0], codes[1])
    np.testing.assert_array_equal(codes[0], split_codes(events["event"], seed=11))


# ------------------------------------------------------------------------ errors


def test_unknown_branch_fails_before_reading(
    tmp_path: Path, root_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_read(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("data was read before the names were checked")

    monkeypatch.setattr(dataset_module, "iter_chunks", no_read)
    cfg = config(
        tmp_path,
        [{"name": "s", "files": ["events.root"], "label": 0}],
        selection="nlepp > 1",
        features=["met"],
    )
    with pytest.raises(ExpressionError, match="nlepp.*did you mean 'nlep'") as err:
        load_dataset(cfg, progress=False)
    assert "sample 's'" in str(err.value) and "events.root" in str(err.value)
    cfg = config(
        tmp_path, [{"name": "s", "files": ["events.root"], "label": 0}], split={"key": "evnt"}
    )
    with pytest.raises(
        DataError, match=r"no branch 'evnt' \(data.split.key\).*did you mean 'event'"
    ):
        load_dataset(cfg, progress=False)


def test_selection_keeping_nothing(tmp_path: Path, root_file: Path, events: dict) -> None:
    cfg = config(
        tmp_path, [{"name": "signal", "files": ["events.root"], "label": 1}], selection="met < 0"
    )
    n = len(events["met"])
    with pytest.raises(
        DataError,
        match=f"selection keeps 0 of {n} events in sample 'signal'; loosen data.selection 'met < 0'",
    ):
        load_dataset(cfg, progress=False)


def _nan_config(tmp_path: Path, policy: str) -> Any:
    return config(
        tmp_path,
        [{"name": "s", "files": ["events.root"], "label": 0, "weight": "weight"}],
        derived={"lead": "nth(lep_pt, 0)", "inv": "1 / (nlep - 1)"},
        features=["met", "lead", "inv"],
        nan_policy=policy,
    )


def test_nan_features_error_counts_per_feature(
    tmp_path: Path, root_file: Path, events: dict
) -> None:
    n_lead = int((events["nlep"] == 0).sum())  # nth(.., 0) is NaN without leptons
    n_inv = int((events["nlep"] == 1).sum())  # 1/0 = inf
    assert n_lead and n_inv
    expected = (
        f"{n_lead + n_inv} NaN/inf values in features: lead ({n_lead}), inv ({n_inv}) — "
        "set data.nan_policy: drop to remove those events"
    )
    with pytest.raises(DataError) as err:
        load_dataset(_nan_config(tmp_path, "error"), progress=False)
    assert str(err.value) == expected


def test_nan_features_drop(
    tmp_path: Path, root_file: Path, events: dict, caplog: pytest.LogCaptureFixture
) -> None:
    bad = (events["nlep"] == 0) | (events["nlep"] == 1)
    with caplog.at_level(logging.WARNING, logger="fivesigma.data"):
        ds = load_dataset(_nan_config(tmp_path, "drop"), progress=False)
    assert len(ds) == (~bad).sum()
    np.testing.assert_array_equal(ds.columns["met"], events["met"][~bad])
    assert np.isfinite(ds.features(["met", "lead", "inv"], nan_policy="drop")).all()
    assert f"dropped {int(bad.sum())} of {len(bad)} events" in caplog.text


def test_nan_features_keep(tmp_path: Path, root_file: Path, events: dict) -> None:
    """keep: NaN (missing values) stay in the features, as the dataset's default policy;
    inf is still refused in one line."""
    cfg = config(
        tmp_path,
        [{"name": "s", "files": ["events.root"], "label": 0, "weight": "weight"}],
        derived={"lead": "nth(lep_pt, 0)"},
        features=["met", "lead"],
        nan_policy="keep",
    )
    ds = load_dataset(cfg, progress=False)
    assert len(ds) == len(events["met"]) and ds.nan_policy == "keep"
    X = ds.features(["met", "lead"])
    np.testing.assert_array_equal(np.isnan(X[:, 1]), events["nlep"] == 0)
    assert ds.subset(np.arange(5)).nan_policy == "keep"
    with pytest.raises(DataError, match=r"NaN/inf values in features: lead"):
        ds.features(["met", "lead"], nan_policy="error")
    n_inv = int((events["nlep"] == 1).sum())  # 1/0 = inf
    with pytest.raises(DataError) as err:
        load_dataset(_nan_config(tmp_path, "keep"), progress=False)
    msg = str(err.value)
    assert msg.startswith(f"{n_inv} inf values in features: inv ({n_inv}) — ") and "\n" not in msg


def test_sentinels_in_jagged_and_integer_branches(
    tmp_path: Path, root_file: Path, events: dict
) -> None:
    """data.missing applies to the branches as read: a jagged float branch (per object)
    and an integer branch (which becomes float64 with NaN); derived columns see NaN."""
    first = float(ak.flatten(events["lep_pt"])[0])  # one lepton's pT, declared missing
    cfg = config(
        tmp_path,
        [{"name": "s", "files": ["events.root"], "label": 0}],
        derived={"lead": "nth(lep_pt, 0)", "n": "nlep"},
        features=["met", "lead", "n"],
        missing={"lep_pt": first, "nlep": 0},
        nan_policy="keep",
    )
    ds = load_dataset(cfg, progress=False)
    X = ds.features(["met", "lead", "n"])
    lead = np.asarray(ak.fill_none(ak.firsts(events["lep_pt"]), np.nan), dtype=np.float64)
    np.testing.assert_array_equal(np.isnan(X[:, 1]), np.isnan(lead) | (lead == first))
    np.testing.assert_array_equal(np.isnan(X[:, 2]), events["nlep"] == 0)
    assert not np.isnan(X[:, 0]).any()


def test_jagged_feature_suggests_nth(tmp_path: Path, root_file: Path) -> None:
    cfg = config(
        tmp_path, [{"name": "s", "files": ["events.root"], "label": 0}], features=["lep_pt"]
    )
    with pytest.raises(
        DataError, match=r"feature 'lep_pt' has a variable number of values.*nth\(lep_pt, 0\)"
    ):
        load_dataset(cfg, progress=False)


def test_dataset_features_subset_and_extra_columns(
    tmp_path: Path, root_file: Path, events: dict
) -> None:
    cfg = config(
        tmp_path, [{"name": "s", "files": ["events.root"], "label": 0}], features=["met", "nlep"]
    )
    ds = load_dataset(cfg, progress=False, extra_columns=["lep_pt"])
    assert isinstance(ds.columns["lep_pt"], ak.Array)
    X = ds.features(["met", "nlep"], dtype=np.float32)
    assert X.shape == (len(events["met"]), 2) and X.dtype == np.float32
    np.testing.assert_allclose(X[:, 0], events["met"].astype(np.float32))
    sub = ds.subset(ds.columns["nlep"] >= 2)
    assert len(sub) == (events["nlep"] >= 2).sum()
    assert ak.all(ak.num(sub.columns["lep_pt"]) >= 2)
    idx = ds.subset(np.array([3, 1]))
    np.testing.assert_array_equal(idx.columns["met"], events["met"][[3, 1]])
    with pytest.raises(DataError, match="no column 'mett'.*did you mean 'met'"):
        ds.features(["mett"])


# ------------------------------------------------------------------------ real files


def test_real_hzz_file_with_selection_and_invariant_mass() -> None:
    import uproot

    path = shared("skhep_testdata/uproot-HZZ.root")
    cfg = config(
        path.parent,
        [
            {
                "name": "zz",
                "files": [path.name],
                "tree": "events",
                "label": 1,
                "weight": "EventWeight",
            }
        ],
        selection="NMuon >= 2",
        derived={
            "mu_pt": "sqrt(Muon_Px**2 + Muon_Py**2)",
            "mu_eta": "log((sqrt(mu_pt**2 + Muon_Pz**2) + Muon_Pz) / mu_pt)",
            "mu_phi": "arctan2(Muon_Py, Muon_Px)",
            "mu_m": "sqrt(maximum(Muon_E**2 - Muon_Px**2 - Muon_Py**2 - Muon_Pz**2, 0))",
            "m_mumu": "inv_mass(mu_pt, mu_eta, mu_phi, mu_m, 2)",
        },
        features=["m_mumu"],
        chunk_size=500,
    )
    ds = load_dataset(cfg, progress=False)
    # independent reference: four-vector sum of the first two muons, straight from uproot
    arrays = uproot.open(path)["events"].arrays(
        ["Muon_Px", "Muon_Py", "Muon_Pz", "Muon_E", "EventWeight"]
    )
    two = ak.num(arrays["Muon_Px"]) >= 2
    sel = arrays[two]
    comp = {
        k: ak.to_numpy(sel[k][:, 0]).astype(np.float64) + ak.to_numpy(sel[k][:, 1])
        for k in ("Muon_Px", "Muon_Py", "Muon_Pz", "Muon_E")
    }
    m_ref = np.sqrt(
        comp["Muon_E"] ** 2 - comp["Muon_Px"] ** 2 - comp["Muon_Py"] ** 2 - comp["Muon_Pz"] ** 2
    )
    assert len(ds) == int(ak.sum(two))
    np.testing.assert_allclose(ds.columns["m_mumu"], m_ref, rtol=2e-3)
    np.testing.assert_allclose(ds.weight, ak.to_numpy(sel["EventWeight"]), rtol=1e-6)
    # a Z peak: the median dimuon mass of ZZ events is near m_Z
    assert 80 < np.median(ds.columns["m_mumu"]) < 100


def test_real_cms_tutorial_samples() -> None:
    data = shared("cms_hep_tutorial_2012")
    # README: events per file and sum of EventWeight
    expected = {
        "qcd": (142, 7.916e4),
        "single_top": (5684, 311.6),
        "ww": (4580, 229.9),
        "wz": (3367, 69.93),
        "zz": (2421, 16.92),
    }
    samples = [
        {
            "name": name,
            "files": [f"{name}.root"],
            "tree": "events",
            "label": i,
            "weight": "EventWeight",
        }
        for i, name in enumerate(expected)
    ]
    cfg = config(data, samples, derived={"njet": "count(Jet_Px)"}, features=["njet", "MET_px"])
    ds = load_dataset(cfg, progress=False)
    assert ds.events_read.tolist() == [n for n, _ in expected.values()]
    np.testing.assert_allclose(ds.sum_weights_read, [w for _, w in expected.values()], rtol=2e-3)
    np.testing.assert_array_equal(ds.label, ds.sample)


def test_real_atlas_csv() -> None:
    data = shared("atlas_higgs_ml_challenge_subset")
    cfg = config(
        data,
        [
            {
                "name": "sig",
                "files": ["train_sml_sig.csv"],
                "label": 1,
                "weight": "Weight",
                "normalisation": {"cross_section_pb": 1.0, "luminosity_fb": 1.0},
            },
            {"name": "bkg", "files": ["train_sml_bg.csv"], "label": 0, "weight": "Weight"},
        ],
        selection="DER_mass_MMC > 0",  # -999 marks a missing value
        features=["DER_mass_MMC", "PRI_tau_pt"],
        split={"key": "EventId"},
        chunk_size=2000,
    )
    ds = load_dataset(cfg, progress=False)
    # README: 158 signal / 1055 background rows have DER_mass_MMC = -999
    assert ds.summary()["samples"]["sig"]["events"] == 4999 - 158
    assert ds.summary()["samples"]["bkg"]["events"] == 4999 - 1055
    assert ds.sum_weights_read[0] == pytest.approx(1000.0)


def test_progress_bar_does_not_change_results(
    tmp_path: Path, root_file: Path, capsys: pytest.CaptureFixture
) -> None:
    cfg = config(
        tmp_path,
        [{"name": "s", "files": ["events.root"], "label": 0}],
        features=["met"],
        chunk_size=7,
    )
    _assert_same(load_dataset(cfg, progress=True), load_dataset(cfg, progress=False))
    assert capsys.readouterr().out == ""  # progress goes to stderr only
