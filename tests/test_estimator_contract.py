"""The estimator contract, checked on every registered estimator.

In the manner of scikit-learn's ``parametrize_with_checks``: every check runs on every
name in :data:`fivesigma.core.registry.ESTIMATORS`, so a newly registered estimator is
checked without touching this file.  It is built with ``make_estimator(name, **params)``
from tiny settings: ``TINY[name]`` where given, plus generic speed-ups for whichever of
the hyper-parameters in ``GENERIC`` it has (1-3 epochs, few trees, one thread).

Checks: the registry entry; ``fit`` returns ``self``; the shapes of ``predict_proba``
(rows sum to 1), ``predict`` and ``decision_function``; ``score(X, y)`` is the weighted
ROC AUC of the decision function (mean one-vs-rest AUC for three classes); validation
data; save -> load gives bit-identical predictions; ONNX agrees with the estimator or
is refused with one line; seeds; mask invariance for constituent inputs; missing values
(NaN) taken by the table estimators that handle or impute them; one-line errors for bad
input (NaN elsewhere, inf everywhere); ``get_params`` / ``set_params`` and clone-style
reconstruction; the typed schema of the hyper-parameters (``Params``,
``param_schema()``) and a seeded property test: values of the wrong type or out of range for any parameter are one-line
errors naming it, from ``make_estimator`` and from ``fit`` before any training.
"""

from __future__ import annotations

import inspect
import json
import math
import random
import re
import subprocess
import sys
import typing
from functools import cache
from typing import Any

import numpy as np
import pytest

from fivesigma.core.registry import BUNDLE_KINDS, ESTIMATORS
from fivesigma.errors import FivesigmaError, ModelError
from fivesigma.estimators import Estimator, TorchEstimator, load, make_estimator
from fivesigma.metrics import auc
from fivesigma.training.estimator import INPUT_KINDS

NAMES = ESTIMATORS.names()
CONSTITUENT_NAMES = ESTIMATORS.names(inputs="constituents")

#: applied to whichever of these hyper-parameters an estimator has
GENERIC: dict[str, Any] = {
    "epochs": 2,
    "batch_size": 32,
    "progress": False,
    "num_threads": 1,
    "n_estimators": 20,
    "n_jobs": 1,
    "early_stopping_patience": None,
}
#: tiny settings of the built-in estimators (networks of a few hundred weights)
TINY: dict[str, dict[str, Any]] = {
    "bdt": {"max_depth": 2},
    "mlp": {"hidden": (8,), "dropout": 0.1},
    "cnn1d": {"model_params": {"channels": (8, 8), "hidden": (8,)}},
    "pfn": {"model_params": {"phi": (8, 8), "f": (8,)}},
    "particlenet": {"model_params": {"k": 3, "conv": ((8, 8), (8, 8)), "fc": (8,)}},
    "part": {
        "model_params": {
            "embed_dims": (8,),
            "pair_embed_dims": (4,),
            "num_heads": 2,
            "num_layers": 1,
            "num_cls_layers": 1,
            "dropout": 0.1,
        }
    },
}
#: estimators whose export_onnx refuses with a one-line ModelError
NO_ONNX = {"bdt"}

N_EVENTS = 96


def params_for(name: str, **overrides: Any) -> dict[str, Any]:
    accepted = ESTIMATORS.get(name)._param_names()
    params = {k: v for k, v in GENERIC.items() if k in accepted}
    return params | TINY.get(name, {}) | overrides


def build(name: str, **overrides: Any) -> Estimator:
    return make_estimator(name, **params_for(name, **overrides))


def input_kind(name: str) -> str:
    return ESTIMATORS.entry(name).metadata["inputs"]


def toy(kind: str, n: int = N_EVENTS, seed: int = 0, n_classes: int = 2) -> tuple[Any, Any]:
    """Inputs of the estimator's kind and labels 0..n_classes-1 that they separate."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    if kind == "table":
        return rng.normal(size=(n, 3)) + 1.5 * (y[:, None] == np.arange(3)), y
    assert kind == "constituents", kind
    slots = 10
    ns = 2 + 3 * y + rng.integers(0, 3, n)  # the multiplicity tells the classes apart
    mask = np.arange(slots) < np.minimum(ns, slots)[:, None]
    pt = np.sort(rng.uniform(1, 50, (n, slots)), axis=1)[:, ::-1]
    eta, phi = rng.normal(0, 0.3, (n, slots)), rng.normal(0, 0.3, (n, slots))
    v = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], -1)
    x = np.stack([eta, phi, np.log(pt)], -1)
    keep = mask[..., None]
    return {"x": (x * keep).astype(np.float32), "v": (v * keep).astype(np.float32), "mask": mask}, y


def subset(X: Any, idx: Any) -> Any:
    return {k: a[idx] for k, a in X.items()} if isinstance(X, dict) else X[idx]


@cache
def fitted(name: str) -> Estimator:
    """One binary fit per estimator, shared by the checks (which never change it)."""
    X, y = toy(input_kind(name))
    return build(name).fit(X, y)


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg, repr(msg)
    return msg


# --------------------------------------------------------------------------------------
# the registry


@pytest.mark.parametrize("name", NAMES)
def test_registry_entry(name):
    entry = ESTIMATORS.entry(name)
    cls = entry.load()
    assert issubclass(cls, Estimator)
    assert entry.metadata["inputs"] in INPUT_KINDS
    assert cls.inputs == entry.metadata["inputs"]
    assert cls.kind in BUNDLE_KINDS  # its bundles can be read back
    est = make_estimator(name)
    for key, value in entry.metadata.get("params", {}).items():
        assert est.get_params()[key] == value


def test_unknown_names_are_one_line_errors_listing_the_registered_ones():
    with pytest.raises(ModelError) as err:
        make_estimator("particle_net")
    msg = one_line(err)
    assert all(name in msg for name in NAMES) and "did you mean 'particlenet'" in msg
    with pytest.raises(ModelError) as err:
        make_estimator("pfn", model="part")  # fixed by the registry entry
    one_line(err)


def test_importing_the_estimators_imports_neither_torch_nor_xgboost():
    code = (
        "import sys, fivesigma.estimators, fivesigma.training.estimator; "
        "print(sorted(m for m in ('torch', 'xgboost', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------
# fit, predict, score


@pytest.mark.parametrize("name", NAMES)
def test_fit_returns_self_and_sets_the_fitted_attributes(name):
    X, y = toy(input_kind(name), n=48)
    est = build(name)
    assert est.fit(X, y, feature_names=["a", "b", "c"]) is est
    assert est.n_features_in_ == 3 and est.feature_names_in_ == ["a", "b", "c"]
    assert est.n_classes_ == 2 and est.classes_.tolist() == [0, 1]
    assert isinstance(est.data_fingerprint_, str) and est.data_fingerprint_


@pytest.mark.parametrize("name", NAMES)
def test_prediction_shapes(name):
    est = fitted(name)
    X, _ = toy(input_kind(name), n=17, seed=1)
    p = est.predict_proba(X)
    assert p.shape == (17, 2) and p.dtype == np.float64
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    assert np.all((p >= 0) & (p <= 1))
    labels = est.predict(X)
    assert labels.shape == (17,) and np.array_equal(labels, p.argmax(axis=1))
    d = est.decision_function(X)
    assert d.shape == (17,) and np.array_equal(d, p[:, 1])


@pytest.mark.parametrize("name", NAMES)
def test_score_is_the_weighted_auc_of_the_decision_function(name):
    est = fitted(name)
    X, y = toy(input_kind(name), n=64, seed=2)
    w = np.random.default_rng(3).uniform(0.5, 2.0, len(y))
    for weight in (None, w):
        s = est.score(X, y, weight)
        assert isinstance(s, float) and 0.0 <= s <= 1.0
        assert s == auc(y, est.decision_function(X), weight)


@pytest.mark.parametrize("name", NAMES)
def test_three_classes(name):
    X, y = toy(input_kind(name), n=90, n_classes=3)
    est = build(name).fit(X, y)
    p = est.predict_proba(X)
    assert p.shape == (90, 3) and est.n_classes_ == 3
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    assert est.predict(X).shape == (90,)
    with pytest.raises(ModelError) as err:
        est.decision_function(X)
    assert "binary" in one_line(err)
    mean_ovr = np.mean([auc((y == k).astype(int), p[:, k]) for k in range(3)])
    assert est.score(X, y) == pytest.approx(mean_ovr, abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_validation_data(name):
    X, y = toy(input_kind(name), n=64)
    Xv, yv = toy(input_kind(name), n=32, seed=5)
    wv = np.ones(32)
    for valid in ((Xv, yv), (Xv, yv, wv)):
        assert build(name).fit(X, y, valid=valid).predict_proba(Xv).shape == (32, 2)
    for bad in ((Xv,), (Xv, yv[:-1]), (Xv, np.full(32, 2))):
        with pytest.raises(FivesigmaError) as err:
            build(name).fit(X, y, valid=bad)
        one_line(err)


# --------------------------------------------------------------------------------------
# bundles and ONNX


@pytest.mark.parametrize("name", NAMES)
def test_save_load_gives_bit_identical_predictions(name, tmp_path):
    est = fitted(name)
    X, _ = toy(input_kind(name), n=33, seed=4)
    path = est.save(tmp_path / name, data={"note": "contract"}, metadata={"m": 1})
    for back in (load(path), type(est).load(path), Estimator.load(path)):
        assert type(back) is type(est)
        assert back.get_params() == est.get_params()
        assert back.feature_names_in_ == est.feature_names_in_
        assert back.n_classes_ == est.n_classes_
        assert back.bundle_data_["note"] == "contract" and back.bundle_metadata_["m"] == 1
        assert np.array_equal(back.predict_proba(X), est.predict_proba(X))
        assert back.n_parameters() == est.n_parameters()


def onnx_feeds(name: str, X: Any) -> dict[str, np.ndarray]:
    if input_kind(name) == "table":
        return {"features": np.asarray(X, dtype=np.float32)}
    return {k: np.asarray(a, dtype=np.float32) for k, a in X.items()}


@pytest.mark.parametrize("name", NAMES)
def test_onnx_export_agrees_or_is_refused_in_one_line(name, tmp_path):
    est = fitted(name)
    if name in NO_ONNX:
        with pytest.raises(ModelError) as err:
            est.export_onnx(tmp_path / f"{name}.onnx")
        one_line(err)
        assert not (tmp_path / f"{name}.onnx").exists()
        return
    ort = pytest.importorskip("onnxruntime")
    path = est.export_onnx(tmp_path / f"{name}.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 13):  # dynamic batch axis
        X, _ = toy(input_kind(name), n=n, seed=6)
        got = session.run(["probabilities"], onnx_feeds(name, X))[0]
        np.testing.assert_allclose(got, est.predict_proba(X), rtol=0, atol=1e-5)


# --------------------------------------------------------------------------------------
# seeds and padding


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_model_other_seed_other_network(name):
    X, y = toy(input_kind(name))
    Xt, _ = toy(input_kind(name), n=20, seed=7)
    # clone-style: the fitted estimator's parameters (and seed) on the same data
    a = type(fitted(name))(**fitted(name).get_params()).fit(X, y).predict_proba(Xt)
    assert np.array_equal(a, fitted(name).predict_proba(Xt))
    if isinstance(fitted(name), TorchEstimator):
        b = build(name, seed=1).fit(X, y).predict_proba(Xt)
        assert not np.array_equal(a, b)


@pytest.mark.parametrize("name", CONSTITUENT_NAMES)
def test_padded_entries_do_not_change_predictions(name):
    est = fitted(name)
    X, _ = toy("constituents", n=30, seed=8)
    p = est.predict_proba(X)
    rng = np.random.default_rng(9)
    pad = ~X["mask"]
    noisy = {k: a.copy() for k, a in X.items()}
    noisy["x"][pad] = rng.normal(size=(pad.sum(), 3)) * 100
    noisy["v"][pad] = rng.normal(size=(pad.sum(), 4)) * 100
    noisy["x"][pad.nonzero()[0][:3], pad.nonzero()[1][:3]] = np.nan  # even NaN
    assert np.array_equal(est.predict_proba(noisy), p)
    extra = 6
    wider = {
        "x": np.concatenate([X["x"], rng.normal(size=(30, extra, 3)).astype(np.float32)], 1),
        "v": np.concatenate([X["v"], rng.normal(size=(30, extra, 4)).astype(np.float32)], 1),
        "mask": np.concatenate([X["mask"], np.zeros((30, extra), bool)], 1),
    }
    assert np.array_equal(est.predict_proba(wider), p)


# --------------------------------------------------------------------------------------
# bad input and parameters


def bad_features(name: str, X: Any) -> Any:
    if input_kind(name) == "table":
        return X[:, :2]
    return dict(X, x=X["x"][..., :2])


def with_nan(name: str, X: Any) -> Any:
    if input_kind(name) == "table":
        X = X.copy()
        X[1, 0] = np.nan
        return X
    x = X["x"].copy()
    x[1, 0, 0] = np.nan  # a real particle (every jet has at least two)
    return dict(X, x=x)


def with_inf(X: np.ndarray) -> np.ndarray:
    X = X.copy()
    X[2, 1] = np.inf
    return X


def takes_missing(name: str) -> bool:
    """Whether the estimator takes NaN in a table (natively, or by imputing it)."""
    cls = ESTIMATORS.get(name)
    return cls.inputs == "table" and (cls.handles_missing or cls.imputes_missing)


@pytest.mark.parametrize("name", ESTIMATORS.names(inputs="table"))
def test_missing_values_are_taken_or_refused(name):
    """A table estimator that handles or imputes NaN trains and predicts on it (finite
    probabilities); any other refuses NaN in one line (as constituent models do, below)."""
    cls = ESTIMATORS.get(name)
    assert isinstance(cls.handles_missing, bool) and isinstance(cls.imputes_missing, bool)
    assert not (cls.handles_missing and cls.imputes_missing)
    X, y = toy(input_kind(name), n=48)
    if not takes_missing(name):
        with pytest.raises(FivesigmaError) as err:
            build(name).fit(with_nan(name, X), y)
        assert "NaN" in one_line(err)
        return
    est = build(name).fit(with_nan(name, X), y)
    assert np.isfinite(est.predict_proba(with_nan(name, X))).all()
    assert (getattr(est, "imputer_", None) is not None) == cls.imputes_missing


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_gives_one_line_errors(name):
    X, y = toy(input_kind(name), n=24)
    est = fitted(name)
    with pytest.raises(FivesigmaError) as err:
        est.predict_proba(bad_features(name, X))
    assert "trained on 3" in one_line(err)
    if takes_missing(name):  # NaN is a missing value; inf is refused
        bad, word = with_inf, "inf"
    else:
        bad, word = (lambda a: with_nan(name, a)), "NaN"
    calls = [(lambda: est.predict_proba(bad(X)), word), (lambda: build(name).fit(bad(X), y), word)]
    if takes_missing(name) and ESTIMATORS.get(name).imputes_missing:
        # trained without missing values: no imputation, so NaN is refused when predicting
        calls.append((lambda: est.predict_proba(with_nan(name, X)), "NaN"))
    for call, expected in calls:
        with pytest.raises(FivesigmaError) as err:
            call()
        assert expected in one_line(err)
    with pytest.raises(FivesigmaError) as err:
        build(name).fit(X, np.ones(24, dtype=int))
    assert "only class 1" in one_line(err)
    with pytest.raises(FivesigmaError) as err:
        build(name).fit(X, y[:-1])
    one_line(err)
    with pytest.raises(ModelError) as err:
        build(name).predict_proba(X)
    assert "not fitted" in one_line(err)
    with pytest.raises(ModelError) as err:
        build(name).decision_function(X)
    one_line(err)
    with pytest.raises(ModelError) as err:
        make_estimator(name, no_such_parameter=1)
    assert "no_such_parameter" in one_line(err)
    with pytest.raises(ModelError) as err:
        build(name).set_params(no_such_parameter=1)
    one_line(err)


@pytest.mark.parametrize("name", NAMES)
def test_get_params_set_params_and_clone(name):
    est = build(name)
    params = est.get_params()
    assert set(params) == set(type(est)._param_names())
    assert est.set_params(**params) is est and est.get_params() == params
    clone = type(est)(**est.get_params())
    assert clone.get_params() == params and repr(clone) == repr(est)
    # a clone of a fitted estimator is unfitted (refitting it: the seed check)
    fit = fitted(name)
    again = type(fit)(**fit.get_params())
    assert again.get_params() == fit.get_params()
    with pytest.raises(ModelError):
        again.predict_proba(toy(input_kind(name), n=4)[0])


# --------------------------------------------------------------------------------------
# typed hyper-parameters


def _jsonish(value: Any) -> Any:
    """Tuples as lists, for comparing defaults (JSON has no tuples)."""
    if isinstance(value, tuple | list):
        return [_jsonish(v) for v in value]
    return value


@pytest.mark.parametrize("name", NAMES)
def test_every_estimator_declares_a_typed_schema_of_its_parameters(name):
    cls = ESTIMATORS.get(name)
    assert cls.Params is not None, f"{name} has no Params schema"
    fields = cls.Params.model_fields
    assert list(fields) == [n for n in fields if n in cls._param_names()]
    assert set(fields) == set(cls._param_names())
    signature = inspect.signature(cls.__init__)
    for pname, field in fields.items():
        assert field.description and "accepted: " in field.description, pname
        assert _jsonish(field.default) == _jsonish(signature.parameters[pname].default), pname
    schema = cls.param_schema()
    json.dumps(schema)
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(fields)
    assert all("description" in p for p in schema["properties"].values())
    # the defaults (and the registry's fixed values) pass, at make time and at fit time
    est = make_estimator(name)
    cls.check_params(est.get_params(), what=name)
    fixed = ESTIMATORS.entry(name).metadata.get("params", {})
    assert cls.check_params({**fixed, **params_for(name)}, what=name) is None


def test_the_schemas_choices_are_those_of_the_code_behind_them():
    from fivesigma.nn.mlp import ACTIVATIONS
    from fivesigma.tasks.jets.models import MODELS
    from fivesigma.training.trainer import TrainerConfig

    schema = make_estimator("mlp").param_schema()["properties"]
    assert schema["activation"]["enum"] == list(ACTIVATIONS)
    scheduler = typing.get_args(typing.get_type_hints(TrainerConfig)["scheduler"])
    assert schema["scheduler"]["enum"] == list(scheduler)
    tagger = ESTIMATORS.get("pfn").param_schema()["properties"]
    assert tagger["model"]["enum"] == list(MODELS) == CONSTITUENT_NAMES


# -- the property: a value the schema refuses is a one-line error naming the parameter


def _accepts(schema: dict[str, Any], value: Any) -> bool:
    """Whether the JSON schema of one parameter accepts ``value`` (the subset pydantic
    writes; "integer" excludes 1.0 and bools, "number" excludes bools, NaN and inf)."""
    if "anyOf" in schema:
        return any(_accepts(s, value) for s in schema["anyOf"])
    if "const" in schema and not (
        type(value) is type(schema["const"]) and value == schema["const"]
    ):
        return False
    if "enum" in schema and not any(type(value) is type(e) and value == e for e in schema["enum"]):
        return False
    kind = schema.get("type")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer" and not (number and isinstance(value, int)):
        return False
    if kind == "number" and not (number and abs(value) < 1e308 and math.isfinite(value)):
        return False
    if kind in ("integer", "number"):
        return (
            value >= schema.get("minimum", -math.inf)
            and value <= schema.get("maximum", math.inf)
            and value > schema.get("exclusiveMinimum", -math.inf)
            and value < schema.get("exclusiveMaximum", math.inf)
        )
    if kind == "string":
        return (
            isinstance(value, str)
            and len(value) >= schema.get("minLength", 0)
            and re.search(schema.get("pattern", ""), value) is not None
        )
    if kind == "array":
        return (
            isinstance(value, list | tuple)
            and len(value) >= schema.get("minItems", 0)
            and all(_accepts(schema.get("items", {}), v) for v in value)
        )
    if kind == "object":
        extra = schema.get("additionalProperties", True)
        if not isinstance(value, dict):
            return False
        return extra is True or all(_accepts(extra, v) for v in value.values())
    return kind is None


def _candidates(rng: random.Random) -> list[Any]:
    """Values of every kind, wrong for most parameters: strings, bools, negative, zero and
    huge numbers, floats where integers are needed, NaN/inf, None, (nested) lists, dicts."""
    word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 12)))
    return [
        word,
        rng.choice(["", "64", "1e-3", "true", "None", "cpu ", "balanced ", "[64, 64]"]),
        True,
        False,
        None,
        0,
        -rng.randint(1, 10**6),
        rng.randint(2, 50),
        10 ** rng.randint(19, 400),
        -(10 ** rng.randint(19, 60)),
        rng.uniform(-1e3, -1e-6),
        rng.uniform(1e-6, 0.999),
        rng.choice([1.5, 8.7, 2.5, 64.5]),
        float(rng.randint(1, 9)),
        rng.choice([float("nan"), float("inf"), -float("inf"), 1e300 * 10]),
        [],
        [rng.randint(1, 64)],
        [rng.randint(1, 64) + 0.5],
        ["64"],
        [True],
        [-rng.randint(1, 9)],
        [[rng.randint(1, 9), rng.randint(1, 9)]],
        [[[]]],
        {},
        {rng.randint(0, 3): -rng.uniform(0.1, 9)},
        {-1: 2.0},
        {"a": 1.0},
        {1: "x"},
        {rng.randint(0, 3): True},
        {rng.randint(5, 9), rng.randint(10, 19)},
        b"64",
        object(),
    ]


def _wrong_network_values(model: str) -> list[dict[str, Any]]:
    """``model_params`` a tagger's network config refuses: each field with a value of the
    wrong type or out of range, and names it does not have."""
    import dataclasses

    from fivesigma.tasks.jets.models import MODELS

    config_cls = MODELS[model][0]
    hints = typing.get_type_hints(config_cls)
    out: list[dict[str, Any]] = [{"no_such_field": 1}, {"n_features": 3}]
    for field in dataclasses.fields(config_cls):
        if field.name in ("n_features", "n_classes"):
            continue
        hint = str(hints[field.name])
        if hint.startswith("tuple"):
            bad = [64, "64", [8.7], [True], {8, 16}]
        elif "int" in hint:
            bad = ["3", True, 2.5, [3], -5]
        elif "float" in hint:
            bad = ["0.1", True, [0.1], -0.5, 1.5]
        else:  # str
            bad = [1, ["batch"], "no_such_choice"]
        out += [{field.name: v} for v in bad]
    return out


def _refusal(name: str, pname: str, value: Any, via: str) -> str:
    """The one-line error for ``pname=value``, made by make_estimator (``via="make"``) or
    by fit (set afterwards: ``via="fit"``); fails the test for any other outcome."""
    cls = ESTIMATORS.get(name)
    fixed = ESTIMATORS.entry(name).metadata.get("params", {})
    try:
        if via == "make" and pname not in fixed:
            make_estimator(name, **{pname: value})
        elif via == "make":
            cls.check_params({**fixed, pname: value}, what=name)
        else:
            est = make_estimator(name)
            est.set_params(**{pname: value})
            X, y = TOY_INPUTS[input_kind(name)]
            est.fit(X, y)  # refused before any training
    except FivesigmaError as err:
        msg = str(err)
        assert msg and "\n" not in msg, repr(msg)
        assert f" {pname}: " in f" {msg}", f"{name} {pname}={value!r}: {msg}"
        return msg
    except Exception as err:  # an "internal error" in the CLI
        pytest.fail(f"{name} {pname}={value!r} ({via}): {type(err).__name__}: {err}")
    pytest.fail(f"{name} {pname}={value!r} ({via}) was accepted")


TOY_INPUTS = {kind: toy(kind, n=8) for kind in INPUT_KINDS}


def test_parameter_values_the_schema_refuses_are_one_line_errors_naming_the_parameter():
    """A seeded property test over every registered estimator and every parameter: values
    of the wrong type or out of range (drawn at random from strings, bools, negative, zero
    and huge numbers, floats for integers, NaN, None, nested lists, dicts, sets) are refused
    by make_estimator and by fit before any training, with one line naming the parameter;
    values the schema accepts pass make_estimator.  Every tagger's model_params are
    checked the same way against its network config."""
    rng = random.Random(20240611)
    refused = accepted = 0
    for name in NAMES:
        cls = ESTIMATORS.get(name)
        properties = cls.param_schema()["properties"]
        for pname, schema in properties.items():
            pool = _candidates(rng)
            bad = [v for v in pool if not _accepts(schema, v)]
            good = [v for v in pool if _accepts(schema, v)]
            assert bad, f"{name} {pname}: nothing to refuse"
            for value in rng.sample(bad, min(4, len(bad))):
                _refusal(name, pname, value, "make")
                refused += 1
            _refusal(name, pname, rng.choice(bad), "fit")
            refused += 1
            if schema.get("type") != "object" and pname not in ("model",):
                for value in good:
                    if isinstance(value, dict):
                        continue  # JSON-schema objects do not say which keys are allowed
                    try:
                        cls.check_params({pname: value}, what=name)
                    except FivesigmaError as err:
                        pytest.fail(f"{name} {pname}={value!r} fits the schema but: {err}")
                    accepted += 1
    for name in CONSTITUENT_NAMES:
        for model_params in _wrong_network_values(name):
            msg = _refusal(name, "model_params", model_params, "make")
            assert str(next(iter(model_params))) in msg, msg
            refused += 1
    assert refused > 300 and accepted > 50, (refused, accepted)


@pytest.mark.parametrize("name", NAMES)
def test_a_saved_bundle_with_a_bad_parameter_is_refused_in_one_line(name, tmp_path):
    """Parameters are checked when a bundle is read (a manifest written by hand)."""
    from fivesigma.core.bundle import _manifest_digest

    path = fitted(name).save(tmp_path / name)
    manifest = json.loads((path / "manifest.json").read_text())
    pname = "seed" if "seed" in manifest["params"] else "C"
    manifest["params"][pname] = "seven"
    manifest["checksum"] = _manifest_digest(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError) as err:
        load(path)
    msg = one_line(err)
    assert f"model bundle '{path}'" in msg and f"{pname}: expected" in msg and "'seven'" in msg
