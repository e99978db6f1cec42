"""The anomaly task end to end on toy dijet files (no Pythia), and its bad-input paths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from _anomaly_toys import write_toy_dijets
from _cli import assert_fails_one_line, write_config
from fivesigma.cli import main


def _config(tmp: Path, **extra) -> Path:
    paths = write_toy_dijets(tmp / "data", n_background=20_000, n_signal=2000)
    cfg = {
        "version": 1,
        "task": "anomaly",
        "seed": 3,
        "data": {"background": [str(paths["qcd"])], "signal": [str(paths["signal"])]},
        "methods": ["supervised", "iad", "cathode", "cwola", "autoencoder"],
        "injection": {"s_over_b": 0.05, "scan": [0.0, 0.1], "scan_methods": ["cwola"]},
        "retrainings": 2,
        "training": {"epochs": 3, "flow_epochs": 3, "patience": 2},
        "bump_hunt": {"method": "cwola"},
        "asymmetry": {"enabled": False},
    }
    return write_config(tmp / "anomaly.yaml", cfg, extra)


@pytest.mark.slow
def test_run_judges_every_method_and_hunts_the_bump(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(_config(tmp_path)), "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    methods = m["methods"]
    assert set(methods) == {"supervised", "iad", "cathode", "cwola", "autoencoder"}
    for name, row in methods.items():
        assert len(row["runs"]) == 2, name  # the retrainings
        assert np.isfinite(row["max_sic_mean"])
    # the toy signal is far from the background: the ceilings and the weak methods find it
    assert methods["supervised"]["auc_mean"] > 0.95
    assert methods["cathode"]["max_sic_mean"] > 2.0
    assert methods["cwola"]["max_sic_mean"] > 2.0
    # injection arithmetic: S/B in the signal region as asked
    assert m["injection"]["s_over_b_sr"] == pytest.approx(0.05, rel=0.02)
    # the bump hunt: more significance with more signal, none without
    z = {p["s_over_b"]: p["bump_hunt_significance"] for p in m["scan"]}
    assert z[0.1] > z[0.0] + 2 and z[0.1] > 3
    assert "sculpting" in m and 0 <= m["sculpting"]["p_value"] <= 1
    assert (out / "report.html").stat().st_size > 10_000
    for name in methods:
        assert (out / "models" / name / "manifest.json").is_file()
    # apply scores new events with the saved detector, features by name
    scores = tmp_path / "scores.parquet"
    data = tmp_path / "data" / "dijets_signal.root"
    assert main(["apply", str(out / "models" / "cwola"), str(data), "--out", str(scores)]) == 0
    import pyarrow.parquet as pq

    table = pq.read_table(scores)
    assert table.num_rows == 2000 and np.isfinite(table["score"].to_numpy()).all()


def test_signal_region_outside_the_data_is_one_line(tmp_path, capsys):
    cfg = _config(tmp_path, regions={"sr": [9000, 9500], "sidebands": [8000, 10000]},
                  bump_hunt={"range": [7000, 11000]})  # fmt: skip
    out = tmp_path / "out"
    assert_fails_one_line(["run", str(cfg), "--out", str(out), "--quiet"], capsys, "signal region")
    assert not out.exists()


def test_sidebands_with_too_few_events_are_one_line(tmp_path, capsys):
    cfg = _config(tmp_path, regions={"sr": [3300, 3700], "sidebands": [3299, 3701]})
    out = tmp_path / "out"
    assert_fails_one_line(["run", str(cfg), "--out", str(out), "--quiet"], capsys, "sideband")
    assert not out.exists()


def test_cathode_without_a_conditional_variable_is_refused(tmp_path, capsys):
    cfg = _config(tmp_path, condition=None)
    msg = assert_fails_one_line(["config", "--check", str(cfg)], capsys, "conditional variable")
    assert "cathode" in msg


def test_a_flow_producing_nan_stops_the_run_without_output(tmp_path, capsys, monkeypatch):
    from fivesigma.tasks.anomaly import methods

    real = methods.CathodeMethod.sample

    def broken(self, mjj, seed=None):
        x = real(self, mjj, seed)
        x[::7] = np.nan
        return x

    monkeypatch.setattr(methods.CathodeMethod, "sample", broken)
    cfg = _config(tmp_path, methods=["cathode"], bump_hunt={"method": "cathode"},
                  injection={"scan": []}, retrainings=1)  # fmt: skip
    out = tmp_path / "out"
    msg = assert_fails_one_line(["run", str(cfg), "--out", str(out), "--quiet"], capsys, "cathode")
    assert "nan" in msg.lower() or "non-finite" in msg.lower() or "NaN" in msg
    assert not out.exists()


def test_template_parses_and_presets_resolve():
    from fivesigma.core.config import parse_config
    from fivesigma.core.registry import TASKS

    text = TASKS.get("anomaly")().template()
    cfg = parse_config(yaml.safe_load(text))
    s = cfg.settings()
    assert s.methods[0] == "supervised" and s.retrainings >= 3
    assert s.sr[0] < s.sr[1] and s.sidebands[0] < s.sr[0]
    assert s.background_options["mhat_min"] < s.sidebands[0]


def test_the_search_gives_the_same_answer_in_one_process_and_in_two(tmp_path):
    """Every training is seeded on its own, so spreading them over worker processes
    changes nothing: same max SIC per run, same bump-hunt fit."""
    from _anomaly_toys import toy_tables
    from fivesigma.core.config import load_config
    from fivesigma.tasks.anomaly.data import DijetTable
    from fivesigma.tasks.anomaly.search import run_search

    tables = {k: DijetTable(v) for k, v in toy_tables(6000, 800, seed=5).items()}
    cfg = load_config(
        _config(tmp_path, methods=["iad", "cwola"], retrainings=2, injection={"scan": [0.1]})
    )
    s = cfg.settings()

    def study(jobs):
        r = run_search(tables["qcd"], tables["signal"], s, cfg.bump_hunt, False, jobs=jobs)
        runs = sorted((x.method, x.seed) for x in r.runs)
        aucs = [x.auc for x in sorted(r.runs, key=lambda x: (x.method, x.seed))]
        hunts = [p["bump_hunt"]["significance"] for p in r.scan]
        return runs, aucs, hunts, sorted(r.models)

    one, two = study(1), study(2)
    assert one[0] == two[0] == [("cwola", 3), ("cwola", 1003), ("iad", 3), ("iad", 1003)]
    assert one[3] == two[3] == ["cwola", "iad"]
    assert len(set(one[1])) == 4  # the retrainings differ from each other ...
    assert one[1] == pytest.approx(two[1], rel=1e-6)  # ... but not between the layouts
    assert one[2] == pytest.approx(two[2], rel=1e-6)


def test_sculpting_tells_a_smooth_shape_change_from_a_fake_bump(tmp_path):
    """A cut on a score that rises smoothly with m_JJ changes the shape but fakes no
    signal (the dijet fit absorbs it); a score that prefers the signal region's m_JJ
    fakes a bump, and the spurious-signal test catches it."""
    from _anomaly_toys import toy_tables
    from fivesigma.core.config import load_config
    from fivesigma.tasks.anomaly.data import DijetTable, Regions
    from fivesigma.tasks.anomaly.search import make_splits, sculpting_check

    tables = {k: DijetTable(v) for k, v in toy_tables(120_000, 1000, seed=2).items()}
    cfg = load_config(_config(tmp_path))
    s = cfg.settings()
    splits = make_splits(
        tables["qcd"], tables["signal"], Regions(sr=s.sr, sidebands=s.sidebands), s.seed
    )
    rng = np.random.default_rng(0)

    class Score:
        def __init__(self, fn):
            self.fn = fn

        def score(self, x, mjj):
            return self.fn(mjj) + rng.normal(0.0, 1.0, len(mjj))

    smooth = sculpting_check(Score(lambda m: m / 200.0), splits, s, cfg.bump_hunt)
    assert not smooth["shape_unchanged"]  # the shape changes ...
    assert smooth["not_sculpted"]  # ... but no bump appears
    assert abs(smooth["spurious_significance"]) < 2.0

    bump = sculpting_check(
        Score(lambda m: 1.5 * np.exp(-0.5 * ((m - 3500.0) / 100.0) ** 2)), splits, s, cfg.bump_hunt
    )
    assert not bump["not_sculpted"] and bump["spurious_significance"] > 3.0
    # a cut that keeps nothing outside the signal region cannot be fitted: sculpted, and
    # said why, without stopping the run
    walls = sculpting_check(
        Score(lambda m: 100.0 * ((m > 3300) & (m < 3700))), splits, s, cfg.bump_hunt
    )
    assert not walls["not_sculpted"] and "sidebands" in walls["spurious_error"]
