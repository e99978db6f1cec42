"""Tests of fivesigma.report: the report builder, the classification report.html, its
hist + mplhep figures, and metrics.json."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from fivesigma.errors import FivesigmaError
from fivesigma.report import (
    Box,
    Cell,
    Details,
    Figure,
    Grid,
    Group,
    KeyValues,
    ModelReport,
    Report,
    ReportError,
    ReportInput,
    Row,
    Table,
    Text,
    fmt_number,
    markup,
    report_metrics,
    write_metrics_json,
    write_report,
)
from fivesigma.report import plots as report_plots
from fivesigma.report.classification import SECTIONS
from fivesigma.report.histograms import bin_errors, density, histplot, weighted_hist

CONFIG_WITH_SCRIPT = 'task: classify\ntitle: "a & b"\n<script>alert("x")</script>\n'


def _roc(y: np.ndarray, score: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Plain weighted ROC for plotting (the report only draws it)."""
    order = np.argsort(-score, kind="stable")
    ys, ws = y[order], w[order]
    eff_s = np.r_[0.0, np.cumsum(ws * ys) / np.sum(ws * ys)]
    eff_b = np.r_[0.0, np.cumsum(ws * (1 - ys)) / np.sum(ws * (1 - ys))]
    return eff_b, eff_s


def make_report(
    n_features: int = 3,
    n_models: int = 2,
    history: bool = False,
    cut_scan: bool = False,
    stats: bool = False,
    n: int = 1500,
    seed: int = 0,
    best: int = 0,
) -> ReportInput:
    """A synthetic report with negative weights in every sample."""
    rng = np.random.default_rng(seed)
    features = [f"feat_{i}" for i in range(n_features)]
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, n_features)) + 0.7 * y[:, None]
    if n_features > 2:
        X[:, 2] = rng.integers(0, 5, n)  # a discrete feature (e.g. a multiplicity)
    w = rng.normal(1.0, 0.3, n)
    w[rng.random(n) < 0.1] *= -1.0  # ~10% negative weights, as from NLO generators

    models = []
    for k in range(n_models):

        def sample(k: int = k) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            yy = rng.integers(0, 2, n // 2)
            score = 1.0 / (
                1.0 + np.exp(-(1.2 * yy - 0.6 + rng.normal(scale=1.0 + 0.1 * k, size=yy.size)))
            )
            ww = rng.normal(1.0, 0.3, yy.size)
            ww[rng.random(yy.size) < 0.1] *= -1.0
            return score, yy, ww

        s_tr, y_tr, w_tr = sample()
        s_te, y_te, w_te = sample()
        models.append(
            ModelReport(
                name=["bdt", "mlp_small", "logistic", "mlp_big", "xgb"][k],
                kind=["bdt", "mlp", "logistic", "mlp", "bdt"][k],
                score_train=s_tr,
                y_train=y_tr,
                w_train=w_tr,
                score_test=s_te,
                y_test=y_te,
                w_test=w_te,
                roc_test=_roc(y_te, s_te, w_te),
                roc_train=_roc(y_tr, s_tr, w_tr),
                metrics={
                    "auc_test": 0.80 - 0.01 * k,
                    "auc_train": 0.81 - 0.01 * k,
                    "eff_s_at_eff_b": {"0.01": 0.0517 + k / 1000, "0.1": 0.4, "0.3": 0.7},
                    "rejection_at_eff_s": {"0.3": 41.5, "0.5": 12.25},
                    "ks_pvalue_signal": 0.4,
                    "ks_pvalue_background": 0.6,
                    "separation": 0.25,
                    "n_parameters": 1000 + k,
                    "train_time_s": 1.5,
                },
                history=(
                    {
                        "train_loss": [0.7, 0.6, 0.55, 0.5],
                        "val_loss": [0.72, 0.63, 0.6, 0.61],
                        "best_epoch": 3,
                    }
                    if history and k % 2 == 1
                    else None
                ),
                ranking=[
                    {"feature": f, "importance": 0.1 / (i + 1), "std": 0.01}
                    for i, f in enumerate(features)
                ],
            )
        )

    corr = {
        "signal": np.corrcoef(X[y == 1].T),
        "background": np.corrcoef(X[y == 0].T),
    }
    scan = None
    if cut_scan:
        thr = np.linspace(0.0, 1.0, 50)
        s, b = 100 * (1 - thr), 1000 * (1 - thr) ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.sqrt(2 * ((s + b) * np.log1p(s / b) - s))
            s_over_sqrt_b = s / np.sqrt(b)
        scan = {
            "thresholds": thr,
            "s": s,
            "b": b,
            "s_over_sqrt_b": s_over_sqrt_b,
            "z_asimov": z,
            "z_asimov_unc": z * 0.8,
            "best": {"threshold": 0.5, "s": 50.0, "b": 250.0, "z": 3.04},
        }
    st = None
    if stats:
        st = {
            "z_expected": 2.71,
            "cls_upper_limit_expected": 0.83,
            "cls_band": {"-2": 0.44, "-1": 0.6, "+1": 1.16, "+2": 1.56},
            "bin_edges": [0.0, 0.25, 0.5, 0.75, 1.0],
            "s": [1.0, 4.0, 9.0, 20.0],
            "b": [900.0, 300.0, 80.0, 10.0],
            "workspace": "out/workspace.json",
        }
    return ReportInput(
        title="ttH vs tt̄ <test> & co",
        features=features,
        X=X,
        y=y,
        w=w,
        class_names={1: "signal", 0: "background"},
        correlation=corr,
        models=models,
        best_model=models[best].name,
        cut_scan=scan,
        stats=st,
        config_text=CONFIG_WITH_SCRIPT,
        provenance={
            "time": "2025-01-01T00:00:00",
            "command": "fivesigma run cfg.yaml",
            "versions": {"numpy": np.__version__, "fivesigma": "0.1.0"},
            "data_fingerprint": "sha256:abc",
        },
        n_events={"train": n // 2, "validation": n // 4, "test": n // 4},
    )


def expected_images(rep: ReportInput) -> int:
    n = 1 + len(rep.correlation) + 1  # inputs grid, heatmaps, ROC
    for m in rep.models:
        n += 1 + bool(m.history) + bool(m.ranking)
    return n + (rep.cut_scan is not None) + (rep.stats is not None)


class StructureChecker(HTMLParser):
    """Tracks the open-element stack; records mismatches, ids, anchors and image sources."""

    VOID: ClassVar[set[str]] = {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
    }

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: list[str] = []
        self.hrefs: list[str] = []
        self.img_src: list[str] = []
        self.scripts = 0
        self.seen: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.seen.add(tag)
        if "id" in a:
            self.ids.append(a["id"] or "")
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"] or "")
        if tag == "img":
            self.img_src.append(a.get("src") or "")
        if tag == "script":
            self.scripts += 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> StructureChecker:
    checker = StructureChecker()
    checker.feed(html)
    checker.close()
    return checker


# One full and one minimal report, rendered once per test module (rendering takes seconds).
CASES = {
    "full": dict(n_features=12, n_models=3, history=True, cut_scan=True, stats=True, best=1),
    "minimal": dict(n_features=2, n_models=2),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def rendered(request, tmp_path_factory) -> tuple[ReportInput, Path, str]:
    rep = make_report(**CASES[request.param])
    out = tmp_path_factory.mktemp(request.param) / "run" / "report.html"
    path = write_report(rep, out)
    return rep, path, path.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- report.html


def test_report_is_one_self_contained_file(rendered):
    _, path, html = rendered
    assert path.is_file()
    # Nothing else beside it: no temporary left over, no side files with images.
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]
    lowered = html.lower()
    for bad in (
        'src="http',
        "src='http",
        'href="http',
        "href='http",
        "<script",
        "@import",
        "url(",
        "<link",
    ):
        assert bad not in lowered, bad
    checker = parse(html)
    assert checker.scripts == 0
    assert 'class="figure-error"' not in html  # every figure was drawn
    assert checker.img_src, "no images"
    assert all(src.startswith("data:image/png;base64,") for src in checker.img_src)


def test_report_embeds_every_figure_as_png(rendered):
    rep, _, html = rendered
    uris = re.findall(r'data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(uris) >= expected_images(rep)
    for b64 in uris:
        assert base64.b64decode(b64).startswith(b"\x89PNG\r\n\x1a\n")


def test_report_has_all_sections_models_and_toc(rendered):
    rep, _, html = rendered
    checker = parse(html)
    assert checker.errors == [], checker.errors[:5]
    assert checker.stack == [], f"unclosed elements: {checker.stack}"
    assert {"html", "head", "title", "body", "nav", "main", "table", "section"} <= checker.seen
    text = "".join(checker.text)
    for anchor, heading in SECTIONS:
        assert f"<h2>{heading}</h2>" in html
        assert anchor in checker.ids
    for m in rep.models:
        assert m.name in text
    # Every in-page link of the table of contents points at an existing id, ids unique.
    assert len(checker.ids) == len(set(checker.ids))
    internal = [h[1:] for h in checker.hrefs if h.startswith("#")]
    assert internal and set(internal) <= set(checker.ids)
    assert all(h.startswith("#") for h in checker.hrefs)


def test_best_model_is_marked_and_table_ranked_by_auc(rendered):
    rep, _, html = rendered
    best_slug = f"model-{rep.best_model}"
    assert re.search(rf'<tr id="summary-{best_slug}" class="best">', html)
    assert html.count('class="best"') == 1
    article = html.split(f'<article id="{best_slug}">', 1)[1].split("</article>", 1)[0]
    assert '<span class="badge">best</span>' in article
    order = re.findall(r'<tr id="summary-model-([\w-]+)"', html)
    by_auc = sorted(rep.models, key=lambda m: -m.metrics["auc_test"])
    assert order == [m.name for m in by_auc]


def test_summary_shows_the_given_metrics(rendered):
    rep, _, html = rendered
    for m in rep.models:
        row = html.split(f'<tr id="summary-model-{m.name}"', 1)[1].split("</tr>", 1)[0]
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
        assert f"{m.metrics['eff_s_at_eff_b']['0.01']:.3g}" in cells
        assert "41.5" in cells and "12.25" in cells  # 1/eps_B at eps_S 30% and 50%
        assert f"{m.metrics['n_parameters']:,}" in cells


def test_config_text_is_escaped(rendered):
    _, _, html = rendered
    assert "<script>" not in html
    assert "&lt;script&gt;alert(" in html
    assert "a &amp; b" in html
    assert "ttH vs tt̄ &lt;test&gt; &amp; co" in html
    pre = html.split("<pre>", 1)[1].split("</pre>", 1)[0]
    assert "&lt;/script&gt;" in pre


def test_physics_result_and_scan_shown_only_when_given(rendered):
    rep, _, html = rendered
    if rep.stats is not None:
        assert "Z = 2.71σ" in html
        assert "μ &lt; 0.83" in html
        assert "0.6 – 1.16" in html and "0.44 – 1.56" in html  # ±1σ and ±2σ bands
        assert "out/workspace.json" in html
    else:
        assert "No statistical analysis in this run." in html
    if rep.cut_scan is not None:
        assert "score ≥ 0.5 keeps s = 50" in html
    else:
        assert "No significance scan in this run." in html


def test_ks_pvalue_below_005_flagged_red(tmp_path):
    rep = make_report(n_features=2, n_models=2)
    rep.models[1].metrics["ks_pvalue_background"] = 0.012
    html = write_report(rep, tmp_path / "report.html").read_text()
    alarms = re.findall(r'<td class="alarm"[^>]*>([^<]*)</td>', html)
    assert alarms == ["0.012"]
    article = html.split(f'<article id="model-{rep.models[1].name}">', 1)[1]
    assert "possible" in article.split("</article>", 1)[0]
    assert (
        '<p class="alarm">'
        not in html.split(f'<article id="model-{rep.models[0].name}">')[1].split("</article>", 1)[0]
    )


def test_cut_scan_object_from_metrics_is_accepted(tmp_path):
    from fivesigma.metrics import cut_scan

    rep = make_report(n_features=2, n_models=2)
    m = rep.models[0]
    scan = cut_scan(m.y_test, m.score_test, np.abs(m.w_test), n_thresholds=30)
    rep.cut_scan = scan
    html = write_report(rep, tmp_path / "report.html").read_text()
    assert f"score ≥ {scan.best.threshold:.4g} keeps" in html


def test_failing_figure_gives_an_error_note_and_the_rest_of_the_report(
    tmp_path, monkeypatch, caplog
):
    def broken(*args, **kwargs):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(report_plots, "roc_figure", broken)
    rep = make_report(n_features=2, n_models=2)
    with caplog.at_level("WARNING", logger="fivesigma.report"):
        html = write_report(rep, tmp_path / "report.html").read_text()
    roc = html.split('<section id="roc">', 1)[1].split("</section>", 1)[0]
    assert '<p class="figure-error">' in roc and "RuntimeError: plot failed" in roc
    assert "data:image/png" not in roc
    # Every other section and figure is still there.
    for anchor, heading in SECTIONS:
        assert f'<section id="{anchor}">' in html and f"<h2>{heading}</h2>" in html
    assert html.count("data:image/png;base64,") == expected_images(rep) - 1
    assert html.count('class="figure-error"') == 1
    assert any("could not be drawn" in r.getMessage() for r in caplog.records)
    checker = parse(html)
    assert checker.errors == [] and checker.stack == []


def test_error_outside_figures_leaves_no_report(tmp_path, monkeypatch):
    from fivesigma.report import builder

    out = tmp_path / "report.html"
    out.write_text("previous report")

    def broken(*args, **kwargs):
        raise RuntimeError("render failed")

    # The provenance table is the last block rendered: every figure is drawn by then.
    monkeypatch.setattr(builder, "_key_values_node", broken)
    with pytest.raises(RuntimeError, match="render failed"):
        write_report(make_report(n_features=2, n_models=2), out)
    # The earlier report is untouched and no temporary is left beside it.
    assert out.read_text() == "previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]

    out.unlink()
    with pytest.raises(RuntimeError):
        write_report(make_report(n_features=2, n_models=2), out)
    assert list(tmp_path.iterdir()) == []


def test_inconsistent_input_is_a_one_line_error(tmp_path):
    rep = make_report(n_features=2, n_models=2)
    rep.best_model = "mlp_smal"
    with pytest.raises(ReportError, match="did you mean 'mlp_small'") as err:
        write_report(rep, tmp_path / "report.html")
    assert isinstance(err.value, FivesigmaError) and "\n" not in str(err.value)

    rep = make_report(n_features=3, n_models=2)
    rep.features = rep.features[:2]
    with pytest.raises(ReportError, match="expected"):
        write_report(rep, tmp_path / "report.html")

    rep = make_report(n_features=2, n_models=2)
    rep.models[0].w_test = rep.models[0].w_test[:-1]
    with pytest.raises(ReportError, match="'bdt'.*test"):
        write_report(rep, tmp_path / "report.html")
    assert not (tmp_path / "report.html").exists()


# --------------------------------------------------------------------------- plots


def _weighted_toy(n: int = 5000, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian values with NLO-like weights: about 15% of them negative."""
    rng = np.random.default_rng(seed)
    x, w = rng.normal(size=n), rng.uniform(0.5, 2.0, n)
    w[rng.random(n) < 0.15] *= -1.0
    return x, w


def test_weighted_hist_is_a_weight_storage_hist_matching_numpy():
    import hist

    x, w = _weighted_toy()
    assert np.any(w < 0)
    edges = np.linspace(-6, 6, 25)  # wide: nothing to fold into the edge bins
    h = weighted_hist(x, w, edges)
    assert isinstance(h, hist.Hist)
    assert isinstance(h.storage_type(), hist.storage.Weight)
    np.testing.assert_allclose(h.axes[0].edges, edges)
    ref = np.histogram(x, bins=edges, weights=w)[0]
    ref_w2 = np.histogram(x, bins=edges, weights=w**2)[0]
    np.testing.assert_allclose(h.values(), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h.variances(), ref_w2, rtol=1e-12)
    np.testing.assert_allclose(bin_errors(h), np.sqrt(ref_w2), rtol=1e-12)
    assert h.sum(flow=True).value == pytest.approx(w.sum())


def test_weighted_hist_folds_overflow_and_drops_non_finite():
    x = np.array([-10.0, 0.5, 10.0, np.nan, 1.5])
    w = np.array([-1.0, -2.0, 0.5, 1.0, np.inf])
    edges = np.array([0.0, 1.0, 2.0])
    h = weighted_hist(x, w, edges)
    # Under/overflow in the edge bins; the NaN value and the infinite weight are dropped.
    np.testing.assert_allclose(h.values(), [-3.0, 0.5])
    np.testing.assert_allclose(h.variances(), [5.0, 0.25])
    np.testing.assert_allclose(h.values(flow=True), [0.0, -3.0, 0.5, 0.0])
    kept = weighted_hist(x, w, edges, fold_flow=False)
    np.testing.assert_allclose(kept.values(flow=True), [-1.0, -2.0, 0.0, 0.5])
    with pytest.raises(ValueError, match="increasing"):
        weighted_hist(x, w, [0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="5 values but 2 weights"):
        weighted_hist(x, w[:2], edges)


def test_density_scales_values_and_errors_and_survives_negative_sum():
    x, w = _weighted_toy(seed=5)
    edges = np.linspace(-6, 6, 25)
    h, normed = density(weighted_hist(x, w, edges))
    assert normed
    ref = np.histogram(x, bins=edges, weights=w, density=True)[0]
    np.testing.assert_allclose(h.values(), ref, rtol=1e-10)
    norm = w.sum() * np.diff(edges)
    ref_err = np.sqrt(np.histogram(x, bins=edges, weights=w**2)[0]) / norm
    np.testing.assert_allclose(bin_errors(h), ref_err, rtol=1e-10)

    neg = weighted_hist(np.array([0.5, 1.5]), np.array([-2.0, 0.5]), np.array([0.0, 1.0, 2.0]))
    same, normed = density(neg)
    # Sum of weights is -1.5 <= 0: left unnormalised for the caller to say so.
    assert not normed and same is neg
    np.testing.assert_allclose(same.values(), [-2.0, 0.5])


def test_histplot_draws_sqrt_sumw2_errors_through_mplhep():
    import mplhep
    from matplotlib.figure import Figure

    x, w = _weighted_toy(n=800)
    h = weighted_hist(x, w, np.linspace(-3, 3, 13))
    ax = Figure().subplots()
    (step,) = histplot(ax, h, histtype="step")
    assert isinstance(step, mplhep.plot.StairsArtists)
    np.testing.assert_allclose(step.stairs.get_data().values, h.values())
    # Symmetric sqrt(sum w^2) errors (no Poisson interval), also where a bin is < 0.
    segments = step.errorbar.lines[2][0].get_segments()
    half = np.array([(seg[1][1] - seg[0][1]) / 2 for seg in segments])
    np.testing.assert_allclose(half, bin_errors(h), rtol=1e-9)
    (points,) = histplot(ax, h, histtype="errorbar")
    assert isinstance(points, mplhep.plot.ErrorBarArtists)
    (fill,) = histplot(ax, h, histtype="fill")
    assert fill.errorbar is None


def test_report_figures_fill_hists_and_draw_them_with_mplhep(monkeypatch):
    import hist
    import mplhep

    calls = []
    original = mplhep.histplot

    def spy(H, *args, **kwargs):
        artists = original(H, *args, **kwargs)
        calls.append((H, kwargs, artists))
        return artists

    monkeypatch.setattr(mplhep, "histplot", spy)
    rep = make_report(n_features=3, n_models=1)
    m = rep.models[0]
    fig = report_plots.score_distribution_figure(
        m.name, m.score_train, m.y_train, m.w_train, m.score_test, m.y_test, m.w_test
    )
    assert len(calls) == 6  # per class: test filled + outline, train points
    for H, kwargs, artists in calls:
        assert isinstance(H, hist.Hist) and isinstance(H.storage_type(), hist.storage.Weight)
        assert kwargs["w2method"] == "sqrt" and kwargs["flow"] == "none"
        assert artists and isinstance(
            artists[0], mplhep.plot.StairsArtists | mplhep.plot.ErrorBarArtists
        )
    # The train points of the signal: the weighted, normalised numpy histogram.
    train_sig = next(H for H, kw, _ in calls if kw["histtype"] == "errorbar")
    sig = m.y_train == 1
    edges = train_sig.axes[0].edges
    ref = np.histogram(m.score_train[sig], bins=edges, weights=m.w_train[sig], density=True)[0]
    np.testing.assert_allclose(train_sig.values(), ref, rtol=1e-10)
    report_plots.fig_to_data_uri(fig)

    calls.clear()
    report_plots.fig_to_data_uri(
        report_plots.input_distributions_figure(rep.X, rep.y, rep.w, rep.features)
    )
    assert len(calls) == 3 * len(rep.features)
    calls.clear()
    edges, s, b = [0.0, 0.5, 1.0], [1.0, 5.0], [50.0, 5.0]
    report_plots.fig_to_data_uri(report_plots.stats_figure(edges, s, b))
    stacked = calls[0][0]
    np.testing.assert_allclose([h.values() for h in stacked], [b, s])


def test_figures_carry_a_neutral_configurable_label_and_leave_rcparams_alone():
    import matplotlib

    from fivesigma.report.style import ExpLabel, use_label

    before = dict(matplotlib.rcParams)

    def texts(fig) -> list[str]:
        return [t.get_text() for ax in fig.axes for t in ax.texts] + [
            ax.get_title(loc="right") for ax in fig.axes
        ]

    history = {"train_loss": [0.7, 0.6], "val_loss": [0.72, 0.65]}
    fig = report_plots.training_history_figure("m", history)
    default = texts(fig)
    assert "fivesigma" in default and "m: training history" in default
    assert not any(exp in t for t in default for exp in ("CMS", "ATLAS", "LHCb", "ALICE"))
    report_plots.fig_to_data_uri(fig)
    with use_label(ExpLabel("fivesigma", "Simulation")):
        fig = report_plots.training_history_figure("m", history)
    assert {"fivesigma", "Simulation"} <= set(texts(fig))
    report_plots.fig_to_data_uri(fig)
    with use_label(None):
        fig = report_plots.training_history_figure("m", history)
    assert "fivesigma" not in texts(fig) and "m: training history" in texts(fig)
    report_plots.fig_to_data_uri(fig)
    # The style was a context: nothing of it stays in the global rcParams.
    assert dict(matplotlib.rcParams) == before


def test_plots_with_negative_total_weight_do_not_crash():
    rng = np.random.default_rng(4)
    n = 400
    X, y = rng.normal(size=(n, 2)), np.r_[np.ones(n // 2), np.zeros(n // 2)]
    w = np.where(y == 1, -1.0, 1.0)  # signal sums to a negative number
    fig = report_plots.input_distributions_figure(X, y, w, ["a", "b"])
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert any("unnormalised" in lab for lab in labels)
    assert report_plots.fig_to_data_uri(fig).startswith("data:image/png;base64,")
    fig = report_plots.score_distribution_figure("m", rng.random(n), y, w, rng.random(n), y, w)
    assert report_plots.fig_to_data_uri(fig).startswith("data:image/png;base64,")


def test_fig_to_data_uri_is_a_png_and_releases_the_figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1], [1, 0])
    uri = report_plots.fig_to_data_uri(fig)
    png = base64.b64decode(uri.split(",", 1)[1])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    # PNG IHDR width/height at dpi 100: 200 x 100 pixels.
    assert int.from_bytes(png[16:20], "big") == 200
    assert int.from_bytes(png[20:24], "big") == 100
    assert fig.axes == []


# --------------------------------------------------------------------------- builder


def _toy_figure():
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(2, 1.5))
    fig.subplots().plot([0, 1], [1, 0])
    return fig


def test_builder_renders_every_block_type(tmp_path):
    ready = _toy_figure()
    rep = Report("Toy <report>", subtitle=markup("made by <em>{}</em>", "a & b"))
    rep.section("Results").add(
        Text("x < y & z"),
        Text("first line\n  <second>", pre=True),
        Table(
            ["name", "value", Cell("n", title="count")],
            [
                ["pi", 3.14159265, 12345],
                Row(["e", float("nan"), None], id="row-e", cls="best"),
                [Cell("link", href="#details"), Cell(0.012, "alarm", "too small", digits=2), 7],
            ],
        ),
        Box([Text(markup("Result: <strong>{}</strong>", 5.0))]),
    )
    rep.section("Figures", anchor="figs").add(
        Grid(
            [
                Figure(ready, caption="a ready figure", alt="ready"),
                Figure(_toy_figure, caption=markup("drawn <em>late</em>"), alt="late"),
            ]
        ),
        Group("Sub part", [Text("inside")], anchor="sub", note="(note)", badge="new"),
    )
    rep.section("Settings", anchor="details").add(
        Details("all of it", [KeyValues({"a": {"b": 1.5, "c": [1, 2]}, "d": None}, header=None)]),
        KeyValues([("path", "/tmp/x"), ("seed", 7)]),
    )
    html = rep.write(tmp_path / "r" / "report.html").read_text()
    checker = parse(html)
    assert checker.errors == [] and checker.stack == [] and checker.scripts == 0
    assert len(checker.ids) == len(set(checker.ids))
    assert {"results", "figs", "details", "sub", "row-e"} <= set(checker.ids)
    internal = [h[1:] for h in checker.hrefs if h.startswith("#")]
    assert {"results", "figs", "details", "sub"} <= set(internal) <= set(checker.ids)
    # Text: escaped; pre keeps its lines; markup is trusted, its arguments escaped.
    assert "<h1>Toy &lt;report&gt;</h1>" in html and "made by <em>a &amp; b</em>" in html
    assert "<p>x &lt; y &amp; z</p>" in html
    assert "<pre>first line\n  &lt;second&gt;</pre>" in html
    assert '<div class="result">' in html and "Result: <strong>5.0</strong>" in html
    # Table: numbers formatted the same way everywhere, classes, tooltips, links, row ids.
    cells = re.findall(r"<td[^>]*>(.*?)</td>", html.split("<table>", 1)[1].split("</table>")[0])
    assert cells[:6] == ["pi", "3.142", "12,345", "e", "—", "—"]
    assert '<th title="count">n</th>' in html
    assert '<tr id="row-e" class="best">' in html
    assert '<td class="alarm" title="too small">0.012</td>' in html
    assert '<td class="name"><a href="#details">link</a></td>' in html
    # Figures: embedded PNGs, captions, and the ready figure was closed.
    assert checker.img_src and all(
        base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG") for src in checker.img_src
    )
    assert len(checker.img_src) == 2 and ready.axes == []
    assert "<figcaption>drawn <em>late</em></figcaption>" in html
    # Group, details, key/values (nested keys flattened, lists joined, None as a dash).
    assert '<article id="sub">' in html and '<span class="badge">new</span>' in html
    assert "<summary>all of it</summary>" in html
    assert '<td class="key">a.b</td><td class="text">1.5</td>' in html
    assert '<td class="key">a.c</td><td class="text">1, 2</td>' in html
    assert '<td class="key">d</td><td class="text">—</td>' in html
    assert '<th class="key">item</th>' in html  # the default KeyValues header


def test_builder_figure_error_gives_a_note_and_keeps_the_rest(tmp_path):
    def broken():
        raise ValueError("no data <here>")

    rep = Report("Toy")
    rep.section("Plots").add(
        Figure(broken, alt="broken plot"),
        Figure(lambda: "not a figure", alt="wrong type"),
        Text("after the figures"),
        Figure(_toy_figure, alt="fine"),
    )
    rep.section("More").add(Text("still here"))
    html = rep.write(tmp_path / "report.html").read_text()
    notes = re.findall(r'<p class="figure-error">(.*?)</p>', html)
    assert notes == [
        "Figure not drawn (broken plot): ValueError: no data &lt;here&gt;",
        "Figure not drawn (wrong type): TypeError: expected a matplotlib figure, got str",
    ]
    assert "after the figures" in html and "still here" in html
    assert html.count("data:image/png;base64,") == 1


def test_builder_write_leaves_nothing_on_error_and_dedupes_anchors(tmp_path):
    out = tmp_path / "report.html"
    rep = Report("Toy")
    rep.section("Same").add(Text("one"))
    rep.section("Same").add(object())
    with pytest.raises(TypeError, match="report block"):
        rep.write(out)
    assert list(tmp_path.iterdir()) == []
    rep.sections[1].blocks = [Text("two")]
    html = rep.write(out).read_text()
    assert '<section id="same">' in html and '<section id="same-2">' in html


def test_missing_plot_library_is_the_install_hint_not_a_figure_note(tmp_path, monkeypatch):
    import sys

    from fivesigma.errors import MissingDependencyError

    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(
        MissingDependencyError, match=r"^matplotlib is needed .*fivesigma\[report\]"
    ):
        write_report(make_report(n_features=2, n_models=2), tmp_path / "report.html")
    assert list(tmp_path.iterdir()) == []


def test_fmt_number_is_the_one_number_format():
    assert fmt_number(0.051749) == "0.05175"
    assert fmt_number(0.051749, 3) == "0.0517"
    assert fmt_number(np.int64(1234567)) == "1,234,567"
    assert fmt_number(float("inf")) == "∞" and fmt_number(-np.inf) == "−∞"
    assert fmt_number(None) == "—" and fmt_number(np.float32("nan")) == "—"
    assert fmt_number(np.bool_(False)) == "no" and fmt_number("text") == "text"


def test_importing_fivesigma_report_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, fivesigma.report; "
        "heavy = ('torch', 'matplotlib', 'mplhep', 'hist', 'boost_histogram', 'jinja2'); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- metrics.json


def _strict_loads(text: str):
    def reject(token: str):
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=reject)


@dataclass
class _Best:
    threshold: float
    z: float


def test_metrics_json_is_strict_and_converts_numpy(tmp_path):
    data = {
        "zeta": np.float32(0.5),
        "alpha": {"nan": float("nan"), "inf": np.inf, "ninf": -np.inf, "n": np.int64(7)},
        "flag": np.bool_(True),
        "arr": np.array([[1.0, np.nan], [np.inf, 2.0]]),
        "ints": np.arange(3, dtype=np.int16),
        "tuple": (np.float64(1.5), None, "x"),
        "path": tmp_path / "a.json",
        "best": _Best(threshold=0.5, z=float("nan")),
        3: "numeric key",
    }
    out = write_metrics_json(data, tmp_path / "sub" / "metrics.json")
    parsed = _strict_loads(out.read_text(encoding="utf-8"))
    assert parsed == {
        "zeta": 0.5,
        "alpha": {"nan": None, "inf": None, "ninf": None, "n": 7},
        "flag": True,
        "arr": [[1.0, None], [None, 2.0]],
        "ints": [0, 1, 2],
        "tuple": [1.5, None, "x"],
        "path": str(tmp_path / "a.json"),
        "best": {"threshold": 0.5, "z": None},
        "3": "numeric key",
    }
    assert list(parsed) == ["zeta", "alpha", "flag", "arr", "ints", "tuple", "path", "best", "3"]
    assert "NaN" not in out.read_text() and "Infinity" not in out.read_text()
    assert sorted(p.name for p in out.parent.iterdir()) == ["metrics.json"]


def test_metrics_json_rejects_unknown_objects_without_writing(tmp_path):
    out = tmp_path / "metrics.json"
    with pytest.raises(ReportError, match=r"\$\.models\.bdt"):
        write_metrics_json({"models": {"bdt": object()}}, out)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_report_metrics_round_trips_through_json(tmp_path):
    rep = make_report(n_features=2, n_models=2, cut_scan=True, stats=True)
    rep.models[0].metrics["auc_train"] = float("nan")
    parsed = _strict_loads(write_metrics_json(report_metrics(rep), tmp_path / "m.json").read_text())
    assert parsed["best_model"] == rep.best_model
    assert parsed["models"]["bdt"]["auc_train"] is None
    assert parsed["models"]["mlp_small"]["eff_s_at_eff_b"]["0.01"] == pytest.approx(0.0527)
    assert parsed["cut_scan"] == {"threshold": 0.5, "s": 50.0, "b": 250.0, "z": 3.04}
    assert parsed["stats"]["cls_band"]["+2"] == 1.56 and "s" not in parsed["stats"]


def test_stats_result_without_yields_falls_back_to_best_model_histogram(tmp_path):
    from fivesigma.stats.inference import StatsResult

    rep = make_report(n_features=2, n_models=2)
    rep.stats = StatsResult(
        z_expected=1.25,
        cls_upper_limit_expected=2.5,
        cls_band={"-2": 1.3, "-1": 1.8, "+1": 3.5, "+2": 4.7},
        n_bins=2,
        bin_edges=[0.0, 0.5, 1.0],
    )
    html = write_report(rep, tmp_path / "report.html").read_text()
    assert "Z = 1.25σ" in html and "μ &lt; 2.5" in html and "1.8 – 3.5" in html
    assert "per-bin yields were not given" in html
    stats_section = html.split('<section id="stats">', 1)[1].split("</section>", 1)[0]
    assert stats_section.count("data:image/png;base64,") == 1
