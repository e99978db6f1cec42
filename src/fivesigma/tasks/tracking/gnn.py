"""The edge classifier of the tracking pipeline: an Interaction Network scoring every
candidate edge, with an optional MLP filter stage in front.

hits -> candidate graph -> :func:`~fivesigma.tasks.tracking.features.to_graph` ->
:class:`EdgeClassifier` (``predict``: one score in [0, 1] per edge) -> track building.

Training
--------
:meth:`EdgeClassifier.fit` takes lists of PyG graphs (``to_graph`` with truth) and trains
through the shared :class:`~fivesigma.training.Trainer` with a class-balanced binary
cross entropy (true edges weighted by ``n_fake / n_true``, or a fixed ``pos_weight``) or
a focal loss.

A full pile-up-200 event (~10^5 hits, ~10^6 candidate edges) is too big for one CPU
training step, so graphs with more than ``max_train_edges`` edges are cut into **phi
sectors with overlap** (:func:`split_graph`): sector ``k`` owns the edges whose *source*
hit lies in its phi range and its loss counts those only (``loss_mask``); it also carries
every hit within ``sector_overlap`` radians of its range and the edges among them, so the
owned edges see (most of) their message-passing neighbourhood.  Every edge is owned by
exactly one sector: an epoch counts each edge once, as on the whole graph.  Sectors
rather than random edge-induced sub-graphs because tracks are local in phi: a random
sub-graph breaks the chains of hits that the message passing follows.

Filter stage
------------
With ``filter=True`` an :class:`~fivesigma.nn.interaction.EdgeFilterMLP` is trained first
(on the same graphs); its cut is the logit that keeps ``filter_efficiency`` (99.5 %) of
the true edges of the validation graphs (the training graphs without them), and the
Interaction Network is trained on, and later applied to, the edges that pass.  Edges the
filter drops get score 0.

Inference
---------
:meth:`EdgeClassifier.predict` runs the whole graph at once under ``torch.inference_mode``:
the network processes the edges in cache-sized chunks shared out to the torch threads
(:func:`~fivesigma.nn.interaction.run_chunks`), so memory stays ~ 3 E x hidden floats
and no sector seams appear.

Measured (CPU, this package's 2-core test machine when otherwise idle): the network
alone on a synthetic graph of 100k nodes and 800k edges takes 2.7 s on one thread and
1.3 s on two with the defaults (hidden 32, 4 iterations); hidden 48 / 4 iterations
3.7 s / 1.8 s; hidden 64 / 6 iterations 6 s / 3.7 s; the filter MLP (64 x 3) 0.3 s /
0.2 s.  The cost grows linearly with the edges.  On 7 simulated mu = 20 events overlaid
(118k hits) with a metric-learning graph of 1.1M edges: ``to_graph`` 0.3 s,
``predict`` 1.5 s on two threads (3.0 s on one).  Trained on 16 simulated mu = 20
events (metric-learning graphs, 140k edges each; 20 epochs, 5.5 min on one loaded
core), on the TrackML test event ``event000000001`` (5527 hits, 40k candidate edges,
0.12 s): AUC 0.992, efficiency 0.962 and purity 0.65 at a 0.5 cut, 0.90 and 0.84 at
0.8.

>>> clf = EdgeClassifier(hidden=16, iterations=2, epochs=1)   # doctest: +SKIP
>>> clf.fit(train_graphs, valid_graphs).predict(to_graph(hits, edges))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fivesigma.errors import ConfigError, DataError, ModelError
from fivesigma.tasks.tracking.features import (
    EDGE_FEATURES,
    NODE_FEATURES,
    check_edge_index,
    to_graph,
)
from fivesigma.tasks.tracking.hits import Hits

if TYPE_CHECKING:
    import torch
    from torch_geometric.data import Data

    from fivesigma.training.trainer import TrainHistory

__all__ = [
    "BUNDLE_KIND",
    "EdgeClassifier",
    "GNNSettings",
    "edge_metrics",
    "split_graph",
]

#: the ``kind`` of an EdgeClassifier's model bundle
BUNDLE_KIND = "tracking-edge-classifier"

_LOSSES = ("bce", "focal")


# --------------------------------------------------------------------------------------
# Settings


@dataclass
class GNNSettings:
    """Everything that defines an :class:`EdgeClassifier` (JSON-serialisable).

    Network: ``hidden``, ``iterations``, ``aggr`` ("sum", "mean", "max", "min" or a list),
    ``mlp_layers``, ``layer_norm``, ``activation``, ``share_weights`` (see
    :class:`~fivesigma.nn.interaction.InteractionNetwork`).

    Training: ``epochs``, ``lr``, ``weight_decay``, ``scheduler``,
    ``early_stopping_patience`` (None: off), ``batch_graphs`` (graphs or sectors per
    optimiser step), ``loss`` ("bce" or "focal"), ``pos_weight`` ("balanced": n_fake /
    n_true of the training edges, or a number > 0), ``focal_gamma``, ``seed``,
    ``num_threads`` (torch threads in fit and predict; None: unchanged), ``device``.

    Sub-graphs: ``max_train_edges`` (graphs with more edges are split into phi sectors of
    about this many owned edges), ``sector_overlap`` (radians of context around a sector).

    Filter: ``filter`` (on/off), ``filter_hidden``, ``filter_layers``, ``filter_epochs``,
    ``filter_efficiency`` (fraction of true edges the cut keeps).
    """

    hidden: int = 32
    iterations: int = 4
    aggr: str | list[str] = "sum"
    mlp_layers: int = 2
    layer_norm: bool = True
    activation: str = "relu"
    share_weights: bool = False
    epochs: int = 20
    lr: float = 2e-3
    weight_decay: float = 0.0
    scheduler: str = "cosine"
    early_stopping_patience: int | None = 5
    batch_graphs: int = 1
    loss: str = "bce"
    pos_weight: str | float = "balanced"
    focal_gamma: float = 2.0
    seed: int = 0
    num_threads: int | None = None
    device: str = "cpu"
    max_train_edges: int = 200_000
    sector_overlap: float = 0.3
    filter: bool = False
    filter_hidden: int = 64
    filter_layers: int = 3
    filter_epochs: int = 10
    filter_efficiency: float = 0.995

    def __post_init__(self) -> None:
        if not isinstance(self.aggr, str) and isinstance(self.aggr, Sequence):
            self.aggr = list(self.aggr)  # what JSON gives back, so a loaded model compares equal

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GNNSettings:
        """Settings from keyword values; an unknown name is a one-line ConfigError."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ConfigError(
                f"EdgeClassifier has no setting {unknown[0]!r}; accepted: {', '.join(names)}"
            )
        settings = cls(**values)
        settings.validate()
        return settings

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        """Raise a one-line :class:`ConfigError` for an impossible setting."""
        from fivesigma.nn.interaction import AGGREGATIONS
        from fivesigma.nn.mlp import ACTIVATIONS
        from fivesigma.training.params import SCHEDULERS

        def integer(name: str, least: int, optional: bool = False) -> None:
            value = getattr(self, name)
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                extra = " or null" if optional else ""
                raise ConfigError(
                    f"EdgeClassifier {name} must be an integer >= {least}{extra}, got {value!r}"
                )

        def number(name: str, low: float, high: float, closed_low: bool = False) -> None:
            value = getattr(self, name)
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if ok:
                ok = (low <= value if closed_low else low < value) and value <= high
            if not ok:
                bracket = "[" if closed_low else "("
                raise ConfigError(
                    f"EdgeClassifier {name} must be a number in {bracket}{low}, {high}], "
                    f"got {value!r}"
                )

        for name in ("hidden", "iterations", "mlp_layers", "epochs", "batch_graphs"):
            integer(name, 1)
        for name in ("filter_hidden", "filter_layers", "filter_epochs"):
            integer(name, 1)
        integer("max_train_edges", 100)
        integer("seed", 0)
        integer("early_stopping_patience", 1, optional=True)
        integer("num_threads", 1, optional=True)
        number("lr", 0.0, 10.0)
        number("weight_decay", 0.0, 10.0, closed_low=True)
        number("focal_gamma", 0.0, 10.0, closed_low=True)
        number("sector_overlap", 0.0, math.pi, closed_low=True)
        number("filter_efficiency", 0.0, 1.0)
        aggr = [self.aggr] if isinstance(self.aggr, str) else list(self.aggr)
        if not aggr or any(a not in AGGREGATIONS for a in aggr) or len(set(aggr)) != len(aggr):
            raise ConfigError(
                f"EdgeClassifier aggr must be one of {', '.join(AGGREGATIONS)} or a list of "
                f"distinct ones, got {self.aggr!r}"
            )
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"EdgeClassifier activation {self.activation!r} is not known; accepted: "
                f"{', '.join(ACTIVATIONS)}"
            )
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(
                f"EdgeClassifier scheduler {self.scheduler!r} is not known; accepted: "
                f"{', '.join(SCHEDULERS)}"
            )
        if self.loss not in _LOSSES:
            raise ConfigError(
                f"EdgeClassifier loss {self.loss!r} is not known; accepted: {', '.join(_LOSSES)}"
            )
        pw = self.pos_weight
        if not (
            pw == "balanced"
            or (isinstance(pw, int | float) and not isinstance(pw, bool) and 0 < pw < math.inf)
        ):
            raise ConfigError(
                f"EdgeClassifier pos_weight must be 'balanced' or a number > 0, got {pw!r}"
            )
        for name in ("layer_norm", "share_weights", "filter"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"EdgeClassifier {name} must be true or false, got {getattr(self, name)!r}"
                )
        from fivesigma.training.trainer import resolve_device

        resolve_device(self.device)


# --------------------------------------------------------------------------------------
# Metrics


def edge_metrics(scores: Any, y: Any, threshold: float = 0.5) -> dict[str, float]:
    """Edge efficiency, purity and AUC of ``scores`` against the truth ``y``.

    Parameters
    ----------
    scores : (E,) edge scores in [0, 1].
    y : (E,) truth, 1/True for a true edge.
    threshold : an edge is selected when its score is >= threshold.

    Returns
    -------
    dict with ``efficiency`` (selected true / true), ``purity`` (selected true /
    selected), ``auc`` (ROC AUC; NaN without both classes), ``threshold``, ``n_edges``,
    ``n_true``, ``n_selected``.  A ratio with a zero denominator is NaN.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    t = np.asarray(y).reshape(-1)
    if s.shape != t.shape:
        raise DataError(f"scores have {s.size} entries but y has {t.size}; one per edge is needed")
    if not np.isfinite(s).all():
        raise DataError("scores contain NaN or inf; edge scores must be finite")
    truth = t.astype(bool)
    selected = s >= threshold
    n_true, n_sel = int(truth.sum()), int(selected.sum())
    n_tp = int((truth & selected).sum())
    auc = float("nan")
    if 0 < n_true < truth.size:
        from fivesigma.metrics import auc as roc_auc

        auc = float(roc_auc(truth.astype(np.int64), s))
    return {
        "efficiency": n_tp / n_true if n_true else float("nan"),
        "purity": n_tp / n_sel if n_sel else float("nan"),
        "auc": auc,
        "threshold": float(threshold),
        "n_edges": int(truth.size),
        "n_true": n_true,
        "n_selected": n_sel,
    }


# --------------------------------------------------------------------------------------
# Sub-graphs


def _phi(data: Data) -> torch.Tensor:
    """Azimuth of every node, from the ``phi / pi`` column of the node features."""
    import torch

    return data.x[:, NODE_FEATURES.index("phi")].double() * torch.pi


def split_graph(data: Data, max_edges: int, overlap: float = 0.3) -> list[Data]:
    """``data`` cut into phi sectors of about ``max_edges`` owned edges each.

    With ``n = ceil(E / max_edges)`` sectors, the sector boundaries are the quantiles of
    the source nodes' ``phi`` (read from the node features,
    :data:`~fivesigma.tasks.tracking.features.NODE_FEATURES`), so every sector owns about
    ``E / n`` edges however the hits are spread (the number of candidate edges grows with
    the square of the local hit density).  Sector ``k`` owns the edges whose source lies
    in its phi range; its graph holds the nodes within ``overlap`` radians of that range
    (wrapping at ±pi) plus the far ends of its owned edges, and every edge among them;
    ``loss_mask`` (bool per edge) marks the owned ones.  A graph of at most ``max_edges``
    edges comes back whole, with ``loss_mask`` all True.  ``x``, ``edge_attr`` and ``y``
    are sliced accordingly; ``node_ids`` and ``edge_ids`` give the rows in ``data``.
    """
    import torch

    n_edges = int(data.edge_index.shape[1])
    n_nodes = int(data.num_nodes)
    if n_edges <= max_edges:
        out = data.clone()
        out.loss_mask = torch.ones(n_edges, dtype=torch.bool)
        out.node_ids = torch.arange(n_nodes)
        out.edge_ids = torch.arange(n_edges)
        return [out]
    n_sectors = math.ceil(n_edges / max_edges)
    phi = _phi(data)
    src, dst = data.edge_index
    bounds = torch.quantile(phi[src], torch.linspace(0, 1, n_sectors + 1, dtype=phi.dtype))
    bounds[0], bounds[-1] = -math.pi, math.pi
    node_sector = torch.searchsorted(bounds[1:-1].contiguous(), phi, right=True)
    parts = []
    for k in range(n_sectors):
        lo, hi = float(bounds[k]), float(bounds[k + 1])
        centre, half = (lo + hi) / 2, (hi - lo) / 2
        offset = torch.remainder(phi - centre + math.pi, 2 * math.pi) - math.pi
        near = offset.abs() <= half + overlap
        owned = node_sector[src] == k
        near[src[owned]] = True
        near[dst[owned]] = True
        keep = near[src] & near[dst]
        edge_ids = keep.nonzero().view(-1)
        node_ids = near.nonzero().view(-1)
        relabel = torch.full((n_nodes,), -1, dtype=torch.long)
        relabel[node_ids] = torch.arange(node_ids.numel())
        part = data.__class__(
            x=data.x[node_ids],
            edge_index=relabel[data.edge_index[:, edge_ids]],
            edge_attr=data.edge_attr[edge_ids] if data.edge_attr is not None else None,
            num_nodes=int(node_ids.numel()),
        )
        if getattr(data, "y", None) is not None:
            part.y = data.y[edge_ids]
        part.loss_mask = owned[edge_ids]
        part.node_ids, part.edge_ids = node_ids, edge_ids
        parts.append(part)
    return parts


def _edge_subgraph(data: Data, keep: torch.Tensor) -> Data:
    """``data`` with the edges where ``keep`` (bool per edge), all nodes kept."""
    out = data.clone()
    out.edge_index = data.edge_index[:, keep]
    for name in ("edge_attr", "y", "loss_mask", "loss_weight", "edge_ids"):
        value = getattr(data, name, None)
        if value is not None:
            setattr(out, name, value[keep])
    return out


# --------------------------------------------------------------------------------------
# The estimator


class EdgeClassifier:
    """Interaction Network edge classifier (with an optional MLP filter stage).

    ``EdgeClassifier(**settings)`` takes the :class:`GNNSettings` by name; ``settings``
    holds them.  ``fit(train_graphs, valid_graphs)`` trains, ``predict(data)`` scores the
    edges of one graph, ``predict_edges(hits, edge_index)`` builds the graph first.

    Fitted attributes: ``net_`` (the :class:`~fivesigma.nn.interaction.InteractionNetwork`,
    eval mode, CPU), ``filter_`` (the :class:`~fivesigma.nn.interaction.EdgeFilterMLP` or
    None), ``filter_cut_`` (its logit cut), ``pos_weight_`` (the weight of true edges),
    ``history_`` / ``filter_history_`` (:class:`~fivesigma.training.TrainHistory`),
    ``fit_seconds_``.
    """

    def __init__(self, **settings: Any) -> None:
        self.settings = GNNSettings.from_dict(settings)

    @property
    def history(self) -> TrainHistory | None:
        """The network's training history (``history_``), None before fitting."""
        return getattr(self, "history_", None)

    def __repr__(self) -> str:
        changed = {
            k: v for k, v in self.settings.to_dict().items() if v != getattr(GNNSettings, k, v)
        }
        return f"EdgeClassifier({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    # -- building blocks -----------------------------------------------------------------

    def _new_net(self) -> torch.nn.Module:
        import torch

        from fivesigma.nn.interaction import InteractionNetwork

        s = self.settings
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s.seed)  # the initial weights come from the seed
            return InteractionNetwork(
                len(NODE_FEATURES),
                len(EDGE_FEATURES),
                hidden=s.hidden,
                iterations=s.iterations,
                aggr=s.aggr,
                mlp_layers=s.mlp_layers,
                layer_norm=s.layer_norm,
                activation=s.activation,
                share_weights=s.share_weights,
            )

    def _new_filter(self) -> torch.nn.Module:
        import torch

        from fivesigma.nn.interaction import EdgeFilterMLP

        s = self.settings
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s.seed + 1)  # not the network's draws
            return EdgeFilterMLP(
                len(NODE_FEATURES),
                len(EDGE_FEATURES),
                hidden=s.filter_hidden,
                layers=s.filter_layers,
                layer_norm=s.layer_norm,
                activation=s.activation,
            )

    def _check_graphs(self, graphs: Any, role: str, need_truth: bool = True) -> list[Data]:
        """Graphs as a list of PyG ``Data`` with the feature widths this model takes."""
        from fivesigma.core import extras

        data_cls = extras.torch_geometric("data").Data
        if graphs is None or isinstance(graphs, data_cls) or not isinstance(graphs, Sequence):
            raise DataError(
                f"{role} graphs must be a list of torch_geometric Data (from to_graph), "
                f"got {type(graphs).__name__}"
            )
        out = list(graphs)
        if not out:
            raise DataError(f"{role} graphs: the list is empty; give at least one graph")
        for i, g in enumerate(out):
            self._check_graph(g, f"{role} graph {i}", need_truth)
        return out

    @staticmethod
    def _check_graph(g: Any, what: str, need_truth: bool) -> None:
        from fivesigma.core import extras
        from fivesigma.nn.interaction import check_graph_inputs

        data_cls = extras.torch_geometric("data").Data
        if not isinstance(g, data_cls):
            raise DataError(f"{what} is a {type(g).__name__}, not a torch_geometric Data")
        x = getattr(g, "x", None)
        check_graph_inputs(
            x,
            getattr(g, "edge_index", None),
            getattr(g, "edge_attr", None),
            len(NODE_FEATURES),
            len(EDGE_FEATURES),
            what,
        )
        if need_truth:
            y = getattr(g, "y", None)
            if y is None:
                raise DataError(
                    f"{what} has no edge truth y; build it with to_graph(hits, edges) from "
                    "hits with truth"
                )
            if y.shape != (g.edge_index.shape[1],):
                raise DataError(
                    f"{what}: y has shape {tuple(y.shape)}; one value per edge "
                    f"({g.edge_index.shape[1]}) is needed"
                )

    def _trainer(self, epochs: int, progress: bool) -> Any:
        from fivesigma.training.trainer import Trainer, TrainerConfig

        s = self.settings
        return Trainer(
            TrainerConfig(
                epochs=epochs,
                batch_size=s.batch_graphs,
                lr=s.lr,
                weight_decay=s.weight_decay,
                scheduler=s.scheduler,
                early_stopping_patience=s.early_stopping_patience,
                seed=s.seed,
                num_threads=s.num_threads,
                progress=progress,
                device=s.device,
            )
        )

    def _loaders(self, train: list[Data], valid: list[Data] | None) -> tuple[Any, Any]:
        import torch

        from fivesigma.core import extras

        loader_cls = extras.torch_geometric("loader").DataLoader
        s = self.settings
        # the loader's own generator, seeded, so that the shuffling repeats with the seed
        gen = torch.Generator().manual_seed(s.seed)
        train_loader = loader_cls(train, batch_size=s.batch_graphs, shuffle=True, generator=gen)
        valid_loader = loader_cls(valid, batch_size=s.batch_graphs) if valid else None
        return train_loader, valid_loader

    def _objective(self) -> Any:
        import torch

        loss_name, gamma = self.settings.loss, self.settings.focal_gamma

        def objective(model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
            logits = model(batch.x, batch.edge_index, batch.edge_attr)
            y = batch.y.to(logits.dtype)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
            if loss_name == "focal":
                # (1 - p_t)^gamma: the confidently right edges (most fakes) weigh little
                p = torch.sigmoid(logits)
                p_t = p * y + (1 - p) * (1 - y)
                loss = loss * (1 - p_t).pow(gamma)
            return loss, batch.loss_weight

        return objective

    def _with_weights(self, parts: list[Data], pos_weight: float) -> list[Data]:
        """Every sub-graph with ``loss_weight``: pos_weight on owned true edges, 1 on owned
        fake ones, 0 on context edges."""
        for p in parts:
            w = 1.0 + (pos_weight - 1.0) * p.y.float()
            p.loss_weight = w * p.loss_mask.float()
        return parts

    def _split(self, graphs: list[Data]) -> list[Data]:
        s = self.settings
        return [p for g in graphs for p in split_graph(g, s.max_train_edges, s.sector_overlap)]

    # -- fitting ---------------------------------------------------------------------------

    def fit(
        self,
        train_graphs: Sequence[Data],
        valid_graphs: Sequence[Data] | None = None,
        progress: bool = False,
    ) -> EdgeClassifier:
        """Train on ``train_graphs`` (with early stopping on ``valid_graphs``, if given).

        Parameters
        ----------
        train_graphs, valid_graphs : graphs from
            :func:`~fivesigma.tasks.tracking.features.to_graph` with truth (``y``).
            Without validation graphs every epoch runs and the last weights are kept.
        progress : show the trainer's progress bar.
        """
        import time

        import torch

        s = self.settings
        s.validate()
        train = self._check_graphs(train_graphs, "training")
        valid = self._check_graphs(valid_graphs, "validation") if valid_graphs else None
        if sum(int(g.edge_index.shape[1]) for g in train) == 0:
            raise DataError("training graphs have no edges; there is nothing to learn from")
        t0 = time.perf_counter()
        train_parts = self._split(train)
        valid_parts = self._split(valid) if valid else None

        self.filter_, self.filter_cut_, self.filter_history_ = None, None, None
        if s.filter:
            self._fit_filter(train_parts, valid_parts, progress)
            train_parts = self._apply_filter(train_parts)
            valid_parts = self._apply_filter(valid_parts) if valid_parts else None

        y = torch.cat([p.y[p.loss_mask] for p in train_parts])
        n_true = float(y.sum())
        if n_true == 0 or n_true == y.numel():
            raise DataError(
                f"training graphs have {int(n_true)} true edges out of {y.numel()}; both true "
                "and fake edges are needed"
            )
        pos_weight = (
            (y.numel() - n_true) / n_true if s.pos_weight == "balanced" else float(s.pos_weight)
        )
        self._with_weights(train_parts, pos_weight)
        if valid_parts:
            self._with_weights(valid_parts, pos_weight)
        train_loader, valid_loader = self._loaders(train_parts, valid_parts)
        net = self._new_net()
        self.history_: TrainHistory = self._trainer(s.epochs, progress).fit(
            net, train_loader, valid_loader, objective=self._objective()
        )
        self.net_ = net.cpu().eval()
        self.pos_weight_ = float(pos_weight)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _fit_filter(
        self, train_parts: list[Data], valid_parts: list[Data] | None, progress: bool
    ) -> None:
        """Train the filter MLP and set its cut at ``filter_efficiency`` of true edges."""
        import torch

        s = self.settings
        y = torch.cat([p.y[p.loss_mask] for p in train_parts])
        n_true = float(y.sum())
        if n_true == 0 or n_true == y.numel():
            raise DataError(
                f"training graphs have {int(n_true)} true edges out of {y.numel()}; both true "
                "and fake edges are needed"
            )
        pw = (y.numel() - n_true) / n_true if s.pos_weight == "balanced" else float(s.pos_weight)
        self._with_weights(train_parts, pw)
        if valid_parts:
            self._with_weights(valid_parts, pw)
        train_loader, valid_loader = self._loaders(train_parts, valid_parts)
        filt = self._new_filter()
        self.filter_history_ = self._trainer(s.filter_epochs, progress).fit(
            filt, train_loader, valid_loader, objective=self._objective()
        )
        self.filter_ = filt.cpu().eval()
        # the cut from the validation edges where there are some: the training edges'
        # scores are optimistic, a cut on them keeps less than asked on new events
        parts = valid_parts or train_parts
        true_logits = []
        with torch.inference_mode():
            for p in parts:
                logits = self.filter_(p.x, p.edge_index, p.edge_attr)
                true_logits.append(logits[p.loss_mask & (p.y > 0.5)])
        scores = torch.cat(true_logits).double().numpy()
        if scores.size == 0:
            raise DataError("the filter's cut needs true edges; the validation graphs have none")
        self.filter_cut_ = float(np.quantile(scores, 1.0 - s.filter_efficiency, method="lower"))

    def _apply_filter(self, parts: list[Data]) -> list[Data]:
        import torch

        out = []
        for p in parts:
            # no_grad, not inference_mode: the sub-graphs are training inputs, and tensors
            # made under inference_mode could not be saved for backward
            with torch.no_grad():
                keep = self.filter_(p.x, p.edge_index, p.edge_attr) >= self.filter_cut_
            out.append(_edge_subgraph(p, keep))
        return out

    # -- prediction ----------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise ModelError(
                "EdgeClassifier is not fitted yet; call fit(train_graphs, valid_graphs) or "
                "EdgeClassifier.load(directory) first"
            )

    def predict(self, data: Data) -> np.ndarray:
        """Edge scores in [0, 1], float32 ``(E,)``, for one graph (from ``to_graph``).

        With the filter stage, edges the filter drops score 0.  A graph without edges gives
        an empty array; a graph without nodes or with the wrong feature widths is a
        one-line :class:`DataError`.
        """
        import torch

        from fivesigma.training.inputs import torch_threads

        self._check_fitted()
        self._check_graph(data, "predict: graph", need_truth=False)
        n_edges = int(data.edge_index.shape[1])
        if n_edges == 0:
            return np.zeros(0, dtype=np.float32)
        x, edge_index = data.x.float(), data.edge_index.long()
        edge_attr = data.edge_attr.float()
        with torch.inference_mode(), torch_threads(self.settings.num_threads):
            if self.filter_ is None:
                return torch.sigmoid(self.net_(x, edge_index, edge_attr)).numpy().astype(np.float32)
            keep = self.filter_(x, edge_index, edge_attr) >= self.filter_cut_
            scores = torch.zeros(n_edges, dtype=torch.float32)
            if bool(keep.any()):
                kept = keep.nonzero().view(-1)
                logits = self.net_(x, edge_index[:, kept], edge_attr[kept])
                scores[kept] = torch.sigmoid(logits)
            return scores.numpy()

    def predict_edges(self, hits: Hits, edge_index: np.ndarray) -> np.ndarray:
        """:meth:`predict` on the graph of ``hits`` with the candidate edges ``edge_index``
        (int64 (2, E), inner to outer): float32 ``(E,)``."""
        edges = check_edge_index(edge_index, len(hits))
        return self.predict(to_graph(hits, edges, with_truth=False))

    def score(self, graphs: Sequence[Data], threshold: float = 0.5) -> dict[str, float]:
        """:func:`edge_metrics` of the predictions on ``graphs`` (with truth), all edges
        pooled."""
        graphs = self._check_graphs(graphs, "score")
        scores = np.concatenate([self.predict(g) for g in graphs])
        y = np.concatenate([g.y.numpy() for g in graphs])
        return edge_metrics(scores, y, threshold)

    edge_metrics = staticmethod(edge_metrics)

    # -- persistence -----------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write the model as a bundle directory (weights as safetensors, settings and
        history as JSON; nothing pickled) and return its path."""
        from fivesigma.core.bundle import Bundle, save_bundle

        self._check_fitted()
        arrays = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}
        training: dict[str, Any] = {
            "network": self.net_.config,
            "pos_weight": self.pos_weight_,
            "history": self.history_.to_dict() if self.history_ is not None else None,
        }
        if self.filter_ is not None:
            arrays.update(
                {
                    f"filter.{k}": v.detach().cpu().numpy()
                    for k, v in self.filter_.state_dict().items()
                }
            )
            training["filter"] = self.filter_.config
            training["filter_cut"] = self.filter_cut_
            if self.filter_history_ is not None:
                training["filter_history"] = self.filter_history_.to_dict()
        bundle = Bundle(
            kind=BUNDLE_KIND,
            features=list(NODE_FEATURES),
            params=self.settings.to_dict(),
            preprocessing={
                "node_features": list(NODE_FEATURES),
                "edge_features": list(EDGE_FEATURES),
            },
            training=training,
            arrays=arrays,
        )
        return save_bundle(bundle, directory)

    @classmethod
    def load(cls, directory: str | Path) -> EdgeClassifier:
        """Read a bundle written by :meth:`save`."""
        import torch

        from fivesigma.core.bundle import load_bundle
        from fivesigma.training.trainer import TrainHistory

        bundle = load_bundle(directory)
        if bundle.kind != BUNDLE_KIND:
            raise ModelError(
                f"model bundle '{directory}' holds a {bundle.kind!r} model, not {BUNDLE_KIND!r}"
            )
        if bundle.preprocessing.get("node_features") != list(
            NODE_FEATURES
        ) or bundle.preprocessing.get("edge_features") != list(EDGE_FEATURES):
            raise ModelError(
                f"model bundle '{directory}' was trained on other graph features "
                f"({bundle.preprocessing.get('node_features')}, "
                f"{bundle.preprocessing.get('edge_features')}); retrain it"
            )
        try:
            est = cls(**bundle.params)
        except ConfigError as err:
            raise ModelError(f"model bundle '{directory}': {err}") from None

        def state(prefix: str) -> dict[str, torch.Tensor]:
            return {
                k[len(prefix) :]: torch.from_numpy(np.array(a))
                for k, a in bundle.arrays.items()
                if k.startswith(prefix)
            }

        est.net_ = est._load_module(est._new_net(), state("net."), directory)
        est.filter_, est.filter_cut_ = None, None
        if "filter" in bundle.training:
            est.filter_ = est._load_module(est._new_filter(), state("filter."), directory)
            est.filter_cut_ = float(bundle.training["filter_cut"])
        est.pos_weight_ = float(bundle.training.get("pos_weight", 1.0))
        history = bundle.training.get("history")
        est.history_ = TrainHistory.from_dict(history) if history else None
        fh = bundle.training.get("filter_history")
        est.filter_history_ = TrainHistory.from_dict(fh) if fh else None
        return est

    @staticmethod
    def _load_module(
        module: torch.nn.Module, state: dict[str, torch.Tensor], directory: str | Path
    ) -> torch.nn.Module:
        from fivesigma.training.estimator import weights_mismatch

        try:
            module.load_state_dict(state)
        except RuntimeError as err:
            raise ModelError(
                f"model bundle '{directory}': the weights do not match the network "
                f"({weights_mismatch(err)})"
            ) from None
        return module.eval()

    # -- ONNX ------------------------------------------------------------------------------

    def export_onnx(self, path: str | Path, opset: int | None = None) -> Path:
        """Write the classifier (filter included) as an ONNX model; the path.

        Inputs ``x`` float32 (nodes, 4), ``edge_index`` int64 (2, edges), ``edge_attr``
        float32 (edges, 6); output ``scores`` float32 (edges,) in [0, 1], as
        :meth:`predict`.  Nodes and edges are dynamic axes.  ``opset`` defaults to the
        lowest that exports the aggregation (17, or 18 with max/min).
        """
        from fivesigma.nn.interaction import export_edge_model, onnx_opset

        self._check_fitted()
        module = _score_module(self.net_, self.filter_, self.filter_cut_)
        metadata = {
            "fivesigma.kind": BUNDLE_KIND,
            "fivesigma.node_features": json.dumps(list(NODE_FEATURES)),
            "fivesigma.edge_features": json.dumps(list(EDGE_FEATURES)),
            "fivesigma.settings": json.dumps(self.settings.to_dict()),
        }
        return export_edge_model(
            module,
            path,
            len(NODE_FEATURES),
            len(EDGE_FEATURES),
            opset=opset if opset is not None else onnx_opset(self.settings.aggr),
            output_name="scores",
            metadata=metadata,
        )


def _score_module_class() -> type:
    import torch

    class ScoreModule(torch.nn.Module):
        """Raw graph -> edge scores: the filter's cut, the network on the kept edges,
        sigmoid, 0 for the dropped ones (what :meth:`EdgeClassifier.predict` does)."""

        def __init__(
            self, net: torch.nn.Module, filt: torch.nn.Module | None, cut: float | None
        ) -> None:
            super().__init__()
            self.net, self.filt, self.cut = net, filt, cut

        def forward(
            self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor
        ) -> torch.Tensor:
            if self.filt is None:
                return torch.sigmoid(self.net(x, edge_index, edge_attr))
            keep = self.filt(x, edge_index, edge_attr) >= self.cut
            kept = keep.nonzero().view(-1)
            scores = torch.sigmoid(
                self.net(x, edge_index.index_select(1, kept), edge_attr.index_select(0, kept))
            )
            return torch.zeros_like(keep, dtype=scores.dtype).scatter(0, kept, scores)

    return ScoreModule


def _score_module(net: Any, filt: Any, cut: float | None) -> Any:
    return _score_module_class()(net, filt, cut).eval()
