"""The estimator contract, written once: :class:`Estimator` and :class:`TorchEstimator`.

Every model in fivesigma (logistic regression, BDT, MLP, the jet taggers) follows
scikit-learn's contract:

* ``__init__`` only stores hyper-parameters (``get_params`` / ``set_params``, and
  ``type(est)(**est.get_params())`` makes an unfitted copy);
* ``fit(X, y, sample_weight=None, *, valid=None, feature_names=None)`` validates its input
  and returns ``self``; fitted state ends in ``_``;
* ``predict_proba(X)`` gives class probabilities, ``predict(X)`` the most probable class,
  ``decision_function(X)`` the signal probability P(class 1) of a binary classifier;
* ``score(X, y, sample_weight=None)`` is a *metric*, as in scikit-learn: the event-weighted
  ROC AUC (for K > 2 classes the mean one-vs-rest AUC), not a per-event score;
* ``save(path)`` writes a model bundle (:mod:`fivesigma.core.bundle`, never pickle) and
  ``load(path)`` reads it back; ``export_onnx(path)`` writes an ONNX graph where the model
  can be exported.

What ``X`` is depends on the estimator's input kind (:data:`INPUT_KINDS`): a ``"table"``
is a 2-D float matrix ``(n_events, n_features)`` (numpy or DataFrame), ``"constituents"``
are padded jet constituents, a dict of arrays ``{"x", "v", "mask"}``.  Labels are
``0..K-1`` (binary: 0 background, 1 signal); event weights may be non-uniform and
negative.

Missing values (NaN) in a table: an estimator that ``handles_missing`` (the BDT) takes
them as they are; one that ``imputes_missing`` (the logistic regression, the MLP) fits an
:class:`~fivesigma.training.preprocessing.Imputer` in :meth:`Estimator.fit` when its
training or validation data hold NaN, and the imputation (fill-in values and is-missing
flag columns) is part of the model: applied in ``predict_proba``, stored in the bundle's
preprocessing (``imputer``) and put in front of the ONNX graph.  Every other estimator
refuses NaN, and inf is refused everywhere, with one line.

A new model subclasses :class:`Estimator` (implementing ``_fit``, ``_predict_proba``,
``_bundle`` and ``_restore``) or, for a torch network, :class:`TorchEstimator`
(implementing the network, its inputs and its inference head), and is registered in
:data:`fivesigma.core.registry.ESTIMATORS` and :data:`~fivesigma.core.registry.BUNDLE_KINDS`.

This module imports numpy only; torch is imported when a torch estimator is used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import numpy as np

from fivesigma.core.bundle import ARRAYS, Bundle, data_fingerprint, load_bundle, save_bundle
from fivesigma.errors import DataError, FivesigmaError, ModelError, describe_exception, shorten
from fivesigma.export.onnx import OnnxGraph
from fivesigma.training.inputs import (
    apply_class_weight,
    as_constituents,
    as_labels,
    as_table,
    as_weights,
    class_count,
    feature_names_of,
    stratified_holdout,
    torch_threads,
)
from fivesigma.training.params import (
    CLASS_WEIGHT,
    DEVICE,
    OPTIONAL_PATH,
    SCHEDULERS,
    HyperParameters,
    ParamSchema,
    boolean,
    choice,
    integer,
    number,
    param,
    params_to_json,
)
from fivesigma.training.preprocessing import Imputer, Standardiser

if TYPE_CHECKING:
    from typing import Self

    import torch

__all__ = [
    "INPUT_KINDS",
    "Estimator",
    "InputKind",
    "OnnxGraph",
    "TorchEstimator",
    "TorchParams",
]

#: a model's data: the validated input arrays (``(X,)`` or ``(x, v, mask)``)
Arrays = tuple[np.ndarray, ...]


# --------------------------------------------------------------------------------------
# Input kinds


@dataclass(frozen=True)
class InputKind:
    """How one kind of estimator input is validated and named in messages.

    ``check(data, name, allow_missing=False)`` returns the input as a tuple of numpy
    arrays whose first axis is the event and whose first array's last axis is the feature
    axis; ``allow_missing`` lets NaN through (tables only: the estimator takes or imputes
    missing values).
    """

    name: str
    argument: str
    check: Callable[..., Arrays]
    feature_key: str = ""
    feature_unit: str = "features"


def _check_table(X: Any, name: str, allow_missing: bool = False) -> Arrays:
    """A float64 table; NaN (missing values) only with ``allow_missing``, inf never."""
    if not allow_missing:
        return (as_table(X, name),)
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        return (as_table(X, name),)  # its one-line error
    if arr.ndim != 2:
        return (as_table(arr, name),)
    inf = np.isinf(arr)
    if inf.any():
        cols = np.flatnonzero(inf.any(axis=0)).tolist()
        n = int(inf.sum())
        raise DataError(
            f"{name} contains {n} inf value{'s' if n != 1 else ''} (in feature columns "
            f"{cols[:10]}); only NaN means a missing value: fix or remove those events"
        )
    nan = np.isnan(arr)
    if nan.any():
        as_table(np.where(nan, 0.0, arr), name)  # the other checks (events, shape)
        return (arr,)
    return (as_table(arr, name),)


def _has_nan(X: Any) -> bool:
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return bool(np.isnan(arr).any())


def _check_constituents(inputs: Any, name: str, allow_missing: bool = False) -> Arrays:
    return as_constituents(inputs, name)


#: input kind name (the ``inputs`` metadata of an ESTIMATORS entry) -> :class:`InputKind`
INPUT_KINDS: dict[str, InputKind] = {
    "table": InputKind("table", "X", _check_table),
    "constituents": InputKind(
        "constituents", "inputs", _check_constituents, "['x']", "features per particle"
    ),
}


def _take(data: Arrays, idx: Any) -> Arrays:
    return tuple(a[idx] for a in data)


# --------------------------------------------------------------------------------------
# The estimator contract


class Estimator(HyperParameters):
    """Base of every estimator: validation, prediction, scoring, bundles, ONNX.

    Subclasses set ``kind`` (the bundle kind), ``inputs`` (an :data:`INPUT_KINDS`
    name) and ``Params`` (the typed schema of their hyper-parameters, a
    :class:`~fivesigma.training.params.ParamSchema` with one field per ``__init__``
    argument) and implement ``_fit``, ``_predict_proba``, ``_bundle`` and ``_restore``;
    ``_onnx_graph`` where the model can be exported and ``n_parameters`` where the
    number of fitted parameters is meaningful.

    Hyper-parameters are validated against ``Params`` in one place,
    :meth:`~fivesigma.training.params.HyperParameters.check_params`: by
    :func:`fivesigma.estimators.make_estimator`, at the start of :meth:`fit` (as
    scikit-learn does) and when a bundle is loaded; the first bad value is a one-line
    :class:`ModelError` naming the estimator, the parameter and what is accepted.
    :meth:`param_schema` gives the JSON schema.

    Fitted attributes: ``n_features_in_``, ``feature_names_in_``, ``n_classes_``,
    ``classes_``, ``data_fingerprint_`` (a hash of the training data), ``imputer_`` (an
    :class:`Imputer`, or None: no missing values in training); after :meth:`load` also
    ``bundle_data_`` and ``bundle_metadata_``.

    Missing values: see the module docstring (``handles_missing``, ``imputes_missing``).
    The imputer is fitted on the training events (after any ``valid_fraction`` hold-out),
    weighted by ``|sample_weight|``; ``_fit``, ``_predict_proba``, ``_restore`` and
    ``_onnx_graph`` then work on the imputed table of :meth:`_n_model_inputs` columns.
    """

    #: bundle kind (the ``kind`` of the manifest); "" for abstract bases
    kind: ClassVar[str] = ""
    #: input kind, a key of :data:`INPUT_KINDS`
    inputs: ClassVar[str] = "table"
    #: how error messages name the model (default: ``kind``)
    what: ClassVar[str] = ""
    #: the model takes NaN in a table input as missing values (e.g. xgboost)
    handles_missing: ClassVar[bool] = False
    #: the model cannot take NaN, so :meth:`fit` fits an :class:`Imputer` when the training
    #: (or validation) table holds NaN; the model then sees the imputed table with its
    #: is-missing flag columns
    imputes_missing: ClassVar[bool] = False

    @classmethod
    def _what(cls) -> str:
        return cls.what or cls.kind or cls.__name__

    @classmethod
    def _input_kind(cls) -> InputKind:
        return INPUT_KINDS[cls.inputs]

    def _params_what(self) -> str:
        """How messages about this estimator's hyper-parameters name it."""
        return self._what()

    def _check_params(self) -> None:
        """Validate the current hyper-parameters (a one-line :class:`ModelError`)."""
        type(self).check_params(self.get_params(), what=self._params_what())

    # -- fitting ------------------------------------------------------------------------

    def fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any = None,
        *,
        valid: Sequence[Any] | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> Self:
        """Train on ``(X, y, sample_weight)`` and return ``self``.

        Parameters
        ----------
        X : the input: a ``(n_events, n_features)`` table (numpy array or DataFrame) or,
            for constituent models, a dict ``{"x", "v", "mask"}`` of padded constituents.
        y : (n_events,) integer labels 0..K-1 (binary: 0 background, 1 signal).
        sample_weight : (n_events,) event weights, default 1; negative values allowed.
        valid : optional validation data ``(X, y)`` or ``(X, y, sample_weight)`` of the
            same structure, for early stopping.  Without it, estimators with a
            ``valid_fraction`` hold out that fraction of each class (chosen by ``seed``).
        feature_names : names of the features (default: DataFrame columns or x0, x1, ...).
        """
        self._check_params()  # before any data is looked at
        kind = self._input_kind()
        names = feature_names if feature_names is not None else feature_names_of(X)
        data = kind.check(X, kind.argument, self._takes_missing())
        n, n_features = data[0].shape[0], data[0].shape[-1]
        ya = as_labels(y, n, "y", kind.argument)
        wa = as_weights(sample_weight, n, "sample_weight", kind.argument)
        n_classes = class_count(ya, getattr(self, "n_classes", None), self._what())
        names = (
            [str(f) for f in names] if names is not None else [f"x{i}" for i in range(n_features)]
        )
        if len(names) != n_features:
            raise DataError(
                f"{len(names)} feature_names given for {n_features} {kind.feature_unit} "
                f"of {kind.argument}"
            )
        valid_data = self._check_valid(valid, n_features, n_classes) if valid is not None else None
        fingerprint = data_fingerprint(*data, ya, wa)
        fraction = getattr(self, "valid_fraction", None)
        if fraction is not None:
            if not isinstance(fraction, int | float) or not 0.0 <= fraction < 1.0:
                raise ModelError(
                    f"{self._what()} valid_fraction must be in [0, 1), got {fraction!r}"
                )
            if valid_data is None and fraction > 0:
                held = stratified_holdout(ya, n_classes, fraction, getattr(self, "seed", 0))
                if held.any():
                    valid_data = (_take(data, held), ya[held], wa[held])
                    data, ya, wa = _take(data, ~held), ya[~held], wa[~held]

        imputer = None
        has_nan = self.imputes_missing and self.inputs == "table" and np.isnan(data[0]).any()
        if self.imputes_missing and self.inputs == "table" and valid_data is not None:
            has_nan = has_nan or bool(np.isnan(valid_data[0][0]).any())
        if has_nan:
            imputer = Imputer().fit(data[0], wa)
            data = (imputer.transform(data[0]),)
            if valid_data is not None:
                (xv,), yv, wv = valid_data
                valid_data = ((imputer.transform(xv),), yv, wv)

        self.n_features_in_ = n_features
        self.feature_names_in_ = names
        self.n_classes_ = n_classes
        self.classes_ = np.arange(n_classes)
        self.data_fingerprint_ = fingerprint
        self.imputer_ = imputer
        try:
            self._fit(data, ya, wa, valid_data)
        except BaseException:
            del self.n_features_in_  # a failed fit leaves no half-fitted model behind
            raise
        return self

    def _check_valid(
        self, valid: Any, n_features: int, n_classes: int
    ) -> tuple[Arrays, np.ndarray, np.ndarray]:
        kind = self._input_kind()
        arg = kind.argument
        if (
            not isinstance(valid, Sequence)
            or isinstance(valid, str | bytes)
            or len(valid) not in (2, 3)
        ):
            raise DataError(f"valid must be a tuple ({arg}, y) or ({arg}, y, sample_weight)")
        name = f"valid {arg}"
        data = kind.check(valid[0], name, self._takes_missing())
        if data[0].shape[-1] != n_features:
            raise DataError(
                f"{name}{kind.feature_key} has {data[0].shape[-1]} {kind.feature_unit} but "
                f"{arg}{kind.feature_key} has {n_features}"
            )
        n = data[0].shape[0]
        yv = as_labels(valid[1], n, "valid y", name)
        if yv.max() >= n_classes:
            raise DataError(
                f"valid y contains class {int(yv.max())}; the training labels are "
                f"0..{n_classes - 1}"
            )
        wv = as_weights(valid[2] if len(valid) == 3 else None, n, "valid sample_weight", name)
        return data, yv, wv

    def _fit(
        self,
        data: Arrays,
        y: np.ndarray,
        w: np.ndarray,
        valid: tuple[Arrays, np.ndarray, np.ndarray] | None,
    ) -> None:
        """Train on validated arrays; ``valid`` is ``(data, y, w)`` or None."""
        raise NotImplementedError

    # -- missing values -----------------------------------------------------------------

    @classmethod
    def _takes_missing(cls) -> bool:
        """Whether :meth:`fit` accepts NaN in its input (natively or by imputing)."""
        return cls.inputs == "table" and (cls.handles_missing or cls.imputes_missing)

    def _n_model_inputs(self) -> int:
        """Features the fitted model itself sees: ``n_features_in_`` plus the imputer's
        is-missing flag columns."""
        imputer = getattr(self, "imputer_", None)
        return self.n_features_in_ if imputer is None else imputer.n_features_out

    def _imputed(self, data: Arrays) -> Arrays:
        """The validated input as the model sees it (NaN filled in, flags appended)."""
        imputer = getattr(self, "imputer_", None)
        return data if imputer is None else (imputer.transform(data[0]),)

    def _with_imputation(self, module: Any) -> Any:
        """A torch module of the imputed table preceded by the imputation (for ONNX)."""
        imputer = getattr(self, "imputer_", None)
        if imputer is None:
            return module
        import torch

        return torch.nn.Sequential(imputer.torch_module(), module).eval()

    # -- prediction ---------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_features_in_"):
            raise ModelError(
                f"{type(self).__name__} is not fitted yet; call "
                f"fit({self._input_kind().argument}, y) first or load a bundle"
            )

    def _check_input(self, X: Any) -> Arrays:
        """The validated input arrays of a fitted estimator (feature count checked)."""
        self._check_fitted()
        kind = self._input_kind()
        takes = self.inputs == "table" and (
            self.handles_missing or getattr(self, "imputer_", None) is not None
        )
        if self.inputs == "table" and self.imputes_missing and not takes and _has_nan(X):
            raise DataError(
                f"{kind.argument} contains NaN values; this {self._what()} model was trained "
                "without missing values, so it has no imputation: fill or remove them (a model "
                "trained on data with NaN fills them in)"
            )
        data = kind.check(X, kind.argument, takes)
        got = data[0].shape[-1]
        if got != self.n_features_in_:
            shown = ", ".join(self.feature_names_in_[:12]) + (
                ", ..." if self.n_features_in_ > 12 else ""
            )
            raise DataError(
                f"{kind.argument}{kind.feature_key} has {got} {kind.feature_unit} but "
                f"{type(self).__name__} was trained on {self.n_features_in_} ({shown})"
            )
        return data

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape ``(n_events, n_classes)``; rows sum to 1."""
        return self._predict_proba(*self._imputed(self._check_input(X)))

    def _predict_proba(self, *data: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class per event, shape ``(n_events,)``."""
        return np.argmax(self.predict_proba(X), axis=1)

    def decision_function(self, X: Any) -> np.ndarray:
        """Signal probability P(class 1) per event, shape ``(n_events,)`` (binary only)."""
        self._check_fitted()
        if self.n_classes_ != 2:
            raise ModelError(
                f"decision_function() is for binary classifiers; this one has "
                f"{self.n_classes_} classes: use predict_proba({self._input_kind().argument})"
            )
        return self.predict_proba(X)[:, 1]

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """A metric of the model on ``(X, y)``, as scikit-learn's ``score``: higher is better.

        The event-weighted ROC AUC (:func:`fivesigma.metrics.auc`) of P(class 1) for a
        binary classifier; for K > 2 classes the mean over classes of the one-vs-rest AUC
        of P(class k).  Per-event signal probabilities are :meth:`decision_function`.
        """
        from fivesigma.metrics import auc

        p = self.predict_proba(X)
        arg = self._input_kind().argument
        ya = as_labels(y, p.shape[0], "y", arg)
        wa = as_weights(sample_weight, p.shape[0], "sample_weight", arg)
        if ya.max() >= self.n_classes_:
            raise DataError(
                f"y contains class {int(ya.max())}; the model has classes 0..{self.n_classes_ - 1}"
            )
        if self.n_classes_ == 2:
            return float(auc(ya, p[:, 1], wa))
        return float(
            np.mean([auc((ya == k).astype(np.int64), p[:, k], wa) for k in range(self.n_classes_)])
        )

    def n_parameters(self) -> int | None:
        """Number of fitted parameters (weights, coefficients, tree nodes); None if unknown."""
        self._check_fitted()
        return None

    # -- persistence --------------------------------------------------------------------

    def _bundle(self) -> Bundle:
        """The model-specific parts of the bundle (arrays, files, preprocessing, training)."""
        raise NotImplementedError

    def save(
        self,
        path: str | Path,
        data: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write a model bundle directory at ``path`` (atomically) and return its path.

        ``data`` (how the inputs are made from files: derived expressions, selection,
        particle features, ...) and ``metadata`` (metrics, provenance) are stored as given
        (JSON-serialisable); after :meth:`load` they are in ``bundle_data_`` and
        ``bundle_metadata_``.
        """
        self._check_fitted()
        bundle = self._bundle()
        imputer = getattr(self, "imputer_", None)
        if imputer is not None:
            bundle.preprocessing = {**bundle.preprocessing, "imputer": imputer.to_dict()}
        bundle.kind = self.kind
        bundle.features = list(self.feature_names_in_)
        bundle.params = params_to_json(self.get_params(), self._what())
        bundle.training = {"n_classes": int(self.n_classes_), **bundle.training}
        bundle.data = {"fingerprint": self.data_fingerprint_, **bundle.data, **dict(data or {})}
        bundle.metadata = {**bundle.metadata, **dict(metadata or {})}
        return save_bundle(bundle, path)

    @classmethod
    def load(cls, path: str | Path) -> Estimator:
        """Read a bundle written by :meth:`save`.

        On a concrete estimator class the bundle's kind must be that class's; on
        :class:`Estimator` itself any registered kind is read (see
        :func:`fivesigma.estimators.load`).
        """
        if not cls.kind:
            from fivesigma.estimators import load

            return load(path)
        bundle = _read_bundle(path)
        if bundle.kind != cls.kind:
            raise ModelError(
                f"model bundle '{path}' holds a {bundle.kind!r} model, not {cls.kind!r}"
            )
        return cls._from_bundle(bundle, path)

    @classmethod
    def _params_from_bundle(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Hyper-parameters as stored (JSON) -> ``__init__`` arguments.

        JSON has no tuples: lists (also inside lists and mappings, e.g. a tagger's
        ``model_params``) are read back as tuples, the type the networks' sizes take.
        """

        def untuple(value: Any) -> Any:
            if isinstance(value, list):
                return tuple(untuple(v) for v in value)
            if isinstance(value, dict):
                return {k: untuple(v) for k, v in value.items()}
            return value

        return {k: untuple(v) for k, v in params.items()}

    @classmethod
    def _from_bundle(cls, bundle: Bundle, path: str | Path) -> Estimator:
        params = cls._params_from_bundle(dict(bundle.params))
        try:
            cls.check_params(params, what=cls._what())
        except ModelError as err:
            raise ModelError(f"model bundle '{path}': {err}") from None
        est = cls(**params)
        est.n_features_in_ = len(bundle.features)
        est.feature_names_in_ = list(bundle.features)
        est.n_classes_ = int(bundle.training.get("n_classes", 2))
        est.classes_ = np.arange(est.n_classes_)
        est.data_fingerprint_ = bundle.data.get("fingerprint", "")
        est.bundle_data_ = dict(bundle.data)
        est.bundle_metadata_ = dict(bundle.metadata)
        est.imputer_ = None
        record = bundle.preprocessing.get("imputer")
        if record is not None:  # older bundles have none: they refuse NaN as before
            if not cls.imputes_missing:
                raise ModelError(
                    f"model bundle '{path}': {cls._what()} models do not impute, but the "
                    "bundle records an imputer; retrain or restore the bundle"
                )
            try:
                est.imputer_ = Imputer.from_dict(record, est.n_features_in_)
            except ModelError as err:
                raise ModelError(f"model bundle '{path}': {err}") from None
        est._restore(bundle, path)
        return est

    def _restore(self, bundle: Bundle, path: str | Path) -> None:
        """Set the fitted state from a bundle (the common attributes are already set)."""
        raise NotImplementedError

    # -- ONNX -----------------------------------------------------------------------------

    def _onnx_graph(self) -> OnnxGraph:
        """The torch module and example inputs to export (estimators that can export)."""
        raise ModelError(f"{self._what()} models cannot be exported to ONNX")

    def export_onnx(self, path: str | Path, opset: int = 17) -> Path:
        """Write an ONNX model of the fitted estimator, preprocessing included.

        Inputs are the raw float32 inputs: a table ``features`` (batch, n_features);
        constituents ``x`` (batch, particles, F), ``v`` (batch, particles, 4) in GeV and
        ``mask`` (batch, particles) as **float32**, 1.0 for real particles and 0.0 for
        padding (as in weaver's exports: every runtime handles it).  The output is
        ``probabilities`` (batch, n_classes).  The batch and particle axes are dynamic.
        The feature names are in the model's metadata (``fivesigma.features``).
        Estimators that cannot be exported raise a one-line :class:`ModelError`.
        See :func:`fivesigma.export.onnx.export_onnx`.
        """
        from fivesigma.export.onnx import export_onnx

        return export_onnx(self, path, opset=opset)


def _read_bundle(path: str | Path) -> Bundle:
    """:func:`load_bundle`, with a damaged file that passed its checksum (a manifest whose
    checksums were recomputed) reported in one line naming the bundle and the file."""
    try:
        return load_bundle(path)
    except FivesigmaError:
        raise
    except Exception as err:  # the safetensors reader's own errors
        raise ModelError(
            f"model bundle '{path}' is corrupt: {ARRAYS} cannot be read "
            f"({describe_exception(err)}); retrain or restore the bundle"
        ) from None


def weights_mismatch(err: BaseException) -> str:
    """The informative line of torch's ``load_state_dict`` error (which first names the
    module, then lists each mismatch on its own line)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith("Error(s) in loading")]
    return shorten((useful or lines or [type(err).__name__])[0], 200)


# --------------------------------------------------------------------------------------
# Torch estimators


class TorchParams(ParamSchema):
    """The hyper-parameters every :class:`TorchEstimator` takes (the training loop, class
    weights, the validation hold-out, seed, threads, progress, checkpoints, device); a
    torch estimator's ``Params`` subclasses it and adds its network's."""

    epochs: Annotated[
        integer(ge=1), param("an integer >= 1", "maximum number of passes over the training data")
    ] = 50
    batch_size: Annotated[integer(ge=1), param("an integer >= 1", "examples per step")] = 512
    lr: Annotated[number(gt=0), param("a number > 0", "(peak) learning rate of AdamW")] = 1e-3
    weight_decay: Annotated[
        number(ge=0), param("a number >= 0", "AdamW's decoupled weight decay")
    ] = 0.0
    scheduler: Annotated[
        choice(*SCHEDULERS), param(f"one of {', '.join(SCHEDULERS)}", "learning-rate schedule")
    ] = "cosine"
    early_stopping_patience: Annotated[
        integer(ge=1) | None,
        param(
            "an integer >= 1 or null (no early stopping)",
            "epochs without improvement of the validation loss before stopping",
        ),
    ] = 8
    min_delta: Annotated[
        number(ge=0), param("a number >= 0", "smallest decrease of the validation loss")
    ] = 0.0
    class_weight: Annotated[
        CLASS_WEIGHT,
        param(
            "null, 'balanced' or {class: factor} (classes integers >= 0, factors > 0)",
            "per-class factors on the event weights in the loss",
        ),
    ] = "balanced"
    valid_fraction: Annotated[
        number(ge=0, lt=1),
        param(
            "a number in [0, 1)",
            "fraction of each class held out for early stopping when no validation data "
            "is given (0: none)",
        ),
    ] = 0.2
    seed: Annotated[
        integer(ge=0, le=2**63 - 1),
        param("an integer in [0, 2**63)", "initial weights, shuffling, dropout, hold-out"),
    ] = 0
    num_threads: Annotated[
        integer(ge=1) | None,
        param("an integer >= 1 or null (unchanged)", "torch CPU threads during fit and predict"),
    ] = None
    progress: Annotated[boolean, param("true or false", "show a progress bar")] = True
    checkpoint_dir: Annotated[
        OPTIONAL_PATH,
        param(
            "a directory path or null",
            "where a checkpoint is written after every epoch, to resume an interrupted fit",
        ),
    ] = None
    device: Annotated[
        DEVICE,
        param("cpu, cuda, cuda:N or auto", "where the network trains and predicts"),
    ] = "cpu"


class TorchEstimator(Estimator):
    """What every torch model shares: seeded network construction, training with the
    shared :class:`~fivesigma.training.Trainer` (dict batches, event and class weights,
    early stopping on ``valid`` or a held-out ``valid_fraction``, resumable checkpoints),
    standardisation, batched no-grad prediction on ``device``, bundles (weights as
    ``net.*`` safetensors arrays, the network config and the training history) and ONNX
    export.

    The hyper-parameters read here (a subclass's ``__init__`` must take them): ``seed``,
    ``class_weight``, ``valid_fraction``, ``num_threads``, ``device`` and the
    :class:`~fivesigma.training.TrainerConfig` settings (``epochs``, ``batch_size``,
    ``lr``, ...); their typed schema is :class:`TorchParams`, which a subclass's
    ``Params`` extends with its network's.

    A subclass supplies the network (``_network_config``, ``_build_network``,
    ``_network_record``, ``_network_config_from_bundle``), its preprocessing
    (``_fit_scaler``, ``_preprocessing_record``, ``_scaler_from_bundle``), the training
    inputs (``_model_inputs``), optionally the module trained (``_training_module``) and
    the loss (``_loss``), the inference head (``_head``) and the ONNX inputs
    (``_onnx_inputs``, ``_onnx_metadata``).

    Fitted attributes: ``net_`` (the network, on the CPU, in eval mode),
    ``network_config_``, ``scaler_`` (:class:`Standardiser`), ``history_``
    (:class:`~fivesigma.training.TrainHistory`).
    """

    #: events per batch of :meth:`predict_proba`
    predict_batch_size: ClassVar[int] = 65536
    #: examples per batch of the validation loss during fit (None: the trainer's default)
    valid_batch_size: ClassVar[int | None] = None

    # -- hooks --------------------------------------------------------------------------

    def _network_config(self, n_features: int, n_classes: int) -> Any:
        raise NotImplementedError

    def _build_network(self, config: Any) -> torch.nn.Module:
        raise NotImplementedError

    def _network_record(self) -> dict[str, Any]:
        """What the bundle keeps under ``training.network``."""
        raise NotImplementedError

    def _network_config_from_bundle(self, bundle: Bundle, path: str | Path) -> Any:
        raise NotImplementedError

    def _fit_scaler(self, data: Arrays, w: np.ndarray) -> Standardiser:
        """The standardisation of the training inputs (``w``: class-weighted weights)."""
        raise NotImplementedError

    def _preprocessing_record(self) -> dict[str, Any]:
        raise NotImplementedError

    def _scaler_from_bundle(self, bundle: Bundle) -> Standardiser:
        raise NotImplementedError

    def _model_inputs(self, data: Arrays) -> dict[str, torch.Tensor]:
        """The keyword inputs of the trained module for ``data``."""
        raise NotImplementedError

    def _training_module(self, net: torch.nn.Module) -> torch.nn.Module:
        """The module the trainer fits (default: the network itself)."""
        return net

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-example loss (default: cross entropy on (batch, n_classes) logits)."""
        import torch

        return torch.nn.functional.cross_entropy(logits, target, reduction="none")

    def _head(self, export: bool = False) -> torch.nn.Module:
        """Raw float32 inputs (one tensor per input array) -> class probabilities."""
        raise NotImplementedError

    def _predict_order(self, data: Arrays) -> np.ndarray | None:
        """An order in which to predict (e.g. grouping similar events); None: as given."""
        return None

    def _onnx_inputs(self) -> dict[str, tuple[Any, list[int | str]]]:
        raise NotImplementedError

    def _onnx_metadata(self) -> dict[str, str]:
        return {}

    # -- shared machinery ---------------------------------------------------------------

    def _trainer_config(self) -> Any:
        from dataclasses import replace

        from fivesigma.training.trainer import TrainerConfig

        cfg = TrainerConfig.from_estimator(self, self._what())
        if self.valid_batch_size is not None:
            cfg = replace(cfg, eval_batch_size=self.valid_batch_size)
        return cfg

    def _new_network(self, config: Any) -> torch.nn.Module:
        """The network of ``config`` with initial weights drawn from ``seed``."""
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)  # initial weights come from the seed too
            return self._build_network(config)

    def _fit(
        self,
        data: Arrays,
        y: np.ndarray,
        w: np.ndarray,
        valid: tuple[Arrays, np.ndarray, np.ndarray] | None,
    ) -> None:
        import torch

        from fivesigma.training.trainer import Trainer

        config = self._network_config(self._n_model_inputs(), self.n_classes_)
        trainer_config = self._trainer_config()
        w = apply_class_weight(y, w, self.class_weight, self.n_classes_, "training")
        self.scaler_ = self._fit_scaler(data, w)

        def tensors(arrays: Arrays, labels: np.ndarray, weights: np.ndarray) -> dict:
            return {
                **self._model_inputs(arrays),
                "target": torch.from_numpy(labels.astype(np.int64)),
                "weight": torch.from_numpy(weights.astype(np.float32)),
            }

        train_t = tensors(data, y, w)
        valid_t = None
        if valid is not None:
            dv, yv, wv = valid
            wv = apply_class_weight(yv, wv, self.class_weight, self.n_classes_, "validation")
            valid_t = tensors(dv, yv, wv)
        net = self._new_network(config)
        module = self._training_module(net)
        self.history_ = Trainer(trainer_config).fit(module, train_t, valid_t, self._loss)
        self.net_ = net.cpu().eval()
        self.network_config_ = config

    def _predict_proba(self, *data: np.ndarray) -> np.ndarray:
        import torch

        from fivesigma.training.trainer import resolve_device

        device = resolve_device(getattr(self, "device", "cpu"))
        head = self._head().to(device)
        n = data[0].shape[0]
        order = self._predict_order(data)
        size = self.predict_batch_size
        out = np.empty((n, self.n_classes_), dtype=np.float64)
        try:
            with torch.no_grad(), torch_threads(self.num_threads):
                for start in range(0, n, size):
                    idx = (
                        slice(start, start + size) if order is None else order[start : start + size]
                    )
                    batch = [
                        torch.from_numpy(np.asarray(a[idx], dtype=np.float32)).to(device)
                        for a in data
                    ]
                    out[idx] = head(*batch).cpu().numpy()
        finally:
            self.net_.cpu()  # the fitted network lives on the CPU (saving, pickling, ONNX)
        return out

    def n_parameters(self) -> int:
        """Number of network parameters (elements)."""
        self._check_fitted()
        return int(sum(p.numel() for p in self.net_.parameters()))

    def _bundle(self) -> Bundle:
        arrays = {f"net.{k}": t.detach().cpu().numpy() for k, t in self.net_.state_dict().items()}
        training: dict[str, Any] = {"network": self._network_record()}
        if hasattr(self, "history_"):
            training["history"] = self.history_.to_dict()
        return Bundle(
            kind=self.kind,
            preprocessing=self._preprocessing_record(),
            training=training,
            arrays=arrays,
        )

    @classmethod
    def _params_from_bundle(cls, params: dict[str, Any]) -> dict[str, Any]:
        params = super()._params_from_bundle(params)
        if "device" in params:
            # a bundle predicts on the CPU wherever it was trained; set ``device`` for a GPU
            params["device"] = "cpu"
        return params

    def _restore(self, bundle: Bundle, path: str | Path) -> None:
        import torch

        self.scaler_ = self._scaler_from_bundle(bundle)
        config = self._network_config_from_bundle(bundle, path)
        net = self._build_network(config)
        state = {
            k[len("net.") :]: torch.from_numpy(np.array(a))
            for k, a in bundle.arrays.items()
            if k.startswith("net.")
        }
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            raise ModelError(
                f"model bundle '{path}': the weights in {ARRAYS} do not match the "
                f"{self._what()} network ({weights_mismatch(err)})"
            ) from None
        self.net_ = net.eval()
        self.network_config_ = config
        if "history" in bundle.training:
            from fivesigma.training.trainer import TrainHistory

            self.history_ = TrainHistory.from_dict(bundle.training["history"])

    def _onnx_graph(self) -> OnnxGraph:
        module = self._with_imputation(self._head(export=True))
        return OnnxGraph(module, self._onnx_inputs(), self._onnx_metadata())
