"""Jet readers: generator ROOT, Top Quark Tagging HDF5 (pandas fixed and table), EnergyFlow npz."""

from __future__ import annotations

import pickle
from fractions import Fraction
from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import pandas as pd
import pytest

from fivesigma.errors import DataError
from fivesigma.io.jets import CLASS_NAMES, JetSample, concatenate, iter_jets, read_jets

M = 5  # constituents per jet in the tiny top-tagging files


def _top_frame(n: int, seed: int = 1) -> tuple[pd.DataFrame, list[list[tuple[float, ...]]]]:
    """A frame in the Top Quark Tagging layout and the expected (px, py, pz, E) per jet."""
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    e = np.zeros((n, M))
    px, py, pz = np.zeros((n, M)), np.zeros((n, M)), np.zeros((n, M))
    expected = []
    for i in range(n):
        k = i % (M + 1)  # 0..M real particles, the rest zero padding (jet 0 is empty)
        pxi, pyi, pzi = rng.normal(0, 20, (3, k))
        ei = np.sqrt(pxi**2 + pyi**2 + pzi**2) + 0.1
        px[i, :k], py[i, :k], pz[i, :k], e[i, :k] = pxi, pyi, pzi, ei
        parts = sorted(zip(pxi, pyi, pzi, ei, strict=True), key=lambda t: -np.hypot(t[0], t[1]))
        expected.append(parts)
    for name, arr in (("E", e), ("PX", px), ("PY", py), ("PZ", pz)):
        for j in range(M):
            cols[f"{name}_{j}"] = arr[:, j].astype(np.float32)
    cols["truthE"] = np.ones(n, dtype=np.float32)
    cols["truthPX"] = np.zeros(n, dtype=np.float32)
    cols["ttv"] = (np.arange(n) % 3).astype(np.int64)
    cols["is_signal_new"] = (np.arange(n) % 2).astype(np.int64)
    return pd.DataFrame(cols), expected


def _no_tracks(sample: JetSample) -> None:
    """A sample from a file without impact parameters: zeros, and has_tracks says so."""
    assert not sample.has_tracks
    for name in ("d0", "dz", "d0err", "dzerr"):
        values = ak.to_numpy(ak.flatten(sample.constituents[name]))
        assert values.dtype == np.float32 and np.all(values == 0), name


def _check_top(sample: JetSample, df: pd.DataFrame, expected: list) -> None:
    assert sample.source == "toptagging" and not sample.has_pid
    _no_tracks(sample)
    np.testing.assert_array_equal(sample.label, np.where(df["is_signal_new"] == 1, 4, 0))
    np.testing.assert_array_equal(sample.meta["ttv"], df["ttv"].to_numpy())
    c = sample.constituents
    for i, parts in enumerate(expected):
        got = np.array([c.px[i], c.py[i], c.pz[i], c.energy[i]]).T.reshape(-1, 4)
        np.testing.assert_allclose(got, np.array(parts, dtype=np.float32).reshape(-1, 4), rtol=1e-6)
        assert ak.all(c.charge[i] == 0) and ak.all(c.cls[i] == 0)
    # Jet kinematics are the constituent sums (the files hold no jet branches).
    sum_px = np.array([sum(p[0] for p in parts) for parts in expected])
    sum_py = np.array([sum(p[1] for p in parts) for parts in expected])
    np.testing.assert_allclose(sample.jet["pt"], np.hypot(sum_px, sum_py), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("layout", ["fixed", "table"])
def test_toptagging_layouts_padding_removed_and_labels_mapped(tmp_path: Path, layout: str) -> None:
    df, expected = _top_frame(13)
    path = tmp_path / f"top_{layout}.h5"
    df.to_hdf(path, key="table", mode="w", format=layout)
    sample = read_jets(path)  # auto: HDF5 -> toptagging
    assert len(sample) == 13
    assert sample.n_constituents.tolist() == [len(p) for p in expected]
    _check_top(sample, df, expected)
    assert CLASS_NAMES[4] == "top" and CLASS_NAMES[0] == "light"


@pytest.mark.parametrize("layout", ["fixed", "table"])
def test_toptagging_streaming_chunks_concatenate_to_whole(tmp_path: Path, layout: str) -> None:
    df, _ = _top_frame(11, seed=2)
    path = tmp_path / "top.h5"
    df.to_hdf(path, key="table", mode="w", format=layout)
    chunks = list(iter_jets(path, chunk_jets=4, format="toptagging"))
    assert [len(c) for c in chunks] == [4, 4, 3]
    joined = concatenate(chunks)
    whole = read_jets(path, chunk_jets=3)
    assert ak.to_list(joined.constituents) == ak.to_list(whole.constituents)
    np.testing.assert_array_equal(joined.label, whole.label)
    part = read_jets(path, start=3, max_jets=5, chunk_jets=2)
    assert ak.to_list(part.constituents) == ak.to_list(whole.constituents[3:8])
    np.testing.assert_array_equal(part.jet["pt"], whole.jet["pt"][3:8])


def test_read_range_spans_files_in_order(tmp_path: Path) -> None:
    df, _ = _top_frame(12, seed=3)
    df.iloc[:7].to_hdf(tmp_path / "a.h5", key="table", mode="w")
    df.iloc[7:].to_hdf(tmp_path / "b.h5", key="table", mode="w", format="table")
    whole = read_jets([tmp_path / "*.h5"])
    assert len(whole) == 12
    part = read_jets([str(tmp_path / "a.h5"), str(tmp_path / "b.h5")], start=5, max_jets=4)
    assert ak.to_list(part.constituents) == ak.to_list(whole.constituents[5:9])
    assert len(read_jets(tmp_path / "a.h5", start=100)) == 0


def _qg_arrays() -> tuple[np.ndarray, np.ndarray]:
    x = np.zeros((4, 4, 4))
    x[0, :3] = [[50.0, 0.3, 1.0, 211], [80.0, -0.2, 1.2, 22], [5.0, 0.1, 3.1, -11]]
    x[1, :1] = [[30.0, 1.5, -3.0, 2112]]
    x[3, :2] = [[10.0, -2.0, 0.5, -13], [12.0, -2.1, 0.4, -2212]]
    y = np.array([1.0, 0.0, 1.0, 0.0])
    return x, y


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_energyflow_npz_kinematics_from_pdg_mass(tmp_path: Path, save) -> None:
    x, y = _qg_arrays()
    path = tmp_path / "QG_jets.npz"
    save(path, X=x, y=y)
    sample = read_jets(path)
    assert sample.source == "energyflow" and sample.has_pid
    _no_tracks(sample)
    np.testing.assert_array_equal(sample.label, [0, 1, 0, 1])  # quark -> light, gluon -> gluon
    assert sample.n_constituents.tolist() == [3, 1, 0, 2]
    c = sample.constituents
    # jet 0 sorted by pT: photon (80), pi+ (50), e+ (5)
    assert c.pid[0].tolist() == [22, 211, -11]
    assert c.charge[0].tolist() == [0, 1, 1]
    assert c.cls[0].tolist() == [2, 0, 3]
    assert c.cls[1].tolist() == [1] and c.charge[1].tolist() == [0]
    assert c.pid[3].tolist() == [-2212, -13] and c.charge[3].tolist() == [-1, 1]
    assert c.cls[3].tolist() == [0, 4]
    # pi+ of jet 0: pT 50, y 0.3, phi 1.0, m = 0.13957 GeV
    m = 0.13957039
    mt = np.hypot(50.0, m)
    got = [c.px[0][1], c.py[0][1], c.pz[0][1], c.energy[0][1]]
    want = [50 * np.cos(1.0), 50 * np.sin(1.0), mt * np.sinh(0.3), mt * np.cosh(0.3)]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # neutron: the invariant mass of the 4-vector is the neutron mass
    e, px, py, pz = (float(c[f][1][0]) for f in ("energy", "px", "py", "pz"))
    assert np.sqrt(e**2 - px**2 - py**2 - pz**2) == pytest.approx(0.9395654, rel=2e-3)
    chunks = list(iter_jets(path, chunk_jets=3))
    assert [len(ch) for ch in chunks] == [3, 1]
    assert ak.to_list(concatenate(chunks).constituents) == ak.to_list(c)


#: Impact parameters (mm) of the tiny generator file's constituents, in file order.
_TRACKS = {
    "d0": [[0.25, -0.004, 0.0], [], [0.0]],
    "dz": [[-1.5, 0.03, 0.0], [], [0.0]],
    "d0err": [[0.05, 0.011, 0.0], [], [0.0]],
    "dzerr": [[0.07, 0.031, 0.0], [], [0.0]],
}


def _generator_file(path: Path, tracks: bool = False) -> dict:
    """A tiny file in the jet generator's layout (TTree Jets), written with uproot mktree;
    with the impact-parameter branches of format version 2 if ``tracks``."""
    import uproot

    f32 = lambda a: ak.values_astype(ak.Array(a), np.float32)  # noqa: E731
    i32 = lambda a: ak.values_astype(ak.Array(a), np.int32)  # noqa: E731
    part = ak.zip(
        {
            "px": f32([[1.0, 30.0, -2.0], [], [5.0]]),
            "py": f32([[0.5, 1.0, 0.0], [], [5.0]]),
            "pz": f32([[0.2, 4.0, 1.0], [], [0.0]]),
            "energy": f32([[1.2, 30.3, 2.3], [], [7.1]]),
            "charge": i32([[1, -1, 0], [], [0]]),
            "pid": i32([[211, -211, 22], [], [130]]),
            "class": i32([[0, 0, 2], [], [1]]),
            **({k: f32(v) for k, v in _TRACKS.items()} if tracks else {}),
        }
    )
    flat = {
        "jet_pt": np.array([31.0, 0.0, 7.07], dtype=np.float32),
        "jet_eta": np.array([0.1, 0.0, 0.0], dtype=np.float32),
        "jet_phi": np.array([0.05, 0.0, 0.78], dtype=np.float32),
        "jet_mass": np.array([3.0, 0.0, 0.5], dtype=np.float32),
        "jet_energy": np.array([33.8, 0.0, 7.1], dtype=np.float32),
        "label": np.array([3, 1, 7], dtype=np.int32),
        "jet_nparticles": np.array([250, 0, 1], dtype=np.int32),  # may exceed the stored npart
    }
    with uproot.recreate(path) as f:
        tree = f.mktree(
            "Jets",
            {**{k: v.dtype for k, v in flat.items()}, "part": part.type.content},
            counter_name=lambda _: "npart",
        )
        tree.extend({**flat, "part": part})
    return flat


def test_generator_root_file(tmp_path: Path) -> None:
    path = tmp_path / "jets_0.root"
    flat = _generator_file(path)
    sample = read_jets(str(tmp_path / "jets_*.root"))
    assert sample.source == "fivesigma" and sample.has_pid
    np.testing.assert_array_equal(sample.label, [3, 1, 7])
    np.testing.assert_allclose(sample.jet["pt"], flat["jet_pt"])  # taken from the file
    np.testing.assert_allclose(sample.jet["mass"], flat["jet_mass"])
    c = sample.constituents
    assert c.px[0].tolist() == [30.0, -2.0, 1.0]  # sorted by pT
    assert c.pid[0].tolist() == [-211, 22, 211]
    assert c.charge[0].tolist() == [-1, 0, 1]
    assert c.cls[0].tolist() == [0, 2, 0]
    assert len(c[1]) == 0 and c.cls[2].tolist() == [1]
    sub = sample.subset(np.array([True, False, True]))
    np.testing.assert_array_equal(sub.label, [3, 7])
    assert [len(ch) for ch in iter_jets(path, chunk_jets=2, format="fivesigma")] == [2, 1]
    # Written before the impact parameters existed (format version 1).
    _no_tracks(sample)


def test_generator_root_file_with_impact_parameters(tmp_path: Path) -> None:
    path = tmp_path / "jets_ip.root"
    _generator_file(path, tracks=True)
    sample = read_jets(path)
    assert sample.has_tracks and sample.has_pid
    c = sample.constituents
    # Sorted by pT with the other fields: file order (1, 30, -2) -> (30, -2, 1).
    assert c.px[0].tolist() == [30.0, -2.0, 1.0]
    order = [1, 2, 0]
    for name, values in _TRACKS.items():
        got = c[name]
        assert ak.to_numpy(ak.flatten(got)).dtype == np.float32
        np.testing.assert_allclose(got[0].to_list(), np.array(values[0])[order], rtol=1e-6)
        assert got[2].tolist() == [0.0] and len(got[1]) == 0
    # subset and concatenate keep has_tracks; mixing with a file without them drops it.
    assert sample.subset([0, 2]).has_tracks and sample.subset(slice(0, 1)).has_tracks
    _generator_file(tmp_path / "old.root")
    old = read_jets(tmp_path / "old.root")
    assert not old.subset([0, 2]).has_tracks
    assert concatenate([sample, sample]).has_tracks
    mixed = concatenate([sample, old])
    assert not mixed.has_tracks and len(mixed) == 6
    assert ak.to_list(mixed.constituents.d0[:3]) == ak.to_list(c.d0)
    assert ak.all(mixed.constituents.d0[3:] == 0)


def test_from_arrays_impact_parameters() -> None:
    kin = ([[1.0, 3.0]], [[0.0, 0.0]], [[0.0, 0.0]], [[1.0, 3.0]])
    plain = JetSample.from_arrays(*kin, [0], pid=[[211, 22]])
    assert plain.has_pid and not plain.has_tracks
    assert plain.constituents.d0.tolist() == [[0.0, 0.0]]
    with_ip = JetSample.from_arrays(*kin, [0], d0=[[0.1, 0.0]], d0err=[[0.02, 0.0]])
    assert with_ip.has_tracks and not with_ip.has_pid
    # sorted by pT with the kinematics: the 3 GeV particle (d0 0) first
    assert with_ip.constituents.d0.tolist() == [[0.0, pytest.approx(0.1)]]
    assert with_ip.constituents.d0err.tolist() == [[0.0, pytest.approx(0.02)]]
    assert with_ip.constituents.dz.tolist() == [[0.0, 0.0]]  # not given: zeros
    assert not JetSample.from_arrays(*kin, [0], d0=[[0.1, 0.0]], has_tracks=False).has_tracks
    with pytest.raises(DataError, match="constituent array 'dz'"):
        JetSample.from_arrays(*kin, [0], dz=[[0.1]])


# --------------------------------------------------------------------------------------
# Errors


def test_missing_file_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no file matches") as exc:
        read_jets(tmp_path / "nope.h5")
    assert "\n" not in str(exc.value)


def test_unknown_format_name(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match="unknown jet file format 'toptaging'.*did you mean 'toptagging'"
    ):
        read_jets(tmp_path / "x.h5", format="toptaging")


def test_hdf5_without_constituent_columns_names_them(tmp_path: Path) -> None:
    path = tmp_path / "wrong.h5"
    pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}).to_hdf(path, key="table", mode="w")
    with pytest.raises(DataError, match="no constituent columns E_0, PX_0, PY_0, PZ_0") as exc:
        read_jets(path)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)


def test_hdf5_without_label_column(tmp_path: Path) -> None:
    df, _ = _top_frame(3)
    path = tmp_path / "nolabel.h5"
    df.drop(columns=["is_signal_new"]).to_hdf(path, key="table", mode="w")
    with pytest.raises(DataError, match="no label column 'is_signal_new'"):
        read_jets(path)


def test_hdf5_object_block_is_refused(tmp_path: Path) -> None:
    df, _ = _top_frame(3)
    df["note"] = ["a", "b", "c"]  # object column: pandas 'fixed' pickles it
    path = tmp_path / "obj.h5"
    df.to_hdf(path, key="table", mode="w")
    with pytest.raises(DataError, match="pickled objects"):
        read_jets(path)


def test_hdf5_pickled_attribute_with_a_class_is_never_unpickled(tmp_path: Path) -> None:
    df, _ = _top_frame(3)
    path = tmp_path / "evil.h5"
    df.to_hdf(path, key="table", mode="w", format="table")
    with h5py.File(path, "r+") as f:
        # A pickle that needs a global (here a harmless Fraction) must be refused.
        f["table/table"].attrs["values_block_0_kind"] = np.bytes_(
            pickle.dumps(Fraction(1, 2), protocol=0)
        )
    with pytest.raises(DataError, match="refusing to unpickle"):
        read_jets(path)


def test_npz_without_x_or_y(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, X=np.zeros((2, 3, 4)))
    with pytest.raises(DataError, match="no array 'y' in the .npz"):
        read_jets(path)
    np.savez(path, data=np.zeros(3), y=np.zeros(3))
    with pytest.raises(DataError, match="no array 'X'.*found data, y"):
        read_jets(path)


def test_npz_with_object_array_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "obj.npz"
    x = np.empty((2, 1, 4), dtype=object)
    x[:] = 1.0
    np.savez(path, X=x, y=np.zeros(2))
    with pytest.raises(DataError, match="pickled Python objects"):
        read_jets(path)


def test_pickle_file_named_npz_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps({"X": np.zeros((1, 1, 4)), "y": np.zeros(1)}))
    with pytest.raises(DataError, match="not an .npz archive"):
        read_jets(path)


def test_npz_wrong_shape(tmp_path: Path) -> None:
    path = tmp_path / "shape.npz"
    np.savez(path, X=np.zeros((2, 4)), y=np.zeros(2))
    with pytest.raises(DataError, match=r"X has shape \(2, 4\)"):
        read_jets(path)


def test_unrecognised_file(tmp_path: Path) -> None:
    path = tmp_path / "jets.txt"
    path.write_text("hello")
    with pytest.raises(DataError, match="not a ROOT .* jet file"):
        read_jets(path)


def test_root_file_without_jets_tree(tmp_path: Path) -> None:
    import uproot

    path = tmp_path / "other.root"
    with uproot.recreate(path) as f:
        f.mktree("Events", {"x": np.float32}).extend({"x": np.zeros(2, dtype=np.float32)})
    with pytest.raises(DataError, match="no TTree 'Jets'"):
        read_jets(path)
