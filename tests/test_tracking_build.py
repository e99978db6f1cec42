"""Track building from scored edges: connected components and CC & walk."""

from __future__ import annotations

import time

import numpy as np
import pytest

from fivesigma.errors import ConfigError, DataError
from fivesigma.tasks.tracking.build import connected_components, walk


def _assert_same_partition(labels: np.ndarray, groups: list[list[int]]) -> None:
    """``labels`` holds exactly ``groups`` as tracks (any label values), the rest -1."""
    labels = np.asarray(labels)
    listed = [h for g in groups for h in g]
    for g in groups:
        assert len(set(labels[g].tolist())) == 1 and labels[g[0]] >= 0, (g, labels[g])
    assert len({int(labels[g[0]]) for g in groups}) == len(groups)
    rest = np.setdiff1d(np.arange(len(labels)), listed)
    assert np.all(labels[rest] == -1), labels


# ----------------------------------------------------------------------------------------
def test_connected_components_by_hand():
    # 0-1-2 (strong), 3-4-5-6 (strong, one edge pointing backwards), 7-8 (too short),
    # 2-3 weak (cut), 9 alone.
    edges = np.array([[0, 1, 3, 5, 5, 7, 2], [1, 2, 4, 4, 6, 8, 3]])
    scores = np.array([0.9, 0.8, 0.7, 0.95, 0.6, 0.9, 0.3], dtype=np.float32)
    labels = connected_components(10, edges, scores, threshold=0.5)
    assert labels.dtype == np.int64 and labels.shape == (10,)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 1, -1, -1, -1]
    # Scores exactly at the threshold are cut; a lower threshold merges through 2-3.
    assert connected_components(10, edges, scores, threshold=0.7).tolist()[3:7] == [-1] * 4
    merged = connected_components(10, edges, scores, threshold=0.2)
    assert len(set(merged[:7].tolist())) == 1
    # min_hits=2 keeps the pair 7-8; min_hits=4 drops 0-1-2.
    assert connected_components(10, edges, scores, 0.5, min_hits=2)[7] >= 0
    assert connected_components(10, edges, scores, 0.5, min_hits=4)[:3].tolist() == [-1] * 3


def test_no_edges_and_no_hits():
    assert connected_components(4, np.zeros((2, 0), dtype=np.int64), []).tolist() == [-1] * 4
    assert walk(4, np.zeros((2, 0), dtype=np.int64), []).tolist() == [-1] * 4
    assert connected_components(0, np.zeros((2, 0), dtype=np.int64), []).shape == (0,)
    assert walk(0, [], []).shape == (0,)


# ----------------------------------------------------------------------------------------
def test_walk_keeps_simple_paths_as_they_are():
    edges = np.array([[0, 1, 2, 4, 5], [1, 2, 3, 5, 6]])
    scores = np.full(5, 0.9)
    np.testing.assert_array_equal(
        walk(8, edges, scores, 0.5), connected_components(8, edges, scores, 0.5)
    )


def test_walk_splits_a_y_with_the_best_scoring_continuation():
    # Particle A: 0 -> 1 -> 2 -> 3 -> 4; particle B: 5 -> 6 -> 7 -> 8.  A wrong edge
    # 2 -> 7 joins them, so connected components make one 9-hit track.
    edges = np.array([[0, 1, 2, 3, 5, 6, 7, 2], [1, 2, 3, 4, 6, 7, 8, 7]])
    scores = np.array([0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.7])
    cc = connected_components(9, edges, scores, 0.5)
    assert len(set(cc.tolist())) == 1
    _assert_same_partition(walk(9, edges, scores, 0.5), [[0, 1, 2, 3, 4], [5, 6, 7, 8]])
    # When the wrong edge scores best, the walk follows it: 0-1-2-7-8 is one track, and
    # B's inner hits (5, 6) and A's outer ones (3, 4) are too short to stand alone.
    scores[-1] = 0.95
    _assert_same_partition(walk(9, edges, scores, 0.5), [[0, 1, 2, 7, 8]])
    _assert_same_partition(
        walk(9, edges, scores, 0.5, min_hits=2), [[0, 1, 2, 7, 8], [5, 6], [3, 4]]
    )


def test_walk_merging_branches_give_the_hits_once():
    # Two inner branches meet at hit 2: 0 -> 1 -> 2 and 5 -> 6 -> 2, then 2 -> 3 -> 4.
    edges = np.array([[0, 1, 5, 6, 2, 3], [1, 2, 6, 2, 3, 4]])
    labels = walk(7, edges, np.full(6, 0.9), 0.5)
    _assert_same_partition(labels, [[0, 1, 2, 3, 4]])
    labels = walk(7, edges, np.full(6, 0.9), 0.5, min_hits=2)
    _assert_same_partition(labels, [[0, 1, 2, 3, 4], [5, 6]])


def test_threshold_high_explores_branches_for_the_longest_road():
    # From hit 1 the best edge (0.95) leads to a dead end (2); the other (0.9) to 3-4-5.
    edges = np.array([[0, 1, 1, 3, 4], [1, 2, 3, 4, 5]])
    scores = np.array([0.9, 0.95, 0.9, 0.9, 0.9])
    # Greedy: 0-1-2 is a track, 3-4-5 another.
    _assert_same_partition(walk(6, edges, scores, 0.5), [[0, 1, 2], [3, 4, 5]])
    # Exploring edges above 0.8 finds the longer road 0-1-3-4-5.
    _assert_same_partition(walk(6, edges, scores, 0.5, 0.8), [[0, 1, 3, 4, 5]])
    # ... but not when the alternative is below threshold_high.
    _assert_same_partition(walk(6, edges, scores, 0.5, 0.92), [[0, 1, 2], [3, 4, 5]])


def test_walk_ignores_edges_at_or_below_threshold_low():
    edges = np.array([[0, 1, 2, 3], [1, 2, 3, 4]])
    scores = np.array([0.9, 0.9, 0.5, 0.9])
    _assert_same_partition(walk(5, edges, scores, 0.5, min_hits=2), [[0, 1, 2], [3, 4]])


def _chains(n_tracks: int, length: int, n_wrong: int, seed: int = 0):
    """Many straight chains, plus wrong edges that score lower than the true ones."""
    rng = np.random.default_rng(seed)
    hits = np.arange(n_tracks * length).reshape(n_tracks, length)
    src, dst = hits[:, :-1].ravel(), hits[:, 1:].ravel()
    # Wrong edges from layer k of one track to layer k + 1 of another.
    t1, t2 = rng.integers(n_tracks, size=(2, n_wrong))
    k = rng.integers(length - 1, size=n_wrong)
    wrong = (t1 != t2) & (k > 0)
    edges = np.concatenate(
        [np.stack([src, dst]), np.stack([hits[t1, k], hits[t2, k + 1]])[:, wrong]], axis=1
    )
    scores = np.concatenate(
        [rng.uniform(0.8, 1.0, src.size), rng.uniform(0.55, 0.79, int(wrong.sum()))]
    )
    perm = rng.permutation(edges.shape[1])
    return hits, edges[:, perm], scores[perm]


def test_walk_recovers_chains_joined_by_weaker_wrong_edges_quickly():
    hits, edges, scores = _chains(n_tracks=8000, length=10, n_wrong=8000)
    start = time.perf_counter()
    labels = walk(hits.size, edges, scores, threshold_low=0.5, threshold_high=0.9)
    elapsed = time.perf_counter() - start
    track_of = labels[hits]
    # Every chain is one track of its own: wrong edges always lose to the true ones.
    assert np.all(track_of == track_of[:, :1])
    assert len(np.unique(track_of[:, 0])) == hits.shape[0] and track_of.min() >= 0
    assert elapsed < 3.0  # 80k hits; ~0.5 s on one core
    cc = connected_components(hits.size, edges, scores, 0.5)
    assert len(np.unique(cc)) < hits.shape[0] / 2  # CC merges most of them


# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("builder", [connected_components, walk])
def test_bad_input_raises_one_line_errors(builder):
    edges = np.array([[0, 1], [1, 2]])
    with pytest.raises(DataError, match="shape"):
        builder(3, np.array([0, 1, 2]), [0.9, 0.9, 0.9])
    with pytest.raises(DataError, match="one score per edge"):
        builder(3, edges, [0.9])
    with pytest.raises(DataError, match="outside"):
        builder(2, edges, [0.9, 0.9])
    with pytest.raises(DataError, match="integer"):
        builder(3, edges.astype(float), [0.9, 0.9])
    with pytest.raises(DataError, match="NaN"):
        builder(3, edges, [0.9, np.nan])
    with pytest.raises(DataError, match="n_hits"):
        builder(-1, edges, [0.9, 0.9])
    with pytest.raises(ConfigError, match="min_hits"):
        builder(3, edges, [0.9, 0.9], 0.5, min_hits=0)
    try:
        builder(3, edges, [0.9])
    except DataError as err:
        assert "\n" not in str(err)


def test_walk_thresholds_must_be_ordered():
    with pytest.raises(ConfigError, match="threshold_high"):
        walk(3, [[0, 1], [1, 2]], [0.9, 0.9], threshold_low=0.6, threshold_high=0.5)
    with pytest.raises(ConfigError, match="threshold_low"):
        walk(3, [[0, 1], [1, 2]], [0.9, 0.9], threshold_low=None)
