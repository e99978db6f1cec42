"""The coffea-style wrapper scores awkward events exactly as ``fivesigma apply`` scores
the same events from a file: eagerly and in dask-awkward partitions."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

pytest.importorskip("xgboost")

from fivesigma.errors import DataError
from fivesigma.estimators import make_estimator
from fivesigma.integrations.coffea import FivesigmaWrapper

#: how the bundle builds its features from branches (stored in it, as classify does)
DATA = {
    "derived": {"lead_pt": "nth(Lepton_pt, 0)", "ht": "sum(Lepton_pt)"},
    "selection": "nLepton >= 1",
    "tree": "Events",
    "nan_policy": "keep",
    "missing": {"met": -999.0},
}
FEATURES = ["lead_pt", "ht", "met", "nth(Lepton_eta, 0)"]


def _events(n: int, seed: int) -> ak.Array:
    """NanoEvents-like: a flat ``met``, a ``Lepton`` collection; events with no lepton
    (NaN features) and a ``-999`` met sentinel included."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 4, n)
    pt = rng.exponential(30.0, counts.sum()) + 5.0
    eta = rng.normal(0.0, 1.5, counts.sum())
    met = rng.exponential(40.0, n)
    met[::11] = -999.0
    lepton = ak.zip({"pt": ak.unflatten(pt, counts), "eta": ak.unflatten(eta, counts)})
    return ak.zip({"met": met, "Lepton": lepton}, depth_limit=1)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    events = _events(600, 0)
    lead = ak.to_numpy(ak.fill_none(ak.firsts(events.Lepton.pt), np.nan))
    met = ak.to_numpy(events.met)
    X = np.stack(
        [
            lead,
            ak.to_numpy(ak.sum(events.Lepton.pt, axis=1)),
            np.where(met == -999.0, np.nan, met),
            ak.to_numpy(ak.fill_none(ak.firsts(events.Lepton.eta), np.nan)),
        ],
        axis=1,
    )
    y = ((np.nan_to_num(lead) + np.nan_to_num(X[:, 2]) / 2) > 45).astype(int)
    est = make_estimator("bdt", n_estimators=30, max_depth=3, n_jobs=1)
    est.fit(X, y, feature_names=FEATURES)
    return est.save(tmp_path_factory.mktemp("b") / "bdt", data=DATA)


def _apply(bundle, events, tmp_path) -> dict:
    """``fivesigma apply`` on the same events written as flat branches to Parquet."""
    import pyarrow.parquet as pq

    from fivesigma.tasks.classify.apply import apply_bundle

    table = ak.to_arrow_table(
        ak.zip(
            {
                "met": events.met,
                "nLepton": ak.num(events.Lepton, axis=1),
                "Lepton_pt": events.Lepton.pt,
                "Lepton_eta": events.Lepton.eta,
            },
            depth_limit=1,
        ),
        extensionarray=False,
    )
    src = tmp_path / "events.parquet"
    pq.write_table(table, src)
    out = tmp_path / "scores.parquet"
    apply_bundle(bundle, [str(src)], out)
    return ak.from_parquet(out)


def test_eager_scores_equal_fivesigma_apply(bundle, tmp_path):
    events = _events(300, 1)
    ref = _apply(bundle, events, tmp_path)
    wrapper = FivesigmaWrapper(bundle)
    score = wrapper(events)
    assert isinstance(score, ak.Array) and len(score) == 300
    # nan_policy keep and a BDT: events without a lepton are scored too, and scores vary
    assert np.isfinite(ak.to_numpy(score)).all() and np.ptp(ak.to_numpy(score)) > 0.5
    assert 0 < int(np.sum(ref.selected)) < 300
    np.testing.assert_array_equal(ak.to_numpy(score), ak.to_numpy(ref.score))
    np.testing.assert_array_equal(ak.to_numpy(wrapper.selected(events)), ak.to_numpy(ref.selected))
    # the feature matrix of prepare_awkward: NaN where an event has no lepton
    (X,), kwargs = wrapper.prepare_awkward(events)
    X = ak.to_numpy(X)
    assert kwargs == {} and X.shape == (300, 4)
    no_lepton = ak.to_numpy(ak.num(events.Lepton, axis=1) == 0)
    assert no_lepton.any() and np.isnan(X[no_lepton, 0]).all()
    assert np.isnan(X[::11, 2]).all()  # the met sentinel became missing
    np.testing.assert_array_equal(wrapper.numpy_call(X), ak.to_numpy(score))


def test_dask_awkward_partitions_equal_eager(bundle):
    dak = pytest.importorskip("dask_awkward")
    events = _events(300, 2)
    wrapper = FivesigmaWrapper(bundle)
    lazy = wrapper(dak.from_awkward(events, npartitions=3))
    assert isinstance(lazy, dak.Array)
    computed = lazy.compute(scheduler="sync")
    np.testing.assert_array_equal(ak.to_numpy(computed), ak.to_numpy(wrapper(events)))
    selected = wrapper.selected(dak.from_awkward(events, npartitions=2)).compute(scheduler="sync")
    np.testing.assert_array_equal(ak.to_numpy(selected), ak.to_numpy(wrapper.selected(events)))


def test_branch_mapping_and_missing_branch(bundle):
    events = _events(50, 3)
    renamed = ak.zip({"MET": events.met, "Lep": events.Lepton}, depth_limit=1)
    mapped = FivesigmaWrapper(
        bundle,
        branches={
            "met": "MET",
            "Lepton_pt": "Lep.pt",
            "Lepton_eta": "Lep.eta",
            "nLepton": lambda ev: ak.num(ev.Lep, axis=1),
        },
    )
    np.testing.assert_array_equal(
        ak.to_numpy(mapped(renamed)), ak.to_numpy(FivesigmaWrapper(bundle)(events))
    )
    with pytest.raises(DataError, match="needs branch 'Lepton_eta'") as err:
        FivesigmaWrapper(bundle)(ak.zip({"met": events.met}))
    assert "\n" not in str(err.value)


def test_wrapper_pickles_as_its_bundle_path(bundle):
    import pickle

    events = _events(40, 4)
    wrapper = FivesigmaWrapper(bundle)
    clone = pickle.loads(pickle.dumps(wrapper))
    np.testing.assert_array_equal(ak.to_numpy(clone(events)), ak.to_numpy(wrapper(events)))
