"""The fastsim generators on toys with a known conditional density; preprocessing; bundles."""

from __future__ import annotations

import numpy as np
import pytest

from fivesigma.errors import ModelError

pytest.importorskip("torch")

from fivesigma.tasks.fastsim.models import (
    GeneratorSettings,
    Preprocessing,
    Surrogate,
    load_surrogate,
)


def _toy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x | c ~ N(2 c, 0.5^2), c ~ U(-1, 1)."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(-1, 1, (n, 1))
    return c, 2 * c + 0.5 * rng.standard_normal((n, 1))


def _pre() -> Preprocessing:
    return Preprocessing(outputs=[["x", "identity", None]], conditions=[["c", "identity"]])


def _check_toy(sur: Surrogate, mean_tol: float, std_tol: float) -> None:
    for c0 in (-0.5, 0.5):
        x = sur.sample(np.full((4000, 1), c0), seed=1)[:, 0]
        assert x.mean() == pytest.approx(2 * c0, abs=mean_tol)
        assert x.std() == pytest.approx(0.5, abs=std_tol)


def test_preprocessing_round_trip() -> None:
    rng = np.random.default_rng(0)
    cond = np.column_stack(
        [rng.uniform(100, 500, 50), rng.uniform(-2, 2, 50), rng.integers(0, 4, 50)]
    )
    out = np.column_stack(
        [cond[:, 0] * rng.uniform(0.8, 1.2, 50), rng.uniform(-3, 3, 50), rng.integers(1, 60, 50)]
    )
    pre = Preprocessing(
        outputs=[["pt", "logratio", "pt_gen"], ["phi", "dphi", "phi_gen"], ["n", "count", None]],
        conditions=[["pt_gen", "log"], ["phi_gen", "identity"], ["flavour", "onehot:4"]],
    ).fit(cond, out)
    z = pre.outputs_z(out, cond, seed=3)
    back = pre.decode(z, cond)
    np.testing.assert_allclose(back[:, 0], out[:, 0], rtol=1e-9)
    d = (back[:, 1] - out[:, 1] + np.pi) % (2 * np.pi) - np.pi
    np.testing.assert_allclose(d, 0, atol=1e-9)
    np.testing.assert_array_equal(back[:, 2], out[:, 2])  # dequantisation undone by floor
    assert pre.conditions_z(cond).shape == (50, 2 + 4)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["flow", "flow_matching"])
def test_generators_learn_a_conditional_gaussian(model: str) -> None:
    c, x = _toy(6000, 1)
    s = GeneratorSettings(epochs=15, batch_size=256, hidden=[64, 64], seed=0, ode_steps=8)
    sur = Surrogate.fit(model, _pre(), c, x, s)
    _check_toy(sur, 0.08, 0.08)


@pytest.mark.slow
def test_gan_learns_the_mean() -> None:
    c, x = _toy(6000, 2)
    s = GeneratorSettings(epochs=1, gan_epochs=30, batch_size=128, hidden=[64, 64], seed=0)
    sur = Surrogate.fit("gan", _pre(), c, x, s)
    for c0 in (-0.5, 0.5):
        xs = sur.sample(np.full((3000, 1), c0), seed=1)[:, 0]
        assert xs.mean() == pytest.approx(2 * c0, abs=0.2)


def test_bundle_round_trip_and_nan(tmp_path, monkeypatch) -> None:
    c, x = _toy(400, 3)
    s = GeneratorSettings(epochs=1, batch_size=128, hidden=[16], seed=0, ode_steps=2)
    sur = Surrogate.fit("flow_matching", _pre(), c, x, s)
    path = sur.save(tmp_path / "b")
    again = load_surrogate(path)
    np.testing.assert_allclose(again.sample(c[:50], seed=4), sur.sample(c[:50], seed=4))
    monkeypatch.setattr(
        Surrogate, "sample_z", lambda self, zc, seed=0: np.full((len(zc), 1), np.nan)
    )
    with pytest.raises(ModelError, match="non-finite values for 50 of 50"):
        sur.sample(c[:50])


def test_unknown_model() -> None:
    c, x = _toy(100, 4)
    with pytest.raises(ModelError, match="accepted: flow, flow_matching, gan"):
        Surrogate.fit("vae", _pre(), c, x, GeneratorSettings())
