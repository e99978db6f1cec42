"""The event-classification job end to end on toys where the optimal answer is known.

For each toy the true likelihood ratio is written down, so the best achievable AUC on the
test events is computed exactly (scikit-learn's roc_auc_score on the true ratio); the best
trained model must come within 0.5% of it.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from fivesigma.core.config import parse_config
from fivesigma.errors import ConfigError, DataError
from fivesigma.tasks.classify.apply import apply_bundle
from fivesigma.tasks.classify.task import run

N = 12_000  # per class


def _write(path, cols):
    pq.write_table(pa.table(cols), path)
    return path


def toy_gaussian(rng, n):
    """4-D unit Gaussians, means 0 and (0.6, 0.4, 0.2, 0): log LR is linear."""
    mu = np.array([0.6, 0.4, 0.2, 0.0])
    sig = rng.normal(size=(n, 4)) + mu
    bkg = rng.normal(size=(n, 4))

    def log_lr(X):
        return X @ mu - 0.5 * mu @ mu

    return sig, bkg, log_lr


def toy_exponential(rng, n):
    """Exponential decay lengths 2 (signal) vs 1 (background) plus a useless uniform."""
    sig = np.column_stack([rng.exponential(2.0, n), rng.uniform(size=n)])
    bkg = np.column_stack([rng.exponential(1.0, n), rng.uniform(size=n)])

    def log_lr(X):
        return np.log(0.5) - X[:, 0] / 2.0 + X[:, 0]

    return sig, bkg, log_lr


def toy_ring(rng, n):
    """Sharp non-linear boundary: signal uniform in a ring 0.5<r<0.9, background uniform
    in the square [-1, 1]^2; LR is constant inside the ring and 0 outside."""
    bkg = rng.uniform(-1, 1, size=(n, 2))
    r = np.sqrt(rng.uniform(0.5**2, 0.9**2, n))
    phi = rng.uniform(0, 2 * np.pi, n)
    sig = np.column_stack([r * np.cos(phi), r * np.sin(phi)])

    def log_lr(X):
        rr = np.hypot(X[:, 0], X[:, 1])
        return np.where((rr > 0.5) & (rr < 0.9), 1.0, 0.0)  # monotone in the LR

    return sig, bkg, log_lr


def _config(tmp_path, sig, bkg, models):
    names = [f"x{i}" for i in range(sig.shape[1])]
    ids = np.arange(2 * len(sig))
    _write(
        tmp_path / "sig.parquet",
        {**{k: sig[:, i] for i, k in enumerate(names)}, "id": ids[: len(sig)]},
    )
    _write(
        tmp_path / "bkg.parquet",
        {**{k: bkg[:, i] for i, k in enumerate(names)}, "id": ids[len(sig) :]},
    )
    raw = {
        "version": 1,
        "seed": 3,
        "data": {
            "samples": [
                {"name": "sig", "files": "sig.parquet", "label": 1},
                {"name": "bkg", "files": "bkg.parquet", "label": 0},
            ],
            "features": names,
            "split": {"train": 0.5, "validation": 0.2, "test": 0.3, "key": "id"},
        },
        "models": models,
        "evaluation": {"ranking_repeats": 1},
        "stats": {"bins": 5},
    }
    return parse_config(raw, base_dir=tmp_path)


FAST_MODELS = [
    {"name": "logistic", "kind": "logistic"},
    {
        "name": "bdt",
        "kind": "bdt",
        "params": {"n_estimators": 300, "max_depth": 5, "learning_rate": 0.1},
    },
    {"name": "mlp", "kind": "mlp", "params": {"hidden": [32, 32], "epochs": 25, "progress": False}},
]


@pytest.mark.slow
@pytest.mark.parametrize("toy", [toy_gaussian, toy_exponential, toy_ring])
def test_best_model_reaches_optimal_auc(tmp_path, toy):
    rng = np.random.default_rng(11)
    sig, bkg, log_lr = toy(rng, N)
    cfg = _config(tmp_path, sig, bkg, FAST_MODELS)
    result = run(cfg, out=tmp_path / "out", progress=False)

    # The optimal AUC on exactly the test events the job used.
    ds_split = result.metrics["n_events"]
    assert ds_split["test"] > 0.25 * 2 * N
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    # The best *trained* model (highest test AUC); the model chosen for the physics result
    # may be another one when this one fails the overtraining check (the ring's BDT does).
    best = max(m["models"], key=lambda name: m["models"][name]["auc_test"])
    chosen = m["models"][m["best_model"]]
    assert chosen["overtraining_check_passed"] or "every model fails" in m["best_model_reason"]
    X_all = np.vstack([sig, bkg])
    y_all = np.r_[np.ones(N), np.zeros(N)]
    from fivesigma.data.split import split_codes

    test = split_codes(np.arange(2 * N), seed=3, fractions=(0.5, 0.2, 0.3)) == 2
    auc_opt = roc_auc_score(y_all[test], log_lr(X_all[test]))
    assert m["models"][best]["auc_test"] == pytest.approx(
        result.metrics["models"][best]["auc_test"]
    )
    assert m["models"][best]["auc_test"] > auc_opt * 0.995, (
        best,
        m["models"][best]["auc_test"],
        auc_opt,
    )
    assert m["models"][best]["auc_test"] < auc_opt + 0.01  # cannot beat the truth (beyond noise)


@pytest.fixture(scope="module")
def gaussian_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("gauss")
    rng = np.random.default_rng(5)
    sig, bkg, _ = toy_gaussian(rng, 3000)
    w_models = [
        {"name": "logistic", "kind": "logistic"},
        {"name": "bdt", "kind": "bdt", "params": {"n_estimators": 50}},
        {"name": "mlp", "kind": "mlp", "params": {"hidden": [16], "epochs": 5, "progress": False}},
    ]
    cfg = _config(tmp_path, sig, bkg, w_models)
    return tmp_path, cfg, run(cfg, out=tmp_path / "out", progress=False)


def test_outputs_and_metrics_json_keys(gaussian_run):
    tmp_path, _, _result = gaussian_run
    out = tmp_path / "out"
    assert (out / "report.html").is_file() and (out / "workspace.json").is_file()
    assert not (out / "checkpoints").exists()
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["models"]) == {"logistic", "bdt", "mlp"}
    for row in m["models"].values():
        for key in (
            "auc_test",
            "auc_train",
            "ks_pvalue_signal",
            "ks_pvalue_background",
            "separation",
        ):
            assert isinstance(row[key], float)
        assert set(row["eff_s_at_eff_b"]) == {"0.01", "0.1", "0.3"}
        assert set(row["rejection_at_eff_s"]) == {"0.3", "0.5"}
    assert m["best_model"] in m["models"]
    assert m["stats"]["z_expected"] > 0
    assert set(m["stats"]["cls_band"]) == {"-2", "-1", "+1", "+2"}
    assert set(m["n_events"]) == {"train", "validation", "test"}
    assert sum(m["n_events"].values()) == 6000
    for name in m["models"]:
        assert (out / "models" / name / "manifest.json").is_file()


def test_apply_reproduces_training_scores(gaussian_run, tmp_path):
    base, _cfg, result = gaussian_run
    for r in result.models:
        out = tmp_path / f"{r.name}.parquet"
        info = apply_bundle(
            base / "out" / "models" / r.name,
            [str(base / "sig.parquet"), str(base / "bkg.parquet")],
            out,
        )
        assert info["events"] == 6000
        table = pq.read_table(out).to_pydict()
        scores = np.asarray(table["score"])
        # Rebuild the test-split scores in the job's event order (sig then bkg, file order).
        from fivesigma.data.split import split_codes

        test = split_codes(np.arange(6000), seed=3, fractions=(0.5, 0.2, 0.3)) == 2
        np.testing.assert_allclose(scores[test], r.score_test, rtol=1e-6, atol=1e-7)


def test_apply_refuses_file_without_needed_branch(gaussian_run, tmp_path):
    base, _, _ = gaussian_run
    bad = _write(tmp_path / "bad.parquet", {"x0": np.zeros(3), "x1": np.zeros(3)})
    with pytest.raises(DataError, match="x2"):
        apply_bundle(base / "out" / "models" / "bdt", [str(bad)], tmp_path / "o.parquet")
    assert not (tmp_path / "o.parquet").exists()


def test_apply_writes_root_friend_tree(gaussian_run, tmp_path):
    import uproot

    base, _, _ = gaussian_run
    out = tmp_path / "s.root"
    apply_bundle(base / "out" / "models" / "logistic", [str(base / "sig.parquet")], out)
    with uproot.open(out) as f:
        t = f["scores"]
        assert t.num_entries == 3000
        assert np.array_equal(t["entry"].array(library="np"), np.arange(3000))


def test_one_class_and_bad_model_params_are_clear(tmp_path):
    rng = np.random.default_rng(0)
    sig, bkg, _ = toy_gaussian(rng, 200)
    cfg = _config(tmp_path, sig, bkg, [{"name": "bdt", "kind": "bdt", "params": {"n_trees": 5}}])
    with pytest.raises(ConfigError, match=r"models\[0\] \(bdt\)\.params: .*n_trees"):
        run(cfg, out=tmp_path / "out", progress=False)
    cfg = _config(tmp_path, sig, bkg, FAST_MODELS[:1])
    cfg.data.samples[0].label = 0
    with pytest.raises(DataError, match="only|both signal"):
        run(cfg, out=tmp_path / "out2", progress=False)


def test_negative_event_weights_run_end_to_end(tmp_path):
    """NLO-like samples (~16% negative weights): every model trains, metrics are finite,
    the BDT says it clipped the negative weights for training."""
    rng = np.random.default_rng(0)
    for name, shift in (("s", 0.8), ("b", 0.0)):
        X = rng.normal(size=(1500, 3)) + shift
        w = rng.normal(1.0, 1.0, 1500)
        _write(tmp_path / f"{name}.parquet", {"x0": X[:, 0], "x1": X[:, 1], "x2": X[:, 2], "w": w})
    raw = {
        "version": 1,
        "data": {
            "samples": [
                {"name": "s", "files": "s.parquet", "label": 1, "weight": "w"},
                {"name": "b", "files": "b.parquet", "label": 0, "weight": "w"},
            ],
            "features": ["x0", "x1", "x2"],
        },
        "models": [
            *FAST_MODELS[:1],
            {"name": "bdt", "kind": "bdt", "params": {"n_estimators": 30}},
            {"name": "mlp", "kind": "mlp", "params": {"epochs": 3, "progress": False}},
        ],
        "evaluation": {"ranking_repeats": 1},
        "stats": {"bins": 4},
    }
    with pytest.warns(UserWarning, match="negative training weights were set to 0"):
        result = run(parse_config(raw, base_dir=tmp_path), out=tmp_path / "out", progress=False)
    for row in result.metrics["models"].values():
        assert 0.7 < row["auc_test"] < 1.0
        assert np.isfinite(row["ks_pvalue_signal"]) and np.isfinite(row["separation"])
    assert result.metrics["stats"]["z_expected"] > 0


@pytest.mark.parametrize(
    "weight, match",
    [
        ("w * 0", "sample 'sig': every training event has weight 0"),
        ("-w", "weights sum to"),
    ],
)
def test_weights_that_leave_nothing_to_learn_are_named_before_training(
    toy_config_file, tmp_path, capsys, weight, match
):
    import yaml

    from fivesigma.cli import main

    path = toy_config_file(n=200)
    raw = yaml.safe_load(path.read_text())
    raw["data"]["samples"][0]["weight"] = weight
    path.write_text(yaml.safe_dump(raw))
    assert main(["run", str(path), "-q"]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


# --- weighted and unweighted metrics ------------------------------------------------------


@pytest.mark.slow
def test_weighted_and_unweighted_auc_match_sklearn(toy_config_file, tmp_path):
    from fivesigma.core.config import load_config
    from fivesigma.data.split import split_codes

    models = [{"name": "logistic", "kind": "logistic"}]
    cfg = load_config(toy_config_file(n=1500, models=models))
    result = run(cfg, out=tmp_path / "out", progress=False)
    row = json.loads((tmp_path / "out" / "metrics.json").read_text())["models"]["logistic"]
    # The test split in the job's event order: signal file, then background file.
    tables = [pq.read_table(tmp_path / f"{name}.parquet").to_pydict() for name in ("sig", "bkg")]
    ids = np.concatenate([t["id"] for t in tables])
    w = np.concatenate([t["w"] for t in tables])
    y = np.r_[np.ones(1500), np.zeros(1500)]
    test = split_codes(ids, seed=7, fractions=(0.5, 0.2, 0.3)) == 2
    score = result.models[0].score_test
    weighted = roc_auc_score(y[test], score, sample_weight=w[test])
    unweighted = roc_auc_score(y[test], score)
    assert weighted != pytest.approx(unweighted, abs=1e-6)  # the weights matter here
    assert row["auc_test_weighted"] == pytest.approx(weighted, abs=1e-12)
    assert row["auc_test"] == row["auc_test_weighted"]  # kept for compatibility
    assert row["auc_test_unweighted"] == pytest.approx(unweighted, abs=1e-12)
    assert 0.5 < row["auc_train_unweighted"] < 1


# --- choosing the model for the physics result -------------------------------------------


def _m(auc, ks_s=0.5, ks_b=0.5, z=1.0, rej=10.0):
    return {
        "auc_test": auc,
        "cut_scan_z": z,
        "rejection_at_eff_s": {"0.3": rej, "0.5": rej / 2},
        "ks_pvalue_signal": ks_s,
        "ks_pvalue_background": ks_b,
    }


def _ev(**keys):
    from fivesigma.tasks.classify.config import EvaluationConfig

    return EvaluationConfig(**keys)


def test_overtrained_models_are_not_chosen_and_the_reason_says_why():
    from fivesigma.tasks.classify.task import choose_best_model

    models = {"logistic": _m(0.90), "bdt": _m(0.97, ks_s=0.001), "mlp": _m(0.93, ks_b=0.04)}
    best, reason = choose_best_model(models, _ev())
    assert best == "logistic"
    assert "1 of 3 models passing the overtraining check" in reason
    assert "bdt (KS p signal 0.001, background 0.5)" in reason and "mlp" in reason
    # a stricter or looser threshold changes who passes
    assert choose_best_model(models, _ev(ks_threshold=0.01))[0] == "mlp"
    best, reason = choose_best_model(models, _ev(ks_threshold=0))
    assert best == "bdt" and "overtraining check off" in reason
    # everyone fails: the criterion decides anyway, and the reason says so
    failing = {k: {**v, "ks_pvalue_background": 1e-5} for k, v in models.items()}
    best, reason = choose_best_model(failing, _ev())
    assert best == "bdt" and reason.startswith("every model fails the overtraining check")
    assert "treat its result with care" in reason
    # all pass: the plain criterion
    passing = {
        k: {**v, "ks_pvalue_signal": 0.5, "ks_pvalue_background": 0.5} for k, v in models.items()
    }
    best, reason = choose_best_model(passing, _ev())
    assert best == "bdt" and reason.startswith("highest weighted test AUC of 3 models, all passing")
    # a p-value that could not be computed is no alarm
    assert choose_best_model({"a": _m(0.8, ks_s=float("nan"))}, _ev())[1].startswith(
        "the only model; it passes"
    )


def test_criteria_z_and_rejection_and_undefined_values():
    from fivesigma.tasks.classify.task import choose_best_model

    models = {
        "a": _m(0.95, z=2.0, rej=50.0),
        "b": _m(0.90, z=3.0, rej=20.0),
        "c": _m(0.85, z=1.0, rej=float("inf")),  # no background left at eps_S = 0.3
        "d": _m(0.99, ks_s=0.0, z=9.0, rej=1e6),  # overtrained
    }
    assert choose_best_model(models, _ev(best="z")) == (
        "b",
        "highest cut-scan significance Z among the 3 of 4 models passing the overtraining "
        "check (KS p-values of signal and background above 0.05); not considered: d (KS p "
        "signal 0, background 0.5)",
    )
    best, reason = choose_best_model(models, _ev(best="rejection"))
    assert best == "c" and "rejection 1/eps_B at eps_S = 0.3" in reason
    assert choose_best_model(models, _ev(best="rejection", eff_s=[0.5]))[0] == "c"
    # a criterion undefined for every candidate falls back to the AUC and says so
    none = {k: {**v, "cut_scan_z": float("nan")} for k, v in models.items()}
    best, reason = choose_best_model(none, _ev(best="z"))
    assert best == "a" and "undefined for every candidate" in reason


@pytest.mark.slow
def test_an_overtrained_bdt_is_not_used_for_the_physics_result(tmp_path, capsys):
    rng = np.random.default_rng(11)
    sig, bkg, _ = toy_ring(rng, 1500)
    deep = {"n_estimators": 200, "max_depth": 10, "learning_rate": 0.3}
    deep["early_stopping_rounds"] = 200
    models = [
        {"name": "logistic", "kind": "logistic"},
        {"name": "deep_bdt", "kind": "bdt", "params": deep},
    ]
    result = run(_config(tmp_path, sig, bkg, models), out=tmp_path / "out", progress=False)
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    bdt = m["models"]["deep_bdt"]
    assert bdt["auc_train"] > bdt["auc_test"] + 0.1  # overtrained ...
    assert bdt["auc_test"] > m["models"]["logistic"]["auc_test"]  # ... yet the highest AUC
    assert not bdt["overtraining_check_passed"]
    assert m["models"]["logistic"]["overtraining_check_passed"]
    assert m["best_model"] == result.best_model == "logistic"
    assert m["best_model_criterion"] == "auc"
    assert "not considered: deep_bdt" in m["best_model_reason"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "not considered: deep_bdt" in html


@pytest.mark.slow
@pytest.mark.parametrize("criterion", ["z", "rejection"])
def test_the_criterion_picks_the_best_passing_model(tmp_path, criterion):
    rng = np.random.default_rng(5)
    sig, bkg, _ = toy_gaussian(rng, 2000)
    models = [
        {"name": "logistic", "kind": "logistic"},
        {"name": "bdt", "kind": "bdt", "params": {"n_estimators": 40}},
    ]
    cfg = _config(tmp_path, sig, bkg, models)
    cfg.evaluation.best = criterion
    result = run(cfg, out=tmp_path / "out", progress=False)
    m = result.metrics
    value = {
        "z": lambda r: r["cut_scan_z"],
        "rejection": lambda r: r["rejection_at_eff_s"]["0.3"],
    }[criterion]
    passing = {k: r for k, r in m["models"].items() if r["overtraining_check_passed"]}
    assert passing
    assert m["best_model"] == max(passing, key=lambda k: value(passing[k]))
    assert m["best_model_criterion"] == criterion
    # the top-level cut scan is the chosen model's
    assert m["cut_scan"]["z"] == pytest.approx(m["models"][m["best_model"]]["cut_scan_z"])


@pytest.mark.parametrize(
    ("evaluation", "message"),
    [
        ({"best": "foo"}, "evaluation.best: Input should be 'auc', 'z' or 'rejection'"),
        ({"ks_threshold": 2}, "evaluation.ks_threshold: Input should be less than 1"),
        ({"ks_threshold": -0.1}, "evaluation.ks_threshold: Input should be greater than"),
        ({"best": "rejection", "eff_s": []}, "give at least one evaluation.eff_s"),
    ],
)
def test_bad_evaluation_keys_are_one_line(toy_config_file, tmp_path, capsys, evaluation, message):
    import yaml

    from fivesigma.cli import main

    path = toy_config_file(n=200)
    raw = yaml.safe_load(path.read_text())
    raw["evaluation"].update(evaluation)
    path.write_text(yaml.safe_dump(raw))
    assert main(["run", str(path), "-q"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_title_names_signal_and_background_by_label():
    from fivesigma.tasks.classify.task import _title

    cfg = parse_config(
        {
            "version": 1,
            "data": {
                "samples": [
                    {"name": "wz", "files": "a.root", "label": 1},
                    {"name": "zz", "files": "b.root", "label": 0},
                    {"name": "ww", "files": "c.root", "label": 0},
                ],
                "features": ["x"],
            },
        }
    )
    assert _title(cfg) == "fivesigma: signal: wz — background: zz, ww"


def test_summary_table_never_cuts_a_header(gaussian_run, monkeypatch):
    from rich.console import Console

    from fivesigma.core.task import Result
    from fivesigma.tasks.classify.task import ClassifyTask

    _, _, result = gaussian_run
    metrics = dict(result.metrics)
    metrics["models"] = dict(metrics["models"])
    metrics["models"]["a_rather_long_model_name"] = metrics["models"].pop("mlp")
    files = {"report": "report.html", "metrics": "metrics.json"}
    for width in (50, 80, 140):
        monkeypatch.setenv("COLUMNS", str(width))
        console = Console(width=width, record=True)
        console.print(ClassifyTask().summary(Result("classify", result.out_dir, metrics, files)))
        text = console.export_text()
        assert "…" not in text
        for word in ("weighted", "unweighted", "eS=0.5", "Z exp.", "S / B", "1/eB at"):
            assert word in text, (width, word)
        for row in metrics["models"].values():
            assert f"{row['auc_test']:.4f}" in text and f"{row['auc_test_unweighted']:.4f}" in text
    # without statistics
    metrics["stats"] = None
    console = Console(width=100, record=True)
    console.print(ClassifyTask().summary(Result("classify", result.out_dir, metrics, files)))
    assert "statistics: off" in console.export_text()
