"""Data-parallel training with ``torch.distributed``: one process per CPU or GPU.

The :class:`~fivesigma.training.Trainer` trains in every process of a process group
with the model wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`
(``TrainerConfig.distributed``): each rank takes a disjoint shard of every global batch,
the gradients are averaged, and the losses, early stopping, checkpoints and progress are
decided once for all.  This module starts such process groups:

* :func:`launch` spawns ``world_size`` local processes (gloo on the CPU, a free port) and
  calls ``fn(rank, world_size, *args)`` in each; it returns their results, rank 0 first.
* ``python -m fivesigma.training.distributed CONFIG [--out DIR]`` runs a task config in
  every process that ``torchrun`` starts::

      torchrun --nproc_per_node 4 -m fivesigma.training.distributed higgs4l.yaml

  Every rank runs the whole task (reading and preparing the same data); the training
  steps are shared, and only rank 0 writes the output directory; the other ranks write
  into a temporary directory that is removed afterwards.

>>> from fivesigma.training.distributed import context
>>> context().world_size   # not inside a process group
1
"""

from __future__ import annotations

import argparse
import atexit
import multiprocessing
import os
import pickle
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from fivesigma.errors import ConfigError, FivesigmaError

__all__ = ["DistributedContext", "context", "launch", "main", "setup"]

#: what torchrun (and :func:`launch`) sets in every process it starts
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a process group (rank 0 of 1 outside one).

    Attributes
    ----------
    rank : this process's rank, 0..world_size-1.
    world_size : number of processes training together.
    local_rank : rank on this machine (the GPU index with nccl).
    backend : ``"gloo"``, ``"nccl"`` or ``""`` (no process group).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def active(self) -> bool:
        """Whether training is shared between processes."""
        return self.world_size > 1 or bool(self.backend)

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, outputs and progress."""
        return self.rank == 0


def _torchrun_environment() -> bool:
    """torchrun's variables are set for a group of more than one process, and this is not
    a worker process that one of those started (which inherits the variables)."""
    if not all(os.environ.get(v) for v in TORCHRUN_VARIABLES):
        return False
    if multiprocessing.parent_process() is not None:
        return False
    try:
        return int(os.environ["WORLD_SIZE"]) > 1
    except ValueError:
        raise ConfigError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer; torchrun sets it to "
            "the number of processes"
        ) from None


def context() -> DistributedContext:
    """The process group this process belongs to, if ``torch.distributed`` is initialised."""
    if "torch" not in sys.modules:
        return DistributedContext()
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return DistributedContext()
    return DistributedContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())),
        backend=str(dist.get_backend()),
    )


def wanted(mode: bool | str) -> bool:
    """Whether ``TrainerConfig.distributed`` (``True``, ``False`` or ``"auto"``) means
    training in a process group here.

    ``"auto"``: when ``torch.distributed`` is initialised or torchrun's ``RANK``,
    ``WORLD_SIZE`` and ``MASTER_ADDR`` are set (with a world size above 1).  ``True``
    without either is a :class:`ConfigError`.
    """
    if mode is False:
        return False
    if mode not in (True, "auto"):
        raise ConfigError(f"trainer distributed must be true, false or 'auto', got {mode!r}")
    if context().active or _torchrun_environment():
        return True
    if mode is True:
        raise ConfigError(
            "trainer distributed is true but this process is in no process group: start it "
            "with torchrun (RANK, WORLD_SIZE, MASTER_ADDR), fivesigma.training.distributed."
            "launch, or torch.distributed.init_process_group; or set distributed 'auto'"
        )
    return False


def setup(device_type: str) -> DistributedContext:
    """Join the process group (creating it from torchrun's variables if needed).

    The backend is nccl for ``device_type`` ``"cuda"``, else gloo.  A group this
    function creates is destroyed when the process exits.
    """
    import torch.distributed as dist

    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; set distributed false")
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend=backend, init_method="env://")
        except (RuntimeError, ValueError) as err:
            raise ConfigError(
                f"cannot join the {backend} process group of RANK={os.environ.get('RANK')} "
                f"WORLD_SIZE={os.environ.get('WORLD_SIZE')} MASTER_ADDR="
                f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')} "
                f"({str(err).splitlines()[0][:160]})"
            ) from None
        atexit.register(_destroy)
    ctx = context()
    if device_type == "cuda" and ctx.backend != "nccl":
        raise ConfigError(
            f"training on a GPU needs the nccl backend, but the process group uses {ctx.backend}"
        )
    if device_type == "cpu" and ctx.backend == "nccl":
        raise ConfigError(
            "the process group uses nccl, which moves only GPU tensors; set the trainer "
            "device to 'cuda' (or 'auto'), or start the group with gloo"
        )
    return ctx


def _destroy() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


# --------------------------------------------------------------------------------------
# Local process groups


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(
    rank: int,
    fn: Callable[..., Any],
    world_size: int,
    port: int,
    backend: str,
    timeout_s: float,
    args: tuple,
    results: Any,
) -> None:
    import torch.distributed as dist

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
    )
    dist.init_process_group(
        backend=backend, rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s)
    )
    try:
        out = fn(rank, world_size, *args)
        # by value: torch's queue pickler would share tensors through file descriptors
        # that vanish with this process
        results.put(pickle.dumps((rank, "ok", out)))
    except FivesigmaError as err:
        results.put(pickle.dumps((rank, "error", err)))
        raise
    finally:
        dist.destroy_process_group()


def launch(
    fn: Callable[..., Any],
    world_size: int,
    *args: Any,
    backend: str = "gloo",
    timeout_s: float = 600.0,
) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` new local processes that form
    one process group, and return the results, rank 0 first.

    Parameters
    ----------
    fn : a module-level function (it is pickled into spawned processes), as are ``args``
        and its result.
    world_size : number of processes (>= 1).
    backend : ``"gloo"`` (CPU) or ``"nccl"`` (one GPU per process).
    timeout_s : how long a collective operation waits for the other ranks before failing.

    A :class:`~fivesigma.errors.FivesigmaError` raised in a process is raised here again
    (one line); any other failure is a ``torch.multiprocessing.ProcessRaisedException``
    with the process's traceback.
    """
    import torch.multiprocessing as mp

    if not isinstance(world_size, int) or world_size < 1:
        raise ConfigError(f"world_size must be an integer >= 1, got {world_size!r}")
    if backend not in ("gloo", "nccl"):
        raise ConfigError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    results = mp.get_context("spawn").SimpleQueue()
    port = free_port()
    gathered: dict[int, tuple[str, Any]] = {}

    def drain() -> None:
        while not results.empty():
            rank, status, value = pickle.loads(results.get())
            gathered[rank] = (status, value)

    processes = mp.spawn(
        _worker,
        args=(fn, world_size, port, backend, timeout_s, args, results),
        nprocs=world_size,
        join=False,
    )
    try:
        # read the results while the processes run: a large one fills the pipe
        while not processes.join(timeout=0.1):
            drain()
    except (mp.ProcessRaisedException, mp.ProcessExitedException):
        drain()
        for status, value in gathered.values():
            if status == "error":
                raise value from None
        raise
    drain()
    return [gathered[r][1] for r in range(world_size)]


# --------------------------------------------------------------------------------------
# torchrun entry point


def run_task(config: str | os.PathLike, out: str | os.PathLike | None = None) -> Any:
    """Run the task of ``config`` in this rank of a torchrun process group.

    Rank 0 writes the output (``out`` or the config's ``output.dir``) as ``fivesigma run``
    does; the other ranks run the same task into a temporary directory, removed afterwards,
    so that every rank takes part in every training.  Returns the task's result.
    """
    from fivesigma.core.config import load_config
    from fivesigma.core.registry import TASKS
    from fivesigma.core.task import execute

    cfg = load_config(config)
    task = TASKS.get(cfg.task)()
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        out_dir = Path(out) if out is not None else cfg.resolve(cfg.output.dir)
        return execute(task, cfg, out_dir, progress=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"fivesigma-rank{rank}-"))
    try:
        return execute(task, cfg, scratch / "out", progress=False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fivesigma.training.distributed CONFIG [--out DIR]`` (under torchrun)."""
    parser = argparse.ArgumentParser(
        prog="python -m fivesigma.training.distributed",
        description="Run a fivesigma task config in every process of a torchrun group; "
        "torch trainings are shared between the processes (DistributedDataParallel).",
    )
    parser.add_argument("config", help="task config (YAML)")
    parser.add_argument("--out", default=None, help="output directory (rank 0)")
    ns = parser.parse_args(argv)
    try:
        run_task(ns.config, ns.out)
    except FivesigmaError as err:
        print(f"error (rank {os.environ.get('RANK', '0')}): {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
