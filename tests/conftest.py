"""Shared fixtures: tiny event files (ROOT, Parquet, HDF5, CSV) written in tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

N_EVENTS = 50


@pytest.fixture
def events() -> dict[str, np.ndarray | ak.Array]:
    """Reference content of the tiny files: flat columns, one jagged lepton column.

    Weights include negative values; some events have no lepton.
    """
    rng = np.random.default_rng(7)
    nlep = rng.integers(0, 4, size=N_EVENTS).astype(np.int32)
    flat_pt = rng.uniform(5.0, 100.0, size=int(nlep.sum())).astype(np.float32)
    return {
        "lep_pt": ak.unflatten(flat_pt, nlep),
        "nlep": nlep,
        "met": rng.exponential(30.0, size=N_EVENTS),
        "event": rng.permutation(np.arange(1000, 1000 + N_EVENTS, dtype=np.int64)),
        "weight": rng.normal(1.0, 0.8, size=N_EVENTS),  # about 10% negative
    }


FLAT = ("nlep", "met", "event", "weight")


@pytest.fixture
def write_root() -> Callable[..., Path]:
    """write_root(path, arrays, tree="Events", extra=None) -> path: a TTree (not RNTuple)."""
    import uproot

    def write(path: Path, arrays: dict, tree: str = "Events") -> Path:
        types = {}
        for name, value in arrays.items():
            if isinstance(value, ak.Array) and value.ndim > 1:
                types[name] = "var * float32"
            else:
                types[name] = np.asarray(value).dtype
        with uproot.recreate(path) as f:
            f.mktree(tree, types)
            f[tree].extend(dict(arrays))
        return path

    return write


@pytest.fixture
def root_file(tmp_path: Path, events: dict, write_root: Callable[..., Path]) -> Path:
    return write_root(tmp_path / "events.root", events)


@pytest.fixture
def parquet_file(tmp_path: Path, events: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "lep_pt": ak.to_arrow(events["lep_pt"], extensionarray=False),
            **{name: pa.array(events[name]) for name in FLAT},
        }
    )
    path = tmp_path / "events.parquet"
    # Small row groups so that chunks and row groups do not line up.
    pq.write_table(table, path, row_group_size=13)
    return path


@pytest.fixture
def hdf5_datasets_file(tmp_path: Path, events: dict) -> Path:
    """HDF5 layout (a): group 'Events' with one 1-D dataset per column."""
    import h5py

    path = tmp_path / "events.h5"
    with h5py.File(path, "w") as f:
        group = f.create_group("Events")
        for name in FLAT:
            group.create_dataset(name, data=events[name], chunks=True)
    return path


@pytest.fixture
def hdf5_root_file(tmp_path: Path, events: dict) -> Path:
    """HDF5 layout (a) at the file root (tree: '')."""
    import h5py

    path = tmp_path / "flat.hdf5"
    with h5py.File(path, "w") as f:
        for name in FLAT:
            f.create_dataset(name, data=events[name])
    return path


@pytest.fixture
def hdf5_table_file(tmp_path: Path, events: dict) -> Path:
    """HDF5 layout (b): what pandas ``to_hdf(key, format='table', data_columns=True)`` writes,
    a compound 'table' dataset with an 'index' field and one field per column (written with
    h5py because PyTables is not installed here)."""
    import h5py

    dtype = np.dtype([("index", "<i8")] + [(name, np.asarray(events[name]).dtype) for name in FLAT])
    rows = np.zeros(N_EVENTS, dtype=dtype)
    rows["index"] = np.arange(N_EVENTS)
    for name in FLAT:
        rows[name] = events[name]
    path = tmp_path / "table.h5"
    with h5py.File(path, "w") as f:
        group = f.create_group("Events")
        group.attrs["pandas_type"] = b"frame_table"
        group.attrs["table_type"] = b"appendable_frame"
        group.create_dataset("table", data=rows, chunks=True)
    return path


@pytest.fixture
def csv_file(tmp_path: Path, events: dict) -> Path:
    import pandas as pd

    path = tmp_path / "events.csv"
    pd.DataFrame({name: events[name] for name in FLAT}).to_csv(path, index=False)
    return path


@pytest.fixture
def toy_config_file(tmp_path: Path) -> Callable[..., Path]:
    """toy_config_file(n=2000, models=None, **data_overrides) -> path of a YAML config.

    Two Parquet samples of 4-D Gaussians (signal shifted), quick models, event ids as
    the split key.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    def make(n: int = 2000, models: list | None = None, **data_overrides) -> Path:
        rng = np.random.default_rng(1)
        mu = np.array([0.8, 0.4, 0.2, 0.0])
        for name, shift, first_id in (("sig", mu, 0), ("bkg", 0 * mu, n)):
            X = rng.normal(size=(n, 4)) + shift
            cols = {f"x{i}": X[:, i] for i in range(4)}
            cols["id"] = np.arange(first_id, first_id + n)
            cols["w"] = rng.uniform(0.5, 1.5, n)
            pq.write_table(pa.table(cols), tmp_path / f"{name}.parquet")
        data = {
            "samples": [
                {"name": "sig", "files": "sig.parquet", "label": 1, "weight": "w"},
                {"name": "bkg", "files": "bkg.parquet", "label": 0, "weight": "w"},
            ],
            "derived": {"r01": "sqrt(x0**2 + x1**2)"},
            "features": ["x0", "x1", "x2", "x3", "r01"],
            "split": {"train": 0.5, "validation": 0.2, "test": 0.3, "key": "id"},
        }
        data.update(data_overrides)
        cfg = {
            "version": 1,
            "seed": 7,
            "data": data,
            "models": models
            or [
                {"name": "logistic", "kind": "logistic"},
                {"name": "bdt", "kind": "bdt", "params": {"n_estimators": 30}},
                {"name": "mlp", "kind": "mlp", "params": {"hidden": [8], "epochs": 15, "lr": 0.01}},
            ],
            "evaluation": {"ranking_repeats": 1, "shap_events": 100},
            "stats": {"bins": 4},
            "output": {"dir": "out"},
        }
        path = tmp_path / "toy.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    return make
