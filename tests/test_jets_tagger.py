"""JetTagger: learns a toy, save/load round trip, ONNX export with dynamic axes, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from fivesigma.errors import DataError, FivesigmaError, ModelError
from fivesigma.tasks.jets.tagger import TAGGERS, JetTagger, check_inputs, load

TINY = {
    "cnn1d": {"channels": (8, 8), "hidden": (8,)},
    "pfn": {"phi": (8, 16), "f": (8,)},
    "particlenet": {"k": 3, "conv": ((8, 8), (16, 16)), "fc": (8,)},
    "part": {
        "embed_dims": (16,),
        "pair_embed_dims": (8,),
        "num_heads": 2,
        "num_layers": 1,
        "num_cls_layers": 1,
        "dropout": 0.0,
    },
}


def toy(n: int = 96, n_slots: int = 12, seed: int = 0):
    """Two classes told apart by the number of constituents: 2-6 (class 0) vs 7-12 (class 1)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    lo = min(7, n_slots)
    ns = np.where(y == 1, rng.integers(lo, n_slots + 1, n), rng.integers(2, min(6, n_slots) + 1, n))
    mask = np.arange(n_slots) < ns[:, None]
    pt = np.sort(rng.uniform(1, 50, (n, n_slots)), axis=1)[:, ::-1]
    eta, phi = rng.normal(0, 0.3, (n, n_slots)), rng.normal(0, 0.3, (n, n_slots))
    v = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], -1)
    x = np.stack([eta, phi, np.log(pt), rng.normal(size=(n, n_slots))], -1)
    keep = mask[..., None]
    return {"x": (x * keep).astype(np.float32), "v": (v * keep).astype(np.float32), "mask": mask}, y


def tagger(name: str, **kw) -> JetTagger:
    params = {
        "model_params": TINY[name],
        "epochs": 25,
        "batch_size": 16,
        "lr": 1e-2,
        "valid_fraction": 0.0,
        "progress": False,
        "scheduler": "none",
        "num_threads": 1,
    }
    return JetTagger(name, **(params | kw))


@pytest.fixture(scope="module")
def fitted():
    """One tagger of each kind trained on the toy (shared by the tests below)."""
    inputs, y = toy()
    return {
        name: tagger(name).fit(inputs, y, feature_names=["deta", "dphi", "logpt", "noise"])
        for name in TAGGERS
    }


@pytest.mark.parametrize("name", list(TAGGERS))
def test_each_tagger_overfits_the_multiplicity_toy(fitted, name):
    inputs, y = toy()
    t = fitted[name]
    losses = t.history_.train_loss
    assert losses[-1] < 0.35 * losses[0]
    assert (t.predict(inputs) == y).mean() > 0.9
    p = t.predict_proba(inputs)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(t.decision_function(inputs), p[:, 1])
    assert t.score(inputs, y) > 0.9  # the ROC AUC


@pytest.mark.parametrize("name", list(TAGGERS))
def test_save_load_gives_identical_predictions(fitted, name, tmp_path):
    inputs, _ = toy(n=20, seed=3)
    t = fitted[name]
    path = t.save(tmp_path / name, data={"source": "toy"}, metadata={"note": "test"})
    back = load(path)
    np.testing.assert_array_equal(back.predict_proba(inputs), t.predict_proba(inputs))
    assert back.feature_names_in_ == ["deta", "dphi", "logpt", "noise"]
    assert back.bundle_data_["source"] == "toy" and back.bundle_metadata_["note"] == "test"
    assert back.n_parameters() == t.n_parameters() == sum(p.numel() for p in t.net_.parameters())
    assert back.get_params()["model"] == name


@pytest.mark.parametrize("name", list(TAGGERS))
def test_onnx_export_agrees_with_torch_for_any_batch_and_particle_count(fitted, name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    t = fitted[name]
    path = t.export_onnx(tmp_path / f"{name}.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x", "v", "mask"]
    padded, _ = toy(n=7, n_slots=12, seed=5)  # jets with padding
    full, _ = toy(n=3, n_slots=4, seed=6)
    full["mask"][:] = True  # no padding at all (and some real particles of zero momentum)
    more, _ = toy(n=2, n_slots=30, seed=7)  # more particle slots than at export
    for inputs in (padded, full, more):
        x, v, mask = check_inputs(inputs)
        onnx_p = session.run(None, {"x": x, "v": v, "mask": mask.astype(np.float32)})[0]
        np.testing.assert_allclose(onnx_p, t.predict_proba(inputs), atol=1e-4)


def test_padded_slots_and_sorting_do_not_change_predictions(fitted):
    inputs, _ = toy(n=30, seed=8)
    t = fitted["part"]
    p = t.predict_proba(inputs)
    wider = {
        k: np.concatenate([a, np.zeros((a.shape[0], 5, *a.shape[2:]), a.dtype)], axis=1)
        for k, a in inputs.items()
    }
    np.testing.assert_allclose(t.predict_proba(wider), p, atol=1e-6)
    np.testing.assert_allclose(
        t.predict_proba({k: a[::-1] for k, a in inputs.items()}), p[::-1], atol=1e-6
    )


def test_validation_early_stopping_weights_and_reproducibility():
    inputs, y = toy(n=64, seed=1)
    valid_inputs, yv = toy(n=32, seed=2)
    w = np.random.default_rng(0).normal(1.0, 0.5, len(y))  # some negative weights
    assert (w < 0).any()
    kw = {"epochs": 6, "early_stopping_patience": 2}
    a = tagger("pfn", **kw).fit(inputs, y, sample_weight=w, valid=(valid_inputs, yv))
    b = tagger("pfn", **kw).fit(inputs, y, sample_weight=w, valid=(valid_inputs, yv))
    assert np.isfinite(a.history_.val_loss).all()
    np.testing.assert_array_equal(a.predict_proba(valid_inputs), b.predict_proba(valid_inputs))
    # held-out fraction instead of explicit validation data
    c = tagger("pfn", epochs=2, valid_fraction=0.25).fit(inputs, y)
    assert np.isfinite(c.history_.val_loss).all()


def test_multiclass_and_checkpoint_resume(tmp_path):
    inputs, _ = toy(n=48, seed=4)
    y3 = np.arange(48) % 3
    t = tagger("pfn", epochs=2, checkpoint_dir=str(tmp_path / "ckpt")).fit(inputs, y3)
    assert t.predict_proba(inputs).shape == (48, 3)
    assert (tmp_path / "ckpt" / "checkpoint.pt").exists()
    with pytest.raises(ModelError, match="binary"):
        t.decision_function(inputs)
    # a second fit with the same run resumes from the finished checkpoint: same weights
    again = tagger("pfn", epochs=2, checkpoint_dir=str(tmp_path / "ckpt")).fit(inputs, y3)
    np.testing.assert_array_equal(again.predict_proba(inputs), t.predict_proba(inputs))


# --------------------------------------------------------------------------------------
# bad input: one line, a FivesigmaError subclass


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    return msg


def test_mismatched_shapes_are_refused():
    inputs, y = toy(n=10)
    bad_v = dict(inputs, v=inputs["v"][:, :, :3])
    with pytest.raises(DataError) as err:
        tagger("pfn").fit(bad_v, y)
    assert "'v'" in one_line(err)
    bad_mask = dict(inputs, mask=inputs["mask"][:, :5])
    with pytest.raises(DataError) as err:
        tagger("pfn").fit(bad_mask, y)
    assert "'mask'" in one_line(err)
    with pytest.raises(DataError) as err:
        tagger("pfn").fit(inputs, y[:5])
    one_line(err)
    with pytest.raises(DataError) as err:
        tagger("pfn").fit({"x": inputs["x"], "mask": inputs["mask"]}, y)
    assert "'v'" in one_line(err)


def test_wrong_number_of_features_at_prediction_is_refused(fitted):
    inputs, _ = toy(n=4)
    with pytest.raises(DataError) as err:
        fitted["pfn"].predict_proba(dict(inputs, x=inputs["x"][..., :3]))
    assert "trained on 4" in one_line(err)


def test_mask_dtype_is_checked():
    inputs, y = toy(n=10)
    as_int = dict(inputs, mask=inputs["mask"].astype(np.uint8))
    assert check_inputs(as_int)[2].dtype == bool  # 0/1 integers are accepted
    for bad in (inputs["mask"] * 0.5, inputs["mask"].astype(str)):
        with pytest.raises(DataError) as err:
            tagger("pfn").fit(dict(inputs, mask=bad), y)
        assert "mask" in one_line(err) and "bool" in one_line(err)


def test_nan_in_real_particles_is_refused_but_ignored_in_padding():
    inputs, _ = toy(n=10)
    x = inputs["x"].copy()
    x[~inputs["mask"]] = np.nan
    assert np.isfinite(check_inputs(dict(inputs, x=x))[0]).all()
    x[0, 0, 0] = np.nan
    with pytest.raises(DataError) as err:
        check_inputs(dict(inputs, x=x))
    assert "NaN" in one_line(err)


def test_unknown_model_name_lists_the_accepted_ones():
    inputs, y = toy(n=10)
    with pytest.raises(ModelError) as err:
        JetTagger("particle_net", progress=False).fit(inputs, y)
    msg = one_line(err)
    assert all(name in msg for name in TAGGERS) and "did you mean 'particlenet'" in msg
    with pytest.raises(ModelError) as err:
        JetTagger("pfn", model_params={"hidden": (4,)}, progress=False).fit(inputs, y)
    assert "phi" in one_line(err)


def test_one_class_labels_are_refused():
    inputs, _ = toy(n=10)
    with pytest.raises(FivesigmaError) as err:
        tagger("pfn").fit(inputs, np.ones(10, dtype=int))
    assert "only class 1" in one_line(err)


def test_unfitted_and_wrong_bundles(tmp_path):
    with pytest.raises(ModelError) as err:
        JetTagger("pfn").predict_proba(toy(n=2)[0])
    one_line(err)
    from fivesigma.core.bundle import Bundle, save_bundle

    path = save_bundle(Bundle(kind="mlp"), tmp_path / "other")
    with pytest.raises(ModelError) as err:
        load(path)
    assert "jet_tagger" in one_line(err)


def test_device_errors_and_bundles_load_on_the_cpu(fitted, tmp_path):
    import torch

    from fivesigma.errors import ConfigError

    t = fitted["pfn"]
    inputs, y = toy(n=20, seed=3)
    back = load(t.save(tmp_path / "b"))
    assert back.device == "cpu"  # wherever it was trained
    if torch.cuda.is_available():
        back.device = "cuda"
        np.testing.assert_allclose(
            back.predict_proba(inputs), t.predict_proba(inputs), rtol=1e-4, atol=1e-5
        )
        assert not next(back.net_.parameters()).is_cuda  # moved back after predicting
    else:
        back.device = "cuda"
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            back.predict_proba(inputs)
        with pytest.raises(ModelError, match="jet tagger: device 'cuda'.*no CUDA GPU"):
            JetTagger(model="pfn", device="cuda", epochs=1, progress=False).fit(inputs, y)


@pytest.mark.parametrize(("name", "key"), [("particlenet", "norm"), ("part", "pair_norm")])
def test_bundles_from_before_the_masked_batch_norm_load_with_layer_norm(name, key, tmp_path):
    """Bundles written before ParticleNet and ParT had batch norms carry no ``norm`` /
    ``pair_norm`` field; they hold LayerNorm weights and must load as such."""
    import json

    inputs, y = toy(seed=5)
    old = tagger(name, epochs=2, model_params={**TINY[name], key: "layer"}).fit(inputs, y)
    path = old.save(tmp_path / name)
    manifest = json.loads((path / "manifest.json").read_text())
    config = manifest["training"]["network"]["config"]
    assert config.pop(key) == "layer"
    manifest.pop("checksum", None)  # those bundles also predate the manifest's own checksum
    (path / "manifest.json").write_text(json.dumps(manifest))
    back = load(path)
    assert getattr(back.network_config_, key) == "layer"
    np.testing.assert_array_equal(back.predict_proba(inputs), old.predict_proba(inputs))
    # a new bundle names its normalisation and keeps it
    new = tagger(name, epochs=1).fit(inputs, y)
    assert getattr(load(new.save(tmp_path / f"{name}_new")).network_config_, key) == "batch"


# --------------------------------------------------------------------------------------
# typed hyper-parameters


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"model": "particle_net"},
            "jet tagger model: expected one of cnn1d, pfn, particlenet, part",
        ),
        (
            {"model_params": {"phi": "64"}},
            "pfn model_params: phi must be a list of integers, got '64'",
        ),
        (
            {"model_params": {"phi": [8.7]}},
            "pfn model_params: phi must be a list of integers, got [8.7]",
        ),
        ({"model_params": {"phi": 64}}, "pfn model_params: phi must be a list of integers, got 64"),
        (
            {"model_params": {"dropout": True}},
            "pfn model_params: dropout must be a number, got True",
        ),
        (
            {"model_params": {"phi": [0]}},
            "pfn model_params: pfn phi must be a list of positive integers",
        ),
        (
            {"model_params": {"hidden": [4]}},
            "pfn model_params: unknown pfn hyper-parameter 'hidden'; accepted: phi",
        ),
        ({"model_params": [1, 2]}, "pfn model_params: expected null or a mapping"),
        ({"size": "large"}, "pfn size: expected one of default, paper, got 'large'"),
        (
            {"n_classes": 1},
            "pfn n_classes: expected an integer >= 2 or null (from the labels), got 1",
        ),
        ({"standardize": 1}, "pfn standardize: expected true or false, got 1"),
        ({"epochs": 2.5}, "pfn epochs: expected an integer >= 1, got 2.5"),
        (
            {"class_weight": {0: 0}},
            "pfn class_weight: expected null, 'balanced' or {class: factor}",
        ),
        ({"valid_fraction": 1}, "pfn valid_fraction: expected a number in [0, 1), got 1"),
        ({"device": "gpu"}, "pfn device: expected cpu, cuda, cuda:N or auto, got 'gpu'"),
    ],
)
def test_bad_tagger_parameters_are_one_line_errors_before_any_training(params, message):
    from fivesigma.estimators import make_estimator

    inputs, y = toy(n=10)
    model = params.pop("model", "pfn")
    with pytest.raises(ModelError) as err:
        JetTagger(model, progress=False, **params).fit(inputs, y)
    msg = one_line(err)
    assert msg.startswith(message), msg
    if model == "pfn":
        with pytest.raises(ModelError) as err:
            make_estimator("pfn", **params)
        assert one_line(err).startswith(message)


def test_tagger_parameters_from_a_bundle_or_yaml_pass():
    from fivesigma.estimators import make_estimator

    est = make_estimator(
        "particlenet",
        model_params={"k": 4, "conv": [[8, 8], (8,)], "fusion": None, "norm": "layer"},
        class_weight={"0": 1.0, "1": 2},
        size="paper",
        n_classes=3,
    )
    assert est.model_params["conv"] == [[8, 8], (8,)]  # kept as given


def _jets_config(tmp_path, extra: str):
    path = tmp_path / "jets.yaml"
    path.write_text(
        "version: 1\ntask: jets\npreset: quick\nbenchmark: top\n"
        f"{extra}\noutput: {{dir: {tmp_path / 'out'}}}\n"
    )
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "tagger_params: {pfn: {model_params: {phi: '64'}}}",
            "tagger_params.pfn: pfn model_params: phi must be a list of integers, got '64'",
        ),
        (
            "tagger_params: {particlenet: {epochs: 0}}",
            "tagger_params.particlenet: particlenet epochs: expected an integer >= 1, got 0",
        ),
        (
            "tagger_params: {bdt: {early_stopping_rounds: -1}}",
            "tagger_params.bdt: bdt early_stopping_rounds: expected an integer >= 1 or null",
        ),
        (
            "tagger_params: {part: {hidden: [8]}}",
            "tagger_params.part: unknown hyper-parameter 'hidden' for 'part' model",
        ),
        ("tagger_params: {pnf: {}}", "tagger_params: unknown tagger 'pnf'"),
    ],
)
def test_jets_config_check_and_run_refuse_bad_tagger_params_before_generating(
    tmp_path, capsys, monkeypatch, extra, message
):
    """The benchmark's tagger_params are checked with the taggers' schemas before any jet
    is generated: one line, exit 2, nothing written."""
    from fivesigma.cli import main
    from fivesigma.tasks.jets import benchmark

    def no_generation(*args, **kwargs):
        raise AssertionError("jets were generated or read")

    monkeypatch.setattr(benchmark, "load_task_jets", no_generation)
    config = _jets_config(tmp_path, extra)
    for argv in (["config", "--check", str(config)], ["run", str(config)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err, err
        assert "internal error" not in err
        assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
