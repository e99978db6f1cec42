"""``fivesigma apply`` of a classify bundle on dask.distributed.

Checked against the eager path (the reference): the per-file outputs concatenated equal
the eager output array by array, bit for bit, and the merged score histogram equals one
filled from the eager scores.  Also: only the needed branches are read, the model loads
once per worker, a worker killed mid-run changes nothing, a file that cannot be read is
named while the others complete, RNTuple inputs, and the CLI end to end.

One ``distributed.LocalCluster`` (2 worker processes, 1 thread each) serves the module.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from fivesigma.cli import main
from fivesigma.data import needed_columns
from fivesigma.estimators import make_estimator
from fivesigma.tasks.classify import apply as apply_mod
from fivesigma.tasks.classify.apply import apply_bundle, score_histogram

distributed = pytest.importorskip("distributed")
pytest.importorskip("dask_awkward")
pq = pytest.importorskip("pyarrow.parquet")

pytestmark = pytest.mark.slow

#: entries per partition: several partitions per file, last ones short
CHUNK = 40
SIZES = (97, 120, 41)
DATA = {
    "derived": {"lead": "nth(lep_pt, 0)"},
    "selection": "met > 10",
    "tree": "Events",
    "nan_policy": "error",
}


def _events(n: int, rng: np.random.Generator) -> dict[str, object]:
    nlep = rng.integers(0, 4, n)
    return {
        "met": rng.exponential(30.0, n),
        "ht": rng.normal(100.0, 20.0, n),
        "unused": rng.normal(size=n),  # never read: not a feature, cut or derived input
        "lep_pt": ak.unflatten(rng.uniform(5.0, 100.0, int(nlep.sum())), nlep),
    }


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import uproot

    base = tmp_path_factory.mktemp("dask_apply")
    rng = np.random.default_rng(11)
    files = []
    for i, n in enumerate(SIZES):
        path = base / f"in{i}.root"
        with uproot.recreate(path) as f:
            f["Events"] = _events(n, rng)
        files.append(str(path))
    rnt = base / "rntuple.root"
    with uproot.recreate(rnt) as f:
        f.mkrntuple("Events", ak.Array(_events(90, rng)))
    X = rng.normal(size=(400, 2)) * [30.0, 40.0] + [30.0, 50.0]
    y = (X[:, 0] + rng.normal(0, 20, 400) > 35).astype(np.int64)
    est = make_estimator("logistic").fit(X, y, feature_names=["met", "lead"])
    bundle = est.save(base / "bundle", data=DATA)
    return {"base": base, "files": files, "rntuple": str(rnt), "bundle": bundle}


@pytest.fixture(scope="module")
def client():
    from fivesigma.core.execution import executor

    with executor("processes:2", echo=lambda line: None) as c:
        yield c


def _table(paths) -> dict[str, np.ndarray]:
    tables = [pq.read_table(p) for p in paths]
    return {
        name: np.concatenate([t.column(name).to_numpy() for t in tables])
        for name in tables[0].column_names
    }


def _assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want) == ["file_index", "entry", "score", "selected"]
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        # bit for bit, NaN included
        assert got[name].tobytes() == want[name].tobytes(), name


def _eager(setup, files, name) -> dict[str, np.ndarray]:
    out = setup["base"] / f"{name}.parquet"
    apply_bundle(setup["bundle"], files, out, chunk_size=CHUNK)
    return _table([out])


def _eager_hist(table: dict[str, np.ndarray]):
    score = table["score"]
    return score_histogram(score[table["selected"] & np.isfinite(score)])


def test_dask_apply_equals_eager_bit_for_bit(setup, client) -> None:
    want = _eager(setup, setup["files"], "eager")
    assert np.isnan(want["score"]).any() and (~want["selected"]).any()  # both paths exercised
    info = apply_bundle(
        setup["bundle"],
        setup["files"],
        setup["base"] / "d.parquet",
        chunk_size=CHUNK,
        client=client,
    )
    assert info["failed"] == []
    assert [p.name for p in info["outputs"]] == [
        "d.00000.parquet",
        "d.00001.parquet",
        "d.00002.parquet",
    ]
    for path, n in zip(info["outputs"], SIZES, strict=True):
        assert pq.read_metadata(path).num_rows == n  # one output per input file
    _assert_same(_table(info["outputs"]), want)
    assert info["events"] == sum(SIZES) and info["selected"] == int(want["selected"].sum())

    ref = _eager_hist(want)
    h = info["histogram_counts"]
    np.testing.assert_array_equal(h.values(flow=True), ref.values(flow=True))
    assert h.values().sum() > 0
    saved = json.loads(info["histogram"].read_text())
    assert saved["counts"] == ref.values().tolist() and len(saved["edges"]) == 101

    # the model was loaded once per worker, not per partition (10 partitions here)
    loads = client.run(
        eval, "__import__('fivesigma.tasks.classify.apply').tasks.classify.apply._LOADS[0]"
    )
    assert sum(loads.values()) <= 2 and all(n <= 1 for n in loads.values()), loads


def test_only_the_needed_branches_are_read(setup) -> None:
    import dask_awkward as dak

    from fivesigma.estimators import load

    est = load(setup["bundle"])
    columns = apply_mod._input_columns(est, est.bundle_data_, "Events")
    data_cfg, sample = apply_mod._data_config(est.feature_names_in_, est.bundle_data_, "Events")
    # the config's needs, computed independently of the dask path
    assert set(columns) == needed_columns(data_cfg, sample, ["fivesigma_selected"])
    assert set(columns) == {"met", "lep_pt"}
    scorer = apply_mod._Scorer(str(setup["bundle"]), "-", "Events", tuple(columns))
    scored = apply_mod._scored_partitions(
        scorer, {Path(f): [(0, CHUNK)] for f in setup["files"]}, "Events"
    )
    (read,) = dak.necessary_columns(scored).values()
    assert set(read) == {"met", "lep_pt"}  # not "ht" nor "unused"


class _KillOnce(distributed.WorkerPlugin):
    """Kills its worker process the first time any worker starts a scoring task."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def transition(self, key, start, finish, **kwargs) -> None:
        name = key[0] if isinstance(key, tuple) else key
        if finish == "executing" and "fivesigma-score" in str(name):
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                return
            os.close(fd)
            os._exit(1)


def test_a_worker_killed_mid_run_gives_the_same_output(setup, client) -> None:
    import cloudpickle

    cloudpickle.register_pickle_by_value(__import__(__name__))
    want = _eager(setup, setup["files"], "eager_kill")
    marker = setup["base"] / "killed"
    client.register_plugin(_KillOnce(str(marker)), name="kill-once")
    try:
        info = apply_bundle(
            setup["bundle"],
            setup["files"],
            setup["base"] / "k.parquet",
            chunk_size=CHUNK,
            client=client,
        )
    finally:
        client.unregister_worker_plugin("kill-once")
        client.wait_for_workers(2)
    assert marker.exists()  # a worker did die
    assert info["failed"] == []
    _assert_same(_table(info["outputs"]), want)


def test_unreadable_and_vanished_files_are_named_while_the_others_complete(
    setup, client, monkeypatch
) -> None:
    import shutil

    base = setup["base"]
    corrupt = base / "corrupt.root"
    corrupt.write_bytes(Path(setup["files"][0]).read_bytes()[:300])  # a truncated file
    vanishing = base / "vanishing.root"
    shutil.copy(setup["files"][1], vanishing)
    inputs = [setup["files"][0], str(corrupt), str(vanishing), setup["files"][2]]

    plan = apply_mod._plan

    def plan_then_delete(*args, **kwargs):
        out = plan(*args, **kwargs)
        vanishing.unlink()  # gone after the client's checks, before the workers read it
        return out

    monkeypatch.setattr(apply_mod, "_plan", plan_then_delete)
    info = apply_bundle(
        setup["bundle"], inputs, base / "m.parquet", chunk_size=CHUNK, client=client
    )
    failed = dict(info["failed"])
    assert set(failed) == {str(corrupt), str(vanishing)}
    assert str(corrupt) in failed[str(corrupt)] and "\n" not in failed[str(corrupt)]
    assert "vanishing.root" in failed[str(vanishing)]
    # the others are complete and equal the eager scores of those files
    good = _eager(setup, [setup["files"][0], setup["files"][2]], "eager_good")
    got = _table(info["outputs"])
    assert [p.name for p in info["outputs"]] == ["m.00000.parquet", "m.00003.parquet"]
    np.testing.assert_array_equal(got["score"], good["score"])
    assert set(got["file_index"]) == {0, 3}
    report = json.loads(info["report"].read_text())
    assert report["failed"] == [str(corrupt), str(vanishing)]


def test_rntuple_input(setup, client) -> None:
    want = _eager(setup, [setup["rntuple"]], "eager_rnt")
    info = apply_bundle(
        setup["bundle"],
        [setup["rntuple"]],
        setup["base"] / "r.parquet",
        chunk_size=CHUNK,
        client=client,
    )
    assert info["failed"] == []
    _assert_same(_table(info["outputs"]), want)


def test_cli_apply_on_a_running_scheduler(setup, client, capsys) -> None:
    out = setup["base"] / "cli.parquet"
    code = main(
        [
            "apply",
            str(setup["bundle"]),
            *setup["files"],
            "--out",
            str(out),
            "--chunk-size",
            str(CHUNK),
            "--scheduler",
            client.scheduler.address,
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert f"scored {sum(SIZES)} events from 3 file(s)" in capsys.readouterr().out
    outputs = sorted(setup["base"].glob("cli.0000*.parquet"))
    _assert_same(_table(outputs), _eager(setup, setup["files"], "eager_cli"))


def test_cli_refuses_non_root_inputs_on_dask(setup, client, capsys, tmp_path) -> None:
    parquet = tmp_path / "x.parquet"
    pq.write_table(__import__("pyarrow").table({"met": [1.0], "lep_pt": [[2.0]]}), parquet)
    code = main(
        ["apply", str(setup["bundle"]), str(parquet), "--out", str(tmp_path / "o.parquet"),
         "--scheduler", client.scheduler.address]
    )  # fmt: skip
    # (stderr may also hold the scheduler's dashboard link, an information line)
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("fivesigma:")]
    assert code == 2 and len(errors) == 1
    assert "is a parquet file; --scheduler reads ROOT files" in errors[0]
    assert not list(tmp_path.glob("o*"))
