"""K-class event classification in the classify task: labels, roles, metrics, errors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from fivesigma.cli import main
from fivesigma.core.config import parse_config
from fivesigma.errors import DataError
from fivesigma.tasks.classify.task import run

CENTRES = {"a": (0.0, 0.0), "b": (2.0, 0.0), "c": (0.0, 2.0), "d": (2.0, 2.0)}


def _files(tmp_path, n=400, names=("a", "b", "c")):
    rng = np.random.default_rng(5)
    first = 0
    for name in names:
        cx, cy = CENTRES[name]
        cols = {
            "x0": rng.normal(cx, 1.0, n),
            "x1": rng.normal(cy, 1.0, n),
            "id": np.arange(first, first + n),
            "w": rng.uniform(0.5, 1.5, n),
        }
        first += n
        pq.write_table(pa.table(cols), tmp_path / f"{name}.parquet")


def _raw(tmp_path, labels=(0, 1, 2), roles=(None, "signal", None), **evaluation):
    _files(tmp_path, names=tuple("abcd"[: len(labels)]))
    samples = []
    for name, label, role in zip("abcd", labels, roles, strict=False):
        s = {"name": name, "files": f"{name}.parquet", "label": label, "weight": "w"}
        if role:
            s["role"] = role
        samples.append(s)
    return {
        "version": 1,
        "seed": 3,
        "data": {
            "samples": samples,
            "features": ["x0", "x1"],
            "split": {"train": 0.5, "validation": 0.2, "test": 0.3, "key": "id"},
        },
        "models": [
            {"name": "logistic", "kind": "logistic"},
            {"name": "bdt", "kind": "bdt", "params": {"n_estimators": 20, "max_depth": 2}},
        ],
        "evaluation": {"ranking_repeats": 1, "shap_events": 50, **evaluation},
        "stats": {"bins": 4},
        "output": {"dir": "out"},
    }


@pytest.fixture(scope="module")
def three_class_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mc")
    cfg = parse_config(_raw(tmp), base_dir=tmp)
    return run(cfg, out=tmp / "out", progress=False), tmp


def test_three_classes_metrics_json(three_class_run):
    from sklearn.metrics import confusion_matrix, roc_auc_score

    result, tmp = three_class_run
    m = json.loads((tmp / "out" / "metrics.json").read_text())
    assert [c["name"] for c in m["classes"]] == ["a", "b", "c"]
    assert m["signal_classes"] == ["b"] and m["discriminant"] == "probability"
    assert m["stats"]["z_expected"] is not None
    r = result.models[0]
    y_te = r.probs_test.argmax(axis=1)  # predictions
    for name, mm in m["models"].items():
        assert mm["n_classes"] == 3
        assert set(mm["auc_ovr_weighted"]) == {"a", "b", "c"}
        assert 0.5 < mm["auc_ovr_mean_weighted"] <= 1
        assert set(mm["rejection_ovr_at_eff_s"]["b"]) == {"a", "c"}
        assert set(mm["rejection_ovr_at_eff_s"]["b"]["a"]) == {"0.3", "0.5"}
        assert set(mm["ks_pvalue_class"]) == {"a", "b", "c"}
        cm = np.array(mm["confusion_matrix"])
        assert cm.shape == (3, 3)
        np.testing.assert_allclose(cm.sum(axis=1), 1.0)
        assert 0.4 < mm["accuracy_weighted"] <= 1
        # the binary keys describe the discriminant: class b against a and c
        assert mm["auc_test"] == mm["auc_test_weighted"]
        assert mm["ks_pvalue_signal"] is not None
        assert name in ("logistic", "bdt")
    # against sklearn, from the scores kept in the result
    dataset_y = result.models[0]
    assert dataset_y.probs_test.shape[1] == 3
    p = r.probs_test
    from fivesigma.data.prepare import prepare_data

    cfg = parse_config(_raw(tmp), base_dir=tmp)
    ds = prepare_data(cfg, progress=False)
    te = ds.split == 2
    y, w = ds.label[te], ds.weight[te]
    ref = roc_auc_score(y, p, multi_class="ovr", average=None, sample_weight=w)
    got = m["models"]["logistic"]["auc_ovr_weighted"]
    np.testing.assert_allclose([got[k] for k in "abc"], ref, rtol=1e-9)
    ref_cm = confusion_matrix(y, y_te, labels=range(3), sample_weight=w, normalize="true")
    np.testing.assert_allclose(m["models"]["logistic"]["confusion_matrix"], ref_cm)


def test_three_classes_report_and_summary(three_class_run):
    import io

    from rich.console import Console

    from fivesigma.core.task import Result
    from fivesigma.tasks.classify.task import ClassifyTask

    result, tmp = three_class_run
    html = (tmp / "out" / "report.html").read_text()
    assert 'id="classes"' in html and "confusion matrix" in html
    console = Console(width=200, file=io.StringIO(), record=True)
    res = Result("classify", result.out_dir, result.metrics, result.files)
    console.print(ClassifyTask().summary(res))
    text = console.export_text()
    assert "mean one-vs-rest" in text and "accuracy" in text and "signal: b" in text


def test_apply_scores_the_discriminant(three_class_run, tmp_path):
    import pyarrow.parquet as pq

    from fivesigma.tasks.classify.apply import apply_bundle

    result, tmp = three_class_run
    r = next(r for r in result.models if r.name == "logistic")
    out = tmp_path / "scores.parquet"
    apply_bundle(r.bundle, [str(tmp / "b.parquet")], out)
    score = pq.read_table(out).column("score").to_numpy()
    assert score.shape == (400,) and np.all((score >= 0) & (score <= 1))
    assert score.mean() > 0.4  # class b events look like class b


def test_likelihood_ratio_and_two_signal_classes(tmp_path):
    raw = _raw(
        tmp_path,
        labels=(0, 1, 2, 3),
        roles=("background", "signal", "signal", "background"),
        discriminant="likelihood_ratio",
    )
    raw["models"] = raw["models"][:1]
    raw["stats"] = None
    cfg = parse_config(raw, base_dir=tmp_path)
    res = run(cfg, out=tmp_path / "out", progress=False)
    m = res.metrics
    assert m["signal_classes"] == ["b", "c"] and m["discriminant"] == "likelihood_ratio"
    r = res.models[0]
    np.testing.assert_allclose(r.score_test, r.probs_test[:, 1] + r.probs_test[:, 2])
    assert m["models"]["logistic"]["n_classes"] == 4


def test_binary_roles_give_the_same_result_as_labels(tmp_path):
    def metrics(roles, sub):
        (tmp_path / sub).mkdir()
        raw = _raw(tmp_path / sub, labels=(0, 1), roles=roles)
        raw["models"] = raw["models"][:1]
        cfg = parse_config(raw, base_dir=tmp_path / sub)
        return run(cfg, out=tmp_path / sub / "out", progress=False).metrics

    plain, roled = metrics((None, None), "plain"), metrics(("background", "signal"), "roles")
    assert "classes" not in plain
    assert plain["models"]["logistic"]["auc_test"] == roled["models"]["logistic"]["auc_test"]
    assert plain["stats"]["z_expected"] == roled["stats"]["z_expected"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": (0, 2, 3)}, "classes must be numbered 0..K-1 without a gap"),
        ({"roles": ("background", "background", None)}, "no sample has role: signal"),
        ({"roles": ("signal", "signal", "signal")}, "at least one class must be background"),
        ({"discriminant": "foo"}, "evaluation.discriminant: Input should be 'probability'"),
    ],
)
def test_bad_multiclass_configs_are_one_line(tmp_path, capsys, change, message):
    labels = change.pop("labels", (0, 1, 2))
    roles = change.pop("roles", (None, "signal", None))
    raw = _raw(tmp_path, labels=labels, roles=roles, **change)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["run", str(path), "-q"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_a_class_without_test_events_is_one_line(tmp_path, capsys):
    from fivesigma.data.prepare import prepare_data

    raw = _raw(tmp_path)
    ds = prepare_data(parse_config(raw, base_dir=tmp_path), progress=False)
    # class c keeps one event, from the train split: none in the test split
    first_c = 800 + int(np.flatnonzero(ds.split[ds.sample == 2] == 0)[0])
    raw["data"]["samples"][2]["selection"] = f"id == {first_c}"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = parse_config(raw, base_dir=tmp_path)
    with pytest.raises(DataError, match=r"split holds no events of class 2 \(c\)"):
        run(cfg, out=tmp_path / "out", progress=False)
    assert main(["run", str(path), "-q"]) == 2
    err = capsys.readouterr().err
    assert "holds no events of class 2 (c)" in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()
