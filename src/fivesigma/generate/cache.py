"""On-disk cache of generated samples.

A sample lives in ``<cache>/<process>-<hash>/`` where ``<cache>`` is the ``cache_dir``
argument, else ``$FIVESIGMA_CACHE``, else ``~/.cache/fivesigma``, and ``<hash>`` is a
SHA-256 (first 16 hex digits) of everything that changes the content: process, events,
seed, luminosity, the generator's settings (the number of jobs does not change a sample), format
version and pythia8mc version, and the detector-response parameters.  The key itself is
kept as ``cache_key.json`` in the directory.

A sample is generated into a temporary directory beside its final place and renamed when
complete (:func:`fivesigma.core.files.atomic_dir`), so an interrupted run never leaves a
directory that looks complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fivesigma.core.files import atomic_dir, ensure_writable_dir
from fivesigma.physics.detector import LeptonResponse

if TYPE_CHECKING:
    from fivesigma.generate import GeneratedSample

__all__ = ["cache_key", "cached_sample", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$FIVESIGMA_CACHE`` or ``~/.cache/fivesigma``."""
    env = os.environ.get("FIVESIGMA_CACHE")
    return Path(os.path.expanduser(env)) if env else Path.home() / ".cache" / "fivesigma"


def cache_key(
    process: str,
    events: int,
    seed: int,
    luminosity_fb: float,
    detector: Any,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The mapping whose hash names the cache directory.

    ``options`` (process-specific, e.g. the jet process and window) enter through the
    generator's ``content_key(options)``.
    """
    from fivesigma.generate import PROCESSES

    return {
        "process": process,
        "events": int(events),
        "seed": int(seed),
        "luminosity_fb": float(luminosity_fb),
        "generator": PROCESSES[process].key(options),
        "detector": detector.to_dict(),
    }


def _digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _load(directory: Path, files: tuple[str, ...], suffix: str = ".root") -> GeneratedSample | None:
    """The sample in ``directory`` if it is complete (``<name><suffix>`` for every name
    and the provenance), else None."""
    from fivesigma.generate import GeneratedSample

    paths = {name: directory / f"{name}{suffix}" for name in files}
    prov_path = directory / "provenance.json"
    if not (prov_path.is_file() and all(p.is_file() for p in paths.values())):
        return None
    try:
        provenance = json.loads(prov_path.read_text())
    except (OSError, ValueError):
        return None
    return GeneratedSample(directory=directory, files=paths, provenance=provenance)


def cached_sample(
    process: str = "higgs4l",
    events: int = 20_000,
    seed: int = 1,
    luminosity_fb: float = 140.0,
    jobs: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    detector: LeptonResponse | Any | None = None,
    options: dict[str, Any] | None = None,
) -> GeneratedSample:
    """The sample for these arguments, generated on first use and reused afterwards.

    Arguments as :func:`fivesigma.generate.generate`; ``cache_dir`` as described in the
    module docstring.
    """
    from fivesigma.generate import PROCESSES, _check, _check_options, _pythia

    gen = _check(process, events, seed, luminosity_fb)
    _check_options(process, gen, options)
    njobs = _pythia.default_jobs(jobs)
    detector = detector if detector is not None else gen.default_detector()
    root = ensure_writable_dir(Path(cache_dir) if cache_dir is not None else default_cache_dir())
    key = cache_key(process, events, seed, luminosity_fb, detector, options)
    directory = root / f"{process}-{_digest(key)}"
    found = _load(directory, gen.names(options), gen.file_suffix)
    if found is not None:
        return found
    with _entry_lock(directory, progress):
        # another process may have made it while this one waited for the lock
        found = _load(directory, gen.names(options), gen.file_suffix)
        if found is not None:
            return found
        _generate_into(directory, process, events, seed, njobs, luminosity_fb, progress,
                       detector, options, key)  # fmt: skip
    sample = _load(directory, PROCESSES[process].names(options), gen.file_suffix)
    if sample is None:  # pragma: no cover - atomic_dir guarantees completeness
        from fivesigma.errors import GenerationError

        raise GenerationError(f"cached sample '{directory}' is incomplete after generation")
    return sample


@contextlib.contextmanager
def _entry_lock(directory: Path, progress: bool) -> Iterator[None]:
    """Hold an exclusive lock on one cache entry: a second process asking for the same
    sample waits for the first one's result instead of generating it again.

    ``flock`` locks are dropped by the kernel when their process dies, so a killed
    generation never leaves a lock behind.
    """
    lock_path = directory.parent / f".{directory.name}.lock"
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress:
                print(
                    f"waiting for another process generating {directory.name} ...",
                    file=sys.stderr,
                )
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _generate_into(
    directory: Path,
    process: str,
    events: int,
    seed: int,
    njobs: int,
    luminosity_fb: float,
    progress: bool,
    detector: Any,
    options: dict[str, Any] | None,
    key: dict[str, Any],
) -> None:
    """Generate the sample; replace an incomplete entry (e.g. a file deleted by hand)."""
    from fivesigma.generate import generate

    with atomic_dir(directory, overwrite=True) as tmp:
        generate(
            process,
            events,
            tmp,
            seed=seed,
            jobs=njobs,
            luminosity_fb=luminosity_fb,
            progress=progress,
            detector=detector,
            options=options,
        )
        (tmp / "cache_key.json").write_text(json.dumps(key, indent=1, sort_keys=True) + "\n")
