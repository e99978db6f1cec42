"""scikit-learn-style estimators for event classification: logistic, BDT (xgboost), MLP (torch).

Every estimator follows the contract of :class:`fivesigma.training.estimator.Estimator`:
``__init__`` only stores hyper-parameters, ``fit(X, y, sample_weight, *, valid=...)``
validates its input and returns ``self``, fitted state ends in ``_``.  Labels are
``0..K-1`` (binary: 0 background, 1 signal); event weights may be non-uniform and
negative.  ``decision_function(X)`` is the signal probability per event, ``score(X, y)``
the weighted ROC AUC.  ``save(path)`` writes a model bundle (:mod:`fivesigma.core.bundle`:
JSON + safetensors + native files, never pickle) and :func:`load` reads any of them back.

Missing values (NaN in ``X``): the BDT takes them natively (xgboost learns a default
direction at every split, ``handles_missing``); the logistic regression and the MLP
impute (``imputes_missing``): when the training data hold NaN, ``fit`` records the
weighted median of every feature and adds one 0/1 is-missing column per feature that had
NaN in training (:class:`~fivesigma.training.preprocessing.Imputer`), and the same
imputation runs in ``predict_proba``, in the bundle and in the ONNX graph.  A model
trained without NaN refuses NaN when predicting; inf is refused everywhere.

>>> import numpy as np
>>> from fivesigma.estimators import make_estimator
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(400, 2)); y = (X[:, 0] + 0.3 * rng.normal(size=400) > 0).astype(int)
>>> clf = make_estimator("logistic").fit(X, y, feature_names=["a", "b"])
>>> clf.predict_proba(X[:3]).shape
(3, 2)
>>> float(clf.decision_function(X[:1])[0]) == float(clf.predict_proba(X[:1])[0, 1])
True
>>> 0.9 < clf.score(X, y) <= 1.0   # the ROC AUC
True
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from fivesigma.core.bundle import ARRAYS, Bundle, bundle_kind
from fivesigma.errors import DataError, ModelError, shorten
from fivesigma.estimators.factory import make_estimator
from fivesigma.training.estimator import (
    Estimator,
    OnnxGraph,
    TorchEstimator,
    TorchParams,
)
from fivesigma.training.inputs import apply_class_weight
from fivesigma.training.params import (
    CLASS_WEIGHT,
    ParamSchema,
    boolean,
    choice,
    integer,
    number,
    param,
    sizes,
)
from fivesigma.training.preprocessing import Standardiser

__all__ = [
    "BDTClassifier",
    "BaseClassifier",
    "LogisticClassifier",
    "MLPClassifier",
    "load",
    "make_estimator",
]

#: the base class of every estimator (its former name here)
BaseClassifier = Estimator

#: activations of the MLP (the keys of :data:`fivesigma.nn.mlp.ACTIVATIONS`, which imports
#: torch; a test keeps the two lists equal)
MLP_ACTIVATIONS = ("relu", "gelu", "silu", "tanh", "elu", "leaky_relu")

_CLASS_WEIGHT_ACCEPTED = "null, 'balanced' or {class: factor} (classes integers >= 0, factors > 0)"
_CLASS_WEIGHT_MEANING = "per-class factors on the event weights"


# --------------------------------------------------------------------------------------
# Logistic regression


class LogisticClassifier(Estimator):
    """Baseline: standardisation + L2-regularised logistic regression (scikit-learn lbfgs).

    Parameters
    ----------
    C : inverse regularisation strength (scikit-learn's meaning: the penalty is fixed while
        the loss is a *sum* over events, so duplicating events equals weight 2).
    max_iter, tol : optimiser limits.
    class_weight : None, ``"balanced"`` or ``{class: factor}``.

    Prediction uses the stored coefficients in numpy, so a loaded bundle needs no sklearn.
    ``export_onnx`` writes the same model (standardisation, linear layer, sigmoid or
    softmax) as an ONNX graph.

    Missing values are imputed (the weighted median, plus is-missing flag columns, see
    :class:`~fivesigma.training.preprocessing.Imputer`) when the training data hold NaN;
    ``coef_`` then has one column per feature and one per flag.
    """

    kind = "logistic"
    imputes_missing = True

    class Params(ParamSchema):
        """The logistic regression's hyper-parameters."""

        C: Annotated[number(gt=0), param("a number > 0", "inverse regularisation strength")] = 1.0
        max_iter: Annotated[
            integer(ge=1), param("an integer >= 1", "iterations of the lbfgs optimiser")
        ] = 1000
        tol: Annotated[number(gt=0), param("a number > 0", "optimiser tolerance")] = 1e-8
        class_weight: Annotated[
            CLASS_WEIGHT, param(_CLASS_WEIGHT_ACCEPTED, _CLASS_WEIGHT_MEANING)
        ] = None

    def __init__(
        self, C: float = 1.0, max_iter: int = 1000, tol: float = 1e-8, class_weight: Any = None
    ) -> None:
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.class_weight = class_weight

    def _fit(self, data: tuple, y: np.ndarray, w: np.ndarray, valid: Any) -> None:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        (X,) = data
        w = apply_class_weight(y, w, self.class_weight, self.n_classes_, "training")
        self.scaler_ = Standardiser().fit(X, w)
        model = LogisticRegression(C=self.C, max_iter=self.max_iter, tol=self.tol)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            try:
                model.fit(self.scaler_.transform(X), y, sample_weight=w)
            except ConvergenceWarning:
                warnings.warn(
                    f"logistic regression did not converge in max_iter={self.max_iter} iterations",
                    stacklevel=3,
                )
        self.coef_ = np.asarray(model.coef_, dtype=np.float64)  # (1 or K, n_features)
        self.intercept_ = np.asarray(model.intercept_, dtype=np.float64)  # (1 or K,)

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        from scipy.special import expit, softmax

        z = self.scaler_.transform(X) @ self.coef_.T + self.intercept_  # (n, 1 or K)
        if z.shape[1] == 1:
            p = expit(z[:, 0])
            return np.stack([1.0 - p, p], axis=1)
        return softmax(z, axis=1)

    def n_parameters(self) -> int:
        """Number of coefficients and intercepts."""
        self._check_fitted()
        return int(self.coef_.size + self.intercept_.size)

    def _bundle(self) -> Bundle:
        return Bundle(
            kind=self.kind,
            preprocessing=self.scaler_.to_dict(),
            arrays={"coef": self.coef_, "intercept": self.intercept_},
        )

    def _restore(self, bundle: Bundle, path: str | Path) -> None:
        self.scaler_ = Standardiser.from_dict(bundle.preprocessing)
        k = 1 if self.n_classes_ == 2 else self.n_classes_
        n_inputs = self._n_model_inputs()
        if self.scaler_.mean_.shape != (n_inputs,):
            raise ModelError(
                f"model bundle '{path}': the standardiser has {self.scaler_.mean_.size} "
                f"columns but the logistic model takes {n_inputs}"
            )
        expected = {"coef": (k, n_inputs), "intercept": (k,)}
        for name, shape in expected.items():
            got = bundle.arrays.get(name)
            if got is None or tuple(got.shape) != shape or got.dtype.kind != "f":
                found = "missing" if got is None else f"{got.dtype} {tuple(got.shape)}"
                raise ModelError(
                    f"model bundle '{path}': {ARRAYS} does not hold the logistic model's "
                    f"'{name}' (float {shape} expected, {found})"
                )
        self.coef_ = np.asarray(bundle.arrays["coef"], dtype=np.float64)
        self.intercept_ = np.asarray(bundle.arrays["intercept"], dtype=np.float64)

    def _onnx_graph(self) -> OnnxGraph:
        """The fitted model as a torch module: impute (if fitted), standardise, linear,
        sigmoid/softmax."""
        import torch

        module = _linear_probabilities(
            self.scaler_.mean_, self.scaler_.scale_, self.coef_, self.intercept_
        )
        module = self._with_imputation(module)
        example = torch.zeros(2, self.n_features_in_, dtype=torch.float32)
        return OnnxGraph(module, {"features": (example, ["batch", self.n_features_in_])})


# --------------------------------------------------------------------------------------
# Boosted decision trees


class BDTClassifier(Estimator):
    """Gradient-boosted trees with xgboost (``hist`` method), saved in xgboost's own JSON.

    Parameters
    ----------
    n_estimators, max_depth, learning_rate, subsample, colsample_bytree, min_child_weight,
    reg_lambda : xgboost's meaning.
    early_stopping_rounds : rounds without improvement of the weighted validation log-loss
        before stopping (only when validation data is given); the model keeps the best round.
    n_jobs : threads (None: xgboost's default, all cores).
    seed : random seed (subsampling).
    class_weight : None, ``"balanced"`` or ``{class: factor}``.
    negative_weights : xgboost rejects negative event weights, so for *training* they are
        ``"clip"``-ped to 0 (default) or replaced by their ``"abs"``-olute value, with a
        warning.  Physics results should still be evaluated with the true weights.

    Missing values (NaN) are xgboost's own: each split sends them the way learned in
    training (``handles_missing``), so nothing is imputed.

    ``fit(..., client=client)`` with a ``distributed.Client`` trains on its dask cluster
    (:func:`xgboost.dask.train`, the events split into one partition per worker); the
    booster, the bundle and prediction are those of a local fit, so the bundle loads
    without dask.  Distributed histograms put the split candidates at slightly different
    places, so the trees are close to, not equal to, a local fit's.
    """

    kind = "bdt"
    handles_missing = True
    BOOSTER_FILE = "booster.json"

    class Params(ParamSchema):
        """The BDT's hyper-parameters (xgboost's meaning)."""

        n_estimators: Annotated[
            integer(ge=1), param("an integer >= 1", "boosting rounds (trees per class)")
        ] = 300
        max_depth: Annotated[integer(ge=1), param("an integer >= 1", "depth of each tree")] = 4
        learning_rate: Annotated[number(gt=0), param("a number > 0", "shrinkage of each tree")] = (
            0.1
        )
        subsample: Annotated[
            number(gt=0, le=1), param("a number in (0, 1]", "fraction of events per tree")
        ] = 1.0
        colsample_bytree: Annotated[
            number(gt=0, le=1), param("a number in (0, 1]", "fraction of features per tree")
        ] = 1.0
        min_child_weight: Annotated[
            number(ge=0), param("a number >= 0", "smallest summed hessian in a leaf")
        ] = 1.0
        reg_lambda: Annotated[
            number(ge=0), param("a number >= 0", "L2 regularisation of the leaf weights")
        ] = 1.0
        early_stopping_rounds: Annotated[
            integer(ge=1) | None,
            param(
                "an integer >= 1 or null (no early stopping)",
                "rounds without improvement of the validation log-loss before stopping",
            ),
        ] = 20
        n_jobs: Annotated[
            integer(ge=1) | None, param("an integer >= 1 or null (all cores)", "threads")
        ] = None
        seed: Annotated[
            integer(ge=0, le=2**63 - 1),
            param("an integer in [0, 2**63)", "random seed (subsampling)"),
        ] = 0
        class_weight: Annotated[
            CLASS_WEIGHT, param(_CLASS_WEIGHT_ACCEPTED, _CLASS_WEIGHT_MEANING)
        ] = None
        negative_weights: Annotated[
            choice("clip", "abs"),
            param(
                "clip or abs",
                "negative training weights are set to 0 (clip) or replaced by |w| (abs)",
            ),
        ] = "clip"

    def __init__(
        self,
        n_estimators: int = 300,
        max_depth: int = 4,
        learning_rate: float = 0.1,
        subsample: float = 1.0,
        colsample_bytree: float = 1.0,
        min_child_weight: float = 1.0,
        reg_lambda: float = 1.0,
        early_stopping_rounds: int | None = 20,
        n_jobs: int | None = None,
        seed: int = 0,
        class_weight: Any = None,
        negative_weights: str = "clip",
    ) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.n_jobs = n_jobs
        self.seed = seed
        self.class_weight = class_weight
        self.negative_weights = negative_weights

    def fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any = None,
        *,
        valid: Sequence[Any] | None = None,
        feature_names: Sequence[str] | None = None,
        client: Any = None,
    ) -> BDTClassifier:
        """Train (see :meth:`Estimator.fit`); ``client``: a ``distributed.Client`` whose
        cluster trains the trees (:func:`xgboost.dask.train`), None: this process."""
        if client is not None and not hasattr(client, "scheduler_info"):
            raise ModelError(
                f"bdt client must be a distributed.Client (dask), got {type(client).__name__}"
            )
        self._client = client
        try:
            return super().fit(X, y, sample_weight, valid=valid, feature_names=feature_names)
        finally:
            del self._client  # a client is no hyper-parameter and no fitted state

    def _fix_negative(self, w: np.ndarray, role: str) -> np.ndarray:
        n_neg = int(np.sum(w < 0))
        if n_neg == 0:
            return w
        warnings.warn(
            f"xgboost cannot train with negative weights: {n_neg} negative {role} weights "
            f"were {'set to 0' if self.negative_weights == 'clip' else 'replaced by |w|'}",
            stacklevel=4,
        )
        return np.clip(w, 0.0, None) if self.negative_weights == "clip" else np.abs(w)

    def _fit(self, data: tuple, y: np.ndarray, w: np.ndarray, valid: Any) -> None:
        import xgboost as xgb

        (X,) = data
        w = self._fix_negative(
            apply_class_weight(y, w, self.class_weight, self.n_classes_, "training"), "training"
        )
        if not w.sum() > 0:
            raise DataError("training event weights sum to <= 0 after removing negative weights")
        binary = self.n_classes_ == 2
        kwargs: dict[str, Any] = {}
        if valid is not None:
            (Xv,), yv, wv = valid
            wv = self._fix_negative(
                apply_class_weight(yv, wv, self.class_weight, self.n_classes_, "validation"),
                "validation",
            )
            kwargs = {"eval_set": [(Xv, yv)], "sample_weight_eval_set": [wv], "verbose": False}
        client = getattr(self, "_client", None)
        if client is not None:
            eval_set = None if valid is None else (kwargs["eval_set"][0], wv)
            self._fit_dask(client, X, y, w, eval_set, binary)
            return
        model = xgb.XGBClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            subsample=self.subsample,
            colsample_bytree=self.colsample_bytree,
            min_child_weight=self.min_child_weight,
            reg_lambda=self.reg_lambda,
            tree_method="hist",
            random_state=self.seed,
            n_jobs=self.n_jobs,
            objective="binary:logistic" if binary else "multi:softprob",
            eval_metric="logloss" if binary else "mlogloss",
            early_stopping_rounds=self.early_stopping_rounds if valid is not None else None,
        )
        try:
            model.fit(X, y, sample_weight=w, **kwargs)
        except xgb.core.XGBoostError as err:
            raise ModelError(f"xgboost training failed: {str(err).splitlines()[0]}") from None
        booster = model.get_booster()
        best = getattr(model, "best_iteration", None) if valid is not None else None
        if best is not None:
            booster = booster[: int(best) + 1]  # keep only the trees up to the best round
        self.best_iteration_ = int(best) if best is not None else self.n_estimators - 1
        self.booster_ = booster

    def _fit_dask(
        self,
        client: Any,
        X: np.ndarray,
        y: np.ndarray,
        w: np.ndarray,
        eval_set: tuple[tuple[np.ndarray, np.ndarray], np.ndarray] | None,
        binary: bool,
    ) -> None:
        """Train with :func:`xgboost.dask.train` on ``client``'s cluster (same parameters
        as the local :class:`xgboost.XGBClassifier`)."""
        from fivesigma.core import extras

        da = extras.dask("array")
        xgb_dask = extras.xgboost("dask")
        xgb = extras.xgboost()
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))

        def matrix(Xa: np.ndarray, ya: np.ndarray, wa: np.ndarray) -> Any:
            rows = max(1, -(-len(Xa) // n_workers))  # one partition per worker
            return xgb_dask.DaskDMatrix(
                client,
                da.from_array(Xa, chunks=(rows, Xa.shape[1])),
                da.from_array(ya, chunks=(rows,)),
                weight=da.from_array(wa, chunks=(rows,)),
            )

        params: dict[str, Any] = {
            "objective": "binary:logistic" if binary else "multi:softprob",
            "eval_metric": "logloss" if binary else "mlogloss",
            "tree_method": "hist",
            "max_depth": self.max_depth,
            "learning_rate": self.learning_rate,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "min_child_weight": self.min_child_weight,
            "reg_lambda": self.reg_lambda,
            "seed": self.seed,
        }
        if self.n_jobs is not None:
            params["nthread"] = self.n_jobs
        if not binary:
            params["num_class"] = self.n_classes_
        evals = []
        if eval_set is not None:
            (Xv, yv), wv = eval_set
            evals = [(matrix(Xv, yv, wv), "validation")]
        try:
            out = xgb_dask.train(
                client,
                params,
                matrix(X, y, w),
                num_boost_round=self.n_estimators,
                evals=evals,
                early_stopping_rounds=self.early_stopping_rounds if evals else None,
                verbose_eval=False,
            )
        except xgb.core.XGBoostError as err:
            raise ModelError(f"xgboost training on dask failed: {_xgboost_message(err)}") from None
        booster = out["booster"]
        best = booster.attr("best_iteration") if evals else None
        if best is not None:
            booster = booster[: int(best) + 1]  # keep only the trees up to the best round
        self.best_iteration_ = int(best) if best is not None else self.n_estimators - 1
        self.booster_ = booster

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        import xgboost as xgb

        dm = xgb.DMatrix(X, nthread=self.n_jobs if self.n_jobs is not None else -1)
        p = np.asarray(self.booster_.predict(dm), dtype=np.float64)
        if p.ndim == 1:  # binary: P(signal)
            return np.stack([1.0 - p, p], axis=1)
        return p

    def n_parameters(self) -> int:
        """Number of tree nodes (splits and leaves) over all trees kept."""
        self._check_fitted()
        return int(sum(d.count("leaf") + d.count("[f") for d in self.booster_.get_dump()))

    def _onnx_graph(self) -> OnnxGraph:
        raise ModelError(
            f"ONNX export of the bdt needs onnxmltools (pip install onnxmltools), which "
            f"fivesigma does not install; the bundle's {self.BOOSTER_FILE} is xgboost's native "
            "format, which xgboost reads in Python, C and C++"
        )

    def _bundle(self) -> Bundle:
        raw = bytes(self.booster_.save_raw(raw_format="json"))
        return Bundle(
            kind=self.kind,
            files={self.BOOSTER_FILE: raw},
            training={"best_iteration": self.best_iteration_},
        )

    def _restore(self, bundle: Bundle, path: str | Path) -> None:
        import xgboost as xgb

        if self.BOOSTER_FILE not in bundle.files:
            raise ModelError(f"model bundle '{path}' (bdt) lacks {self.BOOSTER_FILE}")
        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(bundle.files[self.BOOSTER_FILE]))
        except xgb.core.XGBoostError as err:
            raise ModelError(
                f"model bundle '{path}' is corrupt: xgboost cannot read {self.BOOSTER_FILE} "
                f"({_xgboost_message(err)}); retrain or restore the bundle"
            ) from None
        if booster.num_features() != self.n_features_in_:
            raise ModelError(
                f"model bundle '{path}': {self.BOOSTER_FILE} holds trees over "
                f"{booster.num_features()} features but the manifest lists "
                f"{self.n_features_in_}; retrain or restore the bundle"
            )
        self.booster_ = booster
        self.best_iteration_ = int(bundle.training.get("best_iteration", -1))


# --------------------------------------------------------------------------------------
# Multi-layer perceptron


class MLPClassifier(TorchEstimator):
    """A torch MLP (:mod:`fivesigma.nn.mlp`) trained with the shared :class:`Trainer`.

    Parameters
    ----------
    hidden, dropout, batch_norm, activation : the network (:class:`MLPConfig`).
    epochs, batch_size, lr, weight_decay, scheduler, early_stopping_patience, min_delta :
        the training loop (:class:`TrainerConfig`).
    class_weight : ``"balanced"`` (default: each class gets equal total weight in the loss),
        None, or ``{class: factor}``; applied on top of the event weights.
    valid_fraction : without ``valid``, this fraction of the training events (stratified,
        chosen by ``seed``) is held out for early stopping; 0 disables that.
    seed : network initialisation, shuffling, dropout and the validation split.
    num_threads, progress, checkpoint_dir, device : passed to the trainer; ``device`` is
        also where :meth:`predict_proba` runs (a loaded bundle: ``"cpu"``).

    The features are standardised (event-weighted, in float64) before the network; the
    standardisation is part of the bundle and of the ONNX graph.  Missing values are
    imputed first when the training data hold NaN (the weighted median and is-missing flag
    columns, :class:`~fivesigma.training.preprocessing.Imputer`): the network then has one
    input per feature and one per flag, and the imputation is part of the bundle and of
    the ONNX graph (``torch.where(isnan(x), value, x)`` and the flags).
    """

    kind = "mlp"
    imputes_missing = True

    class Params(TorchParams):
        """The MLP's hyper-parameters: its network, then the shared torch ones."""

        hidden: Annotated[
            sizes(),
            param(
                "a list of positive integers such as [64, 64]",
                "widths of the hidden layers",
            ),
        ] = (64, 64)
        dropout: Annotated[
            number(ge=0, lt=1), param("a number in [0, 1)", "dropout after each hidden layer")
        ] = 0.0
        batch_norm: Annotated[
            boolean, param("true or false", "batch normalisation in each hidden layer")
        ] = False
        activation: Annotated[
            choice(*MLP_ACTIVATIONS),
            param(f"one of {', '.join(MLP_ACTIVATIONS)}", "the hidden layers' activation"),
        ] = "relu"

    def __init__(
        self,
        hidden: Sequence[int] = (64, 64),
        dropout: float = 0.0,
        batch_norm: bool = False,
        activation: str = "relu",
        epochs: int = 50,
        batch_size: int = 512,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        scheduler: str = "cosine",
        early_stopping_patience: int | None = 8,
        min_delta: float = 0.0,
        class_weight: Any = "balanced",
        valid_fraction: float = 0.2,
        seed: int = 0,
        num_threads: int | None = None,
        progress: bool = True,
        checkpoint_dir: str | None = None,
        device: str = "cpu",
    ) -> None:
        self.hidden = hidden
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.activation = activation
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.scheduler = scheduler
        self.early_stopping_patience = early_stopping_patience
        self.min_delta = min_delta
        self.class_weight = class_weight
        self.valid_fraction = valid_fraction
        self.seed = seed
        self.num_threads = num_threads
        self.progress = progress
        self.checkpoint_dir = checkpoint_dir
        self.device = device

    def _network_config(self, n_features: int, n_classes: int) -> Any:
        from fivesigma.nn.mlp import MLPConfig

        return MLPConfig(
            n_inputs=n_features,
            n_classes=n_classes,
            hidden=tuple(self.hidden),
            dropout=self.dropout,
            batch_norm=self.batch_norm,
            activation=self.activation,
        )

    def _build_network(self, config: Any) -> Any:
        from fivesigma.nn.mlp import MLP

        return MLP(config)

    def _network_record(self) -> dict[str, Any]:
        return self.network_config_.to_dict()

    def _network_config_from_bundle(self, bundle: Bundle, path: str | Path) -> Any:
        return self._network_config(self._n_model_inputs(), self.n_classes_)

    def _fit_scaler(self, data: tuple, w: np.ndarray) -> Standardiser:
        return Standardiser().fit(data[0], w)

    def _preprocessing_record(self) -> dict[str, Any]:
        return self.scaler_.to_dict()

    def _scaler_from_bundle(self, bundle: Bundle) -> Standardiser:
        return Standardiser.from_dict(bundle.preprocessing)

    def _model_inputs(self, data: tuple) -> dict[str, Any]:
        import torch

        return {"x": torch.from_numpy(self.scaler_.transform(data[0]).astype(np.float32))}

    def _loss(self, logits: Any, target: Any) -> Any:
        import torch

        if logits.shape[1] == 1:  # binary: one logit (batch, 1), target (batch,)
            return torch.nn.functional.binary_cross_entropy_with_logits(
                logits[:, 0], target.to(logits.dtype), reduction="none"
            )
        return torch.nn.functional.cross_entropy(logits, target, reduction="none")

    def _head(self, export: bool = False) -> Any:
        import torch

        from fivesigma.nn.mlp import ProbabilityHead

        return ProbabilityHead(
            self.net_, torch.from_numpy(self.scaler_.mean_), torch.from_numpy(self.scaler_.scale_)
        ).eval()

    def _onnx_inputs(self) -> dict[str, tuple[Any, list[int | str]]]:
        import torch

        example = torch.zeros(2, self.n_features_in_, dtype=torch.float32)
        return {"features": (example, ["batch", self.n_features_in_])}


def _xgboost_message(err: BaseException) -> str:
    """The first line of an xgboost error without its time stamp and source location."""
    lines = str(err).strip().splitlines()
    first = re.sub(r"^\[[0-9:]+\]\s+\S+:\d+:\s*", "", lines[0] if lines else "")
    return shorten(first or type(err).__name__, 160)


def _linear_probabilities(
    mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: np.ndarray
) -> Any:
    """A torch module: raw features -> standardised -> linear -> sigmoid (binary, one row of
    ``coef``) or softmax; the logistic regression's ONNX graph."""
    import torch
    from torch import nn

    class LinearProbabilities(nn.Module):
        def __init__(self) -> None:
            super().__init__()

            def buf(a: np.ndarray) -> torch.Tensor:
                return torch.as_tensor(np.asarray(a, dtype=np.float32))

            self.register_buffer("mean", buf(mean).reshape(1, -1))  # (1, F)
            self.register_buffer("scale", buf(scale).reshape(1, -1))  # (1, F)
            self.register_buffer("coef", buf(coef))  # (1 or K, F)
            self.register_buffer("intercept", buf(intercept))  # (1 or K,)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = ((x - self.mean) / self.scale) @ self.coef.T + self.intercept  # (B, 1 or K)
            if z.shape[1] == 1:
                p = torch.sigmoid(z)
                return torch.cat([1.0 - p, p], dim=1)  # (B, 2)
            return torch.softmax(z, dim=1)  # (B, K)

    return LinearProbabilities().eval()


# --------------------------------------------------------------------------------------
# Bundle loader


_CLASSES: dict[str, type[Estimator]] = {
    cls.kind: cls for cls in (LogisticClassifier, BDTClassifier, MLPClassifier)
}


def load(path: str | Path) -> Estimator:
    """Read a bundle of an event classifier (kind ``logistic``, ``bdt`` or ``mlp``).

    The registered loader of those kinds (:data:`fivesigma.core.registry.BUNDLE_KINDS`);
    :func:`fivesigma.estimators.load` reads a bundle of any kind.
    """
    kind = bundle_kind(path)
    cls = _CLASSES.get(kind)
    if cls is None:
        raise ModelError(
            f"model bundle '{path}' has kind {kind!r}, not an event classifier "
            f"({', '.join(_CLASSES)}); fivesigma.estimators.load reads any kind"
        )
    return cls.load(path)
