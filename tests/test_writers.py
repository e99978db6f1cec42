"""Chunked output of `fivesigma apply`: Parquet and ROOT, atomic, valid even when empty."""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import uproot

from fivesigma.errors import OutputError
from fivesigma.io.writers import ordered_inputs, write_columns


def _chunks(n_chunks=3, size=4):
    for k in range(n_chunks):
        yield {
            "entry": np.arange(k * size, (k + 1) * size, dtype=np.int64),
            "score": np.full(size, k / 10),
        }


def _empty():
    return {"entry": np.zeros(0, np.int64), "score": np.zeros(0)}


@pytest.mark.parametrize("suffix", [".parquet", ".root"])
def test_chunks_are_concatenated_in_order(tmp_path, suffix):
    out = tmp_path / f"s{suffix}"
    assert write_columns(_chunks(), out) == 12
    if suffix == ".parquet":
        t = pq.read_table(out).to_pydict()
        entry, score = t["entry"], t["score"]
    else:
        with uproot.open(out) as f:
            entry, score = (
                f["scores"]["entry"].array(library="np"),
                f["scores"]["score"].array(library="np"),
            )
    assert list(entry) == list(range(12))
    assert list(score[::4]) == [0.0, 0.1, 0.2]


@pytest.mark.parametrize("suffix", [".parquet", ".root"])
def test_no_rows_still_gives_a_valid_file(tmp_path, suffix):
    out = tmp_path / f"s{suffix}"
    assert write_columns(iter(()), out, empty=_empty) == 0
    if suffix == ".parquet":
        assert pq.read_table(out).num_rows == 0
    else:
        with uproot.open(out) as f:
            assert f["scores"].num_entries == 0


def test_failure_mid_stream_leaves_nothing(tmp_path):
    def broken():
        yield from _chunks(1)
        raise RuntimeError("model exploded")

    with pytest.raises(RuntimeError):
        write_columns(broken(), tmp_path / "s.parquet")
    assert list(tmp_path.iterdir()) == []


def test_bad_suffix_and_input_order(tmp_path):
    with pytest.raises(OutputError, match="must end in .parquet or .root"):
        write_columns(_chunks(), tmp_path / "s.csv")
    for name in ("b.root", "a.root", "c.root"):
        (tmp_path / name).write_text("")
    files = ordered_inputs(["c.root", "*.root"], base_dir=tmp_path)
    assert [f.name for f in files] == ["c.root", "a.root", "b.root"]


def test_apply_refuses_an_output_that_is_an_input(tmp_path, monkeypatch, capsys):
    """`apply BUNDLE in.root --out in.root` would replace the data with the scores."""
    import os

    from fivesigma.cli import main
    from fivesigma.io.writers import check_apply_paths

    data = tmp_path / "in.root"
    data.write_bytes(b"root")
    (tmp_path / "link.root").symlink_to(data)
    monkeypatch.chdir(tmp_path)
    for out, inputs in (
        ("in.root", ["in.root"]),
        (str(data), ["in.root"]),
        ("link.root", [str(data)]),
        ("./sub/../in.root", ["*.root"]),
    ):
        with pytest.raises(OutputError, match="is one of the input files"):
            check_apply_paths(out, inputs)
    assert check_apply_paths("scores.root", ["in.root"]) == Path("scores.root")
    (tmp_path / "dir.parquet").mkdir()
    with pytest.raises(OutputError, match="existing directory"):
        check_apply_paths("dir.parquet", ["in.root"])
    # through the CLI: one line, exit 2, the input intact
    assert main(["apply", "nobundle", "in.root", "--out", "in.root"]) == 2
    assert main(["apply", "nobundle", "in.root", "--out", "s.root", "--chunk-size", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "--chunk-size must be a positive" in err[1]
    assert data.read_bytes() == b"root" and os.path.islink("link.root")
