"""The symbolic task: units, the benchmark's sampling, the exact-recovery proof, a short
search, the distillation on a toy whose best score is known, the run end to end with
``fivesigma apply``, and the bad-input paths."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import yaml

sp = pytest.importorskip("sympy")
pytest.importorskip("pyoperon")

from _cli import assert_fails_one_line, write_config  # noqa: E402
from fivesigma.cli import main  # noqa: E402
from fivesigma.errors import ConfigError, DataError  # noqa: E402
from fivesigma.tasks.symbolic.benchmark import BUILTIN, Formula, Input, sample, truth_expr  # noqa: E402
from fivesigma.tasks.symbolic.engine import (  # noqa: E402
    Candidate,
    EngineSettings,
    _operon_pareto,
    search,
    select,
)
from fivesigma.tasks.symbolic.recovery import exact_recovery  # noqa: E402
from fivesigma.tasks.symbolic.units import check_units, parse_unit  # noqa: E402


# -- units ----------------------------------------------------------------------------------
def test_units_accept_consistent_formulas_and_name_the_first_inconsistency():
    p, m, E, th, s = sp.symbols("p m E theta s", real=True)
    units = {"p": parse_unit("GeV"), "m": parse_unit("GeV"), "E": parse_unit("GeV"),
             "theta": parse_unit("rad"), "s": parse_unit("GeV^2")}  # fmt: skip
    assert check_units(sp.sqrt(p**2 + m**2), units) is None
    assert check_units(sp.sqrt(s) - E, units) is None  # sqrt(GeV^2) is GeV
    assert check_units(sp.log(E / p) * sp.cos(th), units) is None
    assert check_units(1.3 / (E**2 * sp.sin(0.5 * th) ** 4), units) is None
    assert check_units(p + th, units) == "adds GeV and dimensionless in p + theta"
    assert "log" in check_units(sp.log(p), units)
    assert "fractional power" in check_units(sp.sqrt(p), units)
    assert "adds GeV and GeV^2" in check_units(E + s, units)
    with pytest.raises(ConfigError, match="cannot read"):
        parse_unit("GeV^two")


# -- the benchmark's sampling ---------------------------------------------------------------
def test_sample_has_the_asked_noise_and_keeps_the_truth():
    f = BUILTIN["relativistic_energy"]
    X, y, clean = sample(f, 4000, noise=0.1, seed=3)
    assert np.allclose(clean, np.sqrt(X[:, 0] ** 2 + X[:, 1] ** 2))
    rms = np.sqrt(np.mean(clean**2))
    assert np.std(y - clean) == pytest.approx(0.1 * rms, rel=0.05)
    X2, y2, _ = sample(f, 4000, noise=0.1, seed=3)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)  # seeded
    # the recurrence's targets come from the recurrence, the closed form agrees
    Xr, _, cr = sample(BUILTIN["recurrence"], 50, 0.0, 1)
    assert np.allclose(cr, Xr[:, 0] * (Xr[:, 0] + 1) / 2 + 1)


def test_sample_refuses_a_constant_input_in_one_line():
    f = Formula("flat", "flat", "a*b", (Input("a", "1", 1, 2), Input("b", "1", 3, 3)))
    with pytest.raises(DataError) as exc:
        sample(f, 100, 0.0, 1)
    msg = str(exc.value)
    assert "\n" not in msg and "'flat'" in msg and "b" in msg and "constant" in msg


# -- exact recovery -------------------------------------------------------------------------
def _check_data(name, seed=11):
    f = BUILTIN[name]
    Xc, _, yc = sample(f, 300, 0.0, seed)
    X, _, _ = sample(f, 300, 0.0, seed + 1)
    return f, truth_expr(f), Xc, yc, X


def test_exact_recovery_proves_equal_structures_with_other_constants():
    f, truth, Xc, yc, X = _check_data("lorentz_gamma")
    beta = sp.Symbol("beta", real=True)
    # the truth, written with redundant and rounded constants (as a search returns it)
    cand = 1.2011 * sp.sqrt(1 / (1.4427 - 1.4427 * beta**2)) + 5e-16
    rec = exact_recovery(cand, truth, f.names, Xc, yc, X)
    assert rec["exact"] and rec["numeric"]
    assert sp.simplify(rec["expression"] ** 2 - truth**2) == 0
    # a Breit-Wigner found as c / (a s^2 + b s + d) + e: a scale shared by numerator and
    # denominator, poorly conditioned constants (s ~ 8000)
    f, truth, Xc, yc, X = _check_data("breit_wigner")
    s = sp.Symbol("s", real=True)
    cand = -2.843828e-6 - 0.00303519750435811 / (
        -5.86420400049266e-8 * s**2 + 0.000971230096 * s - 4.024415969849
    )
    assert exact_recovery(cand, truth, f.names, Xc, yc, X)["exact"]
    # one found at 1% noise whose float constants no simple rational fits: solved exactly
    cand = 4.8259422e-5 + 0.0119294462564446 / (
        2.30556448949444e-7 * s**2 - 0.003818551544 * s + 15.822956085205
    )
    rec = exact_recovery(cand, truth, f.names, Xc, yc, X)
    assert rec["exact"] and sp.simplify(rec["expression"] / truth).is_number


def test_exact_recovery_refuses_a_wrong_or_merely_close_formula():
    f, truth, Xc, yc, X = _check_data("lorentz_gamma")
    beta = sp.Symbol("beta", real=True)
    # the first terms of the series: close at small beta, a different function
    rec = exact_recovery(1 + beta**2 / 2 + 3 * beta**4 / 8, truth, f.names, Xc, yc, X)
    assert not rec["exact"] and not rec["numeric"]
    f, truth, Xc, yc, X = _check_data("dsigma_dcos")
    th = sp.Symbol("theta", real=True)
    assert not exact_recovery(0.375 + 0.375 * sp.cos(th), truth, f.names, Xc, yc, X)["exact"]
    # the right structure, but it only fits the data after moving far: not accepted
    f, truth, Xc, yc, X = _check_data("relativistic_energy")
    p, m = sp.symbols("p m", real=True)
    far = exact_recovery(sp.sqrt(p**2 + 9 * m**2), truth, f.names, Xc, yc, X)
    assert not far["numeric"] and far["refit_shift"] > 0.1


# -- a short search -------------------------------------------------------------------------
def test_short_search_recovers_the_relativistic_energy_exactly():
    f = BUILTIN["relativistic_energy"]
    X, y, _ = sample(f, 200, 0.0, 5)
    e = EngineSettings(generations=20, population=300, restarts=2, max_seconds=60)
    res = search(X, y, f.names, f.units, f.operators, 1, e)
    assert res.engine["restarts"][0]["generations"] == 20 and not res.engine["time_capped"]
    # noise-free and found to machine precision: the second restart is not needed
    assert len(res.engine["restarts"]) == 1 and res.best.nmse < 1e-20
    # the front is a Pareto front: more complex members fit better
    cx = [c.complexity for c in res.front]
    err = [c.nmse for c in res.front]
    assert cx == sorted(cx) and all(a > b for a, b in pairwise(err))
    assert res.best.units is None  # sqrt of GeV^2
    Xc, _, yc = sample(f, 300, 0.0, 6)
    rec = exact_recovery(res.best.expr, truth_expr(f), f.names, Xc, yc, X)
    assert rec["exact"], res.best.expr


def test_merged_operon_front_keeps_only_members_no_shorter_one_beats():
    # (text, Operon length, Operon MSE) from three restarts, in no order
    raw = [
        ("a", 5, 1.0),
        ("b", 7, 0.5),
        ("c", 7, 0.8),  # beaten by b (same length)
        ("d", 9, 0.9),  # beaten by b (shorter)
        ("e", 11, 0.1),
        ("f", 3, 2.0),
        ("g", 13, float("nan")),  # unusable
        ("h", 15, 0.1),  # no better than e, longer
    ]
    assert [m[0] for m in _operon_pareto(raw)] == ["f", "a", "b", "e"]


def test_choice_weighs_fit_against_nodes_with_the_number_of_points():
    """BIC: n ln(NMSE) + complexity ln(n).  At n = 300 with 1% noise (NMSE floor 1e-4),
    a member 4 nodes simpler but 15% worse than the floor is an approximation (300 ln 1.15
    = 42 > 4 ln 300 = 23): the longer member is chosen; an over-fit 6 nodes longer that
    gains 1% (3 < 34) is not; with 30 points the same 15% no longer pays for 4 nodes."""
    x = sp.Symbol("x")

    def cand(cx, nmse, units=None):
        return Candidate(x + cx, cx, nmse, units)

    approx, truth, overfit = cand(8, 1.15e-4), cand(12, 1.0e-4), cand(18, 0.99e-4)
    front = [approx, truth, overfit]
    assert select(front, 300) is truth
    assert select(front, 30) is approx
    # a unit-inconsistent member is chosen only when no consistent one is left
    bad = cand(12, 1.0e-4, "adds GeV to GeV^2")
    assert select([approx, bad, overfit], 300) is approx
    assert select([bad], 300) is bad
    # noise-free: fits at machine precision are equal, the shorter is chosen
    assert select([cand(8, 1e-30), cand(12, 1e-33)], 300).complexity == 8


# -- distillation on a toy whose best score is known ----------------------------------------
def _gaussian_toy(n, seed, shift=(1.2, 0.9)):
    """Signal N(shift, 1), background N(0, 1) in two variables: the best score is the
    linear log-likelihood ratio, with AUC Phi(|shift| / sqrt 2)."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    X = rng.standard_normal((n, 2)) + np.outer(label, shift)
    return X, label


def test_distillation_keeps_the_auc_of_a_known_optimal_score():
    from scipy.stats import norm
    from sklearn.metrics import roc_auc_score

    from fivesigma.tasks.symbolic.distill import DistillEvents, distill

    shift = np.array([1.2, 0.9])
    X, label = _gaussian_toy(6000, 2, tuple(shift))
    split = np.repeat([0, 1, 2], [3000, 1000, 2000])
    events = DistillEvents({"x1": X[:, 0], "x2": X[:, 1]}, label, np.ones(len(label)), split)
    e = EngineSettings(generations=8, population=200, restarts=1, max_seconds=60)
    res = distill(events, inputs=["x1", "x2"], units={}, operators="add,sub,mul,div",
                  engine=e, seed=1, points=600, clip=8.0, target_kept=0.95,
                  hidden=[16], epochs=4, lr=5e-3)  # fmt: skip
    best = norm.cdf(np.linalg.norm(shift) / np.sqrt(2))
    test = split == 2
    assert res.auc["network"] == pytest.approx(best, abs=0.02)
    assert res.auc["formula"] == pytest.approx(best, abs=0.02)
    assert res.kept >= 0.95
    # the project's weighted AUC against scikit-learn's
    from fivesigma.tasks.symbolic.distill import evaluate

    f = evaluate(res.chosen.expr, ["x1", "x2"], X[test])
    assert res.auc["formula"] == pytest.approx(roc_auc_score(label[test], f), abs=1e-9)
    # the best score is linear: the formula ranks events as shift . x does
    ref = roc_auc_score(label[test], X[test] @ shift)
    assert res.auc["formula"] == pytest.approx(ref, abs=0.01)


# -- the task -------------------------------------------------------------------------------
def _write_table(path: Path, cols: dict[str, np.ndarray]) -> Path:
    names = list(cols)
    rows = np.column_stack([cols[n] for n in names])
    path.write_text(
        ",".join(names) + "\n" + "\n".join(",".join(f"{v:.10g}" for v in r) for r in rows)
    )
    return path


def _config(tmp: Path, **extra) -> Path:
    cfg = {
        "version": 1,
        "task": "symbolic",
        "seed": 2,
        "benchmark": {"formulas": ["relativistic_energy", "bethe_bloch"], "noise": [0.0],
                      "points": 150, "check_points": 200},
        "engine": {"generations": 6, "population": 150, "restarts": 1, "jobs": 1},
        "distill": {"enabled": False},
    }  # fmt: skip
    return write_config(tmp / "symbolic.yaml", cfg, extra)


@pytest.mark.slow
def test_run_writes_metrics_report_bundles_and_apply_evaluates_them(tmp_path, capsys):
    rng = np.random.default_rng(0)
    p, m = rng.uniform(0.5, 5, 300), rng.uniform(0.1, 3, 300)
    table = _write_table(tmp_path / "table.csv", {"p": p, "m": m, "E": np.sqrt(p**2 + m**2)})
    X, label = _gaussian_toy(3000, 4)
    sig = _write_table(tmp_path / "sig.csv", {"x1": X[label == 1, 0], "x2": X[label == 1, 1]})
    bkg = _write_table(tmp_path / "bkg.csv", {"x1": X[label == 0, 0], "x2": X[label == 0, 1]})
    distill = {
        "enabled": True,
        "generate": None,
        "data": {"samples": [{"name": "s", "files": str(sig), "label": 1},
                             {"name": "b", "files": str(bkg), "label": 0}],
                 "split": {"train": 0.5, "validation": 0.2, "test": 0.3}},
        "features": ["x1", "x2"], "inputs": ["x1", "x2"], "units": {},
        "hidden": [8], "epochs": 2, "generations": 4, "restarts": 1, "points": 300,
        "operators": "add,sub,mul",
    }  # fmt: skip
    data = {"files": [str(table)], "inputs": ["p", "m"], "units": {"p": "GeV", "m": "GeV"},
            "target": "E", "operators": "add,mul,sqrt,square", "max_rows": 200}  # fmt: skip
    cfg = _config(tmp_path, data=data, distill=distill)
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    m_ = json.loads((out / "metrics.json").read_text())
    cells = m_["benchmark"]["cells"]
    assert {(c["formula"], c["noise"]) for c in cells} == {
        ("relativistic_energy", 0.0), ("bethe_bloch", 0.0)}  # fmt: skip
    for c in cells:
        assert c["generations"] >= 5 and c["seconds"] > 0 and c["front"]
        assert isinstance(c["exact"], bool) and c["nmse"] >= 0
    by = m_["benchmark"]["summary"]["by_noise"]
    assert by[0]["formulas"] == 2 and by[0]["exact"] == sum(c["exact"] for c in cells)
    assert "done" not in m_["benchmark"]["summary"]  # 2 of the 10 formulas: no verdict
    assert m_["data"]["rows"] == 300 and m_["data"]["nmse"] < 0.05
    di = m_["distill"]
    assert "error" not in di and 0.5 < di["auc"]["network"] <= 1 and np.isfinite(di["kept"])
    assert (out / "report.html").stat().st_size > 20_000
    for name in ("formula_relativistic_energy", "formula_bethe_bloch", "data", "distilled"):
        assert (out / "models" / name / "manifest.json").is_file(), name

    # apply evaluates the bundle's formula: compare with the formula in metrics.json
    pts = _write_table(tmp_path / "points.csv", {"p": [1.0, 3.0], "m": [2.0, 0.5]})
    scores = tmp_path / "scores.parquet"
    bundle = out / "models" / "formula_relativistic_energy"
    assert main(["apply", str(bundle), str(pts), "--out", str(scores)]) == 0
    import pyarrow.parquet as pq

    got = pq.read_table(scores).to_pydict()
    cell = next(c for c in cells if c["formula"] == "relativistic_energy")
    ps, ms = sp.symbols("p m", real=True)
    expr = sp.sympify(cell["found"], locals={"p": ps, "m": ms})
    want = [float(expr.subs({ps: a, ms: b})) for a, b in [(1.0, 2.0), (3.0, 0.5)]]
    assert np.allclose(got["formula"], want, rtol=1e-9)
    assert got["file_index"] == [0, 0] and got["entry"] == [0, 1]
    # a file without the formula's inputs: one line, no output
    bad = _write_table(tmp_path / "bad.csv", {"q": [1.0]})
    assert_fails_one_line(
        ["apply", str(bundle), str(bad), "--out", str(tmp_path / "x.parquet")],
        capsys,
        "no column(s) m, p",
    )
    assert not (tmp_path / "x.parquet").exists()


def test_constant_input_stops_the_run_in_one_line_and_leaves_no_output(tmp_path, capsys):
    custom = [{"name": "flat", "truth": "a*b",
               "inputs": {"a": {"low": 1, "high": 2}, "b": {"low": 3, "high": 3}}}]  # fmt: skip
    cfg = _config(tmp_path, benchmark={"custom": custom})
    out = tmp_path / "out"
    msg = assert_fails_one_line(["run", str(cfg), "--out", str(out), "--quiet"], capsys, "constant")
    assert "'flat'" in msg and "b" in msg
    assert not out.exists() and not list(tmp_path.glob("out*"))
    assert_fails_one_line(["config", "--check", str(cfg)], capsys, "constant")


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"benchmark": {"formulas": ["lorentz"]}}, "lorentz_gamma"),
        ({"data": {"files": ["x.csv"], "inputs": ["a"], "target": "b", "operators": "add,foo"}},
         "foo"),
        ({"data": {"files": ["x.csv"], "inputs": ["a"], "target": "b", "units": {"c": "GeV"}}},
         "data.units"),
        ({"distill": {"enabled": True, "features": ["m4l"], "inputs": ["m4l", "mZ2"]}}, "mZ2"),
        ({"benchmark": {"custom": [{"name": "k", "truth": "m*v**2",
                                    "inputs": {"m": {"unit": "GeV^x"}}}]}}, "GeV^x"),
        ({"benchmark": {"custom": [{"name": "k", "truth": "m*v**2",
                                    "inputs": {"m": {"high": 2}}}]}}, "uses v"),
        ({"benchmark": {"noise": [-0.1]}}, "noise"),
    ],
)  # fmt: skip
def test_bad_configs_are_one_line_errors(tmp_path, capsys, extra, match):
    cfg = _config(tmp_path, **extra)
    assert_fails_one_line(["config", "--check", str(cfg)], capsys, match)


def test_template_parses_and_presets_resolve():
    from fivesigma.core.config import parse_config
    from fivesigma.core.registry import TASKS

    cfg = parse_config(yaml.safe_load(TASKS.get("symbolic")().template()))
    s = cfg.settings()
    assert [f.name for f in s.formulas] == list(BUILTIN) and s.noise == (0.0, 0.01, 0.1)
    assert s.engine.restarts >= 2 and s.engine.generations >= 20 and s.distill
    full = parse_config({"version": 1, "task": "symbolic", "preset": "full"}).settings()
    assert full.engine.generations > s.engine.generations
