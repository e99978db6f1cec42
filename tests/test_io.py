"""fivesigma.io's public reading API (read_events, lazy exports) and the published splits
of the Top Quark Tagging Reference Dataset in the jet benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pandas as pd
import pytest

from fivesigma.errors import DataError
from fivesigma.io.jets import (
    SPLIT_FILE_NAMES,
    TTV_SPLITS,
    read_jets,
    read_jets_with_split,
    split_from_name,
)
from fivesigma.tasks.jets.benchmark import (
    BenchmarkSettings,
    _split_codes,
    load_task_jets,
    run_benchmark,
)

FLAT = ("nlep", "met", "event", "weight")  # the flat columns of conftest's files
N_EVENTS = 50  # events in conftest's files

# --------------------------------------------------------------------------------------
# The public API of fivesigma.io


def _imported_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_importing_fivesigma_and_fivesigma_io_stays_light():
    loaded = _imported_after("import fivesigma, fivesigma.io")
    for heavy in ("torch", "uproot", "h5py", "pyarrow", "pandas", "fivesigma.io.events"):
        assert heavy not in loaded, heavy
    assert "torch" not in _imported_after("import fivesigma.io.events, fivesigma.core.extras")


def test_io_exports_the_reading_api_lazily():
    import fivesigma.io as fio
    from fivesigma.io import events, jets, trackml

    assert sorted(fio.__all__) == [
        "JetSample",
        "TrackMLEvent",
        "check_geometry",
        "describe_file",
        "detect_format",
        "iter_chunks",
        "iter_jets",
        "iter_trackml_events",
        "read_detectors",
        "read_events",
        "read_jets",
        "read_trackml_event",
    ]
    aliases = {"read_trackml_event": trackml.read_event, "iter_trackml_events": trackml.iter_events}
    for name in fio.__all__:
        modules = (events, jets, trackml)
        expected = aliases.get(name) or next(getattr(m, name) for m in modules if hasattr(m, name))
        assert getattr(fio, name) is expected
    assert set(fio.__all__) <= set(dir(fio))
    with pytest.raises(AttributeError, match="no attribute 'read_everything'"):
        fio.read_everything  # noqa: B018


def _expected(events: dict, names) -> dict:
    return {n: ak.to_list(events[n]) for n in names}


@pytest.mark.parametrize(
    ("fixture", "tree", "names"),
    [
        ("root_file", "Events", ("lep_pt", *FLAT)),
        ("parquet_file", "", ("lep_pt", *FLAT)),
        ("hdf5_datasets_file", "Events", FLAT),
        ("hdf5_root_file", "", FLAT),
        ("hdf5_table_file", "Events", FLAT),
        ("csv_file", "", FLAT),
    ],
)
def test_read_events_all_columns_and_a_subset(request, events, fixture, tree, names):
    path = request.getfixturevalue(fixture)
    every = read_events_of(path, tree=tree)  # columns=None: all of them
    counter = ["nlep_pt"] if fixture == "root_file" else []  # uproot writes the list counter
    assert sorted(every.fields) == sorted([*names, *counter]) and len(every) == N_EVENTS
    got = {n: ak.to_list(every[n]) for n in names}
    for name in names:
        np.testing.assert_allclose(
            np.asarray(ak.flatten(ak.Array(got[name]), axis=None)),
            np.asarray(ak.flatten(ak.Array(_expected(events, [name])[name]), axis=None)),
            rtol=1e-6,
        )
    some = read_events_of(path, columns=["weight", "nlep"], tree=tree, step_size=7)
    assert some.fields == ["weight", "nlep"]
    np.testing.assert_allclose(ak.to_numpy(some.weight), events["weight"])


def read_events_of(path, **kw):
    from fivesigma.io import read_events

    return read_events(path, **kw)


def test_read_events_spans_files_and_patterns_in_order_and_stops(tmp_path, events, write_root):
    import pyarrow as pa
    import pyarrow.parquet as pq

    half = N_EVENTS // 2
    first = {k: v[:half] for k, v in events.items()}
    second = {k: v[half:] for k, v in events.items()}
    write_root(tmp_path / "a.root", first)
    pq.write_table(
        pa.table({k: ak.to_arrow(second[k], extensionarray=False) for k in second}),
        tmp_path / "b.parquet",
    )
    columns = ["lep_pt", *FLAT]
    files = [str(tmp_path / "a.root"), tmp_path / "b.parquet"]
    both = read_events_of(files, columns=columns, step_size=6)
    assert len(both) == N_EVENTS
    np.testing.assert_array_equal(ak.to_numpy(both.event), events["event"])
    assert ak.num(both.lep_pt).tolist() == ak.num(events["lep_pt"]).tolist()
    np.testing.assert_array_equal(ak.flatten(both.lep_pt), ak.flatten(events["lep_pt"]))
    # a relative pattern, taken relative to base_dir; entry_stop counts over the files
    part = read_events_of("*.*", base_dir=tmp_path, columns=["event"], entry_stop=half + 3)
    np.testing.assert_array_equal(ak.to_numpy(part.event), events["event"][: half + 3])
    assert len(read_events_of(tmp_path / "a.root", entry_stop=0)) == 0
    with pytest.raises(DataError, match="b.parquet': no column 'nlep_pt'"):
        read_events_of(files)  # columns=None: those of the first file, which b lacks
    bare = read_events_of(tmp_path / "a.root", columns=[])
    assert len(bare) == half and bare.fields == []


def test_read_events_text_columns_become_strings(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("run,label\n1,signal\n2,background\n")
    got = read_events_of(path)
    assert got.label.tolist() == ["signal", "background"] and got.run.tolist() == [1, 2]


def test_read_events_errors_are_one_line(tmp_path, root_file):
    cases = [
        (lambda: read_events_of(tmp_path / "nothing_*.root"), "no file matches"),
        (lambda: read_events_of(root_file, columns=["lep_ptt"]), "did you mean 'lep_pt'"),
        (lambda: read_events_of(root_file, tree="Event"), "no tree 'Event'"),
        (lambda: read_events_of(root_file, entry_stop=-1), "entry_stop"),
    ]
    for call, match in cases:
        with pytest.raises(DataError, match=match) as info:
            call()
        assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------
# Published splits (Top Quark Tagging Reference Dataset layout)

M = 6  # constituents per jet


def write_toptagging(path: Path, n: int, *, ttv=None, seed: int = 0) -> Path:
    """n jets in the dataset's pandas layout: E_i, PX_i, PY_i, PZ_i, is_signal_new, ttv.

    Top jets (odd rows) have three prongs, QCD jets one; ``ttv`` is a number, an array or
    None (no ttv column).
    """
    rng = np.random.default_rng(seed)
    sig = np.arange(n) % 2
    cols = {}
    prong = rng.integers(0, 3, size=(n, M)) * sig[:, None]
    eta = 0.3 * (prong - 1) * sig[:, None] + rng.normal(0, 0.03, (n, M))
    phi = 0.3 * (prong % 2) * sig[:, None] + rng.normal(0, 0.03, (n, M))
    pt = rng.exponential(30.0, (n, M)) + 1.0
    kin = {
        "E": pt * np.cosh(eta),
        "PX": pt * np.cos(phi),
        "PY": pt * np.sin(phi),
        "PZ": pt * np.sinh(eta),
    }
    order = np.argsort(-pt, axis=1)
    for name, arr in kin.items():
        arr = np.take_along_axis(arr, order, axis=1)
        for i in range(M):
            cols[f"{name}_{i}"] = arr[:, i].astype(np.float32)
    cols["is_signal_new"] = sig
    if ttv is not None:
        cols["ttv"] = np.broadcast_to(np.asarray(ttv, dtype=np.int64), (n,)).copy()
    pd.DataFrame(cols).to_hdf(path, key="table", mode="w")
    return path


#: A split set whose ttv values are not fivesigma's codes: only the file names may count.
NAMED = {"train": (40, 7), "val": (12, 8), "test": (20, 9)}


@pytest.fixture
def published(tmp_path) -> dict[str, Path]:
    return {
        name: write_toptagging(tmp_path / f"{name}.h5", n, ttv=ttv, seed=len(name))
        for name, (n, ttv) in NAMED.items()
    }


def test_split_file_names_follow_the_dataset_readme():
    assert SPLIT_FILE_NAMES == {"train": 0, "val": 1, "validation": 1, "test": 2}
    assert TTV_SPLITS == {0: 0, 1: 1, 2: 2}
    assert [split_from_name(p) for p in ("x/train.h5", "Test.H5", "val.npz", "jets.h5")] == [
        0,
        2,
        1,
        None,
    ]


def test_published_files_are_split_by_name_whatever_their_ttv(published):
    sample, split = read_jets_with_split([str(p) for p in published.values()])
    # files in sorted order: test, train, val
    n_test, n_train, n_val = NAMED["test"][0], NAMED["train"][0], NAMED["val"][0]
    assert split.dtype == np.int8 and len(sample) == len(split) == n_test + n_train + n_val
    assert split.tolist() == [2] * n_test + [0] * n_train + [1] * n_val
    assert set(sample.meta["ttv"].tolist()) == {7, 8, 9}  # kept, but not used as codes


def test_benchmark_scores_on_the_published_test_file(published, tmp_path):
    settings = BenchmarkSettings(
        data=[str(p) for p in published.values()],
        taggers=("bdt",),
        progress=False,
        tagger_params={"bdt": {"n_estimators": 10}},
    )
    sample, y, split = load_task_jets(settings)
    test = read_jets(published["test"])
    assert int((split == 2).sum()) == len(test)
    np.testing.assert_array_equal(sample.jet["pt"][split == 2], test.jet["pt"])
    np.testing.assert_array_equal(y[split == 2], (test.label == 4).astype(int))
    np.testing.assert_array_equal(
        sample.jet["pt"][split == 1], read_jets(published["val"]).jet["pt"]
    )
    result = run_benchmark(settings, tmp_path / "out")
    assert result["n_jets"] == {
        "train": NAMED["train"][0],
        "validation": NAMED["val"][0],
        "test": NAMED["test"][0],
        "extra_test_background": 0,
    }
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert written["n_jets"]["test"] == NAMED["test"][0]


def test_one_file_with_mixed_ttv_uses_it(tmp_path):
    ttv = np.array([0, 0, 0, 1, 2] * 8)
    path = write_toptagging(tmp_path / "jets.h5", len(ttv), ttv=ttv)
    _, split = read_jets_with_split(path)
    np.testing.assert_array_equal(split, ttv)
    _, _, codes = load_task_jets(BenchmarkSettings(data=[str(path)], seed=3))
    np.testing.assert_array_equal(codes, ttv)  # never the seeded random split


def test_files_without_a_split_get_the_seeded_random_split(tmp_path):
    path = write_toptagging(tmp_path / "jets.h5", 60)
    assert read_jets_with_split(path)[1] is None
    _, _, codes = load_task_jets(BenchmarkSettings(data=[str(path)], seed=5))
    np.testing.assert_array_equal(codes, _split_codes(60, 5, (0.6, 0.2, 0.2)))
    _, _, again = load_task_jets(BenchmarkSettings(data=[str(path)], seed=5))
    np.testing.assert_array_equal(codes, again)
    _, _, other = load_task_jets(BenchmarkSettings(data=[str(path)], seed=6))
    assert not np.array_equal(codes, other)


@pytest.mark.parametrize(
    ("files", "match"),
    [
        (
            {"train.h5": 0, "more.h5": 0, "test.h5": 1},
            "'.*more.h5' is not named train, val or test",
        ),
        ({"train.h5": [0, 2], "val.h5": 1, "test.h5": 2}, "named as the train split but its ttv"),
        ({"a.h5": 0, "b.h5": None}, "'.*b.h5' has no ttv column but"),
        ({"a.h5": [0, 5]}, "ttv value 5"),
    ],
)
def test_files_that_disagree_about_the_split_are_refused(tmp_path, files, match):
    paths = []
    for name, ttv in files.items():
        n = 10 if ttv is None or np.ndim(ttv) == 0 else 10 * len(ttv)
        value = ttv if ttv is None or np.ndim(ttv) == 0 else np.repeat(ttv, 10)
        paths.append(str(write_toptagging(tmp_path / name, n, ttv=value)))
    with pytest.raises(DataError, match=match) as info:
        read_jets_with_split(paths)
    assert "\n" not in str(info.value)


def test_published_files_without_validation_are_refused(published):
    settings = BenchmarkSettings(data=[str(published["train"]), str(published["test"])])
    with pytest.raises(DataError, match="no validation jets"):
        load_task_jets(settings)


def test_quick_preset_runs_on_data(published, tmp_path):
    settings = BenchmarkSettings.quick(
        data=[str(p) for p in published.values()],
        taggers=("bdt",),
        progress=False,
        tagger_params={"bdt": {"n_estimators": 10}},
    )
    result = run_benchmark(settings, tmp_path / "out")
    assert result["n_jets"]["test"] == NAMED["test"][0]
    assert result["n_jets"]["extra_test_background"] == 0
