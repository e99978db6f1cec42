"""Tests of the anomaly task's data layer: the LHCO reader, dijet tables, regions, injection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fivesigma.errors import ConfigError, DataError
from fivesigma.io.lhco import LHCO_COLUMNS, read_lhco
from fivesigma.tasks.anomaly.data import (
    FEATURES,
    DijetTable,
    Regions,
    check_regions,
    inject,
    read_dijets,
)

pd = pytest.importorskip("pandas")
pytest.importorskip("tables")  # pandas' to_hdf writer (the reader itself uses h5py only)


def _lhco_frame(n: int = 60, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    for j in ("j1", "j2"):
        cols[f"px{j}"] = rng.normal(0, 1200, n)
        cols[f"py{j}"] = rng.normal(0, 1200, n)
        cols[f"pz{j}"] = rng.normal(0, 2000, n)
        cols[f"m{j}"] = rng.uniform(10, 700, n)
        t1 = rng.uniform(0.1, 1.0, n)
        t1[:3] = 0.0  # tau1 = 0: the ratio is defined as 0
        cols[f"tau1{j}"] = t1
        cols[f"tau2{j}"] = t1 * rng.uniform(0.1, 1.0, n)
        cols[f"tau3{j}"] = cols[f"tau2{j}"] * rng.uniform(0.1, 1.0, n)
    # label as int: a second pandas block (the float columns are the first)
    cols["label"] = (rng.uniform(size=n) < 0.3).astype(np.int64)
    return pd.DataFrame({c: cols[c] for c in LHCO_COLUMNS})


@pytest.fixture
def lhco_file(tmp_path):
    df = _lhco_frame()
    path = tmp_path / "events_anomalydetection_v2.features.h5"
    df.to_hdf(path, key="df", format="fixed")
    return path, df


def _mjj_by_hand(df: pd.DataFrame) -> np.ndarray:
    out = []
    for _, r in df.iterrows():
        p = np.zeros(4)
        for j in ("j1", "j2"):
            px, py, pz, m = r[f"px{j}"], r[f"py{j}"], r[f"pz{j}"], r[f"m{j}"]
            p += [math.sqrt(px * px + py * py + pz * pz + m * m), px, py, pz]
        out.append(math.sqrt(max(p[0] ** 2 - p[1] ** 2 - p[2] ** 2 - p[3] ** 2, 0.0)))
    return np.array(out)


# --------------------------------------------------------------------------------------
# LHCO reader


def test_lhco_round_trip_against_numpy_formulas(lhco_file):
    path, df = lhco_file
    out = read_lhco(path)
    np.testing.assert_allclose(out["mjj"], _mjj_by_hand(df), rtol=1e-10)
    light_is_1 = df["mj1"].to_numpy() <= df["mj2"].to_numpy()
    np.testing.assert_array_equal(out["mj1"], np.minimum(df["mj1"], df["mj2"]))
    np.testing.assert_array_equal(out["mj2"], np.maximum(df["mj1"], df["mj2"]))
    np.testing.assert_allclose(out["delta_mj"], np.abs(df["mj1"] - df["mj2"]), rtol=1e-12)
    assert np.all(out["delta_mj"] >= 0)
    t1 = np.where(light_is_1, df["tau1j1"], df["tau1j2"])
    t2 = np.where(light_is_1, df["tau2j1"], df["tau2j2"])
    expected = np.divide(t2, t1, out=np.zeros_like(t2), where=t1 > 0)
    np.testing.assert_allclose(out["tau21_j1"], expected, rtol=1e-12)
    assert np.all(out["tau21_j1"][:3] == 0.0)  # tau1 = 0 rows
    px = np.where(light_is_1, df["pxj1"], df["pxj2"])
    py = np.where(light_is_1, df["pyj1"], df["pyj2"])
    np.testing.assert_allclose(out["pt_j1"], np.hypot(px, py), rtol=1e-12)
    np.testing.assert_array_equal(out["label"], df["label"].to_numpy())
    assert out["label"].dtype == np.int32
    assert both_features_present(out)


def both_features_present(out: dict) -> bool:
    return all(name in out for name in (*FEATURES, "mjj", "label", "tau32_j2", "eta_j2"))


def test_lhco_max_events_reads_the_first_rows(lhco_file):
    path, _ = lhco_file
    full, part = read_lhco(path), read_lhco(path, max_events=7)
    assert len(part["mjj"]) == 7
    for key, val in part.items():
        np.testing.assert_array_equal(val, full[key][:7])


def test_lhco_missing_column_names_file_and_columns(tmp_path):
    path = tmp_path / "bad.h5"
    _lhco_frame().drop(columns=["tau3j2"]).to_hdf(path, key="df", format="fixed")
    with pytest.raises(DataError) as err:
        read_lhco(path)
    msg = str(err.value)
    assert "\n" not in msg and "bad.h5" in msg and "tau3j2" in msg and "pxj1 pyj1" in msg


@pytest.mark.parametrize(
    "write, match",
    [
        (lambda p: p.write_text("not hdf5"), "not a readable HDF5"),
        (lambda p: _lhco_frame().to_hdf(p, key="df", format="table"), "pandas_type"),
        (lambda p: None, "no such file"),
    ],
)
def test_lhco_bad_files(tmp_path, write, match):
    path = tmp_path / "x.h5"
    write(path)
    with pytest.raises(DataError, match=match) as err:
        read_lhco(path)
    assert "\n" not in str(err.value) and "label" in str(err.value)


def test_lhco_object_columns_are_never_unpickled(tmp_path):
    df = _lhco_frame()
    df["label"] = df["label"].astype(str)  # an object block: pickled by pandas
    path = tmp_path / "obj.h5"
    df.to_hdf(path, key="df", format="fixed")
    with pytest.raises(DataError, match="missing column.*label"):
        read_lhco(path)


def test_lhco_bad_max_events(lhco_file):
    with pytest.raises(DataError, match="max_events"):
        read_lhco(lhco_file[0], max_events=0)


# --------------------------------------------------------------------------------------
# read_dijets and DijetTable


def _table(n: int = 10, **extra) -> DijetTable:
    rng = np.random.default_rng(1)
    cols = {name: rng.uniform(0, 1, n) for name in ("mj1", "delta_mj", "tau21_j1", "tau21_j2")}
    cols["mjj"] = rng.uniform(2800, 4200, n)
    cols["label"] = np.zeros(n, dtype=np.int32)
    cols.update(extra)
    return DijetTable(cols, "toy")


def test_read_dijets_lhco_and_root(lhco_file, tmp_path):
    import awkward as ak
    import uproot

    path, df = lhco_file
    table = read_dijets(path)
    assert len(table) == len(df) and table.source == str(path)
    np.testing.assert_array_equal(table.mjj, read_lhco(path)["mjj"])

    ref = _table(5)
    root = tmp_path / "d.root"
    with uproot.recreate(root) as f:
        jag = ak.Array([[1.0, 2.0], [], [3.0], [4.0], [5.0, 6.0]])
        f["Events"] = {**ref.columns, "j1_px": jag}
    got = read_dijets(root)
    assert "j1_px" not in got.columns  # jagged branches stay out of the per-event table
    for key in ref.columns:
        np.testing.assert_array_equal(got.columns[key], ref.columns[key])


def test_read_dijets_errors(tmp_path):
    import uproot

    text = tmp_path / "a.csv"
    text.write_text("mjj\n1\n")
    with pytest.raises(DataError, match="neither ROOT nor HDF5"):
        read_dijets(text)
    with pytest.raises(DataError, match="cannot open"):
        read_dijets(tmp_path / "missing.root")
    other = tmp_path / "other.root"
    with uproot.recreate(other) as f:
        f["Jets"] = {"x": np.arange(3.0)}
    with pytest.raises(DataError, match="no TTree 'Events'"):
        read_dijets(other)
    partial = tmp_path / "partial.root"
    with uproot.recreate(partial) as f:
        f["Events"] = {"mjj": np.arange(3.0), "mj1": np.arange(3.0)}
    with pytest.raises(DataError, match="no column.*delta_mj") as err:
        read_dijets(partial)
    assert "\n" not in str(err.value)


def test_table_features_take_concat():
    t = _table(6, extra=np.arange(6.0))
    x = t.features()
    assert x.shape == (6, 4) and x.dtype == np.float64
    np.testing.assert_array_equal(x[:, 1], t.columns["delta_mj"])
    with pytest.raises(DataError, match="no feature 'mj3'"):
        t.features(["mj3"])
    sub = t.take(np.array([True, False, True, False, False, True]))
    np.testing.assert_array_equal(sub.mjj, t.mjj[[0, 2, 5]])
    np.testing.assert_array_equal(t.take([5, 0]).mjj, t.mjj[[5, 0]])
    assert len(t.take(np.array([], dtype=int))) == 0
    with pytest.raises(DataError, match="row mask"):
        t.take(np.array([True, False]))
    with pytest.raises(DataError, match="out of range"):
        t.take([6])
    both = DijetTable.concat([t, _table(4)])
    assert len(both) == 10 and "extra" not in both.columns and both.source == "toy"
    with pytest.raises(DataError, match="at least one"):
        DijetTable.concat([])


def test_table_validation():
    with pytest.raises(DataError, match="without column.*label"):
        DijetTable({"mjj": np.zeros(3), "mj1": np.zeros(3)}, "x")
    cols = dict(_table(4).columns)
    cols["mj1"] = np.zeros(5)
    with pytest.raises(DataError, match="mj1"):
        DijetTable(cols, "x")


# --------------------------------------------------------------------------------------
# Regions


def test_region_edges():
    r = Regions(sr=(3300.0, 3700.0), sidebands=(3000.0, 4100.0))
    m = np.array([2999.9, 3000.0, 3299.9, 3300.0, 3699.9, 3700.0, 4099.9, 4100.0])
    assert r.region(m).tolist() == [0, 2, 2, 1, 1, 2, 2, 0]
    assert r.region(m).dtype == np.int8


def test_check_regions_accepts_and_rejects():
    rng = np.random.default_rng(0)
    mjj = rng.uniform(2500, 5000, 5000)
    check_regions(Regions(), mjj)
    with pytest.raises(DataError, match="outside the data's mjj range"):
        check_regions(Regions(sr=(4800.0, 5200.0), sidebands=(4500.0, 5500.0)), mjj)
    with pytest.raises(DataError, match="do not enclose"):
        check_regions(Regions(sr=(3300.0, 3700.0), sidebands=(3400.0, 4100.0)), mjj)
    with pytest.raises(DataError, match="do not enclose"):
        check_regions(Regions(sr=(3300.0, 3700.0), sidebands=(3000.0, 3700.0)), mjj)
    with pytest.raises(DataError, match="empty"):
        check_regions(Regions(sr=(3700.0, 3300.0)), mjj)
    few = np.concatenate([rng.uniform(3300, 3700, 500), [2500.0, 3100.0, 3900.0, 5000.0]])
    with pytest.raises(DataError, match=r"only 2 events in the sidebands.*at least 100") as err:
        check_regions(Regions(), few)
    assert "\n" not in str(err.value)
    check_regions(Regions(), few, min_sideband_events=2)
    with pytest.raises(DataError, match="finite"):
        check_regions(Regions(), np.array([np.nan]))


# --------------------------------------------------------------------------------------
# Injection


def _pools() -> tuple[DijetTable, DijetTable]:
    rng = np.random.default_rng(5)
    # background: exactly 1000 in the SR, 3000 outside
    bkg_m = np.concatenate([rng.uniform(3300, 3700, 1000), rng.uniform(3000, 3300, 1500),
                            rng.uniform(3700, 4100, 1500)])  # fmt: skip
    # signal: 200 in the SR, 100 outside
    sig_m = np.concatenate([rng.uniform(3300, 3700, 200), rng.uniform(2900, 3300, 100)])
    bkg = _table(bkg_m.size, mjj=bkg_m)
    sig = _table(sig_m.size, mjj=sig_m, label=np.ones(sig_m.size, dtype=np.int32))
    return bkg, sig


def test_inject_s_over_b_exact():
    bkg, sig = _pools()
    mixed, info = inject(bkg, sig, Regions(), s_over_b=0.05, rng=np.random.default_rng(1))
    assert info == {
        "n_signal": 75,  # 50 in the SR and 50 * 100 / 200 outside
        "n_signal_sr": 50,
        "n_background_sr": 1000,
        "s_over_b_sr": 0.05,
        "significance_sr": 50 / math.sqrt(1000),
    }
    assert len(mixed) == 4075 and int(mixed.label.sum()) == 75
    region = Regions().region(mixed.mjj)
    assert int(((region == 1) & (mixed.label == 1)).sum()) == 50
    assert int(((region == 1) & (mixed.label == 0)).sum()) == 1000
    # every background event is there once, and the signal events are distinct ones
    np.testing.assert_array_equal(np.sort(mixed.mjj[mixed.label == 0]), np.sort(bkg.mjj))
    assert np.unique(mixed.mjj[mixed.label == 1]).size == 75
    assert np.isin(mixed.mjj[mixed.label == 1], sig.mjj).all()
    again, _ = inject(bkg, sig, Regions(), s_over_b=0.05, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(again.mjj, mixed.mjj)


def test_inject_n_signal():
    bkg, sig = _pools()
    mixed, info = inject(bkg, sig, Regions(), n_signal=40, rng=np.random.default_rng(2))
    in_sr = (Regions().region(mixed.mjj) == 1) & (mixed.label == 1)
    assert info["n_signal"] == 40 and int(mixed.label.sum()) == 40
    assert info["n_signal_sr"] == int(in_sr.sum())
    assert info["s_over_b_sr"] == info["n_signal_sr"] / 1000
    assert info["significance_sr"] == pytest.approx(info["n_signal_sr"] / math.sqrt(1000))
    zero, info0 = inject(bkg, sig, Regions(), s_over_b=0.0, rng=np.random.default_rng(2))
    assert len(zero) == len(bkg) and info0["n_signal"] == 0


def test_inject_errors():
    bkg, sig = _pools()
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="exactly one"):
        inject(bkg, sig, Regions(), rng=rng)
    with pytest.raises(ConfigError, match="exactly one"):
        inject(bkg, sig, Regions(), s_over_b=0.1, n_signal=3, rng=rng)
    with pytest.raises(DataError, match=r"needs 500 signal events.*only 200") as err:
        inject(bkg, sig, Regions(), s_over_b=0.5, rng=rng)
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="only 300 are available"):
        inject(bkg, sig, Regions(), n_signal=301, rng=rng)
    with pytest.raises(ConfigError, match="s_over_b"):
        inject(bkg, sig, Regions(), s_over_b=-0.1, rng=rng)
    with pytest.raises(ConfigError, match="n_signal"):
        inject(bkg, sig, Regions(), n_signal=-1, rng=rng)
    far = Regions(sr=(5000.0, 5100.0), sidebands=(4900.0, 5200.0))
    with pytest.raises(DataError, match="no background events in the signal region"):
        inject(bkg, sig, far, s_over_b=0.1, rng=rng)
