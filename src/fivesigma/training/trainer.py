"""The one training loop every torch model in fivesigma uses.

A :class:`Trainer` fits any :class:`torch.nn.Module` with AdamW, a learning-rate schedule,
event-weighted losses, early stopping on the weighted validation loss and checkpoints that
let an interrupted run resume bit-identically.

Data
----
``train`` and ``valid`` are either

* a tuple of tensors ``(input_1, ..., input_k, target, weight)`` (or a
  :class:`~torch.utils.data.TensorDataset` holding them): the model is called as
  ``model(input_1, ..., input_k)``;
* a dict of tensors with keys ``"target"`` and ``"weight"``: every other entry is passed to
  the model by keyword, e.g. ``model(x=..., mask=...)`` for padded jet constituents.

* any re-iterable of batches, e.g. a :class:`~torch.utils.data.DataLoader` over an
  ``IterableDataset`` that streams a training set larger than memory, or PyTorch
  Geometric's ``DataLoader`` of variable-size graphs: each epoch iterates it once, each
  batch is moved to the device (tensors, dicts and tuples of them, or anything with
  ``.to(device)``, such as a PyG ``Batch``).  Shuffling is then the loader's: give it a
  generator seeded from the config to keep runs reproducible.

All tensors share their first (example) dimension.  ``loss_fn(output, target)`` must return
the *per-example* loss, shape ``(n,)`` (use ``reduction="none"``); the trainer multiplies it
by the event weights and divides by the sum of the batch's weights.  A PyG batch is called
as ``model(batch)`` with target ``batch.y`` (and weights ``batch.weight`` when present).

Objectives without a target (the reconstruction loss of an autoencoder, the negative
log-likelihood of a flow, a flow-matching loss) pass ``objective(model, batch)`` instead
of ``loss_fn``: it returns the per-example loss, or ``(loss, weight)``; without weights
from it the batch's ``"weight"`` entry is used, else every example weighs 1.

>>> import torch
>>> from fivesigma.training import Trainer, TrainerConfig
>>> x = torch.randn(64, 2); y = (x[:, 0] > 0).float(); w = torch.ones(64)
>>> model = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.Flatten(0))
>>> loss = torch.nn.BCEWithLogitsLoss(reduction="none")
>>> hist = Trainer(TrainerConfig(epochs=2, progress=False)).fit(model, (x, y, w), None, loss)
>>> len(hist.train_loss)
2
>>> ae = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.Linear(1, 2))
>>> def reconstruction(model, batch):  # no target: the input is the target
...     return ((model(batch["x"]) - batch["x"]) ** 2).mean(dim=1)
>>> hist = Trainer(TrainerConfig(epochs=2, progress=False)).fit(
...     ae, {"x": x}, None, objective=reconstruction)
>>> hist.train_loss[1] < hist.train_loss[0]
True
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from fivesigma.core.files import atomic_file, ensure_writable_dir
from fivesigma.errors import (
    ConfigError,
    DataError,
    FivesigmaError,
    ModelError,
    describe_exception,
)
from fivesigma.training.distributed import DistributedContext
from fivesigma.training.params import SCHEDULERS

__all__ = [
    "CHECKPOINT_NAME",
    "TrainHistory",
    "Trainer",
    "TrainerConfig",
    "device_name",
    "resolve_device",
    "weighted_mean",
]

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "fivesigma-trainer-checkpoint"
CHECKPOINT_VERSION = 1
_SCHEDULERS = SCHEDULERS


def resolve_device(name: str) -> torch.device:
    """The torch device for ``name``: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.

    ``"auto"`` is the first GPU when PyTorch sees one, else the CPU.  A GPU that is not
    there is a :class:`ConfigError` (one line) rather than a CUDA traceback mid-training.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if not isinstance(name, str):
        raise ConfigError(f"device must be a string such as 'cpu', 'cuda' or 'auto', got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"unknown device {name!r}; accepted: cpu, cuda, cuda:N (N a GPU index) or auto"
        ) from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ConfigError(f"device {name!r} is not supported; accepted: cpu, cuda, cuda:N or auto")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r} asked for, but PyTorch sees no CUDA GPU here "
            f"(torch {torch.__version__}); use device 'cpu' or 'auto'"
        )
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(
            f"device {name!r}: there are only {torch.cuda.device_count()} GPU(s) here "
            f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})"
        )
    return device


def device_name(name: str) -> str:
    """What device ``name`` is on this machine, for reports: ``"CPU"`` or the GPU's name."""
    device = resolve_device(name)
    return "CPU" if device.type == "cpu" else torch.cuda.get_device_name(device)


#: A batch as the trainer hands it around: positional inputs or keyword inputs.
Batch = tuple[torch.Tensor, ...] | dict[str, torch.Tensor]
#: (rank, world size) of the process's share of every batch; (0, 1) alone
Shard = tuple[int, int]
#: Called after every epoch (and after its checkpoint is written) with (epoch, history);
#: raising ``KeyboardInterrupt`` there simulates an interruption.
Callback = Callable[[int, "TrainHistory"], None]


@dataclass
class TrainerConfig:
    """Hyper-parameters of the training loop.

    Attributes
    ----------
    epochs : maximum number of passes over the training data.
    batch_size : examples per optimiser step.
    lr : (peak) learning rate of AdamW.
    weight_decay : AdamW's decoupled weight decay.
    scheduler : ``"none"``, ``"cosine"`` (per epoch, to 0 at ``epochs``), ``"plateau"``
        (divide by 10 when the monitored loss stalls) or ``"onecycle"`` (per batch).
    early_stopping_patience : epochs without improvement of the validation loss before
        stopping; ``None`` disables early stopping.
    min_delta : smallest decrease of the validation loss that counts as improvement.
    seed : seeds torch, numpy, python's ``random`` and the shuffling generator.
    num_threads : torch CPU threads during ``fit`` (restored afterwards); ``None``: unchanged.
    progress : show a rich progress bar on stderr.
    checkpoint_dir : if set, a checkpoint is written there after every epoch and ``fit``
        resumes from it when it belongs to the same run.  A checkpoint of another run is
        refused (one line saying how to start afresh); a damaged one (truncated, garbage,
        a state that cannot be restored) is removed with a one-line warning and the
        training starts from the beginning.
    device : torch device for the model and batches: ``"cpu"``, ``"cuda"``, ``"cuda:N"``
        or ``"auto"`` (a GPU when there is one); see :func:`resolve_device`.
    eval_batch_size : examples per batch of the validation loss (no autograd, so it can
        be larger than ``batch_size``); ``None``: ``max(batch_size, 4096)``.  Models whose
        activations grow with the square of the input length (ParT's particle pairs)
        need less.
    distributed : train in every process of a ``torch.distributed`` process group with
        the model in :class:`~torch.nn.parallel.DistributedDataParallel` (``True``), in
        this process alone (``False``), or ``"auto"``: when ``torch.distributed`` is
        initialised or torchrun's ``RANK``, ``WORLD_SIZE`` and ``MASTER_ADDR`` are set.
        ``batch_size`` stays the global batch (each rank takes ``batch_size /
        world_size`` examples of it, so it must divide); see "Distributed training" in
        the :class:`Trainer` docstring and docs/distributed.md.
    """

    epochs: int = 50
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: Literal["none", "cosine", "plateau", "onecycle"] = "cosine"
    early_stopping_patience: int | None = 8
    min_delta: float = 0.0
    seed: int = 0
    num_threads: int | None = None
    progress: bool = True
    checkpoint_dir: str | None = None
    device: str = "cpu"
    eval_batch_size: int | None = None
    distributed: bool | Literal["auto"] = "auto"

    @classmethod
    def from_estimator(cls, estimator: Any, what: str) -> TrainerConfig:
        """The loop settings of an estimator that keeps them under these same names.

        Invalid settings raise :class:`ModelError` naming the estimator (``what``).
        """
        from dataclasses import fields

        # a setting the estimator does not have keeps the loop's default
        cfg = cls(
            **{
                f.name: getattr(estimator, f.name)
                for f in fields(cls)
                if hasattr(estimator, f.name)
            }
        )
        try:
            cfg.validate()
        except ConfigError as err:
            raise ModelError(f"{what}: {err}") from None
        return cfg

    def validate(self) -> None:
        """Raise :class:`ConfigError` (one line) for an impossible setting."""
        if self.scheduler not in _SCHEDULERS:
            raise ConfigError(
                f"trainer scheduler {self.scheduler!r} is not known; accepted: {', '.join(_SCHEDULERS)}"
            )
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if name == "eval_batch_size" and value is None:
                continue
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"trainer {name} must be a positive integer, got {value!r}")
        if not self.lr > 0:
            raise ConfigError(f"trainer lr must be > 0, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ConfigError(f"trainer weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ConfigError(
                "trainer early_stopping_patience must be >= 1 or None (off), "
                f"got {self.early_stopping_patience!r}"
            )
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError(f"trainer num_threads must be >= 1 or None, got {self.num_threads!r}")
        if not (isinstance(self.distributed, bool) or self.distributed == "auto"):
            raise ConfigError(
                f"trainer distributed must be true, false or 'auto', got {self.distributed!r}"
            )
        resolve_device(self.device)


@dataclass
class TrainHistory:
    """What happened during training, one entry per epoch run.

    Attributes
    ----------
    train_loss : weighted mean training loss of each epoch (model in train mode).
    val_loss : weighted validation loss after each epoch (``nan`` without validation data).
    lr : learning rate at the start of each epoch.
    best_epoch : 1-based epoch whose weights the model holds at the end.
    stopped_early : whether early stopping ended training before ``epochs``.
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False

    @property
    def epochs_run(self) -> int:
        """Number of epochs completed."""
        return len(self.train_loss)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (``nan`` becomes ``None``)."""

        def clean(values: list[float]) -> list[float | None]:
            return [None if not math.isfinite(v) else float(v) for v in values]

        return {
            "train_loss": clean(self.train_loss),
            "val_loss": clean(self.val_loss),
            "lr": clean(self.lr),
            "best_epoch": int(self.best_epoch),
            "stopped_early": bool(self.stopped_early),
            "epochs_run": self.epochs_run,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainHistory:
        """Inverse of :meth:`to_dict`."""

        def unclean(values: Sequence[float | None]) -> list[float]:
            return [float("nan") if v is None else float(v) for v in values]

        return cls(
            train_loss=unclean(d.get("train_loss", [])),
            val_loss=unclean(d.get("val_loss", [])),
            lr=unclean(d.get("lr", [])),
            best_epoch=int(d.get("best_epoch", 0)),
            stopped_early=bool(d.get("stopped_early", False)),
        )


# --------------------------------------------------------------------------------------
# Data handling


def _as_batchable(data: Any, role: str, supervised: bool = True) -> Batch:
    """Normalise in-memory ``train``/``valid`` to a tuple or dict of tensors of one length.

    With an ``objective`` (``supervised`` False) a dict needs neither ``"target"`` nor
    ``"weight"``.
    """
    if isinstance(data, torch.utils.data.TensorDataset):
        data = tuple(data.tensors)
    if isinstance(data, Mapping):
        needed = ("target", "weight") if supervised else ()
        missing = [k for k in needed if k not in data]
        if missing:
            raise DataError(
                f"{role} data dict lacks {', '.join(repr(m) for m in missing)}; "
                "it needs 'target', 'weight' and the model's keyword inputs"
            )
        tensors: dict[str, torch.Tensor] | tuple[torch.Tensor, ...] = {
            str(k): _as_tensor(v, f"{role}[{k!r}]") for k, v in data.items()
        }
        values = list(tensors.values())
    elif isinstance(data, Sequence) and not isinstance(data, str | bytes):
        if supervised and len(data) < 3:
            raise DataError(
                f"{role} data has {len(data)} tensors; expected (inputs..., target, weight)"
            )
        tensors = tuple(_as_tensor(v, f"{role}[{i}]") for i, v in enumerate(data))
        values = list(tensors)
    else:
        raise DataError(
            f"{role} data of type {type(data).__name__} is not supported; pass a tuple "
            "(inputs..., target, weight), a TensorDataset, a dict with 'target' and 'weight', "
            "or a DataLoader"
        )
    if not values:
        raise DataError(f"{role} data is empty")
    lengths = {int(v.shape[0]) if v.ndim else -1 for v in values}
    if len(lengths) != 1 or -1 in lengths:
        raise DataError(f"{role} tensors have different lengths {sorted(lengths)}; they must agree")
    if lengths == {0}:
        raise DataError(f"{role} data is empty")
    return tensors


def _is_loader(data: Any) -> bool:
    """A re-iterable of batches rather than one in-memory batch of tensors."""
    return (
        hasattr(data, "__iter__")
        and not isinstance(data, Mapping | Sequence | torch.Tensor | np.ndarray)
        and not isinstance(data, torch.utils.data.TensorDataset)
    )


class _TensorData:
    """In-memory tensors, cut into (shuffled) index batches every epoch."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self.n = _length(batch)

    def fingerprint(self) -> int:
        return self.n

    def steps(self, batch_size: int, shard: Shard = (0, 1)) -> int:
        full, rest = divmod(self.n, batch_size)
        # as in _batches: a trailing batch too small to give every rank two examples'
        # worth (one process: a single example) is dropped, unless it is all there is
        return full + (1 if rest > shard[1] or (rest >= 1 and self.n == rest) else 0)

    def epoch(
        self,
        batch_size: int,
        generator: torch.Generator | None,
        device: torch.device,
        shard: Shard = (0, 1),
    ) -> Iterator[Batch]:
        rank, world = shard
        if generator is None and world > 1:
            # evaluation: each rank takes one contiguous part of the examples
            part = torch.tensor_split(torch.arange(self.n), world)[rank]
            for start in range(0, len(part), batch_size):
                yield _take(self.batch, part[start : start + batch_size], device)
            return
        for idx in _batches(self.n, batch_size, generator, world):
            if world > 1:
                # the same global batch as one process sees; this rank's share of it
                idx = torch.tensor_split(torch.as_tensor(idx), world)[rank]
            yield _take(self.batch, idx, device)


class _LoaderData:
    """Any re-iterable of batches (a DataLoader, a PyG DataLoader, a streaming dataset)."""

    def __init__(self, loader: Any, role: str) -> None:
        self.loader = loader
        self.role = role

    def fingerprint(self) -> int:
        try:
            return len(self.loader)
        except TypeError:  # a stream of unknown length
            return -1

    def steps(self, batch_size: int, shard: Shard = (0, 1)) -> int:
        n = self.fingerprint()
        if n < 0:
            raise ConfigError(
                f"the {self.role} loader has no length; the 'onecycle' schedule needs the "
                "number of steps per epoch: use scheduler 'cosine' or give the loader a length"
            )
        return n

    def epoch(
        self,
        batch_size: int,
        generator: torch.Generator | None,
        device: torch.device,
        shard: Shard = (0, 1),
    ) -> Iterator[Any]:
        # a loader is iterated as given on every rank: sharding it is the loader's (e.g. a
        # DistributedSampler); the losses are normalised by the global weight sums either way
        empty = True
        for batch in self.loader:
            empty = False
            yield _to_device(batch, device)
        if empty:
            raise DataError(f"the {self.role} loader gave no batches")


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(_to_device(v, device) for v in batch)
    if hasattr(batch, "to"):  # e.g. a PyTorch Geometric Batch
        return batch.to(device)
    return batch


def _as_data(data: Any, role: str, supervised: bool) -> _TensorData | _LoaderData:
    if _is_loader(data):
        return _LoaderData(data, role)
    return _TensorData(_as_batchable(data, role, supervised))


#: ``objective(model, batch) -> loss`` or ``(loss, weight)``, per example
Objective = Callable[[torch.nn.Module, Any], Any]


def _supervised_objective(loss_fn: Callable[[Any, torch.Tensor], torch.Tensor]) -> Objective:
    """The objective of ``loss_fn(model(inputs), target)`` weighted by the batch's weights."""

    def objective(model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(batch, dict | tuple | list):
            args, kwargs, target, weight = _split(batch)
            return loss_fn(model(*args, **kwargs), target), weight
        # a graph batch: the model takes it whole; its target is batch.y
        loss = loss_fn(model(batch), batch.y)
        weight = getattr(batch, "weight", None)
        return loss, weight if weight is not None else torch.ones_like(loss)

    return objective


def _loss_and_weight(objective: Objective, model: torch.nn.Module, batch: Any) -> tuple:
    out = objective(model, batch)
    loss, weight = out if isinstance(out, tuple) else (out, None)
    if weight is None:
        weight = batch.get("weight") if isinstance(batch, Mapping) else None
    if weight is None:
        weight = torch.ones_like(loss)
    return loss, weight


def _as_tensor(v: Any, name: str) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        return v
    try:
        return torch.as_tensor(np.asarray(v))
    except (TypeError, ValueError) as err:
        raise DataError(f"{name} cannot be converted to a tensor: {err}") from None


def _length(data: Batch) -> int:
    first = next(iter(data.values())) if isinstance(data, dict) else data[0]
    return int(first.shape[0])


def _take(data: Batch, idx: torch.Tensor | slice, device: torch.device) -> Batch:
    if isinstance(data, dict):
        return {k: v[idx].to(device) for k, v in data.items()}
    return tuple(v[idx].to(device) for v in data)


def _split(
    batch: Batch,
) -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """(positional inputs, keyword inputs, target, weight) of a batch."""
    if isinstance(batch, dict):
        kwargs = {k: v for k, v in batch.items() if k not in ("target", "weight")}
        return (), kwargs, batch["target"], batch["weight"]
    return tuple(batch[:-2]), {}, batch[-2], batch[-1]


def _batches(
    n: int, batch_size: int, generator: torch.Generator | None, world: int = 1
) -> Iterator[torch.Tensor | slice]:
    """Index sets of one epoch (global batches); shuffled with ``generator`` when given.

    A trailing batch of a single example is dropped when shuffling: batch norm cannot
    train on it, and the example is seen in other epochs anyway.  Shared between
    ``world`` ranks, a trailing batch of ``world`` examples or fewer is dropped, so that
    every rank's share of every batch holds at least one example.
    """
    if generator is None:
        for start in range(0, n, batch_size):
            yield slice(start, min(start + batch_size, n))
        return
    perm = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        idx = perm[start : start + batch_size]
        if len(idx) <= world and n > len(idx):
            break
        yield idx


def weighted_mean(loss: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``sum(loss * w) / sum(w)``: the event-weighted mean of per-example losses.

    Negative weights are allowed.  When a batch's weights sum to zero or less (possible
    with many negative weights) the sum of absolute weights normalises instead, so that a
    batch never flips the sign of its gradient or divides by zero.
    """
    if loss.shape != weight.shape:
        loss = loss.reshape(weight.shape)
    w = weight.to(loss.dtype)
    total = w.sum()
    norm = torch.where(total > 0, total, w.abs().sum().clamp_min(torch.finfo(loss.dtype).tiny))
    return (loss * w).sum() / norm


# --------------------------------------------------------------------------------------
# Sharing the training between the ranks of a process group


def _join_group(cfg: TrainerConfig, device: torch.device) -> DistributedContext:
    """The process group to train in (see ``TrainerConfig.distributed``), joined, or rank 0
    of 1 for training alone."""
    from fivesigma.training import distributed

    if not distributed.wanted(cfg.distributed):
        return DistributedContext()
    group = distributed.setup(device.type)
    world = group.world_size
    if cfg.batch_size % world:
        lower = max(world, cfg.batch_size - cfg.batch_size % world)
        raise ConfigError(
            f"trainer batch_size {cfg.batch_size} is the global batch of {world} processes "
            f"and must be divisible by {world}; use e.g. {lower} or {lower + world}"
        )
    return group


class _SharedModel(torch.nn.parallel.DistributedDataParallel):
    """DistributedDataParallel that counts its forward calls and lends the wrapped
    module's attributes (an objective may call ``model.log_prob(...)``)."""

    forward_calls: int

    @classmethod
    def wrap(cls, model: torch.nn.Module, device: torch.device) -> _SharedModel:
        if not any(p.requires_grad for p in model.parameters()):
            raise ModelError("distributed training needs a model with trainable parameters")
        shared = cls(model, device_ids=[device.index] if device.type == "cuda" else None)
        shared.forward_calls = 0
        return shared

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.forward_calls += 1
        return super().forward(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":
                raise
            return getattr(self.module, name)


def _shared_weighted_mean(loss: torch.Tensor, weight: torch.Tensor, world: int) -> torch.Tensor:
    """This rank's part of the global batch's :func:`weighted_mean`, scaled so that the
    average of the ranks' gradients (what DistributedDataParallel takes) is the gradient
    of the global batch's weighted mean: ``world * sum_rank(loss * w) / sum_all(w)``."""
    import torch.distributed as dist

    if loss.shape != weight.shape:
        loss = loss.reshape(weight.shape)
    w = weight.to(loss.dtype)
    sums = torch.stack([w.detach().sum(), w.detach().abs().sum()]).to(torch.float64)
    dist.all_reduce(sums)
    total, absolute = sums.tolist()
    norm = total if total > 0 else max(absolute, torch.finfo(loss.dtype).tiny)
    return (loss * w).sum() * (world / norm)


def _average_gradients(model: torch.nn.Module, world: int) -> None:
    """Average every parameter's gradient over the ranks (a missing gradient counts as 0)."""
    import torch.distributed as dist

    for p in model.parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad.div_(world)


def _global_sums(values: Sequence[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """The sums of float64 scalars over the ranks, exactly rank 0's result on every rank."""
    import torch.distributed as dist

    stacked = torch.stack([v.to(torch.float64) for v in values]).to(device)
    dist.all_reduce(stacked)
    dist.broadcast(stacked, src=0)
    return list(stacked.cpu().unbind())


def _broadcast_values(values: Sequence[float], device: torch.device) -> list[float]:
    """Rank 0's ``values`` on every rank."""
    import torch.distributed as dist

    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return t.cpu().tolist()


def _broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` (any picklable object of this run) on every rank."""
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# --------------------------------------------------------------------------------------
# RNG state <-> tensors (so checkpoints load with weights_only=True)


def _python_rng_to_tensor(state: tuple) -> dict[str, Any]:
    version, internal, gauss = state
    return {
        "version": int(version),
        "state": torch.tensor(internal, dtype=torch.int64),
        "gauss": gauss,
    }


def _python_rng_from_tensor(d: Mapping[str, Any]) -> tuple:
    return (d["version"], tuple(int(x) for x in d["state"].tolist()), d["gauss"])


def _numpy_rng_to_tensor(state: tuple) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = state
    return {
        "name": str(name),
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _numpy_rng_from_tensor(d: Mapping[str, Any]) -> tuple:
    keys = d["keys"].numpy().astype(np.uint32)
    return (d["name"], keys, d["pos"], d["has_gauss"], d["cached"])


class _GlobalRNG:
    """Save the process-wide RNG and thread settings on enter and restore them on exit,
    so that ``fit`` seeds freely without changing the caller's random streams."""

    def __init__(self, num_threads: int | None) -> None:
        self.num_threads = num_threads

    def __enter__(self) -> _GlobalRNG:
        self._torch = torch.get_rng_state()
        self._numpy = np.random.get_state()
        self._python = random.getstate()
        self._threads = torch.get_num_threads()
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        return self

    def __exit__(self, *exc: object) -> None:
        torch.set_rng_state(self._torch)
        np.random.set_state(self._numpy)
        random.setstate(self._python)
        torch.set_num_threads(self._threads)


# --------------------------------------------------------------------------------------
# The trainer


class Trainer:
    """Seeded, resumable training loop (AdamW, LR schedule, weighted loss, early stopping).

    Parameters
    ----------
    config : the loop's hyper-parameters.
    callbacks : called as ``callback(epoch, history)`` after every epoch (1-based epoch),
        once its checkpoint is on disk.

    Distributed training
    --------------------
    In a ``torch.distributed`` process group (``TrainerConfig.distributed``; started by
    torchrun or :func:`fivesigma.training.distributed.launch`) every rank calls ``fit``
    with the same model, data and config.  The model is wrapped in
    :class:`~torch.nn.parallel.DistributedDataParallel` (gloo on the CPU, nccl with one GPU
    per rank).  Every epoch all ranks draw the same shuffled order; each global batch of
    ``batch_size`` examples is cut into ``world_size`` contiguous shares, one per rank,
    and the loss of a share is normalised by the weight sum of the whole global batch, so
    the averaged gradient is that of the global batch: the run follows the one-process
    run up to floating-point summation order (a trailing batch of ``world_size`` examples
    or fewer is dropped).  Validation examples are split between the ranks and the
    weighted sums added up; rank 0's losses and early-stopping decision hold for all,
    only rank 0 reads and writes checkpoints (the other ranks resume from the state it
    read) and shows progress; callbacks run on every rank.  Loaders are iterated as
    given on every rank (shard them with a ``DistributedSampler`` to share the work).
    Batch-norm layers normalise with each rank's share (no synchronised statistics), and
    dropout masks are drawn from the same seed on every rank.  An objective that calls
    the network through a method (``model.log_prob(...)``) rather than ``model(...)``
    gets its gradients averaged after ``backward``.
    """

    def __init__(
        self, config: TrainerConfig | None = None, callbacks: Sequence[Callback] = ()
    ) -> None:
        self.config = config if config is not None else TrainerConfig()
        self.config.validate()
        self.callbacks = list(callbacks)

    # -- public -------------------------------------------------------------------------

    def fit(
        self,
        model: torch.nn.Module,
        train: Any,
        valid: Any | None,
        loss_fn: Callable[[Any, torch.Tensor], torch.Tensor] | None = None,
        *,
        objective: Objective | None = None,
    ) -> TrainHistory:
        """Train ``model`` in place and return its :class:`TrainHistory`.

        Parameters
        ----------
        model : any module; called with the batch's inputs (positional or keyword).
        train : ``(inputs..., target, weight)`` tensors, a TensorDataset, or a dict with
            ``"target"``, ``"weight"`` and keyword inputs.
        valid : the same structure, or ``None`` (then no early stopping: the last epoch's
            weights are kept).
        loss_fn : ``loss_fn(output, target)`` -> per-example loss of shape ``(n,)``.
        objective : instead of ``loss_fn``, ``objective(model, batch)`` -> per-example loss
            or ``(loss, weight)``, for objectives without a target.

        The process-wide RNG states and torch's thread count are restored afterwards.
        At the end the model holds the weights of ``history.best_epoch``.
        """
        cfg = self.config
        if (loss_fn is None) == (objective is None):
            raise ModelError(
                "Trainer.fit needs exactly one of loss_fn(output, target) and "
                "objective(model, batch)"
            )
        supervised = objective is None
        train_data = _as_data(train, "training", supervised)
        valid_data = _as_data(valid, "validation", supervised) if valid is not None else None
        if objective is None:
            objective = _supervised_objective(loss_fn)
        device = resolve_device(cfg.device)
        group = _join_group(cfg, device)
        if group.active and device.type == "cuda":
            if cfg.device in ("auto", "cuda"):
                device = torch.device("cuda", group.local_rank)  # one GPU per process
            torch.cuda.set_device(device)
        with _GlobalRNG(cfg.num_threads):
            return self._fit(model.to(device), train_data, valid_data, objective, device, group)

    # -- internals ----------------------------------------------------------------------

    def _run_id(self, model: torch.nn.Module, train: Any, valid: Any | None) -> str:
        """Fingerprint of what makes two runs the same run (for resuming)."""
        cfg = asdict(self.config)
        # the batches are the same in one process and in many, so a checkpoint of one
        # resumes in the other
        for key in (
            "progress",
            "checkpoint_dir",
            "num_threads",
            "device",
            "eval_batch_size",
            "distributed",
        ):
            cfg.pop(key)
        if cfg["scheduler"] in ("none", "plateau"):
            # the schedule does not depend on the total, so a finished run may be extended
            cfg.pop("epochs")
        shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
        desc = {
            "config": cfg,
            "model": type(model).__name__,
            "shapes": shapes,
            "n_train": train.fingerprint(),
            "n_valid": valid.fingerprint() if valid is not None else 0,
        }
        return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]

    def _make_scheduler(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Any:
        cfg = self.config
        if cfg.scheduler == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
        if cfg.scheduler == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer,
                mode="min",
                factor=0.1,
                patience=max(1, (cfg.early_stopping_patience or 8) // 2),
            )
        if cfg.scheduler == "onecycle":
            return torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch
            )
        return None

    def _fit(
        self,
        model: torch.nn.Module,
        train: _TensorData | _LoaderData,
        valid: _TensorData | _LoaderData | None,
        objective: Objective,
        device: torch.device,
        group: DistributedContext,
    ) -> TrainHistory:
        cfg = self.config
        shard = (group.rank, group.world_size)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        random.seed(cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)

        steps_per_epoch = train.steps(cfg.batch_size, shard) if cfg.scheduler == "onecycle" else 0
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = self._make_scheduler(optimizer, steps_per_epoch)

        history = TrainHistory()
        best_loss = math.inf
        best_state = copy.deepcopy(model.state_dict())
        bad_epochs = 0
        start_epoch = 1
        run_id = self._run_id(model, train, valid)

        ckpt_path = None
        if cfg.checkpoint_dir is not None:
            state = None
            failure: FivesigmaError | None = None
            if group.is_main:  # only rank 0 reads and writes checkpoints
                try:
                    ckpt_path = ensure_writable_dir(cfg.checkpoint_dir) / CHECKPOINT_NAME
                    state = self._load_checkpoint(ckpt_path, run_id) if ckpt_path.exists() else None
                except FivesigmaError as err:
                    failure = err
            if group.active:  # every rank resumes from rank 0's checkpoint, or fails with it
                state, failure = _broadcast_object((state, failure))
            if failure is not None:
                raise failure
            if state is not None:
                initial_state = best_state
                try:
                    model.load_state_dict(state["model"])
                    optimizer.load_state_dict(state["optimizer"])
                    if scheduler is not None:
                        scheduler.load_state_dict(state["scheduler"])
                    history = TrainHistory.from_dict(json.loads(state["history"]))
                    best_loss = float(state["best_loss"])
                    best_state = state["best_state"]
                    bad_epochs = int(state["bad_epochs"])
                    start_epoch = int(state["epoch"]) + 1
                    torch.set_rng_state(state["rng_torch"])
                    np.random.set_state(_numpy_rng_from_tensor(state["rng_numpy"]))
                    random.setstate(_python_rng_from_tensor(state["rng_python"]))
                    generator.set_state(state["rng_loader"])
                    if "rng_cuda" in state and torch.cuda.is_available():
                        torch.cuda.set_rng_state(state["rng_cuda"])
                except Exception as err:  # a checkpoint of this run, damaged inside
                    if ckpt_path is not None:
                        _damaged_checkpoint(ckpt_path, err, "its state cannot be restored")
                    # back to exactly where a run without a checkpoint starts
                    best_state = initial_state
                    model.load_state_dict(best_state)
                    torch.manual_seed(cfg.seed)
                    np.random.seed(cfg.seed % 2**32)
                    random.seed(cfg.seed)
                    generator = torch.Generator().manual_seed(cfg.seed)
                    optimizer = torch.optim.AdamW(
                        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
                    )
                    scheduler = self._make_scheduler(optimizer, steps_per_epoch)
                    history = TrainHistory()
                    best_loss = math.inf
                    bad_epochs = 0
                    start_epoch = 1
                if history.stopped_early:
                    start_epoch = cfg.epochs + 1  # that run is over; only restore its result

        # the module whose forward trains: the model itself, or its DistributedDataParallel
        # wrapper (which averages the gradients over the ranks)
        trained = _SharedModel.wrap(model, device) if group.active else model
        progress = _Progress(cfg.progress and group.is_main, cfg.epochs, start_epoch - 1)
        try:
            for epoch in range(start_epoch, cfg.epochs + 1):
                lr_now = optimizer.param_groups[0]["lr"]
                train_loss = self._train_epoch(
                    trained, train, objective, optimizer, scheduler, generator, device, group
                )
                if not math.isfinite(train_loss):
                    raise ModelError(
                        f"training diverged in epoch {epoch}: the training loss is {train_loss}; "
                        "lower lr or check the inputs for extreme values"
                    )
                val_loss = (
                    self._evaluate(model, valid, objective, device, group)
                    if valid is not None
                    else float("nan")
                )
                monitored = val_loss if valid is not None else train_loss
                if scheduler is not None and cfg.scheduler == "cosine":
                    scheduler.step()
                elif scheduler is not None and cfg.scheduler == "plateau":
                    scheduler.step(monitored)

                history.train_loss.append(train_loss)
                history.val_loss.append(val_loss)
                history.lr.append(lr_now)
                if valid is None:
                    # nothing independent to judge by: keep the latest weights
                    best_state = copy.deepcopy(model.state_dict())
                    history.best_epoch = epoch
                elif val_loss < best_loss - cfg.min_delta:
                    best_loss = val_loss
                    best_state = copy.deepcopy(model.state_dict())
                    history.best_epoch = epoch
                    bad_epochs = 0
                else:
                    bad_epochs += 1
                stop = (
                    valid is not None
                    and cfg.early_stopping_patience is not None
                    and bad_epochs >= cfg.early_stopping_patience
                    and epoch < cfg.epochs
                )
                if group.active:  # rank 0 decides for all
                    stop = bool(_broadcast_values([float(stop)], device)[0])
                history.stopped_early = stop

                if ckpt_path is not None:
                    self._save_checkpoint(
                        ckpt_path,
                        run_id,
                        epoch,
                        model,
                        optimizer,
                        scheduler,
                        history,
                        best_loss,
                        best_state,
                        bad_epochs,
                        generator,
                    )
                progress.update(epoch, train_loss, val_loss, lr_now)
                for callback in self.callbacks:
                    callback(epoch, history)
                if stop:
                    break
        finally:
            progress.close()

        model.load_state_dict(best_state)
        return history

    def _train_epoch(
        self,
        model: torch.nn.Module,
        data: _TensorData | _LoaderData,
        objective: Objective,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        generator: torch.Generator,
        device: torch.device,
        group: DistributedContext | None = None,
    ) -> float:
        shared = group is not None and group.active
        shard = (group.rank, group.world_size) if shared else (0, 1)
        model.train()
        total = torch.zeros((), dtype=torch.float64)
        wsum = torch.zeros((), dtype=torch.float64)
        wabs = torch.zeros((), dtype=torch.float64)
        for batch in data.epoch(self.config.batch_size, generator, device, shard):
            if shared:
                model.forward_calls = 0
            loss_vec, weight = _loss_and_weight(objective, model, batch)
            if shared:
                loss = _shared_weighted_mean(loss_vec, weight, group.world_size)
            else:
                loss = weighted_mean(loss_vec, weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if shared and model.forward_calls == 0:
                # the objective used the network without the wrapper's forward (e.g. a
                # method of it), so the wrapper did not average the gradients
                _average_gradients(model.module, group.world_size)
            optimizer.step()
            if scheduler is not None and self.config.scheduler == "onecycle":
                scheduler.step()
            w = weight.detach().to(torch.float64).reshape(-1)
            total += (loss_vec.detach().to(torch.float64).reshape(-1) * w).sum().cpu()
            wsum += w.sum().cpu()
            wabs += w.abs().sum().cpu()
        if shared:
            total, wsum, wabs = _global_sums((total, wsum, wabs), device)
        return float(total / (wsum if wsum > 0 else wabs.clamp_min(1e-300)))

    @torch.no_grad()
    def _evaluate(
        self,
        model: torch.nn.Module,
        data: _TensorData | _LoaderData,
        objective: Objective,
        device: torch.device,
        group: DistributedContext | None = None,
    ) -> float:
        shared = group is not None and group.active
        shard = (group.rank, group.world_size) if shared else (0, 1)
        model.eval()
        total = torch.zeros((), dtype=torch.float64)
        wsum = torch.zeros((), dtype=torch.float64)
        wabs = torch.zeros((), dtype=torch.float64)
        size = self.config.eval_batch_size or max(self.config.batch_size, 4096)
        for batch in data.epoch(size, None, device, shard):
            loss_vec, weight = _loss_and_weight(objective, model, batch)
            loss_vec = loss_vec.to(torch.float64).reshape(-1)
            w = weight.to(torch.float64).reshape(-1)
            total += (loss_vec * w).sum().cpu()
            wsum += w.sum().cpu()
            wabs += w.abs().sum().cpu()
        if shared:  # each rank evaluated its part of the examples
            total, wsum, wabs = _global_sums((total, wsum, wabs), device)
        return float(total / (wsum if wsum > 0 else wabs.clamp_min(1e-300)))

    def _save_checkpoint(
        self,
        path: Path,
        run_id: str,
        epoch: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        history: TrainHistory,
        best_loss: float,
        best_state: dict,
        bad_epochs: int,
        generator: torch.Generator,
    ) -> None:
        state = {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "run_id": run_id,
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else {},
            # JSON text: plain types only, loads under weights_only=True
            "history": json.dumps(history.to_dict()),
            "best_loss": float(best_loss),
            "best_state": best_state,
            "bad_epochs": int(bad_epochs),
            "rng_torch": torch.get_rng_state(),
            "rng_numpy": _numpy_rng_to_tensor(np.random.get_state()),
            "rng_python": _python_rng_to_tensor(random.getstate()),
            "rng_loader": generator.get_state(),
        }
        if torch.cuda.is_available() and next(iter(model.parameters()), torch.empty(0)).is_cuda:
            # dropout on a GPU draws from the device's generator
            state["rng_cuda"] = torch.cuda.get_rng_state()
        with atomic_file(path) as tmp:
            torch.save(state, tmp)

    @staticmethod
    def _load_checkpoint(path: Path, run_id: str) -> dict[str, Any] | None:
        """The checkpoint's state, or None when the file is damaged (then it is removed,
        with a warning, and the training starts from the beginning)."""
        restart = (
            f"remove the checkpoint directory '{path.parent}' to start the training afresh, "
            "or use another --out (another checkpoint_dir)"
        )
        try:
            # weights_only=True: a checkpoint is data, never code to unpickle
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several types for a broken file
            _damaged_checkpoint(path, err, "unreadable")
            return None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ModelError(f"'{path}' is not a fivesigma trainer checkpoint; {restart}")
        if state.get("format_version") != CHECKPOINT_VERSION:
            raise ModelError(
                f"checkpoint '{path}' has format version {state.get('format_version')}; "
                f"this fivesigma reads version {CHECKPOINT_VERSION}; {restart}"
            )
        if state.get("run_id") != run_id:
            raise ModelError(
                f"checkpoint '{path}' belongs to a different run (other config, model or "
                f"data); {restart}"
            )
        return state


def _damaged_checkpoint(path: Path, err: BaseException, what: str) -> None:
    """Warn (one line) that the checkpoint at ``path`` is damaged and remove it."""
    # torch's refusal of a file it cannot unpickle safely is a paragraph about weights_only
    # that is beside the point here: the type says enough
    why = describe_exception(err, 120) if "weights_only" not in str(err) else type(err).__name__
    warnings.warn(
        f"checkpoint '{path}' is damaged ({what}: {why}); starting the training from the beginning",
        stacklevel=4,
    )
    path.unlink(missing_ok=True)


class _Progress:
    """A rich progress bar on stderr showing epoch, losses and learning rate (or nothing)."""

    def __init__(self, enabled: bool, epochs: int, done: int) -> None:
        self._progress = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("epoch"),
            MofNCompleteColumn(),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=Console(file=sys.stderr),
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=epochs, completed=done, info="")

    def update(self, epoch: int, train_loss: float, val_loss: float, lr: float) -> None:
        if self._progress is None:
            return
        info = f"train {train_loss:.4g}  val {val_loss:.4g}  lr {lr:.3g}"
        self._progress.update(self._task, completed=epoch, info=info)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
