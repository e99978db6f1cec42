"""The tracking task: config, evaluation, submissions, hit status, bad input (the stages
themselves are tested in test_tracking_graph/build/baseline/gnn)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fivesigma.core.config import parse_config
from fivesigma.errors import ConfigError, DataError
from fivesigma.io.trackml import DETECTOR_COLUMNS
from fivesigma.metrics.tracking import trackml_score
from fivesigma.tasks.tracking.evaluate import TrackEvaluation, event_metrics
from fivesigma.tasks.tracking.hits import Hits, orient_edges, submission_track_ids
from fivesigma.tasks.tracking.report import hit_status
from fivesigma.tasks.tracking.task import event_prefixes, load_hits, write_submission

sys.path.insert(0, str(Path(__file__).parent))
from _tracking_toys import toy_event, write_toy_events


def _truth_labels(hits: Hits) -> np.ndarray:
    """Perfect reconstruction: one track per particle, noise unassigned."""
    _, labels = np.unique(hits.particle_id, return_inverse=True)
    labels = labels - 1 if (hits.particle_id == 0).any() else labels
    return np.where(hits.particle_id == 0, -1, labels)


def test_config_presets_and_overrides():
    cfg = parse_config(
        {
            "version": 1,
            "task": "tracking",
            "preset": "full",
            "gnn": {"hidden": 16},
            "generate": {"mu": 0},
        }
    )
    s = cfg.settings()
    assert s.mu == 0 and s.gnn["hidden"] == 16 and s.gnn["iterations"] == 6
    assert s.train_events == 100 and s.generator_options["hard_process"] == "ttbar"
    # the quick preset simulates events as dense as a 5% TrackML subset: pile-up only
    quick = parse_config({"version": 1, "task": "tracking"}).settings()
    assert quick.mu == 10 and quick.generator_options["hard_process"] == "none"
    chosen = {"version": 1, "task": "tracking", "generate": {"hard_process": "ttbar"}}
    assert parse_config(chosen).settings().generator_options["hard_process"] == "ttbar"
    with pytest.raises(ConfigError, match="hard_process"):
        parse_config({"version": 1, "task": "tracking", "generate": {"hard_process": "higgs"}})
    with pytest.raises(ConfigError, match="graph.method"):
        parse_config({"version": 1, "task": "tracking", "graph": {"method": "hough"}})
    bad = parse_config(
        {"version": 1, "task": "tracking", "build": {"threshold": 0.6, "threshold_high": 0.3}}
    )
    with pytest.raises(ConfigError, match="threshold_high"):
        bad.settings()


def test_truth_graph_links_consecutive_hits():
    hits = Hits.from_event(toy_event(n_particles=20, noise=5, seed=3))
    edges = hits.truth_edges()
    # a particle with n hits gives n - 1 edges
    n_hits = pd.Series(hits.particle_id[hits.particle_id != 0]).value_counts()
    assert edges.shape[1] == int((n_hits - 1).sum())
    assert (hits.particle_id[edges[0]] == hits.particle_id[edges[1]]).all()
    assert (hits.r[edges[1]] > hits.r[edges[0]]).all()  # toy: outward, one hit per layer
    assert hits.edge_truth(edges[::-1]).all()
    # skipping a layer is not a truth edge
    skip = np.stack([edges[0][:-1], edges[1][1:]])
    same = hits.particle_id[skip[0]] == hits.particle_id[skip[1]]
    assert not hits.edge_truth(skip[:, same]).any()
    oriented = orient_edges(hits, np.concatenate([edges[::-1], edges], axis=1))
    assert oriented.shape == edges.shape


def test_submission_ids_are_positive_and_unique_for_unassigned():
    ids = submission_track_ids(np.array([4, -1, 4, 0, -1]))
    assert (ids > 0).all()
    assert ids[0] == ids[2] and len({ids[1], ids[4], ids[0], ids[3]}) == 4


def test_perfect_reconstruction_scores_one_and_a_split_track_loses_it():
    hits = Hits.from_event(toy_event(n_particles=30, noise=10, seed=1))
    labels = _truth_labels(hits)
    metrics, particles = event_metrics(hits, labels, pt_min=0.0)
    assert metrics["score"] == pytest.approx(1.0)
    assert metrics["dm_efficiency"] == 1.0 and metrics["dm_fake_rate"] == 0.0
    assert particles["dm_matched"].all()
    # split one particle's hits in two halves: neither half holds > 50% -> that weight lost
    pid = hits.particle_id
    victim = np.unique(pid[pid != 0])[0]
    rows = np.flatnonzero(pid == victim)
    rows = rows[np.argsort(hits.r[rows])]
    split = labels.copy()
    split[rows[: len(rows) // 2]] = labels.max() + 1
    if len(rows) % 2 == 0:
        expected = 1.0 - hits.weight[rows].sum()
    else:  # the larger half keeps the majority
        expected = 1.0 - hits.weight[rows[: len(rows) // 2]].sum()
    got, _ = event_metrics(hits, split, pt_min=0.0)
    assert got["score"] == pytest.approx(expected)
    reference = trackml_score(
        hits.hit_id, submission_track_ids(split), hits.hit_id, pid, hits.weight
    )
    assert got["score"] == pytest.approx(reference)


def test_evaluation_pools_events_and_curves():
    ev = TrackEvaluation("truth", pt_min=1.0)
    for seed in (1, 2):
        hits = Hits.from_event(toy_event(n_particles=40, seed=seed))
        ev.add(hits, _truth_labels(hits), cpu_total=0.5)
    summary = ev.summary()
    assert summary["events"] == 2 and summary["score"] == pytest.approx(1.0)
    assert summary["cpu_total"] == 0.5
    curve = ev.curve("pt")
    filled = np.asarray(curve["particles"]) > 0
    assert filled.any() and np.allclose(np.asarray(curve["efficiency"])[filled], 1.0)
    assert sum(curve["particles"]) == 80


def test_hit_status_marks_fakes_and_missed_hits():
    hits = Hits.from_event(toy_event(n_particles=10, noise=4, seed=5))
    labels = _truth_labels(hits)
    assert set(np.unique(hit_status(hits, labels))) <= {0, 1}
    pid = hits.particle_id
    victim = np.unique(pid[pid != 0])[0]
    broken = labels.copy()
    broken[pid == victim] = -1  # the whole particle missed
    noise = np.flatnonzero(pid == 0)[:3]
    broken[noise] = labels.max() + 5  # a track of noise hits: fake
    status = hit_status(hits, broken)
    assert (status[pid == victim] == 3).all()
    assert (status[noise] == 2).all()


def test_submission_file_and_event_listing(tmp_path):
    directory = write_toy_events(tmp_path / "ev", n_events=2, seed=7)
    prefixes = event_prefixes([directory])
    assert [p.name for p in prefixes] == ["event000000001", "event000000002"]
    hits = load_hits(prefixes[0], need_truth=True)
    path = write_submission(hits, _truth_labels(hits), tmp_path / "sub.csv")
    table = pd.read_csv(path)
    assert list(table.columns) == ["event_id", "hit_id", "track_id"]
    assert len(table) == len(hits) and (table.track_id > 0).all()
    score = trackml_score(table.hit_id, table.track_id, hits.hit_id, hits.particle_id, hits.weight)
    assert score == pytest.approx(1.0)


def test_bad_event_inputs_are_one_line(tmp_path):
    with pytest.raises(DataError, match="holds no TrackML events"):
        event_prefixes([tmp_path])
    directory = write_toy_events(tmp_path / "ev", n_events=1, seed=2)
    (directory / "event000000001-truth.csv").unlink()
    with pytest.raises(DataError, match="truth") as err:
        load_hits(directory / "event000000001", need_truth=True)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------------------
# The whole task on toy events written as TrackML files (no simulation, seconds)


def _toy_config(tmp_path, **extra):
    write_toy_events(tmp_path / "train", n_events=4, seed=10, n_particles=40)
    write_toy_events(tmp_path / "test", n_events=1, seed=50, n_particles=40, first_id=7)
    raw = {
        "version": 1,
        "task": "tracking",
        "data": {"train": [str(tmp_path / "train")], "test": [str(tmp_path / "test")]},
        "graph": {"method": "layer_pairs", "params": {"pt_min": 0.0}},
        "gnn": {"hidden": 8, "iterations": 2, "epochs": 3},
        "baseline": {"params": {"pt_min": 0.0}},
        "output": {"dir": str(tmp_path / "out")},
    }
    raw.update(extra)
    return parse_config(raw)


@pytest.mark.slow
def test_run_writes_metrics_submissions_bundles_and_apply_reproduces(tmp_path):
    from fivesigma.core.registry import TASKS
    from fivesigma.core.task import execute

    cfg = _toy_config(tmp_path)
    task = TASKS.get("tracking")()
    out = tmp_path / "out"
    result = execute(task, cfg, out, progress=False)
    m = result.metrics
    assert set(m["methods"]) == {"gnn", "baseline"}
    for row in m["methods"].values():
        assert 0.0 <= row["score"] <= 1.0 and row["cpu_total"] > 0
    # toy helices are easy: both chains must find most of the weight
    assert m["methods"]["gnn"]["score"] > 0.7
    assert m["methods"]["baseline"]["score"] > 0.7
    assert m["graph"]["test"]["efficiency"] > 0.9
    # a perfect edge classifier on the same graph: about the GNN chain's ceiling (not a
    # strict bound: the walk breaks ties of equal scores arbitrarily)
    ceiling = m["graph"]["test"]["score_with_true_edge_scores"]
    assert ceiling > 0.9 and ceiling >= m["methods"]["gnn"]["score"] - 0.02
    assert (out / "report.html").stat().st_size > 10_000
    sub = pd.read_csv(out / "submissions" / "event000000007-gnn.csv")
    hits = load_hits(tmp_path / "test" / "event000000007")
    assert len(sub) == len(hits) and (sub.track_id > 0).all()
    score = trackml_score(sub.hit_id, sub.track_id, hits.hit_id, hits.particle_id, hits.weight)
    assert score == pytest.approx(m["methods"]["gnn"]["score"])
    # the bundle reconstructs the same tracks through `fivesigma apply`
    info = task.apply(out / "models" / "gnn", [str(tmp_path / "test")], tmp_path / "applied")
    assert info["events"] == 1
    again = pd.read_csv(tmp_path / "applied" / "event000000007-submission.csv")
    assert (again.track_id.to_numpy() == sub.track_id.to_numpy()).all()
    assert (out / "models" / "gnn.onnx").stat().st_size > 0
    # the same through the command line, into a directory of its own
    from fivesigma.cli import main

    cli_out = tmp_path / "cli"
    assert (
        main(
            [
                "apply",
                str(out / "models" / "baseline"),
                str(tmp_path / "test"),
                "--out",
                str(cli_out),
            ]
        )
        == 0
    )
    base = pd.read_csv(cli_out / "event000000007-submission.csv")
    expected = pd.read_csv(out / "submissions" / "event000000007-baseline.csv")
    assert (base.track_id.to_numpy() == expected.track_id.to_numpy()).all()
    with pytest.raises(DataError, match="is an input directory"):
        task.apply(out / "models" / "gnn", [str(tmp_path / "test")], tmp_path / "test")


def test_bad_inputs_fail_before_writing(tmp_path):
    from fivesigma.core.registry import TASKS
    from fivesigma.core.task import execute

    task = TASKS.get("tracking")()
    cfg = _toy_config(tmp_path)
    # truth hit ids absent from the hits: one line naming the file, nothing written
    truth = tmp_path / "train" / "event000000002-truth.csv"
    table = pd.read_csv(truth)
    table.loc[0, "hit_id"] = 10**9
    table.to_csv(truth, index=False)
    with pytest.raises(DataError, match="truth hit ids are not in") as err:
        execute(task, cfg, tmp_path / "out", progress=False)
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()
    # an empty event
    cfg = _toy_config(tmp_path / "b")
    hits = tmp_path / "b" / "test" / "event000000007-hits.csv"
    pd.read_csv(hits).iloc[:0].to_csv(hits, index=False)
    with pytest.raises(DataError, match="no hits"):
        execute(task, cfg, tmp_path / "b" / "out", progress=False)
    assert not (tmp_path / "b" / "out").exists()
    # a geometry file that does not match the hits' modules
    cfg = _toy_config(tmp_path / "c")
    det = pd.DataFrame({c: [0.0] for c in DETECTOR_COLUMNS})
    det[["volume_id", "layer_id", "module_id"]] = [[7, 2, 1]]
    det.to_csv(tmp_path / "c" / "test" / "detectors.csv", index=False)
    with pytest.raises(DataError, match="module") as err:
        execute(task, cfg, tmp_path / "c" / "out", progress=False)
    assert "\n" not in str(err.value) and not (tmp_path / "c" / "out").exists()
    # apply on a missing event file
    with pytest.raises(DataError, match="does not exist|no hits"):
        task.apply(
            tmp_path / "nobundle",
            [str(tmp_path / "c" / "nothing" / "event000000001")],
            tmp_path / "applied",
        )


def test_track_building_applies_exactly_what_tuning_scored():
    """tune_build picks the method, threshold and walk threshold_high by the validation
    score; the pipeline must then build with those very settings (it once widened a
    walk's threshold_high of None to the threshold, so the run scored other tracks than
    the ones tuning had chosen)."""
    from fivesigma.tasks.tracking.pipeline import TrackingPipeline
    from fivesigma.tasks.tracking.stages import tune_build

    rng = np.random.default_rng(5)
    events, edges, scores = [], [], []
    for seed in range(3):
        hits = Hits.from_event(toy_event(n_particles=40, noise=10, seed=seed))
        true = orient_edges(hits, hits.truth_edges())
        fake = orient_edges(hits, rng.integers(0, len(hits), (2, 3 * true.shape[1])))
        e = np.concatenate([true, fake[:, ~hits.edge_truth(fake)]], axis=1)
        # a noisy classifier: true edges mostly high, false ones mostly low
        s = np.where(hits.edge_truth(e), rng.beta(5, 1, e.shape[1]), rng.beta(1, 5, e.shape[1]))
        events.append(hits)
        edges.append(e)
        scores.append(s)
    base = {"method": "walk", "threshold": 0.5, "threshold_high": None, "min_hits": 3}
    chosen, table = tune_build(events, edges, scores, base)
    assert {r["threshold_high"] for r in table if r["method"] == "walk"} >= {None, 0.9}
    best = max(r["score"] for r in table)
    pipe = TrackingPipeline(graph=object(), classifier=object(), build=chosen)
    applied = []
    for hits, e, s in zip(events, edges, scores, strict=True):
        labels = pipe._build_tracks(len(hits), e, s)
        applied.append(
            trackml_score(
                hits.hit_id, submission_track_ids(labels), hits.hit_id, hits.particle_id,
                hits.weight,
            )
        )  # fmt: skip
    assert np.mean(applied) == pytest.approx(best, abs=1e-12)
