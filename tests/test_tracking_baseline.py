"""The classical combinatorial (cellular-automaton) track finder."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from _tracking_toys import toy_event
from fivesigma.errors import ConfigError, DataError
from fivesigma.metrics.tracking import track_matching, trackml_score_normalised
from fivesigma.tasks.tracking.baseline import (
    TRIPLET_FEATURES,
    CombinatorialTracker,
    _ca_states,
    _doublet_pairs,
    _Geometry,
    _layer_triples,
    _resolve,
    triplet_features,
)
from fivesigma.tasks.tracking.hits import Hits, submission_track_ids

REAL_EVENT = Path("/work/shared/data/trackml_subset_gnn_tracking/event000000001")


def _hits(seed: int, n: int = 150, noise: int = 50, **kw) -> Hits:
    return Hits.from_event(toy_event(n, seed=seed, noise=noise, **kw))


def _score(hits: Hits, labels: np.ndarray) -> float:
    ids = submission_track_ids(labels)
    return trackml_score_normalised(hits.hit_id, ids, hits.hit_id, hits.particle_id, hits.weight)


@pytest.fixture(scope="module")
def train() -> list[Hits]:
    return [_hits(s) for s in range(1, 5)]


@pytest.fixture(scope="module")
def tracker(train) -> CombinatorialTracker:
    # The toy's particles go down to 0.5 GeV: learn from all of them.
    return CombinatorialTracker(pt_min=0.0).fit(train)


# ----------------------------------------------------------------------------------------
def test_toy_events_reach_a_high_trackml_score(tracker):
    for seed in (101, 102):
        hits = _hits(seed, n=250, noise=150)
        labels = tracker.reconstruct(hits)
        assert labels.dtype == np.int64 and labels.shape == (len(hits),)
        assert _score(hits, labels) > 0.9
        # Noise rarely ends up on a track.
        noise_on_tracks = np.mean(labels[hits.particle_id == 0] >= 0)
        assert noise_on_tracks < 0.1


def test_pt_min_finds_the_fast_particles_and_skips_the_slow(train):
    hits = _hits(103, n=250, noise=100)
    tracker = CombinatorialTracker(pt_min=2.0).fit(train)
    ids = submission_track_ids(tracker.reconstruct(hits))
    fast = np.unique(hits.particle_id[hits.particle_pt > 2.0])
    slow = np.unique(hits.particle_id[hits.particle_pt < 1.0])
    m = track_matching(hits.hit_id, ids, hits.hit_id, hits.particle_id, selected_particles=fast)
    assert m.efficiency > 0.95
    m = track_matching(hits.hit_id, ids, hits.hit_id, hits.particle_id, selected_particles=slow)
    assert m.efficiency < 0.5


def test_triplet_features_by_hand():
    # Three hits on a circle of radius 100 mm through the origin: d0 = 0, |curv| = 1/100.
    angle = np.array([0.3, 0.6, 0.9])
    x, y = 100 - 100 * np.cos(angle), 100 * np.sin(angle)
    hits = Hits(
        event_id=1,
        hit_id=np.arange(1, 4),
        x=x,
        y=y,
        z=np.hypot(x, y) * 0.5,
        volume_id=np.full(3, 8),
        layer_id=np.array([2, 4, 6]),
        module_id=np.ones(3, dtype=np.int64),
    )
    f = dict(
        zip(TRIPLET_FEATURES, triplet_features(hits, np.array([[0], [1], [2]]))[0], strict=True)
    )
    assert f["d0"] == pytest.approx(0.0, abs=1e-9)
    assert abs(f["curvature"]) == pytest.approx(0.01)
    assert f["dtheta"] == pytest.approx(0.0, abs=1e-12)  # z = r / 2: a straight line in r-z
    # Shifting the circle off the origin by 5 mm moves its closest approach to 5 mm.
    hits.x = hits.x + 5.0
    d0 = triplet_features(hits, np.array([[0], [1], [2]]))[0, 2]
    assert d0 == pytest.approx(5.0, rel=1e-6)
    # Three hits on a line: zero curvature, d0 = the line's distance to the origin.
    hits.x, hits.y = np.array([10.0, 20.0, 30.0]), np.array([3.0, 3.0, 3.0])
    d0, curvature = triplet_features(hits, np.array([[0], [1], [2]]))[0, 2:]
    assert curvature == 0.0 and d0 == pytest.approx(3.0)


def test_windowed_triplet_search_equals_brute_force(tracker):
    hits = _hits(106, n=200, noise=150)
    edges = tracker.graph_.build(hits)
    left, right, quality = tracker._accepted(hits, _Geometry(hits), edges)
    # Brute force: every pair of doublets sharing the middle hit, every cut applied.
    first, second = _doublet_pairs(len(hits), edges)
    a, b, c = edges[0][first], edges[1][first], edges[1][second]
    feats = triplet_features(hits, np.stack([a, b, c]))
    low, high = tracker._cut_ranges(_layer_triples(hits.layer_key, a, b, c))
    ok = np.all((feats >= low) & (feats <= high), axis=1)
    assert ok.sum() > 100 and ok.sum() < 0.5 * len(ok)
    expected = set(zip(first[ok].tolist(), second[ok].tolist(), strict=True))
    assert set(zip(left.tolist(), right.tolist(), strict=True)) == expected
    assert np.all(quality >= 0) and np.all(quality <= len(TRIPLET_FEATURES))


def test_cellular_automaton_states_count_the_longest_chain():
    # Cells 0 -> 1 -> 2 -> 3 chained, 4 -> 2 joins late, 5 alone.
    left, right = np.array([0, 1, 2, 4]), np.array([1, 2, 3, 2])
    assert _ca_states(6, left, right).tolist() == [1, 2, 3, 4, 1, 1]


def test_ambiguity_resolution_gives_shared_hits_to_the_longest_candidate():
    # Candidate 0: hits 0..4; candidate 1: hits 3..7 (shares 3, 4); candidate 2: 4, 8, 9.
    cand = np.array([0] * 5 + [1] * 5 + [2] * 3)
    hit = np.array([0, 1, 2, 3, 4, 3, 4, 5, 6, 7, 4, 8, 9])
    labels = np.full(10, -1, dtype=np.int64)
    # Equal lengths: the better quality (lower) wins the shared hits.
    _resolve(labels, cand, hit, np.array([0.5, 0.2, 0.1]), min_hits=3)
    assert labels[[3, 4, 5, 6, 7]].tolist() == [labels[5]] * 5  # candidate 1 took 3 and 4
    assert np.all(labels[[0, 1, 2]] == labels[0]) and labels[0] != labels[5]
    assert np.all(labels[[8, 9]] == -1)  # candidate 2 lost hit 4 and has 2 hits left
    labels[:] = -1
    _resolve(labels, cand, hit, np.array([0.1, 0.2, 0.1]), min_hits=2)
    assert np.all(labels[[0, 1, 2, 3, 4]] == labels[0])
    assert np.all(labels[[5, 6, 7]] == labels[5]) and labels[8] == labels[9] != labels[0]


def test_given_edges_are_used_as_doublets(tracker):
    hits = _hits(104)
    edges = tracker.graph_.build(hits)
    np.testing.assert_array_equal(tracker.reconstruct(hits, edges), tracker.reconstruct(hits))
    # Shuffled doublets give the same tracks; no doublets give no track.
    perm = np.random.default_rng(1).permutation(edges.shape[1])
    np.testing.assert_array_equal(
        tracker.reconstruct(hits, edges[:, perm]), tracker.reconstruct(hits)
    )
    assert np.all(tracker.reconstruct(hits, np.zeros((2, 0), dtype=np.int64)) == -1)


def test_save_load_gives_the_same_tracks(tmp_path, tracker):
    hits = _hits(105)
    tracker.save(tmp_path / "ca")
    meta = json.loads((tmp_path / "ca" / "tracker.json").read_text())
    assert meta["settings"] == tracker.to_dict()
    loaded = CombinatorialTracker.load(tmp_path / "ca")
    np.testing.assert_array_equal(loaded.reconstruct(hits), tracker.reconstruct(hits))
    assert loaded.to_dict() == tracker.to_dict()
    assert CombinatorialTracker(**json.loads(json.dumps(tracker.to_dict()))).to_dict() == (
        tracker.to_dict()
    )


def test_errors_and_empty_events(tmp_path, train, tracker):
    with pytest.raises(ConfigError, match="not fitted"):
        CombinatorialTracker().reconstruct(train[0])
    with pytest.raises(ConfigError, match="min_hits"):
        CombinatorialTracker(min_hits=0)
    with pytest.raises(ConfigError, match="unknown cut"):
        CombinatorialTracker(graph={"cuts": ["nope"]})
    with pytest.raises(ConfigError, match="graph must be a dict"):
        CombinatorialTracker(graph=[1, 2])
    with pytest.raises(DataError, match="no true"):
        CombinatorialTracker(pt_min=0.0).fit([train[0].subset(train[0].particle_id == 0)])
    with pytest.raises(DataError, match="not a saved CombinatorialTracker"):
        CombinatorialTracker.load(tmp_path)
    with pytest.raises(DataError, match="outside"):
        tracker.reconstruct(train[0], np.array([[0], [10**6]]))
    empty = train[0].subset(np.zeros(len(train[0]), dtype=bool))
    assert tracker.reconstruct(empty).shape == (0,)
    noise = _hits(7).subset(_hits(7).particle_id == 0)
    assert np.mean(tracker.reconstruct(noise) >= 0) < 0.2


# ----------------------------------------------------------------------------------------
REAL_KEYS = (802, 804, 806, 808, 1302, 1304, 1306, 1308, 1702, 1704)
REAL_RADII = (32.0, 72.0, 116.0, 172.0, 260.0, 360.0, 500.0, 660.0, 820.0, 1020.0)


@pytest.mark.skipif(not REAL_EVENT.parent.is_dir(), reason="the TrackML test event is absent")
def test_real_event_runs_with_toy_cuts():
    """Evaluation only (cuts from toy events): a full-detector event with layers the toy
    never saw gives valid labels, fast, and tracks that are mostly one particle's (the
    ATLAS rule: the toy knows the barrel only, so a track rarely holds most of a real
    particle's hits, which the double-majority rule would ask)."""
    from fivesigma.io.trackml import read_event

    train = []
    for s in range(1, 5):
        hits = _hits(s, n=300, radii=REAL_RADII, pt_range=(0.3, 10.0))
        keys = np.array(REAL_KEYS)[hits.layer_id // 2 - 1]
        hits.volume_id, hits.layer_id = keys // 100, keys % 100
        train.append(hits)
    tracker = CombinatorialTracker(pt_min=0.3).fit(train)
    real = Hits.from_event(read_event(REAL_EVENT))
    start = time.perf_counter()
    labels = tracker.reconstruct(real)
    assert time.perf_counter() - start < 2.0
    assert labels.shape == (len(real),) and labels.min() >= -1
    ids = submission_track_ids(labels)
    m = track_matching(real.hit_id, ids, real.hit_id, real.particle_id, rule="atlas")
    assert m.n_tracks > 100 and m.fake_rate < 0.1
