"""Trigger model bundles: the QAT network, its input scaling, thresholds and firmware.

A bundle (kind ``trigger_model``) holds the QAT network's weights (safetensors), its
fixed-point types, the input preprocessing, the thresholds that meet each rate budget,
and the whole hls4ml project with its compiled emulation library, flattened into plain
file names (``firmware__<path with / as __>``).  :func:`load` gives a
:class:`TriggerModel` that scores L1 tables (or jet features) with the firmware when
the bundle has it, else with the numpy fixed-point reference (the same numbers).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.errors import ModelError

__all__ = ["TriggerModel", "load", "save"]

KIND = "trigger_model"
_SEP = "__"
_PREFIX = "firmware" + _SEP


def _pack(directory: Path) -> dict[str, bytes]:
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            rel = path.relative_to(directory).as_posix()
            if _SEP in rel:
                raise ModelError(f"firmware file name {rel!r} contains {_SEP!r}; cannot pack it")
            files[_PREFIX + rel.replace("/", _SEP)] = path.read_bytes()
    return files


def _unpack(files: dict[str, bytes], directory: Path) -> None:
    for name, data in files.items():
        if name.startswith(_PREFIX):
            target = directory / name[len(_PREFIX) :].replace(_SEP, "/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            if target.suffix == ".so":
                target.chmod(0o755)


def save(built: Any, path: str | os.PathLike, thresholds: dict[str, float]) -> Path:
    """Write ``built`` (a :class:`fivesigma.tasks.trigger.stages.Built`) as a bundle."""
    import tempfile

    from fivesigma.core.bundle import Bundle, save_bundle

    files: dict[str, bytes] = {}
    if built.firmware is not None:
        with tempfile.TemporaryDirectory() as tmp:
            built.firmware.save(Path(tmp) / "fw")
            files = _pack(Path(tmp) / "fw")
    arrays = {k: v.detach().cpu().numpy() for k, v in built.qat.state_dict().items()}
    bundle = Bundle(
        kind=KIND,
        params={
            "network": built.name,
            "spec": built.spec.to_dict(),
            "input_shape": list(built.input_shape),
        },
        preprocessing=built.preprocessing,
        arrays=arrays,
        files=files,
        metadata={"thresholds": thresholds},
    )
    return save_bundle(bundle, path)


@dataclass
class TriggerModel:
    """A loaded trigger network: ``score`` on prepared inputs, ``thresholds`` by budget."""

    network: str
    qat: Any
    spec: Any
    preprocessing: dict[str, Any]
    thresholds: dict[str, float]
    firmware: Any = None
    input_shape: tuple[int, ...] = field(default_factory=tuple)

    def inputs(self, table: Any) -> np.ndarray:
        """The network's inputs from an L1 table (``generate.l1.read``) or, for the jet
        tagger, a (n, 16) feature matrix."""
        pre = self.preprocessing
        if self.network == "axol1tl":
            from fivesigma.physics.l1 import axol1tl_inputs

            x = axol1tl_inputs(table)
        elif self.network == "cicada":
            from fivesigma.physics.l1 import cicada_inputs

            x = cicada_inputs(table).astype(np.float32) / 2 ** pre["region_shift"]
            return x[:, None, :, :]
        else:
            x = np.asarray(table, dtype=np.float64)
        std = pre["standardise"]
        return ((x - np.asarray(std["mean"])) / np.asarray(std["scale"])).astype(np.float32)

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """The network's raw outputs: the firmware when present, else the reference."""
        if self.firmware is not None:
            return self.firmware.predict(x)
        from fivesigma.export.fixed_point import FixedPointReference

        return FixedPointReference.from_model(self.qat).predict(x)

    def score(self, x: np.ndarray) -> np.ndarray:
        """The trigger score (AXOL1TL |mu|^2, CICADA output) or the tagger's logits."""
        out = self.outputs(x)
        if self.network == "axol1tl":
            return np.sum(out**2, axis=1)
        if self.network == "cicada":
            return out[:, 0]
        return out


def load(path: str | os.PathLike) -> TriggerModel:
    """Read a ``trigger_model`` bundle (the firmware unpacked into the cache once)."""
    import torch

    from fivesigma.core.bundle import load_bundle
    from fivesigma.export.fixed_point import FixedPoint
    from fivesigma.tasks.trigger import models as M

    b = load_bundle(path)
    if b.kind != KIND:
        raise ModelError(f"'{path}' is a {b.kind!r} bundle, not a trigger model")
    spec_d = b.params["spec"]
    spec = M.QuantSpec(
        spec_d["width"], spec_d["integer"], FixedPoint.parse(spec_d["input_type"]),
        spec_d.get("sparsity", 0.0),
    )  # fmt: skip
    network = b.params["network"]
    qat = M.BUILDERS[network](spec)
    qat.load_state_dict({k: torch.as_tensor(v) for k, v in b.arrays.items()})
    qat.eval()
    firmware = None
    fw_files = {k: v for k, v in b.files.items() if k.startswith(_PREFIX)}
    if fw_files:
        from fivesigma.core.files import atomic_dir
        from fivesigma.export.hls import Firmware
        from fivesigma.generate.cache import default_cache_dir

        digest = hashlib.sha256()
        for name in sorted(fw_files):
            digest.update(name.encode())
            digest.update(fw_files[name])
        target = default_cache_dir() / "hls-bundles" / digest.hexdigest()[:24]
        if not target.exists():
            with atomic_dir(target) as tmp:
                _unpack(fw_files, tmp)
        firmware = Firmware.load(target)
    return TriggerModel(
        network=network,
        qat=qat,
        spec=spec,
        preprocessing=b.preprocessing,
        thresholds=dict(b.metadata.get("thresholds", {})),
        firmware=firmware,
        input_shape=tuple(b.params["input_shape"]),
    )
