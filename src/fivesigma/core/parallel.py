"""Independent trainings side by side: a pool of one-thread worker processes.

Small networks (a few features, 64-wide layers) train faster on one CPU thread than on
several, and trainings of different seeds or methods share nothing, so on N cores the
fastest way through K of them is N one-thread processes, not one process with N threads.
:func:`map_processes` is that pool; it is the local counterpart of ``processes:N`` in
:mod:`fivesigma.core.execution`, without dask, for work that must finish inside one run.

>>> map_processes(abs, [-1, 2, -3], jobs=1)
[1, 2, 3]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["default_jobs", "map_processes"]

T = TypeVar("T")
R = TypeVar("R")


def default_jobs() -> int:
    """The CPU cores this process may use (its affinity where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def _one_thread(initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    if initializer is not None:
        initializer(*initargs)


def map_processes(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    jobs: int | None = None,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
    on_result: Callable[[int, R], None] | None = None,
) -> list[R]:
    """``[fn(item) for item in items]``, in ``jobs`` spawned processes of one thread each.

    Parameters
    ----------
    fn : a picklable (module-level) function of one item.
    items : the work; submitted in this order, so put the longest first.
    jobs : worker processes; None: :func:`default_jobs`.  With 1 (or a single item) the
        items run here, in order, with ``initializer`` called first: the same results
        without the cost of starting processes.
    initializer, initargs : called once in every worker before its first item (shared,
        read-only state: the samples every item trains on).
    on_result : called in this process as ``on_result(index, result)`` as each item
        finishes (progress lines), in completion order.

    Returns
    -------
    The results in the order of ``items``.  The first exception of an item is raised
    here, after the pool is shut down.
    """
    jobs = default_jobs() if jobs is None else int(jobs)
    results: list[Any] = [None] * len(items)
    if jobs <= 1 or len(items) <= 1:
        # one thread: the same numbers as in a worker, and several threads on a loaded
        # machine make small layers many times slower (every op waits for the busiest core)
        from fivesigma.training.inputs import torch_threads

        with torch_threads(1):
            if initializer is not None:
                initializer(*initargs)
            for i, item in enumerate(items):
                results[i] = fn(item)
                if on_result is not None:
                    on_result(i, results[i])
        return results

    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    with ProcessPoolExecutor(
        min(jobs, len(items)),
        mp_context=mp.get_context("spawn"),
        initializer=_one_thread,
        initargs=(initializer, initargs),
    ) as pool:
        futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                if fut.exception() is not None:
                    for other in pending:
                        other.cancel()
                    raise fut.exception()  # type: ignore[misc]
                results[futures[fut]] = fut.result()
                if on_result is not None:
                    on_result(futures[fut], results[futures[fut]])
    return results
