"""SHAP values of the event classifiers: exact TreeSHAP, exact linear SHAP, expected gradients.

:func:`shap_values` explains one fitted classifier on a table of events and returns an
:class:`Explanation`: per event and feature the contribution ``values[i, j]`` to the
model's output, in **log-odds** (binary: the logit ``ln p/(1-p)`` of the signal
probability), such that ``values[i].sum() + base_value == output[i]``:

- ``bdt`` → ``method="tree"``: exact path-dependent TreeSHAP, built into xgboost
  (``pred_contribs``, the last column is the bias); the reference is the training data
  kept in the trees (their cover), ``background`` is not used.  Additive to float32
  rounding (about 1e-6).
- ``logistic`` → ``"linear"``: exact linear SHAP ``coef_j (z_j - mean_bg z_j)`` in the
  standardised space ``z``; the standardisation is per feature, so this is also the
  value of raw feature ``j``.  Exactly additive.
- ``mlp`` → ``"gradient"``: expected gradients, i.e. integrated gradients of the
  network's logit from each of ``n_background`` background events (midpoint rule,
  ``steps`` points per path), averaged over those events.  Additive up to the quadrature
  error (ReLU networks, defaults: about 1% of the spread of the output; it halves when
  ``steps`` doubles; smooth activations: about 1e-4).

Every method gives the output in the same unit (the logit before the sigmoid; for K > 2
classes the logit of class ``class_index`` before the softmax), so the values of
different models of one run can be compared directly.  ``base_value`` is the expected
output over the background (the tree method: over the training data).  Kernel SHAP
(any other model) needs the ``shap`` package, which fivesigma does not use; other
estimators raise a one-line :class:`~fivesigma.errors.ModelError`.

>>> import numpy as np
>>> from fivesigma.estimators import make_estimator
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(500, 3)); y = (X[:, 0] > 0).astype(int)
>>> expl = shap_values(make_estimator("logistic").fit(X, y), X)
>>> expl.method, expl.units, expl.values.shape
('linear', 'log-odds of signal', (500, 3))
>>> bool(expl.additivity_error() < 1e-9)
True
>>> next(iter(mean_abs_shap(expl)))
'x0'
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fivesigma.core import extras
from fivesigma.errors import DataError, ModelError
from fivesigma.training.inputs import as_table, torch_threads

__all__ = ["METHODS", "SUPPORTED", "Explanation", "mean_abs_shap", "shap_values"]

#: the values of :attr:`Explanation.method`
METHODS = ("tree", "linear", "gradient", "kernel")
#: estimator kind -> method
SUPPORTED = {"bdt": "tree", "logistic": "linear", "mlp": "gradient"}

#: background events of the gradient method (drawn from ``background``)
N_BACKGROUND = 32
#: integration points per path of the gradient method
STEPS = 16
#: points per batch of the gradient method (events x background x steps)
_BATCH_POINTS = 1 << 17


@dataclass
class Explanation:
    """SHAP values of one model on a set of events.

    Attributes
    ----------
    values : (n_events, n_features) contribution of each feature to each event's output,
        in :attr:`units`.
    base_value : the expected output over the background; ``values.sum(1) + base_value``
        is :attr:`output` (exactly for ``tree`` and ``linear``, up to the quadrature
        error for ``gradient``: see :meth:`additivity_error`).
    feature_names : one name per column.
    data : (n_events, n_features) the explained events (raw features).
    method : ``"tree"``, ``"linear"``, ``"gradient"`` or ``"kernel"``.
    units : what the values are in, e.g. ``"log-odds of signal"``.
    output : (n_events,) the model's output in :attr:`units` (binary: the logit of the
        signal probability).
    model : the estimator's kind (``bdt``, ``logistic``, ``mlp``).
    class_index : the class whose output is explained (binary: 1, signal).
    details : method settings (background size, integration steps, ...).
    """

    values: np.ndarray
    base_value: float
    feature_names: list[str]
    data: np.ndarray
    method: str
    units: str
    output: np.ndarray
    model: str = ""
    class_index: int = 1
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64)
        self.data = np.asarray(self.data, dtype=np.float64)
        self.output = np.asarray(self.output, dtype=np.float64).reshape(-1)
        self.base_value = float(self.base_value)
        self.feature_names = [str(f) for f in self.feature_names]
        n, f = self.values.shape if self.values.ndim == 2 else (-1, -1)
        if (
            n < 0
            or self.data.shape != self.values.shape
            or self.output.shape != (n,)
            or len(self.feature_names) != f
        ):
            raise DataError(
                f"Explanation: values {self.values.shape}, data {self.data.shape}, output "
                f"{self.output.shape} and {len(self.feature_names)} feature names do not match"
            )
        if self.method not in METHODS:
            raise DataError(f"Explanation method {self.method!r} is not one of {METHODS}")

    @property
    def n_events(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.values.shape[1])

    def additivity_error(self) -> float:
        """``max |values.sum(1) + base_value - output|`` over the events (in :attr:`units`)."""
        if self.n_events == 0:
            return 0.0
        return float(np.max(np.abs(self.values.sum(axis=1) + self.base_value - self.output)))

    def to_dict(self) -> dict[str, Any]:
        """A summary for metrics.json: method, units, base value, events, mean |SHAP|."""
        return {
            "method": self.method,
            "units": self.units,
            "base_value": self.base_value,
            "n_events": self.n_events,
            "additivity_error": self.additivity_error(),
            "mean_abs_shap": mean_abs_shap(self),
        }


def mean_abs_shap(expl: Explanation) -> dict[str, float]:
    """Feature -> mean |SHAP value| over the explained events, largest first (a global
    importance in the explanation's units, for metrics.json)."""
    means = np.abs(expl.values).mean(axis=0) if expl.n_events else np.zeros(expl.n_features)
    order = sorted(range(expl.n_features), key=lambda j: (-means[j], j))
    return {expl.feature_names[j]: float(means[j]) for j in order}


# --------------------------------------------------------------------------------------
# Entry point


def shap_values(
    estimator: Any,
    X: Any,
    *,
    background: Any = None,
    max_events: int | None = 2000,
    seed: int = 0,
    class_index: int = 1,
    n_background: int = N_BACKGROUND,
    steps: int = STEPS,
) -> Explanation:
    """SHAP values of a fitted event classifier on the events ``X``.

    Parameters
    ----------
    estimator : a fitted ``logistic``, ``bdt`` or ``mlp`` classifier (or one loaded from
        a bundle).
    X : (n_events, n_features) the events to explain (numpy array or DataFrame).
    background : the reference events the values are measured against (default: ``X``);
        the linear method uses their mean, the gradient method ``n_background`` of them
        drawn with ``seed``; the tree method uses the training data kept in the trees.
    max_events : at most this many events of ``X`` are explained, drawn with ``seed``
        (None: all).
    seed : the random draws (explained events, background events).
    class_index : the class whose logit is explained (binary: 1 = signal, 0 = background,
        the negated log-odds).
    n_background, steps : the gradient method's background events and integration points
        per path (cost: ``n_events * n_background * steps`` network gradients).

    Returns an :class:`Explanation` in log-odds (see the module documentation).
    """
    if not hasattr(estimator, "n_features_in_"):
        raise ModelError(
            f"{type(estimator).__name__} is not fitted yet; fit it or load a bundle before "
            "computing SHAP values"
        )
    kind = str(getattr(estimator, "kind", ""))
    method = SUPPORTED.get(kind) if _is_table_classifier(estimator) else None
    if method is None:
        raise ModelError(
            f"SHAP values are implemented for {_supported_text()}; "
            f"{type(estimator).__name__} (kind {kind or '?'!r}) is not one of them"
        )
    n_classes = int(estimator.n_classes_)
    if not isinstance(class_index, int | np.integer) or not 0 <= class_index < n_classes:
        raise ModelError(f"class_index must be in 0..{n_classes - 1}, got {class_index!r}")
    if max_events is not None and max_events < 1:
        raise ModelError(f"max_events must be a positive integer or None, got {max_events!r}")
    rng = np.random.default_rng(seed)
    names = list(estimator.feature_names_in_)
    every = _table(estimator, X, "X")
    rows = every
    if max_events is not None and every.shape[0] > max_events:
        rows = every[np.sort(rng.choice(every.shape[0], size=int(max_events), replace=False))]
    bg = every if background is None else _table(estimator, background, "background")
    if n_classes == 2:
        units = "log-odds of signal" if class_index == 1 else "log-odds of background"
    else:
        units = f"logit of class {int(class_index)}"

    imputer = getattr(estimator, "imputer_", None)
    # A model trained on data with missing values sees imputed features plus is-missing
    # flags: explain it there, then give each flag's share to its feature (SHAP values of
    # a group of inputs add up), so the attributions stay one per feature.
    seen_rows, seen_bg = rows, bg
    if imputer is not None and method != "tree":
        seen_rows, seen_bg = imputer.transform(rows), imputer.transform(bg)
    if method == "tree":
        values, base, output, details = _tree(estimator, rows, int(class_index))
    elif method == "linear":
        values, base, output, details = _linear(estimator, seen_rows, seen_bg, int(class_index))
    else:
        if not (isinstance(steps, int | np.integer) and steps >= 1):
            raise ModelError(f"steps must be a positive integer, got {steps!r}")
        if not (isinstance(n_background, int | np.integer) and n_background >= 1):
            raise ModelError(f"n_background must be a positive integer, got {n_background!r}")
        if seen_bg.shape[0] > n_background:
            pick = np.sort(rng.choice(seen_bg.shape[0], size=int(n_background), replace=False))
            seen_bg = seen_bg[pick]
        values, base, output, details = _gradient(
            estimator, seen_rows, seen_bg, int(class_index), int(steps)
        )
    if imputer is not None and method != "tree":
        folded = values[:, : len(names)].copy()
        for j, feature in enumerate(np.asarray(imputer.flags_, dtype=np.int64)):
            folded[:, feature] += values[:, len(names) + j]
        values = folded
        details = {
            **details,
            "missing_values": "imputed; each is-missing flag added to its feature",
        }
    return Explanation(
        values=values,
        base_value=base,
        feature_names=names,
        data=rows,
        method=method,
        units=units,
        output=output,
        model=kind,
        class_index=int(class_index),
        details=details,
    )


def _supported_text() -> str:
    return "the event classifiers logistic (linear), bdt (tree) and mlp (gradient)"


def _is_table_classifier(estimator: Any) -> bool:
    from fivesigma.estimators.tabular import BDTClassifier, LogisticClassifier, MLPClassifier

    return isinstance(estimator, LogisticClassifier | BDTClassifier | MLPClassifier)


def _table(estimator: Any, X: Any, name: str) -> np.ndarray:
    takes_nan = getattr(estimator, "handles_missing", False) or (
        getattr(estimator, "imputer_", None) is not None
    )
    if takes_nan:  # NaN is a missing value the model handles; inf is still an error
        arr = np.asarray(X, dtype=np.float64)
        if arr.ndim == 2 and arr.shape[0] and not np.isinf(arr).any():
            return _check_width(estimator, arr, name)
    arr = as_table(X, name)
    return _check_width(estimator, arr, name)


def _check_width(estimator: Any, arr: np.ndarray, name: str) -> np.ndarray:
    if arr.shape[1] != estimator.n_features_in_:
        shown = ", ".join(estimator.feature_names_in_[:12])
        raise DataError(
            f"{name} has {arr.shape[1]} features but {type(estimator).__name__} was trained on "
            f"{estimator.n_features_in_} ({shown}{', ...' if estimator.n_features_in_ > 12 else ''})"
        )
    return arr


Result = tuple[np.ndarray, float, np.ndarray, dict[str, Any]]


# --------------------------------------------------------------------------------------
# Methods


def _tree(est: Any, rows: np.ndarray, k: int) -> Result:
    """Exact (path-dependent) TreeSHAP from xgboost: the last column is the bias."""
    xgb = extras.xgboost()
    n_jobs = getattr(est, "n_jobs", None)
    dm = xgb.DMatrix(rows, nthread=n_jobs if n_jobs is not None else -1)
    contribs = np.asarray(est.booster_.predict(dm, pred_contribs=True), dtype=np.float64)
    margin = np.asarray(est.booster_.predict(dm, output_margin=True), dtype=np.float64)
    if contribs.ndim == 3:  # multi-class: (n, K, F + 1), margin (n, K)
        contribs, margin = contribs[:, k, :], margin[:, k]
    elif k == 0:  # binary, background: the negated log-odds
        contribs, margin = -contribs, -margin
    values, bias = contribs[:, :-1], contribs[:, -1]
    return values, float(bias[0]), margin, {"trees": "path-dependent (training cover)"}


def _linear(est: Any, rows: np.ndarray, bg: np.ndarray, k: int) -> Result:
    """Exact SHAP of a linear logit with independent features: ``c_j (z_j - mean z_j)``."""
    coef = np.asarray(est.coef_, dtype=np.float64)
    intercept = np.asarray(est.intercept_, dtype=np.float64)
    if coef.shape[0] == 1:  # binary: one row, the signal's log-odds
        sign = 1.0 if k == 1 else -1.0
        c, b = sign * coef[0], sign * float(intercept[0])
    else:
        c, b = coef[k], float(intercept[k])
    z = est.scaler_.transform(rows)  # (n, F)
    z_bg = est.scaler_.transform(bg).mean(axis=0)  # (F,)
    values = c * (z - z_bg)
    return values, float(c @ z_bg + b), z @ c + b, {"n_background": int(bg.shape[0])}


def _gradient(est: Any, rows: np.ndarray, bg: np.ndarray, k: int, steps: int) -> Result:
    """Expected gradients with a fixed background: for every background event ``r``,
    integrated gradients ``(x - r) * mean_a grad f(r + a (x - r))`` (midpoint rule over
    ``steps`` points ``a``), averaged over the background.  Summed over the features this
    is ``f(x) - mean_r f(r)`` up to the quadrature error.  ``f`` is the network's logit,
    computed as the model predicts (float32, on the CPU); the averages are float64."""
    torch = extras.torch()
    net = copy.deepcopy(est.net_).to("cpu").float().eval()  # the fitted model is untouched
    for p in net.parameters():
        p.requires_grad_(False)

    def tensor(a: Any) -> Any:
        return torch.as_tensor(np.asarray(a, dtype=np.float32))

    mean = tensor(est.scaler_.mean_).reshape(1, -1)
    scale = tensor(est.scaler_.scale_).reshape(1, -1)
    binary = int(est.n_classes_) == 2
    sign = 1.0 if (not binary or k == 1) else -1.0
    col = 0 if binary else k

    def f(x: Any) -> Any:  # (m, F) raw features -> (m,) logit
        return sign * net((x - mean) / scale)[:, col]

    n, n_feat = rows.shape
    n_ref = bg.shape[0]
    alphas = tensor((np.arange(steps) + 0.5) / steps).reshape(1, 1, steps, 1)
    refs = tensor(bg).reshape(1, n_ref, 1, n_feat)
    per_batch = max(1, _BATCH_POINTS // (n_ref * steps))
    values = np.empty((n, n_feat), dtype=np.float64)
    with torch_threads(getattr(est, "num_threads", None)):
        for start in range(0, n, per_batch):
            x = tensor(rows[start : start + per_batch]).reshape(-1, 1, 1, n_feat)
            delta = x - refs  # (b, R, 1, F)
            points = (refs + alphas * delta).reshape(-1, n_feat).requires_grad_(True)
            (grad,) = torch.autograd.grad(f(points).sum(), points)
            grad = grad.double().reshape(x.shape[0], n_ref, steps, n_feat).mean(dim=2)
            attr = (delta[:, :, 0, :].double() * grad).mean(dim=1)  # (b, F)
            values[start : start + x.shape[0]] = attr.numpy()
        with torch.no_grad():
            base = float(f(tensor(bg)).double().mean())
            output = f(tensor(rows)).double().numpy()
    return values, base, output, {"n_background": int(n_ref), "steps": int(steps)}
