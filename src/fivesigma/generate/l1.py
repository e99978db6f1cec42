"""The built-in ``l1`` samples: a zero-bias Level-1 trigger stream and signals, as L1
objects at hardware integer scales.

For trigger studies (AXOL1TL-like autoencoders on L1 objects, CICADA-like networks on
calorimeter regions), judged by the rate of zero-bias events they pass.

Processes (option ``process``), Pythia8 at sqrt(s) = 14 TeV with multi-parton
interactions and hadronisation on, particles with c*tau > 10 mm stable:

``zerobias``   one ``SoftQCD:inelastic`` interaction (option ``minbias``:
               ``nondiffractive`` for ``SoftQCD:nonDiffractive``) plus pile-up, label 0
``hh4b``       HH -> 4b.  Pythia has no SM gg -> HH, so resonant HH: a heavy CP-even
               scalar H2 (``Higgs:useBSM``, ``HiggsBSM:gg2H2``) of mass ``x_mass``
               (default 300 GeV) decaying only to h h, with h -> b bbar only, label 1
``haa4gamma``  gg -> h (125 GeV, ``HiggsSM:gg2H``) with h -> a a only and a -> gamma
               gamma only, the pseudoscalar a (PDG 36) of mass ``a_mass`` (default 15 GeV),
               label 2
``zprime``     Z' -> q qbar (d, u, s, c, b; ``NewGaugeBoson:ffbar2gmZZprime``, only the Z'
               of ``Zprime:gmZmode = 3``) of mass ``zprime_mass`` (default 1500 GeV),
               label 3
``ttbar``      ttbar (``Top:gg2ttbar``, ``Top:qqbar2ttbar``), all decays, label 4

Pile-up
-------
Every event gets a Poisson number (mean ``mu``, default 60, 0..300) of pile-up
interactions, ``n_pileup``.  As experiments mix pile-up from a library, each block of
:data:`BLOCK_EVENTS` events first generates a *pool* of ``pool_size`` (default 2000)
minimum-bias interactions (``minbias``), reduced once to calorimeter deposits and muons;
each event then overlays Poisson(mu) interactions drawn at random (with replacement) from
its block's pool, each copy rotated in phi by a random whole number of towers (72 choices)
and mirrored in eta with probability 1/2 (the detector is symmetric), so one pool
interaction appears in 144 different orientations.  The overlay is one integer
``bincount`` per block of the pooled (event, tower) deposits, so it costs little next to
generating the pool; the calorimeter response (smearing, thresholds) is applied to each
event's summed towers.

A pool interaction is reused about ``mu * BLOCK_EVENTS / pool_size`` times (30 at mu = 60
with the defaults; the provenance's ``pileup_reuse``).  Reuse leaves the mean of any
quantity (a trigger's pass fraction, a rate) unbiased, but its statistical precision at
small pass fractions, where rare hard pile-up interactions decide, is set by the number of
distinct interactions (``events + pool_size x blocks``, in the provenance), not by the
number of events: raise ``pool_size`` for rates far below 1 kHz.

The reduction to L1 objects (towers, jets, e/gamma, muons, MET, CICADA regions, hardware
scales) is :mod:`fivesigma.physics.l1`; its parameters (:class:`L1Response`: thresholds,
resolutions) are options of this sample too, e.g. ``tower_threshold`` or ``jet_pt_min``.

Determinism: each block has its own seeds (hard process, pool, overlay and response) from
(seed, process, block), and the multi-parton-interaction initialisation of each generator
is computed once per sample and loaded by every block, so a sample depends on
(seed, events, options) only, not on ``jobs``.

File ``l1_<process>.root``, TTree ``Events``, one entry per event, fixed-size branches:

====================================  ==========  ============================================
branch                                type        meaning
====================================  ==========  ============================================
event                                 uint64      event number (0..events-1)
label                                 int32       process code (:data:`LABELS`)
n_pileup                              int32       overlaid pile-up interactions
weight                                float32     signals: sigma[pb] x 1000 x luminosity_fb /
                                                  events; zerobias: 1
jet_pt, jet_eta, jet_phi              float32[10] L1 jets (GeV, radians), pT-ordered, 0 if absent
hw_jet_pt, hw_jet_eta, hw_jet_phi     int32[10]   hardware values (0.5 GeV, 0.0435, 2 pi / 144)
egamma_pt, egamma_eta, egamma_phi     float32[4]  L1 e/gamma
hw_egamma_pt, hw_egamma_eta, ...phi   int32[4]
egamma_iso, hw_egamma_iso             float32[4], relative isolation; 1 if isolated
                                      int32[4]
muon_pt, muon_eta, muon_phi           float32[4]  L1 muons
hw_muon_pt, hw_muon_eta, hw_muon_phi  int32[4]
n_jet, n_egamma, n_muon               int32       candidates found (may exceed 10 / 4 / 4)
met, met_phi, hw_met, hw_met_phi      float32,    missing ET
                                      int32
regions                               uint16      CICADA region ETs (18 phi x 14 eta, 0.5 GeV,
                                      [18][14]    10 bits)
====================================  ==========  ============================================

plus a TObjString ``provenance`` (JSON) and ``provenance.json``.  Read a file back with
:func:`read` (a table for :func:`fivesigma.physics.l1.axol1tl_inputs` and friends).

>>> from fivesigma.generate import generate
>>> generate("l1", events=1000, out="out", options={"process": "zerobias", "mu": 60})  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import numbers
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma import __version__
from fivesigma.errors import ConfigError, DataError, GenerationError, close_matches
from fivesigma.generate import _pythia
from fivesigma.physics import l1 as phys
from fivesigma.physics.l1 import L1Response

__all__ = [
    "BLOCK_EVENTS",
    "FORMAT_VERSION",
    "L1_PROCESSES",
    "LABELS",
    "L1Options",
    "NoDetector",
    "content_key",
    "file_names",
    "parse_options",
    "read",
    "run",
    "settings_for",
]

#: Bump when the file layout or the meaning of a branch changes (invalidates caches).
FORMAT_VERSION = 1

#: Events per block of work, each with its own seeds and pile-up pool.
BLOCK_EVENTS = 1000

#: Events reduced at a time (memory: about 0.5 MB per event in the tower windows).
_BATCH = 250

BASE_SETTINGS: tuple[str, ...] = (
    "Beams:idA = 2212",
    "Beams:idB = 2212",
    "Beams:eCM = 14000.",
    "PartonLevel:MPI = on",
    "HadronLevel:all = on",
    "ParticleDecays:limitTau0 = on",
    "ParticleDecays:tau0Max = 10.",
)

MINBIAS_PROCESSES: dict[str, tuple[str, ...]] = {
    "inelastic": ("SoftQCD:inelastic = on",),
    "nondiffractive": ("SoftQCD:nonDiffractive = on",),
}

#: Process names and their ``label`` codes.
LABELS: dict[str, int] = {"zerobias": 0, "hh4b": 1, "haa4gamma": 2, "zprime": 3, "ttbar": 4}
L1_PROCESSES: tuple[str, ...] = tuple(LABELS)


@dataclass(frozen=True)
class NoDetector:
    """The ``detector`` of the ``l1`` sample: none; the L1 response parameters are options
    (:class:`fivesigma.physics.l1.L1Response` fields), which the cache key holds."""

    def to_dict(self) -> dict[str, Any]:
        """Nothing to add to the cache key."""
        return {}


@dataclass(frozen=True)
class L1Options:
    """Options of the ``l1`` sample besides the L1 response's (module docstring).

    Parameters
    ----------
    process
        One of :data:`L1_PROCESSES`.
    mu
        Mean number of pile-up interactions per event (Poisson), 0..300.
    pool_size
        Minimum-bias interactions in each block's pile-up pool, 1..1_000_000.
    minbias
        Pile-up (and zero-bias) process: ``inelastic`` or ``nondiffractive``.
    a_mass
        haa4gamma: pseudoscalar mass (GeV), 0.5..62.
    x_mass
        hh4b: heavy scalar mass (GeV), 260..5000.
    zprime_mass
        zprime: Z' mass (GeV), 100..10000.
    """

    process: str = "zerobias"
    mu: float = 60.0
    pool_size: int = 2000
    minbias: str = "inelastic"
    a_mass: float = 15.0
    x_mass: float = 300.0
    zprime_mass: float = 1500.0


_RANGES: dict[str, tuple[float, float]] = {
    "mu": (0.0, 300.0),
    "pool_size": (1, 1_000_000),
    "a_mass": (0.5, 62.0),
    "x_mass": (260.0, 5000.0),
    "zprime_mass": (100.0, 10000.0),
}


def parse_options(
    options: dict[str, Any] | None,
) -> tuple[L1Options, L1Response]:
    """Validate ``options`` into (L1Options, L1Response).

    Keys are :class:`L1Options` fields and :class:`~fivesigma.physics.l1.L1Response`
    fields; None means the default.  Raises a one-line GenerationError.

    >>> parse_options({"mu": 20})[0].mu
    20.0
    >>> parse_options({"mu": -1})
    Traceback (most recent call last):
    ...
    fivesigma.errors.GenerationError: l1 option mu must be in [0, 300], got -1
    """
    if options is not None and not isinstance(options, dict):
        raise GenerationError(
            f"l1 options must be a dict of option names to values, got {type(options).__name__}"
        )
    options = {k: v for k, v in dict(options or {}).items() if v is not None}
    own = L1Options.__dataclass_fields__
    accepted = (*own, *L1Response.field_names())
    for key in options:
        if key not in accepted:
            raise GenerationError(
                f"unknown l1 option {key!r}; accepted: {', '.join(accepted)} "
                f"({close_matches(str(key), accepted)})"
            )
    values: dict[str, Any] = {}
    for key, (low, high) in _RANGES.items():
        if key not in options:
            continue
        value = options[key]
        if (
            isinstance(value, bool | np.bool_)
            or not isinstance(value, numbers.Real)
            or not low <= value <= high
        ):
            raise GenerationError(f"l1 option {key} must be in [{low:g}, {high:g}], got {value!r}")
        if key == "pool_size":
            if int(value) != value:
                raise GenerationError(f"l1 option pool_size must be an integer, got {value!r}")
            values[key] = int(value)
        else:
            values[key] = float(value)
    for key, choices in (("process", LABELS), ("minbias", MINBIAS_PROCESSES)):
        if key in options:
            value = options[key]
            if not isinstance(value, str) or value not in choices:
                raise GenerationError(
                    f"unknown l1 {key} {value!r}; accepted: {', '.join(choices)} "
                    f"({close_matches(str(value), choices)})"
                )
            values[key] = value
    response_values = {k: v for k, v in options.items() if k not in own}
    for key, value in response_values.items():
        if isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_):
            response_values[key] = float(value)
    try:
        response = L1Response(**response_values)
    except ConfigError as err:
        raise GenerationError(f"l1 option: {err}") from None
    return L1Options(**values), response


def _hard_settings(opts: L1Options) -> tuple[str, ...]:
    if opts.process == "zerobias":
        return MINBIAS_PROCESSES[opts.minbias]
    if opts.process == "hh4b":
        return (
            "Higgs:useBSM = on",
            "HiggsBSM:gg2H2 = on",
            f"35:m0 = {opts.x_mass:g}",
            "35:onMode = off",
            "35:onIfMatch = 25 25",
            "25:onMode = off",
            "25:onIfMatch = 5 -5",
        )
    if opts.process == "haa4gamma":
        m = opts.a_mass
        return (
            "HiggsSM:gg2H = on",
            "25:onMode = off",
            "25:addChannel = 1 1.0 100 36 36",
            f"36:m0 = {m:g}",
            f"36:mWidth = {1e-4 * m:g}",
            f"36:mMin = {0.99 * m:g}",
            f"36:mMax = {1.01 * m:g}",
            "36:onMode = off",
            "36:addChannel = 1 1.0 100 22 22",
        )
    if opts.process == "zprime":
        return (
            "NewGaugeBoson:ffbar2gmZZprime = on",
            "Zprime:gmZmode = 3",
            f"32:m0 = {opts.zprime_mass:g}",
            "32:onMode = off",
            "32:onIfAny = 1 2 3 4 5",
        )
    return ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on")


def settings_for(opts: L1Options) -> dict[str, list[str]]:
    """Pythia settings of the hard-process (zerobias: the triggering interaction) and the
    pile-up generators (pile-up: empty at mu = 0)."""
    return {
        "hard": [*BASE_SETTINGS, *_hard_settings(opts)],
        "pileup": [*BASE_SETTINGS, *MINBIAS_PROCESSES[opts.minbias]] if opts.mu > 0 else [],
    }


def file_names(options: dict[str, Any] | None = None) -> tuple[str, ...]:
    """Names (without ``.root``) of the files the sample writes."""
    return (f"l1_{parse_options(options)[0].process}",)


def content_key(options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything besides the call arguments that changes the sample (for cache keys)."""
    opts, response = parse_options(options)
    return {
        "format_version": FORMAT_VERSION,
        "block_events": BLOCK_EVENTS,
        "batch": _BATCH,
        "options": asdict(opts),
        "response": response.to_dict(),
        "settings": settings_for(opts),
        "pythia8mc": _pythia.pythia_version(),
    }


# --------------------------------------------------------------------------------------
# Pythia events -> deposits


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


def _deposits_of(
    prt: Any, charges: _pythia.ParticleCharges, response: L1Response
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Calorimeter deposits and muons of the final-state particles of a batch of events."""
    import awkward as ak

    counts = ak.to_numpy(ak.num(prt)).astype(np.int64)
    get = lambda arr: ak.to_numpy(ak.flatten(arr))  # noqa: E731
    status = get(prt["status"])
    final = status > 0
    event = np.repeat(np.arange(counts.size), counts)[final]
    pid = get(prt["id"]).astype(np.int64)[final]
    px, py, pz = (get(prt["p"][c]).astype(np.float64)[final] for c in ("px", "py", "pz"))
    return phys.deposit_particles(event, px, py, pz, pid, charges(pid), response)


@dataclass
class _Pool:
    """Deposits of the pool interactions in CSR form (``offsets`` per interaction)."""

    tower: np.ndarray
    em: np.ndarray
    had: np.ndarray
    offsets: np.ndarray
    mu_event: np.ndarray
    mu_pt: np.ndarray
    mu_eta: np.ndarray
    mu_phi: np.ndarray

    @classmethod
    def build(
        cls, deposits: dict[str, np.ndarray], muons: dict[str, np.ndarray], size: int
    ) -> _Pool:
        counts = np.bincount(deposits["event"], minlength=size)
        return cls(
            tower=deposits["tower"].astype(np.int32),
            em=deposits["em"].astype(np.float32),
            had=deposits["had"].astype(np.float32),
            offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            mu_event=muons["event"],
            mu_pt=muons["pt"],
            mu_eta=muons["eta"],
            mu_phi=muons["phi"],
        )

    @property
    def size(self) -> int:
        return self.offsets.size - 1


def overlay(
    pool: _Pool, counts: np.ndarray, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Deposits and muons of ``counts[i]`` pool interactions for each event ``i``.

    Each copy is drawn uniformly with replacement, rotated in phi by a random whole number
    of towers and mirrored in eta with probability 1/2.  Returns (deposits, muons) as
    :func:`fivesigma.physics.l1.deposit_particles` does (deposits not merged per tower).
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    which = rng.integers(0, pool.size, size=total)
    shift = rng.integers(0, phys.N_PHI, size=total)
    flip = rng.integers(0, 2, size=total).astype(bool)
    copy_event = np.repeat(np.arange(counts.size), counts)
    start = pool.offsets[which]
    length = pool.offsets[which + 1] - start
    n = int(length.sum())
    copy_of = np.repeat(np.arange(total), length)
    pos = (
        np.arange(n, dtype=np.int64)
        - np.repeat(np.cumsum(length) - length, length)
        + start[copy_of]
    )
    tower = pool.tower[pos]
    ieta, iphi = np.divmod(tower, phys.N_PHI)
    iphi = (iphi + shift[copy_of].astype(np.int32)) % phys.N_PHI
    ieta = np.where(flip[copy_of], phys.N_ETA - 1 - ieta, ieta)
    deposits = {
        "event": copy_event[copy_of],
        "tower": ieta * phys.N_PHI + iphi,
        "em": pool.em[pos],
        "had": pool.had[pos],
    }
    # muons of the chosen copies: pool muons grouped by interaction
    mu_counts = np.bincount(pool.mu_event, minlength=pool.size)
    mu_off = np.concatenate([[0], np.cumsum(mu_counts)])
    order = np.argsort(pool.mu_event, kind="stable")
    mlen = mu_counts[which]
    mcopy = np.repeat(np.arange(total), mlen)
    mpos = order[
        np.arange(int(mlen.sum())) - np.repeat(np.cumsum(mlen) - mlen, mlen) + mu_off[which][mcopy]
    ]
    phi = pool.mu_phi[mpos] + shift[mcopy] * phys.TOWER_DPHI
    muons = {
        "event": copy_event[mcopy],
        "pt": pool.mu_pt[mpos],
        "eta": np.where(flip[mcopy], -pool.mu_eta[mpos], pool.mu_eta[mpos]),
        "phi": np.arctan2(np.sin(phi), np.cos(phi)),
    }
    return deposits, muons


def _reduce_batch(
    hard: tuple[dict[str, np.ndarray], dict[str, np.ndarray]],
    pool: _Pool | None,
    n_pileup: np.ndarray,
    n_events: int,
    response: L1Response,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """The L1 table of a batch: hard-process deposits plus the overlaid pile-up."""
    deposits, muons = hard
    if pool is not None and n_pileup.sum() > 0:
        pu_dep, pu_mu = overlay(pool, n_pileup, rng)
        deposits = {k: np.concatenate([deposits[k], pu_dep[k]]) for k in deposits}
        muons = {k: np.concatenate([muons[k], pu_mu[k]]) for k in muons}
    em, had = phys.tower_grids(
        deposits["event"], deposits["tower"], deposits["em"], deposits["had"], n_events
    )
    towers = phys.calorimeter_towers(em, had, response, rng)
    return phys.l1_objects(towers, muons, response, rng)


def _make_generator(settings: list[str], seed: int, init_file: str, save: bool = False) -> Any:
    """A Pythia that saves (``save``) or loads its multi-parton-interaction initialisation
    (inelastic pile-up: ~10 s to compute, 0.5 s to load)."""
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
    """Generate and reduce each block of ``task['blocks']``; save its table as .npz."""
    opts = L1Options(**task["options"])
    response = L1Response(**task["response"])
    results = []
    for block in task["blocks"]:
        t0 = time.monotonic()
        hard = _make_generator(
            task["settings"]["hard"], block["hard_seed"], task["init_files"]["hard"]
        )
        charges = _pythia.ParticleCharges(hard)
        rng = np.random.default_rng(block["detector_seed"])
        pool = None
        if opts.mu > 0:
            pileup = _make_generator(
                task["settings"]["pileup"], block["pileup_seed"], task["init_files"]["pileup"]
            )
            deposits, muons = _deposits_of(_next_events(pileup, opts.pool_size), charges, response)
            pool = _Pool.build(deposits, muons, opts.pool_size)
            del pileup
        pool_s = time.monotonic() - t0
        parts = []
        done = 0
        while done < block["events"]:
            n = min(_BATCH, block["events"] - done)
            prt = _next_events(hard, n)
            n_pileup = rng.poisson(opts.mu, n) if opts.mu > 0 else np.zeros(n, dtype=np.int64)
            table = _reduce_batch(
                _deposits_of(prt, charges, response), pool, n_pileup, n, response, rng
            )
            table["n_pileup"] = n_pileup.astype(np.int32)
            parts.append(table)
            done += n
            report(n)
        info = hard.infoPython()
        merged = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        np.savez(block["output"], **merged)
        results.append(
            {
                "block": block["block"],
                "events": done,
                "sigma_pb": info.sigmaGen() * _pythia.MB_TO_PB,
                "sigma_err_pb": info.sigmaErr() * _pythia.MB_TO_PB,
                "pool_deposits_per_interaction": (
                    float(pool.offsets[-1] / pool.size) if pool is not None else 0.0
                ),
                "pool_seconds": round(pool_s, 3),
                "seconds": round(time.monotonic() - t0, 3),
                "output": block["output"],
            }
        )
    return results


# --------------------------------------------------------------------------------------
# Files


_SCALARS = {
    "event": np.uint64,
    "label": np.int32,
    "n_pileup": np.int32,
    "weight": np.float32,
}


def _branch_types() -> dict[str, Any]:
    """Branch name -> numpy dtype of every column but ``regions``."""
    out: dict[str, Any] = dict(_SCALARS)
    for key in phys.TABLE_COLUMNS:
        if key == "regions":
            continue
        out[key] = np.int32 if key.startswith(("hw_", "n_")) else np.float32
    return out


def _write_root(path: Path, arrays: dict[str, np.ndarray], provenance: str) -> None:
    """Write the TTree ``Events`` (fixed-size array branches) and ``provenance``."""
    import uproot

    types = _branch_types()
    n = arrays["event"].size
    with uproot.recreate(path) as f:
        chunk = 50_000
        tree = None
        for start in range(0, max(n, 1), chunk):
            stop = min(start + chunk, n)
            data = {
                k: np.ascontiguousarray(arrays[k][start:stop].astype(dt)) for k, dt in types.items()
            }
            data["regions"] = np.ascontiguousarray(arrays["regions"][start:stop].astype(np.uint16))
            if tree is None:
                tree = f.mktree(
                    "Events",
                    {k: (v.dtype, v.shape[1:]) for k, v in data.items()},
                    title="fivesigma L1 objects",
                )
            tree.extend(data)
        f["provenance"] = provenance


def read(path: str | os.PathLike, entry_stop: int | None = None) -> dict[str, np.ndarray]:
    """The ``Events`` tree of an ``l1`` file as a dict of numpy arrays (fixed-size branches
    as 2-D / 3-D arrays): a table for :mod:`fivesigma.physics.l1`."""
    import uproot

    path = Path(path)
    try:
        with uproot.open(path) as f:
            tree = f["Events"]
            return {
                k: np.asarray(v)
                for k, v in tree.arrays(library="np", entry_stop=entry_stop).items()
            }
    except (OSError, KeyError, ValueError) as err:
        raise DataError(
            f"'{path}' is not a readable l1 file with a TTree 'Events' ({err})"
        ) from None


def run(
    events: int,
    out: Path,
    seed: int,
    jobs: int,
    luminosity_fb: float = 140.0,
    progress: bool = True,
    detector: Any = None,
    options: dict[str, Any] | None = None,
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Generate ``events`` L1 events into ``out``; returns (files, provenance).

    ``detector`` is accepted for the common generator interface and must be None or
    :class:`NoDetector` (the response parameters are options).  Files are written into a
    hidden temporary directory inside ``out`` and moved into place when complete.
    """
    _pythia.require_pythia()
    if detector is not None and not isinstance(detector, NoDetector):
        raise GenerationError(
            "l1 takes no detector response; accepted: None (the L1 response parameters are "
            "options, see fivesigma.physics.l1.L1Response)"
        )
    opts, response = parse_options(options)
    settings = settings_for(opts)
    name = f"l1_{opts.process}"
    created = datetime.now(UTC).isoformat(timespec="seconds")
    out = Path(out)
    work = Path(tempfile.mkdtemp(dir=out, prefix=".fivesigma-generate-"))
    # Pythia reads a setting's value up to the first blank: the MPI initialisation files
    # go to a system temporary directory without blanks (not in out, which may have some)
    init_dir = Path(tempfile.mkdtemp(prefix="fivesigma-mpi-"))
    try:
        if any(c.isspace() for c in str(init_dir)):
            raise GenerationError(
                f"the temporary directory '{init_dir}' has a blank, which Pythia cannot read "
                "in a file setting; set TMPDIR to a directory without blanks"
            )
        nblocks = math.ceil(events / BLOCK_EVENTS)
        seeds = _pythia.job_seeds(seed, name, nblocks)
        blocks = [
            {
                "block": b,
                "hard_seed": seeds[b].pythia,
                # the pile-up generator's stream: a fixed shift of the hard one's
                "pileup_seed": (seeds[b].pythia + _pythia.PYTHIA_SEED_MAX // 2)
                % _pythia.PYTHIA_SEED_MAX
                + 1,
                "detector_seed": seeds[b].detector,
                "events": min(BLOCK_EVENTS, events - b * BLOCK_EVENTS),
                "output": str(work / f"block{b}.npz"),
            }
            for b in range(nblocks)
        ]
        # MPI initialisation once per distinct settings, with block 0's seed, loaded by
        # every block (zerobias: the hard and pile-up generators share one)
        init_files: dict[str, str] = {}
        made: dict[tuple[str, ...], str] = {}
        for kind in ("hard", "pileup"):
            if not settings[kind]:
                init_files[kind] = ""
                continue
            key = tuple(settings[kind])
            if key not in made:
                made[key] = str(init_dir / f"mpi-init-{kind}.dat")
                _make_generator(settings[kind], blocks[0][f"{kind}_seed"], made[key], True)
            init_files[kind] = made[key]
        njobs = max(1, min(jobs, nblocks))
        tasks = []
        for j in range(njobs):
            mine = blocks[j::njobs]
            task = {
                "options": asdict(opts),
                "response": response.to_dict(),
                "settings": settings,
                "init_files": init_files,
                "blocks": mine,
            }
            tasks.append((name, task, sum(b["events"] for b in mine)))
        t0 = time.monotonic()
        results = [
            r
            for res in _pythia.run_jobs(_generate_blocks, tasks, njobs, progress=progress)
            for r in res
        ]
        elapsed = time.monotonic() - t0
        results.sort(key=lambda r: r["block"])
        parts = []
        for res in results:
            with np.load(res["output"]) as data:
                parts.append({key: data[key] for key in data.files})
        arrays = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        sigma, err = _pythia.combine_cross_sections(
            [r["sigma_pb"] for r in results],
            [r["sigma_err_pb"] for r in results],
            [r["events"] for r in results],
        )
        weight = 1.0 if opts.process == "zerobias" else sigma * 1000.0 * luminosity_fb / events
        arrays["event"] = np.arange(events, dtype=np.uint64)
        arrays["label"] = np.full(events, LABELS[opts.process], dtype=np.int32)
        arrays["weight"] = np.full(events, weight, dtype=np.float32)
        provenance = {
            "format_version": FORMAT_VERSION,
            "fivesigma_version": __version__,
            "pythia8mc_version": _pythia.pythia_version(),
            "sample": "l1",
            "process": opts.process,
            "label": LABELS[opts.process],
            "labels": LABELS,
            "options": asdict(opts),
            "response": response.to_dict(),
            "pythia_settings": settings,
            "seed": seed,
            "jobs": jobs,
            "block_events": BLOCK_EVENTS,
            "block_seeds": [
                {
                    "block": b["block"],
                    "pythia": b["hard_seed"],
                    "pileup": b["pileup_seed"],
                    "detector": b["detector_seed"],
                    "events": b["events"],
                }
                for b in blocks
            ],
            "seed_derivation": (
                "one seed pair per block of block_events events, "
                "SeedSequence([seed, crc32('l1_<process>'), block]).generate_state(2): "
                "pythia = w0 % 900000000 + 1 (hard process), pile-up pool = (pythia + "
                "450000000) % 900000000 + 1, detector = w1 (pile-up counts, pool draws, "
                "rotations, smearing); the multi-parton-interaction initialisation is "
                "computed once with block 0's seed and loaded by every block"
            ),
            "pileup": {
                "mu": opts.mu,
                "pool_size": opts.pool_size if opts.mu > 0 else 0,
                "pileup_reuse": opts.mu * BLOCK_EVENTS / opts.pool_size if opts.mu > 0 else 0.0,
                "distinct_interactions": events + (opts.pool_size * nblocks if opts.mu > 0 else 0),
                "mean_n_pileup": float(arrays["n_pileup"].mean()),
                "method": (
                    "per block a pool of pool_size minimum-bias interactions; each event "
                    "overlays Poisson(mu) of them drawn with replacement, each rotated in phi "
                    "by a random whole number of towers and mirrored in eta with p = 1/2"
                ),
            },
            "cross_section_pb": sigma,
            "cross_section_error_pb": err,
            "weight": weight,
            "events": events,
            "tree": "Events",
            "processes": {
                name: {"cross_section_pb": sigma, "cross_section_error_pb": err, "events": events}
            },
            "block_summary": [
                {
                    k: r[k]
                    for k in (
                        "block",
                        "events",
                        "pool_deposits_per_interaction",
                        "pool_seconds",
                        "seconds",
                    )
                }
                for r in results
            ],
            "created": created,
            "generation_seconds": round(elapsed, 3),
        }
        text = json.dumps(provenance, indent=1, sort_keys=True)
        path = work / f"{name}.root"
        _write_root(path, arrays, text)
        (work / "provenance.json").write_text(text + "\n")
        final = out / path.name
        os.replace(path, final)
        os.replace(work / "provenance.json", out / "provenance.json")
        return {name: final}, provenance
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(init_dir, ignore_errors=True)
