"""Model bundles: round trip, integrity checks, atomic writes, no pickle."""

import json

import numpy as np
import pytest

from fivesigma.core.bundle import Bundle, data_fingerprint, load_bundle, save_bundle
from fivesigma.errors import ModelError


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
