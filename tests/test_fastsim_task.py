"""The fastsim task end to end on tiny samples, and its bad-input paths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _cli import assert_fails_one_line, write_config
from fivesigma.cli import main

pytest.importorskip("torch")


def _config(tmp: Path, **extra) -> Path:
    cfg = {
        "version": 1,
        "task": "fastsim",
        "seed": 3,
        "jets": {"enabled": False},
        "calorimeter": {"showers": 800, "models": ["flow_matching", "gan"]},
        "training": {"epochs": 2, "gan_epochs": 2, "hidden": [32, 32], "ode_steps": 2},
        "validation": {"classifier_trees": 10},
    }
    return write_config(tmp / "fastsim.yaml", cfg, extra)


@pytest.mark.slow
def test_calorimeter_run_and_apply(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(_config(tmp_path)), "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    calo = m["calo"]
    assert set(calo["models"]) == {"flow_matching", "gan"}
    for row in calo["models"].values():
        assert 0 <= row["classifier_auc"] <= 1
        assert np.isfinite(row["total_energy_shift"]) and row["speedup"] > 0
    assert set(m["targets"]) == {
        "calo_flow_matching_within_tolerances",
        "calo_gan_within_tolerances",
    }
    assert (out / "report.html").stat().st_size > 10_000
    bundle = out / "models" / "calo_flow_matching"
    assert (bundle / "manifest.json").is_file()
    # apply: voxels drawn for (energy, theta) rows of a CSV file
    csv = tmp_path / "cond.csv"
    csv.write_text("energy,theta\n10,0.0\n20,0.1\n40,0.2\n")
    drawn = tmp_path / "drawn.parquet"
    assert main(["apply", str(bundle), str(csv), "--out", str(drawn)]) == 0
    import pyarrow.parquet as pq

    table = pq.read_table(drawn)
    assert table.num_rows == 3
    assert np.all(table["e_l1_r0"].to_numpy() >= 0)


@pytest.mark.slow
@pytest.mark.pythia
def test_jets_run_end_to_end(tmp_path, monkeypatch):
    pytest.importorskip("pythia8mc")
    monkeypatch.setenv("FIVESIGMA_CACHE", str(tmp_path / "cache"))
    cfg = _config(
        tmp_path,
        jets={
            "enabled": True,
            "events": {"qcd": 400},
            "timing_events": 60,
            "oversampling": 3,
            "models": ["flow", "flow_matching", "gan"],
        },
        calorimeter={"enabled": False},
    )
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())["jets"]
    assert m["pairs"] >= 200 and m["generation"]["match_efficiency"] > 0.9
    for row in m["models"].values():
        assert set(row["w1"]) == {
            "reco_pt",
            "reco_eta",
            "reco_phi",
            "reco_mass",
            "reco_tau21",
            "reco_tau32",
            "reco_nconst",
            "reco_btag",
        }
        assert 0 <= row["classifier_auc"] <= 1 and row["speedup"] > 0
        assert 1.0 <= row["oversampling_gain_mass"] <= 3.5


def test_nan_from_a_flow_is_one_line_and_no_output(tmp_path, capsys, monkeypatch):
    from fivesigma.tasks.fastsim import models

    def nan_sample(self, zc, seed=0):
        return np.full((len(zc), len(self.preprocessing.outputs)), np.nan)

    monkeypatch.setattr(models.Surrogate, "sample_z", nan_sample)
    cfg = _config(
        tmp_path,
        calorimeter={"showers": 500, "models": ["flow_matching"]},
        training={"epochs": 1, "hidden": [8], "ode_steps": 1},
    )
    out = tmp_path / "out"
    assert_fails_one_line(
        ["run", str(cfg), "--out", str(out), "--quiet"], capsys, "non-finite values"
    )
    assert not out.exists()


def test_config_check_and_bad_config(tmp_path, capsys):
    assert main(["config", "--check", str(_config(tmp_path))]) == 0
    capsys.readouterr()
    assert_fails_one_line(
        ["config", "--check", str(_config(tmp_path, calorimeter={"models": ["vae"]}))],
        capsys,
        "unknown model 'vae'",
    )
    assert_fails_one_line(
        [
            "config",
            "--check",
            str(_config(tmp_path, jets={"enabled": True, "events": {"top": 100}})),
        ],
        capsys,
        "unknown process 'top'",
    )
    out = tmp_path / "out"
    assert_fails_one_line(
        [
            "run",
            str(_config(tmp_path, calorimeter={"enabled": False})),
            "--out",
            str(out),
            "--quiet",
        ],
        capsys,
        "both disabled",
    )
    assert not out.exists()


def test_template_is_valid():
    from fivesigma.core.config import load_config
    from fivesigma.core.registry import TASKS

    assert TASKS.get("fastsim").name == "fastsim"
    path = Path(__file__).parents[1] / "src" / "fivesigma" / "configs" / "fastsim.yaml"
    cfg = load_config(path)
    s = cfg.settings()
    assert s.jets and s.calorimeter and s.jet_models == ["flow", "flow_matching", "gan"]
