"""fivesigma.io.trackml: the shared TrackML event, every error case, .csv/.csv.gz, streaming."""

from __future__ import annotations

import doctest
import gzip
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fivesigma.io
import fivesigma.io.trackml as trackml
from fivesigma.errors import DataError
from fivesigma.io.trackml import (
    DETECTOR_COLUMNS,
    TrackMLEvent,
    check_geometry,
    event_ids,
    iter_events,
    read_detectors,
    read_event,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TRACKML = "trackml_subset_gnn_tracking"


def shared(relative: str) -> Path:
    path = SHARED / relative
    if not path.is_file():
        pytest.skip(f"real sample file {path} not present")
    return path


HITS = "hit_id,x,y,z,volume_id,layer_id,module_id\n1,30,40,100,7,2,1\n2,-60,80,-50,8,2,3\n"
TRUTH = (
    "hit_id,particle_id,tx,ty,tz,tpx,tpy,tpz,weight\n"
    "1,11,30,40,100,1,1,1,0.5\n2,0,-60,80,-50,0,0,0,0\n"
)
PARTICLES = "particle_id,vx,vy,vz,px,py,pz,q,nhits\n11,0,0,0,3,4,1,1,1\n"
CELLS = "hit_id,ch0,ch1,value\n1,10,20,0.3\n2,11,21,0.2\n"
TEXT = {"hits": HITS, "truth": TRUTH, "particles": PARTICLES, "cells": CELLS}


def write_event(directory: Path, event: int = 1, gz: bool = False, **override: str | None) -> Path:
    """Write a tiny event; ``part=None`` leaves a part out, ``part="..."`` replaces it."""
    prefix = directory / f"event{event:09d}"
    for part, text in {**TEXT, **override}.items():
        if text is None:
            continue
        path = directory / f"{prefix.name}-{part}.csv{'.gz' if gz else ''}"
        if gz:
            with gzip.open(path, "wt") as f:
                f.write(text)
        else:
            path.write_text(text)
    return prefix


def assert_one_line_error(match: str, func, *args, **kwargs) -> str:
    with pytest.raises(DataError, match=match) as info:
        func(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------------------
# The real shared event


def test_real_event() -> None:
    hits_path = shared(f"{TRACKML}/event000000001-hits.csv.gz")
    event = read_event(hits_path.parent / "event000000001", parts=("hits", "truth", "particles"))
    assert event.event_id == 1
    assert len(event.hits) == 5527
    assert len(event.truth) == 5527
    assert len(event.particles) == 548
    assert int(event.noise.sum()) == 829
    pids = event.truth["particle_id"].to_numpy()
    assert len(np.unique(pids[pids != 0])) == 468
    assert np.isin(pids[pids != 0], event.particles["particle_id"].to_numpy()).all()
    assert np.isin(event.truth["hit_id"], event.hits["hit_id"]).all()
    assert (event.truth["hit_id"].to_numpy() == event.hits["hit_id"].to_numpy()).all()
    assert set(event.hits["volume_id"]) == {7, 8, 9, 12, 13, 14, 16, 17, 18}
    r = event.r
    assert 29.5 < r.min() < 31 and 1020 < r.max() < 1030
    assert np.abs(event.hits["z"]).max() == pytest.approx(2955.5)
    assert np.isfinite(event.eta).all() and (np.abs(event.phi) <= np.pi).all()
    assert (event.pt > 0).all() and event.pt.shape == (548,)


def test_real_cells_and_geometry() -> None:
    det_path = shared(f"{TRACKML}/detectors.csv.gz")
    event = read_event(det_path.parent, 1, parts=("hits", "cells"))
    assert len(event.cells) == 18564
    assert np.isin(event.cells["hit_id"], event.hits["hit_id"]).all()
    detectors = read_detectors(det_path.parent)
    assert detectors.shape == (18728, 21)
    assert list(detectors.columns) == list(DETECTOR_COLUMNS)
    check_geometry(event, detectors)
    assert event_ids(det_path.parent) == [1]
    assert [e.event_id for e in iter_events(det_path.parent, parts=("hits",))] == [1]


# --------------------------------------------------------------------------------------
# Formats, helpers, streaming


@pytest.mark.parametrize("gz", [False, True])
def test_csv_and_gz(tmp_path: Path, gz: bool) -> None:
    prefix = write_event(tmp_path, 5, gz=gz)
    event = read_event(prefix, parts=("hits", "truth", "particles", "cells"))
    assert isinstance(event, TrackMLEvent)
    assert event.files["hits"].name.endswith(".csv.gz" if gz else ".csv")
    assert len(event.hits) == 2 and len(event.cells) == 2
    np.testing.assert_allclose(event.r, [50, 100])
    np.testing.assert_allclose(event.phi, np.arctan2([40, 80], [30, -60]))
    np.testing.assert_allclose(event.eta, np.arcsinh([2.0, -0.5]))
    np.testing.assert_allclose(event.pt, [5.0])
    assert event.noise.tolist() == [False, True]
    # the same event through a directory + id, as int or name
    assert read_event(tmp_path, "event000000005").event_id == 5
    assert read_event(tmp_path).truth is not None  # the only event in the directory


def test_parts_subset_leaves_none(tmp_path: Path) -> None:
    prefix = write_event(tmp_path, truth=None, particles=None, cells=None)
    event = read_event(prefix, parts=("hits",))
    assert event.truth is None and event.particles is None and event.cells is None
    assert_one_line_error("particles were not read", lambda: event.pt)
    assert_one_line_error("truth was not read", lambda: event.noise)


def test_iter_events_order_and_lazy(tmp_path: Path) -> None:
    for n in (30, 2, 100):
        write_event(tmp_path, n)
    it = iter_events(tmp_path)
    assert isinstance(it, types.GeneratorType)
    assert next(it).event_id == 2
    # nothing after the current event has been read yet: break event 30 now
    (tmp_path / "event000000030-truth.csv").unlink()
    assert_one_line_error(
        r"event 30 .*no truth file.*parts present: hits, particles, cells", next, it
    )
    ids = [e.event_id for e in iter_events(tmp_path, parts=("hits",), events=[100, "2"])]
    assert ids == [2, 100]
    assert_one_line_error("no hits file", list, iter_events(tmp_path, events=[7]))


def test_public_names_lazy() -> None:
    assert set(trackml.__all__) >= {"TrackMLEvent", "read_event", "iter_events"}
    assert fivesigma.io.read_trackml_event is read_event
    assert fivesigma.io.iter_trackml_events is iter_events
    assert fivesigma.io.check_geometry is check_geometry
    assert fivesigma.io.read_detectors is read_detectors
    assert fivesigma.io.TrackMLEvent is TrackMLEvent


def test_docstring_examples() -> None:
    result = doctest.testmod(trackml, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


# --------------------------------------------------------------------------------------
# Errors: one line, naming the file and the event


def test_missing_part(tmp_path: Path) -> None:
    prefix = write_event(tmp_path, 4, particles=None)
    msg = assert_one_line_error(
        r"event 4 in .*no particles file 'event000000004-particles.csv'.*"
        r"parts present: hits, truth, cells",
        read_event,
        prefix,
    )
    assert str(tmp_path) in msg


def test_truth_ids_absent(tmp_path: Path) -> None:
    truth = TRUTH.replace("\n2,0,", "\n9,0,")
    prefix = write_event(tmp_path, 3, truth=truth)
    msg = assert_one_line_error(
        r"event000000003-truth.csv' \(event 3\): 1 truth hit ids are not in "
        r"'event000000003-hits.csv' \(first: 9\)",
        read_event,
        prefix,
    )
    assert str(tmp_path) in msg


def test_truth_length_differs(tmp_path: Path) -> None:
    truth = TRUTH.rsplit("\n2,", 1)[0] + "\n"
    prefix = write_event(tmp_path, 3, truth=truth)
    assert_one_line_error(
        r"event000000003-truth.csv' \(event 3\): 1 truth rows but 2 hits", read_event, prefix
    )


def test_empty_event(tmp_path: Path) -> None:
    prefix = write_event(tmp_path, 8, hits=HITS.splitlines()[0] + "\n", truth=None)
    assert_one_line_error(
        r"event000000008-hits.csv' \(event 8\): the event has no hits",
        read_event,
        prefix,
        parts=("hits",),
    )
    (tmp_path / "event000000008-hits.csv").write_text("")
    assert_one_line_error(
        r"event000000008-hits.csv' \(event 8\): the file is empty",
        read_event,
        prefix,
        parts=("hits",),
    )


def test_missing_column(tmp_path: Path) -> None:
    prefix = write_event(tmp_path, 6, hits=HITS.replace("module_id", "module"))
    assert_one_line_error(
        r"event000000006-hits.csv' \(event 6\): missing column module_id; "
        r"the file has: hit_id, x, y, z, volume_id, layer_id, module$",
        read_event,
        prefix,
    )


def test_check_geometry_unknown_modules(tmp_path: Path) -> None:
    prefix = write_event(tmp_path, 2)
    event = read_event(prefix)
    det = pd.DataFrame({c: [0.0, 0.0] for c in DETECTOR_COLUMNS})
    det[["volume_id", "layer_id", "module_id"]] = [[7, 2, 1], [8, 2, 4]]
    det_path = tmp_path / "detectors.csv"
    det.to_csv(det_path)  # with the unnamed index column, as in TrackML
    detectors = read_detectors(det_path)
    assert "Unnamed: 0" not in detectors.columns
    assert_one_line_error(
        r"event000000002-hits.csv' \(event 2\): 1 hits on 1 modules not in the detector "
        r"table '.*detectors.csv' \(first \(volume, layer, module\): \(8, 2, 3\)\)",
        check_geometry,
        event,
        detectors,
    )
    det.loc[1, "module_id"] = 3
    det.to_csv(det_path)
    check_geometry(event, read_detectors(tmp_path))


def test_detectors_errors(tmp_path: Path) -> None:
    assert_one_line_error("no detectors.csv or detectors.csv.gz", read_detectors, tmp_path)
    path = tmp_path / "detectors.csv"
    path.write_text("volume_id,layer_id,module_id\n7,2,1\n")
    assert_one_line_error(r"detectors.csv': missing columns cx, cy, cz", read_detectors, path)


def test_directory_and_event_errors(tmp_path: Path) -> None:
    assert_one_line_error("does not exist", read_event, tmp_path / "nowhere")
    assert_one_line_error("holds 0 TrackML events", read_event, tmp_path)
    write_event(tmp_path, 1)
    write_event(tmp_path, 2)
    assert_one_line_error(
        r"holds 2 TrackML events \(1, 2\); give the event id", read_event, tmp_path
    )
    assert_one_line_error("not a TrackML event id", read_event, tmp_path, "evt1")
    assert_one_line_error("unknown TrackML part tracks", read_event, tmp_path, 1, parts=("tracks",))
    assert_one_line_error("does not exist", iter_events, tmp_path / "nowhere")
    bad = HITS.replace("30,40", "thirty,40")
    prefix = write_event(tmp_path, 9, hits=bad)
    assert_one_line_error(r"\(event 9\): column 'x' is not numeric", read_event, prefix)
