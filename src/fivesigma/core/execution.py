"""Where the work runs: one executor setting for every task (``--scheduler``, ``execution:``).

``local`` (the default) is the eager path: everything in this process, chunk after chunk.
Every other value hands the work to a ``dask.distributed`` cluster:

=========================  ==========================================================
``local``                  no dask: today's eager, in-process path
``threads:N``              a ``distributed.LocalCluster`` of one worker with N threads
``processes:N``            a ``distributed.LocalCluster`` of N one-thread worker processes
``tcp://host:port``        an existing scheduler (also ``tls://``)
``jobqueue:htcondor``      a batch cluster through dask-jobqueue (also ``jobqueue:slurm``);
                           the job options come from ``execution.jobqueue``
``gateway:URL``            a cluster from a dask-gateway server (``execution.gateway``)
=========================  ==========================================================

:func:`executor` is a context manager that gives a ``distributed.Client`` (``None`` for
``local``) and makes it the *active* client (:func:`active_client`), so code further down
(the Pythia block runner of :mod:`fivesigma.generate`) spreads its work over the same
workers without being handed the client.

>>> parse_scheduler("processes:4")
SchedulerSpec(kind='processes', text='processes:4', workers=4, target='')
>>> parse_scheduler("local").is_local
True
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fivesigma.errors import ConfigError, MissingDependencyError, describe_exception

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "JOBQUEUE_SYSTEMS",
    "SchedulerSpec",
    "active_client",
    "check_workers",
    "executor",
    "parse_scheduler",
    "total_threads",
]

#: seconds to wait for a scheduler to answer before giving up
DEFAULT_TIMEOUT_S = 10.0

#: batch systems of ``jobqueue:NAME`` -> the dask-jobqueue cluster class
JOBQUEUE_SYSTEMS = {"htcondor": "HTCondorCluster", "slurm": "SLURMCluster"}

Kind = Literal["local", "threads", "processes", "address", "jobqueue", "gateway"]

_ACCEPTED = (
    "local, threads:N, processes:N, tcp://HOST:PORT, jobqueue:htcondor, jobqueue:slurm "
    "or gateway:URL"
)
_ADDRESS = re.compile(r"(tcp|tls)://[^\s/:]+:\d{1,5}")
_ACTIVE: contextvars.ContextVar[Any] = contextvars.ContextVar("fivesigma_client", default=None)


@dataclass(frozen=True)
class SchedulerSpec:
    """A parsed ``--scheduler`` value.

    Attributes
    ----------
    kind : {"local", "threads", "processes", "address", "jobqueue", "gateway"}
    text : str
        The value as given (for messages).
    workers : int or None
        N of ``threads:N`` (threads) and ``processes:N`` (processes).
    target : str
        The scheduler address, the batch system (``htcondor``) or the gateway URL.
    """

    kind: Kind
    text: str
    workers: int | None = None
    target: str = ""

    @property
    def is_local(self) -> bool:
        """Whether this is the eager in-process path (no dask)."""
        return self.kind == "local"


def parse_scheduler(text: str) -> SchedulerSpec:
    """Parse a ``--scheduler`` value; a one-line :class:`ConfigError` for anything else.

    >>> parse_scheduler("tcp://10.0.0.5:8786").target
    'tcp://10.0.0.5:8786'
    """
    if not isinstance(text, str):
        raise ConfigError(f"scheduler must be a string ({_ACCEPTED}), got {text!r}")
    value = text.strip()
    if value == "local":
        return SchedulerSpec("local", value)
    head, sep, rest = value.partition(":")
    if sep and head in ("threads", "processes"):
        if not rest.isdigit() or int(rest) < 1:
            raise ConfigError(
                f"scheduler {text!r}: {head}:N needs a positive whole number N; accepted: "
                f"{_ACCEPTED}"
            )
        return SchedulerSpec(head, value, workers=int(rest))  # type: ignore[arg-type]
    if head in ("tcp", "tls") and rest.startswith("//"):
        if not _ADDRESS.fullmatch(value):
            raise ConfigError(
                f"scheduler {text!r}: a scheduler address is {head}://HOST:PORT "
                f"(e.g. {head}://10.0.0.5:8786)"
            )
        return SchedulerSpec("address", value, target=value)
    if sep and head == "jobqueue":
        if rest not in JOBQUEUE_SYSTEMS:
            raise ConfigError(
                f"scheduler {text!r}: unknown batch system {rest!r}; accepted: "
                + ", ".join(f"jobqueue:{name}" for name in JOBQUEUE_SYSTEMS)
            )
        return SchedulerSpec("jobqueue", value, target=rest)
    if sep and head == "gateway":
        if not re.fullmatch(r"https?://\S+", rest):
            raise ConfigError(
                f"scheduler {text!r}: gateway:URL needs the gateway's http(s) address, e.g. "
                "gateway:https://dask-gateway.example.org"
            )
        return SchedulerSpec("gateway", value, target=rest)
    raise ConfigError(f"unknown scheduler {text!r}; accepted: {_ACCEPTED}")


def active_client() -> Any:
    """The ``distributed.Client`` of the enclosing :func:`executor`, or None (eager)."""
    return _ACTIVE.get()


def total_threads(client: Any) -> int:
    """Threads over all workers of ``client`` (at least 1)."""
    return max(1, sum(client.nthreads().values()))


def _distributed() -> Any:
    from fivesigma.core import extras

    return extras.distributed()


def _optional(module: str, package: str, spec: SchedulerSpec) -> Any:
    """Import a cluster manager that fivesigma does not pin (dask-jobqueue, dask-gateway)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"{package} is needed for --scheduler {spec.text}; install it with: pip install {package}"
        ) from None


def _dashboard(client: Any) -> str | None:
    """The dashboard address, when the scheduler serves one."""
    try:
        services = client.scheduler_info().get("services", {})
    except Exception:  # an informational extra: never fail a run over it
        return None
    return client.dashboard_link if "dashboard" in services else None


def _probe_expression() -> str:
    # Sent as text to the builtin eval: a function of ours would itself need fivesigma
    # on the worker just to be unpickled.
    return "__import__('fivesigma').__version__"


def check_workers(client: Any) -> dict[str, str]:
    """Every worker's fivesigma version; a one-line error naming a worker without it.

    Raises
    ------
    MissingDependencyError
        A worker cannot import fivesigma, or imports another version than this process.
    """
    from fivesigma import __version__

    answers = client.run(eval, _probe_expression(), on_error="return")
    for address, answer in sorted(answers.items()):
        if isinstance(answer, BaseException):
            raise MissingDependencyError(
                f"dask worker {address} cannot import fivesigma ({describe_exception(answer)}); "
                f"install fivesigma=={__version__} in the workers' environment"
            )
        if answer != __version__:
            raise MissingDependencyError(
                f"dask worker {address} has fivesigma {answer}, this process {__version__}; "
                "install the same version on the workers"
            )
    return dict(answers)


def _has_bokeh() -> bool:
    try:
        importlib.import_module("bokeh")
    except ImportError:
        return False
    return True


def _local_cluster(spec: SchedulerSpec) -> Any:
    distributed = _distributed()
    # ":0": any free port, so that clusters of several users on one machine do not clash
    if spec.kind == "threads":
        return distributed.LocalCluster(
            n_workers=1, threads_per_worker=spec.workers, processes=False, dashboard_address=":0"
        )
    return distributed.LocalCluster(
        n_workers=spec.workers, threads_per_worker=1, processes=True, dashboard_address=":0"
    )


def _cluster(
    spec: SchedulerSpec,
    workers: int,
    jobqueue: Mapping[str, Any] | None,
    gateway: Mapping[str, Any] | None,
) -> Any:
    """A cluster manager for ``spec`` (None for ``tcp://``)."""
    if spec.kind in ("threads", "processes"):
        return _local_cluster(spec)
    if spec.kind == "jobqueue":
        module = _optional("dask_jobqueue", "dask-jobqueue", spec)
        cls = getattr(module, JOBQUEUE_SYSTEMS[spec.target])
        try:
            cluster = cls(**dict(jobqueue or {}))
        except (TypeError, ValueError) as err:
            raise ConfigError(
                f"execution.jobqueue: {describe_exception(err)} (the keys are "
                f"dask_jobqueue.{cls.__name__} arguments, e.g. cores, memory, disk)"
            ) from None
        cluster.scale(jobs=workers)
        return cluster
    if spec.kind == "gateway":
        module = _optional("dask_gateway", "dask-gateway", spec)
        options = dict(gateway or {})
        try:
            gw = module.Gateway(spec.target)
            cluster = gw.new_cluster(**options)
        except Exception as err:
            raise ConfigError(
                f"cannot start a cluster on dask-gateway {spec.target} ({describe_exception(err)})"
            ) from None
        cluster.scale(workers)
        return cluster
    return None


@contextlib.contextmanager
def executor(
    spec: SchedulerSpec | str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    *,
    workers: int = 2,
    jobqueue: Mapping[str, Any] | None = None,
    gateway: Mapping[str, Any] | None = None,
    echo: Callable[[str], None] | None = None,
) -> Iterator[Any]:
    """A ``distributed.Client`` for ``spec`` (``None`` for ``local``), active inside the block.

    Parameters
    ----------
    spec : SchedulerSpec or str
        What :func:`parse_scheduler` accepts.
    timeout_s : float
        Seconds to wait for the scheduler to answer (``tcp://``) before a one-line error.
    workers : int
        Batch jobs (``jobqueue:``) or workers (``gateway:``) to ask for.
    jobqueue, gateway : mapping, optional
        Arguments of the dask-jobqueue cluster class / ``Gateway.new_cluster``.
    echo : callable, optional
        Where the dashboard link is written (default: stderr).

    Raises
    ------
    ConfigError
        An unreachable scheduler (after ``timeout_s``) or bad cluster options.
    MissingDependencyError
        dask / distributed, dask-jobqueue or dask-gateway missing here, or fivesigma
        missing on a worker.
    """
    if isinstance(spec, str):
        spec = parse_scheduler(spec)
    if spec.is_local:
        token = _ACTIVE.set(None)
        try:
            yield None
        finally:
            _ACTIVE.reset(token)
        return
    if not timeout_s > 0:
        raise ConfigError(
            f"execution.timeout_s must be a positive number of seconds, got {timeout_s!r}"
        )
    distributed = _distributed()
    say = echo or (lambda line: print(line, file=sys.stderr))
    with contextlib.ExitStack() as stack:
        cluster = _cluster(spec, workers, jobqueue, gateway)
        if cluster is not None:
            stack.callback(cluster.close)
        target = cluster if cluster is not None else spec.target
        try:
            client = distributed.Client(target, timeout=f"{timeout_s}s", set_as_default=False)
        except (OSError, TimeoutError) as err:
            raise ConfigError(
                f"cannot reach the dask scheduler at {spec.target or spec.text} within "
                f"{timeout_s:g} s ({describe_exception(err)}); check the address and that the "
                "scheduler runs, or use --scheduler local"
            ) from None
        stack.callback(client.close)
        if spec.kind in ("threads", "processes", "address"):
            # Batch and gateway workers may still be queued: they are checked by the
            # scheduler as they join, not here.
            check_workers(client)
        # A scheduler in this process without bokeh serves only a page asking for it.
        here = spec.kind in ("threads", "processes", "jobqueue")
        link = None if here and not _has_bokeh() else _dashboard(client)
        if link:
            say(f"dask dashboard: {link}")
        token = _ACTIVE.set(client)
        try:
            yield client
        finally:
            _ACTIVE.reset(token)
