"""The reweight task end to end on toy files (no Pythia), its bad-input paths, and the
built-in Pythia sampler on a tiny sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from _cli import assert_fails_one_line
from fivesigma.cli import main


def _write(path: Path, cols: dict[str, np.ndarray]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), path)
    return path


def _toys(tmp: Path, n: int = 3000, shift: float = 0.5, target_cols=("a", "b", "c")) -> None:
    rng = np.random.default_rng(4)
    s = rng.normal(size=(n, 3))
    t = rng.normal(size=(n, 3))
    t[:, 0] = 1.2 * t[:, 0] + shift
    t[:, 1] += 0.5 * t[:, 0]  # correlated: "b" alone does not tell the whole story
    _write(tmp / "src.parquet", {"a": s[:, 0], "b": s[:, 1], "c": s[:, 2]})
    _write(tmp / "tgt.parquet", {k: t[:, i] for i, k in enumerate(target_cols)})


def _config(tmp: Path, **extra) -> Path:
    cfg = {
        "version": 1,
        "task": "reweight",
        "seed": 2,
        "files": {"source": ["src.parquet"], "target": ["tgt.parquet"]},
        "features": ["a", "b"],
        "check_features": ["c"],
        "classifier": {"hidden": [32, 32], "epochs": 40, "batch_size": 128, "lr": 0.002},
        "gbreweighter": {"n_estimators": 20, "min_samples_leaf": 100},
        "bins": 10,
    }
    cfg.update(extra)
    path = tmp / "reweight.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_classifier_weights_close_a_toy_and_apply(tmp_path, capsys):
    _toys(tmp_path)
    out = tmp_path / "out"
    assert main(["run", str(_config(tmp_path)), "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    none, clf = m["methods"]["none"], m["methods"]["classifier"]
    assert none["max_chi2_ndf"] > 10 and none["auc"] > 0.6  # the shift is visible
    assert clf["max_chi2_ndf"] < 2.5 and clf["auc"] < 0.55
    assert clf["closure"]["c"]["chi2_ndf"] < 3  # unseen and independent: stays closed
    assert 0.1 < clf["ess_fraction"] < 1.0
    assert clf["calibration"]["ece"] < 0.1
    assert "gbreweighter" in m["methods"] and "dctr" not in m["methods"]
    assert set(m["done"]) >= {"classifier_chi2_ndf_below_2", "classifier_auc_at_most_0p55"}
    assert (out / "report.html").stat().st_size > 10_000
    # apply: the bundle weights a file; those weights equal the run's on the same events
    import pyarrow.parquet as pq

    scored = tmp_path / "w.parquet"
    assert main(["apply", str(out / "models" / "classifier"), str(tmp_path / "src.parquet"),
                 "--out", str(scored)]) == 0  # fmt: skip
    w = pq.read_table(scored)["weight"].to_numpy()
    assert w.size == 3000 and np.all(w > 0) and np.all(w <= 30.0)
    run_w = pq.read_table(out / "weights.parquet")
    src = pq.read_table(tmp_path / "src.parquet")["a"].to_numpy()
    rows = [int(np.flatnonzero(src == v)[0]) for v in run_w["a"].to_numpy()[:50]]
    # the run's weights are normalised to mean 1: the same model up to one constant
    ratio = w[rows] / run_w["weight_classifier"].to_numpy()[:50]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-4)


def test_clipping_is_never_silent(capsys):
    from fivesigma.tasks.reweight import stages
    from fivesigma.tasks.reweight.config import ReweightConfig

    s = ReweightConfig(version=1, clip={"max_weight": 4.0}).settings()
    w, info = stages.clipped(np.array([1.0, 2.0, 50.0, 1e9]), s, "classifier", progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "classifier: clipped 2 of 4 weights" in err[0]
    assert info["n_clipped"] == 2 and info["largest_before"] == 1e9
    assert w.mean() == pytest.approx(1.0) and w[2] == w[3]  # capped, then normalised


@pytest.mark.slow
def test_weights_that_blow_up_are_clipped_and_reported(tmp_path, capsys):
    _toys(tmp_path, n=1500, shift=5.0)  # barely overlapping: p -> 1 for the target
    out = tmp_path / "out"
    cfg = _config(tmp_path, clip={"max_weight": 2.0}, gbreweighter={"enabled": False},
                  classifier={"hidden": [16], "epochs": 30, "batch_size": 64})  # fmt: skip
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "classifier: clipped" in err  # on stderr even with --quiet
    clip = json.loads((out / "metrics.json").read_text())["methods"]["classifier"]["clipping"]
    assert clip["n_clipped"] > 0 and clip["max_weight"] == 2.0
    assert clip["largest_before"] > 2.0


def test_different_feature_sets_are_one_line(tmp_path, capsys):
    _toys(tmp_path, n=200, target_cols=("a", "b", "d"))
    out = tmp_path / "out"
    cfg = _config(tmp_path, features=None, check_features=None)
    assert_fails_one_line(
        ["run", str(cfg), "--out", str(out), "--quiet"], capsys, "different feature sets"
    )
    assert not out.exists()
    cfg = _config(tmp_path)  # features named: the target lacks "c"
    assert_fails_one_line(["run", str(cfg), "--out", str(out), "--quiet"], capsys, "no column(s) c")
    assert not out.exists()


def test_a_target_with_zero_events_is_one_line(tmp_path, capsys):
    _toys(tmp_path, n=200)
    _write(tmp_path / "tgt.parquet", {k: np.zeros(0) for k in "abc"})
    out = tmp_path / "out"
    assert_fails_one_line(
        ["run", str(_config(tmp_path)), "--out", str(out), "--quiet"], capsys, "zero events"
    )
    assert not out.exists()


def test_nan_features_are_one_line(tmp_path, capsys):
    _toys(tmp_path, n=200)
    a = np.zeros(200)
    a[3] = np.nan
    _write(tmp_path / "src.parquet", {"a": a, "b": np.zeros(200), "c": np.zeros(200)})
    out = tmp_path / "out"
    assert_fails_one_line(
        ["run", str(_config(tmp_path)), "--out", str(out), "--quiet"], capsys, "NaN"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"parametrised": {"alpha_s": [0.1, 0.115, 0.15]}}, "held out"),
        ({"parametrised": {"alpha_s": [0.12, 0.15]}}, "outside the parametrised range"),
        ({"samples": {"target_alpha_s": 0.1365}}, "both 0.1365"),
        ({"features": ["pt", "girth"]}, "unknown girth"),
        ({"features": ["pt", "mass"], "check_features": ["mass"]}, "also in features"),
    ],
)
def test_config_contradictions_are_one_line(tmp_path, capsys, extra, match):
    cfg = {"version": 1, "task": "reweight", **extra}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert_fails_one_line(["config", "--check", str(path)], capsys, match)


def test_the_template_checks(tmp_path, capsys):
    from fivesigma.core.registry import TASKS

    path = tmp_path / "reweight.yaml"
    path.write_text(TASKS.get("reweight")().template())
    assert main(["config", "--check", str(path)]) == 0


@pytest.mark.slow
@pytest.mark.pythia
def test_builtin_sampler_is_cached_and_sensitive_to_alpha_s(tmp_path):
    pytest.importorskip("pythia8mc")
    from fivesigma.tasks.reweight.data import OBSERVABLES, shower_sample

    lo = shower_sample(0.10, 400, 1, jobs=1, progress=False, cache_dir=tmp_path)
    hi = shower_sample(0.17, 400, 1, jobs=1, progress=False, cache_dir=tmp_path)
    assert set(lo) == {f"{lvl}_{o}" for lvl in ("gen", "reco") for o in OBSERVABLES}
    assert 300 < len(lo["gen_pt"]) <= 400 and np.all(lo["gen_pt"] >= 150)
    # more FSR: more constituents and wider jets, at both levels
    assert hi["gen_nconst"].mean() > lo["gen_nconst"].mean() + 2
    assert hi["gen_width"].mean() > lo["gen_width"].mean()
    assert hi["reco_nconst"].mean() > lo["reco_nconst"].mean()
    again = shower_sample(0.10, 400, 1, jobs=1, progress=False, cache_dir=tmp_path)
    np.testing.assert_array_equal(again["gen_mass"], lo["gen_mass"])
