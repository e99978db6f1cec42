"""The command line: thin wrappers, one-line errors, non-zero exits, --debug tracebacks."""

import json
import subprocess
import sys

import pytest

from fivesigma import __version__
from fivesigma.cli import main
from fivesigma.core.config import load_config


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("run", "apply", "generate", "config", "init", "inspect"):
        assert cmd in out


def test_python_dash_m_fivesigma_is_the_cli(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "fivesigma", "--version"], capture_output=True, text=True
    )
    assert ok.returncode == 0 and __version__ in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "fivesigma", "inspect", str(tmp_path / "missing.root")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "missing.root" in bad.stderr


def test_no_command_prints_help_and_fails(capsys):
    code, out, _ = run_cli(capsys)
    assert code != 0 and "usage: fivesigma" in out


def test_config_schema_is_json(capsys):
    code, out, _ = run_cli(capsys, "config", "--schema")
    assert code == 0
    assert "data" in json.loads(out)["$defs"]["ClassifyConfig"]["properties"]


def test_config_check_reports_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\ndata: {samples: [{name: a, files: x.root, label: 1}], colour: red}\n"
    )
    code, _out, err = run_cli(capsys, "config", "--check", str(bad))
    assert code == 2
    assert err.count("\n") == 1 and "data.colour: unknown key" in err


def test_init_writes_a_valid_config_and_refuses_to_overwrite(tmp_path, capsys):
    target = tmp_path / "mine.yaml"
    code, _out, _ = run_cli(capsys, "init", str(target))
    assert code == 0 and target.exists()
    assert load_config(target).generate.process == "higgs4l"
    code, _, err = run_cli(capsys, "init", str(target))
    assert code == 2 and "already exists" in err
    assert run_cli(capsys, "init", str(target), "--force")[0] == 0


def test_init_into_unwritable_location_fails_cleanly(tmp_path, capsys):
    # A regular file where a directory should be: unwritable even for root.
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    code, _, err = run_cli(capsys, "init", str(blocker / "sub" / "c.yaml"))
    assert code == 2 and "cannot create output directory" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_run_with_missing_config_is_one_line_error(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", str(tmp_path / "missing.yaml"))
    assert code == 2
    assert (
        err.strip() == f"fivesigma: error: config file '{tmp_path / 'missing.yaml'}' does not exist"
    )


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception, match="does not exist"):
        main(["--debug", "run", str(tmp_path / "missing.yaml")])


def test_console_script_exit_code(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "fivesigma.cli", "run", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("fivesigma: error:") and "Traceback" not in proc.stderr


def test_generate_unknown_process_and_bad_events(tmp_path, capsys):
    code, _, err = run_cli(
        capsys, "generate", "ttbar", "--events", "10", "--out", str(tmp_path / "g")
    )
    assert code == 2 and "higgs4l" in err and err.count("\n") == 1
    code, _, err = run_cli(
        capsys, "generate", "higgs4l", "--events", "0", "--out", str(tmp_path / "g")
    )
    assert code == 2 and "events" in err
    assert not (tmp_path / "g").exists() or not any((tmp_path / "g").iterdir())


@pytest.mark.slow
@pytest.mark.pythia
def test_generate_command_writes_readable_files(tmp_path, capsys):
    import uproot

    code, out, _ = run_cli(
        capsys,
        "generate",
        "higgs4l",
        "--events",
        "100",
        "--out",
        str(tmp_path),
        "--jobs",
        "1",
        "-q",
    )
    assert code == 0 and "ggH_4l" in out and "sigma" in out
    prov = json.loads((tmp_path / "provenance.json").read_text())
    for name in ("ggH_4l", "qqZZ_4l"):
        with uproot.open(tmp_path / f"{name}.root") as f:
            w = f["Events"]["weight"].array(library="np")
        xs = prov["processes"][name]["cross_section_pb"]
        assert len(w) == 100
        assert w.sum() == pytest.approx(xs * 1000 * 140.0, rel=1e-9)


def test_inspect_lists_branches(tmp_path, capsys, root_file):
    code, out, _ = run_cli(capsys, "inspect", str(root_file))
    assert code == 0
    for branch in ("lep_pt", "nlep", "met", "weight"):
        assert branch in out
    code, _, err = run_cli(capsys, "inspect", str(tmp_path / "nope.root"))
    assert code == 2 and "nope.root" in err


def test_apply_bad_bundle_and_bad_output_suffix(tmp_path, capsys):
    code, _, err = run_cli(
        capsys, "apply", str(tmp_path / "nope"), "x.root", "--out", str(tmp_path / "s.parquet")
    )
    assert code == 2 and "does not exist" in err and err.count("\n") == 1
    (tmp_path / "plain").mkdir()
    code, _, err = run_cli(
        capsys, "apply", str(tmp_path / "plain"), "x.root", "--out", str(tmp_path / "s.parquet")
    )
    assert code == 2 and "not a fivesigma model bundle" in err
    assert not (tmp_path / "s.parquet").exists()


def test_apply_refuses_unknown_output_format(tmp_path, capsys):
    import numpy as np

    from fivesigma.estimators import make_estimator

    X = np.random.default_rng(0).normal(size=(50, 1))
    bundle = (
        make_estimator("logistic")
        .fit(X, (X[:, 0] > 0).astype(int), feature_names=["met"])
        .save(tmp_path / "b")
    )
    data = tmp_path / "d.csv"
    data.write_text("met\n1.0\n2.0\n")
    code, _, err = run_cli(
        capsys, "apply", str(bundle), str(data), "--out", str(tmp_path / "s.csv")
    )
    assert code == 2 and "must end in .parquet or .root" in err
    code, out, _ = run_cli(
        capsys, "apply", str(bundle), str(data), "--out", str(tmp_path / "s.parquet")
    )
    assert code == 0 and "scored 2 events" in out
