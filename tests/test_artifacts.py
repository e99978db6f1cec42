"""Model bundles: round trip, integrity checks, atomic writes, no pickle."""

import json
import re

import numpy as np
import pytest

from fivesigma.core.bundle import ARRAYS, Bundle, data_fingerprint, load_bundle, save_bundle
from fivesigma.errors import ModelError

BOOSTER = "booster.json"


def _bundle() -> Bundle:
    rng = np.random.default_rng(0)
    return Bundle(
        kind="mlp",
        features=["m4l", "mZ1"],
        params={"hidden": [16, 16]},
        preprocessing={"scaler": "standard"},
        arrays={"w0": rng.normal(size=(2, 16)).astype(np.float32), "mean": np.array([125.0, 91.0])},
        files={"booster.json": b'{"x": 1}'},
        metadata={"auc": 0.9},
    )


def test_round_trip_preserves_arrays_files_and_manifest(tmp_path):
    b = _bundle()
    path = save_bundle(b, tmp_path / "model")
    back = load_bundle(path)
    assert back.kind == "mlp"
    assert back.features == ["m4l", "mZ1"]
    assert back.params == {"hidden": [16, 16]}
    np.testing.assert_array_equal(back.arrays["w0"], b.arrays["w0"])
    assert back.arrays["mean"].dtype == np.float64
    assert back.files["booster.json"] == b'{"x": 1}'
    manifest = json.loads((path / "manifest.json").read_text())
    assert "numpy" in manifest["versions"] and manifest["format_version"] == 1


def test_no_pickle_files_are_written(tmp_path):
    path = save_bundle(_bundle(), tmp_path / "model")
    names = sorted(p.name for p in path.iterdir())
    assert names == ["arrays.safetensors", "booster.json", "manifest.json"]
    for p in path.iterdir():
        assert not p.read_bytes().startswith(b"\x80"), f"{p.name} looks like a pickle"


def test_tampered_file_is_rejected(tmp_path):
    path = save_bundle(_bundle(), tmp_path / "model")
    (path / "booster.json").write_bytes(b'{"x": 2}')
    with pytest.raises(ModelError, match="checksum of booster.json"):
        load_bundle(path)


def test_missing_file_and_missing_bundle(tmp_path):
    path = save_bundle(_bundle(), tmp_path / "model")
    (path / "arrays.safetensors").unlink()
    with pytest.raises(ModelError, match="incomplete: missing arrays.safetensors"):
        load_bundle(path)
    with pytest.raises(ModelError, match="does not exist"):
        load_bundle(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ModelError, match="not a fivesigma model bundle"):
        load_bundle(tmp_path / "plain")


def test_future_format_version_is_refused(tmp_path):
    path = save_bundle(_bundle(), tmp_path / "model")
    m = json.loads((path / "manifest.json").read_text())
    m["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelError, match="format version 99"):
        load_bundle(path)


def test_failed_save_leaves_previous_bundle_intact(tmp_path):
    path = save_bundle(_bundle(), tmp_path / "model")
    bad = _bundle()
    bad.metadata = {"not_json": object()}
    with pytest.raises(ModelError, match="not JSON-serialisable"):
        save_bundle(bad, path)
    assert load_bundle(path).metadata["auc"] == 0.9
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_bad_extra_file_name_is_refused(tmp_path):
    b = _bundle()
    b.files = {"../evil": b"x"}
    with pytest.raises(ModelError, match="not allowed"):
        save_bundle(b, tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_data_fingerprint_changes_with_content():
    a = np.arange(10.0)
    assert data_fingerprint(a) == data_fingerprint(a.copy())
    assert data_fingerprint(a) != data_fingerprint(a + 1)
    assert data_fingerprint(a) != data_fingerprint(a.astype(np.float32))


def test_outputs_get_normal_permissions(tmp_path):
    import os

    from fivesigma.core.files import atomic_file

    old = os.umask(0o022)
    try:
        path = save_bundle(_bundle(), tmp_path / "model")
        with atomic_file(tmp_path / "x.json") as tmp:
            tmp.write_text("{}")
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o755
    assert ((tmp_path / "x.json").stat().st_mode & 0o777) == 0o644


def _edit_manifest(path, edit) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    edit(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_an_edited_manifest_is_refused(tmp_path):
    """Swapping the feature order would silently give wrong scores: the manifest is checksummed."""
    path = save_bundle(Bundle(kind="demo", features=["a", "b"]), tmp_path / "b")
    _edit_manifest(path, lambda m: m.update(features=["b", "a"]))
    with pytest.raises(ModelError, match="manifest.json was edited") as err:
        load_bundle(path)
    assert "\n" not in str(err.value)


def test_a_bundle_without_a_manifest_checksum_still_loads(tmp_path):
    """Bundles written before the manifest carried its own checksum keep working."""
    path = save_bundle(Bundle(kind="demo", features=["a"]), tmp_path / "b")
    _edit_manifest(path, lambda m: m.pop("checksum"))
    assert load_bundle(path).features == ["a"]


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("features", "a,b", "'features' must be a JSON array"),
        ("params", [1], "'params' must be a JSON object"),
        ("features", [1, 2], "list of names"),
        ("kind", 5, "'kind' must be a JSON string"),
    ],
)
def test_manifest_fields_of_the_wrong_type_are_one_line(tmp_path, field, value, match):
    path = save_bundle(Bundle(kind="demo", features=["a"]), tmp_path / "b")

    def edit(m):
        m[field] = value
        m.pop("checksum")  # as if written by hand without one

    _edit_manifest(path, edit)
    with pytest.raises(ModelError, match=match):
        load_bundle(path)


# --------------------------------------------------------------------------------------
# damaged files whose checksums were recomputed (so the checksum passes): one line naming
# the bundle and the file, never the reader's own error


def _recompute_checksums(path) -> None:
    """Make the manifest agree with the files as they are now (as a careless copy or a
    hand edit would)."""
    import hashlib

    from fivesigma.core.bundle import _manifest_digest

    manifest = json.loads((path / "manifest.json").read_text())
    for name in manifest["files"]:
        manifest["files"][name] = hashlib.sha256((path / name).read_bytes()).hexdigest()
    manifest["checksum"] = _manifest_digest(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def _fitted(kind: str, **params):
    from fivesigma.estimators import make_estimator

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    y = (X[:, 0] + 0.5 * rng.normal(size=120) > 0).astype(int)
    fast = {
        "mlp": {"hidden": (8,), "epochs": 1, "progress": False, "num_threads": 1},
        "bdt": {"n_estimators": 5, "n_jobs": 1},
        "logistic": {},
    }
    return make_estimator(kind, **{**fast[kind], **params}).fit(X, y)


def _one_line_load_error(path) -> str:
    from fivesigma.estimators import load

    with pytest.raises(ModelError) as err:
        load(path)
    msg = str(err.value)
    assert msg and "\n" not in msg, repr(msg)
    assert f"model bundle '{path}'" in msg, msg
    return msg


@pytest.mark.parametrize("damage", ["truncated", "garbage", "zeros"])
@pytest.mark.parametrize(
    ("kind", "name"), [("mlp", ARRAYS), ("logistic", ARRAYS), ("bdt", BOOSTER)]
)
def test_a_corrupt_file_with_a_recomputed_checksum_is_one_line(tmp_path, kind, name, damage):
    path = _fitted(kind).save(tmp_path / kind)
    data = (path / name).read_bytes()
    damaged = {
        "truncated": data[: len(data) // 2],
        "garbage": b"\x00garbage" + data[20:],
        "zeros": bytes(len(data)),
    }[damage]
    (path / name).write_bytes(damaged)
    _recompute_checksums(path)
    msg = _one_line_load_error(path)
    assert name in msg and "corrupt" in msg
    assert "Stack trace" not in msg and "[bt]" not in msg


def test_arrays_of_the_wrong_shape_for_the_network_are_one_line(tmp_path):
    """A valid safetensors file holding weights of another network (hidden 16, not 8)."""
    path = _fitted("mlp", hidden=(8,)).save(tmp_path / "small")
    other = _fitted("mlp", hidden=(16,)).save(tmp_path / "wide")
    (path / ARRAYS).write_bytes((other / ARRAYS).read_bytes())
    _recompute_checksums(path)
    msg = _one_line_load_error(path)
    assert ARRAYS in msg and "do not match the mlp network" in msg and "size mismatch" in msg


def test_logistic_arrays_missing_or_of_the_wrong_shape_are_one_line(tmp_path):
    from fivesigma.core import extras

    save = extras.safetensors("numpy").save
    path = _fitted("logistic").save(tmp_path / "lr")
    for arrays, match in (
        ({"coef": np.zeros((1, 3)), "mean": np.zeros(3)}, "'intercept' .*missing"),
        ({"coef": np.zeros((1, 5)), "intercept": np.zeros(1)}, r"'coef' \(float \(1, 3\) expected"),
    ):
        (path / ARRAYS).write_bytes(save(arrays))
        _recompute_checksums(path)
        assert re.search(match, _one_line_load_error(path))


def test_a_booster_over_other_features_is_one_line(tmp_path):
    path = _fitted("bdt").save(tmp_path / "bdt")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["features"] = ["a", "b"]  # the trees use three
    (path / "manifest.json").write_text(json.dumps(manifest))
    _recompute_checksums(path)
    msg = _one_line_load_error(path)
    assert BOOSTER in msg and "3 features" in msg


@pytest.mark.parametrize(("kind", "name"), [("mlp", ARRAYS), ("bdt", BOOSTER)])
def test_fivesigma_apply_with_a_corrupt_bundle_is_one_line(tmp_path, capsys, kind, name):
    from fivesigma.cli import main

    path = _fitted(kind).save(tmp_path / kind)
    data = (path / name).read_bytes()
    (path / name).write_bytes(data[: len(data) // 2])
    _recompute_checksums(path)
    (tmp_path / "events.csv").write_text("x0,x1,x2\n1,2,3\n")
    out = tmp_path / "scored.parquet"
    assert main(["apply", str(path), str(tmp_path / "events.csv"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "internal error" not in err and len(err.strip().splitlines()) == 1, err
    assert f"model bundle '{path}' is corrupt" in err and name in err
    assert not out.exists()


def test_load_bundle_refuses_unreadable_arrays_even_with_a_matching_checksum(tmp_path):
    import hashlib

    path = save_bundle(Bundle(kind="demo", arrays={"w": np.ones(3)}), tmp_path / "b")
    (path / "arrays.safetensors").write_bytes(b"\x00" * 16)

    def rehash(m):
        m["files"]["arrays.safetensors"] = hashlib.sha256(b"\x00" * 16).hexdigest()
        m.pop("checksum")

    _edit_manifest(path, rehash)
    with pytest.raises(ModelError, match="arrays.safetensors cannot be read") as err:
        load_bundle(path)
    assert "\n" not in str(err.value)
