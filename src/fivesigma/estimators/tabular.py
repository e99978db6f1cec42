"""scikit-learn-style estimators for event classification: logistic, BDT (xgboost), MLP (torch).

Every estimator follows scikit-learn's contract: ``__init__`` only stores hyper-parameters,
``fit`` validates its input and returns ``self``, fitted state ends in ``_``.  Labels are
``0..K-1`` (binary: 0 background, 1 signal); event weights may be non-uniform and negative.
``save(path)`` writes a model bundle (:mod:`fivesigma.core.bundle`: JSON + safetensors +
native files, never pickle) and :func:`load` reads any of them back.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(400, 2)); y = (X[:, 0] + 0.3 * rng.normal(size=400) > 0).astype(int)
>>> clf = make_estimator("logistic").fit(X, y, feature_names=["a", "b"])
>>> clf.predict_proba(X[:3]).shape
(3, 2)
>>> float(clf.score(X[:1])[0]) == float(clf.predict_proba(X[:1])[0, 1])
True
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fivesigma.core.bundle import Bundle, data_fingerprint, load_bundle, save_bundle
from fivesigma.errors import DataError, ModelError, close_matches
from fivesigma.training.inputs import (
    apply_class_weight,
    as_labels,
    as_weights,
    stratified_holdout,
    torch_threads,
)
from fivesigma.training.params import HyperParameters, params_to_json
from fivesigma.training.preprocessing import Standardiser

__all__ = [
    "ESTIMATORS",
    "BDTClassifier",
    "BaseClassifier",
    "LogisticClassifier",
    "MLPClassifier",
    "load",
    "make_estimator",
]


# --------------------------------------------------------------------------------------
# Input validation (shared)


def _feature_names_of(X: Any) -> list[str] | None:
    cols = getattr(X, "columns", None)
    return [str(c) for c in cols] if cols is not None else None


def _as_matrix(X: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{name} cannot be read as a numeric matrix: {err}") from None
    if arr.ndim != 2:
        hint = "; use X.reshape(-1, 1) for a single feature" if arr.ndim == 1 else ""
        raise DataError(f"{name} must be 2-D (n_events, n_features), got shape {arr.shape}{hint}")
    if arr.shape[0] == 0:
        raise DataError(f"{name} has no events")
    bad = ~np.isfinite(arr)
    if bad.any():
        cols = np.flatnonzero(bad.any(axis=0)).tolist()
        raise DataError(
            f"{name} contains {int(bad.sum())} NaN/inf values (in feature columns {cols[:10]}); "
            "remove or fill them before training or scoring"
        )
    return arr


def _class_count(y: np.ndarray) -> int:
    classes = np.unique(y)
    if classes.size == 1:
        c = int(classes[0])
        raise DataError(
            f"training labels contain only class {c}; need both signal (1) and background (0)"
        )
    if classes[-1] != classes.size - 1:
        raise DataError(
            f"training labels are {classes.tolist()}; classes must be 0..K-1 with every class present"
        )
    return int(classes.size)


# --------------------------------------------------------------------------------------
# Base class


class BaseClassifier(HyperParameters):
    """Common parts: parameter handling, validation, probabilities -> score, save/load."""

    kind: ClassVar[str] = ""

    # -- fitting ------------------------------------------------------------------------

    def fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any = None,
        X_val: Any = None,
        y_val: Any = None,
        w_val: Any = None,
        feature_names: Sequence[str] | None = None,
    ) -> BaseClassifier:
        """Train on ``(X, y, sample_weight)``; ``(X_val, y_val, w_val)`` drives early stopping.

        Parameters
        ----------
        X : (n_events, n_features) features (numpy array or DataFrame).
        y : (n_events,) integer labels 0..K-1 (binary: 0 background, 1 signal).
        sample_weight : (n_events,) event weights, default 1; negative values allowed.
        X_val, y_val, w_val : optional validation set of the same structure.
        feature_names : names of the columns (default: DataFrame columns or x0, x1, ...).
        """
        names = feature_names if feature_names is not None else _feature_names_of(X)
        Xa = _as_matrix(X, "X")
        ya = as_labels(y, Xa.shape[0], "y", "X")
        wa = as_weights(sample_weight, Xa.shape[0], "sample_weight", "X")
        n_classes = _class_count(ya)
        if names is None:
            names = [f"x{i}" for i in range(Xa.shape[1])]
        names = [str(n) for n in names]
        if len(names) != Xa.shape[1]:
            raise DataError(f"{len(names)} feature_names given for {Xa.shape[1]} columns of X")
        valid = None
        if X_val is not None or y_val is not None:
            if X_val is None or y_val is None:
                raise DataError("validation data needs both X_val and y_val (w_val optional)")
            Xv = _as_matrix(X_val, "X_val")
            if Xv.shape[1] != Xa.shape[1]:
                raise DataError(f"X_val has {Xv.shape[1]} features but X has {Xa.shape[1]}")
            yv = as_labels(y_val, Xv.shape[0], "y_val", "X_val")
            if yv.max() >= n_classes:
                raise DataError(
                    f"y_val contains class {int(yv.max())} that is absent from the training labels 0..{n_classes - 1}"
                )
            wv = as_weights(w_val, Xv.shape[0], "w_val", "X_val")
            valid = (Xv, yv, wv)
        self.n_features_in_ = Xa.shape[1]
        self.feature_names_in_ = names
        self.n_classes_ = n_classes
        self.classes_ = np.arange(n_classes)
        self.data_fingerprint_ = data_fingerprint(Xa, ya, wa)
        self._fit(Xa, ya, wa, valid)
        return self

    def _fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        w: np.ndarray,
        valid: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    ) -> None:
        raise NotImplementedError

    # -- prediction ---------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_features_in_"):
            raise ModelError(f"{type(self).__name__} is not fitted yet; call fit(X, y) first")

    def _check_X(self, X: Any) -> np.ndarray:
        self._check_fitted()
        Xa = _as_matrix(X, "X")
        if Xa.shape[1] != self.n_features_in_:
            shown = ", ".join(self.feature_names_in_[:12]) + (
                ", ..." if self.n_features_in_ > 12 else ""
            )
            raise DataError(
                f"X has {Xa.shape[1]} features but {type(self).__name__} was trained on "
                f"{self.n_features_in_} ({shown})"
            )
        return Xa

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape ``(n_events, n_classes)``; rows sum to 1."""
        return self._predict_proba(self._check_X(X))

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class per event."""
        return np.argmax(self.predict_proba(X), axis=1)

    def decision_function(self, X: Any) -> np.ndarray:
        """Signal probability P(class 1), shape ``(n_events,)`` (binary classifiers)."""
        p = self.predict_proba(X)
        if p.shape[1] != 2:
            raise ModelError(
                f"score()/decision_function() are for binary classifiers; this one has "
                f"{p.shape[1]} classes: use predict_proba(X)"
            )
        return p[:, 1]

    def score(self, X: Any) -> np.ndarray:
        """Signal probability per event (alias of :meth:`decision_function`)."""
        return self.decision_function(X)

    # -- persistence --------------------------------------------------------------------

    def _bundle(self) -> Bundle:
        raise NotImplementedError

    def save(
        self,
        path: str | Path,
        data: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write a model bundle directory at ``path`` (atomically) and return its path.

        ``data`` (how features are made from files: derived expressions, selection, ...)
        and ``metadata`` (metrics, provenance) are stored as given (JSON-serialisable);
        after :func:`load` they are in ``bundle_data_`` and ``bundle_metadata_``.
        """
        self._check_fitted()
        bundle = self._bundle()
        bundle.kind = self.kind
        bundle.features = list(self.feature_names_in_)
        bundle.params = params_to_json(self.get_params(), self.kind)
        bundle.training = {"n_classes": int(self.n_classes_), **bundle.training}
        bundle.data = {"fingerprint": self.data_fingerprint_, **bundle.data, **dict(data or {})}
        bundle.metadata = {**bundle.metadata, **dict(metadata or {})}
        return save_bundle(bundle, path)

    @classmethod
    def load(cls, path: str | Path) -> BaseClassifier:
        """Read a bundle written by :meth:`save`; on a subclass the kind must match."""
        est = load(path)
        if cls is not BaseClassifier and not isinstance(est, cls):
            raise ModelError(f"model bundle '{path}' holds a {est.kind!r} model, not {cls.kind!r}")
        return est

    @classmethod
    def _from_bundle(cls, bundle: Bundle) -> BaseClassifier:
        params = dict(bundle.params)
        cls.check_param_names(params, where=f"bundle of kind {cls.kind!r}")
        est = cls(**_unjsonable(cls, params))
        est.n_features_in_ = len(bundle.features)
        est.feature_names_in_ = list(bundle.features)
        est.n_classes_ = int(bundle.training.get("n_classes", 2))
        est.classes_ = np.arange(est.n_classes_)
        est.data_fingerprint_ = bundle.data.get("fingerprint", "")
        est.bundle_data_ = dict(bundle.data)
        est.bundle_metadata_ = dict(bundle.metadata)
        est._restore(bundle)
        return est

    def _restore(self, bundle: Bundle) -> None:
        raise NotImplementedError


def _unjsonable(cls: type[BaseClassifier], params: dict[str, Any]) -> dict[str, Any]:
    if "hidden" in params and isinstance(params["hidden"], list):
        params["hidden"] = tuple(params["hidden"])
    return params


# --------------------------------------------------------------------------------------
# Logistic regression


class LogisticClassifier(BaseClassifier):
    """Baseline: standardisation + L2-regularised logistic regression (scikit-learn lbfgs).

    Parameters
    ----------
    C : inverse regularisation strength (scikit-learn's meaning: the penalty is fixed while
        the loss is a *sum* over events, so duplicating events equals weight 2).
    max_iter, tol : optimiser limits.
    class_weight : None, ``"balanced"`` or ``{class: factor}``.

    Prediction uses the stored coefficients in numpy, so a loaded bundle needs no sklearn.
    """

    kind = "logistic"

    def __init__(
        self, C: float = 1.0, max_iter: int = 1000, tol: float = 1e-8, class_weight: Any = None
    ) -> None:
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.class_weight = class_weight

    def _fit(self, X: np.ndarray, y: np.ndarray, w: np.ndarray, valid: Any) -> None:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        if not self.C > 0:
            raise ModelError(f"logistic C must be > 0, got {self.C!r}")
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

    def _bundle(self) -> Bundle:
        return Bundle(
            kind=self.kind,
            preprocessing=self.scaler_.to_dict(),
            arrays={"coef": self.coef_, "intercept": self.intercept_},
        )

    def _restore(self, bundle: Bundle) -> None:
        self.scaler_ = Standardiser.from_dict(bundle.preprocessing)
        self.coef_ = np.asarray(bundle.arrays["coef"], dtype=np.float64)
        self.intercept_ = np.asarray(bundle.arrays["intercept"], dtype=np.float64)


# --------------------------------------------------------------------------------------
# Boosted decision trees


class BDTClassifier(BaseClassifier):
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
    """

    kind = "bdt"
    BOOSTER_FILE = "booster.json"

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

    def _fix_negative(self, w: np.ndarray, role: str) -> np.ndarray:
        if self.negative_weights not in ("clip", "abs"):
            raise ModelError(
                f"bdt negative_weights {self.negative_weights!r} is not accepted; use 'clip' or 'abs'"
            )
        n_neg = int(np.sum(w < 0))
        if n_neg == 0:
            return w
        warnings.warn(
            f"xgboost cannot train with negative weights: {n_neg} negative {role} weights "
            f"were {'set to 0' if self.negative_weights == 'clip' else 'replaced by |w|'}",
            stacklevel=4,
        )
        return np.clip(w, 0.0, None) if self.negative_weights == "clip" else np.abs(w)

    def _fit(self, X: np.ndarray, y: np.ndarray, w: np.ndarray, valid: Any) -> None:
        import xgboost as xgb

        for name in ("n_estimators", "max_depth"):
            v = getattr(self, name)
            if not isinstance(v, int | np.integer) or v < 1:
                raise ModelError(f"bdt {name} must be a positive integer, got {v!r}")
        w = self._fix_negative(
            apply_class_weight(y, w, self.class_weight, self.n_classes_, "training"), "training"
        )
        if not w.sum() > 0:
            raise DataError("training event weights sum to <= 0 after removing negative weights")
        binary = self.n_classes_ == 2
        kwargs: dict[str, Any] = {}
        if valid is not None:
            Xv, yv, wv = valid
            wv = self._fix_negative(
                apply_class_weight(yv, wv, self.class_weight, self.n_classes_, "validation"),
                "validation",
            )
            kwargs = {"eval_set": [(Xv, yv)], "sample_weight_eval_set": [wv], "verbose": False}
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

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        import xgboost as xgb

        dm = xgb.DMatrix(X, nthread=self.n_jobs if self.n_jobs is not None else -1)
        p = np.asarray(self.booster_.predict(dm), dtype=np.float64)
        if p.ndim == 1:  # binary: P(signal)
            return np.stack([1.0 - p, p], axis=1)
        return p

    def _bundle(self) -> Bundle:
        raw = bytes(self.booster_.save_raw(raw_format="json"))
        return Bundle(
            kind=self.kind,
            files={self.BOOSTER_FILE: raw},
            training={"best_iteration": self.best_iteration_},
        )

    def _restore(self, bundle: Bundle) -> None:
        import xgboost as xgb

        if self.BOOSTER_FILE not in bundle.files:
            raise ModelError(f"bdt model bundle lacks {self.BOOSTER_FILE}")
        booster = xgb.Booster()
        booster.load_model(bytearray(bundle.files[self.BOOSTER_FILE]))
        self.booster_ = booster
        self.best_iteration_ = int(bundle.training.get("best_iteration", -1))


# --------------------------------------------------------------------------------------
# Multi-layer perceptron


class MLPClassifier(BaseClassifier):
    """A torch MLP (:mod:`fivesigma.nn.mlp`) trained with the shared :class:`Trainer`.

    Parameters
    ----------
    hidden, dropout, batch_norm, activation : the network (:class:`MLPConfig`).
    epochs, batch_size, lr, weight_decay, scheduler, early_stopping_patience, min_delta :
        the training loop (:class:`TrainerConfig`).
    class_weight : ``"balanced"`` (default: each class gets equal total weight in the loss),
        None, or ``{class: factor}``; applied on top of the event weights.
    valid_fraction : without ``X_val``, this fraction of the training events (stratified,
        chosen by ``seed``) is held out for early stopping; 0 disables that.
    seed : network initialisation, shuffling, dropout and the validation split.
    num_threads, progress, checkpoint_dir, device : passed to the trainer.
    """

    kind = "mlp"

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

    def _net_config(self, n_inputs: int, n_classes: int) -> Any:
        from fivesigma.nn.mlp import MLPConfig

        return MLPConfig(
            n_inputs=n_inputs,
            n_classes=n_classes,
            hidden=tuple(self.hidden),
            dropout=self.dropout,
            batch_norm=self.batch_norm,
            activation=self.activation,
        )

    def _trainer_config(self) -> Any:
        from fivesigma.training.trainer import TrainerConfig

        return TrainerConfig.from_estimator(self, "mlp")

    def _split_validation(self, X: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple:
        """Deterministic stratified hold-out of ``valid_fraction`` of each class."""
        is_valid = stratified_holdout(y, self.n_classes_, self.valid_fraction, self.seed)
        tr = ~is_valid
        return (X[tr], y[tr], w[tr]), (X[is_valid], y[is_valid], w[is_valid])

    def _fit(self, X: np.ndarray, y: np.ndarray, w: np.ndarray, valid: Any) -> None:
        import torch

        from fivesigma.nn.mlp import MLP
        from fivesigma.training.trainer import Trainer

        if not 0.0 <= self.valid_fraction < 1.0:
            raise ModelError(f"mlp valid_fraction must be in [0, 1), got {self.valid_fraction!r}")
        net_cfg = self._net_config(X.shape[1], self.n_classes_)
        trainer_cfg = self._trainer_config()
        if valid is None and self.valid_fraction > 0:
            (X, y, w), valid = self._split_validation(X, y, w)
        w = apply_class_weight(y, w, self.class_weight, self.n_classes_, "training")
        self.scaler_ = Standardiser().fit(X, w)

        def tensors(Xa: np.ndarray, ya: np.ndarray, wa: np.ndarray) -> tuple:
            xt = torch.from_numpy(self.scaler_.transform(Xa).astype(np.float32))
            yt = torch.from_numpy(ya.astype(np.float32 if self.n_classes_ == 2 else np.int64))
            return xt, yt, torch.from_numpy(wa.astype(np.float32))

        train_t = tensors(X, y, w)
        valid_t = None
        if valid is not None:
            Xv, yv, wv = valid
            wv = apply_class_weight(yv, wv, self.class_weight, self.n_classes_, "validation")
            valid_t = tensors(Xv, yv, wv)

        binary = self.n_classes_ == 2

        def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            if binary:  # logits (batch, 1), target (batch,)
                return torch.nn.functional.binary_cross_entropy_with_logits(
                    logits[:, 0], target, reduction="none"
                )
            return torch.nn.functional.cross_entropy(logits, target, reduction="none")

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)  # initial weights come from the seed too
            net = MLP(net_cfg)
        history = Trainer(trainer_cfg).fit(net, train_t, valid_t, loss_fn)
        self.net_ = net.cpu().eval()
        self.history_ = history

    def _head(self) -> Any:
        import torch

        from fivesigma.nn.mlp import ProbabilityHead

        return ProbabilityHead(
            self.net_, torch.from_numpy(self.scaler_.mean_), torch.from_numpy(self.scaler_.scale_)
        ).eval()

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        import torch

        head = self._head()
        out = []
        with torch.no_grad(), torch_threads(self.num_threads):
            for start in range(0, X.shape[0], 65536):
                xb = torch.from_numpy(X[start : start + 65536].astype(np.float32))
                out.append(head(xb).numpy())
        return np.concatenate(out).astype(np.float64)

    def export_onnx(self, path: str | Path, opset: int = 17) -> Path:
        """Write an ONNX model: input ``features`` (batch, n_features) raw float32 features,
        output ``probabilities`` (batch, n_classes); standardisation is inside the graph."""
        import torch

        from fivesigma.core.files import atomic_file

        self._check_fitted()
        try:
            import onnx
        except ImportError:
            raise ModelError(
                "ONNX export needs the onnx package: pip install 'fivesigma[ml]'"
            ) from None
        head = self._head()
        path = Path(path)
        dummy = torch.zeros(2, self.n_features_in_, dtype=torch.float32)
        with atomic_file(path) as tmp, warnings.catch_warnings():
            # the TorchScript exporter is deprecated but, unlike the dynamo one, needs no
            # onnxscript; the graph of an MLP is the same either way
            warnings.simplefilter("ignore")
            torch.onnx.export(
                head,
                (dummy,),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=["features"],
                output_names=["probabilities"],
                dynamic_axes={"features": {0: "batch"}, "probabilities": {0: "batch"}},
            )
            model = onnx.load(str(tmp))
            meta = model.metadata_props.add()
            meta.key, meta.value = "fivesigma.features", json.dumps(self.feature_names_in_)
            onnx.save(model, str(tmp))
        return path

    def _bundle(self) -> Bundle:
        arrays = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}
        training: dict[str, Any] = {"network": self.net_.config.to_dict()}
        if hasattr(self, "history_"):
            training["history"] = self.history_.to_dict()
        return Bundle(
            kind=self.kind, preprocessing=self.scaler_.to_dict(), arrays=arrays, training=training
        )

    def _restore(self, bundle: Bundle) -> None:
        import torch

        from fivesigma.nn.mlp import MLP
        from fivesigma.training.trainer import TrainHistory

        self.scaler_ = Standardiser.from_dict(bundle.preprocessing)
        net = MLP(self._net_config(self.n_features_in_, self.n_classes_))
        state = {
            k[len("net.") :]: torch.from_numpy(np.array(v))
            for k, v in bundle.arrays.items()
            if k.startswith("net.")
        }
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            raise ModelError(
                f"mlp bundle weights do not match its network: {str(err).splitlines()[0]}"
            ) from None
        self.net_ = net.eval()
        if "history" in bundle.training:
            self.history_ = TrainHistory.from_dict(bundle.training["history"])


# --------------------------------------------------------------------------------------
# Registry


ESTIMATORS: dict[str, type[BaseClassifier]] = {
    "logistic": LogisticClassifier,
    "bdt": BDTClassifier,
    "mlp": MLPClassifier,
}


def make_estimator(kind: str, **params: Any) -> BaseClassifier:
    """A new, unfitted estimator of registry name ``kind`` with hyper-parameters ``params``.

    Unknown kinds or hyper-parameter names raise :class:`ModelError` listing what is accepted.
    """
    cls = ESTIMATORS.get(kind)
    if cls is None:
        raise ModelError(
            f"unknown model kind {kind!r}; accepted: {', '.join(sorted(ESTIMATORS))} "
            f"({close_matches(str(kind), ESTIMATORS)})"
        )
    cls.check_param_names(params, where=f"{cls.kind!r} model")
    return cls(**params)


def load(path: str | Path) -> BaseClassifier:
    """Read a model bundle written by ``save`` and return the fitted estimator."""
    bundle = load_bundle(path)
    cls = ESTIMATORS.get(bundle.kind)
    if cls is None:
        raise ModelError(
            f"model bundle '{path}' has kind {bundle.kind!r}; this fivesigma knows "
            f"{', '.join(sorted(ESTIMATORS))}"
        )
    return cls._from_bundle(bundle)
