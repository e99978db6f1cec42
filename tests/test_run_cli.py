"""`fivesigma run CONFIG` through the command line: outputs, summary, errors, reproducibility."""

from __future__ import annotations

import json

import pytest

from fivesigma.cli import main


def _metrics(path):
    m = json.loads(path.read_text())
    for row in m["models"].values():
        row.pop("train_time_s")
    m.pop("provenance")
    return m


@pytest.mark.slow
def test_run_writes_outputs_and_prints_ranked_summary(toy_config_file, tmp_path, capsys):
    cfg = toy_config_file()
    assert main(["run", str(cfg), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Models ranked by test AUC" in out and "expected Z" in out
    for name in ("logistic", "bdt", "mlp"):
        assert name in out
    d = tmp_path / "out"  # output.dir is relative to the config file
    assert {p.name for p in d.iterdir()} == {
        "report.html",
        "metrics.json",
        "workspace.json",
        "models",
    }


@pytest.mark.slow
def test_same_config_gives_the_same_numbers(toy_config_file, tmp_path, capsys):
    cfg = toy_config_file()
    assert main(["run", str(cfg), "--quiet", "--out", str(tmp_path / "a")]) == 0
    assert main(["run", str(cfg), "--quiet", "--out", str(tmp_path / "b")]) == 0
    a, b = _metrics(tmp_path / "a" / "metrics.json"), _metrics(tmp_path / "b" / "metrics.json")
    assert a == b
    assert a["models"]["mlp"]["auc_test"] > 0.6


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"selection": "x9 > 0"}, "unknown column 'x9'"),
        ({"selection": "x0 > 100"}, "selection keeps 0 of"),
        ({"derived": {"bad": "x0.__class__"}}, "attribute access"),
        ({"features": ["x0", "log(x1)"]}, "NaN/inf"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_output(
    toy_config_file, tmp_path, capsys, overrides, message
):
    cfg = toy_config_file(n=200, **overrides)
    code = main(["run", str(cfg), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("fivesigma: error:") and err.count("\n") == 1, err
    assert message in err
    assert not (tmp_path / "out").exists()


def test_missing_data_file_and_unwritable_output(toy_config_file, tmp_path, capsys):
    cfg = toy_config_file(n=200)
    (tmp_path / "sig.parquet").unlink()
    assert main(["run", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "sample 'sig': no file matches" in err and "sig.parquet" in err
    cfg = toy_config_file(n=200)
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    assert main(["run", str(cfg), "--quiet", "--out", str(blocker / "out")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_corrupt_input_file_is_named(toy_config_file, tmp_path, capsys):
    cfg = toy_config_file(n=200)
    data = (tmp_path / "bkg.parquet").read_bytes()
    (tmp_path / "bkg.parquet").write_bytes(data[: len(data) // 2])
    assert main(["run", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "bkg.parquet" in err and err.count("\n") == 1


def test_data_only_prints_the_event_table(toy_config_file, capsys):
    cfg = toy_config_file(n=300)
    assert main(["run", str(cfg), "--quiet", "--data-only"]) == 0
    out = capsys.readouterr().out
    assert "600 events after selection" in out and "sig" in out and "bkg" in out


@pytest.mark.slow
def test_interrupted_run_resumes_from_checkpoint(toy_config_file, tmp_path, capsys, monkeypatch):
    """Ctrl-C during the MLP's training: exit 130, no report; the same command again resumes
    from the checkpoint and gives the numbers of an uninterrupted run."""
    from fivesigma.training.trainer import Trainer

    models = [
        {
            "name": "mlp",
            "kind": "mlp",
            "params": {"hidden": [8], "epochs": 6, "lr": 0.01, "early_stopping_patience": None},
        }
    ]
    cfg = toy_config_file(n=400, models=models)
    assert main(["run", str(cfg), "--quiet", "--out", str(tmp_path / "straight")]) == 0

    original = Trainer._train_epoch
    calls = {"n": 0}

    def interrupt_in_epoch_4(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_epoch", interrupt_in_epoch_4)
    out = tmp_path / "resumed"
    assert main(["run", str(cfg), "--quiet", "--out", str(out)]) == 130
    assert "interrupted" in capsys.readouterr().err
    # the output directory is untouched; the checkpoint waits in the staging directory
    staging = tmp_path / ".resumed.staging"
    assert (staging / "checkpoints" / "mlp").is_dir() and not out.exists()
    monkeypatch.setattr(Trainer, "_train_epoch", original)
    assert main(["run", str(cfg), "--quiet", "--out", str(out)]) == 0
    assert not (out / "checkpoints").exists() and not staging.exists()
    assert _metrics(out / "metrics.json") == _metrics(tmp_path / "straight" / "metrics.json")
