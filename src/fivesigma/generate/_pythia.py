"""Shared Pythia8 helpers for the built-in generators.

- :func:`require_pythia` imports ``pythia8mc`` lazily (:mod:`fivesigma.core.extras`).
- :func:`make_pythia` builds a configured, seeded, silent ``pythia8mc.Pythia``.
- :func:`job_seeds` derives per-job seeds from one master seed (documented below).
- :func:`split_blocks` cuts the events into fixed-size blocks, each with its own seeds.
- :func:`run_jobs` runs one worker per job in separate processes (``spawn``) with a rich
  progress bar on stderr showing events/s; one job runs in-process.  Inside
  :func:`fivesigma.core.execution.executor` (``--scheduler``) the jobs are dask tasks on
  that cluster's workers instead: each keeps its own seeds, so the sample is the same.
- :func:`combine_cross_sections` combines per-job cross sections.

Seed derivation
---------------
For master seed ``s``, sample name ``name`` and job ``j``::

    words = numpy.random.SeedSequence([s, crc32(name), j]).generate_state(2)
    pythia_seed   = words[0] % 900_000_000 + 1     # Pythia accepts 1..900_000_000
    detector_seed = words[1]                       # numpy Generator for the response

so every (process, job) pair gets its own, well-mixed Pythia stream; collisions between the
jobs of one sample are checked for and resolved deterministically.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import queue as queue_mod
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from fivesigma.core import extras
from fivesigma.errors import GenerationError

__all__ = [
    "COMMON_SETTINGS",
    "INVISIBLE",
    "JobSeeds",
    "ParticleCharges",
    "combine_cross_sections",
    "default_jobs",
    "flatten_events",
    "job_seeds",
    "make_pythia",
    "pythia_version",
    "require_pythia",
    "run_jobs",
    "split_blocks",
]

PYTHIA_SEED_MAX = 900_000_000

#: Settings every built-in sample uses: 13 TeV pp, MPI and hadronisation off for speed
#: (ISR/FSR showers stay on), and Pythia silenced.
COMMON_SETTINGS: tuple[str, ...] = (
    "Beams:idA = 2212",
    "Beams:idB = 2212",
    "Beams:eCM = 13000.",
    "PartonLevel:MPI = off",
    "HadronLevel:all = off",
)

_SILENT: tuple[str, ...] = (
    "Print:quiet = on",
    "Next:numberCount = 0",
    "Next:numberShowEvent = 0",
    "Next:numberShowProcess = 0",
    "Next:numberShowInfo = 0",
)

MB_TO_PB = 1e9


def require_pythia() -> ModuleType:
    """``pythia8mc``, or a one-line MissingDependencyError with the install command.

    The same as :func:`fivesigma.core.extras.pythia8mc`, kept for the generators.
    """
    return extras.pythia8mc()


def pythia_version() -> str:
    """The installed pythia8mc version, or 'unknown'."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pythia8mc")
    except PackageNotFoundError:
        return "unknown"


def make_pythia(settings: Sequence[str], seed: int, quiet: bool = True) -> Any:
    """A ``pythia8mc.Pythia`` with ``settings`` read, seeded with ``seed``, initialised."""
    pythia8mc = require_pythia()
    if not 1 <= seed <= PYTHIA_SEED_MAX:
        raise GenerationError(f"Pythia seed {seed} is out of range; accepted: 1..{PYTHIA_SEED_MAX}")
    pythia = pythia8mc.Pythia("", False)
    if not pythia.settings.isMode("Beams:idA"):
        # Pythia could not read its settings database; every setting would be "rejected"
        raise GenerationError(
            "Pythia found no settings database (share/Pythia8/xmldoc); set PYTHIA8DATA to "
            "the xmldoc folder of the pythia8mc installation, or reinstall it with "
            "'pip install pythia8mc==8.317.2'"
        )
    lines = [*settings, *(_SILENT if quiet else ()), "Random:setSeed = on", f"Random:seed = {seed}"]
    for line in lines:
        if not pythia.readString(line):
            raise GenerationError(f"Pythia rejected the setting '{line}'")
    if not pythia.init():
        raise GenerationError("Pythia initialisation failed for settings: " + "; ".join(settings))
    return pythia


@dataclass(frozen=True)
class JobSeeds:
    """Seeds of one job: Pythia's random stream and the detector response's."""

    pythia: int
    detector: int


def job_seeds(master: int, name: str, jobs: int) -> list[JobSeeds]:
    """Distinct per-job seeds derived from ``master`` (see the module docstring)."""
    if not isinstance(master, int | np.integer) or master < 0:
        raise GenerationError(f"seed must be a non-negative integer, got {master!r}")
    tag = zlib.crc32(name.encode())
    out: list[JobSeeds] = []
    used: set[int] = set()
    for j in range(jobs):
        words = np.random.SeedSequence([int(master), tag, j]).generate_state(2)
        pseed = int(words[0]) % PYTHIA_SEED_MAX + 1
        while pseed in used:  # astronomically rare; resolved deterministically
            pseed = pseed % PYTHIA_SEED_MAX + 1
        used.add(pseed)
        out.append(JobSeeds(pythia=pseed, detector=int(words[1])))
    return out


def split_blocks(events: int, block: int) -> list[int]:
    """Events per block: fixed-size blocks and a smaller last one.

    Work is cut into blocks of a fixed size, each with its own seed, and the blocks are
    spread over the jobs: the sample then depends on (seed, events) only, not on how many
    processes made it.

    >>> split_blocks(12, 5)
    [5, 5, 2]
    """
    if block < 1:
        raise GenerationError(f"block size must be positive, got {block}")
    full, rest = divmod(events, block)
    return [block] * full + ([rest] if rest else [])


def combine_cross_sections(
    sigmas: Sequence[float], errors: Sequence[float], events: Sequence[int]
) -> tuple[float, float]:
    """Event-weighted mean of independent per-job estimates and its error (same units)."""
    n = np.asarray(events, dtype=np.float64)
    total = n.sum()
    if total <= 0:
        raise GenerationError("no events were generated, so there is no cross section")
    sigma = float(np.sum(n * np.asarray(sigmas)) / total)
    err = float(math.sqrt(np.sum((n * np.asarray(errors)) ** 2)) / total)
    return sigma, err


# --------------------------------------------------------------------------------------
# Running jobs


#: A worker: ``worker(task, report)`` where ``report(n)`` announces n more events done.
Worker = Callable[[Any, Callable[[int], None]], Any]


def _child(worker: Worker, key: Any, task: Any, q: Any) -> None:
    """Entry point of a job process: run the worker, send progress and the result."""
    pending = 0
    last = time.monotonic()

    def report(n: int) -> None:
        nonlocal pending, last
        pending += n
        now = time.monotonic()
        if now - last > 0.2:  # rate-limit queue traffic
            q.put(("progress", key, pending))
            pending, last = 0, now

    try:
        result = worker(task, report)
        if pending:
            q.put(("progress", key, pending))
        q.put(("done", key, result))
    except KeyboardInterrupt:
        q.put(("error", key, "interrupted"))
    except BaseException as err:  # the parent turns this into one clear line
        q.put(("error", key, f"{type(err).__name__}: {err}"))


def _progress(enabled: bool, unit: str = "ev") -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} " + unit + "/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


def run_jobs(
    worker: Worker,
    tasks: Sequence[tuple[str, Any, int]],
    jobs: int,
    progress: bool = True,
    unit: str = "ev",
) -> list[Any]:
    """Run ``worker`` on each task, at most ``jobs`` processes at a time.

    ``unit`` names what the workers' ``report(n)`` counts, for the progress bar's rate.

    Parameters
    ----------
    worker
        Module-level function ``worker(task, report) -> result`` (picklable for spawn).
    tasks
        ``(label, task, n_events)``; one progress bar per distinct label.
    jobs
        1 runs everything in this process (no start-up cost); more uses ``spawn``
        processes, so nothing of the parent's state (threads, open files) leaks in.

    Returns the results in the order of ``tasks``.  Any failure or Ctrl-C stops all jobs
    and raises (GenerationError for a failed job).

    When a dask client is active (:func:`fivesigma.core.execution.active_client`) every
    task is submitted to it whatever ``jobs`` is; the progress bar then advances as tasks
    finish.
    """
    from fivesigma.core.execution import active_client

    client = active_client()
    labels = list(dict.fromkeys(t[0] for t in tasks))
    totals = {lab: sum(t[2] for t in tasks if t[0] == lab) for lab in labels}
    with _progress(progress, unit) as bar:
        ids = {lab: bar.add_task(lab, total=totals[lab], rate="-") for lab in labels}
        started = {lab: 0.0 for lab in labels}
        done = {lab: 0 for lab in labels}

        def advance(label: str, n: int) -> None:
            now = time.monotonic()
            if not started[label]:
                started[label] = now
            done[label] += n
            dt = now - started[label]
            rate = f"{done[label] / dt:,.0f}" if dt > 0 else "-"
            bar.update(ids[label], advance=n, rate=rate)

        if client is not None:
            return _run_dask(client, worker, tasks, advance, started)
        if jobs <= 1:
            results = []
            for label, task, _ in tasks:
                started[label] = started[label] or time.monotonic()
                results.append(worker(task, lambda n, lab=label: advance(lab, n)))
            return results
        return _run_parallel(worker, tasks, jobs, advance, started)


def _run_parallel(
    worker: Worker,
    tasks: Sequence[tuple[str, Any, int]],
    jobs: int,
    advance: Callable[[str, int], None],
    started: dict[str, float],
) -> list[Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    results: dict[int, Any] = {}
    running: dict[int, Any] = {}
    waiting = list(range(len(tasks)))
    dead: dict[int, int] = {}
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                i = waiting.pop(0)
                proc = ctx.Process(target=_child, args=(worker, i, tasks[i][1], q), daemon=True)
                proc.start()
                running[i] = proc
                started[tasks[i][0]] = started[tasks[i][0]] or time.monotonic()
            try:
                kind, key, payload = q.get(timeout=0.5)
            except queue_mod.Empty:
                # A dead job that sent no result (killed, or failed while starting): a
                # job's messages are flushed before it exits, so two quiet polls suffice.
                for i, proc in running.items():
                    if proc.is_alive():
                        continue
                    dead[i] = dead.get(i, 0) + 1
                    if dead[i] >= 2:
                        raise GenerationError(
                            f"generation job {i} ({tasks[i][0]}) stopped without a result "
                            f"(exit code {proc.exitcode})"
                        ) from None
                continue
            if kind == "progress":
                advance(tasks[key][0], payload)
            elif kind == "done":
                results[key] = payload
                running.pop(key).join()
            else:
                raise GenerationError(f"generation job {key} ({tasks[key][0]}) failed: {payload}")
    finally:
        for proc in running.values():
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=5)
        q.close()
    return [results[i] for i in range(len(tasks))]


def _dask_child(worker: Worker, task: Any) -> Any:
    """A job as a dask task: progress cannot cross to the client, so it is dropped."""
    return worker(task, lambda n: None)


def _run_dask(
    client: Any,
    worker: Worker,
    tasks: Sequence[tuple[str, Any, int]],
    advance: Callable[[str, int], None],
    started: dict[str, float],
) -> list[Any]:
    distributed = extras.distributed()
    now = time.monotonic()
    for label, _, _ in tasks:
        started[label] = started[label] or now
    # pure=False: two tasks with equal arguments are still two jobs.  A job lost with its
    # worker is rerun by the scheduler; its seeds make the rerun give the same events.
    futures = [
        client.submit(_dask_child, worker, task, pure=False, retries=1) for _, task, _ in tasks
    ]
    index = {f.key: i for i, f in enumerate(futures)}
    results: dict[int, Any] = {}
    try:
        for future in distributed.as_completed(futures, loop=client.loop):
            i = index[future.key]
            if future.status != "finished":
                err = future.exception()
                raise GenerationError(
                    f"generation job {i} ({tasks[i][0]}) failed on a dask worker: "
                    f"{type(err).__name__}: {err}"
                )
            results[i] = future.result()
            advance(tasks[i][0], tasks[i][2])
    finally:
        client.cancel([f for f in futures if not f.done()])
    return [results[i] for i in range(len(tasks))]


def default_jobs(jobs: int | None) -> int:
    """``jobs`` checked, or the number of CPUs."""
    import os

    if jobs is None:
        return max(1, os.cpu_count() or 1)
    if not isinstance(jobs, int | np.integer) or jobs < 1:
        raise GenerationError(f"jobs must be a positive integer, got {jobs!r}")
    return int(jobs)


class ParticleCharges:
    """Electric charges of PDG ids from Pythia's particle data, cached."""

    def __init__(self, pythia: Any) -> None:
        self._pdt = pythia.particleData
        self._cache: dict[int, float] = {}

    def __call__(self, pid: np.ndarray) -> np.ndarray:
        uniq, inv = np.unique(pid, return_inverse=True)
        vals = np.empty(uniq.size)
        for k, u in enumerate(uniq.tolist()):
            if u not in self._cache:
                self._cache[u] = float(self._pdt.charge(u))
            vals[k] = self._cache[u]
        return vals[inv.reshape(-1)]


#: PDG ids of neutrinos: generated, never seen by a detector
INVISIBLE = (12, 14, 16)


def flatten_events(batch: Any) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The event records of a ``nextBatch`` result as flat numpy arrays, and their offsets.

    Keys: ``id, status, d1, d2, px, py, pz, e, vx, vy, vz``.  ``vx, vy, vz`` are the
    production vertices in mm; Pythia leaves them unset (None in the batch) for particles
    made at the primary vertex, the origin, so those become 0.
    """
    import awkward as ak

    prt = batch["prt"]
    counts = ak.to_numpy(ak.num(prt)).astype(np.int64)
    get = lambda arr: ak.to_numpy(ak.flatten(arr))  # noqa: E731
    vert = lambda arr: np.asarray(ak.to_numpy(ak.fill_none(ak.flatten(arr), 0.0)), float)  # noqa: E731
    rec = {
        "id": get(prt["id"]).astype(np.int64),
        "status": get(prt["status"]),
        "d1": get(prt["daughter1"]),
        "d2": get(prt["daughter2"]),
        "px": get(prt["p"]["px"]),
        "py": get(prt["p"]["py"]),
        "pz": get(prt["p"]["pz"]),
        "e": get(prt["p"]["e"]),
        # vProd is a Lorentz vector (x, y, z, t) stored in px, py, pz, e fields.
        "vx": vert(prt["vProd"]["px"]),
        "vy": vert(prt["vProd"]["py"]),
        "vz": vert(prt["vProd"]["pz"]),
    }
    return rec, np.concatenate([[0], np.cumsum(counts)])
