"""Built-in samples generated with Pythia8, cached on disk.

>>> from fivesigma.generate import cached_sample
>>> sample = cached_sample("higgs4l", events=20_000)      # doctest: +SKIP
>>> sample.files["ggH_4l"]                                 # doctest: +SKIP
PosixPath('/home/me/.cache/fivesigma/higgs4l-.../ggH_4l.root')

``generate("higgs4l", ...)`` writes ``ggH_4l.root`` and ``qqZZ_4l.root`` (TTree
``Events``) and ``provenance.json``; see :mod:`fivesigma.generate.higgs4l` for the
physics and the branches.

``generate("jets", events=N, out=DIR, options={"process": "top"})`` writes N boosted jets
with their constituents to ``jets_top.root`` (TTree ``Jets``); processes top, qcd, w, z,
hbb; see :mod:`fivesigma.generate.jets`.

``generate("tracks", events=N, out=DIR, options={"mu": 200})`` writes N TrackML-format
events (``eventNNNNNNNNN-{hits,truth,particles,cells}.csv.gz`` and ``detectors.csv.gz``;
read them with :func:`fivesigma.io.trackml.iter_events`): ttbar plus pile-up through a
fast simulation of the TrackML detector; see :mod:`fivesigma.generate.tracks`.

``generate("l1", events=N, out=DIR, options={"process": "zerobias", "mu": 60})`` writes N
events reduced to Level-1 trigger objects at hardware scales (jets, e/gamma, muons, MET,
CICADA calorimeter regions) to ``l1_<process>.root`` (TTree ``Events``): zero-bias or a
signal (hh4b, haa4gamma, zprime, ttbar) with pile-up overlaid from a pool; see
:mod:`fivesigma.generate.l1`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fivesigma.core.files import ensure_writable_dir
from fivesigma.errors import GenerationError, close_matches
from fivesigma.generate import dijets, higgs4l, jets, l1
from fivesigma.physics.detector import LeptonResponse
from fivesigma.physics.jet_detector import JetDetectorResponse

__all__ = [
    "PROCESSES",
    "GeneratedSample",
    "ProcessGenerator",
    "cached_sample",
    "generate",
]


@dataclass
class GeneratedSample:
    """A generated sample on disk: its directory, one ROOT file per process, provenance."""

    directory: Path
    files: dict[str, Path]
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProcessGenerator:
    """A registered sample generator.

    ``run(events, out, seed, jobs, luminosity_fb, progress, detector) -> (files, provenance)``
    writes the files into ``out``; ``content_key()`` returns everything besides those
    arguments that changes the sample (settings, versions), for cache keys.

    A generator with ``accepts_options`` also takes ``options=`` (a dict of
    process-specific options) in ``run``, ``content_key(options)`` and
    ``file_names(options)`` (the file names it writes, without ``file_suffix``).
    ``default_detector()`` builds its default detector response.  ``file_suffix`` is the
    suffix of its files (``.root``; the cache checks ``<name><file_suffix>`` exist).
    """

    run: Callable[..., tuple[dict[str, Path], dict[str, Any]]]
    content_key: Callable[..., dict[str, Any]]
    processes: tuple[str, ...]
    accepts_options: bool = False
    file_names: Callable[[dict[str, Any] | None], tuple[str, ...]] | None = None
    default_detector: Callable[[], Any] = LeptonResponse
    file_suffix: str = ".root"

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[dict[str, Path], dict[str, Any]]:
        return self.run(*args, **kwargs)

    def names(self, options: dict[str, Any] | None = None) -> tuple[str, ...]:
        """The files (without ``file_suffix``) written for ``options``."""
        if self.accepts_options and self.file_names is not None:
            return self.file_names(options)
        return self.processes

    def key(self, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """``content_key`` for ``options`` (validates them)."""
        return self.content_key(options) if self.accepts_options else self.content_key()


#: Largest sample per process: the generator keeps one sample's arrays in memory before
#: writing, and at about 1 kB per event 1e8 events already need 100 GB.
MAX_EVENTS = 100_000_000


def _tracks(name: str) -> Callable[..., Any]:
    """``fivesigma.generate.tracks.<name>``, imported on the first call: that module needs
    pandas and scipy, which ``import fivesigma.generate`` should not pay for."""

    def call(*args: Any, **kwargs: Any) -> Any:
        from fivesigma.generate import tracks

        return getattr(tracks, name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


#: Registry of built-in samples: name -> generator.
PROCESSES: dict[str, ProcessGenerator] = {
    "higgs4l": ProcessGenerator(
        run=higgs4l.run,
        content_key=higgs4l.content_key,
        processes=tuple(higgs4l.PROCESS_SETTINGS),
    ),
    "jets": ProcessGenerator(
        run=jets.run,
        content_key=jets.content_key,
        processes=tuple(f"jets_{name}" for name in jets.JET_PROCESSES),
        accepts_options=True,
        file_names=jets.file_names,
        default_detector=JetDetectorResponse,
    ),
    "dijets": ProcessGenerator(
        run=dijets.run,
        content_key=dijets.content_key,
        processes=tuple(f"dijets_{name}" for name in dijets.PROCESSES),
        accepts_options=True,
        file_names=dijets.file_names,
        default_detector=JetDetectorResponse,
    ),
    "tracks": ProcessGenerator(
        run=_tracks("run"),
        content_key=_tracks("content_key"),
        processes=("tracks",),
        accepts_options=True,
        file_names=_tracks("file_names"),
        default_detector=_tracks("NoResponse"),
        file_suffix=".csv.gz",
    ),
    "l1": ProcessGenerator(
        run=l1.run,
        content_key=l1.content_key,
        processes=tuple(f"l1_{name}" for name in l1.L1_PROCESSES),
        accepts_options=True,
        file_names=l1.file_names,
        default_detector=l1.NoDetector,
    ),
}


def _check_options(process: str, gen: ProcessGenerator, options: dict[str, Any] | None) -> None:
    """Options given to a generator that takes none, or invalid ones: GenerationError."""
    if options and not gen.accepts_options:
        raise GenerationError(
            f"process {process!r} takes no options, got {', '.join(map(str, options))}; "
            f"processes with options: "
            f"{', '.join(k for k, g in PROCESSES.items() if g.accepts_options)}"
        )
    if gen.accepts_options:
        gen.key(options)  # validates them


def _check(process: str, events: int, seed: int, luminosity_fb: float) -> ProcessGenerator:
    if process not in PROCESSES:
        raise GenerationError(
            f"unknown process {process!r}; accepted: {', '.join(sorted(PROCESSES))} "
            f"({close_matches(str(process), PROCESSES)})"
        )
    if isinstance(events, bool) or not isinstance(events, int) or events <= 0:
        raise GenerationError(f"events must be a positive integer (per process), got {events!r}")
    if events > MAX_EVENTS:
        raise GenerationError(
            f"events {events} is more than this generator makes in one sample "
            f"({MAX_EVENTS:.0e} per process); generate several samples with different seeds"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise GenerationError(f"seed must be a non-negative integer, got {seed!r}")
    if not (
        isinstance(luminosity_fb, int | float)
        and luminosity_fb > 0
        and luminosity_fb < float("inf")
    ):
        raise GenerationError(
            f"luminosity_fb must be a positive number (fb^-1), got {luminosity_fb!r}"
        )
    return PROCESSES[process]


def generate(
    process: str,
    events: int,
    out: str | os.PathLike,
    seed: int = 1,
    jobs: int | None = None,
    luminosity_fb: float = 140.0,
    progress: bool = True,
    detector: LeptonResponse | JetDetectorResponse | Any | None = None,
    options: dict[str, Any] | None = None,
) -> GeneratedSample:
    """Generate a built-in sample into directory ``out``.

    Parameters
    ----------
    process
        A key of :data:`PROCESSES` (``"higgs4l"``, ``"jets"``, ``"tracks"``).
    events
        Events per physics process (for ``"jets"``: jets passing the selection; for
        ``"tracks"``: TrackML events).
    out
        Output directory (created if needed).  Files appear only once complete.
    seed
        Master seed; the seeds of each block of events derive from it.  The same
        (seed, events) gives the same sample whatever ``jobs`` is.
    jobs
        Parallel processes; default ``os.cpu_count()``.
    luminosity_fb
        Integrated luminosity in fb^-1; weights sum to sigma[pb] * 1000 * luminosity_fb.
    progress
        Show a progress bar on stderr.
    detector
        Lepton response; default :class:`LeptonResponse()`; ``LeptonResponse(enabled=False)``
        for truth level.  For ``"jets"`` a :class:`JetDetectorResponse`; ``"tracks"``
        takes none (its detector is in ``options``).
    options
        Process-specific options, e.g. for ``"jets"``
        ``{"process": "top", "pt_min": 550, "pt_max": 650, "eta_max": 2, "pthat_min": 440}``
        (see :class:`fivesigma.generate.jets.JetOptions`); for ``"tracks"`` e.g.
        ``{"mu": 200, "hard_process": "ttbar"}`` (see
        :class:`fivesigma.generate.tracks.TrackOptions`).

    Raises
    ------
    GenerationError
        Unknown process, non-positive events, bad seed/jobs, or Pythia failed.
    OutputError
        ``out`` cannot be written (nothing is written then).
    """
    from fivesigma.generate import _pythia

    gen = _check(process, events, seed, luminosity_fb)
    _check_options(process, gen, options)
    njobs = _pythia.default_jobs(jobs)
    out = ensure_writable_dir(out)
    extra = {"options": options} if gen.accepts_options else {}
    files, provenance = gen.run(
        events,
        out,
        seed,
        njobs,
        float(luminosity_fb),
        progress=progress,
        detector=detector,
        **extra,
    )
    return GeneratedSample(directory=out, files=files, provenance=provenance)


from fivesigma.generate.cache import cached_sample  # noqa: E402  (cache uses generate from this module)
