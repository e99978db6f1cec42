"""The scan task: the Z' oracle against closed forms, the surrogate and the search on toys
whose boundary is known, the run end to end, and its bad-input paths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from _cli import assert_fails_one_line, write_config
from fivesigma.cli import main
from fivesigma.tasks.scan.oracle import LimitCurve, ZprimeOracle
from fivesigma.tasks.scan.search import (
    Space,
    active_search,
    agreement,
    calls_to_reach,
    dense_grid,
    grid_baseline,
    random_baseline,
)
from fivesigma.tasks.scan.surrogate import GPSurrogate


def _config(tmp: Path, **extra) -> Path:
    cfg = {
        "version": 1,
        "task": "scan",
        "seed": 2,
        "parameters": {"mass": [1000, 5000], "g_quark": [0.02, 2.0], "g_lepton": 0.5},
        "oracle": {"events": 200, "jobs": 1, "cache_dir": str(tmp / "cache")},
        "search": {"initial": 5, "max_calls": 12, "population": 10, "generations": 3},
        "benchmark": {"grid": 7, "seeds": 1, "random_max_calls": 20, "target": 0.95},
    }
    return write_config(tmp / "scan.yaml", cfg, extra)


# -- oracle ---------------------------------------------------------------------------------
def test_limit_curve_is_the_stated_parametrisation():
    lim = LimitCurve(a_fb=0.4, k=2.3, c_fb=0.025)
    m = np.array([500.0, 1000.0, 3000.0])
    assert np.allclose(lim(m), 0.4 * (m / 1000) ** -2.3 + 0.025)
    table = LimitCurve(table=((1000.0, 1.0), (4000.0, 0.01)))
    assert table(np.array([2000.0]))[0] == pytest.approx(0.1)  # log-log midpoint
    assert np.allclose(table(np.array([500.0, 9000.0])), [1.0, 0.01])  # held at the ends


@pytest.mark.pythia
def test_oracle_matches_narrow_width_closed_forms(tmp_path):
    pytest.importorskip("pythia8mc")
    oracle = ZprimeOracle(events=2000, fixed={"g_lepton": 1.0}, cache_dir=tmp_path)
    small, double = oracle.evaluate([{"mass": 2000.0, "g_quark": 0.01},
                                     {"mass": 2000.0, "g_quark": 0.02}])  # fmt: skip
    # quarks decouple: BR(ee) = (ve^2 + ae^2) / (3 (ve^2 + ae^2) + 3 (vnu^2 + anu^2))
    ee = 0.08**2 + 1.0
    assert small.branching_ratio == pytest.approx(ee / (3 * ee + 3 * 2.0), rel=0.01)
    # production ~ g_q^2 (narrow width, BR unchanged at this level)
    ratio = double.sigma_br_fb / small.sigma_br_fb
    err = np.hypot(
        double.sigma_br_err_fb / double.sigma_br_fb, small.sigma_br_err_fb / small.sigma_br_fb
    )
    assert ratio == pytest.approx(
        4.0 * double.branching_ratio / small.branching_ratio, abs=4 * err * 4
    )
    # the disk cache returns the same numbers without running Pythia again
    calls = oracle.calls
    again = oracle.evaluate([{"mass": 2000.0, "g_quark": 0.01}])[0]
    assert oracle.calls == calls and again.cached
    assert again.sigma_br_fb == small.sigma_br_fb


# -- surrogate and search on toys -------------------------------------------------------------
def _circle(u: np.ndarray) -> np.ndarray:
    """Excluded inside a circle of radius 0.3 around (0.4, 0.5): a known boundary."""
    u = np.atleast_2d(u)
    return 0.3 - np.hypot(u[:, 0] - 0.4, u[:, 1] - 0.5)


def test_calls_to_reach_needs_the_accuracy_to_stay():
    assert calls_to_reach([5, 10, 20, 40], [0.9, 0.96, 0.94, 0.97], 0.95) == 40
    assert calls_to_reach([5, 10, 20], [0.96, 0.97, 0.99], 0.95) == 5
    assert calls_to_reach([5, 10], [0.9, 0.91], 0.95) is None


def test_surrogate_bundle_predicts_what_was_fitted(tmp_path):
    from fivesigma.core.registry import BUNDLE_KINDS
    from fivesigma.tasks.scan.bundle import save

    space = Space(("mass", "g_quark"), (500.0, 0.01), (6000.0, 3.0))
    u = np.random.default_rng(0).uniform(size=(40, 2))
    gp = GPSurrogate(seed=0).fit(u, _circle(u))
    nodes, _ = dense_grid(21)
    assert agreement(gp.predict(nodes)[0], _circle(nodes)) > 0.9
    model = BUNDLE_KINDS.get("scan_surrogate")(save(gp, space, tmp_path / "s", {}))
    x = space.to_physical(nodes)
    assert np.allclose(model.predict(x)[0], gp.predict(nodes)[0])
    assert np.allclose(model.predict(x)[1], gp.predict(nodes)[1])
    from fivesigma.errors import DataError

    with pytest.raises(DataError, match="outside the scanned region"):
        model.predict(np.array([[100.0, 0.1]]))


@pytest.mark.slow
def test_guided_search_finds_a_known_boundary_with_fewer_calls_than_grid_and_random():
    nodes, _ = dense_grid(41)
    truth = _circle(nodes)
    run = active_search(_circle, 2, seed=0, initial=6, max_calls=40, population=20,
                        generations=10, truth=(nodes, truth), run_to_max=True)  # fmt: skip
    active = calls_to_reach(run.calls, run.accuracy, 0.99)
    grid = grid_baseline(41, truth, 0.99)["calls_to_target"]
    rand = random_baseline(nodes, truth, 0, 6, 300, surrogate=False)
    random_calls = calls_to_reach(rand["calls"], rand["accuracy_interpolation"], 0.99)
    assert active is not None and active <= 30
    assert grid is not None and grid >= 1.5 * active
    assert random_calls is None or random_calls >= 2 * active
    # proposals concentrate on the boundary: most searched points lie near it
    assert np.median(np.abs(_circle(run.x[6:]))) < 0.05


# -- the task ---------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.pythia
def test_run_writes_region_benchmark_and_surrogate(tmp_path, capsys):
    pytest.importorskip("pythia8mc")
    out = tmp_path / "out"
    assert main(["run", str(_config(tmp_path)), "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    ans, bench = m["answer"], m["benchmark"]
    assert 5 <= ans["oracle_calls"] <= 12 and 0 < ans["excluded_fraction"] < 1
    assert m["reference_grid"]["nodes"] == 49
    assert 0 < m["reference_grid"]["excluded_fraction"] < 1
    rows = bench["grid"]["rows"]
    assert rows[-1]["calls"] == 49 and rows[-1]["accuracy"] == 1.0  # the grid itself
    assert len(bench["active"]) == 1 and len(bench["random"]) == 1
    assert {"gain_vs_grid", "gain_vs_random", "done_5x"} <= set(bench["summary"])
    assert (out / "report.html").stat().st_size > 10_000
    # apply classifies points with the bundle, as the surrogate does
    pts = tmp_path / "points.csv"
    pts.write_text("mass,g_quark\n1500,1.5\n4900,0.03\n")
    scores = tmp_path / "classified.parquet"
    assert main(["apply", str(out / "models" / "surrogate"), str(pts), "--out", str(scores)]) == 0
    import pyarrow.parquet as pq

    table = pq.read_table(scores).to_pydict()
    # a 1.5 TeV Z' with large quark couplings is excluded, a 4.9 TeV feeble one is not
    assert table["excluded"] == [1, 0]


def test_scan_range_outside_the_oracle_validity_is_one_line(tmp_path, capsys):
    cfg = _config(tmp_path, parameters={"mass": [100, 6000]})
    out = tmp_path / "out"
    msg = assert_fails_one_line(["run", str(cfg), "--out", str(out), "--quiet"], capsys, "validity")
    assert "parameters.mass" in msg and "200" in msg
    assert not out.exists()
    assert_fails_one_line(["config", "--check", str(cfg)], capsys, "validity")


def test_scanning_three_parameters_is_refused(tmp_path, capsys):
    cfg = _config(tmp_path, parameters={"g_lepton": [0.1, 1.0]})
    msg = assert_fails_one_line(["config", "--check", str(cfg)], capsys, "exactly two")
    assert "g_lepton" in msg or "parameters" in msg


def test_template_parses_and_presets_resolve():
    from fivesigma.core.config import parse_config
    from fivesigma.core.registry import TASKS

    cfg = parse_config(yaml.safe_load(TASKS.get("scan")().template()))
    s = cfg.settings()
    assert s.scanned == ("mass", "g_quark") and s.fixed == {"g_lepton": 0.5}
    assert s.seeds >= 3 and s.max_calls > s.initial and s.grid >= 20
