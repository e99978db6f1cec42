"""The surrogate bundle (kind ``scan_surrogate``): the final Gaussian process of a scan
with its parameter space, oracle and limit, loadable without scikit-learn.

>>> import numpy as np, tempfile, pathlib
>>> from fivesigma.tasks.scan.surrogate import GPSurrogate
>>> from fivesigma.tasks.scan.search import Space
>>> space = Space(("mass", "g_quark"), (500.0, 0.01), (6000.0, 3.0))
>>> u = np.random.default_rng(1).uniform(size=(20, 2))
>>> gp = GPSurrogate(seed=0).fit(u, u[:, 0] - u[:, 1])
>>> path = save(gp, space, pathlib.Path(tempfile.mkdtemp()) / "surrogate", {"oracle_calls": 20})
>>> model = load(path)
>>> mean, std = model.predict({"mass": [2000.0], "g_quark": [0.1]})
>>> bool(np.allclose(mean, gp.predict(space.to_unit([[2000.0, 0.1]]))[0]))
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.core.bundle import Bundle, load_bundle, save_bundle
from fivesigma.errors import DataError, ModelError
from fivesigma.tasks.scan.search import Space
from fivesigma.tasks.scan.surrogate import GPSurrogate

__all__ = ["KIND", "ScanSurrogate", "load", "save"]

KIND = "scan_surrogate"


@dataclass
class ScanSurrogate:
    """A loaded surrogate: ``predict`` the log ratio ln(σ × BR / σB_lim) of points."""

    gp: GPSurrogate
    space: Space
    metadata: dict[str, Any]

    @property
    def features(self) -> list[str]:
        return list(self.space.names)

    def predict(self, points: Mapping[str, Any] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the log ratio at ``points`` (a mapping of the
        scanned parameters' arrays, or an (n, 2) array in that order, physical units)."""
        if isinstance(points, Mapping):
            missing = [n for n in self.space.names if n not in points]
            if missing:
                raise DataError(
                    f"points lack the scanned parameter(s) {', '.join(missing)}; "
                    f"the surrogate needs {', '.join(self.space.names)}"
                )
            x = np.stack([np.asarray(points[n], dtype=float) for n in self.space.names], axis=1)
        else:
            x = np.atleast_2d(np.asarray(points, dtype=float))
        if x.shape[1] != self.space.dim:
            raise DataError(f"points must have {self.space.dim} columns, got {x.shape[1]}")
        lo, hi = np.array(self.space.low), np.array(self.space.high)
        if not np.all(np.isfinite(x)) or np.any(x < lo * (1 - 1e-9)) or np.any(x > hi * (1 + 1e-9)):
            ranges = ", ".join(
                f"{n} [{a:g}, {b:g}]" for n, a, b in zip(self.space.names, lo, hi, strict=True)
            )
            raise DataError(
                f"points outside the scanned region ({ranges}); the surrogate does not extrapolate"
            )
        return self.gp.predict(self.space.to_unit(x))


def save(gp: GPSurrogate, space: Space, path: Path, metadata: dict[str, Any]) -> Path:
    bundle = Bundle(
        kind=KIND,
        features=list(space.names),
        params=gp.params(),
        preprocessing={
            "space": {
                "names": list(space.names),
                "low": list(space.low),
                "high": list(space.high),
            },
            "unit": "u = (ln x - ln low) / (ln high - ln low) per axis",
            "target": "ln(sigma x BR / expected limit); > 0: excluded",
        },
        arrays=gp.arrays(),
        metadata=metadata,
    )
    return save_bundle(bundle, path)


def load(path: str | Path) -> ScanSurrogate:
    b = load_bundle(Path(path))
    if b.kind != KIND:
        raise ModelError(f"'{path}' is a {b.kind!r} bundle, not a {KIND!r} one")
    try:
        sp = b.preprocessing["space"]
        space = Space(
            tuple(sp["names"]), tuple(map(float, sp["low"])), tuple(map(float, sp["high"]))
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"'{path}': the surrogate bundle has no valid space ({exc})") from None
    return ScanSurrogate(GPSurrogate.from_arrays(b.arrays, b.params), space, dict(b.metadata))
