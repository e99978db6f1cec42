"""The trigger task: QAT jet tagger, AXOL1TL- and CICADA-like triggers, rates, bundles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from fivesigma.cli import main


def _toy_jets(n_per_class=600, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(11).normal(scale=0.8, size=(5, 16))
    y = np.repeat(np.arange(5), n_per_class)
    x = (means[y] + rng.normal(size=(len(y), 16))) * scale + 50.0
    return x, y


@pytest.fixture
def toy_jets(monkeypatch):
    from fivesigma.tasks.trigger import stages

    monkeypatch.setattr(stages, "load_jets", lambda s, progress: _toy_jets())


def _config(tmp: Path, **extra) -> Path:
    cfg = {
        "version": 1,
        "task": "trigger",
        "seed": 5,
        "models": ["jet_tagger"],
        "epochs": 4,
        "quantisation": {"width": 8, "integer": 3, "widths": [4, 8]},
        "rate": {"budgets_khz": [300.0]},
        "hls": {"enabled": False},
    }
    cfg.update(extra)
    path = tmp / "trigger.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_jet_tagger_qat_scan_and_bundle(tmp_path, toy_jets):
    out = tmp_path / "out"
    assert main(["run", str(_config(tmp_path)), "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    t = m["networks"]["jet_tagger"]
    assert t["accuracy_float"] > 0.6  # separable toy classes
    widths = {r["width"]: r for r in t["width_scan"]}
    assert set(widths) == {4, 8}
    # 8 bits holds the float accuracy far better than 4 bits
    assert widths[8]["accuracy_ratio"] > 0.95
    assert widths[8]["accuracy"] >= widths[4]["accuracy"] - 0.02
    # resources: fewer bits, no more LUTs
    assert widths[4]["resources"]["lut"] <= widths[8]["resources"]["lut"]
    assert (out / "models" / "jet_tagger" / "manifest.json").is_file()
    assert (out / "report.html").is_file()


def test_too_narrow_input_type_counts_overflows(tmp_path, monkeypatch):
    from fivesigma.tasks.trigger import stages

    # features far outside ap_fixed<6, 2> after standardisation: a few huge outliers
    x, y = _toy_jets()
    x[:40] *= 1e4
    monkeypatch.setattr(stages, "load_jets", lambda s, progress: (x, y))
    cfg = _config(tmp_path, quantisation={"width": 8, "integer": 3, "widths": [8],
                                           "input_width": 6, "input_integer": 2})  # fmt: skip
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["networks"]["jet_tagger"]["width_scan"][0]["overflows"]["input"] > 0


def test_rate_budget_above_the_input_rate_is_one_line(tmp_path, capsys):
    cfg = _config(tmp_path, rate={"budgets_khz": [50_000.0]})
    assert main(["config", "--check", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "input rate" in err[0]


def test_missing_gxx_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch, toy_jets):
    import shutil

    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "g++" else
                        real(name, *a, **k))  # fmt: skip
    cfg = _config(tmp_path, hls={"enabled": True})
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "g++" in err[0]
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.pythia
def test_anomaly_triggers_on_a_tiny_stream(tmp_path):
    pytest.importorskip("pythia8mc")
    cfg = _config(
        tmp_path,
        models=["axol1tl", "cicada"],
        stream={"zerobias_events": 1500, "signal_events": 150, "mu": 5,
                "signals": ["zprime"], "options": {"pool_size": 50}},
        rate={"budgets_khz": [500.0, 3000.0]},
    )  # fmt: skip
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    for name in ("axol1tl", "cicada"):
        budgets = m["networks"][name]["trigger"]["budgets"]
        for rows in budgets.values():
            for variant in ("float", "qat"):
                row = rows[variant]
                assert row["rate_khz"] <= float(next(iter(budgets))) * 10  # finite, sane
                assert 0.0 <= row["efficiency"]["zprime"] <= 1.0
        # a looser budget never lowers the efficiency
        lo, hi = (budgets[k]["qat"]["efficiency"]["zprime"] for k in ("500", "3000"))
        assert hi >= lo
    assert "reference_seeds" in m
    # apply: the bundle scores L1 files and applies its thresholds
    from fivesigma.tasks.trigger.bundle import load

    model = load(out / "models" / "axol1tl")
    assert set(model.thresholds) == {"500", "3000"}


@pytest.mark.slow
def test_firmware_is_bit_exact_inside_the_task(tmp_path, toy_jets):
    import shutil

    if shutil.which("g++") is None:
        pytest.skip("needs g++")
    cfg = _config(tmp_path, quantisation={"width": 8, "integer": 3, "widths": [8]},
                  hls={"enabled": True})  # fmt: skip
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    t = json.loads((out / "metrics.json").read_text())["networks"]["jet_tagger"]
    assert t["emulation"]["bit_exact"] and t["emulation"]["events"] > 500
    assert t["accuracy_emulated"] == pytest.approx(t["accuracy_qat"])
    # the bundle carries the compiled emulation: it predicts after loading, no g++ needed
    from fivesigma.tasks.trigger.bundle import load

    model = load(out / "models" / "jet_tagger")
    assert model.firmware is not None
    x, _ = _toy_jets(n_per_class=20, seed=9)
    feats = model.inputs(x)
    from fivesigma.export.fixed_point import FixedPointReference

    np.testing.assert_array_equal(
        model.score(feats), FixedPointReference.from_model(model.qat).predict(feats)
    )
