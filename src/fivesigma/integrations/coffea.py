"""Score events with a fivesigma model bundle inside a coffea processor.

:class:`FivesigmaWrapper` follows coffea's ``ml_tools`` interface
(``coffea.ml_tools.numpy_call_wrapper``): :meth:`~FivesigmaWrapper.prepare_awkward`
turns the events into the model's inputs, :meth:`~FivesigmaWrapper.numpy_call` scores
them, and calling the wrapper does both, eagerly on an ``awkward.Array`` or lazily on a
``dask_awkward.Array`` (one ``map_partitions`` task per partition).  coffea itself is not
needed (and not imported): its requirements (numba, correctionlib, ...) are no
dependency of fivesigma.

The bundle's own feature definitions are applied, exactly as ``fivesigma apply`` does:
the branches it reads, ``data.missing`` sentinels, the derived columns in order, the
feature expressions, the selection (:meth:`~FivesigmaWrapper.selected`), and its
preprocessing.  A branch name is looked up in the events as a field (``met``), as a
field of a collection in NanoAOD's ``Collection_field`` spelling (``Muon_pt`` ->
``events.Muon.pt``, ``nMuon`` -> the number of muons), or through ``branches`` given
to the wrapper (``{"lep_pt": "Lepton.pt"}``, dotted paths).

Example, in a processor::

    from fivesigma.integrations.coffea import FivesigmaWrapper

    class Processor(coffea.processor.ProcessorABC):
        def __init__(self):
            self.model = FivesigmaWrapper("out/models/bdt")

        def process(self, events):
            score = self.model(events)          # one float per event, NaN: not scorable
            passed = self.model.selected(events) # the training selection
            ...

Scores are the signal probability (``decision_function``) or, for a multi-class bundle,
its stored discriminant; NaN where a feature is inf, and where one is NaN unless the
bundle was trained with ``data.nan_policy: keep`` and its model takes NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from fivesigma.data import needed_columns, process_chunk
from fivesigma.data.config import DataConfig, SampleConfig
from fivesigma.errors import DataError, ModelError
from fivesigma.io.events import Chunk

__all__ = ["FivesigmaWrapper"]

_SELECTED = "fivesigma_selected"
#: the chunk's stand-in file name (split codes hash it; apply ignores them)
_SOURCE = Path("<awkward>")


class FivesigmaWrapper:
    """A fivesigma event-classifier bundle as a coffea ``ml_tools``-style callable.

    Parameters
    ----------
    bundle_path : a bundle directory written by ``fivesigma run`` (``models/<name>``) or
        ``Estimator.save``, of a model that takes a table of event features.
    branches : branch name -> field path in the events (``"Lepton.pt"``) or a function
        ``events -> array``, for branches not found by name.

    The wrapper pickles as its bundle path (the model is loaded again where it runs), so
    it can be shipped to dask workers.
    """

    def __init__(
        self,
        bundle_path: str | Path,
        branches: Mapping[str, str | Callable[[Any], Any]] | None = None,
    ) -> None:
        self.bundle_path = str(bundle_path)
        self.branches = dict(branches or {})
        self._load()

    def _load(self) -> None:
        from fivesigma.estimators import load

        est = load(self.bundle_path)
        if est.inputs != "table":
            raise ModelError(
                f"model bundle '{self.bundle_path}' holds a {est.kind!r} model, which does "
                "not take a table of event features"
            )
        self.estimator = est
        self.data = dict(getattr(est, "bundle_data_", {}) or {})
        derived = dict(self.data.get("derived", {}))
        if self.data.get("selection"):
            derived[_SELECTED] = self.data["selection"]  # every event kept and flagged
        self._sample = SampleConfig(name="input", files=["-"], tree="events", label=0)
        self._config = DataConfig(
            samples=[self._sample],
            derived=derived,
            features=list(est.feature_names_in_),
            nan_policy="error",
            missing=self.data.get("missing"),
        )
        self._extra = [_SELECTED] if _SELECTED in derived else []
        self.columns = sorted(needed_columns(self._config, self._sample, self._extra))

    def __getstate__(self) -> dict[str, Any]:
        return {"bundle_path": self.bundle_path, "branches": self.branches}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._load()

    # -- coffea's ml_tools interface ------------------------------------------------------

    def prepare_awkward(self, events: ak.Array) -> tuple[tuple[ak.Array], dict[str, Any]]:
        """``((X,), {})``: the feature matrix ``X`` (events x features, float64, NaN where
        a feature is undefined) as a regular awkward array, for :meth:`numpy_call`."""
        X, _ = self._features(events)
        return (ak.from_numpy(X),), {}

    def validate_numpy_input(self, X: np.ndarray) -> None:
        """``X`` must be a 2-D float matrix with one column per feature of the bundle."""
        n = self.estimator.n_features_in_
        if X.ndim != 2 or X.shape[1] != n:
            raise DataError(
                f"the model of '{self.bundle_path}' takes (events, {n}) features, got shape "
                f"{tuple(X.shape)}"
            )

    def numpy_call(self, X: np.ndarray) -> np.ndarray:
        """Scores of the feature matrix (NaN for rows that cannot be scored)."""
        self.validate_numpy_input(X)
        return self._score(np.asarray(X, dtype=np.float64))

    def __call__(self, events: Any) -> Any:
        """One score per event: an ``awkward.Array`` for awkward events, a lazy
        ``dask_awkward.Array`` (one task per partition) for dask-awkward events."""
        return self._dispatch(events, "score")

    def selected(self, events: Any) -> Any:
        """Whether each event passes the bundle's training selection (all true without)."""
        return self._dispatch(events, "selected")

    # -- internals ----------------------------------------------------------------------

    def _dispatch(self, events: Any, what: str) -> Any:
        if isinstance(events, ak.Array):
            return self._partition(events, what)
        if type(events).__module__.startswith("dask_awkward"):
            from fivesigma.core import extras

            dak = extras.dask_awkward()
            return dak.map_partitions(_Partition(self, what), events, label=f"fivesigma-{what}")
        raise DataError(
            f"events must be an awkward.Array or a dask_awkward.Array, got {type(events).__name__}"
        )

    def _partition(self, events: ak.Array, what: str) -> ak.Array:
        if ak.backend(events) == "typetracer":
            # dask-awkward's dry run: say which fields are read, return the output's type
            for name in self.columns:
                ak.typetracer.touch_data(self._branch(events, name))
            dtype = np.float64 if what == "score" else np.bool_
            empty = ak.Array(np.zeros(0, dtype=dtype))
            return ak.Array(empty.layout.to_typetracer(forget_length=True))
        X, selected = self._features(events)
        if what == "selected":
            return ak.Array(selected)
        return ak.Array(self._score(X))

    def _features(self, events: ak.Array) -> tuple[np.ndarray, np.ndarray]:
        n = len(events)
        arrays = {name: _column(self._branch(events, name)) for name in self.columns}
        chunk = Chunk(arrays=arrays, file=_SOURCE, entry_start=0, entry_stop=n)
        part = process_chunk(
            chunk, 0, self._sample, self._config, seed=0, extra_columns=self._extra
        )
        X = part.features(self.estimator.feature_names_in_, nan_policy="keep")
        selected = (
            np.asarray(part.columns[_SELECTED], dtype=bool) if self._extra else np.ones(n, bool)
        )
        return X, selected

    def _branch(self, events: ak.Array, name: str) -> Any:
        """The array of branch ``name`` in the events (see the module docstring)."""
        how = self.branches.get(name)
        if callable(how):
            return how(events)
        if isinstance(how, str):
            return _field_path(events, how, name)
        fields = events.fields
        if name in fields:
            return events[name]
        if name.startswith("n") and name[1:] in fields:  # NanoAOD counts: nMuon
            return ak.num(events[name[1:]], axis=1)
        collection, _, field = name.partition("_")
        if field and collection in fields and field in events[collection].fields:
            return events[collection][field]
        raise DataError(
            f"the model of '{self.bundle_path}' needs branch '{name}', which the events do "
            f"not have (fields: {', '.join(fields[:15])}{', ...' if len(fields) > 15 else ''}); "
            "map it with FivesigmaWrapper(..., branches={'" + name + "': 'Collection.field'})"
        )

    def _score(self, X: np.ndarray) -> np.ndarray:
        est = self.estimator
        takes = est.handles_missing or getattr(est, "imputer_", None) is not None
        keep_nan = self.data.get("nan_policy") == "keep" and takes
        good = ~np.isinf(X).any(axis=1) if keep_nan else np.isfinite(X).all(axis=1)
        score = np.full(len(X), np.nan)
        if good.any():
            signal = self.data.get("signal_classes")
            if not signal:
                score[good] = est.decision_function(X[good])
            else:
                from fivesigma.metrics import discriminant

                score[good] = discriminant(
                    est.predict_proba(X[good]),
                    signal,
                    kind=self.data.get("discriminant") or "probability",
                )
        return score


class _Partition:
    """The function ``dask_awkward.map_partitions`` calls on every partition (picklable)."""

    def __init__(self, wrapper: FivesigmaWrapper, what: str) -> None:
        self.wrapper = wrapper
        self.what = what

    def __call__(self, events: ak.Array) -> ak.Array:
        return self.wrapper._partition(events, self.what)


def _field_path(events: ak.Array, path: str, name: str) -> Any:
    out = events
    for part in path.split("."):
        if part not in out.fields:
            raise DataError(
                f"branch '{name}' is mapped to '{path}', but the events have no field '{part}' "
                f"there (fields: {', '.join(out.fields[:15])})"
            )
        out = out[part]
    return out


def _column(array: Any) -> Any:
    """A branch as fivesigma's readers give it: numpy when flat, awkward when jagged,
    without NanoEvents behaviours."""
    arr = ak.Array(ak.without_parameters(array), behavior=None)
    if arr.ndim == 1 and not isinstance(arr.layout, ak.contents.RecordArray):
        try:
            return ak.to_numpy(arr)
        except ValueError:  # option types (None): keep awkward
            return arr
    return arr
