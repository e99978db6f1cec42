"""Model bundles: a trained model as a directory that can be shared and re-applied safely.

A bundle is a directory::

    model-name/
      manifest.json        format, version, kind, features, preprocessing, config, versions,
                           data fingerprint, and the SHA-256 of every other file
      arrays.safetensors   named numpy arrays (network weights, scaler parameters, ...)
      <native files>       e.g. ``booster.json`` for xgboost, in the library's own format

Nothing is ever unpickled: arrays go through safetensors, everything else is JSON or a
library's native text format.  Bundles are written atomically (temporary directory, then
rename), so an interrupted save never leaves a bundle that looks complete.

>>> import numpy as np, tempfile, pathlib
>>> b = Bundle(kind="demo", features=["x"], arrays={"w": np.ones(3, dtype=np.float32)})
>>> path = save_bundle(b, pathlib.Path(tempfile.mkdtemp()) / "demo")
>>> load_bundle(path).arrays["w"].tolist()
[1.0, 1.0, 1.0]
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma import __version__
from fivesigma.core import extras
from fivesigma.core.files import atomic_dir
from fivesigma.errors import ModelError, describe_exception

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "Bundle",
    "bundle_kind",
    "data_fingerprint",
    "library_versions",
    "load_bundle",
    "save_bundle",
]

BUNDLE_FORMAT = "fivesigma-model-bundle"
BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
ARRAYS = "arrays.safetensors"

_TRACKED_LIBRARIES = (
    "numpy",
    "awkward",
    "uproot",
    "torch",
    "xgboost-cpu",
    "xgboost",
    "scikit-learn",
    "onnx",
)


@dataclass
class Bundle:
    """Everything needed to re-create a trained model and reproduce its preprocessing.

    Attributes
    ----------
    kind : registry name of the estimator, e.g. ``"mlp"``, ``"bdt"``, ``"logistic"``.
    params : the estimator's hyper-parameters (JSON-serialisable).
    features : input feature names, in the order the model expects them.
    preprocessing : JSON-serialisable preprocessing description (scaler type, padding, ...).
    data : how features are made from files: derived expressions, selection, fingerprint.
    training : training config, history, seed.
    arrays : named numpy arrays, stored with safetensors.
    files : extra files in native formats, name -> bytes (e.g. an xgboost JSON model).
    metadata : anything else worth keeping (metrics, provenance of the training data).
    """

    kind: str
    features: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


def library_versions() -> dict[str, str]:
    """Versions of Python, fivesigma and the numerical libraries that are installed."""
    out = {"python": platform.python_version(), "fivesigma": __version__}
    for name in _TRACKED_LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def data_fingerprint(*arrays: np.ndarray) -> str:
    """A short SHA-256 over array contents, to tell later which data a model saw."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_name(name: str) -> None:
    if (
        not name
        or "/" in name
        or "\\" in name
        or name.startswith(".")
        or name in (MANIFEST, ARRAYS)
    ):
        raise ModelError(
            f"bundle file name {name!r} is not allowed (plain names only, not {MANIFEST}/{ARRAYS})"
        )


def _manifest_digest(manifest: dict[str, Any]) -> str:
    """SHA-256 of the manifest's content, the ``checksum`` field left out (canonical JSON)."""
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return _sha256(json.dumps(body, sort_keys=True, allow_nan=True).encode())


#: manifest fields and the JSON type each must have: an edited manifest of the wrong
#: shape is refused with one line instead of failing somewhere inside a model
_FIELD_TYPES: dict[str, tuple[type, str]] = {
    "kind": (str, "string"),
    "features": (list, "array"),
    "params": (dict, "object"),
    "preprocessing": (dict, "object"),
    "data": (dict, "object"),
    "training": (dict, "object"),
    "metadata": (dict, "object"),
    "files": (dict, "object"),
    "arrays": (dict, "object"),
    "versions": (dict, "object"),
}


def _check_manifest_types(path: Path, manifest: dict[str, Any]) -> None:
    for key, (expected, json_name) in _FIELD_TYPES.items():
        if key in manifest and not isinstance(manifest[key], expected):
            raise ModelError(
                f"model bundle '{path}': manifest field {key!r} must be a JSON {json_name}, "
                f"got {type(manifest[key]).__name__}"
            )
    if not all(isinstance(f, str) for f in manifest.get("features", [])):
        raise ModelError(f"model bundle '{path}': manifest 'features' must be a list of names")
    if not all(isinstance(d, str) for d in manifest.get("files", {}).values()):
        raise ModelError(f"model bundle '{path}': manifest 'files' checksums must be strings")


def save_bundle(bundle: Bundle, path: str | Path, overwrite: bool = True) -> Path:
    """Write ``bundle`` to the directory ``path`` atomically and return the path."""
    st_save = extras.safetensors("numpy").save

    path = Path(path)
    arrays = {k: np.ascontiguousarray(v) for k, v in bundle.arrays.items()}
    payload: dict[str, bytes] = {}
    if arrays:
        payload[ARRAYS] = st_save(arrays)
    for name, content in bundle.files.items():
        _check_name(name)
        payload[name] = content
    manifest = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "kind": bundle.kind,
        "features": list(bundle.features),
        "params": bundle.params,
        "preprocessing": bundle.preprocessing,
        "data": bundle.data,
        "training": bundle.training,
        "metadata": bundle.metadata,
        "arrays": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in arrays.items()},
        "files": {name: _sha256(content) for name, content in payload.items()},
        "versions": library_versions(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv[:1]),
    }
    try:
        manifest["checksum"] = _manifest_digest(manifest)
        text = json.dumps(manifest, indent=2, sort_keys=False, allow_nan=True)
    except TypeError as err:
        raise ModelError(f"bundle '{path}': manifest is not JSON-serialisable: {err}") from None
    with atomic_dir(path, overwrite=overwrite) as tmp:
        for name, content in payload.items():
            (tmp / name).write_bytes(content)
        (tmp / MANIFEST).write_text(text)
    return path


def bundle_kind(path: str | Path) -> str:
    """The ``kind`` recorded in a bundle's manifest (checks only that it is a bundle)."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        raise ModelError(
            f"model bundle '{path}' does not exist"
            if not path.exists()
            else f"'{path}' is not a fivesigma model bundle (no {MANIFEST})"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"model bundle '{path}': {MANIFEST} is unreadable: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise ModelError(
            f"'{path}' is not a fivesigma model bundle (format is not {BUNDLE_FORMAT!r})"
        )
    return str(manifest.get("kind", ""))


def load_bundle(path: str | Path) -> Bundle:
    """Read a bundle directory, verifying its format, version and file checksums."""
    st_load = extras.safetensors("numpy").load

    path = Path(path)
    mpath = path / MANIFEST
    if not path.exists():
        raise ModelError(f"model bundle '{path}' does not exist")
    if not mpath.is_file():
        raise ModelError(f"'{path}' is not a fivesigma model bundle (no {MANIFEST})")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"model bundle '{path}': {MANIFEST} is unreadable: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise ModelError(
            f"'{path}' is not a fivesigma model bundle (format is not {BUNDLE_FORMAT!r})"
        )
    version = manifest.get("format_version")
    if version != BUNDLE_VERSION:
        raise ModelError(
            f"model bundle '{path}' has format version {version}; this fivesigma reads version {BUNDLE_VERSION}"
        )
    # Bundles written before manifests carried their own checksum have none; every bundle
    # written now has one, and an edited manifest (feature order, parameters) is refused.
    if "checksum" in manifest and manifest["checksum"] != _manifest_digest(manifest):
        raise ModelError(
            f"model bundle '{path}' is corrupt: {MANIFEST} was edited after the bundle was "
            "written (its checksum does not match); retrain or restore the bundle"
        )
    _check_manifest_types(path, manifest)
    payload: dict[str, bytes] = {}
    for name, digest in manifest.get("files", {}).items():
        if name != ARRAYS:
            _check_name(name)
        fpath = path / name
        try:
            content = fpath.read_bytes()
        except OSError:
            raise ModelError(f"model bundle '{path}' is incomplete: missing {name}") from None
        if _sha256(content) != digest:
            raise ModelError(
                f"model bundle '{path}' is corrupt: checksum of {name} does not match the manifest"
            )
        payload[name] = content
    try:
        arrays = st_load(payload.pop(ARRAYS)) if ARRAYS in payload else {}
    except Exception as err:  # safetensors' own error types
        raise ModelError(
            f"model bundle '{path}' is corrupt: {ARRAYS} cannot be read "
            f"({describe_exception(err)}); retrain or restore the bundle"
        ) from None
    return Bundle(
        kind=manifest["kind"],
        features=list(manifest.get("features", [])),
        params=manifest.get("params", {}),
        preprocessing=manifest.get("preprocessing", {}),
        data=manifest.get("data", {}),
        training=manifest.get("training", {}),
        arrays=dict(arrays),
        files=payload,
        metadata=manifest.get("metadata", {}) | {"versions": manifest.get("versions", {})},
    )
