"""Graph construction: learnt layer pairs and module maps, and the graph metrics."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np
import pytest

from _tracking_toys import toy_event
from fivesigma.errors import ConfigError, DataError
from fivesigma.tasks.tracking.graph import (
    FEATURES,
    LayerPairGraph,
    ModuleMapGraph,
    doublet_features,
    graph_metrics,
    load_graph_builder,
)
from fivesigma.tasks.tracking.hits import Hits, orient_edges

REAL_EVENT = Path("/work/shared/data/trackml_subset_gnn_tracking/event000000001")


def _hits(seed: int, n: int = 120, noise: int = 40, **kw) -> Hits:
    return Hits.from_event(toy_event(n, seed=seed, noise=noise, **kw))


@pytest.fixture(scope="module")
def train() -> list[Hits]:
    return [_hits(s) for s in range(1, 5)]


@pytest.fixture(scope="module")
def fitted(train) -> LayerPairGraph:
    return LayerPairGraph().fit(train)


def _all_pairs(hits: Hits) -> np.ndarray:
    """Every hit pair once, oriented inner -> outer as orient_edges does."""
    a, b = np.triu_indices(len(hits), 1)
    rho = hits.rho
    swap = rho[a] > rho[b]  # a < b, so ties keep a first, as orient_edges does
    return np.stack([np.where(swap, b, a), np.where(swap, a, b)]).astype(np.int64)


def _lookup(table: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Row of each (inner, outer) key pair in ``table`` (P, 2), or -1."""
    flat = table[:, 0] * 2**31 + table[:, 1]
    order = np.argsort(flat)
    query = keys[0] * 2**31 + keys[1]
    pos = np.minimum(np.searchsorted(flat[order], query), len(flat) - 1)
    return np.where(flat[order][pos] == query, order[pos], -1)


def _brute_force(graph, hits: Hits) -> set[tuple[int, int]]:
    """Every hit pair checked against the learnt pairs and cuts, no search window."""
    edges = _all_pairs(hits)
    lk = hits.layer_key
    pair = _lookup(graph.pairs_, np.stack([lk[edges[0]], lk[edges[1]]]))
    edges, pair = edges[:, pair >= 0], pair[pair >= 0]
    cols = [FEATURES.index(c) for c in graph.cuts]
    f = doublet_features(hits, edges)[:, cols]
    ok = np.all((f >= graph.low_[pair][:, cols]) & (f <= graph.high_[pair][:, cols]), axis=1)
    return set(map(tuple, edges[:, ok].T.tolist()))


def _tiny_hits(pt: tuple[float, float] = (2.0, 0.5)) -> Hits:
    """Two particles of three hits each on layers 2, 4, 6 and one noise hit on layer 4."""
    r = np.array([30.0, 70.0, 110.0, 30.0, 70.0, 110.0, 70.0])
    phi = np.array([0.1, 0.1, 0.1, 2.0, 2.0, 2.0, -1.0])
    pid = np.array([1, 1, 1, 2, 2, 2, 0])
    return Hits(
        event_id=1,
        hit_id=np.arange(1, 8),
        x=r * np.cos(phi),
        y=r * np.sin(phi),
        z=np.zeros(7),
        volume_id=np.full(7, 8),
        layer_id=np.array([2, 4, 6, 2, 4, 6, 4]),
        module_id=np.ones(7, dtype=np.int64),
        particle_id=pid,
        weight=np.full(7, 1 / 7),
        particle_pt=np.where(pid == 1, pt[0], np.where(pid == 2, pt[1], np.nan)),
        particle_eta=np.zeros(7),
        order=r,
    )


# ----------------------------------------------------------------------------------------
def test_learnt_cuts_find_every_true_edge_of_a_clean_high_pt_event():
    train = [_hits(s, n=150, noise=0, pt_range=(1.0, 10.0)) for s in range(1, 5)]
    test = _hits(99, n=150, noise=0, pt_range=(1.0, 10.0))
    graph = LayerPairGraph().fit(train)
    edges = graph.build(test)
    m = graph_metrics(test, edges)
    assert m["efficiency"] > 0.99
    # A clean event at high pT is sparse: few wrong edges.
    assert m["purity"] > 0.5
    assert edges.dtype == np.int64 and edges.shape[0] == 2
    np.testing.assert_array_equal(orient_edges(test, edges), edges)


def test_windowed_search_equals_brute_force(fitted):
    hits = _hits(123, n=150, noise=80)
    expected = _brute_force(fitted, hits)
    assert len(expected) > 100
    assert set(map(tuple, fitted.build(hits).T.tolist())) == expected
    # Tiny chunks and no eta window exercise the chunking and the phi-only search.
    for graph in (
        LayerPairGraph(max_candidates=7).fit([_hits(s) for s in range(1, 5)]),
        LayerPairGraph(cuts=("dphi", "z0")).fit([_hits(s) for s in range(1, 5)]),
    ):
        got = set(map(tuple, graph.build(hits).T.tolist()))
        assert got == _brute_force(graph, hits)


def test_phi_window_wraps_around_pi(fitted):
    hits = _hits(5)
    # Rotate the event so that many tracks straddle phi = +-pi; the graph must not care.
    for angle in (np.pi - 0.01, 1.0):
        c, s = np.cos(angle), np.sin(angle)
        turned = hits.subset(np.arange(len(hits)))
        turned.x, turned.y = c * hits.x - s * hits.y, s * hits.x + c * hits.y
        assert graph_metrics(turned, fitted.build(turned))["efficiency"] > 0.98
        assert set(map(tuple, fitted.build(turned).T.tolist())) == _brute_force(fitted, turned)


def test_pt_min_gives_a_smaller_graph_that_keeps_high_pt_edges(train):
    test = _hits(77, n=200, noise=100)
    full = LayerPairGraph().fit(train)
    high = LayerPairGraph().fit(train, pt_min=1.5)
    e_full, e_high = full.build(test), high.build(test)
    assert e_high.shape[1] < 0.8 * e_full.shape[1]
    assert graph_metrics(test, e_high, pt_min=1.5)["efficiency"] > 0.98
    # ... and loses a clear share of the low-pT particles' edges.
    assert graph_metrics(test, e_high)["efficiency"] < 0.95
    assert high.pt_min_ == 1.5
    # The constructor's pt_min is fit's default (how a config sets it).
    same = LayerPairGraph(pt_min=1.5).fit(train)
    np.testing.assert_array_equal(same.build(test), e_high)
    assert LayerPairGraph(pt_min=1.5).fit(train, pt_min=0.0).pt_min_ == 0.0


def test_more_training_events_only_widen_min_max_cuts(train):
    kw = {"quantiles": (0.0, 1.0), "margin": 0.0, "min_pair_fraction": 0.0, "min_edges": 1}
    few = LayerPairGraph(**kw).fit(train[:2])
    many = LayerPairGraph(**kw).fit(train)
    pairs_many = {tuple(p): k for k, p in enumerate(many.pairs_.tolist())}
    for k, p in enumerate(few.pairs_.tolist()):
        j = pairs_many[tuple(p)]
        assert np.all(many.low_[j] <= few.low_[k]) and np.all(many.high_[j] >= few.high_[k])
    assert many.n_true_.sum() > few.n_true_.sum()
    held_out = _hits(55)
    eff_few = graph_metrics(held_out, few.build(held_out))["efficiency"]
    eff_many = graph_metrics(held_out, many.build(held_out))["efficiency"]
    assert eff_many >= eff_few


def test_rare_layer_pairs_are_dropped(train):
    graph = LayerPairGraph(min_pair_fraction=0.2).fit(train)
    # Each of the 9 consecutive layer pairs holds < 20% of the edges: none is kept.
    assert len(graph.pairs_) == 0
    assert graph.build(train[0]).shape == (2, 0)
    assert len(LayerPairGraph().fit(train).pairs_) == 9


# ----------------------------------------------------------------------------------------
def test_graph_metrics_by_hand():
    hits = _tiny_hits()
    # True: 0-1, 1-2 (particle 1), 3-4 (particle 2, in reverse direction: still true).
    # Wrong: 0-4, 1-6 (noise).  Missing: 4-5.
    edges = np.array([[0, 1, 4, 0, 1], [1, 2, 3, 4, 6]])
    m = graph_metrics(hits, edges)
    assert m["n_edges"] == 5 and m["n_hits"] == 7 and m["n_true_edges"] == 4
    assert m["efficiency"] == pytest.approx(3 / 4)
    assert m["purity"] == pytest.approx(3 / 5)
    assert m["purity_pt"] == pytest.approx(3 / 5)
    assert m["edges_per_hit"] == pytest.approx(5 / 7)
    # Above 1 GeV only particle 1 (pT 2) counts: both its edges are found.
    m = graph_metrics(hits, edges, pt_min=1.0)
    assert m["n_true_edges"] == 2 and m["efficiency"] == 1.0
    assert m["purity"] == pytest.approx(3 / 5) and m["purity_pt"] == pytest.approx(2 / 5)
    empty = graph_metrics(hits, np.zeros((2, 0), dtype=np.int64))
    assert empty["efficiency"] == 0.0 and np.isnan(empty["purity"])


def test_doublet_features_by_hand():
    hits = _tiny_hits()
    hits.z = np.array([10.0, 30.0, 50.0, 0, 0, 0, 0])
    f = doublet_features(hits, np.array([[0], [1]]))[0]
    dphi, slope, z0, deta = f
    assert dphi == pytest.approx(0.0, abs=1e-12) and slope == pytest.approx(0.0, abs=1e-12)
    # The line through (r, z) = (30, 10) and (70, 30) meets r = 0 at z = -5.
    assert z0 == pytest.approx(-5.0)
    assert deta == pytest.approx(np.arcsinh(30 / 70) - np.arcsinh(10 / 30))


# ----------------------------------------------------------------------------------------
def test_save_load_gives_the_same_graph(tmp_path, fitted):
    hits = _hits(31)
    fitted.save(tmp_path / "g")
    meta = json.loads((tmp_path / "g" / "graph.json").read_text())
    assert meta["kind"] == "layer_pairs" and meta["settings"] == fitted.to_dict()
    loaded = LayerPairGraph.load(tmp_path / "g")
    np.testing.assert_array_equal(loaded.build(hits), fitted.build(hits))
    assert loaded.to_dict() == fitted.to_dict()
    assert isinstance(load_graph_builder(tmp_path / "g"), LayerPairGraph)
    with pytest.raises(DataError, match="not 'module_map'"):
        ModuleMapGraph.load(tmp_path / "g")


def test_errors_are_one_line_and_name_the_problem(tmp_path, train):
    with pytest.raises(ConfigError, match="not fitted"):
        LayerPairGraph().build(train[0])
    with pytest.raises(ConfigError, match="not fitted"):
        LayerPairGraph().save(tmp_path / "x")
    with pytest.raises(ConfigError, match="quantiles"):
        LayerPairGraph(quantiles=(0.9, 0.1))
    with pytest.raises(ConfigError, match="unknown cut"):
        LayerPairGraph(cuts=("dphi", "curvature"))
    with pytest.raises(ConfigError, match="margin"):
        LayerPairGraph(margin=-1)
    with pytest.raises(DataError, match="no training events"):
        LayerPairGraph().fit([])
    no_truth = train[0].subset(np.arange(len(train[0])))
    no_truth.particle_id = None
    with pytest.raises(DataError, match="needs the truth"):
        LayerPairGraph().fit([no_truth])
    noise_only = train[0].subset(train[0].particle_id == 0)
    with pytest.raises(DataError, match="no true edge"):
        LayerPairGraph().fit([noise_only])
    with pytest.raises(DataError, match="not a saved graph builder"):
        LayerPairGraph.load(tmp_path)
    with pytest.raises(DataError, match="shape"):
        graph_metrics(train[0], np.zeros((3, 2), dtype=np.int64))
    for err in (ConfigError, DataError):
        try:
            LayerPairGraph(quantiles=(0.9, 0.1)) if err is ConfigError else LayerPairGraph().fit([])
        except err as e:
            assert "\n" not in str(e)


def test_a_graph_beyond_max_edges_is_refused(train):
    graph = LayerPairGraph(max_edges=50).fit(train)
    with pytest.raises(DataError, match="max_edges=50"):
        graph.build(train[0])


def test_empty_event_and_unknown_layers_give_no_edges(fitted):
    hits = _hits(3)
    assert fitted.build(hits.subset(np.zeros(len(hits), dtype=bool))).shape == (2, 0)
    moved = hits.subset(np.arange(len(hits)))
    moved.volume_id = moved.volume_id + 1  # layers the graph never saw
    assert fitted.build(moved).shape == (2, 0)


# ----------------------------------------------------------------------------------------
def _sectored(hits: Hits, n_sectors: int = 12) -> Hits:
    """Module ids from phi sectors, so the toy has several modules per layer."""
    hits.module_id = np.floor((hits.phi + np.pi) / (2 * np.pi) * n_sectors).astype(np.int64)
    return hits


def test_module_map_matches_brute_force_and_needs_many_events(tmp_path):
    train = [_sectored(_hits(s)) for s in range(1, 9)]
    test = _sectored(_hits(321, n=150))
    few = ModuleMapGraph().fit(train[:1])
    many = ModuleMapGraph().fit(train)
    assert len(many.pairs_) > len(few.pairs_)
    eff_few = graph_metrics(test, few.build(test))["efficiency"]
    eff_many = graph_metrics(test, many.build(test))["efficiency"]
    assert eff_few < eff_many
    # On its own training events every true edge is found (its module pair is known).
    assert graph_metrics(train[0], many.build(train[0]))["efficiency"] == 1.0
    # Brute force: every hit pair on a known module pair inside that pair's ranges.
    edges = _all_pairs(test)
    mk = test.layer_key * 1_000_000 + test.module_id
    pair = _lookup(many.pairs_, np.stack([mk[edges[0]], mk[edges[1]]]))
    edges, pair = edges[:, pair >= 0], pair[pair >= 0]
    f = doublet_features(test, edges)
    ok = np.all((f >= many.low_[pair]) & (f <= many.high_[pair]), axis=1)
    assert set(map(tuple, many.build(test).T.tolist())) == set(map(tuple, edges[:, ok].T.tolist()))
    many.save(tmp_path / "mm")
    loaded = load_graph_builder(tmp_path / "mm")
    assert isinstance(loaded, ModuleMapGraph)
    np.testing.assert_array_equal(loaded.build(test), many.build(test))


# ----------------------------------------------------------------------------------------
REAL_KEYS = (802, 804, 806, 808, 1302, 1304, 1306, 1308, 1702, 1704)
REAL_RADII = (32.0, 72.0, 116.0, 172.0, 260.0, 360.0, 500.0, 660.0, 820.0, 1020.0)


def _as_real_barrel(hits: Hits) -> Hits:
    """Toy layers 2, 4, ... renamed as the TrackML barrel layers at about the same radii."""
    keys = np.array(REAL_KEYS)[hits.layer_id // 2 - 1]
    hits.volume_id, hits.layer_id = keys // 100, keys % 100
    return hits


@pytest.mark.skipif(not REAL_EVENT.parent.is_dir(), reason="the TrackML test event is absent")
def test_real_event_graph_from_toy_cuts():
    """Evaluation only: the cuts come from toy events, never from the real event."""
    from fivesigma.io.trackml import read_event

    train = [
        _as_real_barrel(_hits(s, n=300, noise=50, radii=REAL_RADII, pt_range=(0.3, 10.0)))
        for s in range(1, 5)
    ]
    graph = LayerPairGraph().fit(train)
    real = Hits.from_event(read_event(REAL_EVENT))
    start = time.perf_counter()
    edges = graph.build(real)
    assert time.perf_counter() - start < 2.0
    np.testing.assert_array_equal(orient_edges(real, edges), edges)
    # The toy knows consecutive barrel layers only: judge the graph on those true edges.
    truth = orient_edges(real, real.truth_edges())
    lk = real.layer_key
    consecutive = [a * 10_000 + b for a, b in itertools.pairwise(REAL_KEYS)]
    adjacent = np.isin(lk[truth[0]] * 10_000 + lk[truth[1]], consecutive)
    adjacent &= real.particle_pt[truth[0]] > 0.3
    n = len(real)
    found = np.isin(truth[0][adjacent] * n + truth[1][adjacent], edges[0] * n + edges[1])
    assert adjacent.sum() > 500 and found.mean() > 0.85
