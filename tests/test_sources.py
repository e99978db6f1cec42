"""fivesigma.io.events: file patterns, format detection, chunked reading, errors."""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from fivesigma.errors import DataError
from fivesigma.io.events import (
    Chunk,
    describe_file,
    detect_format,
    expand_files,
    iter_chunks,
    list_columns,
    num_entries,
)

FLAT = ("nlep", "met", "event", "weight")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared(relative: str) -> Path:
    path = SHARED / relative
    if not path.is_file():
        pytest.skip(f"real sample file {path} not present")
    return path


def read_all(path: Path, tree: str, columns: list[str], step: int) -> tuple[dict, list[Chunk]]:
    chunks = list(iter_chunks(path, tree, columns, step))
    out = {}
    for name in columns:
        parts = [c.arrays[name] for c in chunks]
        if any(isinstance(p, ak.Array) for p in parts):
            out[name] = ak.concatenate(parts)
        else:
            out[name] = np.concatenate(parts)
    return out, chunks


# ----------------------------------------------------------------------------- patterns


def test_expand_files_globs_sorted_and_deduplicated(tmp_path: Path) -> None:
    for rel in ["data/b.root", "data/a.root", "data/sub/c.root", "data/x1.csv", "other/d.root"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"root")
    files = expand_files(["data/*.root", "data/a.root", "data/**/*.root", "data/x?.csv"], tmp_path)
    names = [f.relative_to(tmp_path).as_posix() for f in files]
    assert names == sorted(names)
    assert names == ["data/a.root", "data/b.root", "data/sub/c.root", "data/x1.csv"]
    # absolute patterns ignore base_dir
    assert expand_files([str(tmp_path / "other" / "*.root")], "/nonexistent") == [
        tmp_path / "other" / "d.root"
    ]


def test_expand_files_no_match_names_sample_and_pattern(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"sample 'signal': no file matches 'data/\*\.root'"):
        expand_files(["data/*.root"], tmp_path, sample="signal")
    with pytest.raises(DataError, match="no file matches 'missing.parquet'"):
        expand_files(["missing.parquet"], tmp_path)


# ------------------------------------------------------------------------------ formats


def test_detect_format_from_magic_bytes_not_suffix(
    tmp_path: Path, root_file: Path, parquet_file: Path, hdf5_datasets_file: Path, csv_file: Path
) -> None:
    assert detect_format(root_file) == "root"
    assert detect_format(parquet_file) == "parquet"
    assert detect_format(hdf5_datasets_file) == "hdf5"
    assert detect_format(csv_file) == "csv"
    # a Parquet file with a misleading name is still Parquet
    renamed = tmp_path / "looks_like.csv"
    shutil.copy(parquet_file, renamed)
    assert detect_format(renamed) == "parquet"
    for name in ("hits.csv.gz", "table.txt"):
        (tmp_path / name).write_bytes(b"\x1f\x8b rest")
        assert detect_format(tmp_path / name) == "csv"


def test_detect_format_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="'.*nothere.root' does not exist"):
        detect_format(tmp_path / "nothere.root")
    (tmp_path / "x.dat").write_bytes(b"hello world, not data")
    with pytest.raises(DataError, match=r"'.*x\.dat' is not a ROOT, Parquet, HDF5 or CSV file"):
        detect_format(tmp_path / "x.dat")
    (tmp_path / "dir.root").mkdir()
    with pytest.raises(DataError, match="is not a file"):
        detect_format(tmp_path / "dir.root")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path: Path, root_file: Path) -> None:
    root_file.chmod(0)
    try:
        with pytest.raises(DataError, match="cannot read"):
            detect_format(root_file)
    finally:
        root_file.chmod(0o644)


def test_unreadable_file_any_user(root_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same check as above, for runs as root: opening fails with a permission error."""
    # every input reader sniffs the format through read_head
    from fivesigma.core import files as _io

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(_io, "open", refuse, raising=False)
    with pytest.raises(DataError, match=r"cannot read '.*events\.root': Permission denied"):
        detect_format(root_file)


# ------------------------------------------------------------------------ round trips


@pytest.mark.parametrize(
    ("fixture", "tree"),
    [
        ("root_file", "Events"),
        ("parquet_file", "Events"),
        ("hdf5_datasets_file", "Events"),
        ("hdf5_root_file", ""),
        ("hdf5_table_file", "Events"),
        ("csv_file", "Events"),
    ],
)
@pytest.mark.parametrize("step", [7, 1000])
def test_every_format_round_trips_flat_columns(
    request: pytest.FixtureRequest, events: dict, fixture: str, tree: str, step: int
) -> None:
    path = request.getfixturevalue(fixture)
    assert set(FLAT) <= set(list_columns(path, tree))
    assert num_entries(path, tree) == len(events["met"])
    got, chunks = read_all(path, tree, list(FLAT), step)
    for name in FLAT:
        assert isinstance(got[name], np.ndarray), name
        np.testing.assert_array_equal(got[name], events[name], err_msg=name)
    # chunks tile the file: consecutive, at most `step` long
    assert chunks[0].entry_start == 0
    for a, b in itertools.pairwise(chunks):
        assert a.entry_stop == b.entry_start
    assert chunks[-1].entry_stop == len(events["met"])
    assert all(len(c) <= step for c in chunks)
    assert all(c.file == path for c in chunks)


@pytest.mark.parametrize("fixture", ["root_file", "parquet_file"])
@pytest.mark.parametrize("step", [7, 1000])
def test_jagged_columns_stay_awkward(
    request: pytest.FixtureRequest, events: dict, fixture: str, step: int
) -> None:
    path = request.getfixturevalue(fixture)
    got, _ = read_all(path, "Events", ["lep_pt", "nlep"], step)
    assert isinstance(got["lep_pt"], ak.Array)
    assert got["lep_pt"].ndim == 2
    assert ak.to_list(got["lep_pt"]) == ak.to_list(events["lep_pt"])
    np.testing.assert_array_equal(ak.num(got["lep_pt"]).to_numpy(), events["nlep"])


def test_chunk_holds_only_requested_columns(
    root_file: Path,
    parquet_file: Path,
    csv_file: Path,
    hdf5_table_file: Path,
    hdf5_datasets_file: Path,
    events: dict,
) -> None:
    for path in (root_file, parquet_file, csv_file, hdf5_table_file, hdf5_datasets_file):
        chunks = list(iter_chunks(path, "Events", ["met"], 20))
        assert all(list(c.arrays) == ["met"] for c in chunks)
        np.testing.assert_array_equal(
            np.concatenate([c.arrays["met"] for c in chunks]), events["met"]
        )


def test_root_reads_only_requested_branches(
    root_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spy on uproot: the TTree is asked for exactly the needed branches."""
    from uproot.behaviors.TBranch import HasBranches

    asked: list[list[str]] = []
    original = HasBranches.iterate

    def spy(self, expressions=None, *args, **kwargs):
        asked.append(list(expressions))
        return original(self, expressions, *args, **kwargs)

    monkeypatch.setattr(HasBranches, "iterate", spy)
    list(iter_chunks(root_file, "Events", ["met", "nlep"], 1000))
    assert asked == [["met", "nlep"]]


def test_no_columns_still_counts_entries(
    root_file: Path, csv_file: Path, hdf5_table_file: Path
) -> None:
    for path in (root_file, csv_file, hdf5_table_file):
        chunks = list(iter_chunks(path, "Events", [], 20))
        assert [(c.entry_start, c.entry_stop) for c in chunks] == [(0, 20), (20, 40), (40, 50)]
        assert all(c.arrays == {} for c in chunks)


# ------------------------------------------------------------------------------ errors


def test_unknown_tree_lists_trees(root_file: Path) -> None:
    with pytest.raises(
        DataError, match=r"no tree 'Evnts' in '.*events\.root'; trees: Events"
    ) as err:
        list_columns(root_file, "Evnts")
    assert "\n" not in str(err.value)


def test_unknown_branch_suggests_close_match(tmp_path: Path, write_root) -> None:
    path = write_root(
        tmp_path / "f.root", {"lep_pt": ak.Array([[1.0], []]), "met": np.array([1.0, 2.0])}
    )
    with pytest.raises(
        DataError, match=r"'.*f\.root': no branch 'lep_ptt' in tree 'Events'; did you mean 'lep_pt'"
    ):
        list(iter_chunks(path, "Events", ["met", "lep_ptt"], 10))


@pytest.mark.parametrize(
    "fixture", ["parquet_file", "csv_file", "hdf5_datasets_file", "hdf5_table_file"]
)
def test_unknown_column_other_formats(request: pytest.FixtureRequest, fixture: str) -> None:
    path = request.getfixturevalue(fixture)
    with pytest.raises(DataError, match=r"no column 'mett'.*did you mean 'met'\?"):
        list(iter_chunks(path, "Events", ["mett"], 10))


def test_truncated_root_file(tmp_path: Path, write_root) -> None:
    rng = np.random.default_rng(1)
    big = write_root(
        tmp_path / "big.root", {"x": rng.normal(size=20_000), "y": rng.normal(size=20_000)}
    )
    cut = tmp_path / "cut.root"
    cut.write_bytes(big.read_bytes()[:2048])
    assert detect_format(cut) == "root"
    with pytest.raises(DataError, match=r"'.*cut\.root'.*truncated or corrupt") as err:
        list(iter_chunks(cut, "Events", ["x"], 1000))
    assert "\n" not in str(err.value)


def test_garbage_after_root_magic(tmp_path: Path) -> None:
    bad = tmp_path / "bad.root"
    bad.write_bytes(b"root" + bytes(range(256)) * 4)
    with pytest.raises(DataError, match=r"'.*bad\.root'.*(truncated or corrupt)"):
        list_columns(bad, "Events")


def test_corrupt_parquet(tmp_path: Path, parquet_file: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(parquet_file.read_bytes()[:100])
    with pytest.raises(DataError, match=r"'.*bad\.parquet'"):
        list(iter_chunks(bad, "", ["met"], 10))


def test_histogram_is_not_a_tree(tmp_path: Path) -> None:
    path = tmp_path / "h.root"
    with uproot.recreate(path) as f:
        f["hist"] = np.histogram([1.0, 2.0, 2.5], bins=3)
    with pytest.raises(DataError, match="'hist' in '.*h.root' is a TH1D, not a TTree"):
        list_columns(path, "hist")


def test_hdf5_wrong_group_and_packed_pandas_table(tmp_path: Path, hdf5_datasets_file: Path) -> None:
    import h5py

    with pytest.raises(DataError, match=r"no group or key 'Evnts'.*did you mean 'Events'\?"):
        list_columns(hdf5_datasets_file, "Evnts")
    packed = tmp_path / "packed.h5"
    with h5py.File(packed, "w") as f:
        rows = np.zeros(4, dtype=[("index", "<i8"), ("values_block_0", "<f8", (2,))])
        f.create_group("df").create_dataset("table", data=rows)
    with pytest.raises(DataError, match="packed columns.*data_columns=True"):
        list_columns(packed, "df")


def test_hdf5_unequal_lengths(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["a"] = np.zeros(3)
        f["b"] = np.zeros(4)
    with pytest.raises(DataError, match="different lengths: a \\(3\\), b \\(4\\)"):
        list(iter_chunks(path, "", ["a"], 10))


# ------------------------------------------------------------------------ real files


def test_real_cms_tutorial_file_jagged_muons() -> None:
    path = shared("skhep_testdata/uproot-HZZ.root")
    got, chunks = read_all(path, "events", ["Jet_Px", "NJet", "EventWeight"], 1000)
    assert len(chunks) == 3
    # README: 2421 events, 2773 jets in total
    assert len(got["NJet"]) == 2421
    assert int(ak.sum(ak.num(got["Jet_Px"]))) == 2773
    np.testing.assert_array_equal(ak.num(got["Jet_Px"]).to_numpy(), got["NJet"])
    assert got["EventWeight"].sum() == pytest.approx(16.92, rel=1e-3)


def test_real_rntuple_is_read() -> None:
    path = shared("skhep_testdata/Run2012BC_DoubleMuParked_Muons_1000evts_rntuple_v1-0-0-0.root")
    assert {"nMuon", "Muon_pt"} <= set(list_columns(path, "Events"))
    got, chunks = read_all(path, "Events", ["Muon_pt", "nMuon"], 300)
    assert [len(c) for c in chunks] == [300, 300, 300, 100]
    assert set(chunks[0].arrays) == {"Muon_pt", "nMuon"}
    # README: 1000 entries, 2372 muons
    assert len(got["nMuon"]) == 1000
    assert int(ak.sum(ak.num(got["Muon_pt"]))) == 2372 == int(got["nMuon"].sum())


@pytest.mark.parametrize("damage", ["zeroed page", "truncated", "cut header"])
def test_a_damaged_rntuple_is_one_line_in_inspect_and_reading(damage, tmp_path, capsys) -> None:
    from fivesigma.cli import main

    data = bytearray(
        shared(
            "skhep_testdata/Run2012BC_DoubleMuParked_Muons_1000evts_rntuple_v1-0-0-0.root"
        ).read_bytes()
    )
    if damage == "zeroed page":
        data[400:700] = bytes(300)
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data = data[:200] + data[500:]
    path = tmp_path / "bad.root"
    path.write_bytes(bytes(data))
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.root" in err and "internal error" not in err
    with pytest.raises(DataError, match="bad.root"):
        read_all(path, "Events", ["Muon_pt", "nMuon"], 300)


def test_real_gzipped_csv() -> None:
    path = shared("trackml_subset_gnn_tracking/event000000001-hits.csv.gz")
    assert detect_format(path) == "csv"
    got, _ = read_all(path, "", ["hit_id", "volume_id"], 2000)
    assert len(got["hit_id"]) == 5527  # README
    assert set(np.unique(got["volume_id"]).tolist()) == {7, 8, 9, 12, 13, 14, 16, 17, 18}


def test_describe_file_every_format(
    root_file: Path, parquet_file: Path, hdf5_table_file: Path, hdf5_root_file: Path, csv_file: Path
) -> None:
    text = describe_file(root_file)
    assert "TTree 'Events': 50 entries" in text and "lep_pt" in text
    assert "50 rows" in describe_file(parquet_file)
    assert "key 'Events' (pandas table): 50 rows, 4 columns" in describe_file(hdf5_table_file)
    assert "file root (datasets): 50 rows, 4 columns" in describe_file(hdf5_root_file)
    assert "met" in describe_file(csv_file, tree="ignored")
    with pytest.raises(DataError, match="no tree 'Evnts'"):
        describe_file(root_file, tree="Evnts")
