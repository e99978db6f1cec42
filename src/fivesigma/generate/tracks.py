"""The built-in ``tracks`` sample: TrackML-format events from Pythia8 and a fast simulation.

For users without TrackML data, and as training data for GNN tracking: each event is a
hard process plus pile-up from Pythia8, propagated as helices through the TrackML
detector (:mod:`fivesigma.physics.tracker`) and written as a TrackML event.

Particles
---------
Pythia8 at sqrt(s) = 14 TeV (as the TrackML events), with multi-parton interactions and
hadronisation ON (the shared ``COMMON_SETTINGS`` switch them off; tracks need the charged
hadrons).  Option ``hard_process``: ``ttbar`` (``Top:gg2ttbar``, ``Top:qqbar2ttbar``, all
decays open) or ``none``; plus a Poisson number of minimum-bias interactions of mean
``mu`` (option ``minbias``: ``inelastic`` = ``SoftQCD:inelastic``, default, or
``nondiffractive`` = ``SoftQCD:nonDiffractive``; with ``hard_process = "none"`` an event
has at least one interaction).  Inelastic pile-up (non-diffractive plus
diffractive) gives about 52 selected particles per interaction, as the TrackML events
(about 10k particles at mu = 200); non-diffractive alone gives about 70.  Each
interaction gets its own vertex from the beam spot: z ~ Gauss(0, ``beam_sigma_z`` = 55 mm),
x, y ~ Gauss(0, ``beam_sigma_xy`` = 0.015 mm).  ``ParticleDecays:limitTau0 = on``,
``tau0Max = 1000`` mm: pi+-, K+-, K0L and muons are stable, K0S, Lambda, Sigma, Xi and
Omega decay where Pythia samples their lifetime, so their daughters come from displaced
vertices (Pythia's production vertices ``vProd``, shifted by the interaction vertex).

Kept particles: charged (Pythia's particle data), ``pT > pt_min`` (0.1 GeV, TrackML's cut)
and ``|eta| < eta_max`` (4) at production, either final state or decayed after a flight of
at least 1 mm (a charged hyperon leaves hits until it decays: it is propagated up to its
decay point ``tau p / m``).

Propagation
-----------
Helices in a uniform solenoid field ``Bz = field_tesla`` (2 T), vectorised over all
particles of an event: from each particle's current state the next crossing with every
layer surface (barrel cylinders and endcap disks of the geometry) is solved in closed form
(a quadratic in tan(alpha / 2), stable for any curvature), the nearest is taken, and the
particle moves there; then the actual module planes near the crossing (several where
modules overlap, so a particle may leave 2 or more hits on one layer, as in the real
data) are intersected by Newton iterations on the helix and kept when the point lies
inside the (trapezoidal) module.  A particle stops when it leaves the tracker (r beyond
the outermost module corner + 5 mm, about 1030 mm, or |z| beyond about 2963 mm), reaches
its decay point, has turned by ``max_turns`` x 2 pi in the transverse plane (default half
a turn: the TrackML events keep loopers only on their way out, their hits turn by less
than pi), stops (energy loss) or interacts, or after 100 layer crossings.  Particles below
``hit_pt_min`` = 0.15 GeV are listed but leave no hits: in the TrackML event 25 of 25
primaries with 0.12 < pT < 0.15 GeV have none, also forward ones that would cross the
disks, while 80% of those just above do.

Material, at each layer crossing (x/X0 of a layer, by the kind of its modules: pixel if
``pitch_v < 0.5`` mm, short strip if ``< 5`` mm, else long strip):
``x0_pixel = 0.01``, ``x0_short_strip = 0.02``, ``x0_long_strip = 0.025`` (sensor, services
and support together; divided by the cosine of the incidence angle to the layer).  These
were tuned on the TrackML event ``event000000001``: propagating its primaries with
0.5 < pT < 3 GeV without material, the median transverse deviation x pT of the real hits
at the barrel layers (0.044, 0.091, 0.19 mm GeV in pixel layers 2-4, 0.39-1.25 in the
short strips, 1.8-2.5 in the long strips) is reproduced within about 10% (30% at the
third short-strip layer); twice these values would overshoot by 50%.

- Multiple scattering: a Gaussian kink of the direction in two orthogonal planes, each of
  width theta0 = 13.6 MeV / (beta c p) * z * sqrt(x/X0) * (1 + 0.038 ln(x z^2 / (X0 beta^2)))
  (Highland, PDG review eq. 34.16).
- Energy loss: the mean ionisation loss of a minimum-ionising particle in silicon,
  dE = x/X0 * 21.82 g cm^-2 * 1.66 MeV cm^2 g^-1 (0.36-0.9 MeV per layer), times
  1/beta^2 (capped at 50) for slow particles, subtracted from the energy; no Landau
  fluctuations, no bremsstrahlung (electrons are treated like hadrons).
  ``energy_loss = False`` switches it off.
- Nuclear interactions (``nuclear_interactions``): a hadron interacts in a layer with
  probability 1 - exp(-(x/X0) / ``interaction_length_x0``) (1.5: an effective value, the
  layers' X0 above stand for all the material; it makes 11% of the primaries above
  0.5 GeV interact, as the 12% of the TrackML event's primaries whose hits end early),
  stops there and emits charged secondaries (crude model, see :func:`_secondaries`),
  which are propagated but do not interact again.  In the TrackML event 8% of the
  particle hits come from such secondaries.
- Setting the three x/X0 to 0 switches all material effects off.

Measurement
-----------
The true crossing of the module mid-plane is ``tx, ty, tz`` with the momentum there
``tpx, tpy, tpz``.  The measured local ``(u, v)`` is smeared with Gaussians of
``pitch / sqrt(12)`` (strips: the long ``pitch_v`` gives a poor v resolution), clipped to
the module, and transformed back onto the module plane (``smear = False``: the true
point).  A hit is lost with probability ``inefficiency`` (0.01).  Noise hits, a fraction
``noise_fraction`` (0.15) of all hits as in the TrackML event (829 of 5527), are placed
uniformly on uniformly chosen modules (so, as in the real data, per module) and have
``particle_id = 0``, truth at the hit, zero momentum and weight (an event without any
other hit gets one, so that every event is readable).  Cells: the readout
channels ``ch0 = floor((u + maxhu) / pitch_u)``, ``ch1 = floor((v + hv) / pitch_v)`` along the
particle's path through the sensor thickness (a cluster from the incidence angle), with
``value`` = path length in the cell (mm) for pixels and 1 for strips (binary readout, as
the TrackML strips); a noise hit gets the cluster of a particle crossing of the same
volume drawn at random (noise clusters in the real event are as large as the particles'
clusters but uncorrelated with the hit's position).

Files (one set per event, gzip level 1): ``eventNNNNNNNNN-hits.csv.gz``, ``-truth``,
``-particles``, ``-cells`` with the TrackML columns (:data:`fivesigma.io.trackml.PART_COLUMNS`),
event ids 1..N, and ``detectors.csv.gz`` (the geometry used) and ``provenance.json``.
Positions are written to 1e-4 mm, momenta to 7 significant digits.  Hits are sorted by
module (volume, layer, module) and randomly within a module, with hit ids 1..n in that
order, so the row order carries no truth.  Particle ids are ``(interaction + 1) << 32 |
index in Pythia's event record`` (interaction 0 is the hard process when there is one);
the k-th secondary of a nuclear interaction has its parent's id plus ``(k + 1) << 20``.
Truth weights follow the TrackML definition (:func:`fivesigma.metrics.tracking.trackml_weights`),
and, as in the published TrackML events, the hits of material secondaries weigh 0.

Timing (one core, this package's test machine): per event at mu = 0 (ttbar) 0.03 s
Pythia + 0.12 s simulation + 0.04 s writing, about 350 particles and 3.5k hits; at mu = 20
0.15 + 0.3 + 0.15 s, 1.5k particles and 16k hits; at mu = 200 1.1 + 2.6 + 1.4 s, 13k
particles and 145k hits (the TrackML events: about 10k particles, 110k hits).  Once per
sample the multi-parton-interaction initialisation of Pythia is computed (about 13 s for
inelastic pile-up, 1 s otherwise); each block of events loads it (0.5 s).

Reproducibility: events are made in blocks of :data:`BLOCK_EVENTS`, each block with fresh
Pythia instances and its own seeds (:func:`fivesigma.generate._pythia.job_seeds`), so the
same (seed, events, options) gives byte-identical files whatever ``jobs`` is.

>>> from fivesigma.generate import generate
>>> generate("tracks", events=10, out="tracks", options={"mu": 20})   # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import numbers
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fivesigma import __version__
from fivesigma.errors import GenerationError, close_matches
from fivesigma.generate import _pythia
from fivesigma.metrics.tracking import trackml_weights
from fivesigma.physics.tracker import (
    DEFAULT_GEOMETRY_FILE,
    TrackerGeometry,
    geometry_from,
)

__all__ = [
    "BASE_SETTINGS",
    "BLOCK_EVENTS",
    "FORMAT_VERSION",
    "HARD_PROCESSES",
    "MINBIAS_PROCESSES",
    "NoResponse",
    "SimulatedHits",
    "TrackOptions",
    "content_key",
    "digitize",
    "file_names",
    "parse_options",
    "propagate",
    "run",
    "settings_for",
    "simulate_event",
]

#: Bump when the file layout or the meaning of a column changes (invalidates caches).
FORMAT_VERSION = 2

#: Events per block of work, each block with fresh Pythia instances and its own seeds
#: (part of the sample's definition, hence of content_key()).
BLOCK_EVENTS = 10

#: GeV / (T mm): pT = _K * B * R.
_K = 0.299792458e-3

#: Radiation length of silicon (g cm^-2) times the minimum-ionisation dE/dx (MeV cm^2 g^-1).
_MIP_LOSS_GEV_PER_X0 = 21.82 * 1.66e-3

#: Hard stop of the propagation (layer crossings per particle).
MAX_CROSSINGS = 100

#: Shortest flight (mm) of a decayed charged particle that is propagated.
MIN_DECAY_LENGTH = 1.0

BASE_SETTINGS: tuple[str, ...] = (
    "Beams:idA = 2212",
    "Beams:idB = 2212",
    "Beams:eCM = 14000.",
    # Tracks are mostly charged hadrons from the underlying event and pile-up.
    "PartonLevel:MPI = on",
    "HadronLevel:all = on",
    # c*tau > 1 m stable (pi, K+-, K0L, mu); K0S, Lambda, ... decay at displaced vertices.
    "ParticleDecays:limitTau0 = on",
    "ParticleDecays:tau0Max = 1000.",
)

HARD_PROCESSES: dict[str, tuple[str, ...]] = {
    "ttbar": ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on"),
    "none": (),
}

MINBIAS_PROCESSES: dict[str, tuple[str, ...]] = {
    "inelastic": ("SoftQCD:inelastic = on",),
    "nondiffractive": ("SoftQCD:nonDiffractive = on",),
}

_PART_ORDER = ("hits", "truth", "particles", "cells")


@dataclass(frozen=True)
class NoResponse:
    """The ``detector`` of the ``tracks`` sample: none besides the geometry and the options
    (:class:`TrackOptions`), which the cache key already holds."""

    def to_dict(self) -> dict[str, Any]:
        """Nothing to add to the cache key."""
        return {}


@dataclass(frozen=True)
class TrackOptions:
    """Options of the ``tracks`` sample (see the module docstring for the physics).

    Parameters
    ----------
    mu
        Mean number of pile-up interactions (Poisson), 0..300.
    hard_process
        ``"ttbar"`` or ``"none"``.
    minbias
        Pile-up process: ``"inelastic"`` or ``"nondiffractive"``.
    pt_min, eta_max
        Particle selection at production: pT > pt_min (GeV), |eta| < eta_max.
    field_tesla
        Solenoid field Bz (T), 0..10.
    beam_sigma_z, beam_sigma_xy
        Gaussian beam spot widths (mm).
    inefficiency
        Probability to lose a hit, 0..1.
    noise_fraction
        Noise hits as a fraction of all hits, 0 <= f < 1.
    x0_pixel, x0_short_strip, x0_long_strip
        Material per layer crossing (x/X0) of pixel, short-strip and long-strip layers.
    energy_loss
        Subtract the mean ionisation loss at each layer.
    nuclear_interactions
        Let hadrons interact in the layers (they stop there and emit secondaries).
    interaction_length_x0
        Nuclear interaction length in units of the layers' X0 (effective, see above).
    hit_pt_min
        Particles below this pT (GeV) are listed but leave no hits, as in the TrackML
        events.
    smear
        Smear the measured positions (False: hits at the true crossing).
    max_turns
        Stop a particle after this many turns in the transverse plane.
    geometry
        Path of a TrackML ``detectors.csv(.gz)``; None for the packaged TrackML detector.
    """

    mu: float = 200.0
    hard_process: str = "ttbar"
    minbias: str = "inelastic"
    pt_min: float = 0.1
    eta_max: float = 4.0
    field_tesla: float = 2.0
    beam_sigma_z: float = 55.0
    beam_sigma_xy: float = 0.015
    inefficiency: float = 0.01
    noise_fraction: float = 0.15
    x0_pixel: float = 0.01
    x0_short_strip: float = 0.02
    x0_long_strip: float = 0.025
    energy_loss: bool = True
    nuclear_interactions: bool = True
    interaction_length_x0: float = 1.5
    hit_pt_min: float = 0.15
    smear: bool = True
    max_turns: float = 0.5
    geometry: str | None = None


#: Accepted ranges ``(low, high, low inclusive, high inclusive)`` of the numeric options.
_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "mu": (0.0, 300.0, True, True),
    "pt_min": (0.0, 1000.0, False, True),
    "eta_max": (0.0, 10.0, False, True),
    "field_tesla": (0.0, 10.0, True, True),
    "beam_sigma_z": (0.0, 1000.0, True, True),
    "beam_sigma_xy": (0.0, 100.0, True, True),
    "inefficiency": (0.0, 1.0, True, True),
    "noise_fraction": (0.0, 1.0, True, False),
    "x0_pixel": (0.0, 1.0, True, True),
    "x0_short_strip": (0.0, 1.0, True, True),
    "x0_long_strip": (0.0, 1.0, True, True),
    "max_turns": (0.0, 100.0, False, True),
    "interaction_length_x0": (0.0, 1e6, False, True),
    "hit_pt_min": (0.0, 1000.0, True, True),
}


def parse_options(options: dict[str, Any] | TrackOptions | None) -> TrackOptions:
    """Validate ``options`` (a dict of :class:`TrackOptions` fields) into TrackOptions.

    None values mean the default.  Raises a one-line GenerationError naming the bad key or
    value and what is accepted.

    >>> parse_options({"mu": 20}).mu
    20.0
    >>> parse_options({"mu": -1})
    Traceback (most recent call last):
    ...
    fivesigma.errors.GenerationError: tracks option mu must be in [0, 300], got -1
    """
    if isinstance(options, TrackOptions):
        options = asdict(options)
    if options is not None and not isinstance(options, dict):
        raise GenerationError(
            f"tracks options must be a dict of option names to values, got {type(options).__name__}"
        )
    options = {k: v for k, v in dict(options or {}).items() if v is not None}
    fields = TrackOptions.__dataclass_fields__
    for key in options:
        if key not in fields:
            raise GenerationError(
                f"unknown tracks option {key!r}; accepted: {', '.join(fields)} "
                f"({close_matches(str(key), fields)})"
            )
    values: dict[str, Any] = {}
    for key, (low, high, low_in, high_in) in _RANGES.items():
        if key not in options:
            continue
        value = options[key]
        if (
            isinstance(value, bool | np.bool_)
            or not isinstance(value, numbers.Real)
            or math.isnan(value)
        ):
            raise GenerationError(f"tracks option {key} must be a number, got {value!r}")
        ok = (value >= low if low_in else value > low) and (
            value <= high if high_in else value < high
        )
        if not ok:
            lo, hi = ("[" if low_in else "("), ("]" if high_in else ")")
            raise GenerationError(
                f"tracks option {key} must be in {lo}{low:g}, {high:g}{hi}, got {value!r}"
            )
        values[key] = float(value)
    for key, accepted in (("hard_process", HARD_PROCESSES), ("minbias", MINBIAS_PROCESSES)):
        if key in options:
            value = options[key]
            if not isinstance(value, str) or value not in accepted:
                raise GenerationError(
                    f"unknown tracks {key} {value!r}; accepted: {', '.join(accepted)}"
                )
            values[key] = value
    for key in ("energy_loss", "nuclear_interactions", "smear"):
        if key in options:
            if not isinstance(options[key], bool | np.bool_):
                raise GenerationError(
                    f"tracks option {key} must be true or false, got {options[key]!r}"
                )
            values[key] = bool(options[key])
    if "geometry" in options:
        path = Path(os.path.expanduser(str(options["geometry"])))
        if path.is_dir():
            found = [
                path / n for n in ("detectors.csv.gz", "detectors.csv") if (path / n).is_file()
            ]
            path = found[0] if found else path / "detectors.csv"
        if not path.is_file():
            raise GenerationError(
                f"tracks option geometry: '{path}' is not a file; accepted: a TrackML "
                "detectors.csv(.gz) or a directory holding one"
            )
        values["geometry"] = str(path.resolve())
    opts = TrackOptions(**values)
    if opts.mu == 0 and opts.hard_process == "none":
        raise GenerationError(
            "tracks options mu = 0 and hard_process = 'none' give empty events; accepted: "
            "mu > 0 or hard_process 'ttbar'"
        )
    return opts


def settings_for(opts: TrackOptions) -> dict[str, list[str]]:
    """Pythia settings of the hard-process and the pile-up generators (empty if unused)."""
    return {
        "hard": [*BASE_SETTINGS, *HARD_PROCESSES[opts.hard_process]]
        if opts.hard_process != "none"
        else [],
        "pileup": [*BASE_SETTINGS, *MINBIAS_PROCESSES[opts.minbias]] if opts.mu > 0 else [],
    }


def file_names(options: dict[str, Any] | None = None) -> tuple[str, ...]:
    """Names (without the ``.csv.gz`` suffix) of the per-sample files; the per-event files
    ``eventNNNNNNNNN-<part>.csv.gz`` are listed in the provenance."""
    parse_options(options)
    return ("detectors",)


def _geometry_digest(path: str | None) -> str:
    if path is None:
        from importlib import resources

        data = (resources.files("fivesigma.physics") / "data" / DEFAULT_GEOMETRY_FILE).read_bytes()
    else:
        data = Path(path).read_bytes()
    return hashlib.sha256(data).hexdigest()[:16]


def content_key(options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything besides the call arguments that changes the sample (for cache keys)."""
    opts = parse_options(options)
    return {
        "format_version": FORMAT_VERSION,
        "block_events": BLOCK_EVENTS,
        "options": asdict(opts),
        "settings": settings_for(opts),
        "geometry_sha256": _geometry_digest(opts.geometry),
        "pythia8mc": _pythia.pythia_version(),
    }


# --------------------------------------------------------------------------------------
# Propagation


@dataclass
class SimulatedHits:
    """True module crossings of the propagated particles, one entry per crossing.

    Attributes
    ----------
    particle : ndarray of int64
        Index of the particle (into the arrays given to :func:`propagate`).
    module : ndarray of int64
        Module row in the geometry.
    position, momentum : ndarray, shape (n, 3)
        True crossing of the module mid-plane (mm) and the momentum there (GeV).
    path : ndarray
        Path length from the production vertex (mm).
    """

    particle: np.ndarray
    module: np.ndarray
    position: np.ndarray
    momentum: np.ndarray
    path: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.particle.size)


def _layer_material(geometry: TrackerGeometry, opts: TrackOptions) -> np.ndarray:
    """x/X0 of each layer from the kind of its modules (by the median pitch_v)."""
    x0 = np.empty(len(geometry.layers))
    for lay in geometry.layers:
        pitch = float(np.median(geometry.pitch_v[lay.modules]))
        x0[lay.index] = (
            opts.x0_pixel
            if pitch < 0.5
            else opts.x0_short_strip
            if pitch < 5.0
            else opts.x0_long_strip
        )
    return x0


def _sinc(x: np.ndarray) -> np.ndarray:
    """sin(x) / x (a Taylor series near 0, where the ratio loses precision)."""
    small = np.abs(x) < 1e-4
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(small, 1.0 - x * x / 6.0, np.sin(x) / x)


def _helix_point(
    pos: np.ndarray, t2: np.ndarray, cot: np.ndarray, kappa: np.ndarray, s: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Position after transverse path ``s`` on the helix (broadcasting over ``s``).

    ``pos`` (..., 3), ``t2`` (..., 2) the transverse unit direction, ``kappa`` the signed
    curvature (1/mm, > 0 turns counter-clockwise seen from +z).  The forms
    ``S = sin(k s) / k`` and ``C = (1 - cos(k s)) / k`` are written with sinc so that a
    straight line (k = 0) needs no special case.
    """
    a = kappa * s
    big_s = s * _sinc(a)
    big_c = s * np.sin(0.5 * a) * _sinc(0.5 * a)
    x = pos[..., 0] + t2[..., 0] * big_s - t2[..., 1] * big_c
    y = pos[..., 1] + t2[..., 1] * big_s + t2[..., 0] * big_c
    z = pos[..., 2] + cot * s
    return x, y, z


def _rotate(t2: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Transverse unit vectors ``t2`` (n, 2) rotated counter-clockwise by ``angle``."""
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([t2[:, 0] * c - t2[:, 1] * s, t2[:, 0] * s + t2[:, 1] * c], axis=1)


def _cylinder_paths(
    pos: np.ndarray, t2: np.ndarray, kappa: np.ndarray, radii: np.ndarray, eps: float
) -> np.ndarray:
    """Transverse path (n, m) to the next crossing of each cylinder ``r = radii``; inf if none.

    With alpha = kappa s and tau = tan(alpha / 2) = kappa sigma / 2, ``|x(s)|^2 = rho^2``
    becomes the quadratic ``c2 sigma^2 + 2 A sigma - D = 0`` with ``A = x . t``,
    ``B = x . n``, ``D = rho^2 - r^2`` and ``c2 = 1 + B kappa - D kappa^2 / 4``, which
    stays well conditioned from loopers to straight lines.  A root with alpha of the wrong
    sign lies one full turn later.
    """
    x, y = pos[:, 0:1], pos[:, 1:2]
    tx, ty = t2[:, 0:1], t2[:, 1:2]
    k = kappa[:, None]
    a = x * tx + y * ty
    b = -x * ty + y * tx
    d = radii[None, :] ** 2 - (x * x + y * y)
    c2 = 1.0 + b * k - 0.25 * d * k * k
    disc = a * a + c2 * d
    out = np.full(d.shape, np.inf)
    ok = disc >= 0
    sq = np.sqrt(np.where(ok, disc, 0.0))
    q = -(a + np.where(a >= 0, sq, -sq))
    turn = np.where(k != 0, 2.0 * np.pi / np.abs(np.where(k != 0, k, 1.0)), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for sigma in (q / c2, -d / q):
            half = 0.5 * k * sigma
            small = np.abs(half) < 1e-9
            s = sigma * np.where(small, 1.0, np.arctan(half) / np.where(small, 1.0, half))
            valid = ok & np.isfinite(s) & (np.abs(s) > eps)
            s = np.where(s < 0, s + turn, s)
            valid &= s > eps
            out = np.where(valid & (s < out), s, out)
    return out


def _kink(direction: np.ndarray, theta0: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit directions (n, 3) deflected by Gaussian angles of width theta0 in two planes."""
    d = direction
    # a unit vector perpendicular to d: d x z, or d x x when d is along z
    e1 = np.cross(d, np.array([0.0, 0.0, 1.0]))
    norm = np.linalg.norm(e1, axis=1)
    along_z = norm < 1e-6
    if np.any(along_z):
        e1[along_z] = np.cross(d[along_z], np.array([1.0, 0.0, 0.0]))
        norm = np.linalg.norm(e1, axis=1)
    e1 /= norm[:, None]
    e2 = np.cross(d, e1)
    angles = rng.standard_normal((d.shape[0], 2)) * theta0[:, None]
    out = d + angles[:, 0:1] * e1 + angles[:, 1:2] * e2
    return out / np.linalg.norm(out, axis=1)[:, None]


def propagate(
    geometry: TrackerGeometry,
    vertex: np.ndarray,
    momentum: np.ndarray,
    charge: np.ndarray,
    mass: np.ndarray | None = None,
    decay_length: np.ndarray | None = None,
    *,
    field_tesla: float = 2.0,
    material: np.ndarray | None = None,
    energy_loss: bool = True,
    max_turns: float = 0.5,
    interaction_length_x0: float = math.inf,
    hadron: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> SimulatedHits:
    """Propagate charged particles through ``geometry``; return their module crossings.

    Parameters
    ----------
    geometry
        The tracker.
    vertex, momentum
        Production vertices (n, 3) in mm and momenta (n, 3) in GeV.
    charge
        Charges in units of e; neutral particles are skipped.
    mass
        Masses in GeV (default: the charged-pion mass) for beta in the scattering and the
        energy loss.
    decay_length
        Path length (mm) after which each particle stops (decays); default infinite.
    field_tesla
        Uniform Bz (T).
    material
        x/X0 per layer (one per ``geometry.layers``); None or zeros switch material off.
    energy_loss
        Subtract the mean ionisation loss at each layer (when there is material).
    max_turns
        Stop after this many turns in the transverse plane.
    interaction_length_x0
        Nuclear interaction length in units of the layers' X0: a particle flagged in
        ``hadron`` that crosses x/X0 of material interacts (and stops there) with
        probability ``1 - exp(-x/X0 / interaction_length_x0)``; inf: never.
    hadron
        Which particles may interact (default: none).
    rng
        Random generator for the scattering and interactions (used with material).

    Returns
    -------
    SimulatedHits
        Sorted by particle, then path length.  ``meta`` holds the number of layer
        crossings and propagation steps, and ``interactions``: a dict of ``particle``,
        ``position`` (n, 3) and ``momentum`` (n, 3) at each nuclear interaction.
    """
    vertex = np.asarray(vertex, dtype=np.float64).reshape(-1, 3)
    momentum = np.asarray(momentum, dtype=np.float64).reshape(-1, 3)
    charge = np.asarray(charge, dtype=np.float64).reshape(-1)
    n = vertex.shape[0]
    mass = np.full(n, 0.13957) if mass is None else np.asarray(mass, np.float64).reshape(-1)
    decay = np.full(n, np.inf) if decay_length is None else np.asarray(decay_length, np.float64)
    layers = geometry.layers
    nlay = len(layers)
    material = np.zeros(nlay) if material is None else np.asarray(material, np.float64)
    with_material = bool(np.any(material > 0))
    if with_material and rng is None:
        raise GenerationError("propagate needs an rng when there is material (scattering)")

    barrel = np.array([lay.barrel for lay in layers])
    cyl = np.flatnonzero(barrel)
    dsk = np.flatnonzero(~barrel)
    cyl_r = np.array([layers[i].radius for i in cyl])
    cyl_zlo = np.array([layers[i].z_min for i in cyl]) - 1.0
    cyl_zhi = np.array([layers[i].z_max for i in cyl]) + 1.0
    dsk_z = np.array([layers[i].z for i in dsk])
    dsk_rlo = np.array([layers[i].r_min for i in dsk]) - 1.0
    dsk_rhi = np.array([layers[i].r_max for i in dsk]) + 1.0
    r_out = geometry.r_max + 5.0
    z_out = geometry.z_max + 5.0
    eps = 1e-6

    pabs = np.linalg.norm(momentum, axis=1)
    inside = (np.hypot(vertex[:, 0], vertex[:, 1]) < r_out) & (np.abs(vertex[:, 2]) < z_out)
    alive = np.flatnonzero((charge != 0) & (pabs > 0) & inside & (decay > 0))
    pos = vertex[alive].copy()
    direc = momentum[alive] / pabs[alive, None]
    p = pabs[alive].copy()
    q = charge[alive]
    m = mass[alive]
    can_interact = np.zeros(alive.size, bool) if hadron is None else np.asarray(hadron, bool)[alive]
    left = decay[alive].copy()  # 3D path left before the decay
    travelled = np.zeros(alive.size)  # 3D path from the vertex
    turned = np.zeros(alive.size)  # |angle| turned in the transverse plane
    idx = alive.copy()

    out_part: list[np.ndarray] = []
    out_mod: list[np.ndarray] = []
    out_pos: list[np.ndarray] = []
    out_mom: list[np.ndarray] = []
    out_path: list[np.ndarray] = []
    inter_part: list[np.ndarray] = []
    inter_pos: list[np.ndarray] = []
    inter_mom: list[np.ndarray] = []
    crossings = steps = 0
    for _ in range(MAX_CROSSINGS):
        if idx.size == 0:
            break
        steps += 1
        sin_t = np.maximum(np.hypot(direc[:, 0], direc[:, 1]), 1e-12)
        t2 = direc[:, :2] / sin_t[:, None]
        cot = direc[:, 2] / sin_t
        pt = p * sin_t
        kappa = -_K * q * field_tesla / pt

        # candidate crossings: transverse path to every layer (inf: none)
        s_cyl = _cylinder_paths(pos, t2, kappa, cyl_r, eps)
        zc = pos[:, 2:3] + cot[:, None] * s_cyl
        s_cyl = np.where((zc >= cyl_zlo) & (zc <= cyl_zhi), s_cyl, np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            s_dsk = (dsk_z[None, :] - pos[:, 2:3]) / cot[:, None]
        s_dsk = np.where(np.isfinite(s_dsk) & (s_dsk > eps), s_dsk, np.inf)
        # the radius at a disk matters only for disks before the nearest cylinder crossing
        best = s_cyl.min(axis=1) if s_cyl.shape[1] else np.full(idx.size, np.inf)
        row, col = np.nonzero(s_dsk < best[:, None])
        xd, yd, _ = _helix_point(pos[row], t2[row], cot[row], kappa[row], s_dsk[row, col])
        rd = np.hypot(xd, yd)
        miss = (rd < dsk_rlo[col]) | (rd > dsk_rhi[col])
        s_dsk[row[miss], col[miss]] = np.inf
        s_all = np.full((idx.size, nlay), np.inf)
        s_all[:, cyl] = s_cyl
        s_all[:, dsk] = s_dsk
        nxt = np.argmin(s_all, axis=1)
        s_next = s_all[np.arange(idx.size), nxt]

        # stops: leaving the tracker, decay, too many turns
        s_exit = _cylinder_paths(pos, t2, kappa, np.array([r_out]), eps)[:, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            s_end = np.where(cot > 0, (z_out - pos[:, 2]) / cot, (-z_out - pos[:, 2]) / cot)
        s_end = np.where(np.isfinite(s_end) & (s_end > 0), s_end, np.inf)
        with np.errstate(divide="ignore"):
            s_turn = np.where(kappa != 0, (2 * np.pi * max_turns - turned) / np.abs(kappa), np.inf)
        s_stop = np.minimum.reduce([s_exit, s_end, s_turn, left * sin_t])
        go = s_next < s_stop
        if not np.any(go):
            break
        keep = np.flatnonzero(go)
        idx, pos, direc, p, q, m = idx[keep], pos[keep], direc[keep], p[keep], q[keep], m[keep]
        left, travelled, turned = left[keep], travelled[keep], turned[keep]
        can_interact = can_interact[keep]
        t2, cot, kappa, sin_t = t2[keep], cot[keep], kappa[keep], sin_t[keep]
        s = s_next[keep]
        lay_of = nxt[keep]
        crossings += keep.size

        # module hits near the crossing point, then move there
        x, y, z = _helix_point(pos, t2, cot, kappa, s)
        cross = np.stack([x, y, z], axis=1)
        t_new = _rotate(t2, kappa * s)
        hits = _module_hits(geometry, lay_of, cross, t_new, cot, kappa, sin_t)
        if hits is not None:
            k, mod, hpos, hdir_t, s_rel = hits
            hdir = np.concatenate([hdir_t * sin_t[k, None], (cot * sin_t)[k, None]], axis=1)
            out_part.append(idx[k])
            out_mod.append(mod)
            out_pos.append(hpos)
            out_mom.append(hdir * p[k, None])
            out_path.append(travelled[k] + (s[k] + s_rel) / sin_t[k])
        pos = cross
        direc = np.concatenate([t_new * sin_t[:, None], (cot * sin_t)[:, None]], axis=1)
        step3 = s / sin_t
        travelled = travelled + step3
        left = left - step3
        turned = turned + np.abs(kappa * s)

        if with_material:
            x0 = material[lay_of]
            normal = np.zeros_like(pos)
            is_cyl = barrel[lay_of]
            rr = np.maximum(np.hypot(pos[:, 0], pos[:, 1]), 1e-9)
            normal[is_cyl, 0] = pos[is_cyl, 0] / rr[is_cyl]
            normal[is_cyl, 1] = pos[is_cyl, 1] / rr[is_cyl]
            normal[~is_cyl, 2] = 1.0
            cos_in = np.maximum(np.abs(np.sum(direc * normal, axis=1)), 0.05)
            xx = x0 / cos_in
            energy = np.hypot(p, m)
            beta = p / energy
            with np.errstate(divide="ignore", invalid="ignore"):
                theta0 = np.where(
                    xx > 0,
                    0.0136
                    / (beta * p)
                    * np.abs(q)
                    * np.sqrt(xx)
                    * (1.0 + 0.038 * np.log(np.maximum(xx * q * q / beta**2, 1e-12))),
                    0.0,
                )
            direc = _kink(direc, np.maximum(theta0, 0.0), rng)  # type: ignore[arg-type]
            if energy_loss:
                # minimum ionisation x 1/beta^2 (the slow-particle rise of Bethe-Bloch;
                # slow protons stop within a few layers), capped near the Bragg peak
                loss = _MIP_LOSS_GEV_PER_X0 * xx * np.minimum(1.0 / beta**2, 50.0)
                energy = energy - loss
                p = np.sqrt(np.maximum(energy**2 - m**2, 0.0))
            if math.isfinite(interaction_length_x0) and np.any(can_interact):
                prob = -np.expm1(-xx / interaction_length_x0)
                hit_nucleus = can_interact & (rng.random(idx.size) < prob)  # type: ignore[union-attr]
                if np.any(hit_nucleus):
                    inter_part.append(idx[hit_nucleus])
                    inter_pos.append(pos[hit_nucleus])
                    inter_mom.append(direc[hit_nucleus] * p[hit_nucleus, None])
                    p = np.where(hit_nucleus, 0.0, p)
        stay = p > 0.01  # stopped (below 10 MeV) or absorbed: no more hits
        if not np.all(stay):
            keep = np.flatnonzero(stay)
            idx, pos, direc, p, q, m = idx[keep], pos[keep], direc[keep], p[keep], q[keep], m[keep]
            left, travelled, turned = left[keep], travelled[keep], turned[keep]
            can_interact = can_interact[keep]

    if out_part:
        part = np.concatenate(out_part)
        mod = np.concatenate(out_mod)
        hpos = np.concatenate(out_pos)
        hmom = np.concatenate(out_mom)
        path = np.concatenate(out_path)
    else:
        part = mod = np.zeros(0, np.int64)
        hpos = hmom = np.zeros((0, 3))
        path = np.zeros(0)
    order = np.lexsort((path, mod, part))
    part, mod, hpos, hmom, path = part[order], mod[order], hpos[order], hmom[order], path[order]
    # the same module crossing found from two nearby layer crossings (a looper grazing a
    # layer) is one hit
    dup = np.zeros(part.size, dtype=bool)
    dup[1:] = (part[1:] == part[:-1]) & (mod[1:] == mod[:-1]) & (np.diff(path) < 0.5)
    keep = ~dup
    order = np.lexsort((path[keep], part[keep]))
    sel = np.flatnonzero(keep)[order]
    return SimulatedHits(
        particle=part[sel],
        module=mod[sel],
        position=hpos[sel],
        momentum=hmom[sel],
        path=path[sel],
        meta={
            "layer_crossings": int(crossings),
            "steps": int(steps),
            "interactions": {
                "particle": np.concatenate(inter_part) if inter_part else np.zeros(0, np.int64),
                "position": np.concatenate(inter_pos) if inter_pos else np.zeros((0, 3)),
                "momentum": np.concatenate(inter_mom) if inter_mom else np.zeros((0, 3)),
            },
        },
    )


def _module_hits(
    geometry: TrackerGeometry,
    layer: np.ndarray,
    cross: np.ndarray,
    t2: np.ndarray,
    cot: np.ndarray,
    kappa: np.ndarray,
    sin_t: np.ndarray,
) -> tuple[np.ndarray, ...] | None:
    """Crossings of the module planes near each layer crossing.

    Returns (row into the crossing arrays, module, position (n, 3), transverse unit
    direction (n, 2), transverse path from the layer crossing) or None.
    """
    ks, mods = [], []
    for lay in np.unique(layer).tolist():
        rows = np.flatnonzero(layer == lay)
        k, mod = geometry.candidates(lay, cross[rows])
        ks.append(rows[k])
        mods.append(mod)
    k = np.concatenate(ks)
    mod = np.concatenate(mods)
    # cheap pre-selection: the straight line from the layer crossing to each candidate's
    # plane must land on the module, within a tolerance for the curvature over that path
    direc = np.concatenate([t2[k] * sin_t[k, None], (cot[k] * sin_t[k])[:, None]], axis=1)
    local = geometry.to_local(mod, cross[k])
    ldir = geometry.local_direction(mod, direc)
    with np.errstate(divide="ignore", invalid="ignore"):
        lin = -local[:, 2] / ldir[:, 2]
    lin = np.where(np.isfinite(lin), lin, 1e9)
    near = geometry.inside(
        mod,
        local[:, 0] + lin * ldir[:, 0],
        local[:, 1] + lin * ldir[:, 1],
        tolerance=2.0,
    ) | geometry.inside(mod, local[:, 0], local[:, 1], tolerance=2.0 + 0.1 * np.abs(lin))
    k, mod = k[near], mod[near]
    if k.size == 0:
        return None
    normal = geometry.normal[mod]
    center = geometry.center[mod]
    pos, tt, ct, kk = cross[k], t2[k], cot[k], kappa[k]
    s = np.zeros(k.size)
    # Newton on f(s) = n . (x(s) - c): the planes lie within a few mm of the layer
    # surface, so a few steps from s = 0 converge
    for _ in range(6):
        x, y, z = _helix_point(pos, tt, ct, kk, s)
        f = normal[:, 0] * (x - center[:, 0]) + normal[:, 1] * (y - center[:, 1])
        f += normal[:, 2] * (z - center[:, 2])
        d = _rotate(tt, kk * s)
        df = normal[:, 0] * d[:, 0] + normal[:, 1] * d[:, 1] + normal[:, 2] * ct
        with np.errstate(divide="ignore", invalid="ignore"):
            s = s - np.where(np.abs(df) > 1e-9, f / df, np.nan)
    x, y, z = _helix_point(pos, tt, ct, kk, s)
    hpos = np.stack([x, y, z], axis=1)
    local = geometry.to_local(mod, np.nan_to_num(hpos))
    ok = np.isfinite(s) & (np.abs(s) < 200.0 * sin_t[k]) & (np.abs(local[:, 2]) < 1e-4)
    ok &= geometry.inside(mod, local[:, 0], local[:, 1])
    if not np.any(ok):
        return None
    return k[ok], mod[ok], hpos[ok], _rotate(tt[ok], kk[ok] * s[ok]), s[ok]


#: Secondaries of a nuclear interaction: PDG id, charge, mass (GeV) and probability
#: (the TrackML event's material secondaries are 45% protons, 55% charged pions).
_SECONDARY_TYPES = (
    (2212, 1.0, 0.938272, 0.45),
    (211, 1.0, 0.139570, 0.275),
    (-211, -1.0, 0.139570, 0.275),
)
#: Mean number of charged secondaries per nuclear interaction (about 2 above 0.1 GeV
#: per interaction in the TrackML event).
SECONDARIES_MEAN = 2.5


def _secondaries(
    interactions: dict[str, np.ndarray],
    parent_ids: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Charged secondaries of nuclear interactions (a crude model, not a cascade).

    Per interaction a Poisson number (mean :data:`SECONDARIES_MEAN`) of protons and
    charged pions start at the interaction point.  Pions take a fraction Beta(1, 3) of
    the parent momentum within a Gaussian cone of 0.3 rad around its direction (the
    leading, forward particles); protons get 0.15 GeV + Exp(0.25 GeV) in an isotropic
    direction (nuclear fragments).  Energy is not conserved.  Ids: the parent's with
    ``(k + 1) << 20`` added for its k-th secondary.
    """
    n_int = interactions["particle"].size
    counts = rng.poisson(SECONDARIES_MEAN, n_int)
    which = np.repeat(np.arange(n_int), counts)
    k = np.arange(which.size) - np.repeat(np.cumsum(counts) - counts, counts)
    probs = np.array([t[3] for t in _SECONDARY_TYPES])
    kind = rng.choice(len(_SECONDARY_TYPES), size=which.size, p=probs / probs.sum())
    pmom = interactions["momentum"][which]
    pabs = np.linalg.norm(pmom, axis=1)
    pdir = pmom / np.maximum(pabs, 1e-12)[:, None]
    u = rng.random((which.size, 4))
    is_proton = np.array([t[0] for t in _SECONDARY_TYPES])[kind] == 2212
    # pions: forward cone around the parent; protons: isotropic
    # inverse CDFs: protons 0.15 GeV + Exp(0.25 GeV), pions a Beta(1, 3) fraction
    size = np.where(is_proton, 0.15 - 0.25 * np.log1p(-u[:, 0]), pabs * (1 - np.cbrt(1 - u[:, 0])))
    iso = np.stack(
        [
            np.sqrt(1 - (2 * u[:, 1] - 1) ** 2) * np.cos(2 * np.pi * u[:, 2]),
            np.sqrt(1 - (2 * u[:, 1] - 1) ** 2) * np.sin(2 * np.pi * u[:, 2]),
            2 * u[:, 1] - 1,
        ],
        axis=1,
    )
    cone = pdir + 0.3 * rng.standard_normal((which.size, 3))
    cone /= np.linalg.norm(cone, axis=1)[:, None]
    direction = np.where(is_proton[:, None], iso, cone)
    mom = direction * np.minimum(size, np.maximum(pabs, 0.05))[:, None]
    pos = interactions["position"][which]
    table = np.array([t[:3] for t in _SECONDARY_TYPES])
    return {
        "particle_id": parent_ids[interactions["particle"][which]] + ((k + 1) << 20),
        "particle_type": table[kind, 0].astype(np.int64),
        "vx": pos[:, 0],
        "vy": pos[:, 1],
        "vz": pos[:, 2],
        "px": mom[:, 0],
        "py": mom[:, 1],
        "pz": mom[:, 2],
        "q": table[kind, 1],
        "mass": table[kind, 2],
        "decay_length": np.full(which.size, np.inf),
    }


# --------------------------------------------------------------------------------------
# Measurement


def digitize(
    geometry: TrackerGeometry,
    module: np.ndarray,
    position: np.ndarray,
    momentum: np.ndarray,
    rng: np.random.Generator,
    smear: bool = True,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Measured positions (n, 3) and the cells of true module crossings.

    The local ``(u, v)`` is smeared with ``pitch / sqrt(12)`` (``smear``), clipped to the
    module and put back on the mid-plane.  Cells are the channels along the path through
    the sensor thickness; ``value`` is the path length in the cell (mm) for pixels
    (``pitch_v < 0.5`` mm) and 1 for strips.  The cells' ``hit`` column indexes the inputs.
    """
    module = np.asarray(module, np.int64)
    n = module.size
    local = geometry.to_local(module, position)
    u, v = local[:, 0], local[:, 1]
    if smear:
        noise = rng.standard_normal((n, 2))
        u = u + noise[:, 0] * geometry.pitch_u[module] / math.sqrt(12.0)
        v = v + noise[:, 1] * geometry.pitch_v[module] / math.sqrt(12.0)
    u, v = geometry.clip_to_module(module, u, v)
    measured = geometry.to_global(module, np.stack([u, v, np.zeros(n)], axis=1))

    # cluster: the segment through the sensor, centred on the true crossing
    ldir = geometry.local_direction(module, momentum)
    ldir = ldir / np.maximum(np.linalg.norm(ldir, axis=1), 1e-300)[:, None]
    pu, pv = geometry.pitch_u[module], geometry.pitch_v[module]
    # path from the mid-plane to a sensor surface (grazing tracks capped below); the
    # sensor is module_t thick (see TrackerGeometry.thickness)
    half = 0.5 * geometry.thickness[module] / np.maximum(np.abs(ldir[:, 2]), 1e-3)
    du = ldir[:, 0] * half
    dv = ldir[:, 1] * half
    # at most 20 cells along each axis (grazing loopers)
    du = np.clip(du, -20 * pu, 20 * pu)
    dv = np.clip(dv, -20 * pv, 20 * pv)
    span = np.abs(2 * du) / pu + np.abs(2 * dv) / pv
    npts = np.minimum(3 * np.ceil(span).astype(np.int64) + 1, 150)
    hit = np.repeat(np.arange(n), npts)
    start = np.repeat(np.cumsum(npts) - npts, npts)
    frac = (np.arange(hit.size) - start + 0.5) / npts[hit] - 0.5
    cu = local[hit, 0] + 2 * du[hit] * frac
    cv = local[hit, 1] + 2 * dv[hit] * frac
    cu, cv = geometry.clip_to_module(module[hit], cu, cv)
    ch0, ch1 = geometry.channels(module[hit], cu, cv)
    # one row per distinct (hit, ch0, ch1), via one int64 key (sorted: hit, ch0, ch1)
    n0 = int(ch0.max()) + 1 if ch0.size else 1
    n1 = int(ch1.max()) + 1 if ch1.size else 1
    key = (hit * n0 + ch0) * n1 + ch1
    uniq, inverse = np.unique(key, return_inverse=True)
    path_per_point = (2 * half / npts)[hit]  # the path through the sensor, shared evenly
    value = np.bincount(inverse.reshape(-1), weights=path_per_point, minlength=uniq.size)
    uhit = uniq // (n0 * n1)
    pix = geometry.pitch_v[module] < 0.5
    cells = pd.DataFrame(
        {
            "hit": uhit,
            "ch0": (uniq // n1) % n0,
            "ch1": uniq % n1,
            "value": np.where(pix[uhit], value, 1.0),
        }
    )
    return measured, cells


def _noise_hits(
    geometry: TrackerGeometry, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` noise hits uniformly on uniformly chosen modules: (module, position)."""
    module = rng.integers(0, len(geometry), size=count)
    hv, lo, hi = geometry.hv[module], geometry.min_hu[module], geometry.max_hu[module]
    r = rng.random((count, 2))
    # v with density proportional to the trapezoid's width: t = (v + hv) / (2 hv) solves
    # (lo t + (hi - lo) t^2 / 2) / ((lo + hi) / 2) = r, written without dividing by hi - lo
    t = r[:, 0] * (lo + hi) / (lo + np.sqrt(lo * lo + r[:, 0] * (hi * hi - lo * lo)))
    v = (2 * np.clip(t, 0.0, 1.0) - 1) * hv
    u = (2 * r[:, 1] - 1) * geometry.half_width(module, v)
    pos = geometry.to_global(module, np.stack([u, v, np.zeros(count)], axis=1))
    return module, pos


def _noise_directions(
    geometry: TrackerGeometry,
    noise_module: np.ndarray,
    module: np.ndarray,
    momentum: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Global directions that give each noise hit the cluster of a particle crossing drawn
    from the event's crossings in the same volume, in its module's own frame.

    In the real TrackML event noise clusters are as large as the particles' clusters of
    the same volume, but uncorrelated with where the noise hit is."""
    n = noise_module.size
    if module.size == 0:
        return rng.standard_normal((n, 3))
    local = geometry.local_direction(module, momentum)
    vol = geometry.volume_id[module]
    order = np.argsort(vol, kind="stable")
    vols, first, count = np.unique(vol[order], return_index=True, return_counts=True)
    nvol = geometry.volume_id[noise_module]
    at = np.minimum(np.searchsorted(vols, nvol), vols.size - 1)
    same = vols[at] == nvol
    pick = np.where(
        same,
        first[at] + np.floor(rng.random(n) * count[at]).astype(np.int64),
        rng.integers(0, module.size, size=n),
    )
    chosen = local[order[pick]]
    return np.einsum("nij,nj->ni", geometry.rotation[noise_module], chosen)


# --------------------------------------------------------------------------------------
# One event


def _round_sig(x: np.ndarray, digits: int) -> np.ndarray:
    """``x`` rounded to ``digits`` significant digits (exact decimals for the CSV)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(x)
    nz = (x != 0) & np.isfinite(x)
    mag = np.floor(np.log10(np.abs(x[nz]))).astype(np.int64)
    dec = digits - 1 - mag
    res = np.empty(dec.size)
    pos = dec >= 0
    scale = 10.0 ** np.abs(dec)
    res[pos] = np.round(x[nz][pos] * scale[pos]) / scale[pos]
    res[~pos] = np.round(x[nz][~pos] / scale[~pos]) * scale[~pos]
    out[nz] = res
    return out


def _select(particles: dict[str, np.ndarray], opts: TrackOptions) -> dict[str, np.ndarray]:
    """The particles with pT > pt_min and |eta| < eta_max."""
    pt = np.hypot(particles["px"], particles["py"])
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(particles["pz"] / pt)
    keep = (pt > opts.pt_min) & (np.abs(eta) < opts.eta_max)
    return {key: val[keep] for key, val in particles.items()}


def _propagate_table(
    geometry: TrackerGeometry,
    particles: dict[str, np.ndarray],
    opts: TrackOptions,
    rng: np.random.Generator,
    material: np.ndarray,
    interact: bool,
) -> SimulatedHits:
    """:func:`propagate` for a particle table: those below ``hit_pt_min`` get no hits."""
    vertex = np.stack([particles[c] for c in ("vx", "vy", "vz")], axis=1).astype(np.float64)
    mom = np.stack([particles[c] for c in ("px", "py", "pz")], axis=1).astype(np.float64)
    pt = np.hypot(mom[:, 0], mom[:, 1])
    charge = np.where(pt >= opts.hit_pt_min, np.asarray(particles["q"], np.float64), 0.0)
    hadron = ~np.isin(np.abs(np.asarray(particles["particle_type"])), (11, 13))
    return propagate(
        geometry,
        vertex,
        mom,
        charge,
        particles.get("mass"),
        particles.get("decay_length"),
        field_tesla=opts.field_tesla,
        material=material,
        energy_loss=opts.energy_loss,
        max_turns=opts.max_turns,
        interaction_length_x0=(
            opts.interaction_length_x0 if interact and opts.nuclear_interactions else math.inf
        ),
        hadron=hadron,
        rng=rng,
    )


def simulate_event(
    geometry: TrackerGeometry,
    particles: dict[str, np.ndarray],
    opts: TrackOptions,
    rng: np.random.Generator,
    material: np.ndarray | None = None,
) -> dict[str, pd.DataFrame]:
    """Simulate one event's hits from its particles; the four TrackML tables.

    Parameters
    ----------
    particles
        Arrays ``particle_id, particle_type, vx, vy, vz, px, py, pz, q`` and optionally
        ``mass`` (GeV) and ``decay_length`` (mm).
    opts
        Field, material, measurement, inefficiency and noise options.

    Returns
    -------
    dict
        ``hits``, ``truth``, ``particles``, ``cells`` DataFrames with the TrackML columns.
    """
    particles = {key: np.asarray(val) for key, val in particles.items()}
    material = _layer_material(geometry, opts) if material is None else material
    sim = _propagate_table(geometry, particles, opts, rng, material, interact=True)
    inter = sim.meta["interactions"]
    if inter["particle"].size:
        sec = _secondaries(inter, np.asarray(particles["particle_id"], np.int64), rng)
        sec = _select(sec, opts)
        sim2 = _propagate_table(geometry, sec, opts, rng, material, interact=False)
        nprim = len(particles["particle_id"])
        keys = [k for k in particles if k in sec]
        particles = {k: np.concatenate([particles[k], sec[k]]) for k in keys}
        sim = SimulatedHits(
            particle=np.concatenate([sim.particle, sim2.particle + nprim]),
            module=np.concatenate([sim.module, sim2.module]),
            position=np.concatenate([sim.position, sim2.position]),
            momentum=np.concatenate([sim.momentum, sim2.momentum]),
            path=np.concatenate([sim.path, sim2.path]),
        )
    n = len(particles["particle_id"])
    vertex = np.stack([particles[c] for c in ("vx", "vy", "vz")], axis=1).astype(np.float64)
    mom = np.stack([particles[c] for c in ("px", "py", "pz")], axis=1).astype(np.float64)
    kept = rng.random(len(sim)) >= opts.inefficiency
    part, mod = sim.particle[kept], sim.module[kept]
    tpos, tmom = sim.position[kept], sim.momentum[kept]
    measured, cells = digitize(geometry, mod, tpos, tmom, rng, smear=opts.smear)
    nsig = part.size
    f = opts.noise_fraction
    nnoise = int(rng.poisson(f / (1.0 - f) * nsig)) if f > 0 and nsig else 0
    if nsig + nnoise == 0:
        nnoise = 1  # a TrackML event has hits: an event without any gets one noise hit
    nmod, npos = _noise_hits(geometry, nnoise, rng)
    _, ncells = digitize(geometry, nmod, npos, _noise_directions(geometry, nmod, mod, tmom, rng),
                         rng, smear=False)  # fmt: skip
    nch0 = ncells["ch0"].to_numpy()
    nch1 = ncells["ch1"].to_numpy()
    nvalue = ncells["value"].to_numpy()
    all_mod = np.concatenate([mod, nmod])
    all_pos = np.concatenate([measured, npos])
    ids = np.asarray(particles["particle_id"], np.int64)
    hit_pid = np.concatenate([ids[part], np.zeros(nnoise, np.int64)])
    tru_pos = np.concatenate([tpos, npos])
    tru_mom = np.concatenate([tmom, np.zeros((nnoise, 3))])

    # hit order: by module, random within a module (no truth in the row order)
    shuffle = rng.permutation(all_mod.size)
    order = shuffle[np.lexsort((geometry.module_id[all_mod[shuffle]],
                                geometry.layer_id[all_mod[shuffle]],
                                geometry.volume_id[all_mod[shuffle]]))]  # fmt: skip
    hit_id = np.empty(order.size, np.int64)
    hit_id[order] = np.arange(1, order.size + 1)

    pos_r = np.round(all_pos[order], 4)
    hits = pd.DataFrame(
        {
            "hit_id": hit_id[order],
            "x": pos_r[:, 0],
            "y": pos_r[:, 1],
            "z": pos_r[:, 2],
            "volume_id": geometry.volume_id[all_mod[order]],
            "layer_id": geometry.layer_id[all_mod[order]],
            "module_id": geometry.module_id[all_mod[order]],
        }
    )
    tp = np.round(tru_pos[order], 4)
    tm = _round_sig(tru_mom[order], 7)
    truth = pd.DataFrame(
        {
            "hit_id": hit_id[order],
            "particle_id": hit_pid[order],
            "tx": tp[:, 0],
            "ty": tp[:, 1],
            "tz": tp[:, 2],
            "tpx": tm[:, 0],
            "tpy": tm[:, 1],
            "tpz": tm[:, 2],
        }
    )
    nhits = np.bincount(part, minlength=n)
    vtx = np.round(vertex, 4)
    pm = _round_sig(mom, 7)
    ptable = pd.DataFrame(
        {
            "particle_id": ids,
            "particle_type": np.asarray(particles["particle_type"], np.int64),
            "vx": vtx[:, 0],
            "vy": vtx[:, 1],
            "vz": vtx[:, 2],
            "px": pm[:, 0],
            "py": pm[:, 1],
            "pz": pm[:, 2],
            "q": np.rint(particles["q"]).astype(np.int64),
            "nhits": nhits.astype(np.int64),
        }
    ).sort_values("particle_id", kind="stable", ignore_index=True)
    # as in the published TrackML truth, material secondaries weigh 0 (their ids carry
    # the secondary index in bits 20-31)
    primary = (ptable["particle_id"].to_numpy() & (0xFFF << 20)) == 0
    truth["weight"] = _round_sig(trackml_weights(truth, ptable, selected=primary), 7)
    # cells of each hit, in hit-id order (each hit's own cells come sorted by channel)
    cell_hit = np.concatenate([cells["hit"].to_numpy(), nsig + ncells["hit"].to_numpy()])
    corder = np.argsort(hit_id[cell_hit], kind="stable")
    cells_all = pd.DataFrame(
        {
            "hit_id": hit_id[cell_hit][corder],
            "ch0": np.concatenate([cells["ch0"].to_numpy(), nch0])[corder],
            "ch1": np.concatenate([cells["ch1"].to_numpy(), nch1])[corder],
            "value": _round_sig(np.concatenate([cells["value"].to_numpy(), nvalue]), 6)[corder],
        }
    )
    return {
        "hits": hits,
        "truth": truth,
        "particles": ptable,
        "cells": cells_all,
    }


def _write_csv_gz(table: pd.DataFrame, path: Path) -> None:
    """CSV with a plain header, gzip level 1, no time stamp or name in the gzip header
    (byte-reproducible).  pyarrow formats the numbers (shortest round-trip form) about
    8x faster than pandas."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    buf = pa.BufferOutputStream()
    pacsv.write_csv(
        pa.Table.from_pandas(table, preserve_index=False),
        buf,
        write_options=pacsv.WriteOptions(include_header=False),
    )
    data = (",".join(map(str, table.columns)) + "\n").encode() + buf.getvalue().to_pybytes()
    path.write_bytes(gzip.compress(data, compresslevel=1, mtime=0))


# --------------------------------------------------------------------------------------
# Pythia particles


def _next_events(pythia: Any, count: int) -> Any:
    """``count`` events from ``pythia`` (retrying the few it may fail) as one batch."""
    import awkward as ak

    parts, got, tries = [], 0, 0
    while got < count:
        batch = pythia.nextBatch(count - got)
        parts.append(batch["prt"])
        got += len(batch)
        tries += 1
        if tries > 10 and got < count:
            raise GenerationError(f"Pythia failed to generate {count - got} of {count} events")
    return parts[0] if len(parts) == 1 else ak.concatenate(parts)


def _particles_of(
    prt: Any,
    interaction0: int,
    charges: _pythia.ParticleCharges,
    opts: TrackOptions,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Selected charged particles of a batch of interactions, with beam-spot vertices."""
    import awkward as ak

    nint = len(prt)
    counts = ak.to_numpy(ak.num(prt)).astype(np.int64)
    get = lambda arr: ak.to_numpy(ak.flatten(arr))  # noqa: E731
    vert = lambda arr: np.asarray(ak.to_numpy(ak.fill_none(ak.flatten(arr), 0.0)), float)  # noqa: E731
    pid = get(prt["id"]).astype(np.int64)
    status = get(prt["status"]).astype(np.int64)
    px, py, pz = (get(prt["p"][c]).astype(np.float64) for c in ("px", "py", "pz"))
    mass = get(prt["m"]).astype(np.float64)
    tau = get(prt["tau"]).astype(np.float64)
    vx, vy, vz = (vert(prt["vProd"][c]) for c in ("px", "py", "pz"))
    # one beam-spot vertex per interaction
    spot = rng.standard_normal((nint, 3)) * np.array(
        [opts.beam_sigma_xy, opts.beam_sigma_xy, opts.beam_sigma_z]
    )
    if counts.size and counts.max() >= 1 << 20:
        # the low 20 bits of a particle id hold the record index (secondaries use 20-31)
        raise GenerationError(
            f"a Pythia event has {int(counts.max())} entries; accepted: below 2^20"
        )
    which = np.repeat(np.arange(nint), counts)
    index = np.arange(pid.size) - np.repeat(np.cumsum(counts) - counts, counts)
    charge = charges(pid)
    ptot = np.sqrt(px**2 + py**2 + pz**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        decay_length = np.where(status > 0, np.inf, tau * ptot / np.where(mass > 0, mass, 1.0))
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(pz / pt)
    sel = (
        (charge != 0)
        & ((status > 0) | (decay_length >= MIN_DECAY_LENGTH))
        & (pt > opts.pt_min)
        & (np.abs(eta) < opts.eta_max)
    )
    w = which[sel]
    return {
        "particle_id": ((w + interaction0 + 1).astype(np.int64) << 32) | index[sel],
        "particle_type": pid[sel],
        "vx": vx[sel] + spot[w, 0],
        "vy": vy[sel] + spot[w, 1],
        "vz": vz[sel] + spot[w, 2],
        "px": px[sel],
        "py": py[sel],
        "pz": pz[sel],
        "q": charge[sel],
        "mass": mass[sel],
        "decay_length": decay_length[sel],
    }


def _make_generator(settings: list[str], seed: int, init_file: str, save: bool = False) -> Any:
    """A Pythia that saves (``save``) or loads its multi-parton-interaction initialisation.

    Initialising MPI for inelastic pile-up takes ~13 s (diffractive systems), loading it
    0.5 s.  Loaded tables differ from freshly computed ones in the last digits, so every
    block loads the same file, written once per sample.
    """
    mode = 1 if save else 2
    return _pythia.make_pythia(
        [
            *settings,
            f"MultipartonInteractions:reuseInit = {mode}",
            f"MultipartonInteractions:initFile = {init_file}",
        ],
        seed,
    )


def _generate_blocks(task: dict[str, Any], report: Any) -> list[dict[str, Any]]:
    """Generate the events of each block of ``task['blocks']`` into ``task['work']``."""
    opts = TrackOptions(**task["options"])
    geometry = geometry_from(opts.geometry)
    material = _layer_material(geometry, opts)
    work = Path(task["work"])
    results = []
    for block in task["blocks"]:
        t0 = time.monotonic()
        # Fresh Pythia instances per block, all loading the sample's one MPI
        # initialisation: a block's content depends on its seeds and that file only.
        hard, pileup = (
            _make_generator(task["settings"][kind], block[f"{kind}_seed"], task["init_files"][kind])
            if task["settings"][kind]
            else None
            for kind in ("hard", "pileup")
        )
        charges = _pythia.ParticleCharges(hard if hard is not None else pileup)
        rng = np.random.default_rng(block["detector_seed"])
        init_s = time.monotonic() - t0
        events = []
        for event_id in block["event_ids"]:
            t1 = time.monotonic()
            npu = int(rng.poisson(opts.mu)) if opts.mu > 0 else 0
            while npu == 0 and hard is None:  # pile-up only: at least one interaction
                npu = int(rng.poisson(opts.mu))
            groups = []
            if hard is not None:
                groups.append(_particles_of(_next_events(hard, 1), 0, charges, opts, rng))
            if npu:
                first = 1 if hard is not None else 0
                groups.append(_particles_of(_next_events(pileup, npu), first, charges, opts, rng))
            particles = {k: np.concatenate([g[k] for g in groups]) for k in groups[0]}
            t2 = time.monotonic()
            tables = simulate_event(geometry, particles, opts, rng, material)
            t3 = time.monotonic()
            prefix = work / f"event{event_id:09d}"
            for part in _PART_ORDER:
                _write_csv_gz(tables[part], Path(f"{prefix}-{part}.csv.gz"))
            t4 = time.monotonic()
            noise = int((tables["truth"]["particle_id"] == 0).sum())
            events.append(
                {
                    "event_id": event_id,
                    "pileup": npu,
                    "particles": len(tables["particles"]),
                    "hits": len(tables["hits"]),
                    "noise_hits": noise,
                    "pythia_seconds": round(t2 - t1, 3),
                    "simulation_seconds": round(t3 - t2, 3),
                    "writing_seconds": round(t4 - t3, 3),
                }
            )
            report(1)
        results.append(
            {"block": block["block"], "init_seconds": round(init_s, 3), "events": events}
        )
    return results


# --------------------------------------------------------------------------------------
# The whole sample


def _write_detectors(source: str | None, geometry: TrackerGeometry, path: Path) -> None:
    """The geometry file used, byte for byte (gzipped if it was plain CSV)."""
    if source is None:
        from importlib import resources

        data = (resources.files("fivesigma.physics") / "data" / DEFAULT_GEOMETRY_FILE).read_bytes()
    else:
        data = Path(source).read_bytes()
    if data[:2] != b"\x1f\x8b":  # not gzip yet
        data = geometry.to_csv_bytes() if not data else gzip.compress(data, 1, mtime=0)
    path.write_bytes(data)


def run(
    events: int,
    out: Path,
    seed: int,
    jobs: int,
    luminosity_fb: float = 140.0,
    progress: bool = True,
    detector: Any = None,
    options: dict[str, Any] | TrackOptions | None = None,
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Generate ``events`` TrackML events into ``out``; returns (files, provenance).

    ``luminosity_fb`` and ``detector`` are accepted for the common generator interface:
    the detector is ``options["geometry"]`` and the simulation options.  Files are written
    into a hidden temporary directory inside ``out`` and moved into place when complete.
    """
    _pythia.require_pythia()
    if detector is not None and not isinstance(detector, NoResponse):
        raise GenerationError(
            "tracks take no detector response; accepted: None (the detector is the "
            "geometry and simulation options, see fivesigma.generate.tracks.TrackOptions)"
        )
    opts = parse_options(options)
    geometry = geometry_from(opts.geometry)
    settings = settings_for(opts)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    out = Path(out)
    work = Path(tempfile.mkdtemp(dir=out, prefix=".fivesigma-generate-"))
    # Pythia reads a setting's value up to the first blank: the MPI initialisation files
    # go to a directory of the system's without blanks (not in out, which may have some)
    init_dir = Path(tempfile.mkdtemp(prefix="fivesigma-mpi-"))
    try:
        if any(c.isspace() for c in str(init_dir)):
            raise GenerationError(
                f"the temporary directory '{init_dir}' has a blank, which Pythia cannot read "
                "in a file setting; set TMPDIR to a directory without blanks"
            )
        nblocks = math.ceil(events / BLOCK_EVENTS)
        seeds = _pythia.job_seeds(seed, "tracks", nblocks)
        blocks = []
        for b in range(nblocks):
            first = b * BLOCK_EVENTS
            blocks.append(
                {
                    "block": b,
                    "hard_seed": seeds[b].pythia,
                    # the pile-up generator's stream: a fixed shift of the hard one's
                    "pileup_seed": (seeds[b].pythia + _pythia.PYTHIA_SEED_MAX // 2)
                    % _pythia.PYTHIA_SEED_MAX
                    + 1,
                    "detector_seed": seeds[b].detector,
                    "event_ids": list(range(first + 1, min(first + BLOCK_EVENTS, events) + 1)),
                }
            )
        # MPI initialisation once per sample, with block 0's seeds, loaded by every block
        init_files = {}
        for kind in ("hard", "pileup"):
            init_files[kind] = str(init_dir / f"mpi-init-{kind}.dat")
            if settings[kind]:
                _make_generator(settings[kind], blocks[0][f"{kind}_seed"], init_files[kind], True)
        njobs = max(1, min(jobs, nblocks))
        tasks = []
        for j in range(njobs):
            mine = blocks[j::njobs]
            task = {
                "options": asdict(opts),
                "settings": settings,
                "work": str(work),
                "init_files": init_files,
                "blocks": mine,
            }
            tasks.append(("tracks", task, sum(len(b["event_ids"]) for b in mine)))
        t0 = time.monotonic()
        results = [
            r
            for res in _pythia.run_jobs(_generate_blocks, tasks, njobs, progress=progress)
            for r in res
        ]
        elapsed = time.monotonic() - t0
        results.sort(key=lambda r: r["block"])
        per_event = [e for r in results for e in r["events"]]
        _write_detectors(opts.geometry, geometry, work / "detectors.csv.gz")
        names = [f"event{e['event_id']:09d}" for e in per_event]
        totals = {
            key: int(sum(e[key] for e in per_event))
            for key in ("pileup", "particles", "hits", "noise_hits")
        }
        provenance = {
            "format_version": FORMAT_VERSION,
            "fivesigma_version": __version__,
            "pythia8mc_version": _pythia.pythia_version(),
            "sample": "tracks",
            "format": "TrackML CSV (gzip): eventNNNNNNNNN-{hits,truth,particles,cells}.csv.gz",
            "options": asdict(opts),
            "pythia_settings": settings,
            "geometry": {
                "source": "packaged TrackML detector" if opts.geometry is None else opts.geometry,
                "sha256_16": _geometry_digest(opts.geometry),
                "modules": len(geometry),
                "layers": len(geometry.layers),
            },
            "material_x0_per_layer": {
                f"{lay.volume_id}:{lay.layer_id}": float(x)
                for lay, x in zip(geometry.layers, _layer_material(geometry, opts), strict=True)
            },
            "seed": seed,
            "jobs": jobs,
            "block_events": BLOCK_EVENTS,
            "block_seeds": [
                {
                    "block": b["block"],
                    "pythia": b["hard_seed"],
                    "pileup": b["pileup_seed"],
                    "detector": b["detector_seed"],
                    "events": len(b["event_ids"]),
                }
                for b in blocks
            ],
            "seed_derivation": (
                "one seed pair per block of block_events events, "
                "SeedSequence([seed, crc32('tracks'), block]).generate_state(2): "
                "pythia = w0 % 900000000 + 1 (hard process), pile-up = (pythia + 450000000) "
                "% 900000000 + 1, detector = w1 (beam spot, pile-up counts, simulation); "
                "the multi-parton-interaction initialisation of each generator is computed "
                "once with block 0's seed and loaded by every block "
                "(MultipartonInteractions:reuseInit)"
            ),
            "events": names,
            "event_summary": per_event,
            "totals": totals,
            "block_init_seconds": [r["init_seconds"] for r in results],
            "created": created,
            "generation_seconds": round(elapsed, 3),
        }
        text = json.dumps(provenance, indent=1, sort_keys=True) + "\n"
        (work / "provenance.json").write_text(text)
        for name in names:
            for part in _PART_ORDER:
                fname = f"{name}-{part}.csv.gz"
                os.replace(work / fname, out / fname)
        os.replace(work / "detectors.csv.gz", out / "detectors.csv.gz")
        os.replace(work / "provenance.json", out / "provenance.json")
        return {"detectors": out / "detectors.csv.gz"}, provenance
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(init_dir, ignore_errors=True)
