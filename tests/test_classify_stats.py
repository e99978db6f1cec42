"""The statistics stage never loses the machine-learning results.

Unit level: :func:`fivesigma.stats.robust_stats` on perfectly separated and
background-free histograms, the retries with a wider bound on mu, the Asimov-formula
fallback (checked against the closed forms of Cowan et al., arXiv:1007.1727) and the
error entry when nothing can be computed.  Task level: ``fivesigma run`` with pyhf
failing, the stage turned off, and unit weights.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import yaml
from scipy.optimize import brentq
from scipy.stats import norm

pyhf = pytest.importorskip("pyhf")

from fivesigma.cli import main  # noqa: E402
from fivesigma.metrics import asimov_z  # noqa: E402
from fivesigma.stats import (  # noqa: E402
    asimov_significance,
    asimov_upper_limit,
    build_workspace,
    expected_significance,
    expected_upper_limit,
    robust_stats,
)
from fivesigma.stats.asymptotic import asimov_q_mu  # noqa: E402


def z_closed_form(s: float, b: float) -> float:
    """Z_A = sqrt(2((s+b) ln(1+s/b) - s)) (arXiv:1007.1727 eq. 97)."""
    return math.sqrt(2.0 * ((s + b) * math.log(1.0 + s / b) - s))


def limit_closed_form(s: float, b: float, n_sigma: float = 0.0, alpha: float = 0.05) -> float:
    """The ±Nσ expected CLs limit of one Poisson bin: sqrt(q_mu,A) = Phi^-1(1-alpha Phi(N)) + N."""
    target = norm.ppf(1.0 - alpha * norm.cdf(n_sigma)) + n_sigma
    return brentq(
        lambda mu: math.sqrt(2.0 * (mu * s - b * math.log1p(mu * s / b))) - target, 1e-9, 1e6
    )


def separated(n=50, w_sig=1.0, w_bkg=1.0, seed=0):
    """Signal scores in [0.95, 1], background in [0, 0.05]: perfect separation."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n), np.zeros(n)]
    score = np.r_[rng.uniform(0.95, 1.0, n), rng.uniform(0.0, 0.05, n)]
    return score, y, np.r_[np.full(n, w_sig), np.full(n, w_bkg)]


# --- the Asimov formula ----------------------------------------------------------------


@pytest.mark.parametrize(("s", "b"), [(5.0, 10.0), (20.0, 100.0), (3.0, 1.0), (0.5, 200.0)])
def test_asimov_formula_equals_the_closed_form_and_pyhf_for_one_bin(s, b):
    assert asimov_significance([s], [b]) == pytest.approx(z_closed_form(s, b), rel=1e-12)
    assert asimov_significance([s], [b]) == pytest.approx(
        expected_significance(build_workspace([s], [b], bkg_norm_unc=0.0)), rel=1e-3
    )
    lim = asimov_upper_limit([s], [b])
    assert lim["median"] == pytest.approx(limit_closed_form(s, b), rel=1e-6)
    for key, n_sigma in (("-2", -2), ("-1", -1), ("+1", 1), ("+2", 2)):
        assert lim["band"][key] == pytest.approx(limit_closed_form(s, b, n_sigma), rel=1e-6)
    ref = expected_upper_limit(build_workspace([s], [b], bkg_norm_unc=0.0), rtol=1e-4)
    assert lim["median"] == pytest.approx(ref["median"], rel=5e-3)


def test_asimov_formula_bins_add_in_quadrature_and_uncertainty_matches_metrics():
    s, b = [4.0, 9.0, 0.0], [50.0, 20.0, 7.0]
    assert asimov_significance(s, b) == pytest.approx(
        math.hypot(z_closed_form(4, 50), z_closed_form(9, 20)), rel=1e-12
    )
    # with a background uncertainty: Cowan's profile formula, bin by bin
    ref = math.hypot(asimov_z(4.0, 50.0, 0.2), asimov_z(9.0, 20.0, 0.2))
    assert asimov_significance(s, b, 0.2) == pytest.approx(ref, rel=1e-10)
    assert asimov_significance(s, b, 0.2) < asimov_significance(s, b)
    # the exclusion q_mu tends to the no-uncertainty one and grows with mu
    assert asimov_q_mu(1.0, s, b, 1e-7) == pytest.approx(asimov_q_mu(1.0, s, b), rel=1e-6)
    assert asimov_q_mu(2.0, s, b, 0.2) > asimov_q_mu(1.0, s, b, 0.2) > 0
    assert asimov_upper_limit(s, b, 0.2)["median"] > asimov_upper_limit(s, b)["median"]


# --- robust_stats ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("w_sig", "w_bkg", "min_background"),
    [(1.0, 1.0, 1.0), (1.0, 1.0, None), (1e-2, 1e-4, None), (1e-6, 1e-6, 1.0), (10.0, 1.0, 0.0)],
)
def test_perfectly_separated_scores_give_a_result_never_an_exception(w_sig, w_bkg, min_background):
    score, y, w = separated(w_sig=w_sig, w_bkg=w_bkg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the merged bins are also warned about
        result, spec = robust_stats(score, y, w, bins=10, min_background=min_background)
    assert result.error is None
    assert result.method in ("pyhf", "asimov-formula")
    assert math.isfinite(result.z_expected) and result.z_expected > 0
    assert math.isfinite(result.cls_upper_limit_expected)
    assert result.cls_band["-1"] < result.cls_upper_limit_expected < result.cls_band["+1"]
    # no bin without background reaches pyhf: the signal-only bins were merged
    b = spec["channels"][0]["samples"][1]["data"]
    assert min(b) > 0 and len(b) == result.n_bins
    assert result.signal_yield == pytest.approx(50 * w_sig)
    assert result.background_yield == pytest.approx(50 * w_bkg)
    assert result.notes  # what the binning did is said


def test_background_below_the_minimum_is_merged_into_one_bin_with_a_note():
    score, y, w = separated(w_sig=1e-3, w_bkg=1e-3)  # total background 0.05 < 1
    with pytest.warns(UserWarning, match="merged"):
        result, _ = robust_stats(score, y, w, bins=10, min_background=1.0)
    assert result.n_bins == 1 and result.error is None
    assert any("all bins merged into one" in n for n in result.notes)


def test_a_fit_beyond_the_bound_on_mu_is_retried_with_a_wider_bound():
    # Tiny yields: pyhf's root finder steps past the default bound on mu ("fit
    # initialization parameter ... lies outside of its bounds"); a wider bound succeeds.
    score, y, w = separated(w_sig=1e-2, w_bkg=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result, _ = robust_stats(score, y, w, bins=10, min_background=None, bkg_norm_unc=0.0)
    assert result.method == "pyhf" and result.error is None
    assert result.poi_widenings >= 1
    assert any("outside of its bounds" in a for a in result.failed_attempts)
    assert all("\n" not in a for a in result.failed_attempts)
    # the answer is the one-bin closed form (everything sits in one merged bin)
    assert result.n_bins == 1
    s, b = 50 * 1e-2, 50 * 1e-4
    assert result.z_expected == pytest.approx(z_closed_form(s, b), rel=1e-2)


@pytest.fixture
def pyhf_always_fails(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("pyhf is broken\nsecond line")

    monkeypatch.setattr(pyhf.infer.test_statistics, "q0", boom)
    monkeypatch.setattr(pyhf.infer.intervals.upper_limits, "hypotest", boom)


def test_pyhf_failing_everywhere_falls_back_to_the_asimov_formula(pyhf_always_fails):
    rng = np.random.default_rng(4)
    y = (rng.uniform(size=4000) < 0.3).astype(int)
    score = np.clip(rng.normal(0.3 + 0.4 * y, 0.15), 0, 1)
    result, spec = robust_stats(score, y, bins=5, bkg_norm_unc=0.0, max_widenings=2)
    assert result.method == result.z_method == result.limit_method == "asimov-formula"
    assert result.error is None
    assert result.pyhf_error == "RuntimeError: pyhf is broken"
    assert len(result.failed_attempts) == 2 * 3  # Z and limit, default bound + 2 widenings
    s = np.array(spec["channels"][0]["samples"][0]["data"])
    b = np.array(spec["channels"][0]["samples"][1]["data"])
    ref = math.sqrt(sum(z_closed_form(si, bi) ** 2 for si, bi in zip(s, b, strict=True)))
    assert result.z_expected == pytest.approx(ref, rel=1e-12)
    assert result.cls_upper_limit_expected == pytest.approx(asimov_upper_limit(s, b)["median"])


def test_nothing_computable_is_an_error_entry_not_an_exception(pyhf_always_fails, monkeypatch):
    # no background at all: nothing to histogram
    result, spec = robust_stats([0.2, 0.7], [1, 1])
    assert spec is None and result.method is None
    assert result.z_expected is None and result.cls_upper_limit_expected is None
    assert "no background" in result.error and "\n" not in result.error
    # pyhf and the formula both failing
    import fivesigma.stats.robust as robust

    def broken(*args, **kwargs):
        raise ValueError("formula broken")

    monkeypatch.setattr(robust, "asimov_significance", broken)
    monkeypatch.setattr(robust, "asimov_upper_limit", broken)
    result, _ = robust_stats([0.2, 0.7, 0.8, 0.1], [1, 1, 0, 0], bins=2, bkg_norm_unc=0.0)
    assert result.z_expected is None and result.method is None
    assert result.error.startswith("Z: ValueError: formula broken; limit: ValueError")
    assert "pyhf: RuntimeError: pyhf is broken" in result.error
    assert json.loads(json.dumps(result.to_dict()))["error"] == result.error


# --- the task ---------------------------------------------------------------------------

QUICK_MODELS = [
    {"name": "logistic", "kind": "logistic"},
    {"name": "bdt", "kind": "bdt", "params": {"n_estimators": 20}},
]


def _edit(path, **sections):
    raw = yaml.safe_load(path.read_text())
    for key, value in sections.items():
        if value is None:
            raw[key] = None
        elif isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key].update(value)
        else:
            raw[key] = value
    path.write_text(yaml.safe_dump(raw))
    return path


def _outputs(out):
    metrics = json.loads((out / "metrics.json").read_text())
    html = (out / "report.html").read_text()
    for name in metrics["models"]:
        assert (out / "models" / name / "manifest.json").is_file()
    return metrics, html


@pytest.mark.slow
def test_perfectly_separated_toy_runs_to_the_end(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    for name, low, first in (("sig", 5.0, 0), ("bkg", 0.0, 1000)):
        cols = {"x0": rng.uniform(low, low + 1, 1000), "x1": rng.normal(size=1000)}
        cols["id"] = np.arange(first, first + 1000)
        pq.write_table(pa.table(cols), tmp_path / f"{name}.parquet")
    cfg = {
        "version": 1,
        "data": {
            "samples": [
                {"name": "sig", "files": "sig.parquet", "label": 1, "weight": "0 * x0 + 0.01"},
                {"name": "bkg", "files": "bkg.parquet", "label": 0, "weight": "0 * x0 + 1e-4"},
            ],
            "features": ["x0", "x1"],
            "split": {"key": "id"},
        },
        "models": QUICK_MODELS,
        "evaluation": {"ranking_repeats": 0},
        "stats": {"min_background": None},
    }
    path = tmp_path / "sep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path), "-q", "--out", str(tmp_path / "out")]) == 0
    metrics, _ = _outputs(tmp_path / "out")
    st = metrics["stats"]
    assert st["error"] is None and st["method"] in ("pyhf", "asimov-formula")
    assert st["z_expected"] > 0 and st["cls_upper_limit_expected"] > 0
    assert metrics["models"][metrics["best_model"]]["auc_test"] == pytest.approx(1.0)
    assert "expected Z" in capsys.readouterr().out


@pytest.mark.slow
def test_pyhf_failing_falls_back_and_says_so(toy_config_file, tmp_path, capsys, pyhf_always_fails):
    path = toy_config_file(n=600, models=QUICK_MODELS)
    with pytest.warns(UserWarning, match="Asimov formula"):
        assert main(["run", str(path), "-q"]) == 0
    out = capsys.readouterr().out
    assert "warning: pyhf failed (RuntimeError: pyhf is broken)" in out
    assert "(Asimov formula, approximate)" in out
    metrics, html = _outputs(tmp_path / "out")
    st = metrics["stats"]
    assert st["method"] == "asimov-formula" and st["error"] is None
    assert st["z_expected"] > 0 and st["pyhf_error"] == "RuntimeError: pyhf is broken"
    assert "Asimov formula, approximate" in html


@pytest.mark.slow
def test_stats_stage_failing_completely_exits_0_with_everything_else_written(
    toy_config_file, tmp_path, capsys, pyhf_always_fails, monkeypatch
):
    import fivesigma.stats.robust as robust

    def broken(*args, **kwargs):
        raise ValueError("formula broken")

    monkeypatch.setattr(robust, "asimov_significance", broken)
    monkeypatch.setattr(robust, "asimov_upper_limit", broken)
    path = toy_config_file(n=600, models=QUICK_MODELS)
    with pytest.warns(UserWarning, match="the statistics stage failed"):
        assert main(["run", str(path), "-q"]) == 0
    out = capsys.readouterr().out
    assert "warning: the statistics stage failed: Z: ValueError: formula broken" in out
    metrics, html = _outputs(tmp_path / "out")
    st = metrics["stats"]
    assert st["z_expected"] is None and st["cls_upper_limit_expected"] is None
    assert "\n" not in st["error"] and "formula broken" in st["error"]
    assert "pyhf is broken" in st["error"]
    stats_section = html.split('<section id="stats">', 1)[1].split("</section>", 1)[0]
    assert "The statistics stage failed" in stats_section and "formula broken" in stats_section


@pytest.mark.slow
def test_an_unexpected_exception_in_the_stage_is_recorded(
    toy_config_file, tmp_path, capsys, monkeypatch
):
    import fivesigma.stats

    def crash(*args, **kwargs):
        raise RuntimeError("a and b are not an interval [3, 1]")

    monkeypatch.setattr(fivesigma.stats, "robust_stats", crash)
    path = toy_config_file(n=600, models=QUICK_MODELS)
    with pytest.warns(UserWarning, match="statistics stage failed"):
        assert main(["run", str(path), "-q"]) == 0
    metrics, _ = _outputs(tmp_path / "out")
    assert metrics["stats"]["error"] == "RuntimeError: a and b are not an interval [3, 1]"
    assert not (tmp_path / "out" / "workspace.json").exists()
    assert "warning: the statistics stage failed" in capsys.readouterr().out


@pytest.mark.slow
def test_ml_results_are_on_disk_before_the_stats_stage_starts(
    toy_config_file, tmp_path, monkeypatch
):
    import fivesigma.stats
    from fivesigma.core.config import load_config
    from fivesigma.tasks.classify.task import run

    seen = {}
    real = fivesigma.stats.robust_stats

    def spy(*args, **kwargs):
        out = tmp_path / "direct"
        seen["metrics"] = json.loads((out / "metrics.json").read_text())
        seen["bundles"] = sorted(p.name for p in (out / "models").iterdir())
        return real(*args, **kwargs)

    monkeypatch.setattr(fivesigma.stats, "robust_stats", spy)
    cfg = load_config(toy_config_file(n=600, models=QUICK_MODELS))
    result = run(cfg, out=tmp_path / "direct", progress=False)
    assert seen["bundles"] == ["bdt", "logistic"]
    assert "did not finish" in seen["metrics"]["stats"]["error"]
    assert seen["metrics"]["models"].keys() == result.metrics["models"].keys()
    assert result.metrics["stats"]["error"] is None  # rewritten once the stage finished


@pytest.mark.slow
@pytest.mark.parametrize("stats", [None, {"enabled": False}])
def test_stats_can_be_turned_off(toy_config_file, tmp_path, capsys, stats):
    path = _edit(toy_config_file(n=600, models=QUICK_MODELS), stats=stats)
    assert main(["run", str(path), "-q"]) == 0
    out = capsys.readouterr().out
    assert "statistics: off" in out and "expected Z" not in out
    metrics, html = _outputs(tmp_path / "out")
    assert metrics["stats"] is None
    assert not (tmp_path / "out" / "workspace.json").exists()
    stats_section = html.split('<section id="stats">', 1)[1].split("</section>", 1)[0]
    assert "turned off in the config" in stats_section


@pytest.mark.slow
def test_unit_weights_say_the_significance_is_not_physical(toy_config_file, tmp_path, capsys):
    path = toy_config_file(n=600, models=QUICK_MODELS)
    raw = yaml.safe_load(path.read_text())
    for sample in raw["data"]["samples"]:
        sample.pop("weight")
    path.write_text(yaml.safe_dump(raw))
    assert main(["run", str(path), "-q"]) == 0
    out = capsys.readouterr().out
    assert "warning: every event weight is 1" in out and "not physical" in out
    metrics, html = _outputs(tmp_path / "out")
    assert "not physical" in metrics["stats"]["note"]
    assert "not physical" in html
    # weighted samples: no note
    path = toy_config_file(n=600, models=QUICK_MODELS)
    assert main(["run", str(path), "-q", "--out", str(tmp_path / "w")]) == 0
    assert "not physical" not in capsys.readouterr().out
    assert json.loads((tmp_path / "w" / "metrics.json").read_text())["stats"]["note"] is None
