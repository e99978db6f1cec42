"""Graph features, the GNN edge classifier and the metric-learning graph of the tracking task."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_geometric")

from _tracking_toys import toy_event  # noqa: E402
from fivesigma.errors import ConfigError, DataError, ModelError  # noqa: E402
from fivesigma.tasks.tracking.embedding import (  # noqa: E402
    EMBEDDING_FEATURES,
    MetricLearningGraph,
    embedding_features,
    graph_metrics,
)
from fivesigma.tasks.tracking.features import (  # noqa: E402
    EDGE_CLIP,
    EDGE_FEATURES,
    NODE_FEATURES,
    edge_features,
    node_features,
    to_graph,
)
from fivesigma.tasks.tracking.gnn import (  # noqa: E402
    EdgeClassifier,
    edge_metrics,
    split_graph,
)
from fivesigma.tasks.tracking.hits import Hits, cluster_incidence, orient_edges  # noqa: E402

#: small and fast, but enough to learn the toy geometry
FAST = {"hidden": 16, "iterations": 3, "epochs": 15, "lr": 3e-3, "num_threads": 1}


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def candidate_edges(hits: Hits, dphi_max: float = 0.2) -> np.ndarray:
    """All pairs of hits on adjacent layers (in layer_key order) within a phi window."""
    keys = np.unique(hits.layer_key)
    phi = hits.phi
    found = []
    for inner, outer in itertools.pairwise(keys):
        a = np.flatnonzero(hits.layer_key == inner)
        b = np.flatnonzero(hits.layer_key == outer)
        dphi = np.remainder(phi[b][None, :] - phi[a][:, None] + np.pi, 2 * np.pi) - np.pi
        i, j = np.nonzero(np.abs(dphi) < dphi_max)
        found.append(np.stack([a[i], b[j]]))
    return orient_edges(hits, np.concatenate(found, axis=1))


@pytest.fixture(scope="module")
def events() -> list[Hits]:
    return [Hits.from_event(toy_event(100, seed=s, noise=20, event_id=s + 1)) for s in range(5)]


@pytest.fixture(scope="module")
def graphs(events):
    return [to_graph(h, candidate_edges(h)) for h in events]


@pytest.fixture(scope="module")
def trained(graphs) -> EdgeClassifier:
    return EdgeClassifier(**FAST).fit(graphs[:3], graphs[3:4])


# --------------------------------------------------------------------------------------
# Features


def test_node_and_edge_features(events):
    hits = events[0]
    x = node_features(hits)
    assert x.dtype == np.float32 and x.shape == (len(hits), len(NODE_FEATURES))
    np.testing.assert_allclose(x[:, 0], hits.r / 1000, rtol=1e-6)
    np.testing.assert_allclose(x[:, 1], hits.phi / np.pi, rtol=1e-6)
    assert np.abs(x).max() < 3
    edges = candidate_edges(hits)
    e = edge_features(hits, edges)
    assert e.dtype == np.float32 and e.shape == (edges.shape[1], len(EDGE_FEATURES))
    assert np.abs(e).max() <= EDGE_CLIP
    # true edges come from the beam spot: |z0| small, and they are inner -> outer (dr > 0)
    true = hits.edge_truth(edges)
    z0 = e[true, EDGE_FEATURES.index("z0")] * 100
    assert np.median(np.abs(z0)) < 60
    assert (e[true, EDGE_FEATURES.index("dr")] > 0).all()


def test_dphi_is_wrapped_across_the_seam():
    h = Hits(
        1,
        np.arange(2),
        np.array([-100.0, -200.0]),
        np.array([0.01, -0.02]),  # phi just below +pi and just above -pi
        np.zeros(2),
        np.full(2, 8),
        np.array([2, 4]),
        np.ones(2, dtype=np.int64),
    )
    dphi = edge_features(h, np.array([[0], [1]]))[0, EDGE_FEATURES.index("dphi")] * 0.1
    assert abs(dphi) < 0.001  # not ~2 pi


def _hits_on_modules(geo, modules: np.ndarray) -> Hits:
    """One hit at the centre of each module (rows of ``geo``)."""
    c = geo.center[modules]
    return Hits(1, np.arange(len(modules)) + 1, c[:, 0], c[:, 1], c[:, 2],
                geo.volume_id[modules], geo.layer_id[modules], geo.module_id[modules])  # fmt: skip


def test_cluster_incidence_by_hand():
    import pandas as pd

    from fivesigma.physics.tracker import default_geometry

    geo = default_geometry()
    pixel = int(np.flatnonzero(geo.volume_id == 8)[0])
    strip = int(np.flatnonzero(geo.volume_id == 13)[0])
    hits = _hits_on_modules(geo, np.array([pixel, strip, pixel]))
    # hit 1: 1 x 3 pixels (a crossing inclined along v); hit 2: 3 strips; hit 3: no cells
    cells = pd.DataFrame({"hit_id": [1, 1, 1, 2, 2, 2], "ch0": [7, 7, 7, 4, 5, 6],
                          "ch1": [10, 11, 12, 0, 0, 0], "value": 1.0})  # fmt: skip
    tan, frame = cluster_incidence(hits, cells, geo)
    assert tan[0, 0] == 0.0
    assert tan[0, 1] == pytest.approx(2 * geo.pitch_v[pixel] / geo.thickness[pixel])
    assert tan[1, 0] == pytest.approx(2 * geo.pitch_u[strip] / geo.thickness[strip])
    assert np.isnan(tan[1, 1]) and np.isnan(tan[2]).all()  # a strip's v; no cells
    np.testing.assert_allclose(frame[0], geo.rotation[pixel], atol=1e-6)
    # a module the geometry does not know: no cluster shapes rather than an error
    other = _hits_on_modules(geo, np.array([pixel]))
    other.module_id = np.array([99999])
    assert cluster_incidence(other, cells, geo) == (None, None)

    # the edge that crosses hit 1's sensor at its cluster's incidence is compatible (0);
    # one three times as steep is not
    hits.cluster, hits.frame = tan, frame
    x = node_features(hits)
    assert x[0, NODE_FEATURES.index("cv")] == pytest.approx(np.arcsinh(tan[0, 1]) / 3, rel=1e-6)
    assert x[1, NODE_FEATURES.index("cv")] == 0.0 and not x[2, 4:].any()  # nothing measured
    cv = EDGE_FEATURES.index("cv_src")
    for steep, expected in ((1.0, 0.0), (3.0, np.arcsinh(3 * tan[0, 1]) - np.arcsinh(tan[0, 1]))):
        local = np.array([0.0, steep * tan[0, 1], 1.0]) * 50.0
        pair = Hits(1, np.arange(2), *np.stack([hits.x[[0]], hits.y[[0]], hits.z[[0]]]).repeat(
            2, axis=1), np.full(2, 8), np.array([2, 4]), np.ones(2, np.int64))  # fmt: skip
        end = geo.rotation[pixel] @ local
        pair.x[1] += end[0]
        pair.y[1] += end[1]
        pair.z[1] += end[2]
        pair.cluster, pair.frame = tan[[0, 0]], frame[[0, 0]]
        f = edge_features(pair, np.array([[0], [1]]))[0]
        assert f[cv] == pytest.approx(expected, abs=1e-4)
    # without cells every compatibility is 0
    plain = _hits_on_modules(geo, np.array([pixel, pixel]))
    plain.z = plain.z + np.array([0.0, 30.0])
    plain.x = plain.x * np.array([1.0, 1.5])
    assert not edge_features(plain, np.array([[0], [1]]))[0, 6:].any()


@pytest.mark.skipif(
    not Path("/work/shared/data/trackml_subset_gnn_tracking/event000000001-cells.csv.gz").is_file(),
    reason="shared TrackML data absent",
)
def test_cluster_compatibility_tells_true_edges_on_the_real_event():
    from fivesigma.tasks.tracking.task import load_hits

    hits = load_hits(
        Path("/work/shared/data/trackml_subset_gnn_tracking/event000000001"), need_truth=True
    )
    true = orient_edges(hits, hits.truth_edges())
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, len(hits), (2, 200_000))
    dphi = np.abs(np.remainder(hits.phi[a] - hits.phi[b] + np.pi, 2 * np.pi) - np.pi)
    near = orient_edges(
        hits, np.stack([a, b])[:, (dphi < 0.05) & (np.abs(hits.r[a] - hits.r[b]) > 20)]
    )
    false = near[:, ~hits.edge_truth(near)]
    cv = [EDGE_FEATURES.index("cv_src"), EDGE_FEATURES.index("cv_dst")]
    t = np.abs(edge_features(hits, true)[:, cv]).mean()
    f = np.abs(edge_features(hits, false)[:, cv]).mean()
    assert false.shape[1] > 100 and f > 3 * t


def test_to_graph(events):
    hits = events[0]
    edges = candidate_edges(hits)
    g = to_graph(hits, edges)
    assert g.num_nodes == len(hits) and g.x.dtype == torch.float32
    assert g.edge_index.dtype == torch.int64 and g.edge_index.shape == (2, edges.shape[1])
    assert g.edge_attr.shape == (edges.shape[1], len(EDGE_FEATURES))
    np.testing.assert_array_equal(g.y.numpy(), hits.edge_truth(edges).astype(np.float32))
    assert 0 < g.y.mean() < 0.5
    assert not hasattr(to_graph(hits, edges, with_truth=False), "y") or (
        to_graph(hits, edges, with_truth=False).y is None
    )
    empty = to_graph(hits, np.zeros((2, 0), dtype=np.int64))
    assert empty.edge_attr.shape == (0, len(EDGE_FEATURES))
    for bad, match in (
        (np.zeros((3, 4), dtype=np.int64), r"shape \(2, edges\)"),
        (np.array([[0], [len(hits)]]), "outside"),
        (np.array([[0.5], [1.0]]), "integer hit indices"),
    ):
        with pytest.raises(DataError, match=match):
            to_graph(hits, bad)


# --------------------------------------------------------------------------------------
# Edge classifier


def test_trained_classifier_separates_true_edges(trained, graphs):
    held_out = graphs[4]
    scores = trained.predict(held_out)
    assert scores.dtype == np.float32 and scores.shape == (held_out.edge_index.shape[1],)
    assert scores.min() >= 0 and scores.max() <= 1
    m = edge_metrics(scores, held_out.y.numpy(), 0.5)
    assert m["auc"] > 0.95
    assert m["efficiency"] > 0.9 and m["purity"] > 0.6
    assert trained.history_.epochs_run >= 1
    assert trained.pos_weight_ > 1  # more fake than true edges
    assert trained.score([held_out])["auc"] == pytest.approx(m["auc"])


def test_predict_edges_from_hits(trained, events, graphs):
    edges = candidate_edges(events[4])
    np.testing.assert_array_equal(
        trained.predict_edges(events[4], edges), trained.predict(graphs[4])
    )


def test_save_load_gives_identical_scores(trained, graphs, tmp_path):
    path = trained.save(tmp_path / "gnn")
    loaded = EdgeClassifier.load(path)
    np.testing.assert_array_equal(loaded.predict(graphs[4]), trained.predict(graphs[4]))
    assert loaded.settings == trained.settings
    assert loaded.history_.train_loss == pytest.approx(trained.history_.train_loss)
    with pytest.raises(ModelError, match="does not exist"):
        EdgeClassifier.load(tmp_path / "nothing")


def test_seeds_reproduce(graphs):
    kw = {**FAST, "epochs": 2}
    a = EdgeClassifier(**kw).fit(graphs[:2], graphs[3:4]).predict(graphs[4])
    b = EdgeClassifier(**kw).fit(graphs[:2], graphs[3:4]).predict(graphs[4])
    c = EdgeClassifier(**{**kw, "seed": 1}).fit(graphs[:2], graphs[3:4]).predict(graphs[4])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_onnx_agrees_with_predict(trained, graphs, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    path = trained.export_onnx(tmp_path / "gnn.onnx")
    session = ort.InferenceSession(str(path))
    g = graphs[4]
    got = session.run(
        None,
        {"x": g.x.numpy(), "edge_index": g.edge_index.numpy(), "edge_attr": g.edge_attr.numpy()},
    )[0]
    np.testing.assert_allclose(got, trained.predict(g), atol=1e-5)


def test_filter_stage(graphs, tmp_path):
    clf = EdgeClassifier(**{**FAST, "epochs": 6, "filter": True, "filter_epochs": 6})
    clf.fit(graphs[:3], graphs[3:4])
    assert clf.filter_ is not None and np.isfinite(clf.filter_cut_)
    g = graphs[4]
    with torch.inference_mode():
        kept = (clf.filter_(g.x, g.edge_index, g.edge_attr) >= clf.filter_cut_).numpy()
    y = g.y.numpy() > 0.5
    assert y[kept].mean() > y.mean()  # the filter removes mostly fakes
    assert kept[y].mean() > 0.95  # and keeps the true edges (99.5% on the validation graph)
    scores = clf.predict(g)
    assert (scores[~kept] == 0).all()
    # save/load and ONNX keep the filter and its cut
    loaded = EdgeClassifier.load(clf.save(tmp_path / "f"))
    np.testing.assert_array_equal(loaded.predict(g), scores)
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(clf.export_onnx(tmp_path / "f.onnx")))
    got = session.run(
        None,
        {"x": g.x.numpy(), "edge_index": g.edge_index.numpy(), "edge_attr": g.edge_attr.numpy()},
    )[0]
    np.testing.assert_allclose(got, scores, atol=1e-5)


def test_split_graph_owns_every_edge_once(graphs):
    g = graphs[0]
    n_edges = g.edge_index.shape[1]
    parts = split_graph(g, max_edges=n_edges // 4, overlap=0.3)
    assert len(parts) == 5  # ceil(E / (E // 4))
    owned = torch.cat([p.edge_ids[p.loss_mask] for p in parts]).sort().values
    torch.testing.assert_close(owned, torch.arange(n_edges))
    for p in parts:
        # a sub-graph's rows are the original graph's, relabelled
        torch.testing.assert_close(p.x, g.x[p.node_ids])
        torch.testing.assert_close(p.edge_attr, g.edge_attr[p.edge_ids])
        torch.testing.assert_close(p.node_ids[p.edge_index], g.edge_index[:, p.edge_ids])
        torch.testing.assert_close(p.y, g.y[p.edge_ids])
        assert p.loss_mask.sum() < n_edges / 3  # balanced by edge count
    whole = split_graph(g, max_edges=n_edges)
    assert len(whole) == 1 and bool(whole[0].loss_mask.all())


def test_training_on_sectors(graphs):
    clf = EdgeClassifier(**{**FAST, "epochs": 2, "max_train_edges": 1500, "loss": "focal"})
    clf.fit(graphs[:2])
    assert clf.history_.epochs_run == 2  # no validation: every epoch runs
    assert np.isfinite(clf.history_.train_loss).all()


def test_edge_metrics_by_hand():
    m = edge_metrics([0.9, 0.8, 0.3, 0.6, 0.1], [1, 1, 1, 0, 0], threshold=0.5)
    # selected: edges 0, 1, 3; true among them: 0, 1 -> efficiency 2/3, purity 2/3
    assert m["efficiency"] == pytest.approx(2 / 3) and m["purity"] == pytest.approx(2 / 3)
    # pairs (true, fake) ordered right: 0.9>0.6, 0.9>0.1, 0.8>0.6, 0.8>0.1, 0.3>0.1 -> 5/6
    assert m["auc"] == pytest.approx(5 / 6)
    assert (m["n_edges"], m["n_true"], m["n_selected"]) == (5, 3, 3)
    assert np.isnan(edge_metrics([0.2], [0])["efficiency"])
    with pytest.raises(DataError, match="one per edge"):
        edge_metrics([0.1, 0.2], [1])


def test_bad_inputs_are_one_line_errors(trained, graphs, events):
    from torch_geometric.data import Data

    g = graphs[4]
    empty = Data(x=torch.zeros(0, len(NODE_FEATURES)), edge_index=torch.zeros(2, 0, dtype=torch.long),
                 edge_attr=torch.zeros(0, len(EDGE_FEATURES)))  # fmt: skip
    wide = g.clone()
    wide.x = torch.zeros(g.num_nodes, 7)
    cases = [
        (lambda: trained.predict(wide), DataError, "x has 7 features per node"),
        (lambda: trained.predict(empty), DataError, "the graph has no nodes"),
        (lambda: EdgeClassifier(**FAST).fit([]), DataError, "the list is empty"),
        (lambda: EdgeClassifier(**FAST).fit(g), DataError, "must be a list"),
        (
            lambda: EdgeClassifier(**FAST).fit([to_graph(events[0], candidate_edges(events[0]),
                                                         with_truth=False)]),
            DataError,
            "no edge truth y",
        ),
        (lambda: EdgeClassifier(hidden_size=3), ConfigError, "no setting 'hidden_size'"),
        (lambda: EdgeClassifier(aggr="median"), ConfigError, "aggr must be one of"),
        (lambda: EdgeClassifier(pos_weight=-1), ConfigError, "pos_weight"),
        (lambda: EdgeClassifier().predict(g), ModelError, "not fitted"),
    ]  # fmt: skip
    for call, error, match in cases:
        with pytest.raises(error, match=match) as err:
            call()
        assert "\n" not in str(err.value)
    # a graph without edges is no error: it has no scores
    no_edges = to_graph(events[0], np.zeros((2, 0), dtype=np.int64), with_truth=False)
    assert trained.predict(no_edges).shape == (0,)


# --------------------------------------------------------------------------------------
# Metric-learning graph


def test_metric_learning_graph(events, tmp_path):
    mlg = MetricLearningGraph(epochs=12, hidden=64, layers=3, num_threads=1)
    mlg.fit(events[:3], events[3:4])
    assert embedding_features(events[4]).shape == (len(events[4]), len(EMBEDDING_FEATURES))
    edges = mlg.build(events[4])
    assert edges.dtype == np.int64 and edges.shape[0] == 2
    # inner -> outer, unique: what orient_edges gives
    np.testing.assert_array_equal(orient_edges(events[4], edges), edges)
    m = graph_metrics(events[4], edges)
    assert m["efficiency"] > 0.95
    assert m["edges_per_hit"] < 20
    assert m["purity"] > 0.08
    loaded = MetricLearningGraph.load(mlg.save(tmp_path / "ml"))
    np.testing.assert_array_equal(loaded.build(events[4]), edges)
    no_truth = Hits(**{**events[0].__dict__, "particle_id": None})
    with pytest.raises(DataError, match="no truth"):
        MetricLearningGraph(epochs=1).fit([no_truth])
    with pytest.raises(ConfigError, match="no setting 'dim'"):
        MetricLearningGraph(dim=3)
    with pytest.raises(ModelError, match="not fitted"):
        MetricLearningGraph().build(events[0])
