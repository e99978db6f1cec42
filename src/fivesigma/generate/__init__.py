"""Built-in samples generated with Pythia8, cached on disk.

>>> from fivesigma.generate import cached_sample
>>> sample = cached_sample("higgs4l", events=20_000)      # doctest: +SKIP
>>> sample.files["ggH_4l"]                                 # doctest: +SKIP
PosixPath('/home/me/.cache/fivesigma/higgs4l-.../ggH_4l.root')

``generate("higgs4l", ...)`` writes ``ggH_4l.root`` and ``qqZZ_4l.root`` (TTree
``Events``) and ``provenance.json``; see :mod:`fivesigma.generate.higgs4l` for the
physics and the branches.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import ensure_writable_dir
from ..errors import GenerationError, close_matches
from ..physics.detector import LeptonResponse
from . import higgs4l

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
    """

    run: Callable[..., tuple[dict[str, Path], dict[str, Any]]]
    content_key: Callable[[], dict[str, Any]]
    processes: tuple[str, ...]

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[dict[str, Path], dict[str, Any]]:
        return self.run(*args, **kwargs)


#: Registry of built-in samples: name -> generator.
PROCESSES: dict[str, ProcessGenerator] = {
    "higgs4l": ProcessGenerator(
        run=higgs4l.run,
        content_key=higgs4l.content_key,
        processes=tuple(higgs4l.PROCESS_SETTINGS),
    ),
}


def _check(process: str, events: int, seed: int, luminosity_fb: float) -> ProcessGenerator:
    if process not in PROCESSES:
        raise GenerationError(
            f"unknown process {process!r}; accepted: {', '.join(sorted(PROCESSES))} "
            f"({close_matches(str(process), PROCESSES)})"
        )
    if isinstance(events, bool) or not isinstance(events, int) or events <= 0:
        raise GenerationError(f"events must be a positive integer (per process), got {events!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise GenerationError(f"seed must be a non-negative integer, got {seed!r}")
    if not (isinstance(luminosity_fb, int | float) and luminosity_fb > 0 and luminosity_fb < float("inf")):
        raise GenerationError(f"luminosity_fb must be a positive number (fb^-1), got {luminosity_fb!r}")
    return PROCESSES[process]


def generate(
    process: str,
    events: int,
    out: str | os.PathLike,
    seed: int = 1,
    jobs: int | None = None,
    luminosity_fb: float = 140.0,
    progress: bool = True,
    detector: LeptonResponse | None = None,
) -> GeneratedSample:
    """Generate a built-in sample into directory ``out``.

    Parameters
    ----------
    process
        A key of :data:`PROCESSES` (``"higgs4l"``).
    events
        Events per physics process.
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
        for truth level.

    Raises
    ------
    GenerationError
        Unknown process, non-positive events, bad seed/jobs, or Pythia failed.
    OutputError
        ``out`` cannot be written (nothing is written then).
    """
    from . import _pythia

    gen = _check(process, events, seed, luminosity_fb)
    njobs = _pythia.default_jobs(jobs)
    out = ensure_writable_dir(out)
    files, provenance = gen.run(
        events, out, seed, njobs, float(luminosity_fb), progress=progress, detector=detector
    )
    return GeneratedSample(directory=out, files=files, provenance=provenance)


from .cache import cached_sample  # noqa: E402  (cache uses generate from this module)
