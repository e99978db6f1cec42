"""The agent's policy as a bundle (``design_policy``): the deterministic actor's weights
(safetensors), the observation it reads and the threshold map it drives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.core.bundle import Bundle, load_bundle, save_bundle
from fivesigma.errors import ModelError
from fivesigma.tasks.design.agents import NumpyPolicy
from fivesigma.tasks.design.env import ThresholdMap

__all__ = ["TriggerPolicy", "load", "save"]

KIND = "design_policy"


class TriggerPolicy:
    """Thresholds (GeV) of the K seeds from the pile-up and the fill phase."""

    def __init__(
        self,
        policy: NumpyPolicy,
        bmap: ThresholdMap,
        mu_scale: float,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.policy, self.map, self.mu_scale = policy, bmap, float(mu_scale)
        self.info = info or {}

    @property
    def seeds(self) -> list[str]:
        return list(self.map.names)

    def thresholds(self, mu: np.ndarray, phase: np.ndarray) -> np.ndarray:
        """(n, K) thresholds for n (pile-up, fill phase in [0, 1)) pairs."""
        mu, phase = np.atleast_1d(mu).astype(float), np.atleast_1d(phase).astype(float)
        obs = np.stack([mu / self.mu_scale, phase], axis=1)
        return np.array([self.map.thresholds(self.policy(o)) for o in obs]).reshape(-1, self.map.k)


def save(
    policy: NumpyPolicy, bmap: ThresholdMap, mu_scale: float, path: Path, metadata: dict[str, Any]
) -> Path:
    bounds = {
        k: [float(np.exp(lo)), float(np.exp(hi))]
        for k, lo, hi in zip(bmap.names, bmap.log_lo, bmap.log_hi, strict=True)
    }
    bundle = Bundle(
        kind=KIND,
        features=["mu / mu_scale", "fill phase"],
        params={"activation": policy.activation, "squash": policy.squash, **policy.info},
        preprocessing={
            "mu_scale": mu_scale,
            "bounds": bounds,
            "centre": None if bmap.centre is None else bmap.centre.tolist(),
            "width": bmap.width,
        },
        arrays=policy.arrays(),
        metadata=metadata,
    )
    return save_bundle(bundle, path)


def load(path: str | Path) -> TriggerPolicy:
    b = load_bundle(path)
    if b.kind != KIND:
        raise ModelError(f"'{path}' is a {b.kind!r} bundle, not a {KIND!r} bundle")
    pre = b.preprocessing
    policy = NumpyPolicy.from_arrays(b.arrays, b.params["activation"], b.params["squash"])
    bounds = {k: (float(v[0]), float(v[1])) for k, v in pre["bounds"].items()}
    centre = pre.get("centre")
    bmap = ThresholdMap(bounds, None if centre is None else np.asarray(centre), pre["width"])
    return TriggerPolicy(policy, bmap, pre["mu_scale"], b.metadata)
