"""The example configs of docs/examples run end to end on the real files (when present).

Each config is copied with absolute file paths and tiny model settings, then run through
``fivesigma run``.  Skipped when shared/data (the real sample files) is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from fivesigma.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

TINY = {
    "logistic": {},
    "bdt": {"n_estimators": 20, "max_depth": 3},
    "mlp": {"hidden": [16], "epochs": 2},
}


def _tiny_copy(name: str, tmp_path: Path) -> Path:
    raw = yaml.safe_load((EXAMPLES / name).read_text())
    for sample in raw["data"]["samples"]:
        files = sample["files"] if isinstance(sample["files"], list) else [sample["files"]]
        paths = [(EXAMPLES / f).resolve() for f in files]
        for path in paths:
            if not path.exists():
                pytest.skip(f"real sample file {path} not present")
        sample["files"] = [str(p) for p in paths]
    for model in raw["models"]:
        params = {k: v for k, v in (model.get("params") or {}).items() if k == "class_weight"}
        model["params"] = {**params, **TINY[model["kind"]]}
    raw.setdefault("evaluation", {}).update(ranking_repeats=1, shap_events=50)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _run(name: str, tmp_path: Path) -> dict:
    if not SHARED.exists():
        pytest.skip(f"real sample files {SHARED} not present")
    config = _tiny_copy(name, tmp_path)
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "-q"]) == 0
    assert (out / "report.html").exists()
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_cms_multiclass_example(tmp_path):
    m = _run("cms_multiclass.yaml", tmp_path)
    names = ["qcd", "single_top", "ww", "wz", "zz"]
    assert [c["name"] for c in m["classes"]] == names
    assert m["signal_classes"] == ["ww", "wz", "zz"]
    for model in m["models"].values():
        assert model["n_classes"] == 5
        assert set(model["auc_ovr_weighted"]) == set(names)
        assert model["auc_ovr_mean_weighted"] > 0.6
        cm = np.array(model["confusion_matrix"])
        assert cm.shape == (5, 5)
        np.testing.assert_allclose(cm.sum(axis=1), 1.0)
        for key in ("accuracy_weighted", "rejection_ovr_at_eff_s", "ks_pvalue_class"):
            assert key in model
    assert m["stats"]["z_expected"] is not None or m["stats"]["error"]


@pytest.mark.slow
def test_four_leptons_example(tmp_path):
    from fivesigma.core.config import load_config
    from fivesigma.data.prepare import prepare_data

    m = _run("four_leptons.yaml", tmp_path)
    assert max(r["auc_test"] for r in m["models"].values()) > 0.55
    ds = prepare_data(load_config(tmp_path / "four_leptons.yaml"), progress=False)
    X = ds.features(["m4l", "m2l"])
    zz = ds.sample == ds.sample_names.index("zz")
    m4l = X[zz, 0][np.isfinite(X[zz, 0])]
    m2l = X[zz, 1][np.isfinite(X[zz, 1])]
    assert m4l.size > 20
    # ZZ -> 4 leptons: m4l at or above the ZZ threshold 2 m_Z, the leading pair at m_Z
    assert 170 < np.median(m4l) < 300
    hist, edges = np.histogram(m2l, bins=np.arange(0, 200, 4))
    assert 80 <= edges[np.argmax(hist)] <= 100


@pytest.mark.slow
def test_higgs_ml_example(tmp_path):
    m = _run("higgs_ml.yaml", tmp_path)
    assert "classes" not in m
    assert m["models"]["bdt"]["auc_test"] > 0.7
