"""The learned surrogate: a Gaussian process with uncertainty on the oracle's log ratio.

scikit-learn fits the hyper-parameters (a constant times an anisotropic Matérn-5/2
kernel plus a white-noise term for the oracle's Monte Carlo error, targets standardised);
prediction is written out in numpy from the fitted arrays, so a bundle (training points,
``alpha``, the Cholesky factor, the kernel's numbers) predicts without scikit-learn and
exactly as the fitted model did.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.uniform(size=(30, 2)); y = np.sin(3 * x[:, 0]) + x[:, 1]
>>> gp = GPSurrogate(seed=0).fit(x, y)
>>> mean, std = gp.predict(np.array([[0.5, 0.5]]))
>>> bool(abs(mean[0] - (np.sin(1.5) + 0.5)) < 0.05), bool(std[0] < 0.05)
(True, True)
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from fivesigma.core import extras
from fivesigma.errors import ModelError

__all__ = ["GPSurrogate"]


def _matern52(a: np.ndarray, b: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Matérn-5/2 correlation between the rows of ``a`` (n, d) and ``b`` (m, d)."""
    diff = (a[:, None, :] - b[None, :, :]) / length  # (n, m, d)
    r = np.sqrt(np.sum(diff * diff, axis=-1))
    s = np.sqrt(5.0) * r
    return (1.0 + s + s * s / 3.0) * np.exp(-s)


class GPSurrogate:
    """Gaussian-process regression of the log ratio on the unit cube.

    Parameters
    ----------
    restarts : extra random starts of the hyper-parameter optimiser.
    noise : initial white-noise variance (of the standardised targets).
    seed : seed of the optimiser's restarts.
    """

    def __init__(self, restarts: int = 2, noise: float = 1e-4, seed: int = 0) -> None:
        self.restarts = restarts
        self.noise = noise
        self.seed = seed

    def fit(self, x: np.ndarray, y: np.ndarray) -> GPSurrogate:
        gp_module = extras.sklearn("gaussian_process")
        kernels = extras.sklearn("gaussian_process.kernels")
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        if x.ndim != 2 or len(x) != len(y) or len(x) < 2:
            raise ModelError(
                f"the surrogate needs >= 2 points (n, d), got x {x.shape}, y {y.shape}"
            )
        d = x.shape[1]
        kernel = kernels.ConstantKernel(1.0, (1e-3, 1e3)) * kernels.Matern(
            length_scale=np.full(d, 0.3), length_scale_bounds=(0.02, 20.0), nu=2.5
        ) + kernels.WhiteKernel(self.noise, (1e-8, 1e-1))
        gp = gp_module.GaussianProcessRegressor(
            kernel,
            normalize_y=True,
            n_restarts_optimizer=self.restarts,
            random_state=self.seed,
        )
        with warnings.catch_warnings():
            # hyper-parameters at a bound are expected on tiny training sets
            warnings.simplefilter("ignore")
            gp.fit(x, y)
        k = gp.kernel_
        self.x_ = x
        self.alpha_ = np.asarray(gp.alpha_, dtype=float).reshape(-1)
        self.chol_ = np.asarray(gp.L_, dtype=float)
        self.y_mean_ = float(np.ravel(gp._y_train_mean)[0])
        self.y_std_ = float(np.ravel(gp._y_train_std)[0])
        self.amplitude_ = float(k.k1.k1.constant_value)
        self.length_ = np.atleast_1d(np.asarray(k.k1.k2.length_scale, dtype=float))
        self.noise_ = float(k.k2.noise_level)
        return self

    def predict(self, x: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the latent function (no oracle noise) at ``x``."""
        from scipy.linalg import solve_triangular

        x = np.asarray(x, dtype=float)
        means, stds = [], []
        for start in range(0, len(x), chunk):
            xs = x[start : start + chunk]
            k_star = self.amplitude_ * _matern52(xs, self.x_, self.length_)  # (m, n)
            mean = k_star @ self.alpha_
            v = solve_triangular(self.chol_, k_star.T, lower=True)  # (n, m)
            var = np.clip(self.amplitude_ - np.sum(v * v, axis=0), 1e-12, None)
            means.append(mean * self.y_std_ + self.y_mean_)
            stds.append(np.sqrt(var) * self.y_std_)
        return np.concatenate(means), np.concatenate(stds)

    # -- bundles ------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "x": self.x_.astype(np.float64),
            "alpha": self.alpha_.astype(np.float64),
            "chol": self.chol_.astype(np.float64),
            "length": self.length_.astype(np.float64),
        }

    def params(self) -> dict[str, Any]:
        return {
            "y_mean": self.y_mean_,
            "y_std": self.y_std_,
            "amplitude": self.amplitude_,
            "noise": self.noise_,
            "kernel": "amplitude * Matern(nu=2.5, anisotropic) + white noise",
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], params: dict[str, Any]) -> GPSurrogate:
        try:
            gp = cls()
            gp.x_ = np.asarray(arrays["x"], dtype=float)
            gp.alpha_ = np.asarray(arrays["alpha"], dtype=float)
            gp.chol_ = np.asarray(arrays["chol"], dtype=float)
            gp.length_ = np.asarray(arrays["length"], dtype=float)
            gp.y_mean_ = float(params["y_mean"])
            gp.y_std_ = float(params["y_std"])
            gp.amplitude_ = float(params["amplitude"])
            gp.noise_ = float(params["noise"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"the surrogate bundle is incomplete ({exc})") from None
        n, d = gp.x_.shape
        if gp.alpha_.shape != (n,) or gp.chol_.shape != (n, n) or gp.length_.shape != (d,):
            raise ModelError("the surrogate bundle's arrays have inconsistent shapes")
        return gp
