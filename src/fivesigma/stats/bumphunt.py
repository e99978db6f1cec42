"""The dijet bump hunt: a sideband fit of the dijet function, the signal-region excess and
its significance and CLs limits, and a check that a cut does not sculpt the m_JJ shape.

After a cut on an anomaly score (CWoLa, CATHODE, an autoencoder) the background in a
signal region (SR) of the dijet invariant mass is predicted from the sidebands, as in the
LHC Olympics 2020 R&D analyses and the ATLAS/CMS dijet searches:

* :func:`dijet_function` is the standard 4-parameter form
  ``f(x) = p0 (1 - x)^p1 / x^(p2 + p3 ln x)`` with ``x = m_JJ / sqrt(s)``; ``f`` is a
  density in events per GeV of m_JJ.
* :func:`fit_dijet` is a binned Poisson maximum-likelihood fit of the *bin integrals* of
  ``f`` (8-point Gauss-Legendre quadrature in each bin, not bin centre x width), on the
  bins selected by a mask (the sidebands).  The fit works in ``(ln p0, p1, p2, p3)``, in
  which ``ln f`` is linear: starting values come from a weighted linear least-squares fit
  of ``ln(counts / width)``, then Fisher scoring with a step-halving line search is run
  from that and a few generic starts, keeping the best likelihood (Nelder-Mead polishes
  a fit whose scoring did not converge).  Uncertainties are from the expected Fisher
  information at the minimum.  Its goodness of fit is the Poisson deviance
  ``2 sum(mu - n + n ln(n/mu))`` (Baker-Cousins chi2), which stays chi2-distributed at
  small counts better than Pearson's.
* :func:`bump_hunt` predicts the SR from the sideband fit and gives the local
  significance of the SR excess from the profile likelihood ratio of the "on/off"
  problem: the SR count ``n ~ Poisson(s + b)`` and the background prediction ``b`` with
  the fit uncertainty ``sigma_b`` as an auxiliary Poisson measurement of ``b``
  (Cowan, "Discovery sensitivity for a counting experiment with background
  uncertainty", 2012; ``Z -> sqrt(2(n ln(n/b) - (n - b)))`` as ``sigma_b -> 0``),
  signed negative for a deficit.  The 95% CLs upper limits on the number of signal
  events in the SR come from pyhf (asymptotic, ``qtilde``) on the one-bin model with
  the same constraint (a ``shapesys`` modifier, a Poisson constraint with
  ``tau = (b / sigma_b)^2``).
* :func:`sculpting` compares the m_JJ shape of the background before and after a cut.

Weighted histograms are treated as if the weighted counts were Poisson counts (exact for
unit weights, as in data): the fit and the significances do not use the sums of squared
weights.

Example
-------
>>> import numpy as np
>>> edges = np.linspace(2600.0, 5000.0, 25)
>>> centres = 0.5 * (edges[1:] + edges[:-1])
>>> mu = np.diff(edges) * dijet_function(centres, 1e3, 10.0, 5.0, 0.0)
>>> counts = np.random.default_rng(0).poisson(mu)
>>> fit = fit_dijet(counts, edges, n_params=3)
>>> fit.converged and 0.3 < fit.chi2 / fit.ndf < 2.5
True
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fivesigma.core import extras
from fivesigma.errors import DataError, describe_exception

__all__ = [
    "SQRT_S",
    "DijetFit",
    "bump_hunt",
    "dijet_function",
    "fit_dijet",
    "on_off_significance",
    "sculpting",
    "signal_event_limits",
]

#: LHC centre-of-mass energy in GeV (Run 2), the default scale of ``x = m_JJ / sqrt(s)``.
SQRT_S = 13_000.0

_N_NODES = 8
_MAX_ITER = 100


def dijet_function(
    mjj: Any, p0: float, p1: float, p2: float, p3: float = 0.0, sqrt_s: float = SQRT_S
) -> np.ndarray:
    """The dijet function ``p0 (1 - x)^p1 / x^(p2 + p3 ln x)`` at ``x = mjj / sqrt_s``.

    ``mjj`` and ``sqrt_s`` in GeV; the result is a density (events per GeV for a fitted
    ``p0``).  It is 0 at and above ``x = 1`` and for ``x <= 0``, where the form is not
    defined.

    >>> round(float(dijet_function(1300.0, 1.0, 0.0, 1.0, 0.0)), 6)   # x = 0.1: 1/x
    10.0
    """
    x = np.asarray(mjj, dtype=np.float64) / float(sqrt_s)
    inside = (x > 0) & (x < 1)
    xs = np.where(inside, x, 0.5)
    lx = np.log(xs)
    with np.errstate(over="ignore", under="ignore"):
        val = p0 * np.exp(p1 * np.log1p(-xs) - (p2 + p3 * lx) * lx)
    return np.where(inside, val, 0.0)


def _features(x: np.ndarray, n_params: int) -> np.ndarray:
    """``ln f`` is linear in ``(ln p0, p1, p2, p3)`` with these features of x."""
    lx = np.log(x)
    phi = np.stack([np.ones_like(x), np.log1p(-x), -lx, -lx * lx], axis=-1)
    return phi[..., :n_params]


@dataclass
class _Design:
    """Quadrature nodes of every bin: features ``phi`` (nb, k, p) and weights ``w`` (nb, k) in GeV."""

    phi: np.ndarray
    w: np.ndarray

    @classmethod
    def of(cls, edges: np.ndarray, sqrt_s: float, n_params: int) -> _Design:
        nodes, weights = np.polynomial.legendre.leggauss(_N_NODES)
        half = 0.5 * np.diff(edges)
        centre = 0.5 * (edges[1:] + edges[:-1])
        m = centre[:, None] + half[:, None] * nodes[None, :]
        return cls(_features(m / sqrt_s, n_params), half[:, None] * weights[None, :])

    def mu_and_jacobian(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bin integrals ``mu`` (nb,) and ``d mu / d theta`` (nb, p)."""
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            f = self.w * np.exp(self.phi @ theta)
            mu = f.sum(axis=1)
            jac = np.einsum("bk,bkp->bp", f, self.phi)
        return mu, jac


def _nll(mu: np.ndarray, n: np.ndarray) -> float:
    """Poisson negative log-likelihood without the constant ``ln n!``; inf where mu <= 0."""
    if not np.all(np.isfinite(mu)) or np.any(mu <= 0):
        return math.inf
    return float(np.sum(mu - n * np.log(mu)))


def _deviance(mu: np.ndarray, n: np.ndarray) -> float:
    """Baker-Cousins chi2: ``2 sum(mu - n + n ln(n / mu))`` (the n ln n term is 0 at n = 0)."""
    pos = n > 0
    log_term = np.zeros_like(mu)
    log_term[pos] = n[pos] * np.log(n[pos] / mu[pos])
    return float(2.0 * np.sum(mu - n + log_term))


def _scoring(design: _Design, n: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, float, bool]:
    """Fisher scoring from ``theta`` with step halving; returns (theta, nll, converged)."""
    mu, jac = design.mu_and_jacobian(theta)
    nll = _nll(mu, n)
    if not math.isfinite(nll):
        return theta, nll, False
    for _ in range(_MAX_ITER):
        grad = jac.T @ (1.0 - n / mu)
        info = (jac / mu[:, None]).T @ jac
        # Scale to unit diagonal: ln p0, p2 and p3 are strongly correlated.
        d = np.sqrt(np.clip(np.diag(info), 1e-300, None))
        try:
            step = -np.linalg.solve(info / np.outer(d, d), grad / d) / d
        except np.linalg.LinAlgError:
            step = -np.linalg.lstsq(info, grad, rcond=None)[0]
        # -grad . step is the decrease of the quadratic model: small means at the minimum.
        if -float(grad @ step) < 1e-9:
            return theta, nll, True
        t = 1.0
        for _ in range(40):
            trial = theta + t * step
            mu_t, jac_t = design.mu_and_jacobian(trial)
            nll_t = _nll(mu_t, n)
            if nll_t <= nll:
                break
            t *= 0.5
        else:
            return theta, nll, False
        theta, mu, jac, nll = trial, mu_t, jac_t, nll_t
    return theta, nll, False


@dataclass(frozen=True)
class DijetFit:
    """Result of :func:`fit_dijet`.

    ``params`` are ``(p0, p1, p2, p3)`` (``p3 = 0``, with zero error, for a 3-parameter
    fit) and ``covariance`` their 4x4 covariance matrix from the expected Fisher
    information; ``chi2`` is the Poisson deviance over the ``n_bins_fit`` fitted bins and
    ``ndf = n_bins_fit - n_params``.  ``converged`` is False when the minimiser did not
    reach a minimum or the information matrix is not positive definite (the errors are
    then not trustworthy).
    """

    params: np.ndarray
    covariance: np.ndarray
    chi2: float
    ndf: int
    n_params: int
    n_bins_fit: int
    converged: bool
    nll: float
    sqrt_s: float = SQRT_S
    _theta_cov: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)
    # the fitted (ln p0, p1, ...): p0 itself can underflow to 0 in a poor fit
    _theta_fit: np.ndarray | None = field(default=None, repr=False)

    @property
    def errors(self) -> np.ndarray:
        """Standard errors of ``params`` (square roots of the covariance diagonal)."""
        return np.sqrt(np.clip(np.diag(self.covariance), 0.0, None))

    def _theta(self) -> np.ndarray:
        if self._theta_fit is not None:
            return self._theta_fit
        return np.r_[math.log(self.params[0]), self.params[1 : self.n_params]]

    def expected(self, edges: Any) -> np.ndarray:
        """Predicted counts per bin of ``edges`` (GeV): the fitted function's bin integrals."""
        e = _check_edges(edges, self.sqrt_s)
        mu, _ = _Design.of(e, self.sqrt_s, self.n_params).mu_and_jacobian(self._theta())
        return mu

    def expected_covariance(self, edges: Any) -> np.ndarray:
        """Covariance of :meth:`expected` from the fit (linear error propagation)."""
        e = _check_edges(edges, self.sqrt_s)
        _, jac = _Design.of(e, self.sqrt_s, self.n_params).mu_and_jacobian(self._theta())
        cov = jac @ self._theta_cov @ jac.T
        return 0.5 * (cov + cov.T)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary: parameters, errors, chi2/ndf and the convergence flag."""
        return {
            "params": [float(v) for v in self.params],
            "errors": [float(v) for v in self.errors],
            "chi2": self.chi2,
            "ndf": self.ndf,
            "chi2_ndf": self.chi2 / self.ndf if self.ndf > 0 else float("nan"),
            "p_value": _chi2_sf(self.chi2, self.ndf),
            "n_params": self.n_params,
            "n_bins_fit": self.n_bins_fit,
            "converged": self.converged,
            "chi2_method": "poisson-deviance",
        }


def _chi2_sf(chi2: float, ndf: int) -> float:
    if ndf <= 0:
        return float("nan")
    return float(extras.scipy("stats").chi2.sf(chi2, ndf))


def _check_edges(edges: Any, sqrt_s: float) -> np.ndarray:
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2 or not np.all(np.isfinite(e)):
        raise DataError("edges must be a 1-d array of at least 2 finite bin edges in GeV")
    if np.any(np.diff(e) <= 0):
        raise DataError("edges must be strictly increasing")
    if e[0] <= 0 or e[-1] >= sqrt_s:
        raise DataError(
            f"edges must lie in (0, sqrt_s = {sqrt_s:g}) GeV for the dijet function, "
            f"got {e[0]:g}..{e[-1]:g}"
        )
    return e


def fit_dijet(
    counts: Any,
    edges: Any,
    mask: Any = None,
    n_params: int = 4,
    sqrt_s: float = SQRT_S,
) -> DijetFit:
    """Binned Poisson maximum-likelihood fit of the dijet function to a histogram.

    Parameters
    ----------
    counts : counts per bin (non-negative; weighted counts are treated as Poisson).
    edges : bin edges in GeV, ``len(counts) + 1``, inside ``(0, sqrt_s)``.
    mask : bins to fit (bool per bin; default all).  For a sideband fit, False in the SR.
    n_params : 4, or 3 for ``p3 = 0``.
    sqrt_s : GeV.

    Returns
    -------
    DijetFit

    Raises
    ------
    DataError
        bad edges or counts, or fewer than ``n_params + 2`` fitted bins with entries.
    """
    if n_params not in (3, 4):
        raise DataError(f"n_params must be 3 or 4 (the dijet function), got {n_params!r}")
    if not (isinstance(sqrt_s, int | float) and sqrt_s > 0):
        raise DataError(f"sqrt_s must be a positive number in GeV, got {sqrt_s!r}")
    e = _check_edges(edges, float(sqrt_s))
    n_all = np.asarray(counts, dtype=np.float64)
    if n_all.ndim != 1 or n_all.size != e.size - 1:
        raise DataError(
            f"counts has shape {n_all.shape} but edges give {e.size - 1} bins; "
            "give one count per bin"
        )
    if not np.all(np.isfinite(n_all)) or np.any(n_all < 0):
        raise DataError("counts must be finite and >= 0")
    if mask is None:
        m = np.ones(n_all.size, dtype=bool)
    else:
        m = np.asarray(mask)
        if m.shape != n_all.shape or m.dtype != bool:
            raise DataError(f"mask must be a bool array with one entry per bin ({n_all.size})")
    n_filled = int(np.count_nonzero(m & (n_all > 0)))
    if n_filled < n_params + 2:
        raise DataError(
            f"the fit has {n_filled} bin(s) with entries but a {n_params}-parameter dijet fit "
            f"needs at least {n_params + 2}; use more or wider bins"
        )
    design_all = _Design.of(e, float(sqrt_s), n_params)
    design = _Design(design_all.phi[m], design_all.w[m])
    n = n_all[m]
    width = np.diff(e)[m]

    runs = [
        _scoring(design, n, s) for s in _starts(design, n, width, e, m, float(sqrt_s), n_params)
    ]
    runs = [r for r in runs if math.isfinite(r[1])]
    best = min(runs, key=lambda r: r[1]) if runs else None
    if best is not None and not best[2]:
        # A start that converged to (numerically) the same minimum is as good and certified.
        same = [r for r in runs if r[2] and r[1] <= best[1] + 1e-6]
        best = same[0] if same else best
    if best is None or not best[2]:
        best = _polish(design, n, best, n_params)
    theta, nll, ok = best

    mu, jac = design.mu_and_jacobian(theta)
    info = (jac / mu[:, None]).T @ jac
    # Invert at unit diagonal (ln p0, p2 and p3 are strongly correlated), then symmetrise.
    d = np.sqrt(np.clip(np.diag(info), 1e-300, None))
    scaled = info / np.outer(d, d)
    try:
        np.linalg.cholesky(scaled)
        cov_theta = np.linalg.inv(scaled) / np.outer(d, d)
    except np.linalg.LinAlgError:
        ok = False
        cov_theta = np.linalg.pinv(scaled) / np.outer(d, d)
    cov_theta = 0.5 * (cov_theta + cov_theta.T)
    if not -700.0 < theta[0] < 700.0:  # p0 out of float range: a fit that went astray
        ok = False
    p0 = math.exp(float(np.clip(theta[0], -700.0, 700.0)))
    params = np.zeros(4)
    params[0] = p0
    params[1:n_params] = theta[1:]
    # theta_0 = ln p0: d p0 = p0 d theta_0.
    scale = np.r_[p0, np.ones(n_params - 1)]
    cov = np.zeros((4, 4))
    with np.errstate(over="ignore", invalid="ignore"):
        cov[:n_params, :n_params] = cov_theta * np.outer(scale, scale)
    return DijetFit(
        params=params,
        covariance=cov,
        chi2=_deviance(mu, n),
        ndf=int(n.size - n_params),
        n_params=n_params,
        n_bins_fit=int(n.size),
        converged=bool(ok),
        nll=float(nll),
        sqrt_s=float(sqrt_s),
        _theta_cov=cov_theta,
        _theta_fit=np.asarray(theta, dtype=np.float64),
    )


def _starts(
    design: _Design,
    n: np.ndarray,
    width: np.ndarray,
    edges: np.ndarray,
    mask: np.ndarray,
    sqrt_s: float,
    n_params: int,
) -> list[np.ndarray]:
    """Starting points: a linear least-squares fit of ln(density), then generic shapes.

    For each start the normalisation ``ln p0`` is set so that the total matches the data.
    """
    centres = (0.5 * (edges[1:] + edges[:-1]))[mask] / sqrt_s
    pos = n > 0
    shapes: list[np.ndarray] = []
    phi_c = _features(centres[pos], n_params)
    # Var(ln n) ~ 1/n: weight each bin by n.
    sw = np.sqrt(n[pos])
    try:
        lsq = np.linalg.lstsq(phi_c * sw[:, None], np.log(n[pos] / width[pos]) * sw, rcond=None)[0]
        if np.all(np.isfinite(lsq)):
            shapes.append(lsq[1:])
    except np.linalg.LinAlgError:  # pragma: no cover - lstsq on finite input does not fail
        pass
    for p1, p2 in ((10.0, 5.0), (5.0, 3.0), (20.0, 8.0), (1.0, 1.0)):
        shapes.append(np.array([p1, p2, 0.0][: n_params - 1]))
    starts = []
    total = float(n.sum())
    for shape in shapes:
        theta = np.r_[0.0, shape]
        mu, _ = design.mu_and_jacobian(theta)
        s = float(mu.sum())
        if s > 0 and math.isfinite(s):
            theta[0] = math.log(total / s)
            starts.append(theta)
    return starts


def _polish(
    design: _Design, n: np.ndarray, best: tuple[np.ndarray, float, bool] | None, n_params: int
) -> tuple[np.ndarray, float, bool]:
    """Nelder-Mead from the best point so far, then scoring again to confirm a minimum."""
    minimize = extras.scipy("optimize").minimize
    x0 = best[0] if best is not None else np.r_[0.0, np.array([10.0, 5.0, 0.0])[: n_params - 1]]

    def fun(theta: np.ndarray) -> float:
        return _nll(design.mu_and_jacobian(theta)[0], n)

    res = minimize(fun, x0, method="Nelder-Mead", options={"maxiter": 4000, "xatol": 1e-8})
    theta, nll, ok = _scoring(design, n, np.asarray(res.x, dtype=np.float64))
    if best is not None and best[1] < nll:
        return best
    return theta, nll, ok


def on_off_significance(n: float, b: float, sigma_b: float = 0.0) -> float:
    """Signed local significance of ``n`` observed events over a prediction ``b ± sigma_b``.

    The profile likelihood ratio of ``n ~ Poisson(s + b)`` with ``b`` constrained by an
    auxiliary Poisson measurement of relative precision ``sigma_b / b`` (Cowan 2012):

    ``Z^2 = 2 [n ln(n (b + σ²) / (b² + n σ²)) - (b²/σ²) ln(1 + σ² (n - b) / (b (b + σ²)))]``,

    which is ``2 [n ln(n/b) - (n - b)]`` for ``sigma_b = 0``.  The sign is that of
    ``n - b``: deficits give negative Z.

    >>> round(on_off_significance(130.0, 100.0), 3)   # Cowan Z0 for s = 30, b = 100
    2.866
    """
    n, b, var = float(n), float(b), float(sigma_b) ** 2
    if not (b > 0 and n >= 0 and var >= 0 and math.isfinite(n + b + var)):
        raise DataError(f"need n >= 0, b > 0 and sigma_b >= 0, got n={n}, b={b}, sigma_b={sigma_b}")
    if var == 0:
        q = 2.0 * ((n * math.log(n / b) if n > 0 else 0.0) - (n - b))
    else:
        term1 = n * math.log1p(b * (n - b) / (b * b + n * var)) if n > 0 else 0.0
        term2 = (b * b / var) * math.log1p(var * (n - b) / (b * (b + var)))
        q = 2.0 * (term1 - term2)
    return math.copysign(math.sqrt(max(q, 0.0)), n - b)


def _sr_bins(edges: np.ndarray, sr: Any) -> np.ndarray:
    try:
        lo, hi = (float(v) for v in sr)
    except (TypeError, ValueError):
        raise DataError(
            f"sr must be a (low, high) pair of m_JJ values in GeV, got {sr!r}"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        raise DataError(f"the signal region sr = ({lo:g}, {hi:g}) is empty; give low < high in GeV")
    if lo < edges[0] or hi > edges[-1]:
        raise DataError(
            f"the signal region ({lo:g}, {hi:g}) GeV is not inside the histogram "
            f"({edges[0]:g}, {edges[-1]:g}); widen edges or narrow sr"
        )
    # A bin that overlaps the SR at all belongs to it: no signal leaks into the sidebands.
    return (edges[:-1] < hi) & (edges[1:] > lo)


def _histogram(
    values: Any, edges: np.ndarray, weights: Any, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Counts and sums of squared weights per bin; NaN values are an error."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    n_nan = int(np.count_nonzero(np.isnan(v)))
    if n_nan:
        raise DataError(f"{name} has {n_nan} NaN value(s) out of {v.size}; remove them first")
    if weights is None:
        counts = np.histogram(v, edges)[0].astype(np.float64)
        return counts, counts.copy()
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape != v.shape or not np.all(np.isfinite(w)):
        raise DataError(
            f"weights for {name} must be finite, one per event ({v.size}), got shape {w.shape}"
        )
    return np.histogram(v, edges, weights=w)[0], np.histogram(v, edges, weights=w * w)[0]


def bump_hunt(
    mjj: Any,
    edges: Any,
    sr: tuple[float, float],
    weights: Any = None,
    *,
    n_params: int = 4,
    sqrt_s: float = SQRT_S,
    limits: bool = True,
    level: float = 0.05,
) -> dict[str, Any]:
    """Sideband fit, signal-region prediction, local significance and CLs limits.

    The bins overlapping ``sr`` form the signal region (``sr_range`` is the range they
    cover); all other bins are the sidebands, to which the dijet function is fitted.
    The SR prediction ``b`` and its fit uncertainty ``sigma_b`` (error propagation
    through the fit covariance) are compared with the observed SR count ``n`` (see the
    module docstring for the test statistic).

    Parameters
    ----------
    mjj : dijet invariant mass per event in GeV (after the anomaly-score cut).
    edges : m_JJ bin edges in GeV; events outside are ignored.
    sr : (low, high) of the signal region in GeV, inside the edges.
    weights : per-event weights (default ones), treated as Poisson counts.
    n_params : 4 or 3 parameters of the dijet function.
    limits : compute the pyhf CLs limits (about a second); False for fast toys.
    level : CLs level (0.05 for 95% CL).

    Returns
    -------
    dict
        ``n_observed_sr``, ``n_expected_sr``, ``background_uncertainty_sr``,
        ``significance`` (signed, with the fit uncertainty), ``significance_no_uncertainty``
        (plain Poisson), ``p_value`` (one-sided local, of ``significance``),
        ``significance_method``, ``fit`` (:meth:`DijetFit.to_dict`),
        ``expected_limit_signal_events`` with ``expected_limit_band`` (-2..+2 sigma),
        ``observed_limit_signal_events`` (None when ``limits`` is False or pyhf fails, then
        ``limit_error`` says why; see :func:`signal_event_limits`), ``limit_method``,
        and for plotting ``edges``, ``counts``, ``expected``, ``expected_uncertainty``
        (per bin), ``sr_bins`` (bool per bin) and ``sr_range``.
    """
    e = _check_edges(edges, float(sqrt_s))
    in_sr = _sr_bins(e, sr)
    counts, _ = _histogram(mjj, e, weights, "mjj")
    side = ~in_sr
    n_filled = int(np.count_nonzero(side & (counts > 0)))
    if n_filled < n_params + 2:
        raise DataError(
            f"the sidebands have {n_filled} bin(s) with entries but a {n_params}-parameter "
            f"dijet fit needs at least {n_params + 2}; use more or narrower bins outside sr "
            "or more events"
        )
    if np.any(counts < 0):
        raise DataError("the weighted m_JJ histogram has negative bins; the Poisson fit needs >= 0")
    fit = fit_dijet(counts, e, mask=side, n_params=n_params, sqrt_s=sqrt_s)
    expected = fit.expected(e)
    cov = fit.expected_covariance(e)
    b = float(expected[in_sr].sum())
    sigma_b = float(math.sqrt(max(float(cov[np.ix_(in_sr, in_sr)].sum()), 0.0)))
    n_obs = float(counts[in_sr].sum())
    z = on_off_significance(n_obs, b, sigma_b)
    z_plain = on_off_significance(n_obs, b, 0.0)
    norm = extras.scipy("stats").norm
    out: dict[str, Any] = {
        "n_observed_sr": n_obs,
        "n_expected_sr": b,
        "background_uncertainty_sr": sigma_b,
        "significance": z,
        "significance_no_uncertainty": z_plain,
        "p_value": float(norm.sf(z)),
        "significance_method": "profile-likelihood-on-off",
        "fit": fit.to_dict(),
        "expected_limit_signal_events": None,
        "expected_limit_band": None,
        "observed_limit_signal_events": None,
        "limit_method": None,
        "edges": e,
        "counts": counts,
        "expected": expected,
        "expected_uncertainty": np.sqrt(np.clip(np.diag(cov), 0.0, None)),
        "sr_bins": in_sr,
        "sr_range": (float(e[:-1][in_sr][0]), float(e[1:][in_sr][-1])),
    }
    if limits:
        out.update(signal_event_limits(n_obs, b, sigma_b, level=level))
    return out


def signal_event_limits(
    n_observed: float, b: float, sigma_b: float = 0.0, level: float = 0.05
) -> dict[str, Any]:
    """Asymptotic CLs upper limits on the number of signal events in a one-bin count.

    The pyhf model is one bin: a signal sample of ``s_unit`` events scaled by the POI and
    a background ``b`` with a ``shapesys`` constraint of absolute size ``sigma_b`` (none
    when 0); ``s_unit = sqrt(b + sigma_b^2)`` keeps the POI of order one, and the limits
    are reported in events.  The expected limit and its band are computed on the
    pre-fit background-only Asimov data ``n = b``, the observed one on ``n_observed``,
    both with ``qtilde``.

    Returns ``{"expected_limit_signal_events", "expected_limit_band",
    "observed_limit_signal_events", "limit_method"}``.  A limit pyhf cannot compute (a
    large deficit can make CLb underflow) is None and ``"limit_error"`` says why; bad
    inputs raise :class:`~fivesigma.errors.DataError`.
    """
    if not 0.0 < level < 1.0:
        raise DataError(f"CLs level must be in (0, 1), got {level!r}")
    if not (b > 0 and n_observed >= 0 and sigma_b >= 0):
        raise DataError(
            f"limits need b > 0, n_observed >= 0 and sigma_b >= 0, got {b}, {n_observed}, {sigma_b}"
        )
    pyhf = extras.pyhf()
    toms748_scan = extras.pyhf("infer.intervals.upper_limits").toms748_scan
    s_unit = math.sqrt(b + sigma_b**2)
    bkg_mods = (
        [{"name": "bkg_unc", "type": "shapesys", "data": [float(sigma_b)]}] if sigma_b > 0 else []
    )
    spec = {
        "channels": [
            {
                "name": "sr",
                "samples": [
                    {
                        "name": "signal",
                        "data": [s_unit],
                        "modifiers": [{"name": "mu", "type": "normfactor", "data": None}],
                    },
                    {"name": "background", "data": [float(b)], "modifiers": bkg_mods},
                ],
            }
        ]
    }
    model = pyhf.Model(spec, poi_name="mu")
    excess = max(n_observed - b, 0.0) / s_unit
    bounds = [list(bd) for bd in model.config.suggested_bounds()]
    poi = model.config.poi_index
    bounds[poi] = [0.0, max(50.0, 20.0 * (excess + 5.0))]
    kwargs = {"test_stat": "qtilde", "par_bounds": bounds, "calctype": "asymptotics"}
    aux = list(model.config.auxdata)
    out: dict[str, Any] = {
        "expected_limit_signal_events": None,
        "expected_limit_band": None,
        "observed_limit_signal_events": None,
        "limit_method": "pyhf-asymptotic-cls-qtilde",
    }
    errors = []

    def scan(n: float, lo: float, hi: float) -> tuple[float, list[float]] | None:
        # pyhf widens the bracket [lo, hi] when it does not bracket the level.
        try:
            with warnings.catch_warnings():
                # CLs = CLsb / CLb warns (and fails below) when CLb underflows to 0.
                warnings.simplefilter("ignore", RuntimeWarning)
                obs, exp = toms748_scan(
                    np.asarray([n, *aux]), model, lo, hi, level=level, rtol=1e-4, **kwargs
                )
        except Exception as err:  # pyhf and scipy raise many types: record, do not crash
            errors.append(describe_exception(err))
            return None
        return float(obs) * s_unit, [float(v) * s_unit for v in exp]

    # Brackets around the Gaussian guesses: the limit is ~2 sigma above the excess.
    expected = scan(float(b), 0.5, 5.0)
    if expected is not None:
        lims = expected[1]
        out["expected_limit_signal_events"] = lims[2]
        out["expected_limit_band"] = dict(
            zip(("-2", "-1", "+1", "+2"), lims[:2] + lims[3:], strict=True)
        )
    observed = scan(float(n_observed), 0.5 + 0.5 * excess, 5.0 + 2.0 * excess)
    if observed is not None:
        out["observed_limit_signal_events"] = observed[0]
    if errors:
        out["limit_error"] = "; ".join(errors)
    return out


def sculpting(
    mjj_before: Any,
    mjj_after: Any,
    edges: Any,
    weights_before: Any = None,
    weights_after: Any = None,
    *,
    nested: bool = True,
) -> dict[str, Any]:
    """Does a cut sculpt the background m_JJ shape?  Compare the shapes before and after.

    The after-cut histogram ``a`` is compared with the before-cut histogram ``B`` scaled to
    the after-cut total, ``eps B`` with ``eps = sum(a) / sum(B)``:
    ``chi2 = sum((a_i - eps B_i)^2 / var_i)`` over the bins with entries before the cut,
    ``ndf = n_bins - 1`` (the normalisation is fitted), with

    * ``nested=True`` (the default, ``mjj_after`` is the subset of ``mjj_before`` that
      passes the cut): under the hypothesis of no sculpting every event passes with the
      same probability ``eps`` whatever its m_JJ, so ``var_i = eps (1 - eps) V(B_i)``;
      for unit weights this is Pearson's chi2 of the pass/fail x bin contingency table;
    * ``nested=False`` (independent samples): ``var_i = V(a_i) + eps^2 V(B_i)``;

    ``V`` is the sum of squared weights in the bin.  ``ratio`` is ``a / (eps B)`` per bin
    (nan where ``B = 0``) and ``ratio_err`` = ``sqrt(var) / (eps B)``.

    The two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``, unweighted, on all
    events) compares the after-cut events with the *failing* events when nested (the
    passing events are found by value, so ``mjj_after`` must hold exactly values of
    ``mjj_before``) and with ``mjj_before`` otherwise: the KS p-value assumes independent
    samples.

    Returns
    -------
    dict
        ``{"chi2", "ndf", "p_value", "ks_statistic", "ks_p_value", "ratio", "ratio_err",
        "efficiency", "nested"}``.
    """
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 3 or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
        raise DataError("edges must be a strictly increasing 1-d array of at least 3 finite edges")
    h_b, v_b = _histogram(mjj_before, e, weights_before, "mjj_before")
    h_a, v_a = _histogram(mjj_after, e, weights_after, "mjj_after")
    tot_b, tot_a = float(h_b.sum()), float(h_a.sum())
    if not (tot_b > 0 and tot_a > 0):
        raise DataError(
            f"sculpting needs events inside the edges before and after the cut, got "
            f"{tot_b:g} and {tot_a:g} (weighted)"
        )
    eps = tot_a / tot_b
    scale_tol = 1e-9 * max(1.0, float(np.abs(h_b).max()))
    if nested:
        bad = (h_a - h_b > scale_tol) | (v_a - v_b > scale_tol)
        if np.any(bad):
            raise DataError(
                f"mjj_after has more events than mjj_before in bin {int(np.argmax(bad))}; it is "
                "not a subset of mjj_before: pass nested=False for independent samples"
            )
        var = eps * (1.0 - eps) * v_b
    else:
        var = v_a + eps**2 * v_b
    pred = eps * h_b
    used = h_b != 0
    if np.count_nonzero(used) < 2:
        raise DataError("sculpting needs at least 2 bins with entries before the cut")
    # var = 0 only where nothing can differ (a cut keeping every event): no contribution.
    terms = used & (var > 0)
    chi2 = float(np.sum((h_a[terms] - pred[terms]) ** 2 / var[terms]))
    ndf = int(np.count_nonzero(used) - 1)
    ratio = np.full(h_b.shape, np.nan)
    ratio_err = np.full(h_b.shape, np.nan)
    nz = pred != 0
    ratio[nz] = h_a[nz] / pred[nz]
    ratio_err[nz] = np.sqrt(var[nz]) / np.abs(pred[nz])

    stats = extras.scipy("stats")
    after = np.asarray(mjj_after, dtype=np.float64).reshape(-1)
    before = np.asarray(mjj_before, dtype=np.float64).reshape(-1)
    other = _failing(before, after) if nested else before
    if other.size and after.size:
        ks = stats.ks_2samp(after, other)
        ks_stat, ks_p = float(ks.statistic), float(ks.pvalue)
    else:  # every event passed (or none failed): nothing to compare
        ks_stat, ks_p = 0.0, 1.0
    return {
        "chi2": chi2,
        "ndf": ndf,
        "p_value": float(stats.chi2.sf(chi2, ndf)),
        "ks_statistic": ks_stat,
        "ks_p_value": ks_p,
        "ratio": ratio,
        "ratio_err": ratio_err,
        "efficiency": eps,
        "nested": nested,
    }


def _failing(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The events of ``before`` not in ``after`` (a multiset difference by value)."""
    values, n_before = np.unique(before, return_counts=True)
    a_values, n_after = np.unique(after, return_counts=True)
    idx = np.searchsorted(values, a_values)
    idx_c = np.clip(idx, 0, max(values.size - 1, 0))
    found = (idx < values.size) & (values[idx_c] == a_values)
    if not np.all(found) or np.any(n_after > n_before[idx_c]):
        raise DataError(
            "mjj_after holds values that are not in mjj_before; with nested=True it must be "
            "the subset of mjj_before passing the cut (or pass nested=False)"
        )
    left = n_before.copy()
    left[idx_c] -= n_after
    return np.repeat(values, left)
