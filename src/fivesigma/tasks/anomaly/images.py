"""Jet images and the autoencoder asymmetry (trained on QCD an autoencoder tags tops,
trained on tops it does not tag QCD: arXiv:2104.09051, Heimel et al. 2019).

:func:`jet_images` applies the standard preprocessing of Macaluso & Shih (2018) and
Kasieczka et al. (2017) to the constituents of each jet:

1. pT, pseudorapidity eta and azimuth phi of every constituent (pT > 0);
2. centre on the pT-weighted centroid in (eta, phi) (phi unwrapped around the leading
   constituent, so jets across phi = +-pi stay whole);
3. rotate so that the principal axis of the pT-weighted (eta, phi) covariance is
   vertical (the image's first axis);
4. flip each axis so that the half with the larger pT sum is the positive one;
5. pixel = sum of the pT of the constituents inside it (those outside the square
   ``[-radius, radius]^2`` are left out), then divide by the image's sum (unit sum).

``image[j, i, k]``: jet ``j``, row ``i`` along the rotated vertical axis (increasing
upwards, the principal axis), column ``k`` along the rotated horizontal axis.

>>> import numpy as np
>>> px = np.array([[100.0, 50.0, 0.0]]); py = np.array([[0.0, 5.0, 0.0]])
>>> pz = np.array([[0.0, 10.0, 0.0]]); e = np.hypot(np.hypot(px, py), pz)
>>> img = jet_images(px, py, pz, e, npix=10, radius=0.8)
>>> img.shape, float(img.sum())
((1, 10, 10), 1.0)
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from fivesigma.errors import DataError, ModelError
from fivesigma.tasks.anomaly.methods import (
    AnomalySample,
    AutoencoderMethod,
    MethodSettings,
)

__all__ = ["ImageAutoencoder", "autoencoder_asymmetry", "jet_images"]


def _flat(values: Any, name: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Constituent values as one flat float64 array, the jet index of each, and the number
    of jets: from a padded (jets, constituents) array or a jagged awkward array."""
    if type(values).__module__.startswith("awkward"):
        import awkward as ak

        counts = np.asarray(ak.num(values, axis=1), dtype=np.int64)
        flat = np.asarray(ak.to_numpy(ak.flatten(values, axis=1)), dtype=np.float64)
        return flat, np.repeat(np.arange(len(counts)), counts), len(counts)
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(
            f"jet_images: {name} must be a padded (jets, constituents) array or a jagged "
            "awkward array"
        ) from None
    if a.ndim != 2:
        raise DataError(
            f"jet_images: {name} must be a padded (jets, constituents) array, got shape {a.shape}"
        )
    return a.reshape(-1), np.repeat(np.arange(a.shape[0]), a.shape[1]), a.shape[0]


def _wrap(phi: np.ndarray) -> np.ndarray:
    """Angles into [-pi, pi)."""
    return (phi + np.pi) % (2.0 * np.pi) - np.pi


def jet_images(
    px: Any, py: Any, pz: Any, energy: Any, *, npix: int = 40, radius: float = 0.8
) -> np.ndarray:
    """Preprocessed jet images, shape (jets, npix, npix), each summing to 1 (0 for a jet
    without constituents inside the image).

    ``px, py, pz, energy`` (GeV) are padded ``(jets, constituents)`` arrays (padding has
    pT = 0) or jagged awkward arrays; ``energy`` is only checked for shape (the image is
    in pseudorapidity).  ``radius`` is the half-width of the image in (eta, phi).
    """
    if not isinstance(npix, int | np.integer) or isinstance(npix, bool) or npix < 1:
        raise DataError(f"jet_images: npix must be a positive integer, got {npix!r}")
    if not radius > 0:
        raise DataError(f"jet_images: radius must be > 0, got {radius!r}")
    arrays = {}
    for name, values in (("px", px), ("py", py), ("pz", pz), ("energy", energy)):
        arrays[name] = _flat(values, name)
    flat_px, jet, n_jets = arrays["px"]
    for name in ("py", "pz", "energy"):
        if arrays[name][0].shape != flat_px.shape or arrays[name][2] != n_jets:
            raise DataError(f"jet_images: {name} does not have the shape of px")
    flat_py, flat_pz = arrays["py"][0], arrays["pz"][0]
    pt = np.hypot(flat_px, flat_py)
    keep = (pt > 0) & np.isfinite(pt) & np.isfinite(flat_pz)
    pt, jet = pt[keep], jet[keep]
    eta = np.arcsinh(flat_pz[keep] / pt)
    phi = np.arctan2(flat_py[keep], flat_px[keep])

    def per_jet(w: np.ndarray) -> np.ndarray:
        return np.bincount(jet, weights=w, minlength=n_jets)

    # leading constituent of each jet: the last of each jet after sorting by (jet, pT)
    order = np.lexsort((pt, jet))
    last = np.flatnonzero(np.r_[jet[order][1:] != jet[order][:-1], True]) if len(jet) else []
    phi_lead = np.zeros(n_jets)
    phi_lead[jet[order][last]] = phi[order][last]

    sum_pt = per_jet(pt)
    norm = np.where(sum_pt > 0, sum_pt, 1.0)
    dphi0 = _wrap(phi - phi_lead[jet])
    eta_c = per_jet(pt * eta) / norm
    phi_c = phi_lead + per_jet(pt * dphi0) / norm
    deta = eta - eta_c[jet]
    dphi = _wrap(phi - phi_c[jet])

    # principal axis: angle of the major axis of the pT-weighted covariance to the eta axis
    cxx = per_jet(pt * deta * deta) / norm
    cyy = per_jet(pt * dphi * dphi) / norm
    cxy = per_jet(pt * deta * dphi) / norm
    alpha = np.pi / 2 - 0.5 * np.arctan2(2.0 * cxy, cxx - cyy)  # rotates it onto +y
    ca, sa = np.cos(alpha)[jet], np.sin(alpha)[jet]
    u = ca * deta - sa * dphi  # horizontal
    v = sa * deta + ca * dphi  # vertical (principal axis)
    flip_u = per_jet(pt * (u < 0)) > per_jet(pt * (u > 0))
    flip_v = per_jet(pt * (v < 0)) > per_jet(pt * (v > 0))
    u = np.where(flip_u[jet], -u, u)
    v = np.where(flip_v[jet], -v, v)

    width = 2.0 * radius / npix
    col = np.floor((u + radius) / width).astype(np.int64)
    row = np.floor((v + radius) / width).astype(np.int64)
    inside = (col >= 0) & (col < npix) & (row >= 0) & (row < npix)
    index = (jet * npix + row) * npix + col
    images = np.bincount(index[inside], weights=pt[inside], minlength=n_jets * npix * npix).reshape(
        n_jets, npix, npix
    )
    total = images.sum(axis=(1, 2), keepdims=True)
    return images / np.where(total > 0, total, 1.0)


class ImageAutoencoder(AutoencoderMethod):
    """Dense autoencoder on flattened jet images (``settings.image_hidden`` and
    ``image_latent``);
    score = mean squared reconstruction error.  Trains on every event it is given
    (``in_sr`` is ignored: images have no m_JJ).  ``x`` may be ``(n, npix, npix)`` images
    or ``(n, npix * npix)`` rows.  The pixels are multiplied by one global factor (1 over
    the standard deviation of the training pixels) rather than standardised per pixel,
    which would blow up the nearly empty outer pixels."""

    name = "image_autoencoder"
    kind = "unsupervised"
    trained_on: ClassVar[str] = "every event given (images; in_sr ignored)"

    def _as_features(self, x: Any, what: str, n_features: int | None = None) -> np.ndarray:
        a = np.asarray(x, dtype=np.float64) if not isinstance(x, np.ndarray) else x
        if a.ndim == 3:
            a = a.reshape(len(a), -1)
        return super()._as_features(a, what, n_features)

    def _architecture(self) -> tuple[tuple[int, ...], int]:
        return self.settings.image_hidden, self.settings.image_latent

    def _training_x(self, train: AnomalySample) -> np.ndarray:
        if len(train.x) < 2:
            raise DataError(f"image_autoencoder: {len(train.x)} training images; it needs >= 2")
        return train.x

    def _fit_scaler(self, x: np.ndarray) -> None:
        std = float(x.std())
        self.pixel_scale_ = 1.0 / std if std > 0 else 1.0

    def _transform(self, x: np.ndarray) -> np.ndarray:
        return x * self.pixel_scale_

    def _record(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"pixel_scale": self.pixel_scale_}, {}

    def _restore_record(self, record: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        try:
            self.pixel_scale_ = float(record["pixel_scale"])
        except (KeyError, TypeError, ValueError):
            raise ModelError("image_autoencoder bundle lacks its pixel_scale") from None


def _images_sample(x: np.ndarray) -> AnomalySample:
    n = len(x)
    return AnomalySample(x=x, mjj=None, in_sr=np.ones(n, dtype=bool), in_sb=np.zeros(n, dtype=bool))


def autoencoder_asymmetry(
    images_a: Any,
    images_b: Any,
    settings: MethodSettings | None = None,
    *,
    test_fraction: float = 0.5,
) -> dict[str, Any]:
    """Train an :class:`ImageAutoencoder` on ``a`` and tag ``b``, and the reverse.

    Each sample is split (by ``settings.seed``) into a training part and a test part of
    ``test_fraction``.  ``auc_trained_on_a`` is the ROC AUC of the ``b`` test images
    (anomalies, label 1) against the ``a`` test images (label 0), scored by the
    autoencoder trained on ``a``; ``auc_trained_on_b`` the same with the roles swapped.
    An AUC below 0.5 means the autoencoder finds the other class *less* anomalous than
    its own.  Also returned: the sample sizes, the seconds per training and the loss
    histories (``history_a``, ``history_b``).
    """
    from fivesigma.metrics.roc import auc

    s = settings if settings is not None else MethodSettings()
    if not 0 < test_fraction < 1:
        raise DataError(
            f"autoencoder_asymmetry: test_fraction must be in (0, 1), got {test_fraction!r}"
        )
    parts = {}
    for role, images, stream in (("a", images_a, 0), ("b", images_b, 1)):
        x = np.asarray(images, dtype=np.float64)
        x = x.reshape(len(x), -1) if x.ndim == 3 else x
        if x.ndim != 2 or len(x) < 4:
            raise DataError(
                f"autoencoder_asymmetry: images_{role} must be (n, npix, npix) or (n, pixels) "
                f"with n >= 4, got shape {np.shape(images)}"
            )
        order = np.random.default_rng([s.seed, 0xA5, stream]).permutation(len(x))
        n_test = min(max(1, round(test_fraction * len(x))), len(x) - 2)
        parts[role] = (x[np.sort(order[n_test:])], x[np.sort(order[:n_test])])
    if parts["a"][0].shape[1] != parts["b"][0].shape[1]:
        raise DataError(
            f"autoencoder_asymmetry: the images differ in size ({parts['a'][0].shape[1]} "
            f"against {parts['b'][0].shape[1]} pixels)"
        )
    out: dict[str, Any] = {}
    for own, other in (("a", "b"), ("b", "a")):
        t0 = time.perf_counter()
        model = ImageAutoencoder(s).fit(_images_sample(parts[own][0]))
        out[f"seconds_{own}"] = time.perf_counter() - t0
        own_test, other_test = parts[own][1], parts[other][1]
        scores = np.concatenate([model.score(own_test), model.score(other_test)])
        labels = np.concatenate([np.zeros(len(own_test)), np.ones(len(other_test))])
        out[f"auc_trained_on_{own}"] = float(auc(labels, scores))
        out[f"n_train_{own}"] = len(parts[own][0])
        out[f"n_test_{own}"] = len(own_test)
        out[f"history_{own}"] = model.history_
    return out
