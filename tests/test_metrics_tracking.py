"""Tracking metrics: every expectation below is computed by hand in the comment next to it."""

from __future__ import annotations

import numpy as np
import pytest

import fivesigma.metrics as fm
from fivesigma.metrics import (
    MetricError,
    duplicate_rate,
    efficiency_vs,
    fake_rate,
    track_matching,
    tracking_efficiency,
    trackml_score,
    trackml_score_normalised,
)

# 1-hit tracks allowed unless a test says otherwise, so the hand counts stay small
LOOSE = {"min_track_hits": 1, "min_particle_hits": 1}


def test_exported():
    for name in ("trackml_score", "track_matching", "efficiency_vs", "MatchResult"):
        assert name in fm.__all__


def test_perfect_reconstruction():
    # particle 1: hits 1-4, particle 2: hits 5-7, noise: hits 8, 9 (weight 0, official rule)
    th = np.arange(1, 10)
    tp = [1, 1, 1, 1, 2, 2, 2, 0, 0]
    tw = [0.1, 0.2, 0.2, 0.1, 0.1, 0.2, 0.1, 0.0, 0.0]  # sums to 1
    hits = [1, 2, 3, 4, 5, 6, 7]
    trk = [10, 10, 10, 10, 20, 20, 20]
    assert trackml_score(hits, trk, th, tp, tw) == pytest.approx(1.0)
    assert trackml_score_normalised(hits, trk, th, tp, tw) == pytest.approx(1.0)
    m = track_matching(hits, trk, th, tp)
    assert m.track_particle.tolist() == [1, 2]
    assert (m.efficiency, m.fake_rate, m.duplicate_rate) == (1.0, 0.0, 0.0)
    assert tracking_efficiency(hits, trk, th, tp) == 1.0
    assert fake_rate(hits, trk, th, tp) == 0.0
    assert duplicate_rate(hits, trk, th, tp) == 0.0


def test_normalised_with_unit_weights_and_noise_weight():
    # unit weights incl. 2 noise hits: official score = 7 matched / 9 total; normalised = 7 / 7
    th = np.arange(1, 10)
    tp = [1, 1, 1, 1, 2, 2, 2, 0, 0]
    hits, trk = [1, 2, 3, 4, 5, 6, 7], [10, 10, 10, 10, 20, 20, 20]
    assert trackml_score(hits, trk, th, tp, np.ones(9)) == pytest.approx(7 / 9)
    assert trackml_score_normalised(hits, trk, th, tp, np.ones(9)) == pytest.approx(1.0)


def test_particle_split_in_two():
    # particle 1 has hits 1-5 (weight 0.2 each); track A = 1,2,3 (3/5 > 50%), track B = 4,5 (2/5)
    th, tp, tw = [1, 2, 3, 4, 5], [1] * 5, [0.2] * 5
    hits, trk = [1, 2, 3, 4, 5], [0, 0, 0, 1, 1]
    # double majority: A matches, B holds only 40% of the particle -> fake (never a duplicate)
    m = track_matching(hits, trk, th, tp, **LOOSE)
    assert m.track_particle.tolist() == [1, -1]
    assert (m.efficiency, m.fake_rate, m.duplicate_rate) == (1.0, 0.5, 0.0)
    # atlas: both tracks are 100% pure -> A matches, B is a duplicate of the same particle
    a = track_matching(hits, trk, th, tp, rule="atlas", **LOOSE)
    assert a.track_particle.tolist() == [1, 1]
    assert (a.efficiency, a.fake_rate, a.duplicate_rate) == (1.0, 0.0, 0.5)
    assert a.particle_n_tracks.tolist() == [2]
    # score: only track A's three hits, 3 * 0.2
    assert trackml_score(hits, trk, th, tp, tw) == pytest.approx(0.6)


def test_two_particles_merged():
    # particle 1: hits 1-4, particle 2: hits 5-7; one track with all 7 hits
    th, tp = np.arange(1, 8), [1, 1, 1, 1, 2, 2, 2]
    tw = [0.1] * 4 + [0.2] * 3
    hits, trk = np.arange(1, 8), [0] * 7
    # p1 holds 4/7 > 50% of the track and the track holds 4/4 of p1 -> match p1 only
    m = track_matching(hits, trk, th, tp, **LOOSE)
    assert m.track_particle.tolist() == [1]
    assert m.particle_matched.tolist() == [True, False]
    assert (m.efficiency, m.fake_rate) == (0.5, 0.0)
    # score: p1's hits only: 4 * 0.1 out of total 1.0
    assert trackml_score(hits, trk, th, tp, tw) == pytest.approx(0.4)


def test_atlas_vs_double_majority_differ():
    # particle 1 has 6 hits (1-6), particle 2 has 3 (7-9); track = hits 1, 2 (p1) + 7 (p2)
    th, tp = np.arange(1, 10), [1] * 6 + [2] * 3
    hits, trk = [1, 2, 7], [5, 5, 5]
    # p1 holds 2/3 > 50% of the track, but the track holds only 2/6 of p1
    dm = track_matching(hits, trk, th, tp, **LOOSE)
    at = track_matching(hits, trk, th, tp, rule="atlas", **LOOSE)
    assert dm.track_particle.tolist() == [-1]
    assert at.track_particle.tolist() == [1]
    assert (dm.efficiency, dm.fake_rate) == (0.0, 1.0)
    assert (at.efficiency, at.fake_rate) == (0.5, 0.0)
    assert trackml_score(hits, trk, th, tp, np.ones(9)) == 0.0


def test_pure_noise_track_is_fake_and_scores_nothing():
    # particle 1: hits 1-3 reconstructed perfectly; noise hits 4-6 in a track of their own
    th, tp = np.arange(1, 7), [1, 1, 1, 0, 0, 0]
    tw = [1 / 3] * 3 + [0.0] * 3
    hits, trk = np.arange(1, 7), [0, 0, 0, 1, 1, 1]
    m = track_matching(hits, trk, th, tp)
    assert m.track_particle.tolist() == [1, -1]
    assert m.fake_rate == 0.5
    assert m.particle_ids.tolist() == [1]  # noise is not a particle
    # noise track alone: score 0
    assert trackml_score([4, 5, 6], [1, 1, 1], th, tp, tw) == 0.0
    assert trackml_score(hits, trk, th, tp, tw) == pytest.approx(1.0)


def test_ties_at_exactly_half_are_not_a_majority():
    # track of 4 hits: 2 from p1 (all of p1), 2 from p2 (all of p2) -> 50% each, no match
    th, tp = [1, 2, 3, 4], [1, 1, 2, 2]
    for rule in ("double_majority", "atlas"):
        m = track_matching([1, 2, 3, 4], [0] * 4, th, tp, rule=rule, **LOOSE)
        assert m.track_particle.tolist() == [-1]
    assert trackml_score([1, 2, 3, 4], [0] * 4, th, tp, np.ones(4)) == 0.0
    # pure track holding exactly 2 of p1's 4 hits: 100% pure, but 50% of p1 -> no double majority
    th, tp = [1, 2, 3, 4], [1, 1, 1, 1]
    m = track_matching([1, 2], [0, 0], th, tp, **LOOSE)
    assert m.track_particle.tolist() == [-1]
    assert trackml_score([1, 2], [0, 0], th, tp, np.ones(4)) == 0.0


def test_particle_spread_over_three_tracks():
    # particle 1: hits 1-6, two in each of three tracks -> each track 100% pure, 1/3 of p1
    th, tp = np.arange(1, 7), [1] * 6
    hits, trk = np.arange(1, 7), [0, 0, 1, 1, 2, 2]
    m = track_matching(hits, trk, th, tp, **LOOSE)
    assert m.track_particle.tolist() == [-1, -1, -1]
    assert (m.efficiency, m.fake_rate, m.duplicate_rate) == (0.0, 1.0, 0.0)
    # atlas: all three match p1; two are duplicates -> 2/3
    a = track_matching(hits, trk, th, tp, rule="atlas", **LOOSE)
    assert a.duplicate_rate == pytest.approx(2 / 3)
    assert trackml_score(hits, trk, th, tp, np.ones(6)) == 0.0


def test_score_counts_only_the_matched_hits_weights():
    # p1: hits 1-4 w .1 .2 .3 .4; p2: hits 5-7 w .5 .6 .7 (total 2.8)
    th, tp = np.arange(1, 8), [1, 1, 1, 1, 2, 2, 2]
    tw = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    # track A = 1, 2, 3 (p1) + 5 (p2): p1 is 3/4 of A and 3/4 of p1 -> counts .1+.2+.3
    # track B = 4 (p1) + 6, 7 (p2): p2 is 2/3 of B and 2/3 of p2 -> counts .6+.7
    hits, trk = [1, 2, 3, 5, 4, 6, 7], [0, 0, 0, 0, 1, 1, 1]
    expected = (0.1 + 0.2 + 0.3 + 0.6 + 0.7) / 2.8
    assert trackml_score(hits, trk, th, tp, tw) == pytest.approx(expected)
    assert trackml_score_normalised(hits, trk, th, tp, tw) == pytest.approx(expected)


def test_unassigned_truth_hits_count_for_the_particle_total():
    # particle 1 has 5 hits; the reconstruction has one track with 2 of them, 3 left out
    th, tp = np.arange(1, 6), [1] * 5
    m = track_matching([1, 2], [0, 0], th, tp, **LOOSE)
    assert m.track_particle.tolist() == [-1]  # 2/5 of the particle
    assert m.particle_nhits.tolist() == [5]


def test_particle_and_track_length_selection():
    # p1: 4 hits, p2: 2 hits; both perfectly reconstructed
    th, tp = np.arange(1, 7), [1, 1, 1, 1, 2, 2]
    hits, trk = np.arange(1, 7), [0, 0, 0, 0, 1, 1]
    m = track_matching(hits, trk, th, tp, min_track_hits=3, min_particle_hits=3)
    # the 2-hit track is dropped (not counted at all); p2 is not selected
    assert m.track_ids.tolist() == [0]
    assert m.particle_selected.tolist() == [True, False]
    assert (m.efficiency, m.fake_rate) == (1.0, 0.0)
    # selection by id (e.g. pT cut): only p2 selected, with 2-hit tracks and particles allowed
    m = track_matching(hits, trk, th, tp, selected_particles=[2], **LOOSE)
    assert m.particle_selected.tolist() == [False, True]
    assert m.efficiency == 1.0
    # nothing selected -> efficiency undefined
    m = track_matching(hits, trk, th, tp, selected_particles=[99], **LOOSE)
    assert np.isnan(m.efficiency)


def _toy_event(rng, n_particles=30, noise=20):
    nh = rng.integers(1, 9, n_particles)
    tp = np.concatenate([np.repeat(np.arange(1, n_particles + 1), nh), np.zeros(noise, int)])
    th = rng.permutation(tp.size) + 100
    tw = rng.random(tp.size) * (tp > 0)
    tw /= tw.sum()
    # reconstruction: truth tracks with random reassignments
    trk = np.where(tp > 0, tp, rng.integers(1, n_particles + 1, tp.size))
    flip = rng.random(tp.size) < 0.3
    trk[flip] = rng.integers(0, n_particles + 5, flip.sum())
    return th, trk, th, tp, tw


def test_permutation_of_track_ids_and_rows_changes_nothing():
    rng = np.random.default_rng(1)
    hits, trk, th, tp, tw = _toy_event(rng)
    relabel = rng.permutation(1000)[: trk.max() + 1] * 7 - 500  # any ints, incl. negative
    rows = rng.permutation(hits.size)
    a = track_matching(hits, trk, th, tp, rule="atlas", **LOOSE)
    b = track_matching(hits[rows], relabel[trk][rows], th, tp, rule="atlas", **LOOSE)
    for attr in ("efficiency", "fake_rate", "duplicate_rate"):
        assert getattr(a, attr) == getattr(b, attr)
    assert np.array_equal(a.particle_n_tracks, b.particle_n_tracks)
    assert sorted(a.track_particle.tolist()) == sorted(b.track_particle.tolist())
    s = trackml_score(hits, trk, th, tp, tw)
    assert trackml_score(hits[rows], relabel[trk][rows], th, tp, tw) == pytest.approx(s)


def test_matches_official_trackml_score_event():
    # needs the LAL trackml-library (github.com/LAL/trackml-library, not on PyPI: the PyPI
    # "trackml" is an unrelated websocket client); skipped when it is not importable
    pd = pytest.importorskip("pandas")
    score_mod = pytest.importorskip("trackml.score")
    rng = np.random.default_rng(7)
    for _ in range(20):
        hits, trk, th, tp, tw = _toy_event(rng, n_particles=int(rng.integers(5, 40)))
        truth = pd.DataFrame({"hit_id": th, "particle_id": tp, "weight": tw})
        sub = pd.DataFrame({"hit_id": hits, "track_id": trk})
        official = score_mod.score_event(truth, sub)
        assert trackml_score(hits, trk, th, tp, tw) == pytest.approx(official, abs=1e-12)


def test_efficiency_vs_with_clopper_pearson():
    # bins [0,1): 1/1, [1,2): 1/2, [2,3): 1/1, [3,4): empty
    edges, eff, ci = efficiency_vs([0.5, 1.5, 1.5, 2.5], [1, 0, 1, 1], [0, 1, 2, 3, 4])
    assert edges.tolist() == [0, 1, 2, 3, 4]
    assert eff[:3].tolist() == [1.0, 0.5, 1.0] and np.isnan(eff[3])
    a2 = (1 - 0.6827) / 2
    # k = n = 1: lower = (alpha/2)^(1/1), upper = 1
    assert ci[:, 0] == pytest.approx([a2, 1.0])
    # k = 1, n = 2: lower solves 1-(1-p)^2 = a/2; upper solves p^2 = 1 - a/2
    assert ci[:, 1] == pytest.approx([1 - np.sqrt(1 - a2), np.sqrt(1 - a2)])
    assert np.all(np.isnan(ci[:, 3]))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([1, 2], [0], [1, 2], [1, 1], [1, 1]), "one track id per hit"),
        (([1, 2], [0, 0], [1, 2], [1], [1, 1]), "truth_particle_ids"),
        (([1, 3], [0, 0], [1, 2], [1, 1], [1, 1]), "absent from the truth"),
        (([1, 1], [0, 0], [1, 2], [1, 1], [1, 1]), "duplicated"),
        (([1], [0], [1, 1], [1, 1], [1, 1]), "duplicated"),
        (([1, 2], [0, 0], [1, 2], [1, 1], [1, -1]), "non-negative"),
        (([1, 2], [0, 0], [1, 2], [1, 1], [1]), "truth_weights"),
    ],
)
def test_bad_input(args, match):
    with pytest.raises(MetricError, match=match) as err:
        trackml_score(*args)
    assert "\n" not in str(err.value)


def test_bad_options():
    with pytest.raises(MetricError, match="rule"):
        track_matching([1], [0], [1], [1], rule="loose")
    with pytest.raises(MetricError, match="min_track_hits"):
        track_matching([1], [0], [1], [1], min_track_hits=0)
    with pytest.raises(MetricError, match="one flag per value"):
        efficiency_vs([1, 2], [1], 2)
